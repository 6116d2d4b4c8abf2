"""DreamerV3: a block-GRU world model, with actor and critic learned in its imagination.

Hafner et al. 2025, "Mastering Diverse Domains through World Models" (Nature), as the authors' current
code trains it: after a prefill, updates at a fixed train ratio (``B·T / train_ratio`` actions per
update, TorchRL's resumable ``DreamerV3UpdateRatio``), each one step of one LaProp + AGC optimizer
(TorchRL's ``DreamerV3Optimizer``) on the sum of the world-model loss (``dreamer_v3`` preset: symlog
reconstruction, two-hot reward, continue, KL dyn/rep with free bits) and the actor-critic loss
(imagination from every replayed posterior state, plus the replay value loss), then the slow critic's EMA.
With the replay context (``train.replay_context: 1``, the code's) each replayed sequence starts from the
posterior stored with the step before it, and the update writes its posteriors back (``ReplayContext``).

    python examples/dreamer_v3/train.py                                  # CartPole-v1, size1m
    python examples/dreamer_v3/train.py env.name=dmc:cartpole-balance    # dm_control, proprioceptive
    python examples/dreamer_v3/train.py env.name=dmc:cartpole-balance env.pixels=true   # 64 x 64 pixels
    python examples/dreamer_v3/train.py env.name=atari:Pong env.action_repeat=4 train.train_ratio=32
    python examples/dreamer_v3/train.py checkpoint.resume=<run dir>
    python examples/dreamer_v3/train.py --config-name v1_2023            # the 2023 release's recipe

Preset ``v1_2023`` (``model.arch: v1_2023``) swaps in the 2023 release's networks
(``make_dreamer_v3_2023_world_model``: LayerNorm GRU, learned initial state), its symlog-space bins,
continue mode times ``1 − 1/333``, dynamics backprop for continuous actions, and three Adam optimizers
(one ``torch.optim.Adam`` with a parameter group each, clipped per group: ``optim.kind: adam``).

Everything reusable comes from the package: ``make_dreamer_v3_world_model``, ``make_dreamer_v3_actor``,
``make_dreamer_v3_critic``, ``RSSMImagine`` and ``LatentPolicy`` (keyed modules), ``WorldModelLoss`` and
``DreamerV3ActorCriticLoss`` (objectives), ``make_episode_replay`` and ``ReplayContext`` (collectors), TorchRL's
``Collector``, ``DreamerV3Optimizer`` and ``DreamerV3UpdateRatio``, and the ``Experiment`` harness.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.collectors import Collector
from torchrl.trainers.algorithms import DreamerV3Optimizer, DreamerV3UpdateRatio

from latentrl.collectors import ReplayContext, make_episode_replay, sample_sequences
from latentrl.envs import UnknownEnvironmentError, make_recurrent_env
from latentrl.harness import (
    DEVICE,
    HARNESS_CHOICES,
    HARNESS_CONSTRAINTS,
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
from latentrl.modules import (
    SIZES,
    LatentPolicy,
    RSSMImagine,
    make_dreamer_v3_2023_actor,
    make_dreamer_v3_2023_critic,
    make_dreamer_v3_2023_world_model,
    make_dreamer_v3_actor,
    make_dreamer_v3_critic,
    make_dreamer_v3_world_model,
)
from latentrl.objectives import DreamerV3ActorCriticLoss, WorldModelLoss

CONFIG_DIR = Path(__file__).resolve().parent
NONNEGATIVE = (lambda v: v >= 0, "a number >= 0")
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "device": DEVICE,
    "env.action_repeat": POSITIVE_INT,
    "env.episode_steps": POSITIVE_INT,
    "model.size": (lambda v: v in SIZES, f"one of {list(SIZES)}"),
    "model.num_vars": POSITIVE_INT,
    "model.blocks": POSITIVE_INT,
    "model.compile": (lambda v: isinstance(v, bool), "true or false"),
    "model.arch": (lambda v: v in ("code", "v1_2023"), "'code' (today's networks) or 'v1_2023' (the 2023 release's)"),
    "loss.bins": (lambda v: v in ("symexp", "symlog"), "'symexp' or 'symlog'"),
    "loss.continuation": (lambda v: v in ("probability", "mode"), "'probability' or 'mode'"),
    "loss.actor_grad_cont": (lambda v: v in ("reinforce", "backprop"), "'reinforce' or 'backprop'"),
    "loss.discount": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "loss.continue_target": UNIT_INTERVAL,
    "optim.kind": (lambda v: v in ("laprop", "adam"), "'laprop' (one LaProp + AGC) or 'adam' (three, 2023)"),
    **{f"optim.{k}": POSITIVE for k in ("model_lr", "actor_lr", "critic_lr", "model_eps", "ac_eps", "model_clip",
                                        "ac_clip")},
    **{f"loss.{k}": NONNEGATIVE for k in ("dyn_scale", "rep_scale", "free_bits", "entropy_coef", "slow_reg",
                                          "replay_scale")},
    "loss.horizon": POSITIVE_INT,
    "loss.imagine_last": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: every replayed state)"),
    "loss.lmbda": UNIT_INTERVAL,
    "loss.slow_decay": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    **{f"optim.{k}": POSITIVE for k in ("lr", "agc", "eps")},
    "optim.warmup": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "train.replay_context": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: no replay context)"),
    "train.train_ratio": POSITIVE,
    **{f"train.{k}": POSITIVE_INT for k in ("total_env_steps", "prefill", "steps_per_batch", "batch_size", "seq_len",
                                            "replay_capacity")},
    "eval.episodes": POSITIVE_INT,
    "logger.train_every": POSITIVE_INT,
}


def observation_key(cfg: DictConfig) -> str:
    """``pixels`` for images (dmc with ``env.pixels``, Atari), else ``env.observation_key``."""
    return "pixels" if cfg.env.pixels or cfg.env.name.startswith("atari:") else cfg.env.observation_key


def make_agent_env(cfg: DictConfig, num_envs: int, seed, train: bool, primer=None):
    """A gymnasium, dm_control (vector or pixels) or Atari env with ``is_init``, returns and the policy's state.

    Atari as the code's ``atari`` task: 96 x 96 grayscale, action repeat 4 max-pooled, sticky actions 0.25,
    the full action set, 30 no-op starts, raw rewards and no life-loss signal (the factory's ``train=False``
    preprocessing, for training too), one frame (the RSSM is the memory)."""
    family = cfg.env.name.partition(":")[0] if ":" in cfg.env.name else "gym"
    if family not in ("gym", "dmc", "atari"):
        raise ConfigError(f"config key 'env.name' is {cfg.env.name!r}; DreamerV3 here takes a gymnasium id, "
                          "'dmc:domain-task' or 'atari:Game'")
    if cfg.env.pixels and family != "dmc":
        raise ConfigError("config key 'env.pixels' applies to dmc tasks (Atari is always pixels)")
    options = {}
    if family == "dmc":
        options = dict(action_repeat=cfg.env.action_repeat, pixels=bool(cfg.env.pixels), image_size=64)
    elif family == "atari":
        options = dict(frame_skip=cfg.env.action_repeat, screen_size=96, frame_stack=1, noop_max=30,
                       repeat_action_probability=0.25, full_action_space=True)
        train = False  # raw rewards, no end-of-life flag (the code's clip_reward: False, lives: unused)
    elif cfg.env.action_repeat != 1:
        raise ConfigError("config key 'env.action_repeat' must be 1 for gymnasium tasks")
    try:
        return make_recurrent_env(cfg.env.name, num_envs=num_envs, seed=seed, train=train, primer=primer,
                                  prev_action_reward=False, max_steps=cfg.env.episode_steps // cfg.env.action_repeat,
                                  **options)
    except UnknownEnvironmentError as err:
        raise ConfigError(f"config key 'env.name': {err}") from err


def make_networks(cfg: DictConfig, obs_shape, action_dim: int, discrete: bool):
    """World model, actor and critic of today's code (``model.arch: code``, a size preset) or of the 2023
    release (``v1_2023``: its ``dmc_proprio`` sizes)."""
    m, obs_key = cfg.model, observation_key(cfg)
    if m.arch == "v1_2023":
        if m.compile:
            raise ConfigError("config key 'model.compile' applies to model.arch 'code' (the block GRU) only")
        world_model = make_dreamer_v3_2023_world_model(obs_shape, action_dim, observation_key=obs_key)
        return (world_model, make_dreamer_v3_2023_actor(world_model.rssm, action_dim, discrete=discrete),
                make_dreamer_v3_2023_critic(world_model.rssm))
    units = SIZES[m.size]["units"]
    world_model = make_dreamer_v3_world_model(obs_shape, action_dim, size=m.size, num_vars=m.num_vars,
                                              blocks=m.blocks, observation_key=obs_key)
    if m.compile:
        world_model.rssm.compile_core()
    return (world_model, make_dreamer_v3_actor(world_model.rssm, action_dim, discrete=discrete, units=units),
            make_dreamer_v3_critic(world_model.rssm, units=units))


def make_optimizer(o: DictConfig, world_model, actor, ac_loss):
    """``(optimizer, clip)``: today's one LaProp + AGC over everything (TorchRL's ``DreamerV3Optimizer``; ``clip``
    does nothing), or the 2023 release's three Adam optimizers, as one ``torch.optim.Adam`` with a parameter
    group each (model, actor, critic: their own lr and eps) and ``clip`` their global norms separately
    (1000, 100, 100), before the step."""
    critic = list(ac_loss.value_network_params.parameters())
    if o.kind == "laprop":
        params = [*world_model.parameters(), *actor.parameters(), *critic]
        return DreamerV3Optimizer(params, lr=o.lr, agc=o.agc, eps=o.eps, warmup_steps=o.warmup), lambda: None
    groups = [dict(params=list(world_model.parameters()), lr=o.model_lr, eps=o.model_eps, clip=o.model_clip),
              dict(params=list(actor.parameters()), lr=o.actor_lr, eps=o.ac_eps, clip=o.ac_clip),
              dict(params=critic, lr=o.critic_lr, eps=o.ac_eps, clip=o.ac_clip)]
    optimizer = torch.optim.Adam(groups)

    def clip():
        for group in optimizer.param_groups:
            torch.nn.utils.clip_grad_norm_(group["params"], group["clip"])

    return optimizer, clip


def updates_done(optimizer) -> int:
    """Optimizer steps taken (LaProp keeps them per group, Adam per parameter)."""
    if "step" in optimizer.param_groups[0]:
        return int(optimizer.param_groups[0]["step"])
    state = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
    return int(state.get("step", 0))


def train(cfg: DictConfig) -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / "config.yaml"), HARNESS_CHOICES, CONSTRAINTS)
    t, m, lo, o = cfg.train, cfg.model, cfg.loss, cfg.optim
    slice_len = t.seq_len + t.replay_context  # replayed steps per sequence: the context, then the trained ones
    if slice_len > t.prefill:
        raise ConfigError(f"config key 'train.prefill' ({t.prefill}) must hold at least one sequence "
                          f"('train.seq_len' + 'train.replay_context' = {slice_len})")
    device = torch.device(cfg.device)
    total_frames = t.total_env_steps // cfg.env.action_repeat  # actions
    episode = cfg.env.episode_steps // cfg.env.action_repeat
    exp = Experiment(cfg, total_frames=total_frames)  # seeds everything: build after this

    obs_key = observation_key(cfg)
    obs_shape, action_spec = observation_and_action_specs(make_agent_env(cfg, 1, None, True), obs_key, cfg.env.name)
    if len(obs_shape) not in (1, 3):
        raise ConfigError(f"config key 'env.observation_key': DreamerV3 takes vectors [D] or images [C, H, W], "
                          f"{obs_key!r} has shape {list(obs_shape)}")
    images = len(obs_shape) == 3
    if images and m.arch == "v1_2023" and cfg.env.name.startswith("atari:"):
        raise ConfigError("config key 'model.arch': 'v1_2023' takes vectors or dmc pixels here (its CNN halves "
                          "64 x 64 images to 4 x 4; the Atari path renders 96 x 96)")
    discrete = action_spec.domain == "discrete"
    action_dim = action_spec.shape[-1]
    world_model, actor, critic = (net.to(device) for net in make_networks(cfg, obs_shape, action_dim, discrete))
    policy = LatentPolicy(world_model.encoder, world_model.rssm, actor, observation_key=obs_key)
    primer = policy.make_tensordict_primer()
    env = make_agent_env(cfg, 1, cfg.seed, True, primer)
    eval_env = make_agent_env(cfg, cfg.eval.episodes, None, False, primer)
    collector = Collector(env, policy, frames_per_batch=t.steps_per_batch, total_frames=total_frames,
                          init_random_frames=t.prefill, device=device)

    model_loss = WorldModelLoss(world_model, "dreamer_v3", dyn_scale=lo.dyn_scale, rep_scale=lo.rep_scale,
                                reco_loss="mse" if images else "symlog_mse",
                                free_bits=lo.free_bits, discount=lo.continue_target,
                                reward_loss={"symexp": "two_hot", "symlog": "symlog_two_hot"}[lo.bins])
    model_loss.set_keys(observation=obs_key, next_observation=("next", obs_key), discount_logit="continue_logit")
    ac_loss = DreamerV3ActorCriticLoss(
        actor, critic, RSSMImagine(world_model.rssm), world_model.reward_model, world_model.discount_model,
        horizon=lo.horizon, lmbda=lo.lmbda, entropy_coef=lo.entropy_coef, slow_reg=lo.slow_reg,
        slow_decay=lo.slow_decay, replay_scale=lo.replay_scale, bins=lo.bins, continuation=lo.continuation,
        discount=lo.discount, actor_grad="reinforce" if discrete else lo.actor_grad_cont,
        imagine_last=lo.imagine_last,
    )
    slow_critic = ac_loss.make_target_updater()
    optimizer, clip = make_optimizer(o, world_model, actor, ac_loss)
    ratio = DreamerV3UpdateRatio(t.train_ratio / (t.batch_size * t.seq_len))  # updates per action
    if t.replay_capacity < total_frames:
        raise ConfigError(f"config key 'train.replay_capacity' ({t.replay_capacity}) must hold the whole run "
                          f"({total_frames} actions): sequences cross episode ends, and would cross the write "
                          "cursor of a wrapped-around storage")
    replay = make_episode_replay(t.replay_capacity, t.batch_size, slice_len, traj_key="stream")  # across episodes
    context = ReplayContext(replay, t.seq_len, t.replay_context) if t.replay_context else None
    # the replay context keeps the policy's posterior after each step (its carried state's "next" entries)
    dropped = [k for k in policy.recomputed_keys if context is None or k not in context.entry_keys]
    image_keys = [obs_key, ("next", obs_key)]

    exp.evaluator = lambda: evaluate(eval_env, policy, max_steps=episode, seed=cfg.seed + 10_000)
    exp.track(world_model=world_model, actor=actor, ac_loss=ac_loss, optimizer=optimizer, slow_critic=slow_critic,
              ratio=ratio, replay=replay, collector=collector)

    wm = ac = None
    try:
        for batch in exp.iterate(collector):
            steps = batch.exclude(*dropped).reshape(-1)
            if images:  # stored as bytes (ToTensorImage's x / 255 is exact), 4x less memory
                steps = steps.update({k: (steps.get(k) * 255).round().to(torch.uint8) for k in image_keys})
            steps.set("stream", torch.zeros(steps.shape, dtype=torch.long, device=steps.device))  # one env: one stream
            replay.extend(steps)
            if exp.counters["frames"] < t.prefill:
                continue
            for _ in range(ratio(exp.counters["frames"])):
                data = (context.sample() if context else sample_sequences(replay, t.seq_len)).to(device)
                if images:
                    data = data.update({k: data.get(k).float() / 255 for k in image_keys})
                wm = model_loss(data)  # also writes the posterior states "deter", "stoch" into data
                ac = ac_loss(data)
                terms = {**{k: v for k, v in wm.items() if k.startswith("loss_")},
                         **{k: v for k, v in ac.items() if k.startswith("loss_")}}
                exp.check_finite(terms)
                optimizer.zero_grad()
                sum(terms.values()).backward()  # each part's gradient comes from its own loss only
                clip()
                optimizer.step()
                slow_critic.step()
                if context:
                    context.write_back(data)
            if wm is not None and exp.counters["iterations"] % cfg.logger.train_every == 0:
                exp.log({
                    **{f"train/{k}": v for k, v in wm.items()},
                    **{f"train/{k}": v for k, v in ac.items()},
                    "train/updates": updates_done(optimizer),
                    "train/env_steps": exp.counters["frames"] * cfg.env.action_repeat,
                })
        summary = exp.finish()
    finally:
        collector.shutdown()
        eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
