"""Recurrent state-space model (RSSM) of PlaNet and DreamerV2.

The latent state at step ``t`` is a pair ``(h_t, s_t)``: a deterministic
recurrent state ``h_t`` and a stochastic state ``s_t``:

.. code-block:: text

    h_t  = GRU(h_{t-1}, MLP([s_{t-1}, a_{t-1}]))       deterministic path
    s_t ~ p(s_t | h_t)      = MLP(h_t)         -> stats  prior (imagination)
    s_t ~ q(s_t | h_t, e_t) = MLP([h_t, e_t])  -> stats  posterior (filtering)

where ``e_t`` embeds the observation ``o_t``. Two stochastic latents:

* ``latent="gaussian"`` (PlaNet, Hafner et al. 2019, Section 3 and Appendix A):
  a diagonal Gaussian over ``stoch_dim=30`` units, ``std = softplus(raw) + min_std``
  with ``min_std=0.1``; samples are reparameterized (``rsample``).
  Stats: ``{"mean": [*, stoch_dim], "std": [*, stoch_dim]}``.
* ``latent="categorical"`` (DreamerV2, Hafner et al. 2020, Section 2 and
  Table D.1): ``num_vars=32`` independent categoricals of ``num_classes=32``
  classes with straight-through samples
  (:class:`~latentrl.modules.distributions.StraightThroughOneHotCategorical`).
  ``unimix > 0`` mixes ``unimix`` uniform into every categorical
  (:class:`~latentrl.modules.distributions.UnimixOneHotCategorical`;
  DreamerV3 uses ``unimix=0.01``, DreamerV2 none, the default).
  Stats: ``{"logits": [*, num_vars, num_classes]}`` (the raw, un-mixed logits).

Sizes default to PlaNet's (``deter_dim=hidden_dim=200``); DreamerV2 uses
``deter_dim=600`` (Atari) and ``hidden_dim=600``.

Action alignment (TorchRL's and Dreamer's): in a replayed trajectory the
entry ``action[t]`` is the action taken *after* observing ``o_t``; it leads to
``o_{t+1}``. So step ``t`` of :meth:`RSSM.observe` uses
``(h_{t-1}, s_{t-1}, a_{t-1}) = (h_{t-1}, s_{t-1}, action[t-1])`` and ``e_t``.
Wherever ``is_init[t]`` is true (the first step of an episode), ``h_{t-1}``,
``s_{t-1}`` and ``a_{t-1}`` are all reset to zero (the initial state), so a
sequence spanning an episode boundary restarts exactly as a fresh sequence
would, and no gradient crosses the boundary.
"""
from __future__ import annotations

from typing import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import distributions as D
from torch import nn
from torch.nn import functional as F

from latentrl.modules.distributions import (
    StraightThroughOneHotCategorical,
    UnimixOneHotCategorical,
    independent,
)

__all__ = ["RSSM", "RSSMObserve"]

Stats = dict  # dict[str, torch.Tensor]


