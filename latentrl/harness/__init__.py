"""The experiment harness shared by all examples (config checks, logging,
progress, evaluation, exact checkpoints). See :class:`Experiment`.

Layers and import rules: ``CONTRIBUTING.md`` in the repository.
"""
from .checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
    prune_checkpoints,
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
    make_memory_env,
    observation_and_action_specs,
    unflatten,
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
    "unflatten",
    "make_env_from_config",
    "make_memory_env",
    "observation_and_action_specs",
    "run",
    "evaluate",
    "first_episode_returns",
    "full_reset",
    "plot_learning_curve",
    "load_checkpoint",
    "CheckpointError",
    "checkpoint_files",
    "prune_checkpoints",
    "FORMAT",
    "VERSION",
    "save_checkpoint",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "HARNESS_CHOICES",
    "HARNESS_CONSTRAINTS",
    "RESUMABLE_KEYS",
]
