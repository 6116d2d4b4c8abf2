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


def make_episode_replay(capacity: int, batch_size: int, seq_len: int, *, device="cpu",
                        traj_key=("collector", "traj_ids")) -> TensorDictReplayBuffer:
    """A buffer of ``capacity`` steps sampling ``batch_size`` slices of ``seq_len`` steps.

    Slices never cross a change of ``traj_key`` (``strict_length``: shorter
    runs are not sampled). With the default, the collector's trajectory ids,
    a slice stays inside one episode (PlaNet, DreamerV2). DreamerV3's replay
    samples chunks across episode ends (``is_init`` marks the resets): give
    every step of one env's stream the same id under ``traj_key`` (e.g. a
    constant ``"stream"`` for one env). Such a slice could cross the write
    cursor once the storage wraps around; keep ``capacity`` at or above the
    steps a run stores. Extend it with collector batches flattened to ``[N]``.
    """
    if batch_size < 1 or seq_len < 1 or capacity < seq_len:
        raise ValueError(
            f"make_episode_replay: need batch_size >= 1, seq_len >= 1 and capacity >= seq_len; "
            f"got {batch_size}, {seq_len}, {capacity}"
        )
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(int(capacity), device=device),
        sampler=SliceSampler(slice_len=int(seq_len), traj_key=traj_key, strict_length=True),
        batch_size=int(batch_size) * int(seq_len),
    )


def sample_sequences(replay: TensorDictReplayBuffer, seq_len: int) -> TensorDictBase:
    """One batch ``[B, L]`` (time last) from :func:`make_episode_replay`."""
    return replay.sample().reshape(-1, int(seq_len))
