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
  Stats: ``{"logits": [*, num_vars, num_classes]}``, the logits of the
  distribution sampled from: with ``unimix > 0``,
  ``log((1 - unimix) softmax(raw) + unimix / K)``, so a consumer (the KL of a
  loss) needs no knowledge of the mixture.

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

import torch
from tensordict import TensorDict
from torch import distributions as D
from torch import nn
from torch.nn import functional as F

from latentrl.checks import InputError, check_positive_int, check_range, check_tensors
from latentrl.modules.distributions import (
    StraightThroughOneHotCategorical,
    independent,
    sample_one_hot,
)
from latentrl.modules.onehot_linear import OneHotBlockLinear

__all__ = ["RSSM"]

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
        check_range("RSSM", "min_std", min_std, 0.0)
        check_range("RSSM", "unimix", unimix, 0.0, 1.0, hi_open=True)
        for name, value in (("action_dim", action_dim), ("embed_dim", embed_dim), ("deter_dim", deter_dim),
                            ("hidden_dim", hidden_dim), ("stoch_dim", stoch_dim), ("num_vars", num_vars),
                            ("num_classes", num_classes)):
            check_positive_int("RSSM", name, value)
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
        if latent == "categorical":  # s is one-hot: the gather skips its 1024 multiply-adds per row
            img_linear = OneHotBlockLinear((self.stoch_flat, self.action_dim), hidden_dim, block=0,
                                           num_vars=self.num_vars, num_classes=self.num_classes)
        else:
            img_linear = nn.Linear(self.stoch_flat + self.action_dim, hidden_dim)
        self.img_in = nn.Sequential(img_linear, activation())
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
        logits = raw.unflatten(-1, (self.num_vars, self.num_classes))
        if self.unimix > 0:
            probs = (1.0 - self.unimix) * torch.softmax(logits, -1) + self.unimix / self.num_classes
            logits = probs.log()
        return {"logits": logits}

    def dist(self, stats: Stats) -> D.Distribution:
        """The latent distribution with ``rsample``.

        Gaussian: ``Independent(Normal(mean, std), 1)``, event ``[stoch_dim]``.
        Categorical: ``Independent(StraightThroughOneHotCategorical(logits), 1)``,
        event ``[num_vars, num_classes]`` (the logits already carry the unimix).
        """
        if self.latent == "gaussian":
            return D.Independent(D.Normal(stats["mean"], stats["std"]), 1)
        return independent(StraightThroughOneHotCategorical(logits=stats["logits"]), 1)

    def sample_state(self, stats: Stats, sample: bool = True) -> torch.Tensor:
        """A differentiable latent ``s`` flattened to ``[*, stoch_flat]``.

        ``sample=True``: ``rsample`` (reparameterized, or straight-through
        ``z + p - sg(p)`` with ``z`` drawn by :func:`sample_one_hot`).
        ``sample=False``: the mode (the mean, or the straight-through one-hot
        argmax), deterministic, e.g. for evaluation.
        """
        if self.latent == "gaussian":
            if not sample:
                return stats["mean"]
            # Normal(mean, std).rsample() without building (and validating) a distribution at every step
            return stats["mean"] + stats["std"] * torch.randn_like(stats["std"])
        p = torch.softmax(stats["logits"], -1)
        if sample:
            z = sample_one_hot(p)
        else:
            z = F.one_hot(p.argmax(-1), self.num_classes).to(p.dtype)
        return (z + (p - p.detach())).flatten(-2)

    # ----------------------------------------------------------------- steps
    def _gru(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        batch = h.shape[:-1]
        out = self.gru(x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]))
        return out.reshape(*batch, self.deter_dim)

    def _img_input(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``MLP([s, a])``; a categorical ``s`` is read as one-hots, without concatenation."""
        if self.latent == "categorical":
            return self.img_in[1](self.img_in[0](s, a))
        return self.img_in(torch.cat([s, a], -1))

    def _deter_step(self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``h_t = GRU(h_{t-1}, MLP([s_{t-1}, a_{t-1}]))``."""
        return self._gru(self._img_input(s, a), h)

    def img_step(self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        """``h_t = GRU(h_{t-1}, MLP([s_{t-1}, a_{t-1}]))`` and the prior stats of ``p(s_t | h_t)``."""
        h_next = self._deter_step(h, s, a)
        return h_next, self._stats(self.prior_net(h_next))

    def filter_step(
        self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor, embed: torch.Tensor
    ) -> tuple[torch.Tensor, Stats]:
        """``h_t`` and the posterior stats of ``q(s_t | h_t, e_t)``, without the prior: for acting."""
        h_next = self._deter_step(h, s, a)
        return h_next, self._stats(self.post_net(torch.cat([h_next, embed], -1)))

    def obs_step(
        self, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor, embed: torch.Tensor
    ) -> tuple[torch.Tensor, Stats, Stats]:
        """:meth:`filter_step` plus the prior stats of ``p(s_t | h_t)``."""
        h_next, post = self.filter_step(h, s, a, embed)
        return h_next, self._stats(self.prior_net(h_next)), post

    def _check_observe_inputs(self, embed: torch.Tensor, action: torch.Tensor,
                              is_init: torch.Tensor | None) -> torch.Tensor | None:
        """:meth:`observe`'s shape, dtype and size checks; returns ``is_init`` as ``[B, T]`` (or ``None``)."""
        owner = f"{type(self).__name__}.observe"
        if embed.ndim != 3 or action.ndim != 3 or embed.shape[:2] != action.shape[:2]:
            raise ValueError(
                f"{owner}: expected embed [B, T, E] and action [B, T, A], got {tuple(embed.shape)} and {tuple(action.shape)}"
            )
        check_tensors(owner, {"embed": embed, "action": action}, floating=("embed", "action"),
                      finite=("embed", "action"))
        for name, t, dim in (("embed", embed, self.embed_dim), ("action", action, self.action_dim)):
            if t.shape[-1] != dim:
                raise InputError(f"{owner}: `{name}` must have {dim} features (the RSSM's {name}_dim), "
                                 f"got shape {tuple(t.shape)}")
        if is_init is not None:
            if is_init.shape[-1:] == (1,) and is_init.ndim == 3:
                is_init = is_init.squeeze(-1)
            if is_init.shape != embed.shape[:2]:
                raise ValueError(f"{owner}: expected is_init [B, T, 1], got {tuple(is_init.shape)}")
        return is_init

    # ------------------------------------------------------------- rollouts
    def _observe_start(self, embed, action, is_init, state, prev_action):
        """:meth:`observe`'s checked inputs: the start ``(h, s)`` (:meth:`initial_state` unless ``state``),
        the previous actions ``a_{t-1}`` ``[B, T, A]`` (zero at resets) and the per-step keep masks (or ``None``)."""
        is_init = self._check_observe_inputs(embed, action, is_init)
        h, s = self.initial_state((embed.shape[0],), device=embed.device, dtype=embed.dtype) if state is None else state
        a0 = torch.zeros_like(action[:, :1]) if prev_action is None else prev_action.unsqueeze(1)
        prev_a = torch.cat([a0, action[:, :-1]], 1)
        keeps = None
        if is_init is not None:
            keep = (~is_init.bool()).unsqueeze(-1).to(embed.dtype)
            prev_a = prev_a * keep
            keeps = keep.unbind(1)
        return h, s, prev_a, keeps

    def _categorical_rollout(self, deters: list, stochs: list, logits: list) -> TensorDict:
        """The ``[B, T]`` output of a categorical :meth:`observe` from its per-step lists (prior after the loop)."""
        deter = torch.stack(deters, 1)
        return TensorDict({"deter": deter, "stoch": torch.stack(stochs, 1),
                           "prior": self._stats(self.prior_net(deter)), "post": {"logits": torch.stack(logits, 1)}},
                          batch_size=list(deter.shape[:2]))

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

        The same steps as :meth:`obs_step`, computed faster: only ``h -> s``
        is sequential, so the action's and the embedding's shares of the first
        layers (``MLP([s, a])``, ``MLP([h, e])``) are computed for all steps at
        once before the loop and the prior head once after it.
        """
        is_init = self._check_observe_inputs(embed, action, is_init)
        B, T = embed.shape[:2]
        h, s = self.initial_state((B,), device=embed.device, dtype=embed.dtype) if state is None else state
        a0 = torch.zeros_like(action[:, :1]) if prev_action is None else prev_action.unsqueeze(1)
        prev_a = torch.cat([a0, action[:, :-1]], 1)  # a_{t-1} for every step t
        keep = None
        if is_init is not None:
            keep = (~is_init.bool()).unsqueeze(-1).to(embed.dtype)  # [B, T, 1]
            prev_a = prev_a * keep
        img_linear, post_linear = self.img_in[0], self.post_net[0]
        S, D_ = self.stoch_flat, self.deter_dim
        # shares of the first layers that do not depend on the recurrence, for all T at once
        a_part = F.linear(prev_a, img_linear.weight[:, S:], img_linear.bias)  # [B, T, hidden]
        e_part = F.linear(embed, post_linear.weight[:, D_:], post_linear.bias)  # [B, T, hidden]
        w_s, w_h = img_linear.weight[:, :S], post_linear.weight[:, :D_]
        act_img, post_rest = self.img_in[1], self.post_net[1:]
        # unbind, not index: the backward of x[:, t] would zero-fill a [B, T, hidden] gradient at every step
        a_parts, e_parts = a_part.unbind(1), e_part.unbind(1)
        keeps = keep.unbind(1) if keep is not None else None
        deters, stochs, posts = [], [], []
        for t in range(T):
            if keeps is not None:
                h, s = h * keeps[t], s * keeps[t]
            x = act_img(F.linear(s, w_s) + a_parts[t])
            h = self.gru(x, h)
            post = self._stats(post_rest(F.linear(h, w_h) + e_parts[t]))
            s = self.sample_state(post, sample=sample)
            deters.append(h)
            stochs.append(s)
            posts.append(post)
        deter = torch.stack(deters, 1)
        prior = self._stats(self.prior_net(deter))  # the prior is not needed inside the loop
        return TensorDict(
            {
                "deter": deter,
                "stoch": torch.stack(stochs, 1),
                "prior": prior,
                "post": {k: torch.stack([p[k] for p in posts], 1) for k in posts[0]},
            },
            batch_size=[B, T],
        )
