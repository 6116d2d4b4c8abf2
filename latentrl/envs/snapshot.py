"""Snapshots of a simulator's internal state, for checkpoints that resume exactly.

TorchRL's ``EnvBase.state_dict()`` and ``Collector.state_dict()`` hold the
transforms' parameters but not the simulator (cart position, episode step
counter, the env's own random generator), so a resumed run restarts every
episode (``UPSTREAM.md``, "Collector.state_dict"). :func:`env_state` captures
that state as plain data (tensors, numbers, strings) that
``torch.load(weights_only=True)`` reads back safely; :func:`load_env_state`
puts it back.

Supported: gymnasium envs and wrappers whose state is plain data (classic
control, toy text, ...), single or in a gymnasium ``SyncVectorEnv``; a single
dm_control suite env (TorchRL's ``DMControlWrapper``: MuJoCo's full integration
state, the episode step counter and the task's random generator); and envs
that implement ``snapshot_state()``/``restore_state()`` (latentrl's
:class:`~latentrl.envs.TMazeEnv`). Other simulators whose state lives in
native objects (ALE, MuJoCo through gymnasium, batches of dm_control envs)
raise :class:`SnapshotUnsupported`; the harness then warns that a resumed run
restarts their episodes.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchrl.envs import EnvBase, TransformedEnv

__all__ = ["env_state", "load_env_state", "SnapshotUnsupported"]

# attributes that describe an env rather than its state
_CONFIG_ATTRS = {"spec", "metadata", "env_fns", "_saved_kwargs", "_cached_spec", "render_mode"}
_OPAQUE_MODULES = ("ale_py", "mujoco", "dm_control", "dm_env", "pygame", "Box2D")


class SnapshotUnsupported(RuntimeError):
    """The env keeps state in objects that cannot be saved as plain data."""


def _is_gym_env(obj: Any) -> bool:
    import gymnasium

    return isinstance(obj, (gymnasium.Env, gymnasium.vector.VectorEnv))


def _encode(value: Any, path: str) -> tuple[bool, Any]:
    """Returns (is_state, encoded). Non-state values (spaces, callables) are skipped."""
    import gymnasium

    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, np.generic):
        return True, {"__np_scalar__": value.dtype.str, "value": value.item()}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise SnapshotUnsupported(f"{path}: object arrays cannot be saved as plain data")
        return True, {"__ndarray__": value.dtype.str, "data": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.random.Generator):
        return True, {"__np_generator__": value.bit_generator.state}
    if isinstance(value, np.random.RandomState):
        name, keys, pos, has_gauss, cached = value.get_state()
        return True, {"__np_randomstate__": [name, torch.from_numpy(keys.copy()), pos, has_gauss, cached]}
    if _is_gym_env(value):
        return True, {"__env__": _snapshot_object(value, path)}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if all(is_state for is_state, _ in items):
            return True, {"__seq__": type(value).__name__, "items": [v for _, v in items]}
        return False, None
    if isinstance(value, (gymnasium.spaces.Space, gymnasium.envs.registration.EnvSpec)) or callable(value):
        return False, None
    if type(value).__module__.split(".")[0] in _OPAQUE_MODULES:
        raise SnapshotUnsupported(f"{path}: state held by a {type(value).__module__}.{type(value).__name__}")
    if isinstance(value, (dict, set)) or hasattr(value, "__dict__"):
        # containers of config (e.g. a wrapper's kwargs) or enums: not state
        return False, None
    return False, None


def _snapshot_object(obj: Any, path: str) -> dict:
    state = {}
    for name, value in vars(obj).items():
        if name in _CONFIG_ATTRS:
            continue
        is_state, encoded = _encode(value, f"{path}.{name}")
        if is_state:
            state[name] = encoded
    return state


def _decode(current: Any, encoded: Any) -> Any:
    if isinstance(encoded, dict):
        if "__ndarray__" in encoded:
            return encoded["data"].numpy().astype(np.dtype(encoded["__ndarray__"]), copy=True)
        if "__np_scalar__" in encoded:
            return np.dtype(encoded["__np_scalar__"]).type(encoded["value"])
        if "__np_generator__" in encoded:
            current.bit_generator.state = encoded["__np_generator__"]
            return current
        if "__np_randomstate__" in encoded:
            name, keys, pos, has_gauss, cached = encoded["__np_randomstate__"]
            current.set_state((name, keys.numpy(), pos, has_gauss, cached))
            return current
        if "__env__" in encoded:
            _restore_object(current, encoded["__env__"])
            return current
        if "__seq__" in encoded:
            n = len(encoded["items"])
            if not (isinstance(current, (list, tuple)) and len(current) == n):
                current = [None] * n  # no live objects to restore into: plain values only
            items = [_decode(cur, enc) for cur, enc in zip(current, encoded["items"])]
            return tuple(items) if encoded["__seq__"] == "tuple" else items
    return encoded


def _restore_object(obj: Any, state: dict) -> None:
    for name, encoded in state.items():
        setattr(obj, name, _decode(getattr(obj, name, None), encoded))


def _base_env(env: EnvBase) -> EnvBase:
    while isinstance(env, TransformedEnv):
        env = env.base_env
    return env


def _dmc_sig():
    import mujoco

    return int(mujoco.mjtState.mjSTATE_INTEGRATION)  # time, qpos, qvel, act, warm start, controls, ...


def _dmc_state(env: Any) -> dict:
    """A dm_control ``control.Environment``: physics, episode counters and the task's RandomState."""
    physics = env.physics
    _, random = _encode(env.task.random, "task.random")
    return {
        "physics": torch.from_numpy(physics.get_state(sig=_dmc_sig()).copy()),
        "step_count": int(env._step_count),
        "reset_next_step": bool(env._reset_next_step),
        "random": random,
    }


def _load_dmc_state(env: Any, state: dict) -> None:
    import mujoco

    physics = env.physics
    with physics.reset_context():  # runs mj_forward on exit, as after a reset
        mujoco.mj_setState(physics.model.ptr, physics.data.ptr, state["physics"].numpy(), _dmc_sig())
    env._step_count, env._reset_next_step = state["step_count"], state["reset_next_step"]
    _decode(env.task.random, state["random"])


def env_state(env: EnvBase) -> dict:
    """The simulator state of ``env`` (transforms excluded) as plain data.

    Raises:
        SnapshotUnsupported: the simulator's state cannot be captured.
    """
    base = _base_env(env)
    # look the attributes up on the class and the instance dict: TorchRL's batched envs forward
    # unknown attributes to their workers, and recurse forever when the workers are not started
    if getattr(type(base), "snapshot_state", None) is not None:
        return {"kind": "native", "state": base.snapshot_state()}
    gym_env = vars(base).get("_env")
    if gym_env is not None and _is_gym_env(gym_env):
        return {"kind": "gymnasium", "state": _snapshot_object(gym_env, type(gym_env).__name__)}
    if gym_env is not None and type(gym_env).__module__.startswith("dm_control"):
        return {"kind": "dm_control", "state": _dmc_state(gym_env)}
    raise SnapshotUnsupported(f"no snapshot for {type(base).__name__}")


def load_env_state(env: EnvBase, state: dict) -> None:
    """Restores a state returned by :func:`env_state` on an env built the same way."""
    base = _base_env(env)
    if state["kind"] == "native":
        base.restore_state(state["state"])
    elif state["kind"] == "gymnasium":
        _restore_object(base._env, state["state"])
    elif state["kind"] == "dm_control":
        _load_dmc_state(base._env, state["state"])
    else:  # pragma: no cover - written by env_state only
        raise ValueError(f"unknown env state kind {state['kind']!r}")
