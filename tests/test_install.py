"""The pinned torch/torchrl pair must load TorchRL's C++ extension.

A mismatched pair (e.g. torchrl 0.14.1 over the torch 2.13.0 CPU wheel) fails
here, loudly, instead of deep inside a prioritized replay run.
"""
import re
from pathlib import Path

import torch
import torchrl
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, PrioritizedSliceSampler, TensorDictReplayBuffer

ROOT = Path(__file__).resolve().parents[1]


def test_prioritized_slice_sampler_samples():
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(200),
        sampler=PrioritizedSliceSampler(max_capacity=200, alpha=0.9, beta=0.6, slice_len=5, traj_key="episode"),
        batch_size=20,
    )
    data = TensorDict({"obs": torch.arange(100.0).unsqueeze(-1), "episode": torch.arange(100) // 10}, [100])
    rb.extend(data)
    sample = rb.sample()
    assert sample.batch_size == (20,)
    # slices of 5 consecutive steps, each within one episode
    obs = sample["obs"].view(4, 5)
    assert torch.equal(obs[:, 1:] - obs[:, :-1], torch.ones(4, 4))
    assert (sample["episode"].view(4, 5) == sample["episode"].view(4, 5)[:, :1]).all()
    # priorities are used: a slice made very likely is sampled (segment tree from the C++ extension)
    rb.update_priority(torch.arange(100), torch.full((100,), 1e-6))
    rb.update_priority(torch.arange(50, 60), torch.full((10,), 1e3))
    assert (rb.sample()["episode"] == 5).float().mean() > 0.9


def test_versions_match_pyproject_pins():
    text = (ROOT / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"(torch|torchrl)==([^"]+)"', text))
    assert torch.__version__.split("+")[0] == pins["torch"]
    assert torchrl.__version__.split("+")[0] == pins["torchrl"]
