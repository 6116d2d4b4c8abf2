"""The RSSM of DreamerV3's first release (Hafner et al. 2023, "Mastering Diverse Domains through World
Models", arXiv v1; danijar/dreamerv3 at 423291a, ``nets.py`` ``RSSM``), the ``v1_2023`` preset's core.

A dense GRU with LayerNorm, where today's code has a block GRU with RMSNorm
(:class:`~latentrl.modules.rssm_v3.RSSMV3`). With ``N(x) = SiLU(LayerNorm(x))``
(LayerNorm eps 1e-3, learned scale and bias; a layer followed by a norm has no bias):

.. code-block:: text

    a   = a / sg(max(1, |a|))
    x   = N(W_in [s, a])                                   img_in, ``hidden`` units
    r, c, u = split(LayerNorm(W_gru [h, x]))               3 x ``deter``
    h'  = σ(u − 1) tanh(σ(r) c) + (1 − σ(u − 1)) h
    prior logits      W_img N(W_out h')                    img_out, img_stats
    posterior logits  W_obs N(W_post [h', e])              obs_out, obs_stats

32 categoricals of 32 classes with 1% unimix. The initial state is learned:
``h_0 = tanh(w)`` (``w`` starts at zero) and ``s_0`` the prior's mode at
``h_0``; an ``is_init`` step restarts from it (and a zero action). Hidden
weights are the code's ``winit: normal, fan: avg`` (truncated normal, std
``sqrt(1 / fan_avg) / 0.8796``), the stats layers its default ``uniform``
(limit ``sqrt(3 / fan_avg)``), biases zero.
"""
from __future__ import annotations

import math

import torch
from tensordict import TensorDict
from torch import nn

from latentrl.checks import check_positive_int, check_range

from .rssm import RSSM

__all__ = ["RSSMV3v1", "variance_scaling_", "v1_linear"]


def variance_scaling_(weight: torch.Tensor, dist: str = "normal", scale: float = 1.0) -> torch.Tensor:
    """The 2023 code's ``Initializer(dist, scale, fan='avg')`` on a torch ``[out, in]`` weight (or a conv's
    ``[out, in, k, k]``: fans times the receptive field; the average is the same for a transposed conv)."""
    receptive = math.prod(weight.shape[2:])
    fan = (weight.shape[0] + weight.shape[1]) * receptive / 2.0
    with torch.no_grad():
        if scale == 0.0:
            return weight.zero_()
        if dist == "normal":
            nn.init.trunc_normal_(weight, std=1.0, a=-2.0, b=2.0)
            return weight.mul_(math.sqrt(scale / fan) / 0.87962566103423978)
        if dist == "uniform":
            limit = math.sqrt(3.0 * scale / fan)
            return nn.init.uniform_(weight, -limit, limit)
    raise ValueError(f"variance_scaling_: `dist` must be 'normal' or 'uniform', got {dist!r}")


def v1_linear(in_features: int, out_features: int, *, norm: bool, dist: str = "normal",
              scale: float = 1.0) -> nn.Module:
    """The 2023 code's ``Linear``: with ``norm``, ``Linear`` (no bias) -> ``LayerNorm(eps 1e-3)`` -> ``SiLU``;
    without, a plain ``Linear`` with a zero bias (an output layer)."""
    layer = nn.Linear(in_features, out_features, bias=not norm)
    variance_scaling_(layer.weight, dist, scale)
    if not norm:
        nn.init.zeros_(layer.bias)
        return layer
    return nn.Sequential(layer, nn.LayerNorm(out_features, eps=1e-3), nn.SiLU())


