"""The FTW agent's loss (Jaderberg et al. 2019, "Human-level performance in 3D multiplayer games
with population-based reinforcement learning", Supplementary: "Agent architecture" and "Losses").

On ``[B, T]`` windows (time last) collected with the keyed step of
:func:`~latentrl.modules.ftw.make_ftw_agent`, the step is re-run with
gradients from the state stored at the window's first step
(:func:`~latentrl.modules.keyed_unroll.unroll_keyed`), and the loss is

- advantage actor-critic with GAE-lambda over the window, bootstrapped with
  the value of one more step after it, and an entropy bonus (the paper's
  agent is trained with V-trace by IMPALA; on the synchronous on-policy
  windows here V-trace's corrections are 1 and it is this);
- ``kl_coef * KL(q || p)`` and ``prior_coef * KL(p || N(0, prior_sigma^2))``
  at the slow core's ticks (:func:`~latentrl.modules.two_timescale.two_timescale_kl`).

The advantage and the return come from the loss's value estimator: TorchRL's
``GAE`` by default (``make_value_estimator``). A truncation inside a window
is treated as a termination.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from latentrl.checks import check_range, require_keys
from latentrl.modules.keyed_unroll import step_after, unroll_keyed
from latentrl.modules.two_timescale import two_timescale_kl
from latentrl.objectives._window_a2c import WindowActorCritic

__all__ = ["FTWLoss"]


class FTWLoss(WindowActorCritic, LossModule):
    """A2C with GAE plus the two-timescale KL terms, on ``[B, T]`` windows.

    Args:
        step: the keyed recurrent step the collector ran (e.g. the first output of
            :func:`~latentrl.modules.ftw.make_ftw_agent`); it writes ``logits``,
            ``state_value`` and the core's outputs.
        state_keys: the step's state inputs (the core module's ``state_keys()``).
        gamma, lmbda: GAE's discount and lambda.
        entropy_coef, critic_coef: actor-critic weights.
        kl_coef, prior_coef, prior_sigma: the KL weights and the reference Gaussian's std.

    Keys (``set_keys``): ``action``, ``value`` (``"state_value"``), ``logits``, ``is_init``,
    ``z_post_mean``/``z_post_std``/``z_prior_mean``/``z_prior_std``/``tick`` (the core's outputs),
    ``reward``, ``done``, ``terminated``.

    Returns ``loss_objective``, ``loss_critic``, ``loss_entropy``, ``loss_kl``, ``loss_prior``: sum them.
    Diagnostics: ``entropy``, ``kl``, ``kl_prior``, ``advantage``, ``value_target``.
    """

    @dataclass
    class _AcceptedKeys:
        action: NestedKey = "action"
        value: NestedKey = "state_value"
        logits: NestedKey = "logits"
        is_init: NestedKey = "is_init"
        z_post_mean: NestedKey = "post_mean"
        z_post_std: NestedKey = "post_std"
        z_prior_mean: NestedKey = "prior_mean"
        z_prior_std: NestedKey = "prior_std"
        tick: NestedKey = "tick"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys

    def __init__(self, step: TensorDictModuleBase, state_keys: Sequence[NestedKey], *, gamma: float = 0.99,
                 lmbda: float = 0.95, entropy_coef: float = 0.01, critic_coef: float = 0.5, kl_coef: float = 1.0,
                 prior_coef: float = 1.0, prior_sigma: float = 1.0):
        if not isinstance(step, TensorDictModuleBase):
            raise TypeError(f"FTWLoss: `step` must be a keyed module (TensorDictModuleBase), got {type(step).__name__}")
        check_range("FTWLoss", "gamma", gamma, 0.0, 1.0)
        check_range("FTWLoss", "lmbda", lmbda, 0.0, 1.0)
        check_range("FTWLoss", "prior_sigma", prior_sigma, 0.0, None, lo_open=True)
        coefs = dict(entropy_coef=entropy_coef, critic_coef=critic_coef, kl_coef=kl_coef, prior_coef=prior_coef)
        for name, value in coefs.items():
            check_range("FTWLoss", name, value, 0.0)
        super().__init__()
        self.step, self.state_keys = step, list(state_keys)
        self.gamma, self.lmbda, self.prior_sigma, self.coefs = gamma, lmbda, prior_sigma, coefs
        self.make_value_estimator()

    @property
    def in_keys(self):
        k = self.tensor_keys
        return [*self.step.in_keys, k.action, ("next", k.reward), ("next", k.done), ("next", k.terminated)]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.batch_dims != 2:
            raise ValueError(f"FTWLoss: expected [B, T] windows (time last), got batch {list(tensordict.batch_size)}")
        k = self.tensor_keys
        require_keys("FTWLoss", tensordict, {"action": k.action, "reward": ("next", k.reward),
                                             "done": ("next", k.done), "is_init": k.is_init})
        out = unroll_keyed(self.step, tensordict, self.state_keys, owner="FTWLoss")
        with torch.no_grad():
            boot = step_after(self.step, tensordict, out, self.state_keys, k.is_init).get(k.value)
        value = out.get(k.value)
        advantage, target = self.advantage_and_target(tensordict, value, boot)
        ac = self.actor_critic_terms(out.get(k.logits), tensordict.get(k.action), value, advantage, target)
        ac.pop("log_pi")
        kl, kl_prior = two_timescale_kl(out.get(k.z_post_mean), out.get(k.z_post_std), out.get(k.z_prior_mean),
                                        out.get(k.z_prior_std), out.get(k.tick), self.prior_sigma)
        c = self.coefs
        return TensorDict({
            **ac,
            "loss_kl": c["kl_coef"] * kl,
            "loss_prior": c["prior_coef"] * kl_prior,
            "kl": kl.detach(),
            "kl_prior": kl_prior.detach(),
            "advantage": advantage.mean(),
            "value_target": target.mean(),
        }, batch_size=[])
