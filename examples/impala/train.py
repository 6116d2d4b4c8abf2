"""IMPALA: asynchronous actors, a V-trace learner (Espeholt et al. 2018).

Actors (TorchRL collectors in their own processes, or Ray actors) run the
policy on batched environments and send unrolls of ``n`` steps with the
behaviour log-probabilities; the learner trains on batches of unrolls with
:class:`~latentrl.objectives.impala.IMPALALoss` and pushes its weights back.
The policy lag of every frame is measured and logged.

    python examples/impala/train.py                          # CartPole-v1, 2 actors
    python examples/impala/train.py loss.correction=none     # an ablation of the paper
    python examples/impala/train.py --config-name atari      # Atari, Table G1 hyperparameters
    python examples/impala/train.py --config-name minatar    # MinAtar Breakout, MinAtar's network, a CPU budget
    python examples/impala/train.py --config-name popart_multitask loss.popart=true   # CartPole x1, x100, x10^4

Everything reusable comes from the package: ``make_env`` (envs),
``ActorLearner`` (collectors), ``IMPALALoss`` and ``PopArt``, and the
``Experiment`` harness (logging, evaluation, checkpoints).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor

from latentrl.collectors.actor_learner import BACKENDS, ActorLearner
from latentrl.envs import make_multitask_env, make_scored_env
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
from latentrl.modules.popart import PopArt
from latentrl.modules.q_networks import MinAtarTorso
from latentrl.objectives.impala import CORRECTIONS, IMPALALoss

CONFIG_DIR = Path(__file__).resolve().parent
CHOICES = {
    **HARNESS_CHOICES,
    "model.torso": ("mlp", "cnn", "minatar"),
    "actors.backend": BACKENDS,
    "loss.correction": CORRECTIONS,
    "loss.reduction": ("mean", "sum"),
    "optim.name": ("rmsprop", "adam"),
}
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "env.envs_per_actor": (lambda v: v >= 1, "an integer >= 1"),
    "env.reward_scales": (
        lambda v: v is None or (len(v) >= 1 and all(isinstance(s, (int, float)) and s > 0 for s in v)),
        "null (one task) or a list of positive reward scales, one per task",
    ),
    "actors.num_actors": (lambda v: v >= 1, "an integer >= 1"),
    "actors.unroll_length": (lambda v: v >= 1, "an integer >= 1"),
    "actors.sync_interval": (lambda v: v >= 1, "an integer >= 1"),
    "learner.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "learner.total_frames": (lambda v: v > 0, "a positive integer"),
    "loss.gamma": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "loss.rho_bar": (lambda v: v > 0, "a positive number"),
    "loss.c_bar": (lambda v: v > 0, "a positive number"),
    "loss.popart_beta": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "optim.lr": (lambda v: v > 0, "a positive number"),
    "optim.max_grad_norm": (lambda v: v > 0, "a positive number"),
}


class ShallowCNN(nn.Module):
    """IMPALA's shallow network (Fig. 3, left): conv 8x8/4 (16), conv 4x4/2 (32), linear 256, ReLUs."""

    def __init__(self, in_channels: int, size: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 16, 8, 4), nn.ReLU(), nn.Conv2d(16, 32, 4, 2), nn.ReLU(), nn.Flatten(-3)
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_channels, size, size)).shape[-1]
        self.linear = nn.Sequential(nn.Linear(flat, 256), nn.ReLU())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        batch = pixels.shape[:-3]
        out = self.linear(self.convs(pixels.reshape(-1, *pixels.shape[-3:])))
        return out.reshape(*batch, -1)


def num_tasks(cfg: DictConfig) -> int:
    return len(cfg.env.reward_scales) if cfg.env.get("reward_scales") else 1


def make_actor_env_fn(cfg: DictConfig, train: bool = True):
    """Picklable factory of one actor's batched env (``train``) or of the evaluation env.

    An actor runs ``env.envs_per_actor`` envs; evaluation runs
    ``eval.episodes`` envs per task. With ``env.reward_scales`` the batch is
    split into tasks: task ``k`` has its rewards multiplied by
    ``reward_scales[k]`` (training only) and every step carries ``"task_id"``
    (:func:`~latentrl.envs.make_multitask_env`).
    """
    tasks = num_tasks(cfg)
    per_task = cfg.env.envs_per_actor // tasks if train else cfg.eval.episodes
    seed = cfg.seed if train else None
    if tasks == 1:
        return functools.partial(make_scored_env, cfg.env.name, per_task, seed, train)
    return functools.partial(make_multitask_env, cfg.env.name, list(cfg.env.reward_scales), per_task, seed, train)


