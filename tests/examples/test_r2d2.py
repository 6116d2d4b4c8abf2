"""R2D2 example end to end: variants (LSTM, feed-forward, zero state), worker processes, exact resume, errors, other configs."""
import pytest
from conftest import ROOT, example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError

SMALL = {
    "env": {"envs_per_worker": 4},
    "model": {"mlp_hidden": [16], "lstm_hidden": 16, "head_hidden": 16},
    "actors": {"frames_per_batch": 40, "total_frames": 800},
    "replay": {"capacity": 300, "seq_len": 8, "overlap": 4, "burn_in": 4, "batch_size": 8, "min_sequences": 10, "updates_per_batch": 2},
    "loss": {"target_update_interval": 20},
    "eval": {"interval_frames": 400, "episodes": 2, "max_steps": 60, "delta_q_episodes": 4},
    "checkpoint": {"interval_frames": 400},
    "logger": {"progress_bar": False},
}


def _cfg(tmp_path, name="run", config_name="config", **over):
    cfg = example_config("r2d2", SMALL, config_name=config_name)
    return OmegaConf.merge(cfg, OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


def _scalars(run_dir):
    root = run_dir / "logs" / "scalars"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.csv"))}


def test_trains_and_measures_delta_q(r2d2, tmp_path):
    summary = r2d2.train(_cfg(tmp_path))
    assert summary["frames"] == 800 and summary["final_eval_return"] > 0
    logs = _scalars(tmp_path / "run")
    assert {"train/loss.csv", "train/priority_mean.csv", "eval/delta_q_first.csv", "eval/delta_q_last.csv"} <= set(logs)


@pytest.mark.parametrize(
    "variant",
    [{"model": {"feedforward": True}}, {"replay": {"stored_state": False, "burn_in": 0}}, {"env": {"num_workers": 2, "envs_per_worker": 2}}],
    ids=["feedforward", "zero_state", "two_workers"],
)
def test_variants_run(r2d2, tmp_path, variant):
    summary = r2d2.train(_cfg(tmp_path, **variant))
    assert summary["frames"] == 800
    assert "train/loss.csv" in _scalars(tmp_path / "run")


@pytest.mark.parametrize(
    "mode", ["stop", pytest.param("kill", marks=pytest.mark.slow), pytest.param("kill_during_write", marks=pytest.mark.slow)]
)
def test_resume_at_real_length_and_after_sigkill(r2d2, tmp_path, mode):
    """Stopped, or killed with SIGKILL, with episode ends, evaluations,
    checkpoints and updates after the resume point: identical logs."""
    from resume_check import check_resume

    cfg = OmegaConf.merge(_cfg(tmp_path), {"actors": {"total_frames": 1200}, "eval": {"interval_frames": 200}, "checkpoint": {"interval_frames": 200}})
    check_resume(
        r2d2.train, cfg, tmp_path, stop_at=400, script=ROOT / "examples" / "r2d2" / "train.py", mode=mode, config_yaml="config.yaml",
        after={"eval/return.csv": 4, "train/episode_return.csv": 5, "train/loss.csv": 10},
    )


def test_config_errors_name_the_key(r2d2, tmp_path):
    with pytest.raises(ConfigError, match=r"'replay.overlap' \(8\) must be smaller than 'replay.seq_len' \(8\)"):
        r2d2.train(_cfg(tmp_path, replay={"overlap": 8}))
    with pytest.raises(ConfigError, match=r"'actors.frames_per_batch' \(42\) must be a multiple"):
        r2d2.train(_cfg(tmp_path, actors={"frames_per_batch": 42}))
    with pytest.raises(ConfigError, match="'model.encoder'.*'atari' needs image observations"):
        r2d2.train(_cfg(tmp_path, model={"encoder": "atari"}))
    with pytest.raises(ConfigError, match="'replay.storage'.*'memory', 'memmap'"):
        r2d2.train(_cfg(tmp_path, replay={"storage": "disk"}))
    with pytest.raises(ConfigError, match="(?s)'env.name'.*masked-cartpole"):
        r2d2.train(_cfg(tmp_path, env={"name": "pomdp:masked-cartpol"}))


def test_minigrid_config_runs(r2d2, tmp_path):
    cfg = _cfg(tmp_path, config_name="minigrid", env={"envs_per_worker": 2}, actors={"frames_per_batch": 40, "total_frames": 200})
    assert cfg.env.name == "minigrid:MiniGrid-MemoryS7-v0"
    assert r2d2.train(cfg, config_name="minigrid")["frames"] == 200


def test_minatar_config_runs_with_the_minatar_torso(r2d2, tmp_path):
    base = example_config("r2d2", {}, config_name="minatar")
    assert (base.env.name, base.model.encoder, base.optim.eps, base.loss.n_steps) == ("minatar:Breakout", "minatar", 1e-3, 5)
    cfg = _cfg(tmp_path, config_name="minatar", env={"envs_per_worker": 2}, actors={"frames_per_batch": 40, "total_frames": 400})
    summary = r2d2.train(cfg, config_name="minatar")
    assert summary["frames"] == 400 and summary["final_eval"]["episodes"] == 2


def test_atari_config_has_table_2_and_runs(r2d2, tmp_path):
    base = example_config("r2d2", {}, config_name="atari")
    assert (base.optim.lr, base.optim.eps, base.replay.batch_size, base.replay.seq_len, base.replay.burn_in) == (1e-4, 1e-3, 64, 80, 40)
    assert (base.loss.n_steps, base.loss.gamma, base.loss.target_update_interval, base.model.lstm_hidden) == (5, 0.997, 2500, 512)
    cfg = _cfg(
        tmp_path,
        config_name="atari",
        env={"num_workers": 1, "envs_per_worker": 2},
        model={"lstm_hidden": 32, "head_hidden": 32},
        actors={"frames_per_batch": 40, "total_frames": 120},
        eval={"interval_frames": None, "episodes": 1, "max_steps": 20, "delta_q_episodes": 0},
        checkpoint={"interval_frames": None},
    )
    assert r2d2.train(cfg, config_name="atari")["frames"] == 120
