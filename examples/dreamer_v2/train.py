"""DreamerV2: a categorical world model, with actor and critic learned in its imagination.

Hafner et al. 2020, "Mastering Atari with Discrete World Models": a 32 x 32
categorical RSSM trained with reconstruction, reward, discount and a balanced
KL (alpha = 0.8); every ``train_every`` actions one update of the world model
on ``B`` sequences of ``L`` steps, then of the actor and critic on ``H = 15``
step imagined rollouts from every posterior state (lambda-returns against a
slow critic, the actor loss mixing REINFORCE and dynamics backpropagation).

    python examples/dreamer_v2/train.py                        # dm_control cartpole-balance, CPU-sized
    python examples/dreamer_v2/train.py --config-name atari    # Atari, the paper's settings (GPU)
    python examples/dreamer_v2/train.py checkpoint.resume=<run dir>

Everything reusable comes from the package: ``make_world_model``,
``RSSMImagine``, ``make_dreamer_actor``/``make_dreamer_critic`` and
``LatentPolicy`` (keyed modules), ``WorldModelLoss`` (``dreamer_v2`` preset) and
``DreamerActorCriticLoss`` (objectives), ``make_episode_replay``
(collectors), TorchRL's ``Collector`` and the ``Experiment`` harness.
"""
from __future__ import annotations

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
    UNIT_INTERVAL,
    ConfigError,
    Experiment,
    check_config,
    evaluate,
    observation_and_action_specs,
    run,
)
from latentrl.modules.actor_critic import make_dreamer_actor, make_dreamer_critic
from latentrl.modules.latent_policy import LatentPolicy
from latentrl.modules.world_model import RSSMImagine, make_world_model
from latentrl.objectives.dreamer import DreamerActorCriticLoss
from latentrl.objectives.world_model import WorldModelLoss

CONFIG_DIR = Path(__file__).resolve().parent
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "device": DEVICE,
    "env.action_repeat": POSITIVE_INT,
    "env.episode_steps": POSITIVE_INT,
    **{f"model.{k}": POSITIVE_INT for k in ("deter_dim", "hidden_dim", "num_vars", "num_classes", "units", "embed_dim", "cnn_channels")},
    "model.layers": NONNEGATIVE_INT,
    "loss.kl_scale": POSITIVE,
    "loss.kl_balance": UNIT_INTERVAL,
    "loss.free_nats": (lambda v: v >= 0, "a number >= 0"),
    "loss.discount_scale": (lambda v: v >= 0, "a number >= 0"),
    "loss.gamma": UNIT_INTERVAL,
    "loss.lmbda": UNIT_INTERVAL,
    "loss.horizon": POSITIVE_INT,
    "loss.rho": UNIT_INTERVAL,
    "loss.entropy_coef": (lambda v: v >= 0, "a number >= 0"),
    "loss.target_update_interval": POSITIVE_INT,
    **{f"optim.{k}": POSITIVE for k in ("model_lr", "actor_lr", "critic_lr", "eps", "max_grad_norm")},
    **{f"train.{k}": POSITIVE_INT for k in ("total_env_steps", "prefill", "train_every", "batch_size", "seq_len", "replay_capacity")},
    "train.pretrain": NONNEGATIVE_INT,
    "train.imagination_starts": (lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1 or null (all B x L states)"),
    "eval.episodes": POSITIVE_INT,
}


