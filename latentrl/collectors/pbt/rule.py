"""Population based training's decisions: when a member is ready, whom it copies, how it explores
(Jaderberg et al. 2017, "Population Based Training of Neural Networks", Section 3 and 4.1).

The rule is pure: it reads the members' fitness, hyperparameters and env
steps and returns decisions, drawing its randomness from a generator it is
given. The backends (local processes, Ray Tune's scheduler) apply the same
rule to the same fitness sequence and so make the same decisions.

- **ready**: a member is ready once it has trained ``ready_frames`` env steps
  since its last exploit (or since it started);
- **exploit**: ``"truncation"`` (the paper's truncation selection): a member
  in the bottom ``quantile`` of the population by fitness copies a member
  drawn uniformly from the top ``quantile``; ``"binary"`` (the rule IMPALA
  used): the member copies a member drawn uniformly from the others and
  keeps it only if that member's fitness is better by more than
  ``threshold`` (relative, 5% in IMPALA); otherwise it keeps its own;
- **explore** (after a copy): ``"perturb"`` multiplies every hyperparameter
  by a factor drawn from ``factors`` (0.8 or 1.2), ``"resample"`` draws it
  anew from its prior with probability ``resample_probability`` (else it
  perturbs); the result is clipped to the hyperparameter's bounds (log-uniform
  priors for ``log=True`` ones; integers stay integers).
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from latentrl.checks import InputError, check_positive_int, check_range

__all__ = ["Hyperparameter", "PBTRule", "EXPLOITS", "EXPLORES"]

EXPLOITS = ("truncation", "binary")
EXPLORES = ("perturb", "resample")


@dataclass(frozen=True)
class Hyperparameter:
    """A hyperparameter PBT adapts: its bounds, whether its prior is log-uniform, whether it is an integer."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self):
        if not (self.low <= self.high):
            raise InputError(f"Hyperparameter: `low` must be <= `high`, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise InputError(f"Hyperparameter: a log-uniform prior needs `low` > 0, got {self.low}")

    def clip(self, value: float) -> float:
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.integer else value

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return self.clip(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.clip(rng.uniform(self.low, self.high))


class PBTRule:
    """The ready / exploit / explore decisions (see the module docstring).

    Args:
        hyperparameters: name -> :class:`Hyperparameter` (bounds and prior).
        ready_frames: env steps a member trains between exploits.
        exploit: ``"truncation"`` or ``"binary"``.
        quantile: the truncation's bottom and top fraction (paper: 0.2).
        threshold: the binary rule's relative margin (IMPALA: 0.05).
        explore: ``"perturb"`` or ``"resample"``.
        factors: the perturbation's factors (paper: 0.8 and 1.2).
        resample_probability: with ``"resample"``, the chance each value is drawn anew (paper: 0.25).
    """

    def __init__(self, hyperparameters: Mapping[str, Hyperparameter], *, ready_frames: int, exploit: str = "truncation",
                 quantile: float = 0.2, threshold: float = 0.05, explore: str = "perturb",
                 factors: tuple[float, ...] = (0.8, 1.2), resample_probability: float = 0.25):
        if not hyperparameters:
            raise InputError("PBTRule: `hyperparameters` is empty; give at least one name -> Hyperparameter")
        for name, h in hyperparameters.items():
            if not isinstance(h, Hyperparameter):
                raise InputError(f"PBTRule: hyperparameter {name!r} must be a Hyperparameter, got {type(h).__name__}")
        check_positive_int("PBTRule", "ready_frames", ready_frames)
        if exploit not in EXPLOITS:
            raise InputError(f"PBTRule: `exploit` must be one of {EXPLOITS}, got {exploit!r}")
        if explore not in EXPLORES:
            raise InputError(f"PBTRule: `explore` must be one of {EXPLORES}, got {explore!r}")
        check_range("PBTRule", "quantile", quantile, 0.0, 0.5, lo_open=True)
        check_range("PBTRule", "threshold", threshold, 0.0)
        check_range("PBTRule", "resample_probability", resample_probability, 0.0, 1.0)
        if not factors or any(f <= 0 for f in factors):
            raise InputError(f"PBTRule: `factors` must be positive numbers, got {factors!r}")
        self.hyperparameters = dict(hyperparameters)
        self.ready_frames, self.exploit_kind, self.explore_kind = int(ready_frames), exploit, explore
        self.quantile, self.threshold = float(quantile), float(threshold)
        self.factors, self.resample_probability = tuple(float(f) for f in factors), float(resample_probability)

    def ready(self, frames: int, frames_at_last_exploit: int) -> bool:
        """Whether a member at ``frames`` env steps, last exploited (or started) at ``frames_at_last_exploit``, is ready."""
        return frames - frames_at_last_exploit >= self.ready_frames

    def exploit(self, member: str, fitness: Mapping[str, float], rng: random.Random) -> str | None:
        """The member ``member`` copies (None: it keeps its own weights), given every member's fitness."""
        if member not in fitness:
            raise InputError(f"PBTRule.exploit: no fitness for member {member!r}; members: {sorted(fitness)}")
        bad = {m: f for m, f in fitness.items() if f != f}
        if bad:
            raise InputError(f"PBTRule.exploit: fitness must be a number, got NaN for {sorted(bad)}")
        others = sorted(m for m in fitness if m != member)
        if not others:
            return None
        if self.exploit_kind == "binary":
            donor = rng.choice(others)
            mine, theirs = fitness[member], fitness[donor]
            return donor if theirs > mine + self.threshold * abs(mine) else None
        ranked = sorted(fitness, key=lambda m: (fitness[m], m))  # worst first; ties by name, for determinism
        cut = max(1, int(math.floor(self.quantile * len(ranked))))
        if member not in ranked[:cut]:
            return None
        top = [m for m in ranked[-cut:] if m != member]
        return rng.choice(sorted(top)) if top else None

    def explore(self, values: Mapping[str, float], rng: random.Random) -> dict[str, float]:
        """New hyperparameters from the copied ones, within bounds; names not adapted are kept as they are."""
        missing = sorted(set(self.hyperparameters) - set(values))
        if missing:
            raise InputError(f"PBTRule.explore: the values lack {missing}; adapted: {sorted(self.hyperparameters)}")
        out = dict(values)
        for name, h in self.hyperparameters.items():
            if self.explore_kind == "resample" and rng.random() < self.resample_probability:
                out[name] = h.sample(rng)
            else:
                out[name] = h.clip(values[name] * rng.choice(self.factors))
        return out
