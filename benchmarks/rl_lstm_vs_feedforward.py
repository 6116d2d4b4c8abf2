"""RL-LSTM vs a feed-forward policy on masked CartPole (the numbers in the README).

Trains examples/rl_lstm with its default config for each seed, once with the
LSTM policy and once with ``model.policy=mlp`` (same everything else, no frame
stacking), and prints JSON: final and best evaluation return per run, their
IQM over seeds with rliable's 95% interval, and wall time.

    python benchmarks/rl_lstm_vs_feedforward.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json

from _runs import add_reps_argument, per_variant, run_variants


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=["lstm", "mlp"], choices=["lstm", "mlp"])
    parser.add_argument("overrides", nargs="*", help="extra config overrides, key=value")
    add_reps_argument(parser)
    args = parser.parse_args()
    runs = run_variants("rl_lstm", {p: [f"model.policy={p}"] for p in args.policies}, args.seeds, args.overrides)
    print(json.dumps({"benchmark": "rl_lstm_vs_feedforward", "final_eval_return": per_variant(runs, reps=args.reps),
                      "best_eval_return": per_variant(runs, "best_eval_return", reps=args.reps), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
