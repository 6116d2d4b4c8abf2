"""Dreamer's λ-return with a per-step predicted discount, as a TorchRL value estimator.

DreamerV2 (Hafner et al. 2020, eq. 4) bootstraps imagined trajectories with

    V^λ_t = r_t + γ_t ((1 − λ) v(z_{t+1}) + λ V^λ_{t+1}),   V^λ_{H-1} = r_{H-1} + γ_{H-1} v(z_H)

where ``γ_t`` is the discount head's prediction for every step (its targets
carry γ = 0.995). TorchRL 0.14.1's ``TDLambdaEstimator`` is the same recursion
with one scalar ``gamma`` (episode ends only through done flags), so it
matches only when the discount is constant;
:class:`DreamerLambdaEstimator` reads the per-step discount from
``("next", discount)`` (``tests/objectives/test_lambda_estimator.py`` shows
both cases). It is a ``TDLambdaEstimator`` in every other respect (keys,
``value_network``, ``set_keys``), computed by
:func:`~latentrl.objectives.functional.lambda_return`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives.value import TDLambdaEstimator

from latentrl.objectives.functional import lambda_return

__all__ = ["DreamerLambdaEstimator"]


class DreamerLambdaEstimator(TDLambdaEstimator):
    """``TDLambdaEstimator`` whose discount is the tensor under ``("next", discount)`` (see the module docstring).

    Reads ``("next", reward)`` and ``("next", discount)`` ``[*B, T, 1]`` and the
    bootstrap values ``v(z_{t+1})`` (``next_value``, or the value network on
    ``"next"``); no done flags: continuation lives in the discount. ``gamma``
    is unused (the discount carries it).
    """

    @dataclass
    class _AcceptedKeys(TDLambdaEstimator._AcceptedKeys):
        # TorchRL's set_keys looks keys up in this class's own __dict__: restate the inherited ones
        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        sample_log_prob: NestedKey = "action_log_prob"
        discount: NestedKey = "discount"

    default_keys = _AcceptedKeys

    def __init__(self, *, lmbda: float = 0.95, value_network=None, **kwargs):
        if not 0.0 <= float(lmbda) <= 1.0:
            raise ValueError(f"DreamerLambdaEstimator: `lmbda` must be in [0, 1], got {lmbda}")
        kwargs.setdefault("gamma", 1.0)
        super().__init__(lmbda=lmbda, value_network=value_network, **kwargs)

    def value_estimate(self, tensordict: TensorDictBase, target_params: TensorDictBase | None = None,
                       next_value: torch.Tensor | None = None, time_dim: int | None = None, **kwargs) -> torch.Tensor:
        reward = tensordict.get(("next", self.tensor_keys.reward))
        discount = tensordict.get(("next", self.tensor_keys.discount), None)
        if discount is None:
            raise KeyError(f"DreamerLambdaEstimator: no per-step discount at {('next', self.tensor_keys.discount)!r}")
        if next_value is None:
            next_value = self._next_value(tensordict, target_params, kwargs=kwargs)
        time_dim = self._get_time_dim(time_dim, tensordict)
        return lambda_return(reward, next_value, discount.to(reward.dtype), float(self.lmbda), time_dim=time_dim)
