"""DreamerV2's actor and critic, trained in imagination (Hafner et al. 2020, Section 3, Table D.1).

From every posterior state of a replayed batch (detached: the world model
is trained by its own loss) the world model imagines ``horizon = 15`` steps
under the actor. On the imagined trajectory ``z_0..z_H`` with rewards
``r_t = reward(z_t)`` and discounts ``γ_t`` (the discount head's mean, whose
targets include γ = 0.995, or a constant γ without a discount head):

* λ-returns ``V^λ_t`` (λ = 0.95) through the loss's value estimator
  (``make_value_estimator``; default
  :class:`~latentrl.objectives.value.DreamerLambdaEstimator`, the per-step
  discount version of TorchRL's ``TDLambdaEstimator``), bootstrapped from a
  **slow target critic**, copied from the critic every 100 updates
  (``target_update_interval``; call :meth:`DreamerActorCriticLoss.make_target_updater`);
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

Every part is a keyed module: the ``actor_network`` (a TorchRL
``ProbabilisticActor`` whose distribution parameters the rollout stores, so
``log π`` and ``H[π]`` are not recomputed), the ``value_network`` (reads
the latent state, writes ``value``), the ``imagination`` module
(:class:`~latentrl.modules.world_model.RSSMImagine`), the ``reward_model``
and the optional ``discount_model``. The imagined trajectory ``[N, H]``,
with ``lambda_target`` and the weights, is written into the input
TensorDict under ``imagination`` (TorchRL's layout: ``"next"`` holds
``z_{t+1}``, its bootstrap ``value``, ``r_t`` and ``γ_t``), where TorchRL's
``DreamerValueLoss`` or any other critic loss can read it.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule
from torchrl.objectives.utils import ValueEstimators
from torchrl.objectives.value import ValueEstimatorBase

from latentrl.checks import check_positive_int, check_range, check_tensors, require_keys

from .functional import dreamer_actor_loss, dreamer_critic_loss, imagination_weights
from .target_updates import HardUpdateEvery
from .value.lambda_return import DreamerLambdaEstimator

__all__ = ["DreamerActorCriticLoss"]


@contextmanager
def _frozen(*modules: nn.Module | None):
    """Parameters of ``modules`` get no gradient inside (activations still carry it)."""
    flags = [(p, p.requires_grad) for m in modules if m is not None for p in m.parameters()]
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
        actor_network: a ``ProbabilisticActor`` reading the latent state
            (e.g. :func:`~latentrl.modules.actor_critic.make_dreamer_actor`).
        value_network: latent state -> ``value`` ``[*, 1]``
            (:func:`~latentrl.modules.actor_critic.make_dreamer_critic`); a slow
            target copy is kept as ``target_value_network_params``.
        imagination: has ``rollout(start, policy, horizon) -> [N, H]``
            (:class:`~latentrl.modules.world_model.RSSMImagine`).
        reward_model: latent state -> ``predicted_reward``.
        discount_model: latent state -> ``discount_logit``, or ``None`` (constant γ).
        horizon: imagination horizon H (15).
        gamma: discount without a discount head, and of the start states
            (with one, its targets carry γ).
        lmbda: λ of the λ-return (0.95).
        discrete: the actions are discrete (sets the defaults of ρ and η).
        rho: REINFORCE share ρ; default 1 (discrete) or 0 (continuous).
        entropy_coef: η; default 1e-3 (discrete) or 1e-4 (continuous).
        target_update_interval: slow-critic copy interval in updates (100).

    Keys (``set_keys``): ``deter``, ``stoch`` (posterior states ``[*B, D]``,
    e.g. written by :class:`~latentrl.objectives.world_model.WorldModelLoss`),
    ``action``, ``predicted_reward``, ``discount_logit``, ``value``,
    ``reward`` and ``discount`` (the estimator's, under ``"next"``),
    ``lambda_target``, ``weight`` and ``imagination`` (where the trajectory
    is written). ``deter``/``stoch`` are also the keys the actor, critic,
    heads and imagination read, so rename them with the modules; ``value`` is
    the critic's output key. Output: ``loss_actor``, ``loss_critic`` and diagnostics.
    """

    @dataclass
    class _AcceptedKeys:
        deter: NestedKey = "deter"
        stoch: NestedKey = "stoch"
        action: NestedKey = "action"
        predicted_reward: NestedKey = "predicted_reward"
        discount_logit: NestedKey = "discount_logit"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        discount: NestedKey = "discount"
        lambda_target: NestedKey = "lambda_target"
        weight: NestedKey = "weight"
        imagination: NestedKey = "imagination"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda
    value_network: TensorDictModuleBase
    value_network_params: TensorDictBase
    target_value_network_params: TensorDictBase
    out_keys = ["loss_actor", "loss_critic", "entropy", "value", "lambda_return", "imagined_reward", "imagined_discount"]

    def __init__(
        self,
        actor_network: TensorDictModuleBase,
        value_network: TensorDictModuleBase,
        imagination: TensorDictModuleBase,
        reward_model: TensorDictModuleBase,
        discount_model: TensorDictModuleBase | None = None,
        *,
        horizon: int = 15,
        gamma: float = 0.995,
        lmbda: float = 0.95,
        discrete: bool = False,
        rho: float | None = None,
        entropy_coef: float | None = None,
        target_update_interval: int = 100,
    ):
        super().__init__()
        owner = "DreamerActorCriticLoss"
        for name, value in (("horizon", horizon), ("target_update_interval", target_update_interval)):
            check_positive_int(owner, name, value)
        check_range(owner, "gamma", gamma, 0.0, 1.0)
        check_range(owner, "lmbda", lmbda, 0.0, 1.0)
        check_range(owner, "rho", rho, 0.0, 1.0, optional=True)
        check_range(owner, "entropy_coef", entropy_coef, 0.0, optional=True)
        self.rho = float((1.0 if discrete else 0.0) if rho is None else rho)
        self.entropy_coef = float((1e-3 if discrete else 1e-4) if entropy_coef is None else entropy_coef)
        self.horizon, self.gamma, self.lmbda = int(horizon), float(gamma), float(lmbda)
        self.target_update_interval = int(target_update_interval)
        self.actor_network = actor_network
        self.imagination, self.reward_model, self.discount_model = imagination, reward_model, discount_model
        self.convert_to_functional(value_network, "value_network", create_target_params=True)
        self.make_value_estimator()  # built now, so a checkpoint's state dict always holds it

    @property
    def in_keys(self):
        return [self.tensor_keys.deter, self.tensor_keys.stoch]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if self._value_estimator is not None:
            self._value_estimator.set_keys(value=self.tensor_keys.value, reward=self.tensor_keys.reward,
                                           **({"discount": self.tensor_keys.discount}
                                              if isinstance(self._value_estimator, DreamerLambdaEstimator) else {}))

    def make_value_estimator(self, value_type=None, **hyperparams):
        """``TDLambda`` (default): :class:`~latentrl.objectives.value.DreamerLambdaEstimator` with the loss's λ.

        A ``ValueEstimatorBase`` instance or subclass is used as given (e.g.
        TorchRL's ``TDLambdaEstimator``, which discounts by a scalar γ).
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, ValueEstimatorBase) or (
            isinstance(value_type, type) and issubclass(value_type, ValueEstimatorBase)
        ):
            super().make_value_estimator(value_type, **hyperparams)
        elif value_type == ValueEstimators.TDLambda:
            hyperparams.setdefault("lmbda", self.lmbda)
            self._value_estimator = DreamerLambdaEstimator(**hyperparams)
            self.value_type = value_type
        else:
            raise NotImplementedError(f"DreamerActorCriticLoss: value estimator {value_type} is not supported (TDLambda)")
        self._forward_value_estimator_keys()
        return self

    def make_target_updater(self) -> HardUpdateEvery:
        """The slow critic's updater: call ``.step()`` after every update (copies every ``target_update_interval``)."""
        return HardUpdateEvery(self, value_network_update_interval=self.target_update_interval)

    def _value(self, params: TensorDictBase, td: TensorDictBase) -> torch.Tensor:
        with params.to_module(self.value_network):
            return self.value_network(td.select(*self.value_network.in_keys)).get(self.tensor_keys.value)

    def imagine(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Imagined trajectories ``[N, H]`` from the flattened, detached start states, with rewards and discounts."""
        keys = self.tensor_keys
        require_keys("DreamerActorCriticLoss", tensordict, {"deter": keys.deter, "stoch": keys.stoch})
        check_tensors("DreamerActorCriticLoss", {"deter": tensordict.get(keys.deter), "stoch": tensordict.get(keys.stoch)},
                      floating=("deter", "stoch"), finite=("deter", "stoch"))
        start = tensordict.select(keys.deter, keys.stoch).reshape(-1).detach()
        with _frozen(self.imagination, self.reward_model, self.discount_model), set_exploration_type(ExplorationType.RANDOM):
            traj = self.imagination.rollout(start, self.actor_network, self.horizon)
            reward = self.reward_model(traj.select(*self.reward_model.in_keys)).get(keys.predicted_reward)
            if self.discount_model is None:
                discount = torch.full_like(reward, self.gamma)
            else:
                logit = self.discount_model(traj.select(*self.discount_model.in_keys)).get(keys.discount_logit)
                discount = torch.sigmoid(logit)
            # the start states are posterior states of replayed observations, never terminal in
            # TorchRL's layout (a terminal observation only appears under "next"): their true
            # discount is gamma, used in place of the prediction as in the authors' code
            discount = torch.cat([torch.full_like(discount[:, :1], self.gamma), discount[:, 1:]], 1)
        traj.set(("next", keys.reward), reward)
        traj.set(("next", keys.discount), discount)
        never = torch.zeros_like(reward, dtype=torch.bool)  # continuation lives in the discount
        traj.set(("next", "done"), never)
        traj.set(("next", "terminated"), never)
        return traj

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        traj = self.imagine(tensordict)  # [N, H]: z_t, a_t, and z_{t+1}, r_t, γ_t under "next"
        reward, discount = traj.get(("next", keys.reward)), traj.get(("next", keys.discount))
        # the slow critic's parameters are buffers: its values pass gradient to the features only
        next_value = self._value(self.target_value_network_params.detach(), traj.get("next"))
        traj.set(("next", keys.value), next_value)
        target = self.value_estimator.value_estimate(traj, next_value=next_value, time_dim=traj.ndim - 1)
        weight = imagination_weights(discount, time_dim=-2)  # [N, H, 1]

        dist = self.actor_network.build_dist_from_params(traj)  # the rollout's parameters: π(·|sg(z_t))
        log_prob = dist.log_prob(traj.get(keys.action).detach()).unsqueeze(-1)
        entropy = dist.entropy().unsqueeze(-1)
        value = self._value(self.value_network_params, traj.select(keys.deter, keys.stoch).detach())
        loss_actor = dreamer_actor_loss(log_prob, entropy, target, value.detach(), weight, self.rho, self.entropy_coef)
        loss_critic = dreamer_critic_loss(value, target.detach(), weight)
        traj.set(keys.lambda_target, target.detach())
        traj.set(keys.weight, weight)
        traj.set(keys.value, value.detach())
        tensordict.set(keys.imagination, traj.reshape(*tensordict.batch_size, self.horizon))
        with torch.no_grad():
            out = {
                "entropy": entropy.mean(),
                "value": value.mean(),
                "lambda_return": target.mean(),
                "imagined_reward": reward.mean(),
                "imagined_discount": discount.mean(),
            }
        return TensorDict({"loss_actor": loss_actor, "loss_critic": loss_critic, **out}, batch_size=[])
