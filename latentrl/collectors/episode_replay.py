"""Replay of whole-episode slices for world models (PlaNet, Dreamer).

PlaNet and Dreamer train on batches of ``B`` sequences of ``L`` consecutive
steps drawn uniformly from stored episodes (PlaNet: B = L = 50, Hafner et al.
2019, Algorithm 1; DreamerV2: 16 x 50). TorchRL's ``SliceSampler`` already
draws such slices from a flat storage of collector output, keyed by the
collector's trajectory ids; :func:`make_episode_replay` sets it up and
:func:`sample_sequences` returns the batch as ``[B, L]``.
"""
from __future__ import annotations

from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

__all__ = ["make_episode_replay", "sample_sequences"]


def make_episode_replay(capacity: int, batch_size: int, seq_len: int, *, device="cpu") -> TensorDictReplayBuffer:
    """A buffer of ``capacity`` steps sampling ``batch_size`` slices of ``seq_len`` steps.

    Slices never cross an episode (``strict_length``: shorter episodes are
    not sampled). Extend it with collector batches flattened to ``[N]``.
    """
    if batch_size < 1 or seq_len < 1 or capacity < seq_len:
        raise ValueError(
            f"make_episode_replay: need batch_size >= 1, seq_len >= 1 and capacity >= seq_len; "
            f"got {batch_size}, {seq_len}, {capacity}"
        )
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(int(capacity), device=device),
        sampler=SliceSampler(slice_len=int(seq_len), traj_key=("collector", "traj_ids"), strict_length=True),
        batch_size=int(batch_size) * int(seq_len),
    )


def sample_sequences(replay: TensorDictReplayBuffer, seq_len: int) -> TensorDictBase:
    """One batch ``[B, L]`` (time last) from :func:`make_episode_replay`."""
    return replay.sample().reshape(-1, int(seq_len))
