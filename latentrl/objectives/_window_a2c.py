"""The advantage actor-critic part shared by the memory agents' losses (MERLIN, FTW) on ``[B, T]`` windows.

A loss that unrolls its recurrent step over the window computes the values
with gradients and one bootstrap value after the window; this mixin turns
them into the advantage and the return with the loss's value estimator
(TorchRL's ``GAE`` by default, ``make_value_estimator`` to swap it), treating
a truncation inside the window as a termination (the value after it would
need a step on the pre-reset state), and into the three actor-critic terms.
The loss defines ``lmbda``, ``coefs["entropy_coef"]``, ``coefs["critic_coef"]``
and the ``value``, ``reward``, ``done`` and ``terminated`` keys.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torch import distributions as D
from torchrl.objectives.utils import ValueEstimators

from latentrl.objectives._estimator_keys import forward_keys, torchrl_estimator


class WindowActorCritic:
    default_value_estimator = ValueEstimators.GAE
    _ESTIMATORS = (ValueEstimators.GAE, ValueEstimators.TDLambda, ValueEstimators.TD1, ValueEstimators.TD0)

    def make_value_estimator(self, value_type=None, **hyperparams):
        """TorchRL's ``GAE`` (default; ``lmbda`` from the loss), ``TDLambda``, ``TD1`` or ``TD0``, ``value_network=None``."""
        value_type = ValueEstimators.GAE if value_type is None else value_type
        if isinstance(value_type, ValueEstimators):
            if value_type in (ValueEstimators.GAE, ValueEstimators.TDLambda):
                hyperparams = {"lmbda": self.lmbda, **hyperparams}
            value_type = torchrl_estimator(self, value_type, self._ESTIMATORS, "GAE (default)", **hyperparams)
            hyperparams = {}
        super().make_value_estimator(value_type, **hyperparams)
        self._forward_value_estimator_keys()
        return self

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        forward_keys(self, ("value", "reward", "done", "terminated"))

    def advantage_and_target(self, tensordict: TensorDictBase, value: torch.Tensor, boot: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``value [B, T, 1]`` (with gradients) and ``boot [B, 1]`` (the value after the window) -> the
        estimator's ``(advantage, value_target)``, both without gradient."""
        k = self.tensor_keys
        done = tensordict.get(("next", k.done))
        data = TensorDict({
            k.value: value.detach(),
            ("next", k.value): torch.cat([value[:, 1:].detach(), boot.detach().unsqueeze(1)], 1),
            ("next", k.reward): tensordict.get(("next", k.reward)),
            ("next", k.done): done,
            ("next", k.terminated): done,  # truncations as terminations (see the module docstring)
        }, batch_size=tensordict.batch_size)
        with torch.no_grad():
            self.value_estimator(data)
        est = self.value_estimator.tensor_keys
        return data.get(est.advantage), data.get(est.value_target)

    def actor_critic_terms(self, logits: torch.Tensor, action: torch.Tensor, value: torch.Tensor,
                           advantage: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_objective``, ``loss_critic``, ``loss_entropy`` and the ``entropy`` and ``log_pi`` they used
        (``action`` one-hot)."""
        dist = D.Categorical(logits=logits)
        log_pi = dist.log_prob(action.argmax(-1)).unsqueeze(-1)
        entropy = dist.entropy().unsqueeze(-1)
        c = self.coefs
        return {
            "loss_objective": -(advantage * log_pi).mean(),
            "loss_critic": c["critic_coef"] * 0.5 * (target - value).pow(2).mean(),
            "loss_entropy": -c["entropy_coef"] * entropy.mean(),
            "entropy": entropy.detach().mean(),
            "log_pi": log_pi,
        }
