"""Time per DreamerV3 training update (world-model + actor-critic losses, one backward, one
DreamerV3Optimizer step), eager, at a size preset and batch, on one process; JSON out.

    python benchmarks/dreamer_v3_update.py --size size1m --batch 16 --seq-len 64 --threads 1

The issue's target (ours <= 0.67x TorchRL's DreamerV3Loss stack at the same size and batch) needs the
TorchRL side in the same process: not measured yet, so no ratio is printed.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from tensordict import TensorDict
from torch.nn import functional as F
from torchrl.trainers.algorithms import DreamerV3Optimizer

from latentrl.modules import (
    SIZES,
    RSSMImagine,
    make_dreamer_v3_actor,
    make_dreamer_v3_critic,
    make_dreamer_v3_world_model,
)
from latentrl.objectives import DreamerV3ActorCriticLoss, WorldModelLoss


def build(size: str, obs_dim: int, actions: int):
    wm = make_dreamer_v3_world_model([obs_dim], actions, size=size)
    units = SIZES[size]["units"]
    actor = make_dreamer_v3_actor(wm.rssm, actions, discrete=True, units=units)
    critic = make_dreamer_v3_critic(wm.rssm, units=units)
    model_loss = WorldModelLoss(wm, "dreamer_v3")
    model_loss.set_keys(discount_logit="continue_logit")
    ac_loss = DreamerV3ActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, wm.discount_model)
    params = [*wm.parameters(), *actor.parameters(), *ac_loss.value_network_params.parameters()]
    return model_loss, ac_loss, DreamerV3Optimizer(params)


def batch(B: int, T: int, obs_dim: int, actions: int) -> TensorDict:
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init = flags.clone()
    is_init[:, 0] = True
    return TensorDict({
        "observation": torch.randn(B, T, obs_dim), "is_init": is_init,
        "action": F.one_hot(torch.randint(actions, (B, T)), actions).float(),
        "next": {"observation": torch.randn(B, T, obs_dim), "reward": torch.randn(B, T, 1), "terminated": flags,
                 "done": flags.clone()},
    }, [B, T])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="size1m", choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model_loss, ac_loss, optimizer = build(args.size, 4, 2)
    data = batch(args.batch, args.seq_len, 4, 2)
    phases = {"world_model_forward": 0.0, "actor_critic_forward": 0.0, "backward_and_step": 0.0}

    def update(timed: bool):
        d = data.clone()
        t0 = time.perf_counter()
        wm = model_loss(d)
        t1 = time.perf_counter()
        ac = ac_loss(d)
        t2 = time.perf_counter()
        loss = sum(v for out in (wm, ac) for k, v in out.items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t3 = time.perf_counter()
        if timed:
            for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
                phases[key] += dt / args.repeats

    update(False)  # warm-up
    for _ in range(args.repeats):
        update(True)
    print(json.dumps({
        "size": args.size, "batch": args.batch, "seq_len": args.seq_len, "threads": args.threads,
        "imagination_starts": args.batch * args.seq_len, "horizon": ac_loss.horizon,
        "seconds_per_update": sum(phases.values()), "phases_seconds": phases,
    }, indent=2))


if __name__ == "__main__":
    main()
