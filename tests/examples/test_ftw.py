"""FTW example end to end: the T-maze with both timescales and the single-timescale control, exact resume, config errors."""
import pytest
from conftest import ROOT, example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError

SMALL = {
    "env": {"num_envs": 4, "delay": 6},
    "model": {"embedding": 8, "fast_hidden": 8, "slow_hidden": 8, "z_dim": 4, "period": 3, "head_hidden": 8},
    "collector": {"window": 10, "total_frames": 800},
    "eval": {"interval_frames": 200, "episodes": 2, "max_steps": 20},
    "checkpoint": {"interval_frames": 200},
    "logger": {"progress_bar": False},
}


def _cfg(tmp_path, name="run", **over):
    return OmegaConf.merge(example_config("ftw", SMALL), OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


def test_tmaze_runs_and_logs_the_kl_terms(ftw, tmp_path):  # model.period=1 (the control) is the same code path
    summary = ftw.train(_cfg(tmp_path))
    assert summary["frames"] == 800 and summary["final_eval"]["episodes"] == 2
    assert 0.0 <= summary["final_eval_return"] <= 1.0  # T-maze: the success rate
    rows = (tmp_path / "run" / "logs" / "scalars" / "train" / "kl_prior.csv").read_text().splitlines()
    assert len(rows) >= 10 and all(float(r.split(",")[1]) > 0 for r in rows)


@pytest.mark.parametrize("mode", ["stop", pytest.param("kill", marks=pytest.mark.slow)])
def test_resume_is_exact_with_episode_ends_evaluations_and_updates_after_it(ftw, tmp_path, mode):
    """Stopped, or killed with SIGKILL at a random moment: the resumed run's logs equal the uninterrupted one's."""
    from resume_check import check_resume

    check_resume(ftw.train, _cfg(tmp_path), tmp_path, stop_at=400, script=ROOT / "examples" / "ftw" / "train.py",
                 mode=mode, after={"eval/return.csv": 2, "train/episode_return.csv": 5, "train/kl.csv": 10})


def test_config_errors_name_the_key(ftw, tmp_path):
    with pytest.raises(ConfigError, match="'model.grad_scale'.*1.5"):
        ftw.train(_cfg(tmp_path, model={"grad_scale": 1.5}))
    with pytest.raises(ConfigError, match="'model.period'.*0"):
        ftw.train(_cfg(tmp_path, model={"period": 0}))
    with pytest.raises(ConfigError, match="'env.delay'.*takes no delay"):
        ftw.train(_cfg(tmp_path, env={"name": "popgym:RepeatFirstEasy"}))
    with pytest.raises(ConfigError, match="'env.name'.*needs a vector 'observation' and a discrete.*FTW agent"):
        ftw.train(_cfg(tmp_path, env={"name": "minatar:Breakout", "delay": None}))
