"""What IMPALALoss and R2D2Loss share around their value estimator: TorchRL's estimators and key forwarding."""
from __future__ import annotations

from torchrl.objectives import LossModule
from torchrl.objectives.utils import ValueEstimators
from torchrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator

__all__ = ["forward_keys", "torchrl_estimator"]

_TORCHRL = {ValueEstimators.TD0: TD0Estimator, ValueEstimators.TD1: TD1Estimator,
            ValueEstimators.TDLambda: TDLambdaEstimator, ValueEstimators.GAE: GAE}


def torchrl_estimator(loss: LossModule, value_type: ValueEstimators, accepted: tuple[ValueEstimators, ...],
                      ours: str, **hyperparams):
    """TorchRL's estimator for ``value_type`` with ``value_network=None`` and ``gamma`` defaulting to ``loss.gamma``.

    The loss evaluates its critic itself and hands the estimator the values
    under its value keys. ``accepted`` are the members the loss supports;
    ``ours`` names the default in the error for any other member.
    """
    if value_type not in accepted:
        raise NotImplementedError(
            f"{type(loss).__name__}: no value estimator for {value_type}; accepted: {ours}, "
            f"{', '.join(v.name for v in accepted)}, or a ValueEstimatorBase instance/subclass"
        )
    return _TORCHRL[value_type](value_network=None, **{"gamma": loss.gamma, **hyperparams})


def forward_keys(loss: LossModule, names: tuple[str, ...]) -> None:
    """``estimator.set_keys(name=loss.tensor_keys.name)`` for each of ``names`` the estimator accepts.

    TorchRL's losses call ``_forward_value_estimator_keys`` from ``set_keys``
    and after ``make_value_estimator``; an estimator of another family (e.g.
    TorchRL's TD0 behind R2D2Loss) ignores the keys it has no field for.
    """
    estimator = getattr(loss, "_value_estimator", None)
    if estimator is None:
        return
    accepted = type(estimator.tensor_keys).__dataclass_fields__
    estimator.set_keys(**{name: getattr(loss.tensor_keys, name) for name in names if name in accepted})
