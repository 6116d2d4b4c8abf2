"""DreamerV2 example end to end: dm_control and Atari configs, exact resume, config errors."""
import math

import pytest
from conftest import ROOT, example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError

# 5 actions per collector batch, logs every 20 batches: 200 actions = 40 batches, logged at 100 and 200
SMALL = {
    "threads": 1,
    "env": {"action_repeat": 2, "episode_steps": 40},  # evaluation: 20 actions
    "model": {"deter_dim": 16, "hidden_dim": 16, "num_vars": 4, "num_classes": 4, "units": 16, "layers": 1, "embed_dim": 16, "cnn_channels": 4},
    "loss": {"horizon": 5, "target_update_interval": 10},
    "train": {"total_env_steps": 400, "prefill": 20, "pretrain": 2, "train_every": 5, "batch_size": 4, "seq_len": 8,
              "imagination_starts": 16, "replay_capacity": 2000},
    "eval": {"interval_frames": 100, "episodes": 1},
    "checkpoint": {"interval_frames": 100},
    "logger": {"progress_bar": False},
}
FRAMES = 200


def _cfg(tmp_path, name="run", config_name="config", **over):
    cfg = example_config("dreamer_v2", SMALL, config_name=config_name)
    return OmegaConf.merge(cfg, OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


def _scalars(run_dir):
    root = run_dir / "logs" / "scalars"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.csv"))}


def _steps(csv):
    return [int(float(r.split(",")[0])) for r in csv.splitlines()]


def test_trains_end_to_end(dreamer_v2, tmp_path):
    summary = dreamer_v2.train(_cfg(tmp_path))
    assert summary["frames"] == FRAMES and summary["iterations"] == 40 and not summary["stopped_early"]
    assert isinstance(summary["final_eval_return"], float) and math.isfinite(summary["final_eval_return"])
    logs = _scalars(tmp_path / "run")
    expected = {"train/loss_actor.csv", "train/loss_critic.csv", "train/loss_model_kl.csv", "train/lambda_return.csv",
                "train/model_grad_norm.csv", "train/env_steps.csv", "eval/return.csv"}
    assert expected <= set(logs), sorted(logs)
    assert _steps(logs["train/loss_actor.csv"]) == [100, 200]  # every 20 collector batches
    assert logs["train/env_steps.csv"].splitlines()[-1].split(",")[1].startswith("400")
    assert (tmp_path / "run" / "learning_curve.png").is_file()


def test_all_imagination_starts(dreamer_v2, tmp_path):
    cfg = _cfg(tmp_path, train={"imagination_starts": None, "total_env_steps": 200})
    summary = dreamer_v2.train(cfg)
    assert summary["frames"] == 100
    assert _steps(_scalars(tmp_path / "run")["train/loss_critic.csv"]) == [100]


@pytest.mark.parametrize(
    "mode", ["stop", pytest.param("kill", marks=pytest.mark.slow), pytest.param("kill_during_write", marks=pytest.mark.slow)]
)
def test_resume_at_real_length_and_after_sigkill(dreamer_v2, tmp_path, mode):
    """Stopped, or killed with SIGKILL, with episode ends, evaluations,
    checkpoints and updates after the resume point: identical logs."""
    from resume_check import check_resume

    cfg = OmegaConf.merge(_cfg(tmp_path), {"train": {"total_env_steps": 600}})
    check_resume(
        dreamer_v2.train, cfg, tmp_path, stop_at=120, script=ROOT / "examples" / "dreamer_v2" / "train.py", mode=mode, config_yaml="config.yaml",
        after={"eval/return.csv": 2, "train/episode_return.csv": 4, "train/loss_actor.csv": 2},  # logged every 20 updates
    )


def test_config_errors_name_the_key(dreamer_v2, tmp_path):
    with pytest.raises(ConfigError, match="'train.imagination_starts'.*an integer >= 1 or null"):
        dreamer_v2.train(_cfg(tmp_path, train={"imagination_starts": 0}))
    with pytest.raises(ConfigError, match="'env.name'.*'dmc:domain-task' or 'atari:Game'"):
        dreamer_v2.train(_cfg(tmp_path, env={"name": "gym:CartPole-v1"}))
    with pytest.raises(ConfigError, match="'env.observation_key' \\('pixels'\\) is not an observation"):
        dreamer_v2.train(_cfg(tmp_path, env={"observation_key": "pixels"}))
    with pytest.raises(ConfigError, match="'loss.rho'.*in \\[0, 1\\]"):
        dreamer_v2.train(_cfg(tmp_path, loss={"rho": 2.0}))
    with pytest.raises(ConfigError, match="'train.prefill' \\(4\\) must hold at least one sequence"):
        dreamer_v2.train(_cfg(tmp_path, train={"prefill": 4}))
    with pytest.raises(ConfigError, match="'env.name'"):
        dreamer_v2.train(_cfg(tmp_path, env={"name": "dmc:nope-nothing"}))


def test_atari_config_has_paper_values_and_runs(dreamer_v2, tmp_path):
    base = example_config("dreamer_v2", {}, config_name="atari")
    lo, o = base.loss, base.optim
    assert (lo.kl_scale, lo.free_nats, lo.discount_scale, lo.rho, lo.entropy_coef) == (0.1, 0.0, 5.0, 1.0, 0.001)
    assert (base.model.deter_dim, o.model_lr, o.actor_lr, o.critic_lr, base.env.action_repeat) == (600, 2e-4, 4e-5, 1e-4, 4)
    assert (base.env.name, base.env.observation_key, base.train.imagination_starts) == ("atari:Pong", "pixels", None)
    cfg = _cfg(
        tmp_path, config_name="atari",
        env={"action_repeat": 4, "episode_steps": 80},  # evaluation: 20 actions
        train={"total_env_steps": 4 * 80, "prefill": 40, "pretrain": 1, "train_every": 4, "imagination_starts": None},
        eval={"interval_frames": None, "episodes": 1},
        checkpoint={"interval_frames": None},
    )
    summary = dreamer_v2.train(cfg)
    assert summary["frames"] == 80 and math.isfinite(summary["final_eval_return"])
    assert _steps(_scalars(tmp_path / "run")["train/loss_model_reco.csv"]) == [80]  # 20th batch of 4 actions
