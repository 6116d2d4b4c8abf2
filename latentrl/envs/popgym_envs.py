"""POPGym (Morad et al. 2023, "POPGym: Benchmarking Partially Observable
Reinforcement Learning") for ``make_env("popgym:<Name>")``.

POPGym's envs are gymnasium envs with discrete, multi-discrete and nested
observation spaces and (multi-)discrete actions. As in the paper's baselines
(RLlib's default preprocessing), observations become one float32 vector:
``Discrete`` one-hot, ``MultiDiscrete`` concatenated one-hots, ``Tuple``
concatenated (gymnasium's ``flatten``); ``Box`` observations are cast to
float32. ``MultiDiscrete`` actions become one ``Discrete`` action over their
product (as POPGym's ``DiscreteAction`` wrapper, which only wraps a bare
POPGym env), so every discrete task has a one-hot action spec; the pendulum
tasks keep their continuous ``Box`` action.
"""
from __future__ import annotations

import numpy as np

__all__ = ["popgym_ids", "make_popgym_gymnasium"]


def _import_popgym():
    try:
        import popgym  # noqa: F401  (registers the popgym-<Name>-v0 ids)
    except ImportError as err:  # pragma: no cover - popgym is in the test extra
        raise ImportError('make_env("popgym:..."): popgym is not installed; pip install -e ".[popgym]"') from err


def popgym_ids() -> list[str]:
    """The POPGym task names (``RepeatFirstEasy``, ``CountRecallMedium``, ...)."""
    _import_popgym()
    import gymnasium

    return sorted(k[len("popgym-") : -len("-v0")] for k in gymnasium.registry if k.startswith("popgym-") and k.endswith("-v0"))


def make_popgym_gymnasium(name: str, **kwargs):
    """One POPGym env ``name`` with a flat float32 observation (and a ``Discrete`` action where it was discrete)."""
    _import_popgym()
    import gymnasium
    from gymnasium.spaces import Box, Discrete, MultiDiscrete
    from gymnasium.spaces.utils import flatdim, flatten

    class DiscreteAction(gymnasium.ActionWrapper):
        def __init__(self, env):
            super().__init__(env)
            self._nvec = env.action_space.nvec
            self.action_space = Discrete(int(np.prod(self._nvec)))

        def action(self, action):
            return np.array(np.unravel_index(int(action), self._nvec), dtype=np.int64)

    class FlatFloatObservation(gymnasium.ObservationWrapper):  # and no info: some tasks change its keys mid-episode
        def __init__(self, env):
            super().__init__(env)
            space = env.observation_space
            self._box = isinstance(space, Box)
            shape = (int(np.prod(space.shape)),) if self._box else (flatdim(space),)
            low, high = (space.low.reshape(-1), space.high.reshape(-1)) if self._box else (0.0, 1.0)
            self.observation_space = Box(low=low, high=high, shape=shape, dtype=np.float32)

        def reset(self, **kwargs):
            return super().reset(**kwargs)[0], {}

        def step(self, action):
            return (*super().step(action)[:4], {})

        def observation(self, observation):
            flat = np.asarray(observation).reshape(-1) if self._box else flatten(self.env.observation_space, observation)
            return np.asarray(flat, dtype=np.float32)

    env = gymnasium.make(f"popgym-{name}-v0", **kwargs)
    if isinstance(env.action_space, MultiDiscrete):
        env = DiscreteAction(env)
    return FlatFloatObservation(env)