def make_agent_env(cfg: DictConfig, num_envs: int, seed, train: bool, primer=None):
    """The dm_control or Atari env (64x64 grayscale frames, no stacking) with ``is_init``, returns, the policy's
    state and episodes truncated at ``env.episode_steps`` env steps."""
    family = cfg.env.name.partition(":")[0]
    if family == "dmc":
        options = dict(action_repeat=cfg.env.action_repeat)
    elif family == "atari":
        options = dict(frame_skip=cfg.env.action_repeat, screen_size=64, frame_stack=1)
    else:
        raise ConfigError(f"config key 'env.name' is {cfg.env.name!r}; DreamerV2 here takes 'dmc:domain-task' or 'atari:Game'")
    try:
        return make_recurrent_env(cfg.env.name, num_envs=num_envs, seed=seed, train=train, primer=primer,
                                  prev_action_reward=False, max_steps=cfg.env.episode_steps // cfg.env.action_repeat, **options)
    except UnknownEnvironmentError as err:
        raise ConfigError(f"config key 'env.name': {err}") from err


def train(cfg: DictConfig) -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / "config.yaml"), HARNESS_CHOICES, CONSTRAINTS)
    t = cfg.train
    if t.seq_len > t.prefill:
        raise ConfigError(f"config key 'train.prefill' ({t.prefill}) must hold at least one sequence ('train.seq_len' = {t.seq_len})")
    device = torch.device(cfg.device)
    total_frames = t.total_env_steps // cfg.env.action_repeat  # actions
    episode = cfg.env.episode_steps // cfg.env.action_repeat
    exp = Experiment(cfg, total_frames=total_frames)  # seeds everything: build after this

    obs_key = cfg.env.observation_key
    obs_shape, action_spec = observation_and_action_specs(make_agent_env(cfg, 1, None, True), obs_key, cfg.env.name)
    discrete = action_spec.domain == "discrete"
    action_dim = action_spec.shape[-1]
    m, lo = cfg.model, cfg.loss
    world_model = make_world_model(
        obs_shape, action_dim, latent="categorical", deter_dim=m.deter_dim, hidden_dim=m.hidden_dim,
        num_vars=m.num_vars, num_classes=m.num_classes, units=m.units, layers=m.layers, embed_dim=m.embed_dim,
        cnn_channels=m.cnn_channels, predict_discount=m.predict_discount, observation_key=obs_key,
    ).to(device)
    actor = make_dreamer_actor(world_model.rssm, action_dim, discrete=discrete, units=m.units, layers=m.layers).to(device)
    critic = make_dreamer_critic(world_model.rssm, units=m.units, layers=m.layers).to(device)
    policy = LatentPolicy(world_model.encoder, world_model.rssm, actor, observation_key=obs_key)
    primer = policy.make_tensordict_primer()
    env = make_agent_env(cfg, 1, cfg.seed, True, primer)
    eval_env = make_agent_env(cfg, cfg.eval.episodes, None, False, primer)
    collector = Collector(env, policy, frames_per_batch=t.train_every, total_frames=total_frames,
                          init_random_frames=t.prefill, device=device)

    model_loss = WorldModelLoss(world_model, "dreamer_v2", kl_scale=lo.kl_scale, kl_balance=lo.kl_balance,
                                free_nats=lo.free_nats, discount=lo.gamma, discount_scale=lo.discount_scale)
    model_loss.set_keys(observation=obs_key, next_observation=("next", obs_key))
    ac_loss = DreamerActorCriticLoss(
        actor, critic, RSSMImagine(world_model.rssm), world_model.reward_model, world_model.discount_model,
        horizon=lo.horizon, gamma=lo.gamma, lmbda=lo.lmbda, discrete=discrete, rho=lo.rho,
        entropy_coef=lo.entropy_coef, target_update_interval=lo.target_update_interval,
    )
    target_update = ac_loss.make_target_updater()
    o = cfg.optim
    model_opt = torch.optim.Adam(world_model.parameters(), lr=o.model_lr, eps=o.eps)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=o.actor_lr, eps=o.eps)
    critic_opt = torch.optim.Adam(ac_loss.value_network_params.parameters(), lr=o.critic_lr, eps=o.eps)
    replay = make_episode_replay(t.replay_capacity, t.batch_size, t.seq_len)

    exp.evaluator = lambda: evaluate(eval_env, policy, max_steps=episode, seed=cfg.seed + 10_000)
    exp.track(world_model=world_model, actor=actor, ac_loss=ac_loss, model_opt=model_opt, actor_opt=actor_opt,
              critic_opt=critic_opt, target_update=target_update, replay=replay, collector=collector)

    def step(optimizer, loss, params):
        optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(params, o.max_grad_norm)
        optimizer.step()
        return norm

    try:
        for batch in exp.iterate(collector):
            replay.extend(batch.exclude(*policy.recomputed_keys).reshape(-1))
            if exp.counters["frames"] < t.prefill:
                continue
            updates = 1 + (t.pretrain if exp.counters["frames"] - t.train_every < t.prefill else 0)
            for _ in range(updates):
                data = sample_sequences(replay, t.seq_len).to(device)
                wm = model_loss(data)  # also writes the posterior states "deter", "stoch" into data
                wm_terms = wm.select(*[k for k in wm.keys() if k.startswith("loss_")])
                exp.check_finite(wm_terms)
                model_norm = step(model_opt, sum(wm_terms.values()), world_model.parameters())
                starts = data.select("deter", "stoch").reshape(-1)
                if t.imagination_starts is not None and t.imagination_starts < starts.shape[0]:
                    starts = starts[torch.randperm(starts.shape[0], device=starts.device)[: t.imagination_starts]]
                ac = ac_loss(starts)
                exp.check_finite(ac.select("loss_actor", "loss_critic"))
                actor_norm = step(actor_opt, ac["loss_actor"], actor.parameters())
                critic_norm = step(critic_opt, ac["loss_critic"], ac_loss.value_network_params.parameters())
                target_update.step()
            if exp.counters["iterations"] % 20 == 0:
                exp.log({
                    **{f"train/{k}": v for k, v in wm.items()},
                    **{f"train/{k}": v for k, v in ac.items()},
                    "train/model_grad_norm": model_norm,
                    "train/actor_grad_norm": actor_norm,
                    "train/critic_grad_norm": critic_norm,
                    "train/env_steps": exp.counters["frames"] * cfg.env.action_repeat,
                })
        summary = exp.finish()
    finally:
        collector.shutdown()
        eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
