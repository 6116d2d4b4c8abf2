"""Learning-curve PNG written at the end of every run."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_learning_curve"]


def plot_learning_curve(
    history: Mapping[str, Sequence[tuple[int, float]]],
    path: str | Path,
    keys: Sequence[str] = ("train/episode_return", "eval/return"),
    title: str = "",
    xlabel: str = "environment frames",
    ylabel: str = "return",
) -> Path | None:
    """Plots ``keys`` of ``history`` (name -> [(frames, value)]) against frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [k for k in keys if history.get(k)]
    if not present:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in present:
        steps, values = zip(*history[key])
        ax.plot(steps, values, label=key, marker="o" if key.startswith("eval") else None, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
