"""Cross-entropy-method planning in latent space (PlaNet, Hafner et al. 2019, Section 3 and Algorithm 2).

At every environment step PlaNet searches for the best action sequence of
length ``horizon`` (12) under the learned model: ``iterations`` (10) rounds of
sampling ``candidates`` (1000) sequences from a diagonal Gaussian belief over
action sequences (initially N(0, I)), rolling each out in the latent model,
scoring it by the sum of predicted rewards, and refitting the Gaussian to the
``top_k`` (100) best. The first action of the final mean is executed.

:func:`cem_plan` works on any batch of start states, batched over candidates:
``transition(state, action) -> state`` and ``reward(state) -> [*, 1] or [*]``
take and return tensors (or tuples of tensors, e.g. an RSSM's ``(h, s)``)
with one leading batch dimension. TorchRL 0.14.1's ``CEMPlanner`` plans
through a TorchRL env and rolls its candidates out under ``"action"`` whatever
``action_key`` says (``UPSTREAM.md`` #16); this one is model-agnostic.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["cem_plan", "CEMPlanner"]


def _map(fn, state):
    return tuple(fn(s) for s in state) if isinstance(state, (tuple, list)) else fn(state)


@torch.no_grad()
def cem_plan(
    state,
    transition,
    reward,
    action_dim: int,
    *,
    horizon: int = 12,
    iterations: int = 10,
    candidates: int = 1000,
    top_k: int = 100,
    action_low: float = -1.0,
    action_high: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The first action ``[B, action_dim]`` of the CEM plan from each of ``B`` start states.

    Args:
        state: start states, a tensor ``[B, ...]`` or a tuple of them.
        transition: ``(state [B*N, ...], action [B*N, A]) -> next state``.
        reward: ``state [B*N, ...] -> reward [B*N] or [B*N, 1]`` (of arriving in it).
        action_dim: size of an action.
        horizon, iterations, candidates, top_k: PlaNet's 12, 10, 1000, 100.
        action_low, action_high: actions are clipped to these bounds.
    """
    if not 0 < top_k <= candidates:
        raise ValueError(f"cem_plan: `top_k` must be in [1, candidates={candidates}], got {top_k}")
    if horizon < 1 or iterations < 1:
        raise ValueError(f"cem_plan: `horizon` and `iterations` must be >= 1, got {horizon} and {iterations}")
    first = state[0] if isinstance(state, (tuple, list)) else state
    B, device, dtype = first.shape[0], first.device, first.dtype
    mean = torch.zeros(B, 1, horizon, action_dim, device=device, dtype=dtype)
    std = torch.ones_like(mean)
    start = _map(lambda s: s.repeat_interleave(candidates, 0), state)  # [B*N, ...], candidates of a state contiguous
    for _ in range(iterations):
        noise = torch.randn(B, candidates, horizon, action_dim, device=device, dtype=dtype, generator=generator)
        actions = (mean + std * noise).clamp(action_low, action_high)
        flat = actions.reshape(B * candidates, horizon, action_dim)
        s, total = start, torch.zeros(B * candidates, device=device, dtype=dtype)
        for t in range(horizon):
            s = transition(s, flat[:, t])
            total = total + reward(s).reshape(B * candidates)
        elite = total.reshape(B, candidates).topk(top_k, dim=1).indices  # [B, K]
        best = actions.gather(1, elite[:, :, None, None].expand(B, top_k, horizon, action_dim))
        mean, std = best.mean(1, keepdim=True), best.std(1, unbiased=False, keepdim=True)
    return mean[:, 0, 0]


class CEMPlanner(nn.Module):
    """A policy that plans with :func:`cem_plan` (PlaNet's defaults) and adds exploration noise.

    ``forward(state) -> action``; ``exploration_noise`` (PlaNet: 0.3) is the std
    of Gaussian noise added to the planned action while collecting data
    (``explore=True``), not at evaluation.
    """

    def __init__(self, transition, reward, action_dim: int, *, horizon: int = 12, iterations: int = 10,
                 candidates: int = 1000, top_k: int = 100, action_low: float = -1.0, action_high: float = 1.0,
                 exploration_noise: float = 0.3):
        super().__init__()
        self.transition, self.reward, self.action_dim = transition, reward, int(action_dim)
        self.kwargs = dict(horizon=horizon, iterations=iterations, candidates=candidates, top_k=top_k,
                           action_low=action_low, action_high=action_high)
        self.exploration_noise = float(exploration_noise)

    def forward(self, state, explore: bool = False) -> torch.Tensor:
        action = cem_plan(state, self.transition, self.reward, self.action_dim, **self.kwargs)
        if explore and self.exploration_noise > 0:
            action = action + self.exploration_noise * torch.randn_like(action)
        return action.clamp(self.kwargs["action_low"], self.kwargs["action_high"])
