"""UPSTREAM.md #3: a prioritized replay buffer's state_dict() holds TorchRL's
C++ segment trees as objects, so torch.load(weights_only=True) refuses the
checkpoint. Ours stores the trees' leaves as tensors."""
import io

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, PrioritizedSliceSampler, TensorDictReplayBuffer

from latentrl.collectors.state import load_replay_buffer_state, replay_buffer_state


def _buffer():
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(64),
        sampler=PrioritizedSliceSampler(max_capacity=64, slice_len=4, traj_key="episode", alpha=0.9, beta=0.6),
        batch_size=8,
    )


def _seeded_sample(rb):
    torch.manual_seed(0)
    np.random.seed(0)  # TorchRL's prioritized sampler draws from numpy's global RNG
    return rb.sample()


def _save_load(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_weights_only_load_of_prioritized_buffer():
    rb = _buffer()
    rb.extend(TensorDict({"x": torch.arange(32.0), "episode": torch.arange(32) // 8}, [32]))
    rb.update_priority(torch.arange(32), torch.linspace(0.1, 3.0, 32))
    with pytest.raises(Exception, match="SegmentTree"):
        _save_load(rb.state_dict())  # TorchRL's state
    restored = _buffer()
    load_replay_buffer_state(restored, _save_load(replay_buffer_state(rb)))  # ours
    expected, got = _seeded_sample(rb), _seeded_sample(restored)
    assert torch.equal(expected["x"], got["x"])
    assert torch.equal(expected["priority_weight"], got["priority_weight"])
