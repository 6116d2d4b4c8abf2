r"""Cutting TorchRL collector batches into R2D2's overlapping stored-state sequences (Kapturowski et al. 2019,
Section 2-3), for :class:`~latentrl.collectors.sequence_replay.SequenceReplayBuffer`.

Layout of one sequence
----------------------
Training start ``t0`` (episode step index) takes the values ``0, stride,
2*stride, ...`` with ``stride = seq_len - overlap``. Example
``burn_in=2, seq_len=4, overlap=2`` (``L=6``, ``stride=2``) over an episode of
7 steps ``s0 .. s6`` whose final next-observation is ``x7``::

    position j        0    1  |  2    3    4    5
                    burn-in   |     training
    t0 = 0          pad  pad  |  s0   s1   s2   s3      left padding
    t0 = 2          s0   s1   |  s2   s3   s4   s5
    t0 = 4          s2   s3   |  s4   s5   s6   x7      x7: bootstrap position
    (t0 = 6 is not emitted: 6 + overlap >= 7, its steps are all in t0 = 4)

    t0 = 4:  valid      T    T  |  T    T    T    F
             mask       F    F  |  T    T    T    F
             bootstrap  F    F  |  F    F    F    T
             is_init    T    F  |  F    F    F    F
             episode_step 2  3  |  4    5    6   -1

* positions ``[burn_in, L)`` hold episode steps ``t0 .. t0+seq_len-1``,
  positions ``[0, burn_in)`` hold ``t0-burn_in .. t0-1``;
* ``"valid"``: a real step (burn-in or training); ``"mask"``: a real *training*
  step (the ones a loss and the priority use);
* padding positions (before the episode's start, after its end) hold zeros /
  ``False``; ``"episode_step"`` is ``-1`` there;
* ``"bootstrap"``: the first position after the episode's final step, when it
  lies inside the sequence, holds that step's *next* observation entries
  (every key under ``"next"`` that also exists at the root, except
  ``reward``/``done``/``terminated``/``truncated``, the recurrent state after
  the final step included), so a learner can evaluate ``Q`` at the final next
  state (needed to bootstrap at truncation). Its ``"next"`` entries, reward
  and flags stay zero, ``"valid"`` and ``"mask"`` are ``False``;
* ``"is_init"`` is ``True`` only at the first valid position, where the
  learner's LSTM starts from the stored state (TorchRL's ``LSTMModule`` in
  recurrent mode reads the state stored at the first step of each
  ``is_init``-delimited segment);
* the recurrent state keys hold, at every step, the state the actor had
  before processing it; with ``stored_state=False`` (the paper's zero-state
  ablation) the state at the first valid position is zeroed;
* ``"env_index"``: which env (row of the collector batch) the sequence came from.

Everything of the collector's batch is kept (``"next"`` included), so next
observations are stored twice (as ``"next"`` of a step and as the observation
of the following step).

A sequence is emitted as soon as its last training step is collected or its
episode ends (``("next", "done")``, or ``"is_init"`` on the following step).
An env whose first collected step is not an episode start (a cutter attached
to a running collector) counts episode steps from there.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

__all__ = ["SequenceCutter", "DEFAULT_STATE_KEYS"]

DEFAULT_STATE_KEYS = ("recurrent_state_h", "recurrent_state_c")
# entries under "next" that describe the transition, not the next state: never
# copied to the bootstrap position
_TRANSITION_ENTRIES = ("reward", "done", "terminated", "truncated")
_STATE_VERSION = 1


def _as_key_tuple(key: NestedKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _any_per_step(flag: torch.Tensor) -> torch.Tensor:
    """``[E, T, *F]`` flags -> ``[E, T]`` bool on CPU (any over the feature dims)."""
    flag = flag.bool()
    return (flag.flatten(2).any(-1) if flag.ndim > 2 else flag).cpu()


def _check_layout(seq_len, overlap, burn_in) -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be an integer >= 1, got seq_len={seq_len!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < seq_len:
        raise ValueError(
            f"overlap must be an integer with 0 <= overlap < seq_len (= {seq_len}), got overlap={overlap!r}"
        )
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise ValueError(f"burn_in must be an integer >= 0, got burn_in={burn_in!r}")


class _Windows(NamedTuple):
    """The W sequences of one env's episode that are complete now, each of L = burn-in + length steps."""

    env: int  # the env's index in the batch
    step: torch.Tensor  # [W, L] the episode step of each position (may be < 0 or >= length: padding)
    valid: torch.Tensor  # [W, L] the position holds a step of the episode
    rows: torch.Tensor  # [W, L] the positions' rows in the source (0 where not valid)
    final: int  # the source row of the episode's latest step
    length: int  # the episode's steps so far
    ended: bool  # the episode ended with the latest step


