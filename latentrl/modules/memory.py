"""MERLIN's external memory with retroactive writes (Wayne et al. 2018, "Unsupervised
Predictive Memory in a Goal-Directed Agent", Methods: "Memory").

The memory ``M`` is ``N`` rows of width ``2|z|``, batched over environments.
One step, with ``K`` read heads:

- **read** (:func:`memory_read`): from a query (an LSTM output) the heads emit
  keys ``k_i`` of width ``2|z|`` and strengths ``beta_i = softplus(.)``; the
  read weights are ``w_i = softmax_j(beta_i * cos(k_i, M_j))`` and the read
  vectors ``m_i = M^T w_i``. Every read adds its weights to the rows' usage.
- **write** (:func:`memory_write`) of the new state variable ``z_t``: the
  retroactive weights are ``v_ret <- gamma * v_ret + (1 - gamma) * v_wr(prev)``,
  the write weights ``v_wr`` are one-hot at the write row, and
  ``M <- M + v_wr [z_t, 0] + v_ret [0, z_t]``: the first half of the written
  row holds ``z_t``, the second half of the rows written earlier accumulates
  the discounted future ``z`` (what came after).

Where the paper leaves the rule open we choose: rows are written in order
until the memory is full (an empty row has no content to keep), then the
least-used row; an overwritten row is cleared (both halves, and its
retroactive weight), and a written row's usage is set to the current maximum,
so that it is not overwritten again before it has been read.

The state is five tensors, carried as TensorDict keys by collectors
(:class:`MemoryState` names them and makes the env primer) and reset to zero
at ``is_init`` (:func:`memory_reset`, :class:`MemoryReset`): ``memory [*, N, 2|z|]``, ``usage``,
``retro`` (``v_ret``) and ``write`` (``v_wr`` of the last write), each
``[*, N]``, and ``filled [*, 1]`` (rows written so far).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import TensorDictPrimer

from latentrl.checks import InputError, check_positive_int, check_range, require_keys

__all__ = ["memory_read", "memory_write", "memory_reset", "MemoryState", "ReadHeads", "MemoryReset", "MemoryReader",
           "MemoryWriter"]

_EPS = 1e-6


def memory_read(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Content-based reads: ``(reads [*, K, W], weights [*, K, N])``.

    ``memory [*, N, W]``, ``keys [*, K, W]``, ``strengths [*, K]`` (``beta >= 0``).
    Cosine similarity with a small epsilon in the norms, so an empty row has
    similarity 0.
    """
    if memory.dim() < 2 or keys.dim() < 2 or keys.shape[-1] != memory.shape[-1]:
        raise InputError(f"memory_read: `keys` [*, K, W] must match `memory` [*, N, W] in W, got keys {tuple(keys.shape)} "
                         f"and memory {tuple(memory.shape)}")
    if strengths.shape != keys.shape[:-1]:
        raise InputError(f"memory_read: `strengths` must have shape keys.shape[:-1] = {tuple(keys.shape[:-1])} (one per "
                         f"key), got {tuple(strengths.shape)}")
    cos = F.normalize(keys, dim=-1, eps=_EPS) @ F.normalize(memory, dim=-1, eps=_EPS).transpose(-1, -2)
    weights = torch.softmax(strengths.unsqueeze(-1) * cos, dim=-1)
    return weights @ memory, weights


