"""DreamerV3's replay context: posterior latents stored in replay, starting each training sequence, and
written back after each update (Hafner et al. 2025; danijar/dreamerv3 ``agent.py``,
``_apply_replay_context`` and ``replay.update``, ``replay_context: 1``).

Without it a replayed sequence is filtered from the zero state, so its first
steps train the model on a state it never meets while acting. With a context
of ``K`` steps each sampled slice is ``K + T`` long: the first ``K`` steps
only supply the state carried into the ``T`` trained ones, read from the
replay rather than recomputed:

* collecting: the policy's posterior after each step (:class:`~latentrl.modules.LatentPolicy`
  writes it to ``("next", "rssm_deter")``, ``("next", "rssm_stoch")``) is stored with the step;
* :meth:`ReplayContext.sample`: a batch ``[B, T]`` of the slices' last ``T``
  steps, with ``context`` ``{deter, stoch, action} [B, T, ·]``: at each step
  the stored posterior and the action of the step before it (the loss starts
  each sequence from step 0's, :class:`~latentrl.modules.world_model.RSSMObserve`);
* :meth:`ReplayContext.write_back`: after the update, the posterior the loss
  computed for the ``T`` trained steps (``deter``, ``stoch``) replaces their
  stored latents, so later samples start from states of the current model.

The stored latents are part of the replay's storage, so a checkpoint of the
buffer (``Experiment.track(replay=...)``) restores them.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import TensorDictReplayBuffer

from latentrl.checks import InputError, check_positive_int

__all__ = ["ReplayContext"]


class ReplayContext:
    """Samples ``[B, T]`` sequences that start from stored posterior latents, and writes them back.

    Args:
        replay: a buffer of slices of ``context + seq_len`` steps (:func:`~latentrl.collectors.make_episode_replay`).
        seq_len: ``T``, the trained steps of a slice.
        context: ``K >= 1`` leading steps that supply the start state (the code's ``replay_context: 1``).
        entry_keys: where each stored step keeps its posterior ``(deter, stoch)`` (the policy's ``("next", state)``).
        action_key: the stored action (the carried previous action of the next step).
        deter_key, stoch_key: where the loss writes the trained posterior (read by :meth:`write_back`).
        context_key: the output batch's context (``deter``, ``stoch``, ``action`` under it).
        index_key: the storage index the buffer adds to samples.
    """

    def __init__(self, replay: TensorDictReplayBuffer, seq_len: int, context: int = 1, *,
                 entry_keys: tuple[NestedKey, NestedKey] = (("next", "rssm_deter"), ("next", "rssm_stoch")),
                 action_key: NestedKey = "action", deter_key: NestedKey = "deter", stoch_key: NestedKey = "stoch",
                 context_key: NestedKey = "context", index_key: NestedKey = "index"):
        check_positive_int("ReplayContext", "seq_len", seq_len)
        check_positive_int("ReplayContext", "context", context)
        if len(entry_keys) != 2:
            raise InputError(f"ReplayContext: `entry_keys` must name (deter, stoch), got {entry_keys!r}")
        self.replay, self.seq_len, self.context = replay, int(seq_len), int(context)
        self.entry_keys, self.action_key = tuple(entry_keys), action_key
        self.deter_key, self.stoch_key, self.context_key, self.index_key = deter_key, stoch_key, context_key, index_key

    @property
    def slice_len(self) -> int:
        """``K + T``: the length of the buffer's slices."""
        return self.context + self.seq_len

    def sample(self) -> TensorDictBase:
        """One batch ``[B, T]``: the slices' last ``T`` steps, with the carried state under ``context_key``."""
        K, L = self.context, self.slice_len
        flat = self.replay.sample()
        if flat.numel() % L:
            raise InputError(f"ReplayContext: the buffer sampled {flat.numel()} steps, not a multiple of the slice "
                             f"length {L} (`context` {K} + `seq_len` {self.seq_len}): build it with that slice length")
        batch = flat.reshape(-1, L)
        missing = [k for k in (*self.entry_keys, self.action_key, self.index_key) if batch.get(k, None) is None]
        if missing:
            raise KeyError(f"ReplayContext: the replayed steps lack {missing} (`entry_keys`, `action_key`, "
                           "`index_key`): store the policy's posterior with each step")
        data = batch[:, K:]
        data.set(self.context_key, TensorDict({
            "deter": batch.get(self.entry_keys[0])[:, K - 1:-1],
            "stoch": batch.get(self.entry_keys[1])[:, K - 1:-1],
            "action": batch.get(self.action_key)[:, K - 1:-1],
        }, data.batch_size))
        return data

    @torch.no_grad()
    def write_back(self, data: TensorDictBase) -> None:
        """Stores ``data``'s ``deter``/``stoch`` (the loss's posterior, ``[B, T]``) as the trained steps' latents."""
        for key in (self.deter_key, self.stoch_key, self.index_key):
            if data.get(key, None) is None:
                raise KeyError(f"ReplayContext.write_back: the batch has no {key!r}: run the world-model loss on "
                               "it first (it writes the posterior `deter_key`, `stoch_key`)")
        index = data.get(self.index_key).reshape(-1)
        values = TensorDict({
            self.entry_keys[0]: data.get(self.deter_key).detach().reshape(index.numel(), -1),
            self.entry_keys[1]: data.get(self.stoch_key).detach().reshape(index.numel(), -1),
        }, [index.numel()])
        # the buffer's item assignment writes in place (storage.set, the writer's path, would count these rows
        # as new ones: the length grows over never-written rows and the write cursor moves)
        self.replay[index] = values
