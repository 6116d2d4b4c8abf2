"""Soft actor-critic for discrete actions with a Gumbel-softmax actor.

The actor samples a (straight-through) Gumbel-softmax action ``a`` (Jang et
al. 2016) and the critic takes ``a`` as a vector, so the actor objective of
SAC (Haarnoja et al. 2018, eq. 7 with the reparameterization of eq. 11),

    J_pi = E_s[ alpha * E_{a~pi}[log pi(a|s)] - E_a[Q(s, a)] ]
         = E_s[ -alpha * H(pi(.|s)) - E_a[Q(s, a)] ],

is differentiated through the relaxed sample in its ``Q`` term, exactly as for
continuous actions.

Where TorchRL's ``SACLoss`` departs: it estimates the entropy term by the
single-sample ``log pi(a|s)`` and differentiates it through ``a``. For a
continuous Gaussian actor that pathwise derivative is the entropy gradient.
For a one-hot action it is zero in expectation: torch (and TorchRL) score a
one-hot value by its argmax index, so no gradient flows through ``a`` and
only the score function ``d log pi(a)/d theta`` (mean zero) is left
(``UPSTREAM.md`` #7). The entropy bonus then cannot raise a collapsed
policy's entropy; the temperature ``alpha`` grows without bound and the
soft Q-targets with it
(measured on CartPole: alpha 6e5, loss_qvalue 4e5, return 500 -> 9; README).
:class:`GumbelSACLoss` uses the categorical policy's exact entropy
``H = -sum_k p_k log p_k`` in the actor and temperature losses, as the
discrete SAC of Christodoulou (2019) does, while the ``Q`` term keeps the
Gumbel-softmax pathwise gradient. The soft value target keeps TorchRL's
sampled ``Q(s', a') - alpha log pi(a'|s')`` (no gradient flows there, and
its expectation is the soft value).
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SACLoss

__all__ = ["GumbelSACLoss", "categorical_entropy"]


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H = -sum_k p_k log p_k`` over the last dim, ``p = softmax(logits)`` (0 log 0 = 0)."""
    log_p = torch.log_softmax(logits, -1)
    # a class with logit -inf has p = 0 and log p = -inf: clamp so that 0 * log p = 0, gradients finite
    return -(log_p.exp() * log_p.clamp_min(torch.finfo(log_p.dtype).min)).sum(-1)


class GumbelSACLoss(SACLoss):
    """TorchRL's ``SACLoss`` with the exact categorical entropy in the actor and alpha losses.

    Takes the same arguments as ``SACLoss``. The actor's distribution must be
    a one-hot categorical exposing ``logits`` with a reparameterized
    ``rsample`` (``latentrl.modules.distributions.GumbelSoftmax``,
    ``StraightThroughOneHotCategorical``, TorchRL's ``OneHotCategorical``
    with a ``grad_method``); the critic reads the action as a vector. The output keys are SACLoss's; ``entropy``
    is the exact mean policy entropy.
    """

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weights = self._maybe_get_priority_weight(tensordict)
        with set_exploration_type(ExplorationType.RANDOM), self.actor_network_params.to_module(
            self.actor_network, preserve_module_state=False
        ):
            dist = self.actor_network.get_dist(tensordict)
            logits = getattr(dist, "logits", None)
            if logits is None or logits.shape[-1:] != dist.sample().shape[-1:]:
                raise TypeError(
                    "GumbelSACLoss: the actor's distribution must be a one-hot categorical with `logits` and a "
                    "reparameterized `rsample` (GumbelSoftmax, StraightThroughOneHotCategorical, or TorchRL's "
                    f"OneHotCategorical with a grad_method), got {type(dist).__name__}"
                )
            action = dist.rsample()
            entropy = categorical_entropy(logits)

        td_q = tensordict.select(*self.qvalue_network.in_keys, strict=False)
        td_q.set(self.tensor_keys.action, action)
        td_q = self._vmap_qnetworkN0(td_q, self._cached_detached_qvalue_params)
        min_q = td_q.get(self.tensor_keys.state_action_value).min(0)[0].squeeze(-1)
        if entropy.shape != min_q.shape:
            raise RuntimeError(f"GumbelSACLoss: entropy shape {tuple(entropy.shape)} != Q shape {tuple(min_q.shape)}")
        loss_actor = -self._alpha * entropy - min_q
        loss_actor = self._reduce_loss(loss_actor, tensordict=tensordict, weights=weights)
        # SACLoss feeds "log_prob" to the alpha loss and reports entropy = -log_prob: use -H, exact
        return loss_actor, {"log_prob": -entropy.detach()}