class _Episode:
    """Where the steps of one env's running episode are, and what is still to emit.

    Episode steps ``start .. start+n_old-1`` sit at rows ``old_base ..`` of the
    call's source table (the kept steps of earlier calls), steps
    ``start+n_old .. length-1`` at rows ``new_base ..`` (this call's batch).
    """

    __slots__ = ("open", "start", "next_t0", "n_old", "old_base", "n_new", "new_base")

    def __init__(self):
        self.open = False  # an episode is running
        self.start = 0  # episode step index of the first kept step
        self.next_t0 = 0  # training start of the next sequence to emit
        self.n_old = self.old_base = self.n_new = self.new_base = 0

    @property
    def length(self) -> int:
        return self.start + self.n_old + self.n_new

    def rows(self, step: torch.Tensor) -> torch.Tensor:
        """Source rows of episode steps ``step`` (each in ``[start, length)``)."""
        k = step - self.start
        return torch.where(k < self.n_old, self.old_base + k, self.new_base + k - self.n_old)


class SequenceCutter:
    """Cuts collector batches into R2D2 sequences (layout: module docstring).

    Args:
        seq_len: training steps per sequence (R2D2: 80).
        overlap: training steps shared by adjacent sequences of an episode
            (R2D2: 40); ``0 <= overlap < seq_len``.
        burn_in: steps before the training part used to warm up the LSTM
            (R2D2: 40).
        state_keys: the recurrent-state entries written by the actor
            (TorchRL's ``LSTMModule`` + primer: ``recurrent_state_h/_c``).
        stored_state: ``True``: keep the actor's state ("stored state");
            ``False``: zero it at the first valid position of each sequence
            (the paper's zero-state strategy).

    ``cutter(batch)`` returns every sequence completed by ``batch``
    (``TensorDict [N, L]``, ``N`` may be 0). The batch is ``[num_envs, T]``
    (``[T]`` for one env; leading dims beyond two are flattened into envs), time
    last, and each env continues where the previous call left it. It needs
    ``"is_init"``, ``("next", "done")`` and the state keys.
    """

    def __init__(
        self,
        seq_len: int = 80,
        overlap: int = 40,
        burn_in: int = 40,
        state_keys: Sequence[NestedKey] = DEFAULT_STATE_KEYS,
        stored_state: bool = True,
    ):
        _check_layout(seq_len, overlap, burn_in)
        if isinstance(state_keys, str):
            state_keys = (state_keys,)
        self.seq_len = seq_len
        self.overlap = overlap
        self.burn_in = burn_in
        self.state_keys = tuple(_as_key_tuple(k) for k in state_keys)
        self.stored_state = bool(stored_state)
        self._episodes: list[_Episode] | None = None
        self._kept: TensorDictBase | None = None  # [S] the steps later sequences need, env by env

    @property
    def stride(self) -> int:
        """Distance between the training starts of adjacent sequences: ``seq_len - overlap``."""
        return self.seq_len - self.overlap

    @property
    def sequence_length(self) -> int:
        """``L = burn_in + seq_len``."""
        return self.burn_in + self.seq_len

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(seq_len={self.seq_len}, overlap={self.overlap}, burn_in={self.burn_in}, "
            f"state_keys={self.state_keys}, stored_state={self.stored_state})"
        )

    # ------------------------------------------------------------------ input
    def _check_batch(self, batch) -> TensorDictBase:
        if not isinstance(batch, TensorDictBase):
            raise TypeError(f"{type(self).__name__} expects a TensorDict batch, got {type(batch).__name__}")
        if batch.ndim == 0:
            raise ValueError(
                "batch has no time dimension (batch_size=[]); expected a collector batch with batch_size "
                "[num_envs, T] or [T], time last"
            )
        names = batch.names if batch._has_names() else None
        if names is not None and "time" in names and names[-1] != "time":
            raise ValueError(f"the time dimension must be the last one, got batch names {names}")
        keys = set(batch.keys(include_nested=True, leaves_only=True))
        keys = {_as_key_tuple(k) for k in keys}
        required = [("is_init",), ("next", "done"), *self.state_keys]
        missing = [k for k in required if k not in keys]
        if missing:
            raise ValueError(
                f"batch is missing the entries {[k[0] if len(k) == 1 else k for k in missing]} "
                f"(required: 'is_init', ('next', 'done') and state_keys={list(self.state_keys)}); "
                f"it has {sorted(keys)}"
            )
        if names is not None:  # sequences [N, L] have no "time" dim: drop the names on a shallow copy
            batch = batch.copy()
            batch.names = None
        if batch.ndim == 1:
            batch = batch.unsqueeze(0)
        elif batch.ndim > 2:
            batch = batch.reshape(-1, batch.shape[-1])
        return batch

    @staticmethod
    def _bootstrap_keys(batch: TensorDictBase) -> list[tuple[str, ...]]:
        root = {_as_key_tuple(k) for k in batch.exclude("next").keys(include_nested=True, leaves_only=True)}
        out = []
        for key in batch.get("next").keys(include_nested=True, leaves_only=True):
            key = _as_key_tuple(key)
            if key[-1] in _TRANSITION_ENTRIES:
                continue
            if key in root:
                out.append(key)
        return out

    # ----------------------------------------------------------------- cutting
    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        batch = self._check_batch(batch)
        num_envs, T = batch.shape
        if self._episodes is None:
            self._episodes = [_Episode() for _ in range(num_envs)]
        elif len(self._episodes) != num_envs:
            raise ValueError(
                f"batch has {num_envs} envs but the previous batches had {len(self._episodes)}; "
                "each row of the batch must continue the same env"
            )
        # One source table, one gather: row 0 is zeros (padding), then the
        # steps kept from earlier calls, then this batch (env-major).
        zero = self._zero_row(batch)
        kept = 0 if self._kept is None else self._kept.shape[0]
        parts = [zero, batch.reshape(num_envs * T)]
        if kept:
            parts.insert(1, self._kept)
        source = torch.cat(parts, 0)
        is_init, done = (_any_per_step(batch.get(key)) for key in ("is_init", ("next", "done")))

        windows: list[_Windows | None] = []
        keep: list[torch.Tensor] = []  # source rows of the steps kept for the next call
        for env, ep in enumerate(self._episodes):
            starts = is_init[env].clone()
            starts[1:] |= done[env, :-1]
            if not ep.open and T:
                starts[0] = True
            bounds = sorted({0, *starts.nonzero().flatten().tolist(), T})
            for a, b in zip(bounds[:-1], bounds[1:]):
                if starts[a]:
                    if ep.open:  # the running episode ended without a done flag
                        windows.append(self._windows(ep, env, ended=True))
                    ep.open, ep.start, ep.next_t0, ep.n_old = True, 0, 0, 0
                ep.n_new, ep.new_base = b - a, 1 + kept + env * T + a
                ended = bool(done[env, b - 1]) or b < T
                windows.append(self._windows(ep, env, ended=ended))
                if ended:
                    ep.open = False
            if ep.open:  # keep the steps from next_t0 - burn_in on
                keep_from = max(ep.start, ep.next_t0 - self.burn_in)
                keep.append(ep.rows(torch.arange(keep_from, ep.length)))
                ep.start = keep_from
            else:
                keep.append(torch.zeros(0, dtype=torch.long))
        offsets = torch.tensor([0, *(k.numel() for k in keep)]).cumsum(0).tolist()
        for ep, offset, k in zip(self._episodes, offsets, keep):  # rows in the next call's source
            ep.old_base, ep.n_old, ep.n_new = 1 + offset, k.numel(), 0
        rows = torch.cat(keep)
        self._kept = source[rows.to(source.device)] if rows.numel() else None

        windows = [w for w in windows if w is not None]
        if not windows:
            return self._empty_like(batch)
        return self._gather(source, windows)

    def _windows(self, ep: _Episode, env: int, ended: bool) -> _Windows | None:
        """The sequences of ``ep`` complete now (``None``: none)."""
        n = ep.length
        starts = []
        t0 = ep.next_t0
        while t0 + self.seq_len <= n or (ended and (t0 == 0 or t0 + self.overlap < n)):
            starts.append(t0)
            t0 += self.stride
        ep.next_t0 = t0
        if not starts:
            return None
        step = torch.tensor(starts).unsqueeze(-1) - self.burn_in + torch.arange(self.sequence_length)  # [W, L]
        valid = (step >= 0) & (step < n)
        if bool((step[valid] < ep.start).any()):  # pragma: no cover - invariant of the trimming
            raise RuntimeError("SequenceCutter dropped steps a sequence still needs")
        rows = torch.where(valid, ep.rows(step.clamp(ep.start, n - 1)), 0)
        final = int(ep.rows(torch.tensor(n - 1)))
        return _Windows(env=env, step=step, valid=valid, rows=rows, final=final, length=n, ended=ended)

    def _gather(self, source: TensorDictBase, windows: list[_Windows]) -> TensorDictBase:
        L, device = self.sequence_length, source.device
        step = torch.cat([w.step for w in windows])
        valid = torch.cat([w.valid for w in windows])
        rows = torch.cat([w.rows for w in windows])
        per_window = lambda name: torch.cat([torch.full((w.step.shape[0],), getattr(w, name)) for w in windows])  # noqa: E731
        env, length, final, ended = (per_window(name) for name in ("env", "length", "final", "ended"))
        bootstrap = (step == length[:, None]) & ended[:, None]
        out = source[rows.to(device)]  # [N, L]; padding and bootstrap positions: zeros
        if bootstrap.any():
            where, boot_rows = bootstrap.to(device), final[bootstrap.any(-1)].to(device)
            for key in self._bootstrap_keys(source):
                out.get(key)[where] = source.get(("next", *key))[boot_rows]
        N = step.shape[0]
        first = valid.long().argmax(-1)  # first valid position of each sequence
        n_idx = torch.arange(N)
        is_init = torch.zeros(N, L, dtype=torch.bool)
        is_init[n_idx, first] = True
        old = out.get("is_init")
        out.set("is_init", is_init.reshape(N, L, *([1] * (old.ndim - 2))).expand_as(old).to(device).clone())
        if not self.stored_state:
            for key in self.state_keys:
                out.get(key)[n_idx.to(device), first.to(device)] = 0
        out.set("valid", valid.to(device))
        out.set("mask", (valid & (torch.arange(L) >= self.burn_in)).to(device))
        out.set("bootstrap", bootstrap.to(device))
        out.set("episode_step", torch.where(valid, step, -1).to(device))
        out.set("env_index", env[:, None].expand(N, L).to(device).clone())
        return out

    @staticmethod
    def _zero_row(batch: TensorDictBase) -> TensorDictBase:
        """``[1]``: one step of zeros with the batch's entries (also for ``T = 0``)."""
        return batch[0, :0].apply(lambda x: x.new_zeros((1, *x.shape[1:])), batch_size=[1])

    def _empty_like(self, batch: TensorDictBase) -> TensorDictBase:
        L, device = self.sequence_length, batch.device
        template = self._zero_row(batch)
        out = template[torch.zeros(0, L, dtype=torch.long, device=device)]
        for key in ("valid", "mask", "bootstrap"):
            out.set(key, torch.zeros(0, L, dtype=torch.bool, device=device))
        for key in ("episode_step", "env_index"):
            out.set(key, torch.zeros(0, L, dtype=torch.long, device=device))
        return out

    # ------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forgets all pending steps (the next batch starts new episodes)."""
        self._episodes = None
        self._kept = None

    def state_dict(self) -> dict:
        """The pending steps of every env: tensors, ints and dicts only
        (``torch.load(weights_only=True)`` accepts it)."""
        envs = None
        if self._episodes is not None:
            envs = [
                {"open": ep.open, "start": ep.start, "next_t0": ep.next_t0, "old_base": ep.old_base, "n_old": ep.n_old}
                for ep in self._episodes
            ]
        return {
            "version": _STATE_VERSION,
            "layout": {"seq_len": self.seq_len, "overlap": self.overlap, "burn_in": self.burn_in},
            "envs": envs,
            "kept": None if self._kept is None else self._kept.to_dict(),
            "num_kept": 0 if self._kept is None else self._kept.shape[0],
        }

    def load_state_dict(self, state: dict) -> None:
        layout = {"seq_len": self.seq_len, "overlap": self.overlap, "burn_in": self.burn_in}
        if state.get("layout") != layout:
            raise ValueError(f"state was saved by a cutter with layout {state.get('layout')}, this one has {layout}")
        self.reset()
        if state["envs"] is None:
            return
        episodes = []
        for entry in state["envs"]:
            ep = _Episode()
            ep.open, ep.start, ep.next_t0 = bool(entry["open"]), int(entry["start"]), int(entry["next_t0"])
            ep.old_base, ep.n_old = int(entry["old_base"]), int(entry["n_old"])
            episodes.append(ep)
        self._episodes = episodes
        if state["kept"] is not None:
            self._kept = TensorDict.from_dict(state["kept"], batch_size=[int(state["num_kept"])])
