"""MERLIN's core: the memory-based predictor (MBP) and the policy that reads its memory
(Wayne et al. 2018, "Unsupervised Predictive Memory in a Goal-Directed Agent", Methods).

One environment step ``t`` (observation ``o_t``, previous action ``a_{t-1}`` and
reward ``r_{t-1}``), from the carried state ``h_{t-1}`` (the MBP's 2-layer LSTM),
``M_{t-1}`` (the memory, :mod:`latentrl.modules.memory`) and ``h~_{t-1}`` (the
policy's LSTM):

1. the MBP reads ``m_{t-1}`` from ``M_{t-1}`` with ``K`` heads keyed by ``h_{t-1}``;
2. prior ``p(z_t | h_{t-1}, m_{t-1})``, a diagonal Gaussian; the posterior
   ``q(z_t | e_t, h_{t-1}, m_{t-1}, prior)`` is the prior's mean and log-std
   plus a correction computed from ``[e_t, h_{t-1}, m_{t-1}, prior]``, where
   ``e_t`` encodes ``[o_t, a_{t-1}, r_{t-1}]``; ``z_t ~ q`` (reparameterized);
3. ``z_t`` is written to the memory (with the retroactive update): ``M_t``;
4. ``h_t = LSTM([z_t, a_{t-1}, m_{t-1}], h_{t-1})``;
5. decoders of ``z_t`` reconstruct ``o_t``, ``a_{t-1}`` (logits) and
   ``r_{t-1}``; the return decoder (applied by the loss) reads
   ``[z_t, sg(log pi(a_t))]``;
6. the policy: ``h~_t = LSTM(sg(z_t), h~_{t-1})``, one read head keyed by
   ``h~_t`` on ``sg(M_t)``, and the policy logits and the value from
   ``[h~_t, sg(z_t), m~_t]``. The stop-gradients keep the policy gradient out
   of the MBP, and the MBP loss never reads a policy output but the detached
   log-probability, so the two losses update disjoint parameters.

:class:`MerlinCore` runs one step on tensors (:meth:`MerlinCore.step`) and a
``[B, T]`` window from a stored state (:meth:`MerlinCore.unroll`, resetting
at ``is_init``); :class:`MerlinPolicy` is the keyed module a TorchRL collector
runs (state under ``("merlin", ...)`` keys, written to ``("next", ...)``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import TensorDictPrimer

from latentrl.checks import InputError, check_positive_int, check_range, require_keys

from .memory import MemoryState, ReadHeads, memory_reset, memory_write

__all__ = ["MerlinCore", "MerlinPolicy"]

_LSTM_FIELDS = ("mbp_h", "mbp_c", "policy_h", "policy_c")


def _mlp(inp: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inp, hidden), nn.Tanh(), nn.Linear(hidden, out))


class MerlinCore(nn.Module):
    """The MBP and the policy core (see the module docstring); sizes are arguments, the paper's structure fixed.

    Args:
        obs_dim, n_actions: vector observation size, number of discrete actions.
        z_dim: state variable size ``|z|`` (memory rows are ``2|z|`` wide).
        num_rows: memory rows ``N_mem`` (the paper: the episode length).
        hidden: width of the MBP's LSTM layers and of the MLPs.
        policy_hidden: width of the policy's LSTM.
        read_heads: the MBP's ``K`` (paper: 3); the policy has one.
        retro_gamma: discount of the retroactive writes.
    """

    def __init__(self, obs_dim: int, n_actions: int, *, z_dim: int = 32, num_rows: int = 64, hidden: int = 128,
                 policy_hidden: int = 64, read_heads: int = 3, retro_gamma: float = 0.9):
        super().__init__()
        for name, value in dict(obs_dim=obs_dim, n_actions=n_actions, z_dim=z_dim, num_rows=num_rows, hidden=hidden,
                                policy_hidden=policy_hidden, read_heads=read_heads).items():
            check_positive_int("MerlinCore", name, value)
        check_range("MerlinCore", "retro_gamma", retro_gamma, 0.0, 1.0)
        self.obs_dim, self.n_actions, self.z_dim, self.hidden, self.policy_hidden = obs_dim, n_actions, z_dim, hidden, policy_hidden
        self.retro_gamma = float(retro_gamma)
        self.memory_state = MemoryState(num_rows=num_rows, z_dim=z_dim, prefix="memory")
        width, mread = 2 * z_dim, read_heads * 2 * z_dim
        self.encoder = _mlp(obs_dim + n_actions + 1, hidden, hidden)
        self.mbp_read = ReadHeads(hidden, read_heads, width)
        self.prior = _mlp(hidden + mread, hidden, 2 * z_dim)
        self.posterior = _mlp(hidden + hidden + mread + 2 * z_dim, hidden, 2 * z_dim)
        self.mbp_lstm = nn.LSTM(z_dim + n_actions + mread, hidden, num_layers=2)
        self.decode_obs = _mlp(z_dim, hidden, obs_dim)
        self.decode_action = _mlp(z_dim, hidden, n_actions)
        self.decode_reward = _mlp(z_dim, hidden, 1)
        self.decode_return = _mlp(z_dim + 1, hidden, 1)  # [z_t, sg(log pi(a_t))]
        self.policy_lstm = nn.LSTM(z_dim, policy_hidden)
        self.policy_read = ReadHeads(policy_hidden, 1, width)
        head_in = policy_hidden + z_dim + width
        self.policy_head = _mlp(head_in, hidden, n_actions)
        self.value_head = _mlp(head_in, hidden, 1)

    # ---- state ---------------------------------------------------------
    def state_specs(self) -> dict[str, Unbounded]:
        """One env's state: the two LSTMs' ``(h, c)`` and the memory's fields (:meth:`MemoryState.specs`)."""
        lstm = {"mbp_h": (2, self.hidden), "mbp_c": (2, self.hidden), "policy_h": (1, self.policy_hidden),
                "policy_c": (1, self.policy_hidden)}
        specs = {k: Unbounded(shape=s, dtype=torch.float32) for k, s in lstm.items()}
        return {**specs, **{f"memory_{k}": v for k, v in self.memory_state.specs().items()}}

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(spec.shape) for k, spec in self.state_specs().items()}

    def initial_state(self, batch: tuple[int, ...] = (), device=None) -> dict[str, torch.Tensor]:
        return {k: spec.zero(torch.Size(batch)).to(device) for k, spec in self.state_specs().items()}

    def reset(self, state: dict[str, torch.Tensor], is_init: torch.Tensor) -> dict[str, torch.Tensor]:
        return memory_reset(state, is_init)

    # ---- one step --------------------------------------------------------
    def step(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
             state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``obs [*, O]``, ``prev_action [*, A]`` (one-hot), ``prev_reward [*, 1]``; returns ``(outputs, new_state)``."""
        if obs.shape[-1] != self.obs_dim or prev_action.shape[-1] != self.n_actions or prev_reward.shape[-1] != 1:
            raise InputError(f"MerlinCore.step: expected observation [*, {self.obs_dim}], prev_action [*, {self.n_actions}] "
                             f"and prev_reward [*, 1], got {tuple(obs.shape)}, {tuple(prev_action.shape)} and "
                             f"{tuple(prev_reward.shape)}")
        dtype = obs.dtype
        prev_action, prev_reward = prev_action.to(dtype), prev_reward.to(dtype)
        lead = obs.shape[:-1]
        mem = {k: state[f"memory_{k}"] for k in MemoryState.FIELDS}
        h_mbp, c_mbp = state["mbp_h"], state["mbp_c"]  # [*, 2, H]
        top = h_mbp[..., -1, :]
        m_prev, mbp_weights = self.mbp_read(top, mem["memory"])
        mem["usage"] = mem["usage"] + mbp_weights.detach().sum(-2)
        e = self.encoder(torch.cat([obs, prev_action, prev_reward], -1))
        prior_mean, prior_log_std = self.prior(torch.cat([top, m_prev], -1)).chunk(2, -1)
        correction = self.posterior(torch.cat([e, top, m_prev, prior_mean, prior_log_std], -1))
        post_mean, post_log_std = (torch.cat([prior_mean, prior_log_std], -1) + correction).chunk(2, -1)
        prior_std, post_std = F.softplus(prior_log_std) + 1e-3, F.softplus(post_log_std) + 1e-3
        z = post_mean + post_std * torch.randn_like(post_std)
        mem = memory_write(mem, z, self.retro_gamma)
        lstm_in = torch.cat([z, prev_action, m_prev], -1).reshape(1, -1, self.mbp_lstm.input_size)
        hc = (h_mbp.reshape(-1, 2, self.hidden).transpose(0, 1).contiguous(),
              c_mbp.reshape(-1, 2, self.hidden).transpose(0, 1).contiguous())
        _, (h_new, c_new) = self.mbp_lstm(lstm_in, hc)
        # the policy: its own LSTM on sg(z), one read of sg(M_t)
        z_sg = z.detach()
        ph = (state["policy_h"].reshape(-1, 1, self.policy_hidden).transpose(0, 1).contiguous(),
              state["policy_c"].reshape(-1, 1, self.policy_hidden).transpose(0, 1).contiguous())
        p_out, (ph_new, pc_new) = self.policy_lstm(z_sg.reshape(1, -1, self.z_dim), ph)
        p_out = p_out[0].reshape(*lead, self.policy_hidden)
        m_pol, pol_weights = self.policy_read(p_out, mem["memory"].detach())
        mem["usage"] = mem["usage"] + pol_weights.detach().sum(-2)
        head_in = torch.cat([p_out, z_sg, m_pol], -1)
        outputs = {
            "prior_mean": prior_mean, "prior_std": prior_std, "post_mean": post_mean, "post_std": post_std, "z": z,
            "obs_pred": self.decode_obs(z), "prev_action_logits": self.decode_action(z),
            "prev_reward_pred": self.decode_reward(z), "logits": self.policy_head(head_in),
            "state_value": self.value_head(head_in), "mbp_read_weights": mbp_weights,
            "policy_read_weights": pol_weights,
        }
        new_state = {
            "mbp_h": h_new.transpose(0, 1).reshape(*lead, 2, self.hidden),
            "mbp_c": c_new.transpose(0, 1).reshape(*lead, 2, self.hidden),
            "policy_h": ph_new.transpose(0, 1).reshape(*lead, 1, self.policy_hidden),
            "policy_c": pc_new.transpose(0, 1).reshape(*lead, 1, self.policy_hidden),
            **{f"memory_{k}": v for k, v in mem.items()},
        }
        return outputs, new_state

    def return_prediction(self, z: torch.Tensor, action_log_prob: torch.Tensor) -> torch.Tensor:
        """The return decoder ``R(z_t, sg(log pi(a_t)))``, ``[*, 1]``."""
        return self.decode_return(torch.cat([z, action_log_prob.detach().reshape(*z.shape[:-1], 1).to(z.dtype)], -1))

    def unroll(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor, is_init: torch.Tensor,
               state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Steps over a ``[B, T]`` window from ``state`` (``[B, ...]``, the state before step 0), resetting at
        ``is_init [B, T, 1]``; returns the stacked outputs ``[B, T, ...]`` and the state after the last step."""
        if obs.dim() < 3:
            raise InputError(f"MerlinCore.unroll: expected a window observation [B, T, O], got {tuple(obs.shape)}")
        outs = []
        for t in range(obs.shape[1]):
            state = self.reset(state, is_init[:, t])
            out, state = self.step(obs[:, t], prev_action[:, t], prev_reward[:, t], state)
            outs.append(out)
        return {k: torch.stack([o[k] for o in outs], 1) for k in outs[0]}, state


class MerlinPolicy(TensorDictModuleBase):
    """The keyed MERLIN step a collector runs: state under ``(state_key, <field>)``, new state to ``("next", ...)``.

    Reads ``observation_key``, ``prev_action_key``, ``prev_reward_key`` (see
    :class:`~latentrl.envs.previous.PreviousActionReward`), ``is_init_key``
    and the state; writes ``"logits"`` and ``"state_value"`` (the actor's
    inputs, e.g. a ``ProbabilisticActor`` reading ``"logits"``), ``"z"`` and
    the read weights. :meth:`make_tensordict_primer` gives the env its zero state.
    """

    def __init__(self, core: MerlinCore, *, observation_key: NestedKey = "observation",
                 prev_action_key: NestedKey = "prev_action", prev_reward_key: NestedKey = "prev_reward",
                 is_init_key: NestedKey = "is_init", state_key: str = "merlin"):
        super().__init__()
        self.core, self.state_key = core, state_key
        self.observation_key, self.prev_action_key, self.prev_reward_key, self.is_init_key = (
            observation_key, prev_action_key, prev_reward_key, is_init_key)
        self.fields = list(core.state_shapes())
        self.in_keys = [observation_key, prev_action_key, prev_reward_key, is_init_key] + self.state_keys()
        self.out_keys = ["logits", "state_value", "z", "mbp_read_weights", "policy_read_weights"] + self.state_keys(True)

    def state_keys(self, next_: bool = False) -> list[NestedKey]:
        return [("next", self.state_key, f) if next_ else (self.state_key, f) for f in self.fields]

    def read_state(self, tensordict: TensorDictBase, owner: str = "MerlinPolicy") -> dict[str, torch.Tensor]:
        require_keys(owner, tensordict, {f"state ({self.state_key}, {f})": (self.state_key, f) for f in self.fields})
        return {f: tensordict.get((self.state_key, f)) for f in self.fields}

    def make_tensordict_primer(self) -> TensorDictPrimer:
        return TensorDictPrimer(Composite({self.state_key: Composite(self.core.state_specs())}), expand_specs=True)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = {"observation_key": self.observation_key, "prev_action_key": self.prev_action_key,
                "prev_reward_key": self.prev_reward_key, "is_init_key": self.is_init_key}
        require_keys("MerlinPolicy", tensordict, keys)
        state = self.core.reset(self.read_state(tensordict), tensordict.get(self.is_init_key))
        out, new_state = self.core.step(tensordict.get(self.observation_key), tensordict.get(self.prev_action_key),
                                        tensordict.get(self.prev_reward_key), state)
        for k in ("logits", "state_value", "z", "mbp_read_weights", "policy_read_weights"):
            tensordict.set(k, out[k])
        for f, v in new_state.items():
            tensordict.set(("next", self.state_key, f), v)
        return tensordict
