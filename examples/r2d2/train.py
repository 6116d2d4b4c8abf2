"""R2D2: recurrent replay with stored state and burn-in (Kapturowski et al. 2019).

Ape-X actors (one exploration rate per env, ``eps_i = 0.4^(1 + 7 i/(N-1))``)
run a recurrent dueling Q-network whose LSTM state the collector carries and
stores. Their output is cut into overlapping sequences with a burn-in prefix
and the actor's state at its start, kept in prioritized sequence replay. The
learner burns both networks in from the stored state, then regresses rescaled
n-step double-Q targets, and writes back the sequence priorities.

    python examples/r2d2/train.py                                    # masked CartPole
    python examples/r2d2/train.py model.feedforward=true             # the LSTM replaced by a feed-forward layer
    python examples/r2d2/train.py replay.stored_state=false replay.burn_in=0   # the zero-state baseline
    python examples/r2d2/train.py --config-name minigrid             # MiniGrid-MemoryS7
    python examples/r2d2/train.py --config-name atari                # Atari, Table 2 hyper-parameters
    python examples/r2d2/train.py --config-name minatar env.name=minatar:SpaceInvaders   # MinAtar's network, a CPU budget

Everything reusable comes from the package: ``make_recurrent_env`` (envs),
``make_recurrent_q_network`` and ``PerEnvEpsilonGreedy`` (modules),
``SequenceReplayBuffer`` (collectors), ``R2D2Loss`` and ``delta_q``
(objectives), and the ``Experiment`` harness.
"""
from __future__ import annotations

import collections
import functools
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector, MultiSyncCollector

from latentrl.collectors.sequence_replay import SequenceReplayBuffer
from latentrl.envs import make_recurrent_env
from latentrl.harness import (
    HARNESS_CHOICES,
    HARNESS_CONSTRAINTS,
    POSITIVE,
    ConfigError,
    Experiment,
    check_config,
    evaluate,
    make_env_from_config,
    run,
)
from latentrl.modules.q_networks import (
    PerEnvEpsilonGreedy,
    apex_epsilons,
    make_recurrent_q_network,
)
from latentrl.objectives.r2d2 import R2D2Loss, delta_q
from latentrl.objectives.target_updates import HardUpdateEvery

CONFIG_DIR = Path(__file__).resolve().parent
CHOICES = {
    **HARNESS_CHOICES,
    "model.encoder": ("mlp", "atari", "minatar"),
    "replay.storage": ("memory", "memmap"),
    "replay.initial_priority": ("td_error", "max_seen"),
}
_nonneg = (lambda v: v >= 0, "an integer >= 0")
CONSTRAINTS = {
    **HARNESS_CONSTRAINTS,
    "env.num_workers": (lambda v: v >= 1, "an integer >= 1"),
    "env.envs_per_worker": (lambda v: v >= 2, "an integer >= 2 (each worker runs a batch of Ape-X actors)"),
    "model.lstm_hidden": POSITIVE,
    "model.head_hidden": _nonneg,
    "actors.frames_per_batch": POSITIVE,
    "actors.total_frames": POSITIVE,
    "actors.weight_sync_steps": POSITIVE,
    "actors.epsilon_base": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "replay.capacity": POSITIVE,
    "replay.seq_len": POSITIVE,
    "replay.overlap": _nonneg,
    "replay.burn_in": _nonneg,
    "replay.batch_size": POSITIVE,
    "replay.priority_exponent": (lambda v: v >= 0, "a number >= 0"),
    "replay.importance_sampling_exponent": (lambda v: v >= 0, "a number >= 0"),
    "replay.priority_eta": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "replay.min_sequences": _nonneg,
    "replay.updates_per_batch": _nonneg,
    "loss.n_steps": POSITIVE,
    "loss.gamma": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "loss.rescale_eps": POSITIVE,
    "loss.target_update_interval": POSITIVE,
    "optim.lr": POSITIVE,
    "optim.eps": POSITIVE,
    "optim.max_grad_norm": POSITIVE,
    "eval.delta_q_episodes": _nonneg,
}


