"""The MERLIN losses (Wayne et al. 2018, "Unsupervised Predictive Memory in a Goal-Directed Agent", Methods).

On ``[B, T]`` windows collected with :class:`~latentrl.modules.merlin.MerlinPolicy`
(time last), the core is unrolled from the state stored at the window's first
step (:meth:`~latentrl.modules.merlin.MerlinCore.unroll`, resetting at
``is_init``), and two losses on disjoint parameters are returned:

- **MBP** (the memory-based predictor, trained by prediction, not by the
  policy gradient): ``KL(q(z_t) || p(z_t))`` summed over ``z``, plus the
  weighted reconstruction of the step's inputs from ``z_t``: the observation
  (half squared error, a unit-variance Gaussian), the previous action
  (cross-entropy) and reward (half squared error), and of the return (half
  squared error of the return decoder ``R(z_t, sg(log pi(a_t)))`` against the
  detached lambda-return);
- **policy**: advantage actor-critic with GAE-lambda over the window,
  bootstrapped with the value of the step after the window, and an entropy
  bonus.

The advantage and the lambda-return come from the loss's value estimator:
TorchRL's ``GAE`` by default (``make_value_estimator``), handed the values
the unroll computed. A truncation inside a window is treated as a
termination (the value after it would need a step on the pre-reset state).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import distributions as D
from torchrl.objectives import LossModule

from latentrl.checks import check_range, require_keys
from latentrl.modules.merlin import MerlinPolicy
from latentrl.objectives._window_a2c import WindowActorCritic

__all__ = ["MerlinLoss"]


class MerlinLoss(WindowActorCritic, LossModule):
    """MBP and policy losses of MERLIN on ``[B, T]`` windows.

    Args:
        policy: the :class:`~latentrl.modules.merlin.MerlinPolicy` the
            collector ran (its core is unrolled; its state keys are read).
        gamma, lmbda: GAE's discount and lambda.
        entropy_coef, critic_coef: policy-side weights.
        obs_coef, action_coef, reward_coef, return_coef, kl_coef: MBP weights.

    Keys (``set_keys``): ``observation``, ``prev_action``, ``prev_reward``,
    ``is_init``, ``action``, ``value`` (``"state_value"``, the estimator's
    input), ``reward``, ``done``, ``terminated``.

    Returns ``loss_objective``, ``loss_critic``, ``loss_entropy`` (policy),
    ``loss_kl``, ``loss_obs``, ``loss_prev_action``, ``loss_prev_reward``,
    ``loss_return`` (MBP): sum them. Diagnostics: ``entropy``, ``kl``,
    ``advantage``, ``value_target``.
    """

    @dataclass
    class _AcceptedKeys:
        observation: NestedKey = "observation"
        prev_action: NestedKey = "prev_action"
        prev_reward: NestedKey = "prev_reward"
        is_init: NestedKey = "is_init"
        action: NestedKey = "action"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys

    def __init__(self, policy: MerlinPolicy, *, gamma: float = 0.96, lmbda: float = 0.9, entropy_coef: float = 0.01,
                 critic_coef: float = 0.5, obs_coef: float = 1.0, action_coef: float = 1.0, reward_coef: float = 1.0,
                 return_coef: float = 1.0, kl_coef: float = 1.0):
        if not isinstance(policy, MerlinPolicy):
            raise TypeError(f"MerlinLoss: `policy` must be a latentrl.modules.merlin.MerlinPolicy, got {type(policy).__name__}")
        check_range("MerlinLoss", "gamma", gamma, 0.0, 1.0)
        check_range("MerlinLoss", "lmbda", lmbda, 0.0, 1.0)
        coefs = dict(entropy_coef=entropy_coef, critic_coef=critic_coef, obs_coef=obs_coef, action_coef=action_coef,
                     reward_coef=reward_coef, return_coef=return_coef, kl_coef=kl_coef)
        for name, value in coefs.items():
            check_range("MerlinLoss", name, value, 0.0)
        super().__init__()
        self.policy, self.gamma, self.lmbda = policy, gamma, lmbda
        self.coefs = coefs
        self.make_value_estimator()

    @property
    def in_keys(self):
        k = self.tensor_keys
        return [k.observation, k.prev_action, k.prev_reward, k.is_init, k.action, ("next", k.reward), ("next", k.done),
                ("next", k.terminated), ("next", k.observation), *self.policy.state_keys()]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.batch_dims != 2:
            raise ValueError(f"MerlinLoss: expected [B, T] windows (time last), got batch {list(tensordict.batch_size)}")
        k = self.tensor_keys
        require_keys("MerlinLoss", tensordict, {
            "observation": k.observation, "prev_action": k.prev_action, "prev_reward": k.prev_reward,
            "is_init": k.is_init, "action": k.action, "reward": ("next", k.reward), "done": ("next", k.done),
            "terminated": ("next", k.terminated),
        })
        core = self.policy.core
        state0 = {f: v[:, 0] for f, v in self.policy.read_state(tensordict, "MerlinLoss").items()}
        obs, action = tensordict.get(k.observation), tensordict.get(k.action).to(torch.get_default_dtype())
        reward = tensordict.get(("next", k.reward))
        out, last = core.unroll(obs, tensordict.get(k.prev_action), tensordict.get(k.prev_reward),
                                tensordict.get(k.is_init), state0)
        with torch.no_grad():  # the value after the window
            boot, _ = core.step(tensordict.get(("next", k.observation))[:, -1], action[:, -1], reward[:, -1], last)
        value = out["state_value"]
        advantage, target = self.advantage_and_target(tensordict, value, boot["state_value"])
        ac = self.actor_critic_terms(out["logits"], action, value, advantage, target)
        log_pi = ac.pop("log_pi")
        prior = D.Normal(out["prior_mean"], out["prior_std"])
        post = D.Normal(out["post_mean"], out["post_std"])
        kl = D.kl_divergence(post, prior).sum(-1)
        prev_action = tensordict.get(k.prev_action).to(obs.dtype)
        return_pred = core.return_prediction(out["z"], log_pi)
        c = self.coefs
        return TensorDict({
            **ac,
            "loss_kl": c["kl_coef"] * kl.mean(),
            "loss_obs": c["obs_coef"] * 0.5 * (out["obs_pred"] - obs).pow(2).sum(-1).mean(),
            "loss_prev_action": c["action_coef"] * -(prev_action * F.log_softmax(out["prev_action_logits"], -1)).sum(-1).mean(),
            "loss_prev_reward": c["reward_coef"] * 0.5 * (out["prev_reward_pred"] - tensordict.get(k.prev_reward)).pow(2).mean(),
            "loss_return": c["return_coef"] * 0.5 * (return_pred - target).pow(2).mean(),
            "kl": kl.detach().mean(),
            "advantage": advantage.mean(),
            "value_target": target.mean(),
        }, batch_size=[])
