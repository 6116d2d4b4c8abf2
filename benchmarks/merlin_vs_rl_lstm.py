"""MERLIN against the RL-LSTM baseline on the T-maze at equal env steps (the README numbers).

Both train on ``pomdp:tmaze`` with the same corridor ``--delay``, the same
number of envs (16) and the same truncation window (``tau = 20`` steps per env
per batch: MERLIN's ``collector.window``, the RL-LSTM's
``collector.frames_per_batch = 16 x 20``), so a cue more than ``tau`` steps
back must be carried across windows, by the memory or by the LSTM state.
Prints JSON: per run the final and best success rate (the T-maze's
evaluation return, 16 deterministic episodes) and frames/s, per agent the
per-seed values with their IQM and rliable's 95% interval; ``--plot`` writes
success against env steps for every run.

    OMP_NUM_THREADS=1 python benchmarks/merlin_vs_rl_lstm.py --delay 30 --frames 200000 --seeds 0 1 2 --plot merlin_tmaze.png
    OMP_NUM_THREADS=1 python benchmarks/merlin_vs_rl_lstm.py --delay 30 --frames 300000 --seeds 0 --agents merlin --merlin-overrides optim.lr=0.002
"""
from __future__ import annotations

import argparse
import json

from _runs import add_reps_argument, per_variant, run_variants

from latentrl.harness.seeds import read_metric

TAU, ENVS = 20, 16


def _curve(summary: dict) -> dict:
    return {"curve": read_metric(summary["run_dir"], "eval/return")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=int, default=30)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agents", nargs="+", default=["merlin", "rl_lstm"], choices=["merlin", "rl_lstm"])
    parser.add_argument("--eval-interval", type=int, default=20_000)
    parser.add_argument("--plot", default=None, help="write success against env steps here (png)")
    parser.add_argument("--merlin-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotlist overrides of MERLIN's config, e.g. optim.lr=0.002")
    add_reps_argument(parser)
    args = parser.parse_args()
    common = [f"env.delay={args.delay}", f"env.num_envs={ENVS}", f"eval.episodes={ENVS}",
              f"eval.max_steps={args.delay + 2}", f"eval.interval_frames={args.eval_interval}",
              f"checkpoint.interval_frames={args.frames}"]
    overrides = {
        "merlin": common + [f"collector.window={TAU}", f"collector.total_frames={args.frames}", *args.merlin_overrides],
        "rl_lstm": common + ["env.name=pomdp:tmaze", "env.obs_scale=null", f"collector.frames_per_batch={ENVS * TAU}",
                             f"collector.total_frames={args.frames}", "ppo.minibatches=4"],
    }
    runs = []
    for agent in args.agents:
        for run in run_variants(agent, {agent: overrides[agent]}, args.seeds, extra=_curve):
            run["frames_per_s"] = round(run["frames"] / run["wall_s"])
            runs.append(run)
    result = {"benchmark": "merlin_vs_rl_lstm", "delay": args.delay, "tau": TAU, "frames": args.frames,
              "final_success": per_variant(runs, reps=args.reps), "best_success": per_variant(runs, "best_eval_return", reps=args.reps),
              "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs]}
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        colors = {"merlin": "tab:blue", "rl_lstm": "tab:orange"}
        for r in runs:
            frames, values = zip(*r["curve"])
            ax.plot(frames, values, color=colors[r["variant"]], alpha=0.8,
                    label=r["variant"] if r["seed"] == args.seeds[0] else None)
        ax.axhline(0.5, color="gray", lw=0.8, ls="--", label="chance")
        ax.set(xlabel="env steps", ylabel="success (eval)", ylim=(-0.05, 1.05),
               title=f"T-maze, delay {args.delay}, window {TAU}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        result["plot"] = args.plot
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
