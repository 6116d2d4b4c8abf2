"""Config checking: a wrong key or value fails before training, naming the
key and what it accepts.

An example's ``config.yaml`` is its schema: every key it lists is accepted,
with the type of its default (an int is accepted where a float is expected;
a ``null`` default accepts anything). ``choices`` adds the accepted values of
a key and ``constraints`` a predicate with a description of what it accepts.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = [
    "ConfigError", "flatten", "check_overrides", "check_config", "make_env_from_config",
    "observation_and_action_specs",
    "POSITIVE", "POSITIVE_INT", "NONNEGATIVE_INT", "UNIT_INTERVAL", "DEVICE",
]

# (predicate, description) pairs for the ``constraints`` of :func:`check_config`, shared by the examples
POSITIVE = (lambda v: v > 0, "a positive number")
POSITIVE_INT = (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
NONNEGATIVE_INT = (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
UNIT_INTERVAL = (lambda v: 0 <= v <= 1, "a number in [0, 1]")
DEVICE = (lambda v: v == "cpu" or str(v).startswith("cuda"), "'cpu', 'cuda' or 'cuda:N'")

Constraint = tuple[Callable[[Any], bool], str]


class ConfigError(ValueError):
    """A config key or value that the example does not accept."""


def flatten(cfg: DictConfig | Mapping, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value (lists are leaves)."""
    container = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in container.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> DictConfig:
    """The config :func:`flatten` came from (a checkpoint's ``"config"``): dotted keys back to nested groups."""
    cfg = OmegaConf.create({})
    for key, value in flat.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def _groups(flat: Mapping[str, Any]) -> set[str]:
    groups = set()
    for key in flat:
        parts = key.split(".")
        groups.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return groups


def _unknown_key(key: str, flat: Mapping[str, Any]) -> ConfigError:
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = sorted(k for k in flat if (k.rsplit(".", 1)[0] if "." in k else "") == parent)
    where = f" under '{parent}'" if parent else ""
    close = difflib.get_close_matches(key, list(flat), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    accepted = ", ".join(siblings) if siblings else ", ".join(sorted(flat))
    return ConfigError(f"unknown config key '{key}'.{hint} Accepted keys{where}: {accepted}")


def check_overrides(overrides: Sequence[str], base: DictConfig) -> None:
    """Checks that every ``key=value`` command-line override names a key of ``base``.

    Hydra's own error for an unknown key does not list the accepted keys;
    this runs first and does. ``+key=``/``~key`` (explicit additions and
    deletions) and ``hydra.*`` overrides are left to Hydra.
    """
    flat = flatten(base)
    groups = _groups(flat)
    for override in overrides:
        if "=" not in override or override.startswith(("+", "~", "hydra.", "hydra/", "-")):
            continue
        key = override.split("=", 1)[0].strip()
        if key not in flat and key not in groups:
            raise _unknown_key(key, flat)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(type(value), type(value).__name__)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple, ListConfig)):
        return isinstance(value, (list, tuple, ListConfig))
    return isinstance(value, type(default))


def check_config(
    cfg: DictConfig,
    base: DictConfig,
    choices: Mapping[str, Sequence[Any]] | None = None,
    constraints: Mapping[str, Constraint] | None = None,
) -> None:
    """Checks ``cfg`` against the schema ``base`` (the example's YAML).

    Raises:
        ConfigError: naming the first bad key and what it accepts.
    """
    flat_base = flatten(base)
    flat = flatten(cfg)
    for key, value in flat.items():
        if key not in flat_base:
            if key in _groups(flat_base):
                continue
            raise _unknown_key(key, flat_base)
        default = flat_base[key]
        if not _type_ok(default, value):
            raise ConfigError(
                f"config key '{key}' must be {_type_name(default)} (default {default!r}), got {value!r}"
            )
    for key, accepted in (choices or {}).items():
        value = flat.get(key)
        if value not in accepted:
            raise ConfigError(
                f"config key '{key}' has value {value!r}; accepted values: {', '.join(repr(a) for a in accepted)}"
            )
    for key, (predicate, description) in (constraints or {}).items():
        value = flat.get(key)
        if not predicate(value):
            raise ConfigError(f"config key '{key}' has value {value!r}; it must be {description}")


def make_env_from_config(cfg: DictConfig, num_envs: int, **options):
    """``make_env(cfg.env.name, num_envs=num_envs, device=cfg.device, **options)``; an
    unknown name is a :class:`ConfigError` naming ``env.name`` (its message
    lists the accepted prefixes and ids)."""
    from latentrl.envs import UnknownEnvironmentError, make_env

    try:
        return make_env(cfg.env.name, num_envs=num_envs, device=cfg.device, **options)
    except UnknownEnvironmentError as err:
        raise ConfigError(f"config key 'env.name': {err}") from err


def make_memory_env(cfg: DictConfig, num_envs: int, agent: str, primer=None):
    """The memory agents' env (MERLIN, FTW): ``env.name`` with ``env.delay`` (the T-maze corridor; null
    for other envs), which must give a vector ``observation`` and a one-hot action, with an
    ``InitTracker``, the previous action and reward (:class:`~latentrl.envs.previous.PreviousActionReward`),
    ``RewardSum`` and ``primer`` (the agent's zero state). Bad values are :class:`ConfigError` s naming the key."""
    from torchrl.envs import Compose, InitTracker, RewardSum, TransformedEnv

    from latentrl.envs.previous import PreviousActionReward

    options = {"delay": cfg.env.delay} if cfg.env.delay is not None else {}
    try:
        env = make_env_from_config(cfg, num_envs, **options)  # an unknown env.name is a ConfigError naming it
    except TypeError as err:
        raise ConfigError(f"config key 'env.delay': {cfg.env.name!r} takes no delay ({err}); set env.delay=null") from err
    obs = env.observation_spec.get("observation", None)
    if obs is None or obs.ndim != len(env.batch_size) + 1 or not hasattr(env.action_spec, "space") \
            or not hasattr(env.action_spec.space, "n"):
        env.close()
        raise ConfigError(f"config key 'env.name': {cfg.env.name!r} needs a vector 'observation' and a discrete "
                          f"(one-hot) action for {agent}")
    env = TransformedEnv(env, Compose(InitTracker(), PreviousActionReward(), RewardSum()))
    if primer is not None:
        env.append_transform(primer)
    return env


def observation_and_action_specs(env, observation_key, env_name: str):
    """``(observation shape, action spec)`` of a probe ``env``, which is closed; an ``observation_key``
    the env does not have is a :class:`ConfigError` naming ``env.observation_key`` and listing the keys it has."""
    try:
        if observation_key not in env.observation_spec.keys():
            raise ConfigError(
                f"config key 'env.observation_key' ({observation_key!r}) is not an observation of {env_name!r}: "
                f"{sorted(map(str, env.observation_spec.keys()))}")
        return env.observation_spec[observation_key].shape, env.action_spec
    finally:
        env.close()
