"""How many MERLIN updates the T-maze takes at a delay: training success, KL and entropy every 25 updates.

Runs the ``examples/merlin`` config (16 envs, 20-step windows, one update
per window) with ``env.delay=--delay`` and prints one JSON line per 25
updates: the success rate of the episodes that reached the junction in that
batch (sampled actions), the MBP's KL (nats per step, summed over ``z``), the
policy entropy and the probability of the first answer at the first four
junctions of the batch (it splits by cue once the cue is used).

    OMP_NUM_THREADS=1 python benchmarks/merlin_tmaze_probe.py --delay 3 --updates 400
    OMP_NUM_THREADS=1 python benchmarks/merlin_tmaze_probe.py --delay 10 --updates 500 -- optim.lr=0.002
"""
from __future__ import annotations

import argparse
import json

import torch
from _runs import load_example
from omegaconf import OmegaConf
from torchrl.collectors import Collector

from latentrl.objectives.merlin import MerlinLoss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=int, default=3)
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value (e.g. optim.lr=0.002)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    example = load_example("merlin")
    cfg = OmegaConf.merge(OmegaConf.load(example.CONFIG_DIR / "config.yaml"), {"env": {"delay": args.delay}},
                          OmegaConf.from_dotlist(args.overrides))
    env = example.make_agent_env(cfg, cfg.env.num_envs)
    policy, actor = example.make_agent(cfg, env)
    env.append_transform(policy.make_tensordict_primer())
    env.set_seed(args.seed)
    loss_module = MerlinLoss(policy, **{k: cfg.loss[k] for k in cfg.loss})
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=cfg.optim.lr)
    frames = cfg.env.num_envs * cfg.collector.window
    collector = Collector(env, actor, frames_per_batch=frames, total_frames=frames * args.updates)
    for update, batch in enumerate(collector):
        out = loss_module(batch)
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        if update % args.every == 0 or update == args.updates - 1:
            junction = batch["observation"][..., -1] == 1
            answers = batch["logits"][junction][:4].detach().softmax(-1)[:, 0]
            print(json.dumps({"update": update, "frames": (update + 1) * frames,
                              "success": round(float(batch["next", "reward"][junction].mean()), 3),
                              "kl": round(float(out["kl"]), 3), "entropy": round(float(out["entropy"]), 3),
                              "p_first_answer": [round(float(p), 2) for p in answers]}), flush=True)
    collector.shutdown()


if __name__ == "__main__":
    main()
