"""The experiment harness shared by all examples (config checks, logging,
progress, evaluation, exact checkpoints). See :class:`Experiment`."""
from .checkpoint import (
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from .config import (
    DEVICE,
    NONNEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    UNIT_INTERVAL,
    ConfigError,
    check_config,
    check_overrides,
    flatten,
    make_env_from_config,
)
from .entry import run
from .evaluation import evaluate, first_episode_returns, full_reset
from .experiment import (
    HARNESS_CHOICES,
    HARNESS_CONSTRAINTS,
    RESUMABLE_KEYS,
    Experiment,
    NonFiniteLossError,
    default_run_dir,
)
from .plotting import plot_learning_curve

__all__ = [
    "DEVICE",
    "NONNEGATIVE_INT",
    "POSITIVE",
    "POSITIVE_INT",
    "UNIT_INTERVAL",
    "Experiment",
    "default_run_dir",
    "NonFiniteLossError",
    "ConfigError",
    "check_config",
    "check_overrides",
    "flatten",
    "make_env_from_config",
    "run",
    "evaluate",
    "first_episode_returns",
    "full_reset",
    "plot_learning_curve",
    "load_checkpoint",
    "CheckpointError",
    "checkpoint_files",
    "save_checkpoint",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "HARNESS_CHOICES",
    "HARNESS_CONSTRAINTS",
    "RESUMABLE_KEYS",
]
