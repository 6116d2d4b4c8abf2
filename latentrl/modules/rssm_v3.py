"""DreamerV3's recurrent state-space model: a block GRU core with RMSNorm and SiLU (Hafner et al. 2025,
"Mastering Diverse Domains through World Models"; the authors' ``dreamerv3/rssm.py``).

The same interface as :class:`~latentrl.modules.rssm.RSSM` (categorical
latents with unimix, flat ``s``, ``observe``/``img_step``/``filter_step``), so
:class:`~latentrl.modules.world_model.RSSMObserve`,
:class:`~latentrl.modules.world_model.RSSMImagine`, the latent policy and the
heads take either. The deterministic step, with ``N(x) = SiLU(RMSNorm(x))``
(RMSNorm with a learned scale, eps 1e-4) and ``g = blocks`` groups:

.. code-block:: text

    a   = a / sg(max(1, |a|))
    x   = [N(W_h h), N(W_s s), N(W_a a)]                       three projections of ``hidden`` units
    x_k = [h_k, x]                                             each group k gets its slice of h and all of x
    x   = N(BlockLinear_g(x))        (dynlayers times, ``deter`` units)
    r, c, u = split_k(BlockLinear_g(x))                        3 x ``deter`` gate logits, split per group
    h'  = σ(u − 1) tanh(σ(r) c) + (1 − σ(u − 1)) h

prior logits ``MLP_img(h')`` (``imglayers = 2`` layers of ``N(Linear)``),
posterior logits ``MLP_obs([h', e])`` (``obslayers = 1``). Weights are
truncated normals with std ``1.1368 / sqrt(fan_in)`` (the code's
``trunc_normal_in``), biases zero. The code's defaults: ``deter=8192``,
``hidden=1024``, ``stoch=32`` categoricals of ``classes=64``, 8 blocks,
``unimix=0.01``; its size presets change ``deter``/``hidden``/``classes``.

``observe`` computes the embedding's share of the first posterior layer for
all steps at once and the prior after the loop, as :class:`RSSM` does.
"""
from __future__ import annotations

import math

import torch
from tensordict import TensorDict
from torch import nn
from torch.nn import functional as F

from latentrl.checks import InputError, check_positive_int, check_range

from .rssm import RSSM

__all__ = ["RSSMV3", "BlockLinear", "trunc_normal_in_"]


def trunc_normal_in_(weight: torch.Tensor, fan_in: int) -> torch.Tensor:
    """The code's ``trunc_normal_in``: ``N(0, 1)`` truncated to ±2, times ``1.1368 / sqrt(fan_in)``."""
    with torch.no_grad():
        nn.init.trunc_normal_(weight, std=1.0, a=-2.0, b=2.0)
        return weight.mul_(1.1368 / math.sqrt(fan_in))


def _linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    trunc_normal_in_(layer.weight, in_features)
    nn.init.zeros_(layer.bias)
    return layer


def _norm_act(features: int) -> nn.Sequential:
    return nn.Sequential(nn.RMSNorm(features, eps=1e-4), nn.SiLU())