class RSSMV3v1(RSSM):
    """DreamerV3's 2023 RSSM (see the module docstring); the interface of :class:`RSSM`.

    Args:
        action_dim, embed_dim: sizes of the flat action and the observation embedding.
        deter_dim: ``h`` size (the code's ``deter``: 4096; 512 in its ``dmc_proprio``/``small`` presets).
        hidden_dim: ``units`` of ``img_in``, ``img_out``, ``obs_out`` (1024; 512 there).
        num_vars, num_classes: 32 categoricals of 32 classes.
        unimix: 0.01.
    """

    def __init__(self, action_dim: int, embed_dim: int, deter_dim: int = 4096, hidden_dim: int = 1024,
                 num_vars: int = 32, num_classes: int = 32, *, unimix: float = 0.01):
        nn.Module.__init__(self)
        owner = "RSSMV3v1"
        for name, value in (("action_dim", action_dim), ("embed_dim", embed_dim), ("deter_dim", deter_dim),
                            ("hidden_dim", hidden_dim), ("num_vars", num_vars), ("num_classes", num_classes)):
            check_positive_int(owner, name, value)
        check_range(owner, "unimix", unimix, 0.0, 1.0, hi_open=True)
        self.latent = "categorical"
        self.action_dim, self.embed_dim = int(action_dim), int(embed_dim)
        self.deter_dim, self.hidden_dim = int(deter_dim), int(hidden_dim)
        self.num_vars, self.num_classes, self.stoch_dim = int(num_vars), int(num_classes), int(num_vars)
        self.stoch_flat = self.num_vars * self.num_classes
        self.min_std, self.unimix = 0.0, float(unimix)
        H, D, S = self.hidden_dim, self.deter_dim, self.stoch_flat
        self.img_in = v1_linear(S + self.action_dim, H, norm=True)
        gru = nn.Linear(D + H, 3 * D, bias=False)
        variance_scaling_(gru.weight)
        self.gru = nn.Sequential(gru, nn.LayerNorm(3 * D, eps=1e-3))
        self.prior_net = nn.Sequential(v1_linear(D, H, norm=True), v1_linear(H, S, norm=False, dist="uniform"))
        self.post_net = nn.Sequential(v1_linear(D + self.embed_dim, H, norm=True),
                                      v1_linear(H, S, norm=False, dist="uniform"))
        self.initial = nn.Parameter(torch.zeros(D))

    def initial_state(self, batch_shape, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned ``(h_0, s_0) = (tanh(w), mode p(s | h_0))``, broadcast to ``batch_shape``."""
        if isinstance(batch_shape, int):
            batch_shape = (batch_shape,)
        h0 = torch.tanh(self.initial)
        s0 = self.sample_state(self._stats(self.prior_net(h0)), sample=False)
        h0, s0 = (x.to(device=device, dtype=dtype).expand(*batch_shape, x.shape[-1]) for x in (h0, s0))
        return h0, s0

    def _deter_step(self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        a = a / a.abs().clamp_min(1.0).detach()
        x = self.img_in(torch.cat([s, a], -1))
        reset, cand, update = self.gru(torch.cat([h, x], -1)).chunk(3, -1)
        update = torch.sigmoid(update - 1.0)
        return update * torch.tanh(torch.sigmoid(reset) * cand) + (1.0 - update) * h

    def observe(self, embed, action, is_init=None, state=None, prev_action=None, sample=True) -> TensorDict:
        """Posterior rollout over ``[B, T]``, as :meth:`RSSM.observe`; a reset restarts from the learned state."""
        h, s, prev_a, keeps = self._observe_start(embed, action, is_init, state, prev_action)
        h0, s0 = self.initial_state((embed.shape[0],), device=embed.device, dtype=embed.dtype)
        deters, stochs, logits = [], [], []
        for t in range(embed.shape[1]):
            if keeps is not None:
                k = keeps[t]
                h, s = k * h + (1.0 - k) * h0, k * s + (1.0 - k) * s0
            h = self._deter_step(h, s, prev_a[:, t])
            post = self._stats(self.post_net(torch.cat([h, embed[:, t]], -1)))
            s = self.sample_state(post, sample=sample)
            deters.append(h)
            stochs.append(s)
            logits.append(post["logits"])
        return self._categorical_rollout(deters, stochs, logits)
