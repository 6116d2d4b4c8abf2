"""Value estimators (TorchRL ``ValueEstimatorBase`` subclasses over the pure functions) and R2D2's value rescaling."""
from .lambda_return import DreamerLambdaEstimator
from .n_step_double_q import RescaledNStepDoubleQ
from .rescaling import rescaled_n_step_targets, value_rescale, value_rescale_inverse
from .vtrace import VTrace

__all__ = ["VTrace", "DreamerLambdaEstimator", "RescaledNStepDoubleQ", "value_rescale", "value_rescale_inverse", "rescaled_n_step_targets"]
