"""R2D2's rescaled n-step double-Q targets as a TorchRL value estimator.

Kapturowski et al. 2019 ("Recurrent Experience Replay in Distributed
Reinforcement Learning", Sec. 2) train on
``y_t = h(sum_{k<n} gamma^k r_{t+k} + gamma^n h^-1(Qbar_{t+n}))``, computed by
:func:`~latentrl.objectives.value.rescaling.rescaled_n_step_targets`.
TorchRL 0.14.1 has no n-step estimator over a sequence (its n-step return is a
replay-buffer transform, ``MultiStepTransform``, applied before storage, with
no value rescaling), so this one is ours: a ``ValueEstimatorBase`` with
TorchRL's keys, swappable in :class:`~latentrl.objectives.r2d2.R2D2Loss` by
``make_value_estimator`` like any TorchRL estimator.

The double-Q bootstrap ``Qbar_s = Q(s, argmax_a Q(s, a; theta); theta^-)``
needs both the online and the target network, so it is not a value network's
output: the caller (the loss) writes it under the ``value`` key, one per
state of the sequence, together with ``has_state`` (where a state exists:
valid steps and an episode's stored final next-state). The estimator writes
``value_target`` and ``target_mask`` (False where the target is undefined:
the end of the sequence, or a missing bootstrap state) and, as TorchRL's
estimators do, ``advantage = value_target - value``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives.value import ValueEstimatorBase

from latentrl.checks import check_positive_int, check_range, require_keys
from latentrl.objectives.value.rescaling import rescaled_n_step_targets

__all__ = ["RescaledNStepDoubleQ"]


class RescaledNStepDoubleQ(ValueEstimatorBase):
    """R2D2's n-step double-Q target with value rescaling (see the module docstring).

    Keyword Args:
        gamma: discount. Paper: 0.997.
        n_steps: the n of the n-step return. Paper: 5.
        rescale_eps: ``eps`` of the value rescaling ``h``. Paper: 1e-3.
        value_network: must be ``None``: the bootstrap values are given under
            the ``value`` key (double Q needs two networks; see above).
        time_dim: the time dimension of the tensordict (default: the last).

    Keys (``set_keys``), tensors ``[*B, T, 1]`` (or ``[*B, T]``):
    ``value`` (``"state_value"``, ``Qbar_t`` in h-space), ``has_state``,
    ``("next", reward | done | terminated)``; written: ``value_target``,
    ``target_mask``, ``advantage``.
    """

    @dataclass
    class _AcceptedKeys:
        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        sample_log_prob: NestedKey = "action_log_prob"
        has_state: NestedKey = "has_state"
        target_mask: NestedKey = "target_mask"

    default_keys = _AcceptedKeys

    def __init__(self, *, gamma: float = 0.997, n_steps: int = 5, rescale_eps: float = 1e-3,
                 value_network=None, time_dim: int | None = None, **kwargs):
        owner = "RescaledNStepDoubleQ"
        if value_network is not None:
            raise ValueError(
                f"{owner}: `value_network` must be None: the double-Q bootstrap values "
                "Q(s, argmax Q(s, .; online); target) are written under the `value` key by the caller (R2D2Loss)"
            )
        check_range(owner, "gamma", gamma, 0.0, 1.0)
        check_positive_int(owner, "n_steps", n_steps)
        check_range(owner, "rescale_eps", rescale_eps, 0.0, lo_open=True)
        super().__init__(value_network=None, **kwargs)
        self.register_buffer("gamma", torch.tensor(float(gamma), dtype=torch.float64))  # float(gamma) exact
        self.n_steps, self.rescale_eps, self.time_dim = int(n_steps), float(rescale_eps), time_dim

    def _time_dim(self, tensordict: TensorDictBase) -> int:
        return tensordict.batch_dims - 1 if self.time_dim is None else self.time_dim % tensordict.batch_dims

    def _inputs(self, tensordict: TensorDictBase):
        keys = self.tensor_keys
        require_keys("RescaledNStepDoubleQ", tensordict, {
            "value": keys.value, "has_state": keys.has_state, "reward": ("next", keys.reward),
            "done": ("next", keys.done), "terminated": ("next", keys.terminated),
        })
        shape = tensordict.shape

        def get(key):
            x = tensordict.get(key)
            return x.reshape(shape) if x.numel() == shape.numel() else x

        value = get(keys.value)
        return (get(("next", keys.reward)).to(value.dtype), get(("next", keys.done)).bool(),
                get(("next", keys.terminated)).bool(), value, get(keys.has_state).bool())

    def value_estimate(self, tensordict: TensorDictBase, target_params=None, next_value=None,
                       time_dim: int | None = None, **kwargs) -> torch.Tensor:
        """The targets ``y_t`` (0 where undefined), shaped as the tensordict's batch."""
        return self._targets(tensordict, time_dim)[0]

    def _targets(self, tensordict: TensorDictBase, time_dim: int | None = None):
        reward, done, terminated, value, has_state = self._inputs(tensordict)
        time_dim = self._time_dim(tensordict) if time_dim is None else time_dim
        return rescaled_n_step_targets(reward, done, terminated, value, has_state, gamma=float(self.gamma),
                                       n=self.n_steps, eps=self.rescale_eps, time_dim=time_dim)

    def forward(self, tensordict: TensorDictBase, *, params=None, target_params=None) -> TensorDictBase:
        if tensordict.batch_dims < 1:
            raise ValueError(f"RescaledNStepDoubleQ: expected a batch [*B, T], got {list(tensordict.batch_size)}")
        keys = self.tensor_keys
        with torch.no_grad():
            target, mask = self._targets(tensordict)
            value = tensordict.get(keys.value)
            like = value.shape if value.numel() == target.numel() else target.shape
            target, mask = target.reshape(like), mask.reshape(like)
            tensordict.set(keys.value_target, target)
            tensordict.set(keys.target_mask, mask)
            tensordict.set(keys.advantage, torch.where(mask, target - value.reshape(like), torch.zeros_like(target)))
        return tensordict
