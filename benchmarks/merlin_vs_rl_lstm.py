"""MERLIN against the RL-LSTM baseline at equal env steps, on the T-maze or a POPGym task (the README numbers).

Both train on ``--env`` (``pomdp:tmaze`` with the corridor ``--delay``, or
e.g. ``popgym:RepeatFirstEasy``) with the same number of envs (16) and the
same truncation window (``tau = 20`` steps per env per batch: MERLIN's
``collector.window``, the RL-LSTM's ``collector.frames_per_batch = 16 x
20``), so anything more than ``tau`` steps back must be carried across
windows, by the memory or by the LSTM state. Prints JSON: per run the final
and best evaluation return (16 deterministic episodes; on the T-maze the
success rate, on POPGym the paper's score, an episode's return in [-1, 1])
and frames/s, per agent the per-seed values with their IQM and rliable's 95%
interval; ``--plot`` writes the evaluation return against env steps for
every run.

    OMP_NUM_THREADS=1 python benchmarks/merlin_vs_rl_lstm.py --delay 20 --frames 300000 --seeds 0 1 2 --plot merlin_tmaze.png
    OMP_NUM_THREADS=1 python benchmarks/merlin_vs_rl_lstm.py --env popgym:RepeatFirstEasy --frames 200000 --seeds 0 1 2 \
        --merlin-overrides model.memory_rows=52
    # each agent in its own process, then one summary and plot of both:
    OMP_NUM_THREADS=1 python benchmarks/merlin_vs_rl_lstm.py --delay 30 --frames 500000 --agents merlin \
        --merlin-overrides model.memory_rows=32 > merlin.json
    OMP_NUM_THREADS=1 python benchmarks/merlin_vs_rl_lstm.py --delay 30 --frames 500000 --agents rl_lstm > rl_lstm.json
    python benchmarks/merlin_vs_rl_lstm.py --delay 30 --frames 500000 --runs-from merlin.json rl_lstm.json --plot tmaze30.png
"""
from __future__ import annotations

import argparse
import json

from _runs import add_reps_argument, per_variant, plot_runs, run_variants

from latentrl.harness.seeds import read_metric

TAU, ENVS = 20, 16


def _curve(summary: dict) -> dict:
    return {"curve": read_metric(summary["run_dir"], "eval/return")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="pomdp:tmaze", help="a make_env name with vector observations and discrete actions")
    parser.add_argument("--delay", type=int, default=20, help="the T-maze corridor (pomdp:tmaze only)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="evaluation episode cap (default: the T-maze's delay + 2 steps, 1000 otherwise)")
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agents", nargs="+", default=["merlin", "rl_lstm"], choices=["merlin", "rl_lstm"])
    parser.add_argument("--eval-interval", type=int, default=20_000)
    parser.add_argument("--plot", default=None, help="write success against env steps here (png)")
    parser.add_argument("--merlin-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotlist overrides of MERLIN's config, e.g. optim.lr=0.002")
    parser.add_argument("--runs-from", nargs="+", default=None, metavar="FILE",
                        help="instead of training, summarize (and plot) the runs that earlier invocations printed to these "
                             "files, e.g. each agent run in its own process; --delay and --env must match theirs")
    add_reps_argument(parser)
    args = parser.parse_args()
    tmaze = args.env == "pomdp:tmaze"
    max_steps = args.max_steps or (args.delay + 2 if tmaze else 1000)
    common = [f"env.name={args.env}", f"env.delay={args.delay if tmaze else 'null'}", f"env.num_envs={ENVS}",
              f"eval.episodes={ENVS}", f"eval.max_steps={max_steps}", f"eval.interval_frames={args.eval_interval}",
              f"checkpoint.interval_frames={args.frames}"]
    overrides = {
        "merlin": common + [f"collector.window={TAU}", f"collector.total_frames={args.frames}", *args.merlin_overrides],
        "rl_lstm": common + ["env.obs_scale=null", f"collector.frames_per_batch={ENVS * TAU}",
                             f"collector.total_frames={args.frames}", "ppo.minibatches=4"],
    }
    if args.runs_from:
        runs = [json.loads(line) for path in args.runs_from for line in open(path) if line.startswith('{"variant"')]
    else:
        runs = [run for agent in args.agents for run in run_variants(agent, {agent: overrides[agent]}, args.seeds, extra=_curve)]
    for run in runs:
        run["frames_per_s"] = round(run["frames"] / run["wall_s"])
    result = {"benchmark": "merlin_vs_rl_lstm", "env": args.env, "delay": args.delay if tmaze else None, "tau": TAU, "frames": args.frames,
              "final_success": per_variant(runs, reps=args.reps), "best_success": per_variant(runs, "best_eval_return", reps=args.reps),
              "runs": runs}  # each with its evaluation curve, [[frames, return], ...]
    if args.plot:
        plot_runs(runs, args.plot, colors={"merlin": "tab:blue", "rl_lstm": "tab:orange"},
                  title=f"T-maze, delay {args.delay}, window {TAU}" if tmaze else f"{args.env}, window {TAU}",
                  ylabel="success (eval)" if tmaze else "score (eval return)",
                  ylim=(-0.05, 1.05) if tmaze else (-1.05, 1.05), chance=0.5 if tmaze else None)
        result["plot"] = args.plot
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
