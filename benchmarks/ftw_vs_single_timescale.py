"""The FTW agent's two-timescale core against its single-timescale control on the T-maze, at equal env steps.

Both variants run ``examples/ftw`` with the same config, seeds and frames;
the control sets ``model.period=1`` (both LSTMs tick every step: the same
parameters, one timescale). Prints JSON: per run the final and best success
rate (16 deterministic episodes) and its evaluation curve, per variant the
per-seed values with their IQM and rliable's 95% interval; ``--plot`` writes
success against env steps for every run.

    OMP_NUM_THREADS=1 python benchmarks/ftw_vs_single_timescale.py --delay 20 --frames 300000 --seeds 0 1 2 --plot ftw_tmaze.png
"""
from __future__ import annotations

import argparse
import json

from _runs import add_reps_argument, per_variant, plot_runs, run_variants

from latentrl.harness.seeds import read_metric


def _curve(summary: dict) -> dict:
    return {"curve": read_metric(summary["run_dir"], "eval/return")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=int, default=20)
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--period", type=int, default=10, help="the two-timescale variant's slow period")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-interval", type=int, default=20_000)
    parser.add_argument("--plot", default=None, help="write success against env steps here (png)")
    parser.add_argument("--overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dotlist overrides of both variants")
    add_reps_argument(parser)
    args = parser.parse_args()
    common = [f"env.delay={args.delay}", f"eval.max_steps={args.delay + 2}", f"eval.interval_frames={args.eval_interval}",
              f"collector.total_frames={args.frames}", f"checkpoint.interval_frames={args.frames}", *args.overrides]
    variants = {"two_timescale": common + [f"model.period={args.period}"], "single_timescale": common + ["model.period=1"]}
    runs = run_variants("ftw", variants, args.seeds, extra=_curve)
    for run in runs:
        run["frames_per_s"] = round(run["frames"] / run["wall_s"])
    result = {"benchmark": "ftw_vs_single_timescale", "delay": args.delay, "period": args.period, "frames": args.frames,
              "final_success": per_variant(runs, reps=args.reps), "best_success": per_variant(runs, "best_eval_return", reps=args.reps),
              "runs": runs}
    if args.plot:
        plot_runs(runs, args.plot, colors={"two_timescale": "tab:blue", "single_timescale": "tab:orange"},
                  title=f"FTW core on the T-maze, delay {args.delay}, period {args.period}", ylabel="success (eval)",
                  ylim=(-0.05, 1.05), chance=0.5)
        result["plot"] = args.plot
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