def memory_write(state: dict[str, torch.Tensor], z: torch.Tensor, gamma: float) -> dict[str, torch.Tensor]:
    """Writes ``z [*, |z|]`` with the retroactive update; returns the new state (see the module docstring).

    ``state`` holds ``memory [*, N, 2|z|]``, ``usage``, ``retro``, ``write``
    ``[*, N]`` and ``filled [*, 1]``. Gradients flow into the memory content
    (``z``); the addressing (usage, write row) is not differentiable.
    """
    memory, usage, retro, prev_write, filled = (state[k] for k in MemoryState.FIELDS)
    n, width = memory.shape[-2], memory.shape[-1]
    if z.shape[-1] * 2 != width or z.shape[:-1] != memory.shape[:-2]:
        raise InputError(f"memory_write: `z` must be [*, {width // 2}] (half the memory width, batch "
                         f"{tuple(memory.shape[:-2])}), got {tuple(z.shape)}")
    row = torch.where(filled.squeeze(-1) < n, filled.squeeze(-1).long(), usage.argmin(-1))
    v_wr = F.one_hot(row, n).to(memory.dtype)
    keep = 1.0 - v_wr
    v_ret = (gamma * retro + (1.0 - gamma) * prev_write) * keep
    zeros = torch.zeros_like(z)
    memory = (memory * keep.unsqueeze(-1) + v_wr.unsqueeze(-1) * torch.cat([z, zeros], -1).unsqueeze(-2)
              + v_ret.unsqueeze(-1) * torch.cat([zeros, z], -1).unsqueeze(-2))
    top = usage.max(-1, keepdim=True).values
    usage = usage * keep + v_wr * top
    return {"memory": memory, "usage": usage, "retro": v_ret, "write": v_wr,
            "filled": torch.clamp(filled + 1, max=n)}


def memory_reset(state: dict[str, torch.Tensor], is_init: torch.Tensor) -> dict[str, torch.Tensor]:
    """Zeroes every state tensor where ``is_init [*, 1]`` is set (a new episode)."""
    if is_init.dtype != torch.bool:
        raise InputError(f"memory_reset: `is_init` must be a bool tensor, got {is_init.dtype}")
    out = {}
    for name, value in state.items():
        mask = is_init.reshape(*is_init.shape[:-1], *([1] * (value.dim() - is_init.dim() + 1)))
        out[name] = torch.where(mask, torch.zeros_like(value), value)
    return out


@dataclass(frozen=True)
class MemoryState:
    """The tensordict keys of one memory's state (``prefix/<field>``), and its env primer."""

    num_rows: int
    z_dim: int
    prefix: str = "memory"
    FIELDS = ("memory", "usage", "retro", "write", "filled")

    def key(self, field: str, next_: bool = False) -> NestedKey:
        if field not in self.FIELDS:
            raise KeyError(f"MemoryState: no field {field!r}; fields: {', '.join(self.FIELDS)}")
        return ("next", self.prefix, field) if next_ else (self.prefix, field)

    def keys(self, next_: bool = False) -> list[NestedKey]:
        return [self.key(f, next_) for f in self.FIELDS]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        n = self.num_rows
        return {"memory": (n, 2 * self.z_dim), "usage": (n,), "retro": (n,), "write": (n,), "filled": (1,)}

    def specs(self) -> dict[str, Unbounded]:
        """One env's state tensors: ``filled`` is an integer count, the rest float32."""
        return {f: Unbounded(shape=s, dtype=torch.long if f == "filled" else torch.float32)
                for f, s in self.shapes().items()}

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """Zero initial state for every env (append it to the env with an ``InitTracker``)."""
        return TensorDictPrimer(Composite({self.prefix: Composite(self.specs())}), expand_specs=True)

    def read(self, tensordict: TensorDictBase, owner: str, next_: bool = False) -> dict[str, torch.Tensor]:
        keys = {f: self.key(f, next_) for f in self.FIELDS}
        require_keys(owner, tensordict, keys)
        state = {f: tensordict.get(k) for f, k in keys.items()}
        for f, shape in self.shapes().items():
            if tuple(state[f].shape[-len(shape):]) != shape:
                raise InputError(f"{owner}: {keys[f]!r} must end in {shape} (num_rows={self.num_rows}, "
                                 f"z_dim={self.z_dim}), got {tuple(state[f].shape)}")
        return state

    def write(self, tensordict: TensorDictBase, state: dict[str, torch.Tensor], next_: bool = False) -> None:
        for f in self.FIELDS:
            tensordict.set(self.key(f, next_), state[f])


