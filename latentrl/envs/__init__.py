"""Environment factories, the partially observable tasks (see :func:`make_env`) and Atari score metrics.

Layers and import rules: ``CONTRIBUTING.md`` in the repository.
"""
from .envpool_atari import EnvPoolAtari, envpool_games
from .factories import (
    MINATAR_GAMES,
    MINIGRID_MEMORY_IDS,
    POMDP_IDS,
    PREFIXES,
    UnknownEnvironmentError,
    accepted_ids,
    make_env,
    make_recurrent_env,
    make_scored_env,
)
from .metrics import (
    ATARI_57,
    ATARI_BASELINES,
    DREAMERV2_GAMES,
    capped_human_normalized_mean,
    clipped_record_mean,
    gamer_normalized_mean,
    gamer_normalized_median,
    normalized_score,
    record_normalized_mean,
)
from .multitask import TaskRewardScale, make_multitask_env
from .pomdp import CARTPOLE_POSITION_INDICES, SelectObservationIndices, TMazeEnv
from .popgym_envs import make_popgym_gymnasium, popgym_ids
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
    "MINATAR_GAMES",
    "SelectObservationIndices",
    "TMazeEnv",
    "EnvPoolAtari",
    "envpool_games",
    "popgym_ids",
    "make_popgym_gymnasium",
    "CARTPOLE_POSITION_INDICES",
    "MaxPoolFrameSkip",
    "PerEnvConstant",
    "PreviousActionReward",
    "env_state",
    "load_env_state",
    "SnapshotUnsupported",
    "ATARI_BASELINES",
    "ATARI_57",
    "DREAMERV2_GAMES",
    "normalized_score",
    "gamer_normalized_median",
    "gamer_normalized_mean",
    "record_normalized_mean",
    "clipped_record_mean",
    "capped_human_normalized_mean",
]
