"""What ``make_env`` accepts: the prefixes, the ids of each family, and the error naming them.

Layers and import rules: ``CONTRIBUTING.md`` in the repository.
"""
from __future__ import annotations

import difflib

__all__ = ["UnknownEnvironmentError", "PREFIXES", "POMDP_IDS", "MINIGRID_MEMORY_IDS", "MINATAR_GAMES", "accepted_ids"]


class UnknownEnvironmentError(ValueError):
    """Raised by :func:`make_env` for a name no family accepts."""


#: prefix -> what it accepts (shown in errors and the README)
PREFIXES = {
    "gym": "any registered gymnasium id (the default when no prefix is given), e.g. CartPole-v1",
    "dmc": "dm_control suite '<domain>-<task>', e.g. dmc:cartpole-swingup",
    "atari": "an ALE game with IMPALA preprocessing, e.g. atari:Pong",
    "envpool": "the same Atari game and preprocessing stepped by envpool (batched C++), e.g. envpool:Pong",
    "minatar": "a MinAtar game (Young & Tian 2019), e.g. minatar:Breakout",
    "minigrid": "a minigrid id, e.g. minigrid:MiniGrid-MemoryS7-v0",
    "popgym": "a POPGym task (Morad et al. 2023), e.g. popgym:RepeatFirstEasy",
    "pomdp": "latentrl's partially observable tasks: masked-cartpole, tmaze",
}
POMDP_IDS = ("masked-cartpole", "tmaze")
MINIGRID_MEMORY_IDS = (
    "MiniGrid-MemoryS7-v0",
    "MiniGrid-MemoryS9-v0",
    "MiniGrid-MemoryS11-v0",
    "MiniGrid-MemoryS13-v0",
    "MiniGrid-MemoryS13Random-v0",
    "MiniGrid-MemoryS17Random-v0",
)


# --------------------------------------------------------------------------
# id listings (used by the error message)
# --------------------------------------------------------------------------
def _gym_registry() -> list[str]:
    import gymnasium

    return list(gymnasium.registry.keys())


def _gym_ids() -> list[str]:
    """Gymnasium ids that are not Atari, MinAtar, minigrid or POPGym (those have their own prefixes)."""
    import gymnasium

    def foreign(spec) -> bool:
        entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
        return entry.startswith(("ale_py", "minigrid", "minatar", "shimmy", "popgym"))

    return sorted(k for k, spec in gymnasium.registry.items() if not foreign(spec))


def _atari_games() -> list[str]:
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    return sorted(k[len("ALE/") : -len("-v5")] for k in _gym_registry() if k.startswith("ALE/") and k.endswith("-v5"))


def _envpool_games() -> list[str]:
    try:
        from .envpool_atari import envpool_games
    except ImportError as err:  # pragma: no cover - envpool is in the atari and test extras
        raise ImportError('make_env("envpool:..."): envpool is not installed; pip install -e ".[atari]"') from err
    return envpool_games()


MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")


def _minatar_ids() -> list[str]:
    return list(MINATAR_GAMES)


def _minigrid_ids() -> list[str]:
    import minigrid  # noqa: F401  (registers the ids)

    return sorted(k for k in _gym_registry() if k.startswith("MiniGrid-"))


def _popgym_ids() -> list[str]:
    from .popgym_envs import popgym_ids

    return popgym_ids()


def _dmc_ids() -> list[str]:
    from dm_control import suite

    return sorted(f"{d}-{t}" for d, t in suite.ALL_TASKS)


def accepted_ids(prefix: str) -> list[str]:
    """The ids ``make_env`` accepts after ``prefix:``."""
    listing = {
        "gym": _gym_ids,
        "dmc": _dmc_ids,
        "atari": _atari_games,
        "envpool": _envpool_games,
        "minatar": _minatar_ids,
        "minigrid": _minigrid_ids,
        "popgym": _popgym_ids,
        "pomdp": lambda: list(POMDP_IDS),
    }
    if prefix not in listing:
        raise UnknownEnvironmentError(_unknown_prefix_message(prefix))
    return listing[prefix]()


def _unknown_prefix_message(prefix: str) -> str:
    lines = [f"unknown environment prefix '{prefix}:'. Accepted prefixes:"]
    lines += [f"  {p}: {what}" for p, what in PREFIXES.items()]
    return "\n".join(lines)


def _match_game(prefix: str, game: str) -> str:
    """The accepted game name of ``prefix`` that ``game`` spells, in any case."""
    match = {g.lower(): g for g in accepted_ids(prefix)}.get(game.lower())
    if match is None:
        raise _unknown_id(prefix, game)
    return match


def _unknown_id(prefix: str, env_id: str) -> UnknownEnvironmentError:
    ids = accepted_ids(prefix)
    close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.5)
    lines = [f"unknown {prefix} environment '{env_id}'."]
    if close:
        lines.append("Did you mean: " + ", ".join(f"{prefix}:{c}" for c in close) + "?")
    lines.append(f"Accepted {prefix} ids: " + ", ".join(ids))
    lines.append("Accepted prefixes: " + ", ".join(f"{p}:" for p in PREFIXES) + " (gym: is the default)")
    return UnknownEnvironmentError("\n".join(lines))
