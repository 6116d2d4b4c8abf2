r"""R2D2 sequence replay: overlapping fixed-length sequences with stored recurrent state.

Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed
Reinforcement Learning" (R2D2), Section 2-3: the replay holds fixed-length
sequences (``seq_len=80``) that overlap by ``overlap=40`` steps and never cross
an episode boundary; each one is preceded by ``burn_in=40`` steps that only
warm up the learner's LSTM, starting from the recurrent state the actor had
("stored state"). Sequences are sampled with priorities
``p = eta * max_t |delta_t| + (1 - eta) * mean_t |delta_t|`` (``eta=0.9``,
``alpha=0.9``, ``beta=0.6``, minibatch 64; Appendix, Table 2).

Parts
-----
* :class:`SequenceCutter` turns TorchRL collector batches (``[num_envs, T]``,
  time last, each env continuing across calls) into sequences ``[N, L]``,
  ``L = burn_in + seq_len``, keeping the unfinished episodes' steps between calls.
* the priorities a buffer stores come from the loss (``R2D2Loss``'s
  ``"priority"`` output, :func:`latentrl.objectives.functional.sequence_priority`
  with the loss's ``eta``): the buffer stores what it is given and computes
  nothing itself, so ``eta`` lives in one place.
* :class:`SequenceReplayBuffer`: a TorchRL ``TensorDictReplayBuffer`` over
  whole sequences (``LazyTensorStorage``/``LazyMemmapStorage``) with TorchRL's
  ``PrioritizedSampler``: one priority per sequence.

The layout of a sequence is documented in :mod:`latentrl.collectors.sequence_cutter`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import (
    LazyMemmapStorage,
    LazyTensorStorage,
    PrioritizedSampler,
    TensorDictReplayBuffer,
)

from latentrl.checks import check_range
from latentrl.collectors.sequence_cutter import DEFAULT_STATE_KEYS, SequenceCutter
from latentrl.collectors.state import load_replay_buffer_state, replay_buffer_state

__all__ = ["SequenceReplayBuffer"]

class SequenceReplayBuffer:
    r"""R2D2 replay: whole sequences with one priority each (layout: module docstring).

    A TorchRL ``TensorDictReplayBuffer`` over ``LazyTensorStorage(capacity)``
    (``storage="memory"``) or ``LazyMemmapStorage(capacity, scratch_dir=...)``
    (``storage="memmap"``, on CPU) of sequences ``[L]``, FIFO (TorchRL's
    round-robin writer), sampled by ``PrioritizedSampler(capacity, alpha, beta, eps)``.
    Defaults are R2D2's (Kapturowski et al. 2019, Appendix, Table 2): sequences
    of 80 with burn-in 40 and overlap 40, minibatch 64, priority exponent 0.9,
    importance-sampling exponent 0.6, ``eta = 0.9``. ``capacity`` counts sequences.

    New sequences get the priorities passed to :meth:`add` (R2D2's actors
    prioritize what they send by their own TD errors), or else the largest
    priority the learner has written so far
    (:meth:`update_priorities`), PER's "maximal priority" (Schaul et al. 2016,
    Algorithm 1); before the first update, TorchRL's default ``1.0``. TorchRL's
    own default would keep ``1.0`` for ever, since the value it marks the first
    sequences with counts as seen; with value rescaling R2D2's priorities are
    mostly far below 1, so every new sequence would be sampled ~10x more often
    than the rest, and the learner would mostly see the newest data.

    Sampling probability and importance weight (Schaul et al. 2016, Sec. 3.4)::

        P(i) = (p_i + eps)^alpha / sum_k (p_k + eps)^alpha
        w_i  = (N * P(i))^(-beta) / max_j (N * P(j))^(-beta),   j over all N stored sequences

    TorchRL 0.14.1 computes exactly this as ``(P(i) / min_j P(j))^(-beta)``
    (its ``priority_weight``), normalizing by the largest weight *in the
    buffer* (the smallest priority), as OpenAI baselines does, not by the
    largest weight of the sampled minibatch (as Dopamine does). ``sample``
    returns it under ``"_weight"`` and keeps TorchRL's ``"priority_weight"``
    (read by TorchRL losses); both are ``[B, L]``, constant along ``L``.

    Args:
        capacity: number of sequences kept.
        seq_len, overlap, burn_in, stored_state, state_keys: see :class:`SequenceCutter`.
        batch_size: sequences per ``sample()``.
        alpha: priority exponent. beta: importance-sampling exponent.
        eps: added to every priority by the sampler.
        storage: ``"memory"`` or ``"memmap"``.
        scratch_dir: where the memmap files go (``storage="memmap"``).
    """

    STORAGES = ("memory", "memmap")

    def __init__(
        self,
        capacity: int,
        seq_len: int = 80,
        overlap: int = 40,
        burn_in: int = 40,
        batch_size: int = 64,
        alpha: float = 0.9,
        beta: float = 0.6,
        eps: float = 1e-6,
        storage: str = "memory",
        scratch_dir=None,
        stored_state: bool = True,
        state_keys: Sequence[NestedKey] = DEFAULT_STATE_KEYS,
    ):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1 (sequences), got capacity={capacity!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got batch_size={batch_size!r}")
        if storage not in self.STORAGES:
            raise ValueError(f"storage must be one of {self.STORAGES}, got storage={storage!r}")
        check_range("SequenceReplayBuffer", "alpha", alpha, 0.0)
        check_range("SequenceReplayBuffer", "beta", beta, 0.0)
        check_range("SequenceReplayBuffer", "eps", eps, 0.0, lo_open=True)  # a zero priority is never sampled
        self.cutter = SequenceCutter(
            seq_len=seq_len, overlap=overlap, burn_in=burn_in, state_keys=state_keys, stored_state=stored_state
        )
        self.capacity = capacity
        self.storage_kind = storage
        if storage == "memmap":
            store = LazyMemmapStorage(
                capacity, scratch_dir=None if scratch_dir is None else str(scratch_dir), device="cpu"
            )
        else:
            store = LazyTensorStorage(capacity)
        self.sampler = PrioritizedSampler(capacity, alpha=alpha, beta=beta, eps=eps)
        self.batch_size = batch_size
        self.buffer = TensorDictReplayBuffer(storage=store, sampler=self.sampler)
        self.max_priority: float | None = None  # the largest priority written by update_priorities

    def __len__(self) -> int:
        return len(self.buffer)

    def cut(self, batch: TensorDictBase) -> TensorDictBase:
        """The completed sequences ``[N, L]`` of a collector batch (the cutter keeps the unfinished steps)."""
        return self.cutter(batch)

    def add(self, sequences: TensorDictBase, priority: torch.Tensor | None = None) -> int:
        """Stores cut sequences with their initial priorities ``[N]``; returns how many.

        ``priority=None`` gives them the largest priority written so far (PER).
        The shape is checked before anything is stored.
        """
        n = sequences.shape[0]
        if priority is not None:
            priority = torch.as_tensor(priority).detach().to(torch.float32).reshape(-1).cpu()
            if priority.shape != (n,):
                raise ValueError(f"SequenceReplayBuffer.add: `priority` must hold one value per sequence ({n}), "
                                 f"got shape {tuple(priority.shape)}")
            _check_priority(priority)
        if n:
            index = torch.as_tensor(self.buffer.extend(sequences))
            if priority is not None:
                self.buffer.update_priority(index, priority)
            elif self.max_priority is not None:
                self.buffer.update_priority(index, torch.full((n,), self.max_priority))
        return n

    def extend(self, batch: TensorDictBase) -> int:
        """``add(cut(batch))``: the new sequences with the largest priority written so far."""
        return self.add(self.cut(batch))

    def sample(self, batch_size: int | None = None) -> TensorDictBase:
        """``[B, L]`` sequences with ``"index"`` (storage index, ``[B, L]``) and ``"_weight"``."""
        data = self.buffer.sample(self.batch_size if batch_size is None else batch_size)
        data.set("_weight", data.get("priority_weight").clone())
        return data

    def update_priorities(self, index: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
        """Stores the sampled sequences' new priorities, as the loss computed them.

        Args:
            index: the sample's ``"index"`` (``[B]`` or ``[B, L]``).
            priority: ``[B]``, e.g. ``R2D2Loss``'s ``"priority"`` output.

        Returns the ``[B]`` priorities written.
        """
        index = torch.as_tensor(index)
        while index.ndim > 1:
            index = index[..., 0]
        priority = torch.as_tensor(priority).detach().to(torch.float32).cpu()
        if priority.shape != index.shape:
            raise ValueError(f"SequenceReplayBuffer.update_priorities: `index` {tuple(index.shape)} and `priority` "
                             f"{tuple(priority.shape)} must have one entry per sampled sequence")
        _check_priority(priority)
        self.buffer.update_priority(index, priority)
        if priority.numel():
            top = float(priority.max())
            self.max_priority = top if self.max_priority is None else max(self.max_priority, top)
        return priority

    def state_dict(self) -> dict:
        """Buffer (storage, sampler trees as tensors, writer) and cutter; ``weights_only``-loadable."""
        return {
            "buffer": replay_buffer_state(self.buffer),
            "cutter": self.cutter.state_dict(),
            "max_priority": torch.tensor(float("nan") if self.max_priority is None else self.max_priority, dtype=torch.float64),
        }

    def load_state_dict(self, state: dict) -> None:
        storage = self.buffer._storage
        saved = state["buffer"]["_storage"]["_storage"]
        if isinstance(storage, LazyMemmapStorage) and not storage.initialized and len(saved):
            # allocate the memmap files under scratch_dir first (TorchRL would
            # otherwise load into a fresh temporary memmap)
            data = TensorDict().load_state_dict(saved, strict=False)
            storage._init(data[0])
        load_replay_buffer_state(self.buffer, state["buffer"])
        self.cutter.load_state_dict(state["cutter"])
        top = float(state.get("max_priority", float("nan")))
        self.max_priority = None if top != top else top


def _check_priority(priority: torch.Tensor) -> None:
    if not bool(torch.isfinite(priority).all()) or bool((priority < 0).any()):
        raise ValueError("SequenceReplayBuffer: priorities must be finite and >= 0, got "
                         f"min {float(priority.min()):.3g}, max {float(priority.max()):.3g}")
