"""Collector throughput on masked CartPole: why make_env batches in-process.

Compares frames/s through one TorchRL ``Collector`` with the RL-LSTM policy for
  * baseline: one env (``GymEnv``),
  * torchrl_async: ``GymEnv(num_envs=N)`` (TorchRL's default: one subprocess per env),
  * latentrl_sync: ``make_env(..., num_envs=N)`` (gymnasium sync vector env, in-process).
Prints JSON with the ratios to the baseline measured in the same process.

    python benchmarks/env_throughput.py [--num-envs 16] [--batches 10]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torchrl.collectors import Collector
from torchrl.envs import GymEnv, InitTracker, TransformedEnv

from latentrl.envs import CARTPOLE_POSITION_INDICES, SelectObservationIndices, make_env
from latentrl.modules.recurrent import make_actor_critic, recurrent_primers


def frames_per_second(env, batches: int, steps_per_env: int = 64) -> float:
    actor, _ = make_actor_critic(2, env.action_spec)
    env.append_transform(InitTracker())
    for primer in recurrent_primers(actor):
        env.append_transform(primer)
    n = max(1, env.batch_size.numel())
    collector = Collector(env, actor, frames_per_batch=n * steps_per_env, total_frames=-1)
    it = iter(collector)
    next(it)  # warm-up
    start, frames = time.perf_counter(), 0
    for _ in range(batches):
        frames += next(it).numel()
    rate = frames / (time.perf_counter() - start)
    collector.shutdown()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--batches", type=int, default=10)
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
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