def make_network(cfg: DictConfig, env):
    if not hasattr(env.action_spec, "space") or not hasattr(env.action_spec.space, "n"):
        raise ConfigError(f"config key 'env.name': {cfg.env.name!r} has no discrete (one-hot) action space")
    obs_key = "observation" if "observation" in env.observation_spec.keys() else "pixels"
    obs_shape = env.observation_spec[obs_key].shape[len(env.batch_size) :]
    if cfg.model.encoder in ("atari", "minatar") and len(obs_shape) != 3:
        raise ConfigError(
            f"config key 'model.encoder': {cfg.model.encoder!r} needs image observations; {cfg.env.name!r} gives {tuple(obs_shape)}"
        )
    return make_recurrent_q_network(
        obs_shape,
        env.action_spec.space.n,
        observation_key=obs_key,
        encoder=cfg.model.encoder,
        mlp_hidden=tuple(cfg.model.mlp_hidden),
        lstm_hidden=cfg.model.lstm_hidden,
        head_hidden=cfg.model.head_hidden,
        feedforward=cfg.model.feedforward,
    )


class EpisodeRecorder:
    """Keeps the last ``capacity`` complete episodes (with the actors' stored states) for the dQ measurement."""

    def __init__(self, capacity: int):
        self.episodes: collections.deque = collections.deque(maxlen=capacity)
        self._open: dict[int, list[TensorDictBase]] = {}

    def add(self, batch: TensorDictBase) -> None:
        if not self.episodes.maxlen:
            return
        batch = batch.reshape(-1, batch.shape[-1])
        for e in range(batch.shape[0]):
            row = batch[e]
            init = row.get("is_init").reshape(-1).tolist()
            done = row.get(("next", "done")).reshape(-1).tolist()
            start = 0
            for t in range(len(init)):
                if init[t]:
                    self._open[e] = []  # an episode starts at t
                    start = t
                if done[t]:
                    if e in self._open:
                        self._open[e].append(row[start : t + 1])
                        self.episodes.append(torch.cat(self._open.pop(e)))
                    start = t + 1
            if e in self._open and start < len(init):
                self._open[e].append(row[start:])


