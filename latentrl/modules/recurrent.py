"""Recurrent actor-critic: the "RL-LSTM" baseline of the MERLIN paper.

Wayne et al. 2018 ("Unsupervised predictive memory in a goal-directed agent",
Section 4 and Appendix) compare MERLIN against RL-LSTM, an actor-critic whose
policy and value read the state of an LSTM over observations. Here each of
the actor and the critic has its own TorchRL ``LSTMModule`` (its recurrent
state is a pair of tensordict keys the collector carries, reset at
``is_init``), followed by an MLP head. ``recurrent=False`` swaps the LSTM for
a feed-forward layer of the same width: the memoryless control.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.data import TensorSpec
from torchrl.envs.transforms import TensorDictPrimer
from torchrl.modules import MLP, LSTMModule, OneHotCategorical, ProbabilisticActor

__all__ = ["make_actor_critic", "recurrent_primers"]


def _encoder(
    name: str, obs_key: str, obs_dim: int, hidden_size: int, recurrent: bool
) -> TensorDictModule:
    out_key = f"{name}_embedding"
    if recurrent:
        return LSTMModule(
            input_size=obs_dim,
            hidden_size=hidden_size,
            in_keys=[obs_key, f"{name}_h", f"{name}_c"],
            out_keys=[out_key, ("next", f"{name}_h"), ("next", f"{name}_c")],
        )
    return TensorDictModule(
        nn.Sequential(nn.Linear(obs_dim, hidden_size), nn.Tanh()), in_keys=[obs_key], out_keys=[out_key]
    )


def make_actor_critic(
    obs_dim: int,
    action_spec: TensorSpec,
    *,
    hidden_size: int = 64,
    head_units: Sequence[int] = (64,),
    recurrent: bool = True,
    obs_key: str = "observation",
) -> tuple[ProbabilisticActor, TensorDictSequential]:
    """Builds the actor (one-hot categorical policy) and the critic.

    Args:
        obs_dim: size of the vector observation under ``obs_key``.
        action_spec: the env's one-hot action spec.
        hidden_size: LSTM (or feed-forward layer) width.
        head_units: hidden layers of the policy and value MLP heads.
        recurrent: LSTM encoder (True) or feed-forward control (False).

    Returns:
        ``(actor, critic)``. The actor writes ``logits``, ``action`` and
        ``action_log_prob``; the critic writes ``state_value``. With
        ``recurrent=True`` append :func:`recurrent_primers` to the env.
    """
    n_actions = action_spec.shape[-1]
    actor_encoder = _encoder("actor", obs_key, obs_dim, hidden_size, recurrent)
    critic_encoder = _encoder("critic", obs_key, obs_dim, hidden_size, recurrent)
    policy_head = TensorDictModule(
        MLP(in_features=hidden_size, out_features=n_actions, num_cells=list(head_units), activation_class=nn.Tanh),
        in_keys=["actor_embedding"],
        out_keys=["logits"],
    )
    value_head = TensorDictModule(
        MLP(in_features=hidden_size, out_features=1, num_cells=list(head_units), activation_class=nn.Tanh),
        in_keys=["critic_embedding"],
        out_keys=["state_value"],
    )
    actor = ProbabilisticActor(
        TensorDictSequential(actor_encoder, policy_head),
        in_keys=["logits"],
        out_keys=["action"],
        distribution_class=OneHotCategorical,
        spec=action_spec,
        return_log_prob=True,
    )
    critic = TensorDictSequential(critic_encoder, value_head)
    # small last layers: near-uniform initial policy and near-zero values
    with torch.no_grad():
        policy_head.module[-1].weight.mul_(0.01)
        value_head.module[-1].weight.mul_(0.1)
    return actor, critic


def recurrent_primers(*modules: TensorDictModule) -> list[TensorDictPrimer]:
    """The env primers that hold the recurrent state of every LSTM inside ``modules``."""
    primers = []
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, LSTMModule):
                primers.append(sub.make_tensordict_primer())
    return primers
