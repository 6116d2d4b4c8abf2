"""R2D2 on masked CartPole: LSTM vs feed-forward, stored state + burn-in vs zero state (README numbers).

Trains examples/r2d2 with its default config for each variant and seed and
prints JSON: final and best evaluation return, the recurrent-state staleness
dQ at the first and last training step of the replay windows (Kapturowski et
al. 2019, Fig. 1) at the end of the run, and the median over seeds.

    python benchmarks/r2d2_masked_cartpole.py --seeds 0 1 2
    python benchmarks/r2d2_masked_cartpole.py --variants zero_state --seeds 0 -- actors.total_frames=100000
"""
from __future__ import annotations

import argparse
import json

from _runs import add_reps_argument, per_variant, run_variants

VARIANTS = {
    "stored_state_burn_in": [],
    "feedforward": ["model.feedforward=true"],
    "zero_state": ["replay.stored_state=false", "replay.burn_in=0"],
}


def _delta_q(summary: dict) -> dict:
    final = summary.get("final_eval", {})
    return {k: round(final[k], 4) for k in ("delta_q_first", "delta_q_last") if k in final}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("overrides", nargs="*", help="extra config overrides, key=value")
    add_reps_argument(parser)
    args = parser.parse_args()
    runs = run_variants("r2d2", {v: VARIANTS[v] for v in args.variants}, args.seeds, args.overrides, extra=_delta_q)
    print(json.dumps({"benchmark": "r2d2_masked_cartpole", "final_eval_return": per_variant(runs, reps=args.reps),
                      "best_eval_return": per_variant(runs, "best_eval_return", reps=args.reps), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
