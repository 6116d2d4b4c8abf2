"""IMPALA example: sync and asynchronous actors end to end, exact resume (sync), config errors, Atari smoke."""
import json

import pytest
from conftest import ROOT, example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError

SMALL = {
    "env": {"envs_per_actor": 4},
    "actors": {"unroll_length": 10},
    "learner": {"batch_size": 8, "total_frames": 800},
    "eval": {"interval_frames": 400, "episodes": 2, "max_steps": 50},
    "checkpoint": {"interval_frames": 400},
    "logger": {"progress_bar": False},
}


def _cfg(tmp_path, name="run", config_name="config", **over):
    cfg = example_config("impala", SMALL, config_name=config_name)
    return OmegaConf.merge(cfg, OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


def _scalars(run_dir):
    root = run_dir / "logs" / "scalars"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.csv"))}


def test_asynchronous_actors_run_and_measure_lag(impala, tmp_path):
    summary = impala.train(_cfg(tmp_path, loss={"popart": True}))
    assert summary["frames"] == 800 and summary["final_eval_return"] > 0
    lags = json.loads((tmp_path / "run" / "policy_lag_histogram.json").read_text())
    assert sum(lags.values()) == 800  # every consumed frame has a lag
    assert "train/policy_lag_mean.csv" in _scalars(tmp_path / "run")


@pytest.mark.parametrize("correction", ["none", "epsilon", "one_step_is"])
def test_ablations_run(impala, tmp_path, correction):
    cfg = _cfg(tmp_path, actors={"backend": "sync", "num_actors": 1}, loss={"correction": correction})
    summary = impala.train(cfg)
    assert summary["frames"] == 800
    lags = json.loads((tmp_path / "run" / "policy_lag_histogram.json").read_text())
    assert lags == {"0": 800}  # one synchronous actor, weights pushed after every update: no lag


@pytest.mark.parametrize("mode", ["stop", pytest.param("kill", marks=pytest.mark.slow)])
def test_sync_resume_at_real_length_and_after_sigkill(impala, tmp_path, mode):
    """The in-process (sync) actor: stopped, or killed, with episode ends, evaluations,
    checkpoints and updates after the resume point: identical logs."""
    from resume_check import check_resume

    cfg = OmegaConf.merge(_cfg(tmp_path), {"actors": {"backend": "sync", "num_actors": 1},
                                           "learner": {"total_frames": 2000}, "eval": {"interval_frames": 400}})
    check_resume(impala.train, cfg, tmp_path, stop_at=800, script=ROOT / "examples" / "impala" / "train.py", mode=mode,
                 after={"eval/return.csv": 3, "train/episode_return.csv": 5, "train/loss_critic.csv": 10})


def test_config_errors_name_the_key(impala, tmp_path):
    with pytest.raises(ConfigError, match="'loss.correction'.*'vtrace', 'none', 'epsilon', 'one_step_is'"):
        impala.train(_cfg(tmp_path, loss={"correction": "retrace"}))
    with pytest.raises(ConfigError, match="'actors.num_actors' must be 1"):
        impala.train(_cfg(tmp_path, actors={"backend": "sync", "num_actors": 2}))
    with pytest.raises(ConfigError, match="'model.torso'.*'cnn'"):
        impala.train(_cfg(tmp_path, env={"name": "atari:Pong"}))
    with pytest.raises(ConfigError, match="(?s)'env.name'.*CartPole-v1"):
        impala.train(_cfg(tmp_path, env={"name": "CartPol-v1"}))


def test_atari_config_runs_with_the_shallow_network(impala, tmp_path):
    cfg = _cfg(
        tmp_path,
        config_name="atari",
        env={"envs_per_actor": 2},
        actors={"backend": "sync", "num_actors": 1, "unroll_length": 20},
        learner={"batch_size": 4, "total_frames": 240},
        eval={"interval_frames": None, "episodes": 1, "max_steps": 20},
        checkpoint={"interval_frames": None},
    )
    assert cfg.optim.lr == 0.0006 and cfg.optim.eps == 0.01 and cfg.optim.max_grad_norm == 40.0  # Table G1
    summary = impala.train(cfg, config_name="atari")
    assert summary["frames"] == 240


def test_minatar_config_runs_with_the_minatar_torso(impala, tmp_path):
    cfg = _cfg(
        tmp_path,
        config_name="minatar",
        actors={"backend": "sync", "num_actors": 1, "unroll_length": 20},
        learner={"batch_size": 4, "total_frames": 480},
        eval={"interval_frames": 240, "episodes": 2, "max_steps": 50},
    )
    assert (cfg.env.name, cfg.model.torso, cfg.optim.lr, cfg.optim.eps) == ("minatar:Breakout", "minatar", 0.0006, 0.01)
    summary = impala.train(cfg, config_name="minatar")
    assert summary["frames"] == 480 and summary["final_eval"]["episodes"] == 2
    with pytest.raises(ConfigError, match="'model.torso': 'minatar' needs image observations"):
        impala.train(_cfg(tmp_path, name="bad", model={"torso": "minatar"}))


@pytest.mark.parametrize("popart", [True, False])
def test_popart_multitask_config_runs_and_reports_each_task(impala, tmp_path, popart):
    cfg = _cfg(
        tmp_path,
        config_name="popart_multitask",
        env={"envs_per_actor": 6},
        actors={"backend": "sync", "num_actors": 1},
        loss={"popart": popart},
    )
    assert list(cfg.env.reward_scales) == [1, 100, 10000]
    summary = impala.train(cfg, config_name="popart_multitask")
    assert summary["frames"] == 800
    final = summary["final_eval"]
    assert {"return_task_id_0", "return_task_id_1", "return_task_id_2"} <= set(final)
    # evaluation rewards are unscaled: every task's return is a CartPole length (<= max_steps = 50)
    assert all(0 < final[f"return_task_id_{k}"] <= 50 for k in range(3))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_eval"] == final


def test_popart_multitask_head_is_the_only_difference(impala):
    from latentrl.envs import make_multitask_env

    env = make_multitask_env("CartPole-v1", [1, 100, 10000], envs_per_task=2)
    heads = {}
    for popart in (True, False):
        cfg = example_config("impala", {"loss": {"popart": popart}}, config_name="popart_multitask")
        _, critic, head = impala.make_agent(cfg, env)
        td = critic(env.reset())
        assert td["state_value"].shape == (6, 1)
        heads[popart] = head
    assert heads[True] is not None and heads[True].num_tasks == 3
    assert heads[False] is None  # the loss gets no PopArt: the 3-head layer keeps mu = 0, sigma = 1


def test_reward_scales_must_split_the_actor_envs(impala, tmp_path):
    with pytest.raises(ConfigError, match="'env.envs_per_actor' \\(4\\) must be a multiple .* \\(3\\)"):
        impala.train(_cfg(tmp_path, config_name="popart_multitask"), config_name="popart_multitask")
    with pytest.raises(ConfigError, match="'env.reward_scales'"):
        impala.train(_cfg(tmp_path, env={"reward_scales": [1, -2]}))
