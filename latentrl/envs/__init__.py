"""Environment factories and the partially observable tasks (see :func:`make_env`)."""
from .factories import (
    MINIGRID_MEMORY_IDS,
    POMDP_IDS,
    PREFIXES,
    UnknownEnvironmentError,
    accepted_ids,
    make_env,
    make_scored_env,
)
from .pomdp import CARTPOLE_POSITION_INDICES, SelectObservationIndices, TMazeEnv
from .transforms import MaxPoolFrameSkip

__all__ = [
    "make_env",
    "make_scored_env",
    "accepted_ids",
    "UnknownEnvironmentError",
    "PREFIXES",
    "POMDP_IDS",
    "MINIGRID_MEMORY_IDS",
    "SelectObservationIndices",
    "TMazeEnv",
    "CARTPOLE_POSITION_INDICES",
    "MaxPoolFrameSkip",
]
