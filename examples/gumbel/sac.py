"""Gumbel-softmax SAC for discrete actions, on CartPole-v1.

SAC (Haarnoja et al. 2018) needs reparameterized actions: the actor loss
``alpha log pi(a|s) - Q(s, a)`` is differentiated through ``a``. With a
Gumbel-softmax actor (Jang et al. 2016) the action is a (straight-through)
relaxed one-hot vector, so the critic takes the action as a vector, exactly
as for continuous actions. The loss is latentrl's
:class:`~latentrl.objectives.gumbel_sac.GumbelSACLoss`: TorchRL's ``SACLoss``
with the exact categorical entropy in the actor and temperature losses
(TorchRL's single-sample ``log pi(a|s)`` has no entropy gradient for one-hot
actions, ``UPSTREAM.md`` #7), and latentrl's
:class:`~latentrl.modules.distributions.GumbelSoftmax` as the actor's
distribution. ``loss.name=discrete_sac`` trains TorchRL's ``DiscreteSACLoss``
(Christodoulou 2019: exact expectation over actions, one Q-value per action)
on the same budget for comparison.

    python examples/gumbel/sac.py
    python examples/gumbel/sac.py loss.name=discrete_sac
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictModule
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import RewardSum, TransformedEnv
from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor, ValueOperator
from torchrl.objectives import DiscreteSACLoss, SoftUpdate

from latentrl.harness import (
    HARNESS_CHOICES,
    HARNESS_CONSTRAINTS,
    ConfigError,
    Experiment,
    check_config,
    evaluate,
    make_env_from_config,
    run,
)
from latentrl.modules.distributions import GumbelSoftmax
from latentrl.objectives.gumbel_sac import GumbelSACLoss

CONFIG_DIR = Path(__file__).resolve().parent
CONFIG_NAME = "sac"
CHOICES = {**HARNESS_CHOICES, "loss.name": ("gumbel_sac", "discrete_sac")}
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "loss.gumbel_temperature": (lambda v: v > 0, "a positive number"),
    "loss.target_entropy_fraction": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "loss.tau": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "collector.frames_per_batch": (lambda v: v > 0, "a positive integer (a multiple of env.num_envs)"),
    "replay.updates_per_batch": (lambda v: v >= 0, "an integer >= 0"),
    "replay.batch_size": (lambda v: v > 0, "a positive integer"),
}


def make_agent_env(cfg: DictConfig, num_envs: int) -> TransformedEnv:
    env = make_env_from_config(cfg, num_envs)
    if not hasattr(env.action_spec, "space") or not hasattr(env.action_spec.space, "n"):
        raise ConfigError(f"config key 'env.name': {cfg.env.name!r} has no discrete (one-hot) action space")
    return TransformedEnv(env, RewardSum())


def make_agent(cfg: DictConfig, env) -> tuple[ProbabilisticActor, TensorDictModule, torch.nn.Module]:
    """Actor, critic and loss module for ``loss.name``."""
    obs_dim = env.observation_spec["observation"].shape[-1]
    n_actions = env.action_spec.space.n
    hidden = list(cfg.model.hidden)
    logits = TensorDictModule(MLP(in_features=obs_dim, out_features=n_actions, num_cells=hidden), ["observation"], ["logits"])
    target_entropy = cfg.loss.target_entropy_fraction * math.log(n_actions)
    if cfg.loss.name == "gumbel_sac":
        actor = ProbabilisticActor(
            logits,
            in_keys=["logits"],
            out_keys=["action"],
            spec=env.action_spec,
            distribution_class=GumbelSoftmax,
            distribution_kwargs={"temperature": cfg.loss.gumbel_temperature, "hard": cfg.loss.hard},
            return_log_prob=True,
        )
        critic = ValueOperator(MLP(in_features=obs_dim + n_actions, out_features=1, num_cells=hidden), ["observation", "action"])
        loss = GumbelSACLoss(
            actor,
            critic,
            num_qvalue_nets=2,
            alpha_init=cfg.loss.alpha_init,
            target_entropy=target_entropy,
            action_spec=env.action_spec,
            loss_function="l2",
        )
    else:
        actor = ProbabilisticActor(
            logits, in_keys=["logits"], out_keys=["action"], spec=env.action_spec, distribution_class=OneHotCategorical
        )
        critic = TensorDictModule(MLP(in_features=obs_dim, out_features=n_actions, num_cells=hidden), ["observation"], ["action_value"])
        loss = DiscreteSACLoss(
            actor,
            critic,
            action_space=env.action_spec,
            num_actions=n_actions,
            num_qvalue_nets=2,
            alpha_init=cfg.loss.alpha_init,
            target_entropy_weight=cfg.loss.target_entropy_fraction,
            loss_function="l2",
        )
    loss.make_value_estimator(gamma=cfg.loss.gamma)
    return actor, critic, loss


def main(cfg: DictConfig) -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / f"{CONFIG_NAME}.yaml"), CHOICES, CONSTRAINTS)
    if cfg.collector.frames_per_batch % cfg.env.num_envs:
        raise ConfigError("config key 'collector.frames_per_batch' must be a multiple of 'env.num_envs'")
    exp = Experiment(cfg, total_frames=cfg.collector.total_frames)  # seeds: build everything after this

    env = make_agent_env(cfg, cfg.env.num_envs)
    env.set_seed(cfg.seed)
    eval_env = make_agent_env(cfg, cfg.eval.episodes)
    actor, _, loss_module = make_agent(cfg, env)
    loss_module = loss_module.to(cfg.device)
    target_update = SoftUpdate(loss_module, tau=cfg.loss.tau)
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=cfg.optim.lr)
    collector = Collector(
        env,
        actor,
        frames_per_batch=cfg.collector.frames_per_batch,
        total_frames=cfg.collector.total_frames,
        init_random_frames=cfg.collector.init_random_frames,
        device=cfg.device,
    )
    replay = TensorDictReplayBuffer(storage=LazyTensorStorage(cfg.replay.size), batch_size=cfg.replay.batch_size)

    exp.evaluator = lambda: evaluate(eval_env, actor, max_steps=cfg.eval.max_steps, seed=cfg.seed + 10_000)
    exp.track(loss_module=loss_module, optimizer=optimizer, replay_buffer=replay, collector=collector)

    for batch in exp.iterate(collector):
        replay.extend(batch.reshape(-1))
        if exp.counters["frames"] < cfg.collector.init_random_frames:
            continue
        for _ in range(cfg.replay.updates_per_batch):
            losses = loss_module(replay.sample())
            exp.check_finite(losses)
            loss = losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            target_update.step()
        if cfg.replay.updates_per_batch:
            exp.log(
                {
                    "train/loss_actor": losses["loss_actor"],
                    "train/loss_qvalue": losses["loss_qvalue"],
                    "train/alpha": losses["alpha"],
                    "train/entropy": losses["entropy"],
                }
            )

    summary = exp.finish()
    collector.shutdown()
    return summary


if __name__ == "__main__":
    run(main, CONFIG_DIR, CONFIG_NAME)
