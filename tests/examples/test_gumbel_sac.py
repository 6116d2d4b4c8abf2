"""Gumbel-softmax SAC example: both losses run, gradients flow through the
relaxed action, exact resume with a replay buffer, and learning (slow)."""
import pytest
import torch
from conftest import ROOT, example_config
from omegaconf import OmegaConf
from torchrl.envs import ExplorationType, set_exploration_type

from latentrl.harness import ConfigError, load_checkpoint

SMALL = {
    "env": {"num_envs": 4},
    "collector": {"frames_per_batch": 32, "total_frames": 768, "init_random_frames": 256},
    "replay": {"batch_size": 32, "updates_per_batch": 4},
    "eval": {"interval_frames": 256, "episodes": 2, "max_steps": 50},
    "checkpoint": {"interval_frames": 256},
    "logger": {"progress_bar": False},
}


def _cfg(tmp_path, name="run", **over):
    cfg = example_config("gumbel", SMALL, config_name="sac")
    return OmegaConf.merge(cfg, OmegaConf.create({"run_dir": str(tmp_path / name), **over}))


@pytest.mark.parametrize("loss", ["gumbel_sac", "discrete_sac"])
def test_both_losses_run(gumbel_sac, tmp_path, loss):
    summary = gumbel_sac.main(_cfg(tmp_path, loss={"name": loss}))
    assert summary["frames"] == 768 and summary["final_eval_return"] > 0
    assert load_checkpoint(tmp_path / "run")["objects"]["replay_buffer"]  # the buffer is in the checkpoint


def test_bad_loss_name(gumbel_sac, tmp_path):
    with pytest.raises(ConfigError, match="'loss.name'.*'gumbel_sac', 'discrete_sac'"):
        gumbel_sac.main(_cfg(tmp_path, loss={"name": "sac"}))


def test_actor_gradient_flows_through_the_relaxed_action(gumbel_sac):
    from latentrl.envs import make_env

    cfg = example_config("gumbel", {}, config_name="sac")
    env = make_env("CartPole-v1", num_envs=4)
    actor, critic, loss = gumbel_sac.make_agent(cfg, env)
    data = env.rollout(6, actor)
    assert torch.equal(data["action"].sum(-1), torch.ones(4, 6))  # exact one-hot actions (hard=True)
    losses = loss(data.reshape(-1))
    actor_params = list(actor.parameters())
    grads = torch.autograd.grad(losses["loss_actor"], actor_params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # the part of the actor loss that is -Q(s, a): its gradient reaches the actor only through `a`
    sample = data.reshape(-1)[:8].clone()
    with set_exploration_type(ExplorationType.RANDOM):  # as inside SACLoss: rsample
        actor(sample)
    q = critic(sample.clone())["state_action_value"].sum()
    dq = torch.autograd.grad(q, actor_params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in dq)


def _scalars(run_dir):
    root = run_dir / "logs" / "scalars"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.csv"))}


@pytest.mark.parametrize(
    "mode", ["stop", pytest.param("kill", marks=pytest.mark.slow), pytest.param("kill_during_write", marks=pytest.mark.slow)]
)
def test_resume_at_real_length_and_after_sigkill(gumbel_sac, tmp_path, mode):
    """Stopped, or killed with SIGKILL, with episode ends, evaluations,
    checkpoints and updates after the resume point: identical logs."""
    from resume_check import check_resume

    cfg = OmegaConf.merge(_cfg(tmp_path), {"collector": {"total_frames": 1024}, "eval": {"interval_frames": 128}})
    check_resume(
        gumbel_sac.main, cfg, tmp_path, stop_at=384, script=ROOT / "examples" / "gumbel" / "sac.py", mode=mode, config_yaml="sac.yaml",
        after={"eval/return.csv": 4, "train/episode_return.csv": 5, "train/loss_qvalue.csv": 10},
    )


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["gumbel_sac", "discrete_sac"])
def test_learns_cartpole(gumbel_sac, tmp_path, loss):
    cfg = OmegaConf.merge(
        example_config("gumbel", {}, config_name="sac"),
        OmegaConf.create({"loss": {"name": loss}, "run_dir": str(tmp_path), "logger": {"progress_bar": False}}),
    )
    summary = gumbel_sac.main(cfg)
    assert summary["final_eval_return"] >= 450, summary
