"""Multi-seed results: per-seed values and their IQM with a 95% bootstrap interval.

The interquartile mean and its stratified-bootstrap confidence interval come
from rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of
the Statistical Precipice"). Each run dir is one seed; values are read from
the harness's CSV logs (``<run_dir>/logs/scalars/<metric>.csv``)::

    python -m latentrl.harness.seeds runs/planet_seed0 runs/planet_seed1 [--metric eval/return] [--until 100000]

prints JSON with, per seed, the final and the best value (within ``--until``
frames when given) and the IQM of each across seeds with its 95% interval.
Per-seed values already reported (a README table) get theirs with
``--values``::

    python -m latentrl.harness.seeds --values 485.9 465.0 500.0
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_metric", "iqm_interval", "seed_summary"]


def read_metric(run_dir: str | Path, metric: str = "eval/return") -> list[tuple[int, float]]:
    """``(frames, value)`` rows of one logged metric of a run."""
    path = Path(run_dir) / "logs" / "scalars" / f"{metric}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"read_metric: {path} does not exist (metric {metric!r} of run {run_dir})")
    rows = []
    for line in path.read_text().splitlines():
        step, value = line.split(",")
        rows.append((int(float(step)), float(value)))
    return rows


def iqm_interval(values: Sequence[float], reps: int = 50_000, seed: int = 0) -> dict[str, float]:
    """IQM of ``values`` (one per seed) and rliable's 95% stratified-bootstrap interval."""
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as err:  # pragma: no cover - rliable is a test/results dependency
        raise ImportError("iqm_interval needs rliable: pip install 'latentrl[results]'") from err
    scores = {"run": np.asarray(values, dtype=np.float64).reshape(-1, 1)}
    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator
    point, interval = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    return {"iqm": float(point["run"][0]), "ci95_low": float(interval["run"][0, 0]), "ci95_high": float(interval["run"][1, 0])}


def seed_summary(
    run_dirs: Sequence[str | Path], metric: str = "eval/return", until: int | None = None, reps: int = 50_000
) -> dict:
    """Per-seed final and best ``metric`` (rows at ``frames <= until``) and the IQM of each with its interval."""
    seeds = []
    for run_dir in run_dirs:
        rows = [(f, v) for f, v in read_metric(run_dir, metric) if until is None or f <= until]
        if not rows:
            raise ValueError(f"seed_summary: run {run_dir} has no {metric} row at or before frame {until}")
        seeds.append({"run": str(run_dir), "frames": rows[-1][0], "final": rows[-1][1], "best": max(v for _, v in rows),
                      "evaluations": len(rows)})
    return {
        "metric": metric,
        "until": until,
        "seeds": seeds,
        "final": iqm_interval([s["final"] for s in seeds], reps),
        "best": iqm_interval([s["best"] for s in seeds], reps),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="*", help="one run dir per seed")
    parser.add_argument("--values", type=float, nargs="+", default=None, metavar="V",
                        help="per-seed values instead of run dirs: prints their IQM and 95%% interval")
    parser.add_argument("--metric", default="eval/return")
    parser.add_argument("--until", type=int, default=None, help="only rows at or before this many frames")
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    if bool(args.run_dirs) == (args.values is not None):
        parser.error("give run dirs (one per seed) or --values V [V ...], not both and not neither")
    if args.values is not None:
        print(json.dumps({"values": args.values, **iqm_interval(args.values, args.reps)}, indent=2))
        return
    print(json.dumps(seed_summary(args.run_dirs, args.metric, args.until, args.reps), indent=2))


if __name__ == "__main__":
    main()
