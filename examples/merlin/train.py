"""MERLIN: a memory-based predictor with retroactive memory writes, and a policy that reads it.

Wayne et al. 2018 ("Unsupervised Predictive Memory in a Goal-Directed Agent"):
the MBP compresses each observation into a state variable ``z_t`` trained by
prediction (reconstruction and KL), writes it to an external memory, and the
policy reads that memory; the policy is trained by an advantage actor-critic
on truncated windows of ``tau`` steps. On the T-maze with a delay longer than
``tau`` the cue must be carried across windows: by the memory (MERLIN) or by
an LSTM state (the RL-LSTM baseline, ``examples/rl_lstm``).

    python examples/merlin/train.py                          # T-maze, delay 20, tau 20
    python examples/merlin/train.py env.name=popgym:RepeatFirstEasy env.delay=null

Everything reusable comes from the package: ``make_env`` (envs),
``MerlinCore``/``MerlinPolicy`` and the memory (modules), ``MerlinLoss``
(objectives), TorchRL's Collector, and the ``Experiment`` harness.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.collectors import Collector
from torchrl.envs import TransformedEnv
from torchrl.modules import OneHotCategorical, ProbabilisticActor

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
from latentrl.modules.merlin import MerlinCore, MerlinPolicy
from latentrl.objectives.merlin import MerlinLoss

CONFIG_DIR = Path(__file__).resolve().parent
_nonneg = (lambda v: v >= 0, "a number >= 0")
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "env.num_envs": POSITIVE_INT,
    "env.delay": (lambda v: v is None or v >= 0, "null or an integer >= 0 (the T-maze corridor)"),
    **{f"model.{k}": POSITIVE_INT for k in ("z_dim", "memory_rows", "hidden", "policy_hidden", "read_heads")},
    "model.retro_gamma": UNIT_INTERVAL,
    "collector.window": (lambda v: v >= 2, "an integer >= 2 (steps per env per update)"),
    "collector.total_frames": POSITIVE_INT,
    "loss.gamma": UNIT_INTERVAL,
    "loss.lmbda": UNIT_INTERVAL,
    **{f"loss.{k}": _nonneg for k in ("entropy_coef", "critic_coef", "obs_coef", "action_coef", "reward_coef",
                                      "return_coef", "kl_coef")},
    "optim.lr": POSITIVE,
    "optim.max_grad_norm": POSITIVE,
    "device": DEVICE,
}


def make_agent_env(cfg: DictConfig, num_envs: int, primer=None) -> TransformedEnv:
    return make_memory_env(cfg, num_envs, "MERLIN", primer)


def make_agent(cfg: DictConfig, env) -> tuple[MerlinPolicy, ProbabilisticActor]:
    m = cfg.model
    core = MerlinCore(env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1], z_dim=m.z_dim,
                      num_rows=m.memory_rows, hidden=m.hidden, policy_hidden=m.policy_hidden, read_heads=m.read_heads,
                      retro_gamma=m.retro_gamma)
    policy = MerlinPolicy(core)
    actor = ProbabilisticActor(policy, in_keys=["logits"], out_keys=["action"], distribution_class=OneHotCategorical,
                               spec=env.action_spec, return_log_prob=True)
    return policy, actor


def train(cfg: DictConfig) -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / "config.yaml"), HARNESS_CHOICES, CONSTRAINTS)
    device = torch.device(cfg.device)
    total_frames = cfg.collector.total_frames
    frames_per_batch = cfg.collector.window * cfg.env.num_envs
    exp = Experiment(cfg, total_frames=total_frames)  # seeds everything: build the agent after this

    env = make_agent_env(cfg, cfg.env.num_envs)
    policy, actor = make_agent(cfg, env)
    policy, actor = policy.to(device), actor.to(device)
    env.append_transform(policy.make_tensordict_primer())
    env.set_seed(cfg.seed)
    eval_env = make_agent_env(cfg, cfg.eval.episodes, policy.make_tensordict_primer())
    collector = Collector(env, actor, frames_per_batch=frames_per_batch, total_frames=total_frames, device=device)

    loss_module = MerlinLoss(policy, **{k: cfg.loss[k] for k in cfg.loss})
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=cfg.optim.lr)
    exp.evaluator = lambda: evaluate(eval_env, actor, max_steps=cfg.eval.max_steps, seed=cfg.seed + 10_000)
    exp.track(policy=policy, optimizer=optimizer, collector=collector)

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
            "train/kl": losses["kl"], "train/loss_obs": losses["loss_obs"], "train/loss_return": losses["loss_return"],
            "train/entropy": losses["entropy"], "train/grad_norm": grad_norm,
        })

    summary = exp.finish()
    collector.shutdown()
    env.close()
    eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
