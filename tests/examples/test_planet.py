"""PlaNet example end to end: training, exact resume, config errors."""
import math

import pytest
from conftest import example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError

# an "episode" (one collector batch) is episode_steps / action_repeat = 10 actions;
# 2 seed episodes + 2 planner episodes = 40 actions (320 env steps)
SMALL = {
    "threads": 1,
    "env": {"action_repeat": 8, "episode_steps": 80},
    "model": {"deter_dim": 16, "hidden_dim": 16, "stoch_dim": 4, "units": 16, "layers": 1, "embed_dim": 16},
    "train": {"seed_episodes": 2, "episodes": 4, "updates_per_episode": 2, "batch_size": 4, "seq_len": 8, "replay_capacity": 2000},
    "planner": {"horizon": 3, "iterations": 2, "candidates": 20, "top_k": 4},
    "eval": {"interval_frames": 20, "episodes": 1},
    "checkpoint": {"interval_frames": 20},
    "logger": {"progress_bar": False},
}
FRAMES = 40


def _cfg(tmp_path, name="run", **over):
    cfg = example_config("planet", SMALL)
    return OmegaConf.merge(cfg, OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


def _scalars(run_dir):
    root = run_dir / "logs" / "scalars"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.csv"))}


def test_trains_end_to_end(planet, tmp_path):
    summary = planet.train(_cfg(tmp_path))
    assert summary["frames"] == FRAMES and not summary["stopped_early"]
    assert isinstance(summary["final_eval_return"], float) and math.isfinite(summary["final_eval_return"])
    logs = _scalars(tmp_path / "run")
    assert {"train/kl.csv", "train/reco_nll.csv", "train/reward_nll.csv", "train/grad_norm.csv", "eval/return.csv"} <= set(logs)
    # one row after the last seed episode and after each planner episode
    assert [r.split(",")[0] for r in logs["train/kl.csv"].splitlines()] == ["20", "30", "40"]
    assert (tmp_path / "run" / "learning_curve.png").is_file()


def test_resume_is_exact(planet, tmp_path):
    """A run stopped mid-episode and resumed logs what the full run logs.

    Needs the collector's dm_control simulator state in the checkpoint: without it
    (``latentrl.envs.snapshot`` raises SnapshotUnsupported for dm_control, the harness
    warns and the resumed env restarts its episode) the rows after the stop differ.
    """
    planet.train(_cfg(tmp_path, "full"))
    stopped = planet.train(_cfg(tmp_path, "split", checkpoint={"stop_at_frames": 30}))  # after the first planner episode
    assert stopped["stopped_early"] and stopped["frames"] == 30
    resumed = planet.train(_cfg(tmp_path, "x", checkpoint={"resume": str(tmp_path / "split")}))
    assert resumed["frames"] == FRAMES
    a, b = _scalars(tmp_path / "full"), _scalars(tmp_path / "split")
    assert "train/kl.csv" in a and set(a) == set(b)
    for name in a:
        assert a[name] == b[name], name


def test_config_errors_name_the_key(planet, tmp_path):
    with pytest.raises(ConfigError, match=r"'planner.top_k' \(30\) must be <= 'planner.candidates' \(20\)"):
        planet.train(_cfg(tmp_path, planner={"top_k": 30}))
    with pytest.raises(ConfigError, match="'env.name'.*'dmc:domain-task'"):
        planet.train(_cfg(tmp_path, env={"name": "gym:Pendulum-v1"}))
    with pytest.raises(ConfigError, match=r"'train.seed_episodes' \(4\) must be < 'train.episodes' \(4\)"):
        planet.train(_cfg(tmp_path, train={"seed_episodes": 4}))
    with pytest.raises(ConfigError, match=r"'env.action_repeat' \(3\) must divide 'env.episode_steps' \(80\)"):
        planet.train(_cfg(tmp_path, env={"action_repeat": 3}))
    with pytest.raises(ConfigError, match=r"'train.seq_len' \(12\) exceeds the episode length \(10 actions\)"):
        planet.train(_cfg(tmp_path, train={"seq_len": 12}))
    with pytest.raises(ConfigError, match="'env.name'"):
        planet.train(_cfg(tmp_path, env={"name": "dmc:nope-nothing"}))
    with pytest.raises(ConfigError, match="'model.layers'"):
        planet.train(_cfg(tmp_path, model={"layers": -1}))
