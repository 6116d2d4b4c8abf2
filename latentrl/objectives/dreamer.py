"""DreamerV2's actor and critic, trained in imagination (Hafner et al. 2020, Section 3, Table D.1).

From every posterior state of a replayed batch (detached: the world model
is trained by its own loss) the world model imagines ``horizon = 15`` steps
under the actor. On the imagined trajectory ``z_0..z_H`` with rewards
``r_t = reward(z_t)`` and discounts ``γ_t`` (the discount head's mean, whose
targets include γ = 0.995, or a constant γ without a discount head):

* λ-returns ``V^λ_t`` (λ = 0.95, :func:`~latentrl.objectives.functional.lambda_return`)
  bootstrap from a **slow target critic**, copied from the critic every 100
  updates (``target_update_interval``; call :meth:`DreamerActorCriticLoss.make_target_updater`);
* the critic regresses ``v(sg(z_t))`` on ``sg(V^λ_t)``
  (:func:`~latentrl.objectives.functional.dreamer_critic_loss`);
* the actor minimizes ``−ρ log π(a_t|z_t) sg(V^λ_t − v(z_t)) − (1−ρ) V^λ_t − η H[π]``
  (:func:`~latentrl.objectives.functional.dreamer_actor_loss`), ρ = 1, η = 1e-3
  for discrete and ρ = 0, η = 1e-4 for continuous actions;
* both weighted by the cumulative predicted discount
  (:func:`~latentrl.objectives.functional.imagination_weights`).

As in the paper and the authors' code, ``r_t`` and ``γ_t`` are read from
``z_t`` (the reward received on arriving in ``z_t``), the actor sees
``sg(z_t)`` and its actions are straight-through (discrete) or
reparameterized (continuous) samples, so the dynamics term backpropagates
through the imagined transitions into the actor. The world model's
parameters receive no gradient from this loss (they are frozen while it runs).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import distributions as D
from torch import nn
from torchrl.modules.distributions import TruncatedNormal
from torchrl.objectives import LossModule

from latentrl.modules.distributions import StraightThroughOneHotCategorical
from latentrl.modules.world_model import WorldModel, make_mlp

from .functional import dreamer_actor_loss, dreamer_critic_loss, imagination_weights, lambda_return
from .r2d2 import HardUpdateEvery

__all__ = ["DreamerActor", "DreamerActorCriticLoss", "make_critic"]


class DreamerActor(nn.Module):
    """DreamerV2's actor: an MLP from the model feature to an action distribution.

    * discrete (``num_actions``): a one-hot categorical with straight-through
      ``rsample`` (:class:`~latentrl.modules.distributions.StraightThroughOneHotCategorical`);
    * continuous (``action_dim``): TorchRL's ``TruncatedNormal`` on
      ``[low, high]`` with mean ``tanh(μ)`` and std ``2 sigmoid(σ / 2) + min_std``
      (the authors' ``trunc_normal``, min_std 0.1), reparameterized.

    ``dist(feature)`` returns a distribution whose ``log_prob`` and
    ``entropy`` are already summed over the action (shape ``[*]``);
    ``forward(feature)`` returns a sample (``explore=True``) or the mode.
    """

    def __init__(self, feature_dim: int, action_dim: int, *, discrete: bool, units: int = 400, layers: int = 4,
                 min_std: float = 0.1, low: float = -1.0, high: float = 1.0):
        super().__init__()
        self.discrete, self.action_dim = bool(discrete), int(action_dim)
        self.min_std, self.low, self.high = float(min_std), float(low), float(high)
        self.net = make_mlp(feature_dim, self.action_dim * (1 if discrete else 2), units, layers)

    def dist(self, feature: torch.Tensor) -> D.Distribution:
        out = self.net(feature)
        if self.discrete:
            return D.Independent(StraightThroughOneHotCategorical(logits=out), 0)
        mean, std = out.chunk(2, -1)
        std = 2.0 * torch.sigmoid(std / 2.0) + self.min_std
        return TruncatedNormal(torch.tanh(mean), std, low=self.low, high=self.high)

    def forward(self, feature: torch.Tensor, explore: bool = True) -> torch.Tensor:
        d = self.dist(feature)
        if explore:
            return d.rsample()
        if self.discrete:
            probs = d.base_dist.probs
            return nn.functional.one_hot(probs.argmax(-1), self.action_dim).to(probs.dtype)
        return d.mode  # the clipped tanh mean


def make_critic(feature_dim: int, units: int = 400, layers: int = 4) -> nn.Module:
    """DreamerV2's critic: an MLP from the model feature to ``v(z)`` ``[*, 1]``."""
    return make_mlp(feature_dim, 1, units, layers)


@contextmanager
def _frozen(module: nn.Module):
    """Parameters of ``module`` get no gradient inside (activations still carry it)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class DreamerActorCriticLoss(LossModule):
    """DreamerV2's actor and critic losses in imagination (see the module docstring).

    Args:
        actor: a :class:`DreamerActor`.
        critic: ``feature -> value [*, 1]``; a slow target copy is kept as
            ``target_critic_params``.
        world_model: the :class:`~latentrl.modules.world_model.WorldModel` to imagine with.
        horizon: imagination horizon H (15).
        gamma: discount without a discount head (with one, its targets carry γ).
        lmbda: λ of the λ-return (0.95).
        rho: REINFORCE share ρ; default 1 (discrete) or 0 (continuous).
        entropy_coef: η; default 1e-3 (discrete) or 1e-4 (continuous).
        target_update_interval: slow-critic copy interval in updates (100).

    Input keys: ``deter``, ``stoch`` (posterior states ``[*B, D]``, e.g. written
    by :class:`~latentrl.objectives.world_model.WorldModelLoss`). Output:
    ``loss_actor``, ``loss_critic`` and diagnostics.
    """

    @dataclass
    class _AcceptedKeys:
        deter: NestedKey = "deter"
        stoch: NestedKey = "stoch"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    critic: nn.Module
    critic_params: TensorDictBase
    target_critic_params: TensorDictBase
    out_keys = ["loss_actor", "loss_critic"]

    def __init__(
        self,
        actor: DreamerActor,
        critic: nn.Module,
        world_model: WorldModel,
        *,
        horizon: int = 15,
        gamma: float = 0.995,
        lmbda: float = 0.95,
        rho: float | None = None,
        entropy_coef: float | None = None,
        target_update_interval: int = 100,
    ):
        super().__init__()
        if int(horizon) < 1:
            raise ValueError(f"DreamerActorCriticLoss: `horizon` must be >= 1, got {horizon}")
        for name, value in (("gamma", gamma), ("lmbda", lmbda)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"DreamerActorCriticLoss: `{name}` must be in [0, 1], got {value}")
        discrete = bool(getattr(actor, "discrete", False))
        self.rho = float((1.0 if discrete else 0.0) if rho is None else rho)
        self.entropy_coef = float((1e-3 if discrete else 1e-4) if entropy_coef is None else entropy_coef)
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"DreamerActorCriticLoss: `rho` must be in [0, 1], got {rho}")
        self.horizon, self.gamma, self.lmbda = int(horizon), float(gamma), float(lmbda)
        self.target_update_interval = int(target_update_interval)
        self.actor = actor
        self.world_model = world_model
        self.convert_to_functional(critic, "critic", create_target_params=True)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def make_target_updater(self) -> HardUpdateEvery:
        """The slow critic's updater: call ``.step()`` after every update (copies every ``target_update_interval``)."""
        return HardUpdateEvery(self, value_network_update_interval=self.target_update_interval)

    def _value(self, params, feature: torch.Tensor) -> torch.Tensor:
        with params.to_module(self.critic):
            return self.critic(feature)

    def imagine(self, deter: torch.Tensor, stoch: torch.Tensor) -> TensorDict:
        """Imagined trajectories ``[N, H+1]`` from the flattened, detached start states, with rewards and discounts."""
        wm = self.world_model
        start_h = deter.reshape(-1, deter.shape[-1]).detach()
        start_s = stoch.reshape(-1, stoch.shape[-1]).detach()
        with _frozen(wm):
            traj = wm.rssm.imagine(lambda f: self.actor(f.detach(), explore=True), start_h, start_s, self.horizon)
            feature = traj.get("feature")
            traj.set("reward", wm.predict_reward(feature))
            discount = wm.predict_discount(feature, self.gamma)
            # the start states are posterior states of replayed observations, never terminal in
            # TorchRL's layout (a terminal observation only appears under "next"): their true
            # discount is gamma, used in place of the prediction as in the authors' code
            discount = torch.cat([torch.full_like(discount[:, :1], self.gamma), discount[:, 1:]], 1)
            traj.set("discount", discount)
        return traj

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        traj = self.imagine(tensordict.get(keys.deter), tensordict.get(keys.stoch))
        feature, action = traj.get("feature"), traj.get("action")  # [N, H+1, F], [N, H+1, A]
        reward, discount = traj.get("reward"), traj.get("discount")  # [N, H+1, 1]
        # the slow critic's parameters are buffers: its values pass gradient to the features only
        target_value = self._value(self.target_critic_params.detach(), feature)
        # V^λ_t for t = 0..H-1 with r_t, γ_t read from z_t and v(z_{t+1}) bootstrapping
        target = lambda_return(reward[:, :-1], target_value[:, 1:], discount[:, :-1], self.lmbda, time_dim=-2)
        weight = imagination_weights(discount, time_dim=-2)[:, :-1]  # [N, H, 1]

        dist = self.actor.dist(feature[:, :-1].detach())
        log_prob = dist.log_prob(action[:, :-1].detach()).unsqueeze(-1)
        entropy = dist.entropy().unsqueeze(-1)
        with torch.no_grad():
            baseline = self._value(self.critic_params, feature[:, :-1])
        loss_actor = dreamer_actor_loss(log_prob, entropy, target, baseline, weight, self.rho, self.entropy_coef)
        value = self._value(self.critic_params, feature[:, :-1].detach())
        loss_critic = dreamer_critic_loss(value, target.detach(), weight)
        with torch.no_grad():
            out = {
                "entropy": entropy.mean(),
                "value": value.mean(),
                "lambda_return": target.mean(),
                "imagined_reward": reward.mean(),
                "imagined_discount": discount.mean(),
            }
        return TensorDict({"loss_actor": loss_actor, "loss_critic": loss_critic, **out}, batch_size=[])
