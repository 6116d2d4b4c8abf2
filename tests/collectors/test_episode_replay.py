"""Whole-episode slice replay for world models: slices stay inside one trajectory."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from latentrl.collectors.episode_replay import make_episode_replay, sample_sequences

SEQ, BATCH = 10, 4


def trajectories(lengths: dict[int, int]) -> TensorDict:
    """Collector-like flat steps: trajectory ``k`` of ``n`` steps, step counter ``t``,
    observation ``100 k + t`` (so every stored step is identifiable)."""
    ids = torch.cat([torch.full((n,), k) for k, n in lengths.items()])
    t = torch.cat([torch.arange(n) for n in lengths.values()])
    obs = (100 * ids + t).float().unsqueeze(-1).expand(-1, 3).clone()
    return TensorDict({"collector": {"traj_ids": ids}, "t": t, "observation": obs}, batch_size=[len(t)])


def check_rows(batch: TensorDict):
    assert batch.batch_size == (BATCH, SEQ)
    ids, t = batch["collector", "traj_ids"], batch["t"]
    assert (ids == ids[:, :1]).all(), "a slice crosses trajectories"
    assert (t.diff(dim=1) == 1).all(), "a slice is not consecutive"
    assert torch.equal(batch["observation"][..., 0], (100 * ids + t).float())
    return ids[:, 0], t[:, 0]


def test_slices_never_cross_trajectories():
    torch.manual_seed(0)
    np.random.seed(0)
    rb = make_episode_replay(capacity=200, batch_size=BATCH, seq_len=SEQ)
    rb.extend(trajectories({0: 30, 1: 20}))
    assert len(rb) == 50
    starts = {0: set(), 1: set()}
    for _ in range(60):
        ids, t0 = check_rows(sample_sequences(rb, SEQ))
        for k, s in zip(ids.tolist(), t0.tolist()):
            starts[k].add(s)
    # both trajectories are used, every slice fits inside its trajectory,
    # and the first and last possible slices are drawn
    assert max(starts[0]) == 30 - SEQ and max(starts[1]) == 20 - SEQ
    assert min(starts[0]) == 0 and min(starts[1]) == 0


def test_short_trajectory_never_sampled():
    torch.manual_seed(0)
    np.random.seed(0)
    rb = make_episode_replay(capacity=200, batch_size=BATCH, seq_len=SEQ)
    rb.extend(trajectories({0: 30, 2: 5, 1: 20}))  # id 2 (5 steps) sits between the long ones
    seen = set()
    for _ in range(60):
        ids, _ = check_rows(sample_sequences(rb, SEQ))
        seen.update(ids.tolist())
    assert seen == {0, 1}


@pytest.mark.parametrize(
    "capacity, batch_size, seq_len",
    [(100, 4, 0), (5, 4, 10), (100, 0, 10), (100, 4, -1)],
)
def test_bad_arguments(capacity, batch_size, seq_len):
    with pytest.raises(ValueError, match="make_episode_replay"):
        make_episode_replay(capacity=capacity, batch_size=batch_size, seq_len=seq_len)


def test_capacity_equal_to_seq_len_is_accepted():
    rb = make_episode_replay(capacity=SEQ, batch_size=1, seq_len=SEQ)
    rb.extend(trajectories({7: SEQ}))
    out = sample_sequences(rb, SEQ)
    assert out.batch_size == (1, SEQ) and out["t"].tolist() == [list(range(SEQ))]


def test_a_stream_key_samples_consecutive_slices_across_episode_ends():
    """DreamerV3's replay: one env's steps share a stream id, so slices run through episode ends."""
    torch.manual_seed(0)
    np.random.seed(0)
    rb = make_episode_replay(capacity=200, batch_size=BATCH, seq_len=SEQ, traj_key="stream")
    data = trajectories({0: 4, 1: 3, 2: 7, 3: 6})  # every episode shorter than a slice
    data.set("stream", torch.zeros(20, dtype=torch.long))
    data.set("index", torch.arange(20))
    rb.extend(data)
    crossed = 0
    for _ in range(30):
        batch = sample_sequences(rb, SEQ)
        assert (batch["index"].diff(dim=1) == 1).all(), "a slice is not consecutive in storage"
        crossed += int((batch["collector", "traj_ids"].diff(dim=1) != 0).any(-1).sum())
    assert crossed > 0
