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

import math
import warnings

import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SACLoss

from latentrl.checks import check_range, require_keys, require_module_inputs

__all__ = ["GumbelSACLoss", "categorical_entropy"]


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H = -sum_k p_k log p_k`` over the last dim, ``p = softmax(logits)`` (0 log 0 = 0)."""
    log_p = torch.log_softmax(logits, -1)
    # a class with logit -inf has p = 0 and log p = -inf: clamp so that 0 * log p = 0, gradients finite
    return -(log_p.exp() * log_p.clamp_min(torch.finfo(log_p.dtype).min)).sum(-1)


class GumbelSACLoss(SACLoss):
    """TorchRL's ``SACLoss`` with the exact categorical entropy in the actor and alpha losses.

    Takes the same arguments as ``SACLoss``, with one default changed:
    ``target_entropy="auto"`` is ``target_entropy_fraction · log K`` for ``K``
    actions (``target_entropy_fraction=0.2``, the value this package's
    CartPole results use), read from ``action_spec`` or the actor's spec.
    TorchRL's ``"auto"``, ``-K``, is below the least entropy a categorical
    policy has (0): the temperature then only decays and the entropy bonus
    vanishes; a negative ``target_entropy`` therefore warns. The actor's distribution must be
    a one-hot categorical exposing ``logits`` with a reparameterized
    ``rsample`` (``latentrl.modules.distributions.GumbelSoftmax``,
    ``StraightThroughOneHotCategorical``, TorchRL's ``OneHotCategorical``
    with a ``grad_method``); the critic reads the action as a vector. The output keys are SACLoss's; ``entropy``
    is the exact mean policy entropy.
    """

    def __init__(self, *args, target_entropy: str | float = "auto", target_entropy_fraction: float = 0.2, **kwargs):
        check_range("GumbelSACLoss", "target_entropy_fraction", target_entropy_fraction, 0.0, 1.0)
        if target_entropy != "auto":
            if isinstance(target_entropy, str) or not math.isfinite(float(target_entropy)):
                raise ValueError(f"GumbelSACLoss: `target_entropy` must be 'auto' or a finite number, got {target_entropy!r}")
            if float(target_entropy) < 0:
                warnings.warn(
                    f"GumbelSACLoss: target_entropy={target_entropy} is below 0, the least entropy a categorical "
                    "policy has: alpha will only decay and the entropy bonus vanish; 'auto' gives "
                    "target_entropy_fraction * log(num_actions)", UserWarning, stacklevel=2)
        self.target_entropy_fraction = float(target_entropy_fraction)
        actor = args[0] if args else kwargs.get("actor_network")
        if getattr(actor, "return_log_prob", True) is False:
            raise ValueError(
                "GumbelSACLoss: the `actor_network` must write log pi(a|s) (build the ProbabilisticActor with "
                "return_log_prob=True): SACLoss's soft value target reads it for the next action"
            )
        super().__init__(*args, target_entropy=target_entropy, **kwargs)

    def set_keys(self, **kwargs) -> None:
        """SACLoss's ``set_keys``; a new ``action`` without ``log_prob`` moves the log-prob key along (TorchRL's naming)."""
        if kwargs.get("action") is not None and "log_prob" not in kwargs:
            action = kwargs["action"]
            kwargs["log_prob"] = f"{action}_log_prob" if isinstance(action, str) else (*action[:-1], f"{action[-1]}_log_prob")
        super().set_keys(**kwargs)

    @property
    def target_entropy(self):
        """The alpha loss's target: ``target_entropy_fraction · log K`` for ``"auto"`` (see the class docstring)."""
        if self._buffers.get("_target_entropy", None) is None and isinstance(self._target_entropy, str):
            spec = self._action_spec if self._action_spec is not None else getattr(self.actor_network, "spec", None)
            if spec is not None and self.tensor_keys.action in getattr(spec, "keys", lambda *a: ())(True):
                spec = spec[self.tensor_keys.action]
            shape = getattr(spec, "shape", None)
            if shape is None or len(shape) == 0:
                raise RuntimeError(
                    "GumbelSACLoss: target_entropy='auto' needs the number of actions: pass `action_spec` (the "
                    "one-hot action's spec) or a number as `target_entropy`"
                )
            device = next(self.parameters()).device
            delattr(self, "_target_entropy")
            value = self.target_entropy_fraction * math.log(shape[-1])
            self.register_buffer("_target_entropy", torch.tensor(value, device=device))
        return super().target_entropy

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``SACLoss.forward``, after checking that every key it reads is in the batch (named if not)."""
        keys = self.tensor_keys
        require_keys("GumbelSACLoss", tensordict, {
            "action": keys.action, "reward": ("next", keys.reward), "done": ("next", keys.done),
            "terminated": ("next", keys.terminated),
        })
        require_module_inputs("GumbelSACLoss", tensordict, {"actor_network": self.actor_network,
                                                            "qvalue_network": self.qvalue_network})
        require_module_inputs("GumbelSACLoss", tensordict, {"actor_network": self.actor_network}, prefix=("next",))
        return super().forward(tensordict)

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