def make_agent(cfg: DictConfig, env) -> tuple[ProbabilisticActor, TensorDictModule, PopArt | None]:
    """Actor and critic (and the critic's PopArt head, when ``loss.popart``) for ``model.torso``.

    With several tasks (``env.reward_scales``) the critic has one value head
    per task, selected by ``"task_id"``; the policy is shared (the tasks
    differ only in their reward scale). The head is a :class:`PopArt` layer
    in both cases: without ``loss.popart`` its statistics are never updated
    (``mu = 0``, ``sigma = 1``), so it is a plain multi-head linear layer and
    the two runs differ only in the normalization.
    """
    if not hasattr(env.action_spec, "space") or not hasattr(env.action_spec.space, "n"):
        raise ConfigError(f"config key 'env.name': {cfg.env.name!r} has no discrete (one-hot) action space")
    n_actions = env.action_spec.space.n
    obs_key = "observation" if "observation" in env.observation_spec.keys() else "pixels"
    shape = env.observation_spec[obs_key].shape[len(env.batch_size) :]
    hidden = list(cfg.model.hidden)
    tasks = num_tasks(cfg)
    width = {"mlp": hidden[-1], "cnn": 256, "minatar": 128}[cfg.model.torso]
    head = PopArt(width, num_tasks=tasks, beta=cfg.loss.popart_beta)
    head_keys = ["critic_features", "task_id"] if tasks > 1 else ["critic_features"]
    popart = head if cfg.loss.popart else None
    if cfg.model.torso == "mlp":
        if len(shape) != 1:
            raise ConfigError(f"config key 'model.torso': 'mlp' needs vector observations; {cfg.env.name!r} gives {tuple(shape)} (use 'cnn')")
        policy_net = MLP(in_features=shape[0], out_features=n_actions, num_cells=hidden, activation_class=nn.Tanh)
        actor_logits = TensorDictModule(policy_net, [obs_key], ["logits"])
        if popart is None and tasks == 1:
            critic = TensorDictModule(MLP(in_features=shape[0], out_features=1, num_cells=hidden, activation_class=nn.Tanh), [obs_key], ["state_value"])
        else:
            torso = MLP(in_features=shape[0], out_features=hidden[-1], num_cells=hidden[:-1], activation_class=nn.Tanh, activate_last_layer=True)
            critic = TensorDictSequential(
                TensorDictModule(torso, [obs_key], ["critic_features"]),
                TensorDictModule(head, head_keys, ["normalized_value", "state_value"]),
            )
    else:
        if len(shape) != 3:
            raise ConfigError(
                f"config key 'model.torso': {cfg.model.torso!r} needs image observations; {cfg.env.name!r} gives {tuple(shape)}"
            )
        net = ShallowCNN(shape[0], shape[-1]) if cfg.model.torso == "cnn" else MinAtarTorso(shape[0], shape[1:])
        torso = TensorDictModule(net, [obs_key], ["critic_features"])
        actor_logits = TensorDictSequential(torso, TensorDictModule(nn.Linear(width, n_actions), ["critic_features"], ["logits"]))
        value = (
            TensorDictModule(head, head_keys, ["normalized_value", "state_value"])
            if popart is not None or tasks > 1
            else TensorDictModule(nn.Linear(width, 1), ["critic_features"], ["state_value"])
        )
        critic = TensorDictSequential(torso, value)  # the torso is shared with the actor
    actor = ProbabilisticActor(
        actor_logits,
        in_keys=["logits"],
        out_keys=["action"],
        spec=env.action_spec,
        distribution_class=OneHotCategorical,
        return_log_prob=True,
    )
    return actor, critic, popart


def make_optimizer(cfg: DictConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, alpha=o.rmsprop_alpha, eps=o.eps, momentum=o.momentum)
    return torch.optim.Adam(params, lr=o.lr, eps=o.eps)


def log_lag_histogram(exp: Experiment, lags: dict[int, int], run_dir: Path) -> None:
    """The policy-lag histogram: to the logger where it takes histograms (TensorBoard, W&B), always to JSON."""
    (run_dir / "policy_lag_histogram.json").write_text(json.dumps({str(k): v for k, v in lags.items()}, indent=1))
    if lags and exp.cfg.logger.backend != "csv":  # TorchRL's CSVLogger refuses histograms
        values = torch.repeat_interleave(torch.tensor(list(lags)), torch.tensor(list(lags.values())))
        exp.logger.log_histogram("train/policy_lag", values, step=exp.counters["frames"])


