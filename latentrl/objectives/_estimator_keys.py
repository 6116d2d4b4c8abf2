"""Handing a loss's keys on to its value estimator (shared by IMPALALoss and R2D2Loss)."""
from __future__ import annotations

from torchrl.objectives import LossModule

__all__ = ["forward_keys"]


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
