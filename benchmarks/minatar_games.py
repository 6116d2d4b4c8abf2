"""IMPALA and R2D2 on MinAtar games at a CPU budget, beside Young & Tian 2019 (the README numbers).

Trains ``examples/<agent>`` with its ``minatar`` config on each game and seed
and prints JSON per run and per agent and game: the final and best greedy
evaluation, and the mean training-episode return over the run's last
``--window`` frames, the statistic Young & Tian plot (the moving average of
training returns over 100 episodes). Beside it, their value at the same frames
read off their learning curves (``img/learning_curves.gif`` in
github.com/kenjyoung/MinAtar, 30 seeds; read by eye, about +-1 on Breakout and
+-5 on SpaceInvaders): DQN for R2D2 (both learn from replay) and AC(0.8) for
IMPALA (both on-policy actor-critics).

    OMP_NUM_THREADS=1 python benchmarks/minatar_games.py --agents r2d2 impala --games Breakout SpaceInvaders --seeds 0
    OMP_NUM_THREADS=1 python benchmarks/minatar_games.py --agents impala --games Breakout -- learner.total_frames=200000
"""
from __future__ import annotations

import argparse
import json

from _runs import add_reps_argument, per_variant, run_variants

from latentrl.harness.seeds import read_metric

# Young & Tian 2019's curves at {frames: value}, read off the figure (see the docstring)
REFERENCE = {
    "r2d2": ("DQN", {"Breakout": {250_000: 7.8, 500_000: 8.9, 1_000_000: 9.4},
                     "SpaceInvaders": {250_000: 22.0, 500_000: 28.0, 1_000_000: 34.0}}),
    "impala": ("AC(0.8)", {"Breakout": {250_000: 6.3, 500_000: 7.2, 1_000_000: 10.0},
                           "SpaceInvaders": {250_000: 19.0, 500_000: 30.0, 1_000_000: 53.0}}),
}


def train_return_over(run_dir: str, window: int) -> dict:
    """Mean of the logged training-episode returns (one row per batch) over the last ``window`` frames."""
    rows = read_metric(run_dir, "train/episode_return")
    last = rows[-1][0]
    values = [v for f, v in rows if f > last - window]
    return {"train_return_last_window": round(sum(values) / len(values), 2), "train_rows_in_window": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", nargs="+", default=["r2d2", "impala"], choices=["r2d2", "impala"])
    parser.add_argument("--games", nargs="+", default=["Breakout", "SpaceInvaders"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--window", type=int, default=25_000, help="frames at the end of the run for the training return")
    parser.add_argument("overrides", nargs="*", help="extra config overrides of every run, key=value")
    add_reps_argument(parser)
    args = parser.parse_args()
    out = {"benchmark": "minatar_games", "window_frames": args.window, "agents": {}}
    for agent in args.agents:
        variants = {game: [f"env.name=minatar:{game}"] for game in args.games}
        runs = run_variants(agent, variants, args.seeds, args.overrides, config_name="minatar",
                            extra=lambda summary: train_return_over(summary["run_dir"], args.window))
        name, curves = REFERENCE[agent]
        frames = runs[0]["frames"]
        reference = {g: curves[g].get(frames) for g in args.games if g in curves}
        out["agents"][agent] = {
            "final_eval_return": per_variant(runs, reps=args.reps),
            "best_eval_return": per_variant(runs, "best_eval_return", reps=args.reps),
            "train_return_last_window": per_variant(runs, "train_return_last_window", reps=args.reps),
            f"young_tian_{name}_at_{frames}_frames": reference,
            "runs": runs,
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
