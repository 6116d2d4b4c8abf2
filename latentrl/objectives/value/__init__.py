"""Value estimators: TorchRL ``ValueEstimatorBase`` subclasses over the pure functions."""
from latentrl.objectives.value.lambda_return import DreamerLambdaEstimator
from latentrl.objectives.value.vtrace import VTrace

__all__ = ["VTrace", "DreamerLambdaEstimator"]
from latentrl.objectives.value.rescaling import (  # noqa: E402
    rescaled_n_step_targets,
    value_rescale,
    value_rescale_inverse,
)

__all__ += ["value_rescale", "value_rescale_inverse", "rescaled_n_step_targets"]
