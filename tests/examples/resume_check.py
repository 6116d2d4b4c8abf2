"""Exact resume at real lengths: stop/resume and SIGKILL/resume against an uninterrupted run.

``check_resume`` runs an example uninterrupted, in this process, and one of

* stopped at ``stop_at`` (``checkpoint.stop_at_frames``), then resumed, in this process;
* as a subprocess (the example's command line) killed with SIGKILL at a
  random moment after its first checkpoint, or while it writes a checkpoint,
  then resumed in this process from whatever checkpoint survived;

and asserts that every CSV the runs log is byte-identical. It also checks
that the part after each resume point is not trivial: ``after`` names CSVs
that must hold at least the given number of rows past the resume point
(episode ends, evaluations, optimizer steps).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from conftest import ROOT
from omegaconf import OmegaConf

from latentrl.harness import checkpoint_files, flatten, load_checkpoint


_UNINTERRUPTED: dict[tuple[str, str], dict[str, str]] = {}


def scalars(run_dir: Path) -> dict[str, str]:
    root = Path(run_dir) / "logs" / "scalars"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.csv"))}


def rows_after(csv: str, frames: int) -> int:
    return sum(1 for r in csv.splitlines() if int(float(r.split(",")[0])) > frames)


def overrides(cfg, base) -> list[str]:
    """``key=value`` command-line overrides that rebuild ``cfg`` from the example's yaml ``base``."""
    out = []
    default = flatten(base)
    for key, value in flatten(cfg).items():
        if key in default and default[key] == value:
            continue
        if isinstance(value, (list, tuple)):
            value = "[" + ",".join(map(str, value)) + "]"
        out.append(f"{key}={'null' if value is None else value}")
    return out


def _kill(script: Path, config_yaml: str, cfg, run_dir: Path, rng: random.Random, during_write: bool, timeout: float):
    """Starts the example and SIGKILLs it after its first checkpoint: at a random moment within the
    next second, or (``during_write``) as soon as a checkpoint's temporary file appears. Returns the
    frames of the checkpoint the resume will use (None: it finished first)."""
    base = OmegaConf.load(script.parent / config_yaml)
    cli = overrides(OmegaConf.merge(cfg, {"run_dir": str(run_dir), "logger": {"progress_bar": False}}), base)
    args = [sys.executable, str(script), *cli]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    start = time.monotonic()
    try:
        while not checkpoint_files(run_dir):
            if proc.poll() is not None:
                raise AssertionError(f"{script.parent.name} exited ({proc.returncode}) before its first checkpoint: "
                                     + proc.stderr.read().decode()[-3000:])
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{script.parent.name}: no checkpoint after {timeout} s")
            time.sleep(0.05)
        if during_write:
            directory = run_dir / "checkpoints"
            while not any(p.name.endswith(".tmp") for p in directory.iterdir()):
                if proc.poll() is not None:
                    return None
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            return None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    return load_checkpoint(run_dir)["counters"]["frames"]


def check_resume(
    train: Callable,
    cfg,
    tmp_path: Path,
    *,
    stop_at: int,
    after: Mapping[str, int],
    script: Path,
    mode: str = "stop",
    config_yaml: str = "config.yaml",
    kill_seed: int = 0,
    timeout: float = 300.0,
) -> dict:
    """Runs the uninterrupted version and, by ``mode``, the stopped one (``"stop"``), the one
    killed at a random moment (``"kill"``) or the one killed while it writes a checkpoint
    (``"kill_during_write"``); returns the frame it resumed from."""
    assert mode in ("stop", "kill", "kill_during_write"), mode
    def with_(name: str, **checkpoint):
        return OmegaConf.merge(cfg, {"run_dir": str(tmp_path / name), "checkpoint": checkpoint})

    key = (getattr(train, "__module__", ""), OmegaConf.to_yaml(OmegaConf.merge(cfg, {"run_dir": None})))
    if key not in _UNINTERRUPTED:  # one uninterrupted run serves every mode of a config
        train(with_("full"))
        _UNINTERRUPTED[key] = scalars(tmp_path / "full")
    full = _UNINTERRUPTED[key]
    if mode == "stop":
        resumed_at = stop_at
        train(with_("split", stop_at_frames=stop_at))
        torch.manual_seed(999)  # whatever happened in between
        train(with_("x", resume=str(tmp_path / "split")))
        _assert_same(full, scalars(tmp_path / "split"), "stop/resume")
    else:
        rng = random.Random(kill_seed)
        resumed_at = _kill(script, config_yaml, cfg, tmp_path / "killed", rng, mode == "kill_during_write", timeout)
        assert resumed_at is not None, f"{script.parent.name} finished before it was killed: make the run longer"
        train(with_("y", resume=str(tmp_path / "killed")))
        _assert_same(full, scalars(tmp_path / "killed"), f"SIGKILL/resume from frame {resumed_at}")
    for name, minimum in after.items():
        assert rows_after(full[name], resumed_at) >= minimum, (
            f"{name}: fewer than {minimum} rows after the resume point (frame {resumed_at})"
        )
    return {"resumed_at": resumed_at}


def _assert_same(a: dict[str, str], b: dict[str, str], what: str) -> None:
    assert set(a) == set(b), f"{what}: logged files differ: {sorted(set(a) ^ set(b))}"
    for name in a:
        if a[name] != b[name]:
            rows = list(zip(a[name].splitlines(), b[name].splitlines()))
            first = next((i for i, (x, y) in enumerate(rows) if x != y), len(rows))
            raise AssertionError(f"{what}: {name} differs from row {first}: "
                                 f"{rows[first] if first < len(rows) else 'lengths differ'}")
