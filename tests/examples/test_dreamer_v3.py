"""DreamerV3 example end to end: the train ratio's update count, logs, exact resume, config errors."""
import math

import pytest
from conftest import ROOT, example_config
from omegaconf import OmegaConf

from latentrl.harness import ConfigError

# 16 actions per collector batch; after 64 prefill actions one update per 8 actions (ratio 8 / (4 x 16))
SMALL = {
    "threads": 1,
    "env": {"episode_steps": 60},
    "loss": {"horizon": 4},
    "train": {"total_env_steps": 384, "prefill": 64, "train_ratio": 8, "steps_per_batch": 16, "batch_size": 4,
              "seq_len": 16, "replay_capacity": 2000},
    "optim": {"warmup": 10},
    "eval": {"interval_frames": 128, "episodes": 1},
    "checkpoint": {"interval_frames": 128},
    "logger": {"progress_bar": False},
}


def _cfg(tmp_path, name="run", **over):
    cfg = example_config("dreamer_v3", SMALL)
    return OmegaConf.merge(cfg, OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


def _scalars(run_dir):
    root = run_dir / "logs" / "scalars"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.csv"))}


def test_trains_end_to_end_at_the_train_ratio(dreamer_v3, tmp_path):
    summary = dreamer_v3.train(_cfg(tmp_path))
    assert summary["frames"] == 384 and summary["iterations"] == 24 and not summary["stopped_early"]
    assert math.isfinite(summary["final_eval_return"])
    logs = _scalars(tmp_path / "run")
    expected = {"train/loss_actor.csv", "train/loss_critic.csv", "train/loss_critic_replay.csv",
                "train/loss_model_kl.csv", "train/loss_model_reward.csv", "train/return_scale.csv",
                "train/updates.csv", "eval/return.csv"}
    assert expected <= set(logs), sorted(logs)
    # logged at 320 actions: the first update at 64 (the ratio's first call), then one per 8 actions
    step, updates = logs["train/updates.csv"].splitlines()[-1].split(",")
    assert int(step) == 320 and float(updates) == 1 + (320 - 64) / 8
    assert (tmp_path / "run" / "learning_curve.png").is_file()


@pytest.mark.parametrize("mode", ["stop", pytest.param("kill", marks=pytest.mark.slow)])
def test_resume_is_exact_with_the_ratio_remainder(dreamer_v3, tmp_path, mode):
    """Stopped (or killed) after a checkpoint, with episode ends, evaluations, checkpoints and updates after
    the resume point; the ratio scheduler's remainder, the return normalizer, the slow critic, the optimizer
    and the replay with its replay-context latents (written back by every update, read by the next) are
    restored, so the logs are identical (no burst of owed updates either)."""
    from resume_check import check_resume

    cfg = OmegaConf.merge(_cfg(tmp_path), {"train": {"total_env_steps": 512}})
    check_resume(
        dreamer_v3.train, cfg, tmp_path, stop_at=256, script=ROOT / "examples" / "dreamer_v3" / "train.py", mode=mode,
        after={"eval/return.csv": 2, "train/episode_return.csv": 2, "train/updates.csv": 1},
    )


def test_config_errors_name_the_key(dreamer_v3, tmp_path):
    with pytest.raises(ConfigError, match="'model.size'.*one of \\['size1m'"):
        dreamer_v3.train(_cfg(tmp_path, model={"size": "size3m"}))
    with pytest.raises(ConfigError, match="'env.name'.*gymnasium id, 'dmc:domain-task' or 'atari:Game'"):
        dreamer_v3.train(_cfg(tmp_path, env={"name": "minigrid:MiniGrid-Empty-5x5-v0"}))
    with pytest.raises(ConfigError, match="'env.pixels' applies to dmc"):
        dreamer_v3.train(_cfg(tmp_path, env={"pixels": True}))
    with pytest.raises(ConfigError, match="'model.arch': 'v1_2023' takes vectors or dmc pixels"):
        dreamer_v3.train(_cfg(tmp_path, env={"name": "atari:Pong", "action_repeat": 4}, model={"arch": "v1_2023"}))
    with pytest.raises(ConfigError, match="'optim.kind'.*'laprop'.*'adam'"):
        dreamer_v3.train(_cfg(tmp_path, optim={"kind": "sgd"}))
    with pytest.raises(ConfigError, match="'train.prefill' \\(8\\) must hold at least one sequence"):
        dreamer_v3.train(_cfg(tmp_path, train={"prefill": 8}))
    with pytest.raises(ConfigError, match="'loss.slow_decay'.*\\[0, 1\\)"):
        dreamer_v3.train(_cfg(tmp_path, loss={"slow_decay": 1.0}))


def test_paper_preset_is_the_paper_s_dmc_protocol(dreamer_v3, tmp_path):
    base = example_config("dreamer_v3", {})
    preset = OmegaConf.load(ROOT / "examples" / "dreamer_v3" / "paper.yaml")
    assert list(preset.defaults) == ["config", "_self_"]  # Hydra composes it over config.yaml
    paper = OmegaConf.merge(base, {k: v for k, v in preset.items() if k != "defaults"})
    assert (paper.model.size, paper.env.action_repeat, paper.train.train_ratio) == ("size12m", 2, 512)
    assert paper.env.name.startswith("dmc:")
    differing = {k for k in ("model", "env", "train", "loss", "optim") for kk in base[k] if base[k][kk] != paper[k][kk]}
    assert differing == {"model", "env", "train"}  # the losses and the optimizer are the current recipe's


@pytest.mark.slow
def test_compiled_core_trains_with_the_same_schedule(dreamer_v3, tmp_path):
    summary = dreamer_v3.train(_cfg(tmp_path, model={"compile": True}))
    assert summary["frames"] == 384 and math.isfinite(summary["final_eval_return"])
    step, updates = _scalars(tmp_path / "run")["train/updates.csv"].splitlines()[-1].split(",")
    assert int(step) == 320 and float(updates) == 1 + (320 - 64) / 8


def _v1_2023_cfg(tmp_path, name="run"):
    """config.yaml with the v1_2023 preset on top (as Hydra composes it), then the small run."""
    preset = OmegaConf.load(ROOT / "examples" / "dreamer_v3" / "v1_2023.yaml")
    assert list(preset.defaults) == ["config", "_self_"]
    cfg = OmegaConf.merge(example_config("dreamer_v3", {}), {k: v for k, v in preset.items() if k != "defaults"})
    return OmegaConf.merge(cfg, SMALL, {"env": {"episode_steps": 120}, "run_dir": str(tmp_path / name)})


def test_v1_2023_preset_is_the_2023_release_and_trains(dreamer_v3, tmp_path):
    """The preset's keys are the 2023 release's (dmc_proprio) and it runs the 2023 networks, dynamics
    backprop on dmc's continuous actions and the three Adam groups end to end."""
    base = example_config("dreamer_v3", {})
    v1 = _v1_2023_cfg(tmp_path)
    assert (v1.model.arch, v1.loss.dyn_scale, v1.loss.bins, v1.loss.continuation, v1.loss.actor_grad_cont,
            v1.optim.kind, v1.loss.replay_scale) == ("v1_2023", 0.5, "symlog", "mode", "backprop", "adam", 0.0)
    assert v1.loss.continue_target == 1.0 and v1.loss.discount == pytest.approx(1 - 1 / 333)
    assert base.loss.continue_target == pytest.approx(1 - 1 / 333) and base.loss.discount == 1.0
    # 384 env steps = 192 actions at action repeat 2, a training log every 4 collector batches of 16
    summary = dreamer_v3.train(OmegaConf.merge(v1, {"logger": {"train_every": 4}}))
    assert summary["frames"] == 192 and math.isfinite(summary["final_eval_return"])
    logs = _scalars(tmp_path / "run")
    replay_loss = logs["train/loss_critic_replay.csv"].splitlines()
    assert replay_loss and all(float(line.split(",")[1]) == 0.0 for line in replay_loss)  # no replay value loss
    # updates: the first at 64 actions, then one per 8 (Adam counts its steps per parameter)
    step, updates = logs["train/updates.csv"].splitlines()[-1].split(",")
    assert float(updates) == 1 + (int(step) - 64) / 8


@pytest.mark.slow
def test_v1_2023_resume_is_exact(dreamer_v3, tmp_path):
    """A stopped v1_2023 run resumes to the same logs (the three Adam groups' state included)."""
    from resume_check import check_resume

    cfg = OmegaConf.merge(_v1_2023_cfg(tmp_path), {"train": {"total_env_steps": 768}})  # 384 actions
    check_resume(dreamer_v3.train, cfg, tmp_path, stop_at=128, script=ROOT / "examples" / "dreamer_v3" / "train.py",
                 mode="stop", after={"eval/return.csv": 2, "train/updates.csv": 1})


@pytest.mark.parametrize("env", [{"name": "dmc:cartpole-balance", "pixels": True, "episode_steps": 60},
                                 {"name": "atari:Pong", "action_repeat": 4, "episode_steps": 240}],
                         ids=["dmc-pixels", "atari"])
def test_image_tasks_train_end_to_end(dreamer_v3, tmp_path, env):
    """Smoke test: dm_control from 64 x 64 pixels and Atari (96 x 96 gray) through the CNN encoder and decoder;
    images are stored in replay as bytes and trained on as [0, 1] floats (the reconstruction is a per-pixel mse)."""
    steps = 128 * env.get("action_repeat", 1)  # 128 actions: 64 of prefill, then 8 updates
    summary = dreamer_v3.train(_cfg(tmp_path, env=env, train={"total_env_steps": steps}, logger={"train_every": 4},
                                    eval={"interval_frames": 64}, checkpoint={"interval_frames": 64}))
    assert summary["frames"] == 128 and math.isfinite(summary["final_eval_return"])
    reco = float(_scalars(tmp_path / "run")["train/reco_nll.csv"].splitlines()[-1].split(",")[1])
    pixels = 3 * 64 * 64 if env["name"].startswith("dmc") else 96 * 96
    assert 0 < reco < pixels  # a squared error summed over pixels in [0, 1]: the images reached the loss as floats


def _preset(name: str):
    preset = OmegaConf.load(ROOT / "examples" / "dreamer_v3" / f"{name}.yaml")
    assert list(preset.defaults) == ["config", "_self_"]
    return OmegaConf.merge(example_config("dreamer_v3", {}), {k: v for k, v in preset.items() if k != "defaults"})


def test_cpu_preset_changes_only_its_knobs():
    base, cpu = example_config("dreamer_v3", {}), _preset("cpu")
    changed = {f"{g}.{k}" for g in ("model", "env", "train", "loss", "optim", "eval") for k in base[g]
               if base[g][k] != cpu[g][k]}
    assert changed == {"loss.imagine_last", "optim.warmup", "train.total_env_steps", "train.prefill",
                       "train.train_ratio", "train.seq_len", "eval.interval_frames"}
    assert cpu.env.name == "CartPole-v1" and cpu.model.size == "size1m"


@pytest.mark.slow
def test_cpu_preset_learns_cartpole(dreamer_v3, tmp_path):
    """Seed 0 of the cpu preset for 25k steps (~15 min on 2 cores): a random policy averages ~22 on
    CartPole-v1 and the untrained one ~10-60; learning is an evaluation of at least 200."""
    cfg = OmegaConf.merge(_preset("cpu"), {"run_dir": str(tmp_path / "run"), "logger": {"progress_bar": False},
                                           "train": {"total_env_steps": 25000}})
    dreamer_v3.train(cfg)
    evals = [float(line.split(",")[1]) for line in _scalars(tmp_path / "run")["eval/return.csv"].splitlines()]
    assert max(evals) >= 200, evals
