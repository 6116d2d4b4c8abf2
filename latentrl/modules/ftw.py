"""The FTW agent's keyed step: an encoder, the two-timescale core and the policy and value heads.

Composed by keys (a ``TensorDictSequential``), so a user can swap the
encoder or a head by building the sequence with their own module:

1. ``"embedding"`` from ``[observation, prev_action, prev_reward]`` (an MLP);
2. :class:`~latentrl.modules.two_timescale.TwoTimescaleModule`: ``z``, the
   posterior's and the slow prior's parameters, ``tick`` and the fast core's
   ``hidden``; its state under ``("ftw", <field>)``;
3. ``"logits"`` and ``"state_value"`` from ``[z, hidden]`` (two MLPs).

With ``period=1`` both LSTMs tick every step: the single-timescale control
with the same parameters.
"""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import TensorSpec
from torchrl.modules import OneHotCategorical, ProbabilisticActor

from .two_timescale import TwoTimescaleCore, TwoTimescaleModule

__all__ = ["make_ftw_agent"]


class _CatMLP(nn.Module):
    def __init__(self, inp: int, hidden: int, out: int, activate_last: bool = False):
        super().__init__()
        layers = [nn.Linear(inp, hidden), nn.Tanh(), nn.Linear(hidden, out)]
        self.net = nn.Sequential(*layers, nn.Tanh()) if activate_last else nn.Sequential(*layers)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.to(torch.get_default_dtype()) for x in xs], -1))


def make_ftw_agent(obs_dim: int, action_spec: TensorSpec, *, embedding: int = 64, fast_hidden: int = 64,
                   slow_hidden: int = 64, z_dim: int = 16, period: int = 10, grad_scale: float = 1.0,
                   head_hidden: int = 64, observation_key: NestedKey = "observation",
                   prev_action_key: NestedKey = "prev_action", prev_reward_key: NestedKey = "prev_reward",
                   is_init_key: NestedKey = "is_init", state_key: str = "ftw"
                   ) -> tuple[TensorDictSequential, ProbabilisticActor, TwoTimescaleModule]:
    """Builds ``(step, actor, core)``: the keyed step (encoder, core, heads), the one-hot categorical actor
    around it (``action``, ``action_log_prob``) and the core module (its ``state_keys()`` and env primer)."""
    n_actions = action_spec.shape[-1]
    encoder = TensorDictModule(_CatMLP(obs_dim + n_actions + 1, embedding, embedding, activate_last=True),
                               in_keys=[observation_key, prev_action_key, prev_reward_key], out_keys=["embedding"])
    core = TwoTimescaleModule(
        TwoTimescaleCore(embedding, fast_hidden=fast_hidden, slow_hidden=slow_hidden, z_dim=z_dim, period=period,
                         grad_scale=grad_scale),
        in_key="embedding", is_init_key=is_init_key, state_key=state_key)
    policy_head = TensorDictModule(_CatMLP(z_dim + fast_hidden, head_hidden, n_actions), in_keys=["z", "hidden"],
                                   out_keys=["logits"])
    value_head = TensorDictModule(_CatMLP(z_dim + fast_hidden, head_hidden, 1), in_keys=["z", "hidden"],
                                  out_keys=["state_value"])
    with torch.no_grad():  # near-uniform initial policy, near-zero values
        policy_head.module.net[-1].weight.mul_(0.01)
        value_head.module.net[-1].weight.mul_(0.1)
    step = TensorDictSequential(encoder, core, policy_head, value_head)
    actor = ProbabilisticActor(step, in_keys=["logits"], out_keys=["action"], distribution_class=OneHotCategorical,
                               spec=action_spec, return_log_prob=True)
    return step, actor, core
