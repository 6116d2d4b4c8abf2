"""PlaNet: a Gaussian RSSM trained with the variational bound, acting by CEM planning in latent space.

Hafner et al. 2019, "Learning Latent Dynamics for Planning from Pixels",
Algorithm 1: collect ``S`` random seed episodes; then alternate ``C`` model
updates on batches of ``B`` sequences of ``L`` steps with one episode
collected by the planner (CEM over action sequences in the learned latent
space, plus Gaussian exploration noise), every action repeated ``R`` times.

    python examples/planet/train.py                                   # cartpole-swingup, CPU planner
    python examples/planet/train.py planner.iterations=10 planner.candidates=1000 planner.top_k=100   # the paper's planner
    python examples/planet/train.py checkpoint.resume=<run dir>

Everything reusable comes from the package: ``make_world_model``,
``RSSMPriorStep`` and ``LatentPolicy`` (keyed modules), ``CEMPlanner`` (planners), ``WorldModelLoss``
with the ``planet`` preset (objectives), ``make_episode_replay``
(collectors: TorchRL's ``SliceSampler``), TorchRL's ``Collector`` and the
``Experiment`` harness.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchrl.collectors import Collector

from latentrl.collectors.episode_replay import make_episode_replay, sample_sequences
from latentrl.envs import UnknownEnvironmentError, make_recurrent_env
from latentrl.harness import (
    DEVICE,
    HARNESS_CHOICES,
    HARNESS_CONSTRAINTS,
    NONNEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    ConfigError,
    Experiment,
    check_config,
    evaluate,
    run,
)
from latentrl.modules.latent_policy import LatentPolicy
from latentrl.modules.planners import CEMPlanner
from latentrl.modules.world_model import RSSMPriorStep, make_world_model
from latentrl.objectives.world_model import WorldModelLoss

CONFIG_DIR = Path(__file__).resolve().parent
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "device": DEVICE,
    "env.action_repeat": POSITIVE_INT,
    "env.episode_steps": POSITIVE_INT,
    **{f"model.{k}": POSITIVE_INT for k in ("deter_dim", "hidden_dim", "stoch_dim", "units", "embed_dim")},
    "model.layers": NONNEGATIVE_INT,
    "model.min_std": (lambda v: v >= 0, "a number >= 0"),
    "loss.free_nats": (lambda v: v >= 0, "a number >= 0"),
    "loss.kl_scale": POSITIVE,
    "optim.lr": POSITIVE,
    "optim.eps": POSITIVE,
    "optim.max_grad_norm": POSITIVE,
    **{f"train.{k}": POSITIVE_INT for k in ("seed_episodes", "episodes", "batch_size", "seq_len", "replay_capacity")},
    "train.updates_per_episode": NONNEGATIVE_INT,
    **{f"planner.{k}": POSITIVE_INT for k in ("horizon", "iterations", "candidates", "top_k")},
    "planner.exploration_noise": (lambda v: v >= 0, "a number >= 0"),
    "eval.episodes": POSITIVE_INT,
}


def validate(cfg: DictConfig) -> int:
    """Checks the config; returns the episode length in actions."""
    check_config(cfg, OmegaConf.load(CONFIG_DIR / "config.yaml"), HARNESS_CHOICES, CONSTRAINTS)
    if not cfg.env.name.startswith("dmc:"):
        raise ConfigError(f"config key 'env.name' is {cfg.env.name!r}; PlaNet here needs a 'dmc:domain-task' env")
    if cfg.env.episode_steps % cfg.env.action_repeat:
        raise ConfigError(
            f"config key 'env.action_repeat' ({cfg.env.action_repeat}) must divide 'env.episode_steps' ({cfg.env.episode_steps})"
        )
    episode = cfg.env.episode_steps // cfg.env.action_repeat
    if cfg.train.seq_len > episode:
        raise ConfigError(f"config key 'train.seq_len' ({cfg.train.seq_len}) exceeds the episode length ({episode} actions)")
    if cfg.planner.top_k > cfg.planner.candidates:
        raise ConfigError(f"config key 'planner.top_k' ({cfg.planner.top_k}) must be <= 'planner.candidates' ({cfg.planner.candidates})")
    if cfg.train.seed_episodes >= cfg.train.episodes:
        raise ConfigError(f"config key 'train.seed_episodes' ({cfg.train.seed_episodes}) must be < 'train.episodes' ({cfg.train.episodes})")
    return episode


def make_planner(world_model, action_spec, p: DictConfig) -> CEMPlanner:
    """CEM over action sequences in the latent space: sampled prior transitions, predicted rewards."""
    return CEMPlanner(
        RSSMPriorStep(world_model.rssm), world_model.reward_model, action_spec.shape[-1], horizon=p.horizon,
        iterations=p.iterations, candidates=p.candidates, top_k=p.top_k, exploration_noise=p.exploration_noise,
        action_low=float(action_spec.space.low.min()), action_high=float(action_spec.space.high.max()),
    )


def train(cfg: DictConfig) -> dict:
    episode = validate(cfg)
    device = torch.device(cfg.device)
    total_frames = cfg.train.episodes * episode
    exp = Experiment(cfg, total_frames=total_frames)  # seeds everything: build after this

    make = functools.partial(make_recurrent_env, cfg.env.name, prev_action_reward=False, max_steps=episode,
                             action_repeat=cfg.env.action_repeat)
    try:
        probe = make(seed=None)
    except UnknownEnvironmentError as err:
        raise ConfigError(f"config key 'env.name': {err}") from err
    obs_shape, action_spec = probe.observation_spec["observation"].shape, probe.action_spec
    probe.close()
    m = cfg.model
    world_model = make_world_model(
        obs_shape, action_spec.shape[-1], latent="gaussian", deter_dim=m.deter_dim, hidden_dim=m.hidden_dim,
        stoch_dim=m.stoch_dim, min_std=m.min_std, units=m.units, layers=m.layers, embed_dim=m.embed_dim,
    ).to(device)
    planner = make_planner(world_model, action_spec, cfg.planner)
    policy = LatentPolicy(world_model.encoder, world_model.rssm, planner)
    primer = policy.make_tensordict_primer()
    env = make(num_envs=1, seed=cfg.seed, primer=primer)
    eval_env = make(num_envs=cfg.eval.episodes, seed=None, train=False, primer=primer)
    collector = Collector(
        env, policy, frames_per_batch=episode, total_frames=total_frames,
        init_random_frames=cfg.train.seed_episodes * episode, device=device,
    )
    loss_module = WorldModelLoss(world_model, "planet", free_nats=cfg.loss.free_nats, kl_scale=cfg.loss.kl_scale)
    optimizer = torch.optim.Adam(world_model.parameters(), lr=cfg.optim.lr, eps=cfg.optim.eps)
    replay = make_episode_replay(cfg.train.replay_capacity, cfg.train.batch_size, cfg.train.seq_len)

    exp.evaluator = lambda: evaluate(eval_env, policy, max_steps=episode, seed=cfg.seed + 10_000)
    exp.track(world_model=world_model, optimizer=optimizer, replay=replay, collector=collector)

    try:
        for batch in exp.iterate(collector):
            # batch: one episode [episode]; the policy's filter state is recomputed from observations
            replay.extend(batch.exclude(*policy.recomputed_keys).reshape(-1))
            if exp.counters["iterations"] < cfg.train.seed_episodes:
                continue
            for _ in range(cfg.train.updates_per_episode):
                losses = loss_module(sample_sequences(replay, cfg.train.seq_len).to(device))
                exp.check_finite(losses.select(*[k for k in losses.keys() if k.startswith("loss_")]))
                loss = losses["loss_model_kl"] + losses["loss_model_reco"] + losses["loss_model_reward"]
                optimizer.zero_grad()
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(world_model.parameters(), cfg.optim.max_grad_norm)
                optimizer.step()
            if cfg.train.updates_per_episode:
                exp.log({
                    "train/kl": losses["kl"],
                    "train/reco_nll": losses["reco_nll"],
                    "train/reward_nll": losses["reward_nll"],
                    "train/grad_norm": grad_norm,
                    "train/env_steps": exp.counters["frames"] * cfg.env.action_repeat,
                })
        summary = exp.finish()
    finally:
        collector.shutdown()
        eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
