"""Checkpoint files: durable atomic writes, ``weights_only`` loading, fallback, RNG states.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so
``torch.load(path, weights_only=True)`` reads it without unpickling code. It
is written to a temporary file, ``fsync``-ed, renamed over its final name and
the directory ``fsync``-ed, so a crash or a full disk leaves either the old
file set or the new one, never a half-written file under a checkpoint's name.

A run keeps its newest few checkpoints (``step_<frames>.pt``);
:func:`load_checkpoint` on a run dir takes the newest one that loads and warns
about each newer one it had to skip, saying why. A file that is truncated,
not a latentrl checkpoint, or of another format version raises
:class:`CheckpointError` naming the file and what is wrong with it.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "FORMAT",
    "VERSION",
    "checkpoint_files",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "save_checkpoint",
    "load_checkpoint",
    "prune_checkpoints",
]

FORMAT = "latentrl-checkpoint"
VERSION = 1
#: entries every checkpoint holds (written by ``Experiment``)
REQUIRED = ("config", "run_dir", "objects", "counters", "history", "rng")
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the cause."""


def seed_everything(seed: int) -> None:
    """Seeds python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch, as safely loadable data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open directories (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` (plus the format tag and version) to ``path`` durably and atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def checkpoint_files(run_dir: str | os.PathLike) -> list[Path]:
    """A run's checkpoints, newest first: ``step_<frames>.pt`` by frames, then a legacy ``latest.pt``."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    steps = sorted(
        (p for p in directory.iterdir() if _STEP_FILE.match(p.name)),
        key=lambda p: int(_STEP_FILE.match(p.name).group(1)),
        reverse=True,
    )
    legacy = [directory / "latest.pt"] if (directory / "latest.pt").is_file() else []
    return steps + legacy


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Deletes all but the newest ``keep`` ``step_*.pt`` checkpoints of a run; returns the deleted files."""
    if keep < 1:
        raise ValueError(f"prune_checkpoints: `keep` must be >= 1, got {keep}")
    old = [p for p in checkpoint_files(run_dir) if _STEP_FILE.match(p.name)][keep:]
    for p in old:
        p.unlink(missing_ok=True)
    if old:
        _fsync_dir(Path(run_dir) / "checkpoints")
    return old


def _read(path: Path, map_location) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut file loses its directory
        raise CheckpointError(f"checkpoint {path}: truncated or corrupt ({size} bytes; not a complete torch.save archive)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines()]
        reason = next((line for line in lines if "Unsupported global" in line), "weights_only load failed").split(" was not")[0]
        raise CheckpointError(
            f"checkpoint {path}: not a latentrl checkpoint: it holds objects that safe (weights_only) loading "
            f"refuses ({reason})"
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path}: unreadable, truncated or corrupt ({size} bytes; {type(err).__name__}: {reason})"
        ) from err
    if not isinstance(payload, dict) or not all(k in payload for k in REQUIRED):
        held = sorted(map(str, payload)) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"checkpoint {path}: not a latentrl checkpoint (it holds {held}; a checkpoint holds {list(REQUIRED)})"
        )
    version = payload.get("version", 0)  # version 0: written before the format tag existed
    if payload.get("format", FORMAT) != FORMAT or version not in (0, VERSION):
        raise CheckpointError(
            f"checkpoint {path}: format {payload.get('format')!r} version {version!r}; "
            f"this latentrl reads {FORMAT!r} versions 0 and {VERSION}"
        )
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Loads a checkpoint file, or the newest loadable checkpoint of a run dir (``weights_only=True``).

    Raises:
        CheckpointError: the file (or every checkpoint of the run dir) cannot
            be used; the message names each file and why.
    """
    path = Path(path)
    if not path.is_dir():
        return _read(path, map_location)
    candidates = checkpoint_files(path)
    if not candidates:
        raise CheckpointError(f"run dir {path}: no checkpoint under {path / 'checkpoints'} (step_<frames>.pt)")
    skipped = []
    for candidate in candidates:
        try:
            payload = _read(candidate, map_location)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        if skipped:
            warnings.warn(
                f"resuming from {candidate}: the newer checkpoint(s) could not be loaded: " + "; ".join(skipped),
                RuntimeWarning,
                stacklevel=2,
            )
        return payload
    raise CheckpointError(f"run dir {path}: no checkpoint loads: " + "; ".join(skipped))
