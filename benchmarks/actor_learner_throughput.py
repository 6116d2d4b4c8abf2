"""Actor-learner throughput: asynchronous actors against one synchronous collector.

IMPALA's point (Espeholt et al. 2018) is that acting and learning overlap. This
measures frames/s consumed by a learner that does a fixed amount of work per
batch of ``[batch_size, unroll_length]`` unrolls (a real SGD step on a
policy-gradient surrogate of the batch plus ``--learner-ms`` of simulated work,
standing in for a bigger network on an accelerator) for
  * baseline: one ``torchrl.collectors.Collector`` in the learner's process
    (collect, then learn, then collect: no overlap, no lag),
  * actor_learner: ``ActorLearner(backend="multiprocess")`` with ``--actors``
    actor processes acting while the learner trains (weights pushed after
    every update).
Both use the same env (``make_env("CartPole-v1", num_envs=E)``) and policy.
Prints JSON: frames/s, the ratio to the baseline measured in the same run,
and the policy lag of the asynchronous run.

    python benchmarks/actor_learner_throughput.py [--frames 12800] [--learner-ms 20] [--actors 2]
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import torch
from tensordict.nn import TensorDictModule
from torchrl.collectors import Collector
from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor

from latentrl.collectors.actor_learner import ActorLearner
from latentrl.envs import make_env


def make_policy(env) -> ProbabilisticActor:
    net = MLP(in_features=4, out_features=2, num_cells=[64, 64])
    return ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["logits"]),
        in_keys=["logits"],
        out_keys=["action"],
        spec=env.action_spec,
        distribution_class=OneHotCategorical,
        return_log_prob=True,
    )


def learner_update(policy, optim, batch, learner_ms: float) -> None:
    """One SGD step on a REINFORCE-style surrogate of the batch, then ``learner_ms`` of simulated work."""
    dist = policy.get_dist(batch.select("observation"))
    log_prob = dist.log_prob(batch["action"])
    loss = -(log_prob * batch["next", "reward"].squeeze(-1)).mean()
    optim.zero_grad()
    loss.backward()
    optim.step()
    if learner_ms > 0:
        time.sleep(learner_ms / 1000)


def run_baseline(env_fn, args) -> float:
    env = env_fn()
    policy = make_policy(env)
    optim = torch.optim.SGD(policy.parameters(), lr=1e-3)
    collector = Collector(env, policy, frames_per_batch=args.num_envs * args.unroll_length, total_frames=-1)
    it = iter(collector)
    per_batch = args.batch_size // args.num_envs  # collections (of num_envs unrolls) per learner batch

    def next_batch():
        return torch.cat([next(it).reshape(-1, args.unroll_length) for _ in range(per_batch)], 0)

    learner_update(policy, optim, next_batch(), args.learner_ms)  # warm-up
    start, frames = time.perf_counter(), 0
    while frames < args.frames:
        batch = next_batch()
        frames += batch.numel()
        learner_update(policy, optim, batch, args.learner_ms)
    rate = frames / (time.perf_counter() - start)
    collector.shutdown()
    return rate


def run_actor_learner(env_fn, args) -> tuple[float, ActorLearner]:
    env = env_fn()
    policy = make_policy(env)
    env.close()
    optim = torch.optim.SGD(policy.parameters(), lr=1e-3)
    al = ActorLearner(
        env_fn,
        policy,
        unroll_length=args.unroll_length,
        batch_size=args.batch_size,
        backend="multiprocess",
        num_actors=args.actors,
        envs_per_actor=args.num_envs,
    )
    try:
        it = iter(al)
        learner_update(policy, optim, next(it), args.learner_ms)  # warm-up (actors started)
        al.learner_step()
        start, frames = time.perf_counter(), 0
        while frames < args.frames:
            batch = next(it)
            frames += batch.numel()
            learner_update(policy, optim, batch, args.learner_ms)
            al.learner_step()
        rate = frames / (time.perf_counter() - start)
    finally:
        al.shutdown()
    return rate, al


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=12800, help="frames consumed per measured run")
    parser.add_argument("--learner-ms", type=float, default=20.0, help="simulated learner work per batch (ms)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=4, help="envs per actor (and in the baseline)")
    parser.add_argument("--unroll-length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="unrolls per learner batch")
    args = parser.parse_args()
    if args.batch_size % args.num_envs:
        parser.error("--batch-size must be a multiple of --num-envs")
    torch.set_num_threads(1)
    env_fn = functools.partial(make_env, "CartPole-v1", num_envs=args.num_envs)
    base = run_baseline(env_fn, args)
    rate, al = run_actor_learner(env_fn, args)
    results = {"baseline_single_collector": base, "actor_learner": rate}
    print(
        json.dumps(
            {
                "benchmark": "actor_learner_throughput",
                "actors": args.actors,
                "envs_per_actor": args.num_envs,
                "unroll_length": args.unroll_length,
                "batch_size": args.batch_size,
                "learner_ms": args.learner_ms,
                "frames": args.frames,
                "frames_per_s": {k: round(v) for k, v in results.items()},
                "ratio_to_baseline": {k: round(v / base, 2) for k, v in results.items()},
                "actor_learner_mean_policy_lag": round(al.mean_lag(), 2),
                "actor_learner_lag_histogram": al.lag_histogram(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
