"""IMPALA on CartPole-v1, several seeds: the README's numbers, and why batch 32 ends below the task's maximum.

Trains examples/impala with its default config (8 unrolls of 20 per update:
3,120 updates in 499,200 frames) and, with ``--variants batch32``, the
paper's Atari batch of 32 unrolls at the same frames (780 updates). Prints
JSON: per run the final and best evaluation return, the policy's mean entropy
over the last tenth of the updates (ln 2 = 0.693 is uniform) and the mean
policy lag; per variant the per-seed values with their IQM and rliable's 95%
interval. The actors are processes, so per-seed values vary across machines.

    python benchmarks/impala_cartpole.py --seeds 0 1 2 [--variants batch8 batch32] [-- key=value ...]
"""
from __future__ import annotations

import argparse
import json

from _runs import add_reps_argument, per_variant, run_variants

VARIANTS = {"batch8": [], "batch32": ["learner.batch_size=32"]}


def _stats(summary: dict) -> dict:
    return {"entropy_last_tenth": round(summary["entropy_last_tenth"], 3), "updates": summary["updates"],
            "policy_lag_mean": round(summary["policy_lag_mean"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["batch8"], choices=list(VARIANTS))
    parser.add_argument("overrides", nargs="*", help="extra config overrides, key=value")
    add_reps_argument(parser)
    args = parser.parse_args()
    runs = run_variants("impala", {v: VARIANTS[v] for v in args.variants}, args.seeds, args.overrides, extra=_stats)
    print(json.dumps({"benchmark": "impala_cartpole", "final_eval_return": per_variant(runs, reps=args.reps),
                      "best_eval_return": per_variant(runs, "best_eval_return", reps=args.reps), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
