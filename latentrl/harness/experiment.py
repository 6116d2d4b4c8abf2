"""The experiment harness every example runs through.

An example builds its env, modules, losses and collector, hands the stateful
parts to :class:`Experiment` and iterates the collector through it::

    exp = Experiment(cfg)                   # first: it seeds python, numpy and torch
    ...                                     # build envs, modules, losses, collector
    exp.evaluator = lambda: evaluate(eval_env, actor, max_steps=500)
    exp.track(actor=actor, critic=critic, optimizer=optim, collector=collector)
    for batch in exp.iterate(collector):
        losses = loss_module(batch)
        exp.check_finite(losses)            # NaN/inf: checkpoint, then stop naming the term
        ...
        exp.log({"train/loss": ...})
    summary = exp.finish()                  # learning-curve PNG, summary.json

It provides seeding, a TorchRL logger (CSV by default; TensorBoard or W&B by
``logger.backend``), a tqdm bar with frames and the latest score, periodic
evaluation, and checkpoints that resume exactly: models, optimizers, replay
buffers, the collector with its in-flight episodes and simulator state,
counters, the logged history and every RNG, so a run stopped at frame k and
resumed logs the same numbers as an uninterrupted run. Checkpoints load with
``torch.load(weights_only=True)``.

Config keys it reads: ``seed``, ``threads``,
``run_dir``, ``logger.{backend,project,progress_bar}``,
``eval.interval_frames``, ``checkpoint.{interval_frames,keep,resume,stop_at_frames}``.

Checkpoints are ``<run_dir>/checkpoints/step_<frames>.pt``, written durably
(``fsync``) and atomically; the newest ``checkpoint.keep`` (default 2) are
kept, and a resume from a run dir takes the newest one that loads.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from tqdm.auto import tqdm

from latentrl.collectors.state import (
    collector_state,
    load_collector_state,
    load_replay_buffer_state,
    replay_buffer_state,
)

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from .config import ConfigError, flatten
from .plotting import plot_learning_curve

__all__ = ["Experiment", "NonFiniteLossError", "default_run_dir", "HARNESS_CHOICES", "HARNESS_CONSTRAINTS", "RESUMABLE_KEYS"]

HARNESS_CHOICES = {"logger.backend": ("csv", "tensorboard", "wandb")}


def _positive_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int) and value > 0)


HARNESS_CONSTRAINTS = {
    "eval.interval_frames": (_positive_or_null, "a positive integer or null (no periodic evaluation)"),
    "checkpoint.interval_frames": (_positive_or_null, "a positive integer or null (checkpoint only at the end)"),
    "checkpoint.stop_at_frames": (_positive_or_null, "a positive integer or null"),
    "checkpoint.keep": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1 (checkpoints kept)"),
    "threads": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
}

#: keys that may differ between a checkpoint's config and the resumed run
RESUMABLE_KEYS = ("checkpoint.resume", "checkpoint.stop_at_frames", "checkpoint.keep", "logger.progress_bar", "run_dir")


def default_run_dir() -> Path:
    """Hydra's output dir when running under Hydra, else ``runs/<timestamp>``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; a checkpoint was saved first."""

    def __init__(self, step: int, terms: Mapping[str, float], checkpoint: Path):
        self.step, self.terms, self.checkpoint = step, dict(terms), checkpoint
        named = ", ".join(f"{k} = {v}" for k, v in self.terms.items())
        super().__init__(f"non-finite loss at frame {step}: {named}; checkpoint saved to {checkpoint}")