class ReadHeads(nn.Module):
    """``K`` read heads: a linear layer from the query to ``K`` keys of width ``W`` and their
    strengths ``softplus(.)``, then :func:`memory_read`. Returns ``(reads [*, K * W], weights [*, K, N])``."""

    def __init__(self, query_dim: int, num_heads: int, width: int):
        super().__init__()
        self.num_heads, self.width = num_heads, width
        self.linear = nn.Linear(query_dim, num_heads * (width + 1))

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(query)
        keys = out[..., : self.num_heads * self.width].unflatten(-1, (self.num_heads, self.width))
        reads, weights = memory_read(memory, keys, F.softplus(out[..., self.num_heads * self.width :]))
        return reads.flatten(-2), weights


class MemoryReader(TensorDictModuleBase):
    """``K`` read heads on a memory, by keys: query -> keys, strengths -> read vectors, usage.

    Reads ``query_key [*, Q]`` and the memory state (``state``'s keys, or
    their ``("next", ...)`` versions with ``from_next=True``: the memory after
    this step's write); writes ``read_key [*, K * 2|z|]`` (the read vectors,
    concatenated), ``weights_key [*, K, N]`` and the updated usage in place.
    """

    def __init__(self, state: MemoryState, query_dim: int, num_heads: int, *, query_key: NestedKey,
                 read_key: NestedKey, weights_key: NestedKey, from_next: bool = False):
        super().__init__()
        check_positive_int("MemoryReader", "num_heads", num_heads)
        check_positive_int("MemoryReader", "query_dim", query_dim)
        self.state, self.from_next = state, from_next
        self.heads = ReadHeads(query_dim, num_heads, 2 * state.z_dim)
        self.query_key, self.read_key, self.weights_key = query_key, read_key, weights_key
        self.in_keys = [query_key, *state.keys(from_next)]
        self.out_keys = [read_key, weights_key, state.key("usage", from_next)]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        require_keys("MemoryReader", tensordict, {"query_key": self.query_key})
        state = self.state.read(tensordict, "MemoryReader", self.from_next)
        reads, weights = self.heads(tensordict.get(self.query_key), state["memory"])
        tensordict.set(self.read_key, reads)
        tensordict.set(self.weights_key, weights)
        tensordict.set(self.state.key("usage", self.from_next), state["usage"] + weights.detach().sum(-2))
        return tensordict


class MemoryReset(TensorDictModuleBase):
    """Zeroes the memory state in place where ``is_init_key`` is set: the first module of a step."""

    def __init__(self, state: MemoryState, *, is_init_key: NestedKey = "is_init"):
        super().__init__()
        self.state, self.is_init_key = state, is_init_key
        self.in_keys = [is_init_key, *state.keys()]
        self.out_keys = state.keys()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        require_keys("MemoryReset", tensordict, {"is_init_key": self.is_init_key})
        state = self.state.read(tensordict, "MemoryReset")
        self.state.write(tensordict, memory_reset(state, tensordict.get(self.is_init_key)))
        return tensordict


class MemoryWriter(TensorDictModuleBase):
    """Writes ``z_key`` into the memory (:func:`memory_write`); the new state goes to ``("next", ...)``."""

    def __init__(self, state: MemoryState, *, z_key: NestedKey, gamma: float = 0.9):
        super().__init__()
        check_range("MemoryWriter", "gamma", gamma, 0.0, 1.0)
        self.state, self.gamma, self.z_key = state, float(gamma), z_key
        self.in_keys = [z_key, *state.keys()]
        self.out_keys = state.keys(next_=True)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        require_keys("MemoryWriter", tensordict, {"z_key": self.z_key})
        state = self.state.read(tensordict, "MemoryWriter")
        self.state.write(tensordict, memory_write(state, tensordict.get(self.z_key), self.gamma), next_=True)
        return tensordict
