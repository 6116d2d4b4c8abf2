"""Value estimators: TorchRL ``ValueEstimatorBase`` subclasses over the pure functions."""
from latentrl.objectives.value.vtrace import VTrace

__all__ = ["VTrace"]
