"""FTW's two-timescale agent (Jaderberg et al. 2019) on a memory task, against its single-timescale control.

A slow LSTM ticking every ``model.period`` steps holds its state between
ticks and sets a prior over the latent ``z``; a fast LSTM ticking every step
reads it and samples ``z`` from its posterior; the policy and value read
``z`` and the fast core. Trained by advantage actor-critic on truncated
windows with the KL terms at slow ticks (``FTWLoss``). ``model.period=1`` is
the single-timescale control.

    python examples/ftw/train.py                             # T-maze, delay 20, window 20
    python examples/ftw/train.py model.period=1              # the single-timescale control

Everything reusable comes from the package: ``make_env`` (envs),
``make_ftw_agent`` and the two-timescale core (modules), ``FTWLoss``
(objectives), TorchRL's Collector, and the ``Experiment`` harness.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.collectors import Collector
from torchrl.envs import TransformedEnv

from latentrl.harness import (
    DEVICE,
    HARNESS_CHOICES,
    HARNESS_CONSTRAINTS,
    POSITIVE,
    POSITIVE_INT,
    UNIT_INTERVAL,
    Experiment,
    check_config,
    evaluate,
    make_memory_env,
    run,
)
from latentrl.modules.ftw import make_ftw_agent
from latentrl.objectives.ftw import FTWLoss

CONFIG_DIR = Path(__file__).resolve().parent
_nonneg = (lambda v: v >= 0, "a number >= 0")
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "env.num_envs": POSITIVE_INT,
    "env.delay": (lambda v: v is None or v >= 0, "null or an integer >= 0 (the T-maze corridor)"),
    **{f"model.{k}": POSITIVE_INT for k in ("embedding", "fast_hidden", "slow_hidden", "z_dim", "period", "head_hidden")},
    "model.grad_scale": UNIT_INTERVAL,
    "collector.window": (lambda v: v >= 2, "an integer >= 2 (steps per env per update)"),
    "collector.total_frames": POSITIVE_INT,
    "loss.gamma": UNIT_INTERVAL,
    "loss.lmbda": UNIT_INTERVAL,
    **{f"loss.{k}": _nonneg for k in ("entropy_coef", "critic_coef", "kl_coef", "prior_coef")},
    "loss.prior_sigma": POSITIVE,
    "optim.lr": POSITIVE,
    "optim.max_grad_norm": POSITIVE,
    "device": DEVICE,
}


def make_agent_env(cfg: DictConfig, num_envs: int, primer=None) -> TransformedEnv:
    return make_memory_env(cfg, num_envs, "the FTW agent", primer)


def make_agent(cfg: DictConfig, env):
    m = cfg.model
    step, actor, core = make_ftw_agent(env.observation_spec["observation"].shape[-1], env.action_spec,
                                       embedding=m.embedding, fast_hidden=m.fast_hidden, slow_hidden=m.slow_hidden,
                                       z_dim=m.z_dim, period=m.period, grad_scale=m.grad_scale,
                                       head_hidden=m.head_hidden)
    return step, actor, core


def train(cfg: DictConfig) -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / "config.yaml"), HARNESS_CHOICES, CONSTRAINTS)
    device = torch.device(cfg.device)
    total_frames = cfg.collector.total_frames
    frames_per_batch = cfg.collector.window * cfg.env.num_envs
    exp = Experiment(cfg, total_frames=total_frames)  # seeds everything: build the agent after this

    env = make_agent_env(cfg, cfg.env.num_envs)
    step, actor, core = make_agent(cfg, env)
    step, actor = step.to(device), actor.to(device)
    env.append_transform(core.make_tensordict_primer())
    env.set_seed(cfg.seed)
    eval_env = make_agent_env(cfg, cfg.eval.episodes, core.make_tensordict_primer())
    collector = Collector(env, actor, frames_per_batch=frames_per_batch, total_frames=total_frames, device=device)

    loss_module = FTWLoss(step, core.state_keys(), **{k: cfg.loss[k] for k in cfg.loss})
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=cfg.optim.lr)
    exp.evaluator = lambda: evaluate(eval_env, actor, max_steps=cfg.eval.max_steps, seed=cfg.seed + 10_000)
    exp.track(policy=step, optimizer=optimizer, collector=collector)

    for batch in exp.iterate(collector):  # [num_envs, window], time last; the state at t = 0 is stored
        losses = loss_module(batch)
        exp.check_finite(losses)
        loss = sum(v for k, v in losses.items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        exp.log({
            "train/loss_policy": losses["loss_objective"], "train/loss_critic": losses["loss_critic"],
            "train/kl": losses["kl"], "train/kl_prior": losses["kl_prior"], "train/entropy": losses["entropy"],
            "train/grad_norm": grad_norm,
        })

    summary = exp.finish()
    collector.shutdown()
    env.close()
    eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