def free_cores() -> float:
    """Cores not busy with other work: the usable CPU count minus the 1-minute load average (>= 0)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(0.0, count - load)


def warn_if_oversubscribed(threads: int) -> bool:
    """Warns when ``threads`` torch threads exceed the free cores; returns whether it warned.

    On a busy 2-core machine a torch update with 2 threads beside another
    process ran 24x slower than with 1 (OpenMP threads spin on a shared core).
    """
    free = free_cores()
    if threads > 1 and threads > free + 0.5:
        warnings.warn(
            f"config key 'threads' is {threads} but only about {free:.1f} cores are free "
            f"(load average {os.getloadavg()[0]:.1f}): torch's threads will spin on busy cores and run many times "
            "slower; set threads=1 (or fewer than the free cores)",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False


class Experiment:
    """Seeding, logging, progress, evaluation and exact checkpoints for one run.

    Args:
        cfg: the run's config (see the module docstring for the keys read).
        evaluator: called at every ``eval.interval_frames`` and at the end;
            returns a dict of metrics logged under ``eval/``. May be set
            later as ``exp.evaluator``.
        total_frames: length of the run (progress bar; a `stop_at_frames` at or
            past it is a complete run, not an early stop).
    """

    def __init__(
        self,
        cfg: DictConfig,
        *,
        evaluator: Callable[[], Mapping[str, float]] | None = None,
        total_frames: int | None = None,
    ):
        self.cfg = cfg
        self.evaluator = evaluator
        self.total_frames = total_frames
        self._tracked: dict[str, Any] = {}
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.counters = {"frames": 0, "iterations": 0, "next_eval": 0, "next_checkpoint": 0}
        self.last_score: float | None = None
        self.stopped_early = False  # set when iterate() stops at checkpoint.stop_at_frames
        self._resume_payload: dict | None = None

        torch.set_num_threads(int(cfg.threads))
        warn_if_oversubscribed(int(cfg.threads))
        resume = cfg.checkpoint.resume
        if resume:
            self._resume_payload = self._load_resume(resume)
            self._check_resume_config(self._resume_payload["config"])
            self.run_dir = Path(self._resume_payload["run_dir"])
        else:
            self.run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(int(cfg.seed))
        self.logger = self._make_logger()
        self._pbar = None

    # -- setup ---------------------------------------------------------------
    @staticmethod
    def _load_resume(resume: Any) -> dict[str, Any]:
        path = Path(str(resume))
        if not path.exists():
            raise ConfigError(
                f"config key 'checkpoint.resume': no such file or directory: {path} "
                "(a run dir or a checkpoint file)"
            )
        try:
            return load_checkpoint(path)
        except CheckpointError as err:
            raise ConfigError(f"config key 'checkpoint.resume': {err}") from err

    def _check_resume_config(self, saved: Mapping[str, Any]) -> None:
        now = flatten(self.cfg)
        changed = sorted(
            k for k in set(now) | set(saved) if now.get(k) != saved.get(k) and not k.startswith(RESUMABLE_KEYS)
        )
        if changed:
            details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in changed)
            raise ConfigError(
                f"resuming needs the checkpoint's config; these keys differ: {details}. "
                f"Only {', '.join(RESUMABLE_KEYS)} may change on resume."
            )

    def _make_logger(self):
        from torchrl.record.loggers import get_logger

        backend = self.cfg.logger.backend
        if backend == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError as err:
                raise ConfigError(
                    "logger.backend='tensorboard' needs the tensorboard package: pip install 'latentrl[tensorboard]'"
                ) from err
        if backend == "wandb":
            try:
                import wandb  # noqa: F401
            except ImportError as err:
                raise ConfigError("logger.backend='wandb' needs the wandb package: pip install 'latentrl[wandb]'") from err
        kwargs = {}
        if backend == "wandb":
            kwargs["wandb_kwargs"] = {"project": self.cfg.logger.project, "dir": str(self.run_dir)}
        return get_logger(backend, logger_name=str(self.run_dir), experiment_name="logs", **kwargs)

    def track(self, **objects: Any) -> None:
        """Registers the run's stateful parts (modules, optimizers, schedulers,
        replay buffers, collectors) under names used in the checkpoint."""
        for name, obj in objects.items():
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise TypeError(f"Experiment.track: '{name}' ({type(obj).__name__}) has no state_dict/load_state_dict")
            self._tracked[name] = obj

    # -- state ---------------------------------------------------------------
    @staticmethod
    def _object_state(obj: Any) -> Any:
        from torchrl.collectors import Collector
        from torchrl.data import ReplayBuffer

        if isinstance(obj, Collector):
            return collector_state(obj)
        if isinstance(obj, ReplayBuffer):
            return replay_buffer_state(obj)
        return obj.state_dict()

    @staticmethod
    def _load_object_state(obj: Any, state: Any) -> None:
        from torchrl.collectors import Collector
        from torchrl.data import ReplayBuffer

        if isinstance(obj, Collector):
            load_collector_state(obj, state)
        elif isinstance(obj, ReplayBuffer):
            load_replay_buffer_state(obj, state)
        else:
            obj.load_state_dict(state)

    def _state(self) -> dict[str, Any]:
        objects = {name: self._object_state(obj) for name, obj in self._tracked.items()}
        return {
            "config": flatten(self.cfg),
            "run_dir": str(self.run_dir),
            "objects": objects,
            "counters": dict(self.counters),
            "history": {k: [list(p) for p in v] for k, v in self.history.items()},
            "last_score": self.last_score,
            "rng": rng_state(),
        }

    def save(self, name: str | None = None) -> Path:
        """Writes a checkpoint under ``<run_dir>/checkpoints/`` (default ``step_<frames>.pt``,
        keeping the newest ``checkpoint.keep`` of those)."""
        path = save_checkpoint(
            self.run_dir / "checkpoints" / (name or f"step_{self.counters['frames']:012d}.pt"), self._state()
        )
        if name is None:
            prune_checkpoints(self.run_dir, int(self.cfg.checkpoint.get("keep", 2)))
        return path

    def restore(self) -> bool:
        """Loads the checkpoint named by ``checkpoint.resume`` into the tracked
        objects, counters, history and RNGs. ``iterate`` calls it before the
        first batch; returns False when there is nothing to resume."""
        if self._resume_payload is None:
            return False
        payload, self._resume_payload = self._resume_payload, None
        self._restore(payload)
        return True

    def _restore(self, payload: dict[str, Any]) -> None:
        missing = sorted(set(self._tracked) - set(payload["objects"]))
        if missing:
            raise KeyError(f"checkpoint has no state for {missing}; it holds {sorted(payload['objects'])}")
        for name, obj in self._tracked.items():
            self._load_object_state(obj, payload["objects"][name])
        self.counters.update(payload["counters"])
        self.history = defaultdict(list, {k: [tuple(p) for p in v] for k, v in payload["history"].items()})
        self.last_score = payload["last_score"]
        self._trim_csv_logs(self.counters["frames"])
        set_rng_state(payload["rng"])  # last: building the objects above consumed randomness

    def _trim_csv_logs(self, frames: int) -> None:
        """Drops CSV rows logged after the checkpoint (they will be logged again)."""
        if self.cfg.logger.backend != "csv":
            return
        def kept(row: str) -> bool:
            try:
                step, value = row.split(",")
                float(value)
                return int(float(step)) <= frames
            except ValueError:  # a row cut short by a crash
                return False

        for path in (self.run_dir / "logs" / "scalars").rglob("*.csv"):
            text = path.read_text()
            complete = text.splitlines()[: text.count("\n")]  # a last row without its newline was cut short
            path.write_text("".join(r + "\n" for r in complete if kept(r)))

    # -- the loop --------------------------------------------------------------
    def iterate(self, collector, score_key=("next", "episode_reward"), done_key=("next", "done")) -> Iterator[TensorDictBase]:
        """Yields the collector's batches; between batches it evaluates,
        checkpoints and stops at ``checkpoint.stop_at_frames``."""
        self.restore()
        cfg = self.cfg
        if self.counters["frames"] == 0:
            self.counters["next_eval"] = cfg.eval.interval_frames or 0
            self.counters["next_checkpoint"] = cfg.checkpoint.interval_frames or 0
        self._pbar = tqdm(
            total=self.total_frames,
            initial=self.counters["frames"],
            unit="frames",
            disable=not cfg.logger.progress_bar,
            dynamic_ncols=True,
        )
        try:
            for batch in collector:
                frames = batch.numel()
                self.counters["frames"] += frames
                self.counters["iterations"] += 1
                self._record_score(batch, score_key, done_key)
                self._pbar.update(frames)
                yield batch
                self._end_of_iteration()
                stop_at = cfg.checkpoint.stop_at_frames
                finished = self.total_frames is not None and self.counters["frames"] >= self.total_frames
                if stop_at is not None and self.counters["frames"] >= stop_at and not finished:
                    self.save()
                    self.stopped_early = True
                    break
        finally:
            self._pbar.close()

    def _record_score(self, batch: TensorDictBase, score_key, done_key) -> None:
        if score_key not in batch.keys(True) or done_key not in batch.keys(True):
            return
        done = batch.get(done_key).squeeze(-1)
        if done.any():
            score = batch.get(score_key).squeeze(-1)[done].float().mean().item()
            self.last_score = score
            self.log({"train/episode_return": score})
        self._set_postfix()

    def _set_postfix(self) -> None:
        if self._pbar is None:
            return
        postfix = {}
        if self.last_score is not None:
            postfix["score"] = f"{self.last_score:.1f}"
        if self.history.get("eval/return"):
            postfix["eval"] = f"{self.history['eval/return'][-1][1]:.1f}"
        self._pbar.set_postfix(postfix, refresh=False)

    def _end_of_iteration(self) -> None:
        frames = self.counters["frames"]
        if self.cfg.eval.interval_frames and frames >= self.counters["next_eval"]:
            self.run_evaluation()
            while self.counters["next_eval"] <= frames:
                self.counters["next_eval"] += self.cfg.eval.interval_frames
        if self.cfg.checkpoint.interval_frames and frames >= self.counters["next_checkpoint"]:
            while self.counters["next_checkpoint"] <= frames:
                self.counters["next_checkpoint"] += self.cfg.checkpoint.interval_frames
            self.save()

    def run_evaluation(self) -> dict[str, float]:
        if self.evaluator is None:
            return {}
        metrics = dict(self.evaluator())
        self.log({f"eval/{k}": v for k, v in metrics.items()})
        self._set_postfix()
        return metrics

    # -- logging / guards ----------------------------------------------------
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Logs scalars at ``step`` (default: frames so far)."""
        step = self.counters["frames"] if step is None else int(step)
        for name, value in metrics.items():
            value = float(value.item() if isinstance(value, torch.Tensor) else value)
            self.logger.log_scalar(name, value, step=step)
            self.history[name].append((step, value))

    def check_finite(self, losses: Mapping[str, Any] | TensorDictBase) -> None:
        """Stops the run if a ``loss*`` term is NaN/inf, after saving a checkpoint.

        Call it before ``backward()``: the checkpoint then holds the last
        finite parameters together with the batch counters.
        """
        bad = {}
        for key in losses.keys():
            if isinstance(key, str) and key.startswith("loss"):
                value = losses[key]
                value = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
                if not torch.isfinite(value).all():
                    bad[key] = value.detach().float().mean().item() if value.numel() else float("nan")
        if bad:
            path = self.save(f"nonfinite_frame{self.counters['frames']}.pt")
            raise NonFiniteLossError(self.counters["frames"], bad, path)

    def finish(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Final evaluation, checkpoint, learning-curve PNG and ``summary.json``.

        ``summary.json`` holds the final and best ``eval/return``, every
        metric of the last evaluation under ``"final_eval"``, and ``extra``
        (JSON-serializable entries the example adds, e.g. policy-lag statistics).
        """
        evals = self.history.get("eval/return", [])
        if not self.stopped_early:
            if self.evaluator is not None and (not evals or evals[-1][0] != self.counters["frames"]):
                self.run_evaluation()
                evals = self.history["eval/return"]
            self.save()
        png = plot_learning_curve(self.history, self.run_dir / "learning_curve.png", title=str(self.cfg.get("name", "")))
        summary = {
            "frames": self.counters["frames"],
            "iterations": self.counters["iterations"],
            "final_eval_return": evals[-1][1] if evals else None,
            "best_eval_return": max(v for _, v in evals) if evals else None,
            "last_train_return": self.last_score,
            "stopped_early": self.stopped_early,
            "run_dir": str(self.run_dir),
            "learning_curve": str(png) if png else None,
            "final_eval": {
                key[len("eval/") :]: values[-1][1] for key, values in self.history.items() if key.startswith("eval/") and values
            },
            **dict(extra or {}),
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
