"""Checkpoints: safe loading, RNG states, replay buffers, NaN guard, resume rules."""
import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torchrl.data import (
    LazyTensorStorage,
    PrioritizedSliceSampler,
    TensorDictReplayBuffer,
)

from latentrl.harness import (
    CheckpointError,
    ConfigError,
    Experiment,
    NonFiniteLossError,
    load_checkpoint,
    rng_state,
    set_rng_state,
)


def _cfg(tmp_path, **over):
    base = {
        "name": "t",
        "seed": 3,
        "threads": 1,
        "run_dir": str(tmp_path / "run"),
        "lr": 0.1,
        "logger": {"backend": "csv", "project": "p", "progress_bar": False},
        "eval": {"interval_frames": None},
        "checkpoint": {"interval_frames": None, "resume": None, "stop_at_frames": None},
    }
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(over))


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(()).item()


def test_rng_state_roundtrip_through_weights_only(tmp_path):
    state = rng_state()
    expected = _draws()
    torch.save(state, tmp_path / "rng.pt")
    _draws()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == expected


def _buffer():
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(100),
        sampler=PrioritizedSliceSampler(max_capacity=100, alpha=0.9, beta=0.6, slice_len=4, traj_key="episode"),
        batch_size=8,
    )


def test_models_optimizer_and_prioritized_buffer_resume(tmp_path):
    exp = Experiment(_cfg(tmp_path))
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    rb = _buffer()
    rb.extend(TensorDict({"x": torch.randn(40, 3), "episode": torch.arange(40) // 8}, [40]))
    rb.update_priority(torch.arange(40), torch.rand(40) + 0.1)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    exp.track(net=net, optimizer=opt, replay_buffer=rb)
    exp.counters["frames"] = 40
    path = exp.save()
    expected_sample = rb.sample()["x"]  # first draw after the checkpoint
    expected_weight = net.weight.detach().clone()

    # a fresh process: new objects, other random state, then resume
    torch.manual_seed(123)
    exp2 = Experiment(_cfg(tmp_path, checkpoint={"resume": str(path)}))
    net2, rb2 = torch.nn.Linear(3, 2), _buffer()
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.1)
    exp2.track(net=net2, optimizer=opt2, replay_buffer=rb2)
    assert exp2.restore()
    assert torch.equal(net2.weight, expected_weight)
    assert opt2.state_dict()["state"][0]["step"] == 1
    assert len(rb2) == 40 and exp2.counters["frames"] == 40
    assert torch.equal(rb2.sample()["x"], expected_sample)


def test_checkpoint_loads_with_weights_only_only(tmp_path):
    exp = Experiment(_cfg(tmp_path))
    exp.track(net=torch.nn.Linear(2, 2))
    path = exp.save()
    payload = load_checkpoint(path)  # weights_only=True inside
    assert set(payload) >= {"config", "objects", "counters", "rng", "history"}
    assert load_checkpoint(tmp_path / "run")["counters"] == payload["counters"]  # a run dir works too
    with pytest.raises(CheckpointError, match="nothing.pt: no such file"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_nonfinite_loss_saves_then_stops_naming_the_term(tmp_path):
    exp = Experiment(_cfg(tmp_path))
    net = torch.nn.Linear(2, 2)
    exp.track(net=net)
    exp.counters["frames"] = 4096
    exp.check_finite({"loss_actor": torch.tensor(1.0), "entropy": torch.tensor(float("nan"))})  # not a loss term
    with pytest.raises(NonFiniteLossError) as err:
        exp.check_finite(TensorDict({"loss_actor": torch.tensor(1.0), "loss_critic": torch.tensor(float("inf"))}, []))
    msg = str(err.value)
    assert "frame 4096" in msg and "loss_critic = inf" in msg and "loss_actor" not in msg
    saved = load_checkpoint(err.value.checkpoint)
    assert torch.equal(saved["objects"]["net"]["weight"], net.weight)


def test_resume_with_changed_config_names_the_keys(tmp_path):
    exp = Experiment(_cfg(tmp_path))
    exp.track(net=torch.nn.Linear(2, 2))
    path = exp.save()
    with pytest.raises(ConfigError, match="lr: checkpoint 0.1, now 0.5"):
        Experiment(_cfg(tmp_path, lr=0.5, checkpoint={"resume": str(path)}))
    Experiment(_cfg(tmp_path, checkpoint={"resume": str(path), "stop_at_frames": 10}))  # allowed to change


def test_missing_tracked_state_is_reported(tmp_path):
    exp = Experiment(_cfg(tmp_path))
    exp.track(net=torch.nn.Linear(2, 2))
    path = exp.save()
    exp2 = Experiment(_cfg(tmp_path, checkpoint={"resume": str(path)}))
    exp2.track(net=torch.nn.Linear(2, 2), other=torch.nn.Linear(2, 2))
    with pytest.raises(KeyError, match="other"):
        exp2.restore()


def test_track_rejects_stateless_objects(tmp_path):
    with pytest.raises(TypeError, match="'thing'"):
        Experiment(_cfg(tmp_path)).track(thing=object())


def test_missing_logger_package_is_a_config_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match="logger.backend='wandb' needs the wandb package"):
        Experiment(_cfg(tmp_path, logger={"backend": "wandb"}))
