"""Collector throughput: why make_env batches in-process, and the envpool Atari path.

Masked CartPole, frames/s through one TorchRL ``Collector`` with the RL-LSTM policy for
  * baseline: one env (``GymEnv``),
  * torchrl_async: ``GymEnv(num_envs=N)`` (TorchRL's default: one subprocess per env),
  * latentrl_sync: ``make_env(..., num_envs=N)`` (gymnasium sync vector env, in-process).

Atari (``--game``, IMPALA preprocessing, uniformly random actions, agent steps/s
over N envs) for
  * envpool_raw: envpool's gymnasium API in a NumPy loop (the baseline),
  * envpool_torchrl: ``make_env("envpool:<game>")`` through a ``Collector``,
  * gymnasium_torchrl: ``make_env("atari:<game>")`` (ALE + TorchRL transforms) through a ``Collector``.

Prints JSON with the ratios to each baseline measured in the same process.

    python benchmarks/env_throughput.py [--num-envs 16] [--batches 10] [--game Pong]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torchrl.collectors import Collector
from torchrl.envs import GymEnv, InitTracker, TransformedEnv
from torchrl.envs.utils import RandomPolicy

from latentrl.envs import CARTPOLE_POSITION_INDICES, SelectObservationIndices, make_env
from latentrl.modules.recurrent import make_actor_critic, recurrent_primers


def frames_per_second(env, batches: int, steps_per_env: int = 64) -> float:
    actor, _ = make_actor_critic(2, env.action_spec)
    env.append_transform(InitTracker())
    for primer in recurrent_primers(actor):
        env.append_transform(primer)
    return collector_steps_per_second(env, batches, steps_per_env, policy=actor)


def collector_steps_per_second(env, batches: int, steps_per_env: int = 64, policy=None) -> float:
    """Frames (agent steps) per second through one ``Collector``; ``policy=None``: uniformly random actions."""
    n = max(1, env.batch_size.numel())
    policy = RandomPolicy(env.full_action_spec) if policy is None else policy
    collector = Collector(env, policy, frames_per_batch=n * steps_per_env, total_frames=-1)
    it = iter(collector)
    next(it)  # warm-up
    start, frames = time.perf_counter(), 0
    for _ in range(batches):
        frames += next(it).numel()
    rate = frames / (time.perf_counter() - start)
    collector.shutdown()
    return rate


def envpool_raw_steps_per_second(game: str, num_envs: int, batches: int, steps_per_env: int = 64) -> float:
    """Agent steps/s of envpool's own gymnasium API, with the options ``make_env("envpool:...")`` passes."""
    import numpy as np

    from latentrl.envs.envpool_atari import EnvPoolAtari

    env = EnvPoolAtari(game, num_envs)
    pool, rng = env.pool, np.random.default_rng(0)
    n_actions = int(pool.action_space.n)
    pool.reset()
    for _ in range(steps_per_env):  # warm-up
        pool.step(rng.integers(n_actions, size=num_envs, dtype=np.int32))
    start = time.perf_counter()
    for _ in range(batches * steps_per_env):
        pool.step(rng.integers(n_actions, size=num_envs, dtype=np.int32))
    rate = batches * steps_per_env * num_envs / (time.perf_counter() - start)
    env.close()
    return rate


def atari(game: str, num_envs: int, batches: int) -> dict:
    results = {
        "envpool_raw": envpool_raw_steps_per_second(game, num_envs, batches),
        "envpool_torchrl": collector_steps_per_second(make_env(f"envpool:{game}", num_envs=num_envs), batches),
        "gymnasium_torchrl": collector_steps_per_second(make_env(f"atari:{game}", num_envs=num_envs), batches),
    }
    base = results["envpool_raw"]
    return {
        "game": game,
        "agent_steps_per_s": {k: round(v) for k, v in results.items()},
        "ratio_to_envpool_raw": {k: round(v / base, 3) for k, v in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--game", default="Pong", help="the Atari game; '' skips the Atari part")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mask = lambda: SelectObservationIndices(CARTPOLE_POSITION_INDICES)  # noqa: E731
    results = {
        "baseline_single_env": frames_per_second(TransformedEnv(GymEnv("CartPole-v1"), mask()), args.batches),
        "torchrl_async": frames_per_second(
            TransformedEnv(GymEnv("CartPole-v1", num_envs=args.num_envs), mask()), args.batches
        ),
        "latentrl_sync": frames_per_second(make_env("pomdp:masked-cartpole", num_envs=args.num_envs), args.batches),
    }
    base = results["baseline_single_env"]
    print(
        json.dumps(
            {
                "benchmark": "env_throughput",
                "num_envs": args.num_envs,
                "frames_per_s": {k: round(v) for k, v in results.items()},
                "ratio_to_baseline": {k: round(v / base, 2) for k, v in results.items()},
                "torch_threads": torch.get_num_threads(),
                **({"atari": atari(args.game, args.num_envs, args.batches)} if args.game else {}),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
