"""DreamerV2's actor and critic as TorchRL modules over the latent state (Hafner et al. 2020, Table D.1).

* :func:`make_dreamer_actor`: a TorchRL ``ProbabilisticActor`` reading
  ``("deter", "stoch")``. Discrete actions: a one-hot categorical with
  straight-through ``rsample``
  (:class:`~latentrl.modules.distributions.StraightThroughOneHotCategorical`,
  parameters ``"logits"``); continuous: TorchRL's ``TruncatedNormal`` on
  ``[low, high]`` with mean ``tanh(mu)`` and std ``2 sigmoid(sigma / 2) + min_std``
  (the authors' ``trunc_normal``, min std 0.1), parameters ``"loc"``, ``"scale"``.
  Under TorchRL's ``RANDOM`` exploration type it samples with ``rsample``,
  under ``DETERMINISTIC`` it takes the mode (for the truncated normal the
  clipped mean, :class:`DreamerTruncatedNormal`, as the authors' evaluation does).
* :func:`make_dreamer_critic`: a TorchRL ``ValueOperator`` writing ``"state_value"``.

Both are MLPs over ``cat([h, s])`` (:func:`~latentrl.modules.world_model.make_latent_head`).
"""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.modules.distributions import TruncatedNormal

from .distributions import StraightThroughOneHotCategorical
from .rssm import RSSM
from .world_model import make_latent_head

__all__ = ["make_dreamer_actor", "make_dreamer_critic", "DreamerNormalParams", "DreamerTruncatedNormal"]


class DreamerTruncatedNormal(TruncatedNormal):
    """TorchRL's ``TruncatedNormal`` whose deterministic action is its mode, the clipped mean ``tanh(mu)``.

    TorchRL's ``deterministic_sample`` is the truncated distribution's mean,
    which bends actions near the bounds inwards; the authors' evaluation
    policy takes the mode.
    """

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.mode


class DreamerNormalParams(nn.Module):
    """``net(*inputs) = (mu, sigma) -> (tanh(mu), 2 sigmoid(sigma / 2) + min_std)``: the truncated normal's parameters."""

    def __init__(self, net: nn.Module, min_std: float = 0.1):
        super().__init__()
        if min_std < 0:
            raise ValueError(f"DreamerNormalParams: `min_std` must be >= 0, got {min_std}")
        self.net, self.min_std = net, float(min_std)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.net(*inputs).chunk(2, -1)
        return torch.tanh(mean), 2.0 * torch.sigmoid(std / 2.0) + self.min_std


def make_dreamer_actor(rssm: RSSM, action_dim: int, *, discrete: bool, units: int = 400, layers: int = 4,
                       min_std: float = 0.1, low: float = -1.0, high: float = 1.0,
                       action_key="action") -> ProbabilisticActor:
    """DreamerV2's actor over the RSSM's latent state (see the module docstring)."""
    action_dim = int(action_dim)
    if action_dim < 1:
        raise ValueError(f"make_dreamer_actor: `action_dim` must be >= 1, got {action_dim}")
    net = make_latent_head(rssm, action_dim * (1 if discrete else 2), units, layers)
    if discrete:
        params = TensorDictModule(net, in_keys=["deter", "stoch"], out_keys=["logits"])
        return ProbabilisticActor(params, in_keys=["logits"], out_keys=[action_key],
                                  distribution_class=StraightThroughOneHotCategorical)
    if not low < high:
        raise ValueError(f"make_dreamer_actor: need `low` < `high`, got {low} and {high}")
    params = TensorDictModule(DreamerNormalParams(net, min_std), in_keys=["deter", "stoch"],
                              out_keys=["loc", "scale"])
    return ProbabilisticActor(params, in_keys=["loc", "scale"], out_keys=[action_key],
                              distribution_class=DreamerTruncatedNormal,
                              distribution_kwargs={"low": float(low), "high": float(high)})


def make_dreamer_critic(rssm: RSSM, *, units: int = 400, layers: int = 4, out_key="state_value") -> ValueOperator:
    """DreamerV2's critic ``v(z)``: reads ``("deter", "stoch")``, writes ``out_key`` ``[*, 1]``."""
    return ValueOperator(make_latent_head(rssm, 1, units, layers), in_keys=["deter", "stoch"], out_keys=[out_key])
