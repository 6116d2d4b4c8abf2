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
with one leading batch dimension. :class:`CEMPlanner` is the keyed policy:
it plans with a transition module and a reward module that read and write
TensorDict keys. TorchRL 0.14.1's ``CEMPlanner`` plans
through a TorchRL env and rolls its candidates out under ``"action"`` whatever
``action_key`` says (``UPSTREAM.md`` #16); this one is model-agnostic.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

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


class CEMPlanner(TensorDictModuleBase):
    """A keyed policy that plans with :func:`cem_plan` (PlaNet's defaults) and adds exploration noise.

    Args:
        transition_model: reads ``state_keys`` and ``action_key`` ``[N, ...]``,
            writes ``("next", key)`` for every state key (e.g.
            :class:`~latentrl.modules.world_model.RSSMPriorStep`: a sampled prior step).
        reward_model: reads ``state_keys``, writes ``reward_key`` (the reward
            of arriving in the state, e.g. ``world_model.reward_model``).
        action_dim: size of an action.
        state_keys: the latent state (``("deter", "stoch")``), read from the input.
        action_key: where the planned action is written.
        horizon, iterations, candidates, top_k, action_low, action_high: see :func:`cem_plan`.
        exploration_noise: std of Gaussian noise added to the planned action
            under TorchRL's ``RANDOM`` exploration type (PlaNet: 0.3), not in evaluation.
    """

    def __init__(self, transition_model: TensorDictModuleBase, reward_model: TensorDictModuleBase, action_dim: int,
                 *, state_keys=("deter", "stoch"), action_key: NestedKey = "action",
                 reward_key: NestedKey = "predicted_reward", horizon: int = 12, iterations: int = 10,
                 candidates: int = 1000, top_k: int = 100, action_low: float = -1.0, action_high: float = 1.0,
                 exploration_noise: float = 0.3):
        super().__init__()
        if exploration_noise < 0:
            raise ValueError(f"CEMPlanner: `exploration_noise` must be >= 0, got {exploration_noise}")
        self.transition_model, self.reward_model, self.action_dim = transition_model, reward_model, int(action_dim)
        self.state_keys, self.action_key, self.reward_key = tuple(state_keys), action_key, reward_key
        self.kwargs = dict(horizon=horizon, iterations=iterations, candidates=candidates, top_k=top_k,
                           action_low=action_low, action_high=action_high)
        self.exploration_noise = float(exploration_noise)
        self.in_keys, self.out_keys = list(self.state_keys), [action_key]

    def _transition(self, state, action):
        td = TensorDict({**dict(zip(self.state_keys, state)), self.action_key: action}, action.shape[:1])
        nxt = self.transition_model(td).get("next")
        return tuple(nxt.get(k) for k in self.state_keys)

    def _reward(self, state):
        td = TensorDict(dict(zip(self.state_keys, state)), state[0].shape[:1])
        return self.reward_model(td).get(self.reward_key)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        from torchrl.envs.utils import ExplorationType, exploration_type

        state = tuple(tensordict.get(k) for k in self.state_keys)
        action = cem_plan(state, self._transition, self._reward, self.action_dim, **self.kwargs)
        if exploration_type() in (ExplorationType.RANDOM, None) and self.exploration_noise > 0:
            action = action + self.exploration_noise * torch.randn_like(action)
        tensordict.set(self.action_key, action.clamp(self.kwargs["action_low"], self.kwargs["action_high"]))
        return tensordict
