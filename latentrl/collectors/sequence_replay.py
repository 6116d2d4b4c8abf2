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
* the priorities a buffer stores come from the loss
  (:func:`latentrl.objectives.functional.sequence_priority`).
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
from latentrl.objectives.functional import sequence_priority

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

    New sequences get the largest priority the learner has written so far
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
        eta: max/mean mixture of :func:`sequence_priority`.
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
        eta: float = 0.9,
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
        check_range("SequenceReplayBuffer", "eta", eta, 0.0, 1.0)
        check_range("SequenceReplayBuffer", "eps", eps, 0.0, lo_open=True)  # a zero priority is never sampled
        self.cutter = SequenceCutter(
            seq_len=seq_len, overlap=overlap, burn_in=burn_in, state_keys=state_keys, stored_state=stored_state
        )
        self.capacity = capacity
        self.eta = eta
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

    def extend(self, batch: TensorDictBase, priority_fn=None) -> int:
        """Cuts a collector batch and adds the completed sequences; returns how many.

        ``priority_fn(sequences) -> [N]`` gives the new sequences their initial
        priorities, as R2D2's actors do from their own TD errors (Kapturowski
        et al. 2019, Sec. 2, after Ape-X); without it (or when it returns
        ``None``) they get the largest priority written so far (PER).
        """
        seqs = self.cutter(batch)
        if seqs.shape[0]:
            priority = None if priority_fn is None else priority_fn(seqs)  # None: the default
            if priority is not None:  # checked before anything is added
                priority = torch.as_tensor(priority).detach().to(torch.float32).reshape(-1).cpu()
                if priority.shape != (seqs.shape[0],):
                    raise ValueError(f"priority_fn must return one priority per sequence ({seqs.shape[0]}), got shape {tuple(priority.shape)}")
            index = torch.as_tensor(self.buffer.extend(seqs))
            if priority is not None:
                self.buffer.update_priority(index, priority)
            elif self.max_priority is not None:
                self.buffer.update_priority(index, torch.full((seqs.shape[0],), self.max_priority))
        return seqs.shape[0]

    def sample(self, batch_size: int | None = None) -> TensorDictBase:
        """``[B, L]`` sequences with ``"index"`` (storage index, ``[B, L]``) and ``"_weight"``."""
        data = self.buffer.sample(self.batch_size if batch_size is None else batch_size)
        data.set("_weight", data.get("priority_weight").clone())
        return data

    def update_priorities(self, index: torch.Tensor, td_error: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sets the priorities of the sampled sequences from their TD errors.

        Args:
            index: the sample's ``"index"`` (``[B]`` or ``[B, L]``).
            td_error: ``[B, T]`` n-step TD errors.
            mask: ``[B, T]`` the steps that count (the sample's ``"mask"``, or its
                training part when ``td_error`` covers only those).

        Returns the ``[B]`` priorities written.
        """
        index = torch.as_tensor(index)
        while index.ndim > 1:
            index = index[..., 0]
        priority = sequence_priority(td_error, mask, self.eta)
        if priority.shape != index.shape:
            raise ValueError(f"index {tuple(index.shape)} and td_error {tuple(td_error.shape)} disagree on the batch")
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
