"""RL-LSTM: recurrent PPO on masked CartPole.

The MERLIN paper's "RL-LSTM" baseline (Wayne et al. 2018): an actor-critic
whose policy and value read an LSTM over observations, trained here with
PPO (Schulman et al. 2017) and GAE (Schulman et al. 2016). On masked
CartPole (velocities removed) the LSTM has to infer velocities from
successive positions; ``model.policy=mlp`` trains the same agent with a
feed-forward layer instead, the memoryless control.

    python examples/rl_lstm/train.py                       # defaults below
    python examples/rl_lstm/train.py model.policy=mlp      # feed-forward control
    python examples/rl_lstm/train.py checkpoint.resume=outputs/<date>/<time>

Everything reusable comes from the package: ``make_env`` (envs), the
actor-critic builder (modules), TorchRL's Collector, GAE and ClipPPOLoss,
and the ``Experiment`` harness (logging, evaluation, exact checkpoints).
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.collectors import Collector
from torchrl.envs import Compose, InitTracker, ObservationNorm, RewardSum, TransformedEnv
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from latentrl.harness import (
    DEVICE,
    HARNESS_CHOICES,
    HARNESS_CONSTRAINTS,
    ConfigError,
    Experiment,
    check_config,
    evaluate,
    make_env_from_config,
    run,
)
from latentrl.modules.recurrent import make_actor_critic, recurrent_primers

CONFIG_DIR = Path(__file__).resolve().parent
CHOICES = {**HARNESS_CHOICES, "model.policy": ("lstm", "mlp")}
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "env.num_envs": (lambda v: v >= 1, "an integer >= 1"),
    "collector.frames_per_batch": (lambda v: v > 0, "a positive integer (a multiple of env.num_envs)"),
    "collector.total_frames": (lambda v: v > 0, "a positive integer"),
    "ppo.epochs": (lambda v: v >= 1, "an integer >= 1"),
    "ppo.minibatches": (lambda v: v >= 1, "an integer >= 1 that divides env.num_envs"),
    "ppo.gamma": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "ppo.lmbda": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "ppo.lr": (lambda v: v > 0, "a positive number"),
    "ppo.reward_scale": (lambda v: v > 0, "a positive number"),
    "ppo.lr_end_fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "env.delay": (lambda v: v is None or v >= 0, "null or an integer >= 0"),
    "device": DEVICE,
}


def validate(cfg: DictConfig) -> None:
    """Checks every key and value against config.yaml before anything is built."""
    check_config(cfg, OmegaConf.load(CONFIG_DIR / "config.yaml"), CHOICES, CONSTRAINTS)
    if cfg.collector.frames_per_batch % cfg.env.num_envs:
        raise ConfigError(
            f"config key 'collector.frames_per_batch' ({cfg.collector.frames_per_batch}) must be a multiple "
            f"of 'env.num_envs' ({cfg.env.num_envs})"
        )
    if cfg.env.num_envs % cfg.ppo.minibatches:
        raise ConfigError(
            f"config key 'ppo.minibatches' ({cfg.ppo.minibatches}) must divide 'env.num_envs' ({cfg.env.num_envs})"
        )


def make_agent_env(cfg: DictConfig, num_envs: int, primers=()) -> TransformedEnv:
    if cfg.env.delay is not None and cfg.env.name != "pomdp:tmaze":
        raise ConfigError(f"config key 'env.delay' is the T-maze's corridor length; {cfg.env.name!r} takes none (set it to null)")
    env = make_env_from_config(cfg, num_envs, **({"delay": cfg.env.delay} if cfg.env.delay is not None else {}))
    if "observation" not in env.observation_spec.keys() or env.observation_spec["observation"].ndim != len(env.batch_size) + 1:
        raise ConfigError(f"config key 'env.name': {cfg.env.name!r} has no vector 'observation'; RL-LSTM needs one")
    if not isinstance(env, TransformedEnv):
        env = TransformedEnv(env)
    if cfg.env.obs_scale is not None:
        dim = env.observation_spec["observation"].shape[-1]
        if len(cfg.env.obs_scale) != dim:
            raise ConfigError(
                f"config key 'env.obs_scale' has {len(cfg.env.obs_scale)} entries; {cfg.env.name!r} observations "
                f"have {dim} (or set it to null)"
            )
        scale = torch.tensor(list(cfg.env.obs_scale), dtype=torch.float32)
        env.append_transform(ObservationNorm(loc=torch.zeros_like(scale), scale=scale, in_keys=["observation"]))
    env.append_transform(Compose(InitTracker(), RewardSum(), *[p.clone() for p in primers]))
    return env


def train(cfg: DictConfig) -> dict:
    validate(cfg)
    device = torch.device(cfg.device)
    total_frames = cfg.collector.total_frames
    exp = Experiment(cfg, total_frames=total_frames)  # seeds everything: build the agent after this

    # --- environment and agent --------------------------------------------
    env = make_agent_env(cfg, cfg.env.num_envs)
    actor, critic = make_actor_critic(
        env.observation_spec["observation"].shape[-1],
        env.action_spec,
        hidden_size=cfg.model.hidden_size,
        head_units=list(cfg.model.head_units),
        recurrent=cfg.model.policy == "lstm",
    )
    actor, critic = actor.to(device), critic.to(device)
    primers = recurrent_primers(actor, critic)  # the LSTM states, carried by the env
    for primer in primers:
        env.append_transform(primer.clone())
    env.set_seed(cfg.seed)
    eval_env = make_agent_env(cfg, cfg.eval.episodes, primers)

    collector = Collector(
        env,
        actor,
        frames_per_batch=cfg.collector.frames_per_batch,
        total_frames=total_frames,
        device=device,
    )

    # --- loss and optimizer -------------------------------------------------
    advantage = GAE(
        gamma=cfg.ppo.gamma,
        lmbda=cfg.ppo.lmbda,
        value_network=critic,
        shifted=False,
        deactivate_vmap=True,  # LSTMs are not vmap-compatible
    )
    loss_module = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=cfg.ppo.clip_epsilon,
        entropy_coeff=cfg.ppo.entropy_coef,
        critic_coeff=cfg.ppo.critic_coef,
        loss_critic_type="l2",
        normalize_advantage=cfg.ppo.normalize_advantage,
    )
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=cfg.ppo.lr, eps=1e-5)
    num_iterations = -(-total_frames // cfg.collector.frames_per_batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: max(cfg.ppo.lr_end_fraction, 1.0 - it / num_iterations) if cfg.ppo.anneal_lr else 1.0
    )

    # --- harness: evaluation and everything a checkpoint must hold ------------
    exp.evaluator = lambda: evaluate(eval_env, actor, max_steps=cfg.eval.max_steps, seed=cfg.seed + 10_000)
    exp.track(actor=actor, critic=critic, optimizer=optimizer, scheduler=scheduler, collector=collector)

    envs_per_minibatch = cfg.env.num_envs // cfg.ppo.minibatches
    for batch in exp.iterate(collector):
        # batch: [num_envs, T], time last; the LSTMs run over T and reset at is_init
        batch.set(("next", "reward"), batch.get(("next", "reward")) * cfg.ppo.reward_scale)
        with set_recurrent_mode(True):
            for epoch in range(cfg.ppo.epochs):
                if epoch == 0 or cfg.ppo.gae_every_epoch:
                    with torch.no_grad():
                        advantage(batch)
                for envs in torch.randperm(cfg.env.num_envs).split(envs_per_minibatch):
                    losses = loss_module(batch[envs])
                    exp.check_finite(losses)
                    loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                    optimizer.zero_grad()
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.ppo.max_grad_norm)
                    optimizer.step()
        scheduler.step()
        exp.log(
            {
                "train/loss_objective": losses["loss_objective"],
                "train/loss_critic": losses["loss_critic"],
                "train/entropy": losses["entropy"],
                "train/grad_norm": grad_norm,
                "train/lr": scheduler.get_last_lr()[0],
            }
        )

    summary = exp.finish()
    collector.shutdown()
    env.close()
    eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
