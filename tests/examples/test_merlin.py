"""MERLIN example end to end: the T-maze and a POPGym task, exact resume, config errors."""
import json
import subprocess
import sys

import pytest
from conftest import ROOT, example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError

SMALL = {
    "env": {"num_envs": 4, "delay": 6},
    "model": {"z_dim": 4, "memory_rows": 12, "hidden": 16, "policy_hidden": 8},
    "collector": {"window": 10, "total_frames": 800},
    "eval": {"interval_frames": 200, "episodes": 2, "max_steps": 20},
    "checkpoint": {"interval_frames": 200},
    "logger": {"progress_bar": False},
}


def _cfg(tmp_path, name="run", **over):
    return OmegaConf.merge(example_config("merlin", SMALL), OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


def test_tmaze_and_popgym_run_and_the_read_weights_plot(merlin, tmp_path):
    summary = merlin.train(_cfg(tmp_path))
    assert summary["frames"] == 800 and summary["final_eval"]["episodes"] == 2
    assert 0.0 <= summary["final_eval_return"] <= 1.0  # T-maze: the success rate
    plot = tmp_path / "weights.png"
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "merlin" / "read_weights.py"), str(tmp_path / "run"),
                          "--out", str(plot)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cue_row"] == 0 and len(result["weight_on_cue_row"]) == 6 + 2 and plot.stat().st_size > 0
    assert all(0.0 < w < 1.0 for w in result["weight_on_cue_row"])
    summary = merlin.train(_cfg(tmp_path, "popgym", env={"name": "popgym:RepeatFirstEasy", "delay": None},
                                collector={"total_frames": 400}))
    assert summary["frames"] == 400


@pytest.mark.parametrize("mode", ["stop", pytest.param("kill", marks=pytest.mark.slow)])
def test_resume_is_exact_with_episode_ends_evaluations_and_updates_after_it(merlin, tmp_path, mode):
    """Stopped, or killed with SIGKILL at a random moment: the resumed run's logs equal the uninterrupted one's."""
    from resume_check import check_resume

    check_resume(merlin.train, _cfg(tmp_path), tmp_path, stop_at=400, script=ROOT / "examples" / "merlin" / "train.py",
                 mode=mode, after={"eval/return.csv": 2, "train/episode_return.csv": 5, "train/kl.csv": 10})


def test_config_errors_name_the_key(merlin, tmp_path):
    with pytest.raises(ConfigError, match="'collector.window'.*an integer >= 2"):
        merlin.train(_cfg(tmp_path, collector={"window": 1}))
    with pytest.raises(ConfigError, match="'env.delay'.*takes no delay"):
        merlin.train(_cfg(tmp_path, env={"name": "popgym:RepeatFirstEasy"}))
    with pytest.raises(ConfigError, match="(?s)'env.name'.*Did you mean: pomdp:tmaze"):
        merlin.train(_cfg(tmp_path, env={"name": "pomdp:tmaz"}))
    with pytest.raises(ConfigError, match="'env.name'.*needs a vector 'observation' and a discrete"):
        merlin.train(_cfg(tmp_path, env={"name": "minatar:Breakout", "delay": None}))
