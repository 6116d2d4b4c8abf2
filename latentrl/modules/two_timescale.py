"""FTW's two-timescale recurrent core (Jaderberg et al. 2019, "Human-level performance in 3D
multiplayer games with population-based reinforcement learning", Supplementary: "Agent architecture").

Two LSTMs over one stream of embeddings ``x_t``, with ``k`` the steps since the
episode started:

- the **slow** LSTM ticks when ``k % period == 0``: it reads the fast core's
  previous output ``h^F_{t-1}`` and updates its state and output ``h^S``;
  between ticks both are held. Its output parameterizes the **prior**
  ``p_t = N(mu_p, sigma_p)`` over ``z`` (held with it);
- the **fast** LSTM ticks every step on ``[x_t, g(h^S_t), g(mu_p), g(sigma_p), z_{t-1}]``,
  where ``g`` passes the value unchanged and scales its gradient by
  ``grad_scale`` (0 blocks the fast core's gradient into the slow one, 1
  passes it); its output parameterizes the **posterior** ``q_t = N(mu_q, sigma_q)``
  and ``z_t ~ q_t`` (reparameterized) is what the policy reads.

The losses (:func:`two_timescale_kl`) are ``KL(q_t || p_t)`` and
``KL(p_t || N(0, sigma^2))`` at the slow ticks, with weights chosen by the
loss (PBT adapts them in FTW, as it adapts ``period`` and ``grad_scale``).

:class:`TwoTimescaleCore` runs steps on tensors; :class:`TwoTimescaleModule`
is the keyed step a TorchRL collector runs, its state under
``(state_key, <field>)`` keys and written to ``("next", ...)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import TensorDictPrimer

from latentrl.checks import InputError, check_positive_int, check_range, require_keys

__all__ = ["TwoTimescaleCore", "TwoTimescaleModule", "scale_gradient", "two_timescale_kl"]

_STD_MIN = 1e-3


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    if scale == 1.0:
        return x
    return x * scale + x.detach() * (1.0 - scale)


def _gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, raw_std = params.chunk(2, -1)
    return mean, F.softplus(raw_std) + _STD_MIN


class TwoTimescaleCore(nn.Module):
    """The slow and fast LSTMs, the prior and posterior heads (see the module docstring).

    Args:
        input_dim: size of the embedding ``x_t``.
        fast_hidden, slow_hidden: widths of the two LSTMs.
        z_dim: size of ``z``.
        period: the slow core's period ``tau`` in steps (FTW adapts it with PBT).
        grad_scale: in ``[0, 1]``, the factor on the gradient from the fast core into the slow core.
    """

    FIELDS = ("slow_h", "slow_c", "fast_h", "fast_c", "z", "steps")

    def __init__(self, input_dim: int, *, fast_hidden: int = 256, slow_hidden: int = 256, z_dim: int = 32,
                 period: int = 10, grad_scale: float = 1.0):
        super().__init__()
        for name, value in dict(input_dim=input_dim, fast_hidden=fast_hidden, slow_hidden=slow_hidden, z_dim=z_dim,
                                period=period).items():
            check_positive_int("TwoTimescaleCore", name, value)
        self.input_dim, self.fast_hidden, self.slow_hidden, self.z_dim = input_dim, fast_hidden, slow_hidden, z_dim
        self.period = period
        self.grad_scale = grad_scale
        self.slow = nn.LSTMCell(fast_hidden, slow_hidden)
        self.prior = nn.Linear(slow_hidden, 2 * z_dim)
        self.fast = nn.LSTMCell(input_dim + slow_hidden + 3 * z_dim, fast_hidden)
        self.posterior = nn.Linear(fast_hidden, 2 * z_dim)

    @property
    def grad_scale(self) -> float:
        return self._grad_scale

    @grad_scale.setter
    def grad_scale(self, value: float) -> None:
        check_range("TwoTimescaleCore", "grad_scale", value, 0.0, 1.0)
        self._grad_scale = float(value)

    @property
    def period(self) -> int:
        return self._period

    @period.setter
    def period(self, value: int) -> None:
        check_positive_int("TwoTimescaleCore", "period", value)
        self._period = int(value)

    # ---- state ---------------------------------------------------------
    def state_specs(self) -> dict[str, Unbounded]:
        """One env's state: both LSTMs' ``(h, c)``, the previous ``z`` and the steps since the reset (long)."""
        shapes = {"slow_h": self.slow_hidden, "slow_c": self.slow_hidden, "fast_h": self.fast_hidden,
                  "fast_c": self.fast_hidden, "z": self.z_dim, "steps": 1}
        return {k: Unbounded(shape=(n,), dtype=torch.long if k == "steps" else torch.float32) for k, n in shapes.items()}

    def initial_state(self, batch: tuple[int, ...] = (), device=None) -> dict[str, torch.Tensor]:
        return {k: spec.zero(torch.Size(batch)).to(device) for k, spec in self.state_specs().items()}

    @staticmethod
    def reset(state: dict[str, torch.Tensor], is_init: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zeroes the state (the step count included) where ``is_init [*, 1]`` is set."""
        if is_init.dtype != torch.bool:
            raise InputError(f"TwoTimescaleCore.reset: `is_init` must be a bool tensor, got {is_init.dtype}")
        return {k: torch.where(is_init, torch.zeros_like(v), v) for k, v in state.items()}

    # ---- one step --------------------------------------------------------
    def step(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``x [*, input_dim]``; returns ``(outputs, new_state)``: ``z``, the posterior's and the prior's
        ``mean``/``std``, ``tick [*, 1]`` (the slow core updated at this step) and ``hidden`` (the fast
        core's output)."""
        if x.shape[-1] != self.input_dim:
            raise InputError(f"TwoTimescaleCore.step: expected the embedding [*, {self.input_dim}], got {tuple(x.shape)}")
        missing = [k for k in self.FIELDS if k not in state]
        if missing:
            raise InputError(f"TwoTimescaleCore.step: the state lacks {missing}; it holds {list(self.FIELDS)}")
        lead = x.shape[:-1]
        flat = {k: v.reshape(-1, v.shape[-1]) for k, v in state.items()}
        tick = flat["steps"] % self.period == 0  # [N, 1]
        slow_h, slow_c = self.slow(flat["fast_h"], (flat["slow_h"], flat["slow_c"]))
        slow_h = torch.where(tick, slow_h, flat["slow_h"])
        slow_c = torch.where(tick, slow_c, flat["slow_c"])
        prior_mean, prior_std = _gaussian(self.prior(slow_h))  # a function of the held state: held with it
        s = self.grad_scale
        fast_in = torch.cat([x.reshape(-1, self.input_dim), scale_gradient(slow_h, s), scale_gradient(prior_mean, s),
                             scale_gradient(prior_std, s), flat["z"]], -1)
        fast_h, fast_c = self.fast(fast_in, (flat["fast_h"], flat["fast_c"]))
        post_mean, post_std = _gaussian(self.posterior(fast_h))
        z = post_mean + post_std * torch.randn_like(post_std)
        outputs = {"z": z, "post_mean": post_mean, "post_std": post_std, "prior_mean": prior_mean,
                   "prior_std": prior_std, "tick": tick, "hidden": fast_h}
        new_state = {"slow_h": slow_h, "slow_c": slow_c, "fast_h": fast_h, "fast_c": fast_c, "z": z,
                     "steps": flat["steps"] + 1}
        unflat = lambda v: v.reshape(*lead, v.shape[-1])  # noqa: E731
        return {k: unflat(v) for k, v in outputs.items()}, {k: unflat(v) for k, v in new_state.items()}

    def unroll(self, x: torch.Tensor, is_init: torch.Tensor, state: dict[str, torch.Tensor]
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Steps over ``x [B, T, D]`` from ``state`` (``[B, ...]``), resetting at ``is_init [B, T, 1]``;
        returns the stacked outputs ``[B, T, ...]`` and the state after the last step."""
        if x.dim() < 3 or is_init.shape[:2] != x.shape[:2]:
            raise InputError(f"TwoTimescaleCore.unroll: expected x [B, T, D] and is_init [B, T, 1], got "
                             f"{tuple(x.shape)} and {tuple(is_init.shape)}")
        outs = []
        for t in range(x.shape[1]):
            state = self.reset(state, is_init[:, t])
            out, state = self.step(x[:, t], state)
            outs.append(out)
        return {k: torch.stack([o[k] for o in outs], 1) for k in outs[0]}, state


def two_timescale_kl(post_mean: torch.Tensor, post_std: torch.Tensor, prior_mean: torch.Tensor,
                     prior_std: torch.Tensor, tick: torch.Tensor, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(KL(q || p), KL(p || N(0, sigma^2)))`` summed over ``z`` and averaged over the steps where ``tick``
    ``[*, 1]`` is set (zero where no step ticks)."""
    check_range("two_timescale_kl", "sigma", sigma, 0.0, None, lo_open=True)
    shapes = {tuple(t.shape) for t in (post_mean, post_std, prior_mean, prior_std)}
    if len(shapes) != 1 or tuple(tick.shape) != tuple(post_mean.shape[:-1]) + (1,):
        raise InputError(f"two_timescale_kl: the four Gaussian parameters must share one shape [*, Z] and `tick` be "
                         f"[*, 1]; got {sorted(shapes)} and tick {tuple(tick.shape)}")
    q = Independent(Normal(post_mean, post_std), 1)
    p = Independent(Normal(prior_mean, prior_std), 1)
    ref = Independent(Normal(torch.zeros_like(prior_mean), torch.full_like(prior_std, sigma)), 1)
    mask = tick.squeeze(-1).to(post_mean.dtype)
    count = mask.sum().clamp(min=1.0)
    return (kl_divergence(q, p) * mask).sum() / count, (kl_divergence(p, ref) * mask).sum() / count


class TwoTimescaleModule(TensorDictModuleBase):
    """The keyed two-timescale step: reads ``in_key`` (the embedding), ``is_init_key`` and the state
    under ``(state_key, <field>)``; writes ``z``, the Gaussians' parameters and ``tick`` under
    ``out_prefix`` names, and the new state to ``("next", state_key, <field>)``.
    :meth:`make_tensordict_primer` gives the env its zero state (append it after an ``InitTracker``)."""

    OUTPUTS = ("z", "post_mean", "post_std", "prior_mean", "prior_std", "tick", "hidden")

    def __init__(self, core: TwoTimescaleCore, *, in_key: NestedKey = "embedding", is_init_key: NestedKey = "is_init",
                 state_key: str = "two_timescale", out_prefix: str = ""):
        super().__init__()
        self.core, self.in_key, self.is_init_key, self.state_key = core, in_key, is_init_key, state_key
        self.out_names = {k: f"{out_prefix}{k}" for k in self.OUTPUTS}
        self.in_keys = [in_key, is_init_key] + self.state_keys()
        self.out_keys = list(self.out_names.values()) + self.state_keys(True)

    def state_keys(self, next_: bool = False) -> list[NestedKey]:
        return [("next", self.state_key, f) if next_ else (self.state_key, f) for f in TwoTimescaleCore.FIELDS]

    def make_tensordict_primer(self) -> TensorDictPrimer:
        return TensorDictPrimer(Composite({self.state_key: Composite(self.core.state_specs())}), expand_specs=True)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = {"in_key": self.in_key, "is_init_key": self.is_init_key}
        keys.update({f"state ({self.state_key}, {f})": (self.state_key, f) for f in TwoTimescaleCore.FIELDS})
        require_keys("TwoTimescaleModule", tensordict, keys)
        state = {f: tensordict.get((self.state_key, f)) for f in TwoTimescaleCore.FIELDS}
        state = self.core.reset(state, tensordict.get(self.is_init_key))
        out, new_state = self.core.step(tensordict.get(self.in_key), state)
        for k, name in self.out_names.items():
            tensordict.set(name, out[k])
        for f, v in new_state.items():
            tensordict.set(("next", self.state_key, f), v)
        return tensordict