def train(cfg: DictConfig, config_name: str = "config") -> dict:
    check_config(cfg, OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"), CHOICES, CONSTRAINTS)
    r = cfg.replay
    if r.overlap >= r.seq_len:
        raise ConfigError(f"config key 'replay.overlap' ({r.overlap}) must be smaller than 'replay.seq_len' ({r.seq_len})")
    num_actors = cfg.env.num_workers * cfg.env.envs_per_worker
    if cfg.actors.frames_per_batch % num_actors:
        raise ConfigError(f"config key 'actors.frames_per_batch' ({cfg.actors.frames_per_batch}) must be a multiple of the number of actors ({num_actors})")
    device = torch.device(cfg.device)
    exp = Experiment(cfg, total_frames=cfg.actors.total_frames)  # seeds everything: build after this

    probe = make_env_from_config(cfg, 2)  # specs only; a ConfigError names an unknown env.name
    net = make_network(cfg, probe)
    probe.close(raise_if_closed=False)
    primer = net.make_tensordict_primer()
    policy = TensorDictSequential(net, TensorDictModule(PerEnvEpsilonGreedy(), ["action_value", "epsilon"], ["action"]))

    epsilons = apex_epsilons(num_actors, cfg.actors.epsilon_base, cfg.actors.epsilon_alpha)
    per = cfg.env.envs_per_worker
    env_fns = [
        functools.partial(make_recurrent_env, cfg.env.name, per, cfg.seed + w, True, epsilons[w * per : (w + 1) * per], primer)
        for w in range(cfg.env.num_workers)
    ]
    if cfg.env.num_workers == 1:
        collector = Collector(env_fns[0](), policy, frames_per_batch=cfg.actors.frames_per_batch, total_frames=cfg.actors.total_frames)
    else:
        collector = MultiSyncCollector(
            env_fns, policy, frames_per_batch=cfg.actors.frames_per_batch, total_frames=cfg.actors.total_frames, cat_results="stack"
        )
    eval_env = make_recurrent_env(cfg.env.name, cfg.eval.episodes, None, False, torch.zeros(cfg.eval.episodes), primer)

    loss_module = R2D2Loss(
        net, burn_in=r.burn_in, n_steps=cfg.loss.n_steps, gamma=cfg.loss.gamma,
        rescale_eps=cfg.loss.rescale_eps, priority_eta=r.priority_eta,
    ).to(device)
    target_update = HardUpdateEvery(loss_module, value_network_update_interval=cfg.loss.target_update_interval)
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=cfg.optim.lr, eps=cfg.optim.eps)
    replay = SequenceReplayBuffer(
        r.capacity, seq_len=r.seq_len, overlap=r.overlap, burn_in=r.burn_in, batch_size=r.batch_size,
        alpha=r.priority_exponent, beta=r.importance_sampling_exponent,
        storage=r.storage, scratch_dir=str(Path(exp.run_dir) / "replay") if r.storage == "memmap" else None,
        stored_state=r.stored_state, state_keys=tuple(loss_module.state_keys),
    )
    recorder = EpisodeRecorder(cfg.eval.delta_q_episodes if not cfg.model.feedforward else 0)

    def evaluator() -> dict:
        metrics = evaluate(eval_env, policy, max_steps=cfg.eval.max_steps, seed=cfg.seed + 10_000)
        if recorder.episodes:
            stride = r.seq_len - r.overlap
            dq = [  # net shares its parameters with the loss's online network
                delta_q(net, ep, range(stride, ep.shape[0], stride), burn_in=r.burn_in, seq_len=r.seq_len, stored_state=r.stored_state)
                for ep in recorder.episodes
                if ep.shape[0] > stride
            ]
            if dq:
                metrics["delta_q_first"] = sum(d["first"] for d in dq) / len(dq)
                metrics["delta_q_last"] = sum(d["last"] for d in dq) / len(dq)
        return metrics

    exp.evaluator = evaluator

    def initial_priority(sequences):
        """R2D2's actors prioritize what they send by their own TD errors; here the learner's online network does."""
        if r.initial_priority != "td_error" or len(replay) < max(r.min_sequences, 1) or not sequences.shape[0]:
            return None  # the largest priority written so far
        with torch.no_grad():
            return loss_module(sequences.to(device))["priority"]
    tracked = {"loss_module": loss_module, "optimizer": optimizer, "replay": replay, "target_update": target_update}
    if cfg.env.num_workers == 1:
        tracked["collector"] = collector
    exp.track(**tracked)

    per_env_steps = cfg.actors.frames_per_batch // num_actors
    sync_every = max(1, cfg.actors.weight_sync_steps // per_env_steps)
    try:
        for batch in exp.iterate(collector):
            batch = batch.exclude(*net.recomputed_keys)  # the learner recomputes what the network wrote
            sequences = replay.cut(batch)
            replay.add(sequences, initial_priority(sequences))
            recorder.add(batch)
            if exp.counters["iterations"] % sync_every == 0 and cfg.env.num_workers > 1:
                collector.update_policy_weights_()
            if len(replay) < max(r.min_sequences, 1):
                continue
            for _ in range(r.updates_per_batch):
                sample = replay.sample().to(device)
                out = loss_module(sample)
                exp.check_finite({"loss": out["loss"]})
                optimizer.zero_grad()
                out["loss"].backward()
                grad_norm = nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.optim.max_grad_norm)
                optimizer.step()
                target_update.step()
                replay.update_priorities(sample.get("index"), out["priority"])
            if r.updates_per_batch:
                exp.log(
                    {
                        "train/loss": out["loss"],
                        "train/q_mean": out["q_mean"],
                        "train/target_mean": out["target_mean"],
                        "train/priority_mean": out["priority"].mean(),
                        "train/grad_norm": grad_norm,
                        "train/replay_sequences": len(replay),
                    }
                )
        summary = exp.finish()
    finally:
        collector.shutdown()
        eval_env.close()
    return summary


if __name__ == "__main__":
    run(train, CONFIG_DIR)
