"""How experience reaches the learner: TorchRL collectors and replay buffers, extended where the papers need it.

* :class:`SequenceReplayBuffer`, :class:`SequenceCutter`: R2D2's overlapping
  stored-state sequences with one priority each (computed by the loss,
  :func:`latentrl.objectives.functional.sequence_priority`).
* :func:`make_episode_replay`, :func:`sample_sequences`: Dreamer's episode
  replay over TorchRL's ``SliceSampler``; :class:`ReplayContext`: DreamerV3's
  stored posterior latents that start each replayed sequence.
* :class:`ActorLearner`: IMPALA's asynchronous actors with measured policy lag.
* :func:`collector_state`, :func:`replay_buffer_state` (and their loaders):
  exact-resume state of a collector and a replay buffer.
* :mod:`latentrl.collectors.pbt`: population based training's decision rule
  (:class:`~latentrl.collectors.pbt.PBTRule`).

Layers and import rules: ``CONTRIBUTING.md`` in the repository.
"""
from .actor_learner import BACKENDS, ActorLearner
from .episode_replay import make_episode_replay, sample_sequences
from .replay_context import ReplayContext
from .sequence_cutter import DEFAULT_STATE_KEYS, SequenceCutter
from .sequence_replay import SequenceReplayBuffer
from .state import (
    collector_state,
    load_collector_state,
    load_replay_buffer_state,
    replay_buffer_state,
)

__all__ = [
    "ActorLearner",
    "BACKENDS",
    "make_episode_replay",
    "sample_sequences",
    "ReplayContext",
    "SequenceCutter",
    "SequenceReplayBuffer",
    "DEFAULT_STATE_KEYS",
    "collector_state",
    "load_collector_state",
    "replay_buffer_state",
    "load_replay_buffer_state",
]
