"""Shared by the learning-comparison scripts: train an example's config under named variants and seeds."""
from __future__ import annotations

import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


_DIGITS = 4  # returns and success rates alike: one decimal printed a T-maze success of 0.875 (14 of 16) as 0.9


def load_example(name: str, script: str = "train.py"):
    """Imports ``examples/<name>/<script>`` as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_{Path(script).stem}", ROOT / "examples" / name / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_variants(
    example: str,
    variants: dict[str, list[str]],
    seeds: list[int],
    overrides: list[str] = (),
    config_name: str = "config",
    extra=None,
) -> list[dict]:
    """Trains ``examples/<example>`` with its ``config_name`` config for every variant and seed.

    ``variants`` maps a name to dotlist overrides. Prints one JSON line per
    run (final and best evaluation return, wall time, and ``extra(summary)``
    when given) and returns them.
    """
    module = load_example(example)
    base = OmegaConf.load(ROOT / "examples" / example / f"{config_name}.yaml")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant, variant_overrides in variants.items():
            for seed in seeds:
                cfg = OmegaConf.merge(
                    base,
                    OmegaConf.from_dotlist(
                        [f"seed={seed}", f"run_dir={tmp}/{variant}_{seed}", "logger.progress_bar=false"]
                        + list(variant_overrides)
                        + list(overrides)
                    ),
                )
                start = time.perf_counter()
                summary = module.train(cfg, config_name=config_name) if config_name != "config" else module.train(cfg)
                run = {
                    "variant": variant,
                    "seed": seed,
                    "frames": summary["frames"],
                    "final_eval_return": round(summary["final_eval_return"], _DIGITS),
                    "best_eval_return": round(summary["best_eval_return"], _DIGITS),
                    "wall_s": round(time.perf_counter() - start, 1),
                }
                if extra is not None:
                    run.update(extra(summary))
                runs.append(run)
                print(json.dumps(run), flush=True)
    return runs


def add_reps_argument(parser) -> None:
    """``--reps``: bootstrap resamples of the IQM intervals (rliable's 50,000; one interval takes ~10-20 s here)."""
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples of the IQM intervals")


def per_variant(runs: list[dict], key: str = "final_eval_return", reps: int = 50_000) -> dict[str, dict[str, float]]:
    """Per variant: the per-seed values of ``key``, their mean and median, and the IQM with rliable's 95% interval.

    Per-seed values vary across machines (floating-point order, asynchronous
    actors); the IQM and its interval are what to compare.
    """
    from latentrl.harness.seeds import iqm_interval

    out = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        values = [r[key] for r in runs if r["variant"] == variant]
        iqm = {k: round(v, _DIGITS) for k, v in iqm_interval(values, reps).items()}
        out[variant] = {"per_seed": values, "mean": round(statistics.fmean(values), _DIGITS),
                        "median": round(statistics.median(values), _DIGITS), **iqm}
    return out


def plot_runs(runs: list[dict], path: str, *, colors: dict[str, str], title: str, ylabel: str,
              ylim: tuple[float, float], chance: float | None = None) -> None:
    """Every run's ``curve`` (``[[frames, value], ...]``) against env steps, one color per variant, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labelled = set()
    for r in runs:
        frames, values = zip(*r["curve"])
        label = None if r["variant"] in labelled else r["variant"]
        labelled.add(r["variant"])
        ax.plot(frames, values, color=colors[r["variant"]], alpha=0.8, label=label)
    if chance is not None:
        ax.axhline(chance, color="gray", lw=0.8, ls="--", label="chance")
    ax.set(xlabel="env steps", ylabel=ylabel, ylim=ylim, title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
