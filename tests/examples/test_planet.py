"""PlaNet example end to end: training, exact resume, config errors."""
import math

import pytest
from conftest import ROOT, example_config
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


@pytest.mark.parametrize(
    "mode", ["stop", pytest.param("kill", marks=pytest.mark.slow), pytest.param("kill_during_write", marks=pytest.mark.slow)]
)
def test_resume_at_real_length_and_after_sigkill(planet, tmp_path, mode):
    """Stopped, or killed with SIGKILL, with episode ends, evaluations,
    checkpoints and updates after the resume point: identical logs."""
    from resume_check import check_resume

    cfg = OmegaConf.merge(_cfg(tmp_path), {"train": {"episodes": 8}})
    check_resume(
        planet.train, cfg, tmp_path, stop_at=30, script=ROOT / "examples" / "planet" / "train.py", mode=mode, config_yaml="config.yaml",
        after={"eval/return.csv": 2, "train/episode_return.csv": 4, "train/kl.csv": 4},
    )


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