class BlockLinear(nn.Module):
    """``g`` independent linear maps over the ``g`` equal slices of the last dim (the code's ``BlockLinear``).

    Input ``[*, in_features]``, output ``[*, out_features]``; kernel ``[g, in/g, out/g]``, fan-in ``in_features``.
    """

    def __init__(self, in_features: int, out_features: int, blocks: int):
        super().__init__()
        if in_features % blocks or out_features % blocks:
            raise ValueError(f"BlockLinear: in_features {in_features} and out_features {out_features} must be "
                             f"divisible by blocks {blocks}")
        self.in_features, self.out_features, self.blocks = in_features, out_features, blocks
        self.weight = nn.Parameter(torch.empty(blocks, in_features // blocks, out_features // blocks))
        self.bias = nn.Parameter(torch.zeros(out_features))
        trunc_normal_in_(self.weight, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, batch = self.blocks, x.shape[:-1]
        y = torch.bmm(x.reshape(-1, g, self.in_features // g).transpose(0, 1), self.weight)  # [g, N, out/g]
        return y.transpose(0, 1).reshape(*batch, self.out_features) + self.bias


class RSSMV3(RSSM):
    """DreamerV3's RSSM (see the module docstring).

    Args:
        action_dim, embed_dim: sizes of the (flat) action and of the observation embedding.
        deter_dim: ``h`` size (the code's ``deter``; divisible by ``blocks``).
        hidden_dim: width of the projections and of the prior/posterior layers (``hidden``).
        num_vars, num_classes: ``stoch`` categoricals of ``classes`` classes.
        blocks: groups of the block GRU (8).
        dyn_layers, img_layers, obs_layers: the code's ``dynlayers`` (1), ``imglayers`` (2), ``obslayers`` (1).
        unimix: uniform mixture of the categoricals (0.01).
    """

    def __init__(self, action_dim: int, embed_dim: int, deter_dim: int = 8192, hidden_dim: int = 1024,
                 num_vars: int = 32, num_classes: int = 64, *, blocks: int = 8, dyn_layers: int = 1,
                 img_layers: int = 2, obs_layers: int = 1, unimix: float = 0.01):
        nn.Module.__init__(self)
        owner = "RSSMV3"
        for name, value in (("action_dim", action_dim), ("embed_dim", embed_dim), ("deter_dim", deter_dim),
                            ("hidden_dim", hidden_dim), ("num_vars", num_vars), ("num_classes", num_classes),
                            ("blocks", blocks), ("dyn_layers", dyn_layers), ("img_layers", img_layers),
                            ("obs_layers", obs_layers)):
            check_positive_int(owner, name, value)
        check_range(owner, "unimix", unimix, 0.0, 1.0, hi_open=True)
        if deter_dim % blocks:
            raise InputError(f"RSSMV3: `deter_dim` ({deter_dim}) must be divisible by `blocks` ({blocks})")
        self.latent = "categorical"
        self.action_dim, self.embed_dim = int(action_dim), int(embed_dim)
        self.deter_dim, self.hidden_dim = int(deter_dim), int(hidden_dim)
        self.num_vars, self.num_classes, self.stoch_dim = int(num_vars), int(num_classes), int(num_vars)
        self.stoch_flat = self.num_vars * self.num_classes
        self.min_std, self.unimix, self.blocks = 0.0, float(unimix), int(blocks)
        H, D, g = self.hidden_dim, self.deter_dim, self.blocks
        self.proj = nn.ModuleDict({name: _linear(size, H) for name, size in
                                   (("deter", D), ("stoch", self.stoch_flat), ("action", self.action_dim))})
        self.proj_norm = nn.ModuleDict({name: _norm_act(H) for name in ("deter", "stoch", "action")})
        self.dyn = nn.ModuleList()
        for i in range(int(dyn_layers)):
            self.dyn.append(nn.ModuleList([BlockLinear(D + 3 * H * g if i == 0 else D, D, g), _norm_act(D)]))
        self.gates = BlockLinear(D, 3 * D, g)
        self.prior_net = self._head(D, int(img_layers))
        self.post_net = self._head(D + self.embed_dim, int(obs_layers))

    def _head(self, in_features: int, layers: int) -> nn.Sequential:
        parts: list[nn.Module] = []
        for i in range(layers):
            parts += [_linear(in_features if i == 0 else self.hidden_dim, self.hidden_dim), _norm_act(self.hidden_dim)]
        parts.append(_linear(self.hidden_dim if layers else in_features, self.stoch_flat))
        return nn.Sequential(*parts)

    def compile_core(self, **compile_kwargs) -> "RSSMV3":
        """Compiles the deterministic step with ``torch.compile`` (inductor): one step, not the unrolled loop,
        so it compiles in seconds; every rollout (``observe``, imagination, acting) uses it. Measured on
        this machine's CPU, one thread, ``size1m`` with 1,024 states: ``img_step`` 46 -> 20 ms, a step's
        forward + backward 86 -> 42 ms (``benchmarks/dreamer_v3_update.py --compile``). Returns ``self``."""
        self._deter_step = torch.compile(self._deter_step, **compile_kwargs)
        return self

    # ----------------------------------------------------------------- steps
    def _deter_step(self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        a = a / a.abs().clamp_min(1.0).detach()
        x = torch.cat([self.proj_norm[k](self.proj[k](v)) for k, v in (("deter", h), ("stoch", s), ("action", a))], -1)
        g, D, batch = self.blocks, self.deter_dim, h.shape[:-1]
        # the first block layer reads [h_k, x] in every group k: its h_k rows act block-diagonally on h, and
        # its x rows of all groups form one dense map of x (the same result, without the g-fold copy of x)
        first, norm = self.dyn[0]
        w = first.weight  # [g, D/g + 3H, D/g]
        y = torch.bmm(h.reshape(-1, g, D // g).transpose(0, 1), w[:, : D // g]).transpose(0, 1).reshape(*batch, D)
        y = y + F.linear(x, w[:, D // g:].permute(1, 0, 2).reshape(-1, D).T, first.bias)
        x = norm(y)
        for linear, norm in self.dyn[1:]:
            x = norm(linear(x))
        reset, cand, update = self.gates(x).unflatten(-1, (g, 3, -1)).unbind(-2)
        reset, cand, update = (t.flatten(-2) for t in (reset, cand, update))
        update = torch.sigmoid(update - 1.0)
        return update * torch.tanh(torch.sigmoid(reset) * cand) + (1.0 - update) * h

    def img_step(self, h, s, a):
        h_next = self._deter_step(h, s, a)
        return h_next, self._stats(self.prior_net(h_next))

    def filter_step(self, h, s, a, embed):
        h_next = self._deter_step(h, s, a)
        return h_next, self._stats(self.post_net(torch.cat([h_next, embed], -1)))

    def obs_step(self, h, s, a, embed):
        h_next, post = self.filter_step(h, s, a, embed)
        return h_next, self._stats(self.prior_net(h_next)), post

    def observe(self, embed, action, is_init=None, state=None, prev_action=None, sample=True) -> TensorDict:
        """Posterior rollout over ``[B, T]``, as :meth:`RSSM.observe` (same arguments and output)."""
        h, s, prev_a, keeps = self._observe_start(embed, action, is_init, state, prev_action)
        first, rest = self.post_net[0], self.post_net[1:]
        D = self.deter_dim
        e_parts = F.linear(embed, first.weight[:, D:], first.bias).unbind(1)  # the embedding's share, all T
        w_h = first.weight[:, :D]
        a_parts = prev_a.unbind(1)
        deters, stochs, logits = [], [], []
        for t in range(embed.shape[1]):
            if keeps is not None:
                h, s = h * keeps[t], s * keeps[t]
            h = self._deter_step(h, s, a_parts[t])
            post = self._stats(rest(F.linear(h, w_h) + e_parts[t]))
            s = self.sample_state(post, sample=sample)
            deters.append(h)
            stochs.append(s)
            logits.append(post["logits"])
        return self._categorical_rollout(deters, stochs, logits)