class RSSM(nn.Module):
    """Recurrent state-space model with a Gaussian (PlaNet) or categorical (DreamerV2) latent.

    Args:
        action_dim: size of the (flat) action.
        embed_dim: size of the observation embedding ``e_t``.
        deter_dim: size of ``h_t`` (GRU state). PlaNet: 200.
        hidden_dim: width of the MLPs (and the GRU input). PlaNet: 200.
        latent: ``"gaussian"`` or ``"categorical"``.
        stoch_dim: Gaussian latent size. PlaNet: 30.
        num_vars, num_classes: categorical latent shape. DreamerV2: 32 x 32.
        min_std: lower bound of the Gaussian std. PlaNet: 0.1.
        unimix: uniform mixture of the categoricals (0 for DreamerV2, 0.01 for DreamerV3).
        activation: MLP activation class (ELU, as PlaNet/DreamerV2).

    ``s`` is always flat: ``[*, stoch_flat]`` with ``stoch_flat = stoch_dim``
    (Gaussian) or ``num_vars * num_classes`` (categorical). Any leading batch
    shape is accepted by the step functions.
    """

    def __init__(
        self,
        action_dim: int,
        embed_dim: int,
        deter_dim: int = 200,
        hidden_dim: int = 200,
        latent: str = "gaussian",
        stoch_dim: int = 30,
        num_vars: int = 32,
        num_classes: int = 32,
        min_std: float = 0.1,
        unimix: float = 0.0,
        activation: type[nn.Module] = nn.ELU,
    ):
        super().__init__()
        if latent not in ("gaussian", "categorical"):
            raise ValueError(f"RSSM: `latent` must be 'gaussian' or 'categorical', got {latent!r}")
        if min_std < 0:
            raise ValueError(f"RSSM: `min_std` must be >= 0, got {min_std}")
        if not 0.0 <= unimix < 1.0:
            raise ValueError(f"RSSM: `unimix` must be in [0, 1), got {unimix}")
        if latent == "gaussian" and unimix != 0.0:
            raise ValueError("RSSM: `unimix` only applies to latent='categorical'")
        self.latent = latent
        self.action_dim = int(action_dim)
        self.embed_dim = int(embed_dim)
        self.deter_dim = int(deter_dim)
        self.hidden_dim = int(hidden_dim)
        self.stoch_dim = int(stoch_dim)
        self.num_vars = int(num_vars)
        self.num_classes = int(num_classes)
        self.min_std = float(min_std)
        self.unimix = float(unimix)
        if latent == "gaussian":
            self.stoch_flat = self.stoch_dim
            stats_dim = 2 * self.stoch_dim
        else:
            self.stoch_flat = self.num_vars * self.num_classes
            stats_dim = self.stoch_flat
        self.img_in = nn.Sequential(nn.Linear(self.stoch_flat + self.action_dim, hidden_dim), activation())
        self.gru = nn.GRUCell(hidden_dim, deter_dim)
        self.prior_net = nn.Sequential(
            nn.Linear(deter_dim, hidden_dim), activation(), nn.Linear(hidden_dim, stats_dim)
        )
        self.post_net = nn.Sequential(
            nn.Linear(deter_dim + embed_dim, hidden_dim), activation(), nn.Linear(hidden_dim, stats_dim)
        )

    @property
    def feature_dim(self) -> int:
        return self.deter_dim + self.stoch_flat

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_shape, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, s)`` of shapes ``[*batch_shape, deter_dim]`` and ``[*batch_shape, stoch_flat]``."""
        if isinstance(batch_shape, int):
            batch_shape = (batch_shape,)
        ref = next(self.parameters())
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        h = torch.zeros(*batch_shape, self.deter_dim, device=device, dtype=dtype)
        s = torch.zeros(*batch_shape, self.stoch_flat, device=device, dtype=dtype)
        return h, s

    @staticmethod
    def features(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``cat([h, s], -1)``: the input of the decoder, reward, actor and critic heads."""
        return torch.cat([h, s], -1)

    # ------------------------------------------------------------ statistics
    def _stats(self, raw: torch.Tensor) -> Stats:
        if self.latent == "gaussian":
            mean, std = raw.chunk(2, -1)
            return {"mean": mean, "std": F.softplus(std) + self.min_std}
        return {"logits": raw.unflatten(-1, (self.num_vars, self.num_classes))}

    def dist(self, stats: Stats) -> D.Distribution:
        """The latent distribution with ``rsample``.

        Gaussian: ``Independent(Normal(mean, std), 1)``, event ``[stoch_dim]``.
        Categorical: ``Independent(StraightThroughOneHotCategorical, 1)`` (or
        ``UnimixOneHotCategorical`` when ``unimix > 0``), event
        ``[num_vars, num_classes]``.
        """
        if self.latent == "gaussian":
            return D.Independent(D.Normal(stats["mean"], stats["std"]), 1)
        if self.unimix > 0:
            return independent(UnimixOneHotCategorical(stats["logits"], unimix=self.unimix), 1)
        return independent(StraightThroughOneHotCategorical(logits=stats["logits"]), 1)

    def sample_state(self, stats: Stats, sample: bool = True) -> torch.Tensor:
        """A differentiable latent ``s`` flattened to ``[*, stoch_flat]``.

        ``sample=True``: ``rsample`` (reparameterized / straight-through).
        ``sample=False``: the mode (the mean, or the straight-through one-hot
        argmax), deterministic, e.g. for evaluation.
        """
        d = self.dist(stats)
        if sample:
            s = d.rsample()
        elif self.latent == "gaussian":
            s = stats["mean"]
        else:
            p = d.base_dist.probs
            z = F.one_hot(p.argmax(-1), self.num_classes).to(p.dtype)
            s = z + (p - p.detach())
        if self.latent == "categorical":
            s = s.flatten(-2)
        return s

    # ----------------------------------------------------------------- steps
    def _gru(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        batch = h.shape[:-1]
        out = self.gru(x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]))
        return out.reshape(*batch, self.deter_dim)

    def img_step(self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        """``h_t = GRU(h_{t-1}, MLP([s_{t-1}, a_{t-1}]))`` and the prior stats of ``p(s_t | h_t)``."""
        x = self.img_in(torch.cat([s, a], -1))
        h_next = self._gru(x, h)
        return h_next, self._stats(self.prior_net(h_next))

    def obs_step(
        self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor, embed: torch.Tensor
    ) -> tuple[torch.Tensor, Stats, Stats]:
        """:meth:`img_step` plus the posterior stats of ``q(s_t | h_t, e_t)``."""
        h_next, prior = self.img_step(h, s, a)
        post = self._stats(self.post_net(torch.cat([h_next, embed], -1)))
        return h_next, prior, post

    # ------------------------------------------------------------- rollouts
    def observe(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        is_init: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        prev_action: torch.Tensor | None = None,
        sample: bool = True,
    ) -> TensorDict:
        """Posterior rollout (filtering) over a replayed sequence.

        Args:
            embed: ``[B, T, embed_dim]``, ``embed[:, t]`` embeds ``o_t``.
            action: ``[B, T, action_dim]``, ``action[:, t]`` is taken after
                ``o_t`` (leads to ``o_{t+1}``); so step ``t`` uses
                ``action[:, t-1]``, and ``action[:, -1]`` is not used.
            is_init: ``[B, T, 1]`` or ``[B, T]`` bool; where true the previous
                ``(h, s, a)`` is reset to zero before the step. ``None``: no resets.
            state: ``(h, s)`` before the sequence (zeros if ``None``).
            prev_action: the action before ``o_0`` (zeros if ``None``).
            sample: ``rsample`` the posterior (``True``) or take its mode.

        Returns:
            TensorDict, batch ``[B, T]``: ``"deter"`` ``h_t`` ``[B, T, deter_dim]``,
            ``"stoch"`` ``s_t ~ q`` ``[B, T, stoch_flat]``, ``"prior"`` and
            ``"post"`` stats (see the module docstring).
        """
        if embed.ndim != 3 or action.ndim != 3 or embed.shape[:2] != action.shape[:2]:
            raise ValueError(
                f"RSSM.observe: expected embed [B, T, E] and action [B, T, A], got {tuple(embed.shape)} and {tuple(action.shape)}"
            )
        B, T = embed.shape[:2]
        if is_init is not None:
            if is_init.shape[-1:] == (1,) and is_init.ndim == 3:
                is_init = is_init.squeeze(-1)
            if is_init.shape != (B, T):
                raise ValueError(f"RSSM.observe: expected is_init [B, T, 1], got {tuple(is_init.shape)}")
        h, s = self.initial_state((B,), device=embed.device, dtype=embed.dtype) if state is None else state
        a = torch.zeros_like(action[:, 0]) if prev_action is None else prev_action
        deters, stochs, priors, posts = [], [], [], []
        for t in range(T):
            if t > 0:
                a = action[:, t - 1]
            if is_init is not None:
                keep = (~is_init[:, t].bool()).unsqueeze(-1).to(embed.dtype)
                h, s, a = h * keep, s * keep, a * keep
            h, prior, post = self.obs_step(h, s, a, embed[:, t])
            s = self.sample_state(post, sample=sample)
            deters.append(h)
            stochs.append(s)
            priors.append(prior)
            posts.append(post)
        stack = lambda xs: {k: torch.stack([x[k] for x in xs], 1) for k in xs[0]}  # noqa: E731
        return TensorDict(
            {
                "deter": torch.stack(deters, 1),
                "stoch": torch.stack(stochs, 1),
                "prior": stack(priors),
                "post": stack(posts),
            },
            batch_size=[B, T],
        )

    def imagine(
        self,
        policy_fn: Callable[[torch.Tensor], torch.Tensor],
        start_h: torch.Tensor,
        start_s: torch.Tensor,
        horizon: int,
        sample: bool = True,
    ) -> TensorDict:
        """Prior rollout (imagination) of ``horizon`` steps under ``policy_fn(features) -> action``.

        ``start_h [N, deter_dim]``, ``start_s [N, stoch_flat]`` are usually
        posterior states from :meth:`observe`, flattened over ``[B, T]`` (detach
        them, as Dreamer does, if the world model should not be trained
        through imagination). Gradients flow through the actions and the
        reparameterized / straight-through prior samples.

        Returns a TensorDict of batch ``[N, horizon + 1]``: ``"deter"``,
        ``"stoch"``, ``"feature"`` for the start state and the ``horizon``
        imagined states, and ``"action"``: ``action[:, t] = policy_fn(feature[:, t])``,
        which leads to state ``t + 1`` (the same alignment as :meth:`observe`;
        the last action is the policy's action at the last state and drives no
        transition).
        """
        if start_h.shape[:-1] != start_s.shape[:-1]:
            raise ValueError(
                f"RSSM.imagine: start_h {tuple(start_h.shape)} and start_s {tuple(start_s.shape)} batch shapes differ"
            )
        h, s = start_h, start_s
        deters, stochs, feats, actions = [], [], [], []
        for t in range(horizon + 1):
            feat = self.features(h, s)
            a = policy_fn(feat)
            deters.append(h)
            stochs.append(s)
            feats.append(feat)
            actions.append(a)
            if t < horizon:
                h, prior = self.img_step(h, s, a)
                s = self.sample_state(prior, sample=sample)
        dim = start_h.ndim - 1
        return TensorDict(
            {
                "deter": torch.stack(deters, dim),
                "stoch": torch.stack(stochs, dim),
                "feature": torch.stack(feats, dim),
                "action": torch.stack(actions, dim),
            },
            batch_size=[*start_h.shape[:-1], horizon + 1],
        )


class RSSMObserve(TensorDictModuleBase):
    """TensorDict wrapper around :meth:`RSSM.observe` for replayed trajectories.

    Reads ``embed_key`` ``[*B, T, E]``, ``action_key`` ``[*B, T, A]`` and
    (if present) ``is_init_key`` ``[*B, T, 1]`` from a TensorDict of batch
    ``[*B, T]`` (time last, TorchRL's layout) and writes ``"deter"``,
    ``"stoch"``, ``("prior", stat)`` and ``("post", stat)``.
    """

    def __init__(
        self,
        rssm: RSSM,
        embed_key="embed",
        action_key="action",
        is_init_key="is_init",
        sample: bool = True,
    ):
        super().__init__()
        self.rssm = rssm
        self.sample = sample
        self.embed_key, self.action_key, self.is_init_key = embed_key, action_key, is_init_key
        self.in_keys = [embed_key, action_key, is_init_key]
        stats = ("mean", "std") if rssm.latent == "gaussian" else ("logits",)
        self.out_keys = ["deter", "stoch"] + [(k, s) for k in ("prior", "post") for s in stats]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.ndim < 1:
            raise ValueError("RSSMObserve: expected a TensorDict with a time dimension (batch [*B, T])")
        shape = tensordict.batch_size
        flat = tensordict.reshape(-1, shape[-1])
        out = self.rssm.observe(
            flat.get(self.embed_key),
            flat.get(self.action_key),
            flat.get(self.is_init_key, None),
            sample=self.sample,
        )
        tensordict.update(out.reshape(shape))
        return tensordict
