"""Environment factories and the partially observable tasks (see :func:`make_env`)."""
from .factories import (
    MINIGRID_MEMORY_IDS,
    POMDP_IDS,
    PREFIXES,
    UnknownEnvironmentError,
    accepted_ids,
    make_env,
    make_recurrent_env,
    make_scored_env,
)
from .multitask import TaskRewardScale, make_multitask_env
from .pomdp import CARTPOLE_POSITION_INDICES, SelectObservationIndices, TMazeEnv
from .previous import PreviousActionReward
from .snapshot import SnapshotUnsupported, env_state, load_env_state
from .transforms import MaxPoolFrameSkip, PerEnvConstant

__all__ = [
    "make_env",
    "make_scored_env",
    "make_multitask_env",
    "make_recurrent_env",
    "TaskRewardScale",
    "accepted_ids",
    "UnknownEnvironmentError",
    "PREFIXES",
    "POMDP_IDS",
    "MINIGRID_MEMORY_IDS",
    "SelectObservationIndices",
    "TMazeEnv",
    "CARTPOLE_POSITION_INDICES",
    "MaxPoolFrameSkip",
    "PerEnvConstant",
    "PreviousActionReward",
    "env_state",
    "load_env_state",
    "SnapshotUnsupported",
]