def train(cfg: DictConfig, config_name: str = "config") -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"), CHOICES, CONSTRAINTS)
    if cfg.actors.backend == "sync" and cfg.actors.num_actors != 1:
        raise ConfigError("config key 'actors.num_actors' must be 1 with 'actors.backend' = 'sync'")
    if cfg.env.envs_per_actor % num_tasks(cfg):
        raise ConfigError(
            f"config key 'env.envs_per_actor' ({cfg.env.envs_per_actor}) must be a multiple of the number of "
            f"tasks in 'env.reward_scales' ({num_tasks(cfg)})"
        )
    device = torch.device(cfg.device)
    exp = Experiment(cfg, total_frames=cfg.learner.total_frames)  # seeds everything: build after this

    probe = make_env_from_config(cfg, 1)  # specs only; a ConfigError names an unknown env.name
    actor, critic, popart = make_agent(cfg, probe)
    probe.close()
    actor, critic = actor.to(device), critic.to(device)
    loss_module = IMPALALoss(
        actor,
        critic,
        gamma=cfg.loss.gamma,
        rho_bar=cfg.loss.rho_bar,
        c_bar=cfg.loss.c_bar,
        pg_rho_bar=cfg.loss.pg_rho_bar,
        baseline_coef=cfg.loss.baseline_coef,
        entropy_coef=cfg.loss.entropy_coef,
        correction=cfg.loss.correction,
        popart=popart,
        reduction=cfg.loss.reduction,
    )
    optimizer = make_optimizer(cfg, loss_module.parameters())
    frames_per_update = cfg.learner.batch_size * cfg.actors.unroll_length
    num_updates = -(-cfg.learner.total_frames // frames_per_update)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / num_updates) if cfg.optim.anneal_lr else 1.0
    )
    eval_env = make_actor_env_fn(cfg, train=False)()

    actor_learner = ActorLearner(
        make_actor_env_fn(cfg),
        actor,
        unroll_length=cfg.actors.unroll_length,
        batch_size=cfg.learner.batch_size,
        total_frames=cfg.learner.total_frames,
        backend=cfg.actors.backend,
        num_actors=cfg.actors.num_actors,
        envs_per_actor=cfg.env.envs_per_actor,
        sync_interval=cfg.actors.sync_interval,
    )
    group = "task_id" if num_tasks(cfg) > 1 else None  # per-task returns, on each task's own (unscaled) reward
    exp.evaluator = lambda: evaluate(eval_env, actor, max_steps=cfg.eval.max_steps, seed=cfg.seed + 10_000, group_key=group)
    # Asynchronous actors cannot be replayed exactly; a resume restores the learner and its counters.
    tracked = {"loss_module": loss_module, "optimizer": optimizer, "scheduler": scheduler}
    if cfg.actors.backend == "sync":
        tracked["collector"] = actor_learner.collector
    exp.track(**tracked)
    if exp.restore() and cfg.actors.backend != "sync":
        actor_learner.push_weights()  # the actors were built with the weights from before the checkpoint

    run_dir = Path(exp.run_dir)
    entropies = []  # per update (since the start or resume): the policy's mean entropy; the summary reports the last tenth
    try:
        for batch in exp.iterate(actor_learner):
            batch = batch.to(device)
            losses = loss_module(batch)
            exp.check_finite(losses)
            loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
            optimizer.zero_grad()
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.optim.max_grad_norm)
            optimizer.step()
            scheduler.step()
            actor_learner.learner_step()
            lag = batch.get("policy_lag").float()
            entropies.append(float(losses["entropy"]))
            exp.log(
                {
                    "train/loss_objective": losses["loss_objective"],
                    "train/loss_critic": losses["loss_critic"],
                    "train/entropy": losses["entropy"],
                    "train/rho_mean": losses["rho_mean"],
                    "train/rho_clipped": losses["rho_clipped"],
                    "train/grad_norm": grad_norm,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/policy_lag_mean": lag.mean(),
                    "train/policy_lag_max": lag.max(),
                }
            )
        lags = actor_learner.lag_histogram()
        log_lag_histogram(exp, lags, run_dir)
        tail = entropies[-max(1, len(entropies) // 10):]
        summary = exp.finish(extra={"policy_lag_mean": actor_learner.mean_lag(),
                                    "policy_lag_histogram": {str(k): v for k, v in lags.items()},
                                    "entropy_last_tenth": sum(tail) / len(tail) if tail else None,
                                    "updates": exp.counters["iterations"]})
    finally:
        actor_learner.shutdown()
        eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
