"""Losses (``torchrl.objectives.LossModule`` subclasses) and the pure functions they are built on.

Every loss reads and writes TensorDict keys (``set_keys``; the defaults are
listed by ``loss.tensor_keys``), exposes ``in_keys``/``out_keys``, and returns
a TensorDict whose ``loss_*`` entries the user sums:

* :class:`IMPALALoss` (V-trace actor-critic, optional PopArt);
* :class:`R2D2Loss` (burn-in, rescaled n-step double Q, sequence priorities)
  and :class:`HardUpdateEvery` (its target updates);
* :class:`WorldModelLoss` (PlaNet/DreamerV2 world model) and
  :class:`DreamerActorCriticLoss` (DreamerV2's actor and critic in imagination) and
  :class:`DreamerV3ActorCriticLoss` (DreamerV3's);
* :class:`GumbelSACLoss` (SAC with a Gumbel-softmax actor);
* :class:`MerlinLoss` (MERLIN's memory-based predictor and its policy);
* :class:`FTWLoss` (the FTW agent: A2C with the two-timescale KL terms);
* :func:`reinforce_surrogate` with :class:`MovingAverageBaseline` (REINFORCE
  with a baseline for discrete latents).

The math is in :mod:`latentrl.objectives.functional` and
:mod:`latentrl.objectives.value` (the value estimators).

Layers and import rules: ``CONTRIBUTING.md`` in the repository.
"""
from . import functional, value
from .baselines import MovingAverageBaseline
from .dreamer import DreamerActorCriticLoss
from .dreamer_v3 import DreamerV3ActorCriticLoss, replay_lambda_return
from .ftw import FTWLoss
from .functional import (
    VTraceOutput,
    kl_balanced,
    kl_dyn_rep,
    kl_free_nats,
    lambda_return,
    reinforce_surrogate,
    sequence_priority,
    vtrace,
)
from .gumbel_sac import GumbelSACLoss, categorical_entropy
from .impala import CORRECTIONS, IMPALALoss
from .merlin import MerlinLoss
from .r2d2 import R2D2Loss, delta_q
from .target_updates import HardUpdateEvery
from .two_hot import TWO_HOT_SPACES, two_hot_bins, two_hot_loss, two_hot_value
from .value import (
    DreamerLambdaEstimator,
    RescaledNStepDoubleQ,
    VTrace,
    rescaled_n_step_targets,
    value_rescale,
    value_rescale_inverse,
)
from .world_model import HEAD_LOSSES, KL_PRESETS, WorldModelLoss

__all__ = [
    "IMPALALoss",
    "CORRECTIONS",
    "R2D2Loss",
    "HardUpdateEvery",
    "delta_q",
    "sequence_priority",
    "WorldModelLoss",
    "KL_PRESETS",
    "HEAD_LOSSES",
    "DreamerActorCriticLoss",
    "DreamerV3ActorCriticLoss",
    "replay_lambda_return",
    "TWO_HOT_SPACES",
    "two_hot_bins",
    "two_hot_loss",
    "two_hot_value",
    "GumbelSACLoss",
    "MerlinLoss",
    "FTWLoss",
    "categorical_entropy",
    "MovingAverageBaseline",
    "reinforce_surrogate",
    "vtrace",
    "VTraceOutput",
    "lambda_return",
    "kl_free_nats",
    "kl_balanced",
    "kl_dyn_rep",
    "VTrace",
    "DreamerLambdaEstimator",
    "RescaledNStepDoubleQ",
    "value_rescale",
    "value_rescale_inverse",
    "rescaled_n_step_targets",
    "functional",
    "value",
]
