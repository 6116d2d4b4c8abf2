"""Complete, safely loadable states of TorchRL collectors and replay buffers.

Collectors
----------

``Collector.state_dict()`` (TorchRL 0.14.1) stores the transforms, the policy
weights and the frame counters, but not the tensordict the collector carries
between batches (current observation, recurrent state, running episode
return) nor the simulator state, so a collector rebuilt from it starts new
episodes (``UPSTREAM.md``, "Collector.state_dict";
``tests/upstream/test_collector_state.py``). :func:`collector_state` adds both;
:func:`load_collector_state` restores them, so the next batch is the one the
original collector would have produced.

Replay buffers
--------------
``ReplayBuffer.state_dict()`` with a prioritized sampler holds TorchRL's C++
segment trees as objects, which ``torch.load(weights_only=True)`` refuses
(``UPSTREAM.md``, "PrioritizedSampler.state_dict"). :func:`replay_buffer_state`
stores their leaves as tensors instead; :func:`load_replay_buffer_state`
rebuilds the trees.
"""
from __future__ import annotations

import warnings

import torch
import torchrl._torchrl as _trees
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.data import ReplayBuffer

from latentrl.envs.snapshot import SnapshotUnsupported, env_state, load_env_state

__all__ = ["collector_state", "load_collector_state", "replay_buffer_state", "load_replay_buffer_state"]


def _require_single(collector) -> None:
    if not isinstance(collector, Collector):
        raise TypeError(
            "collector_state supports torchrl.collectors.Collector (single process); "
            f"got {type(collector).__name__}"
        )


def collector_state(collector: Collector) -> dict:
    """``collector.state_dict()`` plus the carried tensordict and the simulator state.

    The result holds only tensors, numbers and strings: it round-trips through
    ``torch.save``/``torch.load(weights_only=True)``.
    """
    _require_single(collector)
    carrier = collector._carrier
    try:
        simulator = env_state(collector.env)
    except SnapshotUnsupported as err:
        warnings.warn(
            f"collector_state: the simulator state of {type(collector.env).__name__} cannot be saved ({err}); "
            "a run resumed from this checkpoint restarts its episodes.",
            stacklevel=2,
        )
        simulator = None
    return {
        "state_dict": collector.state_dict(),
        "carrier": carrier.to_dict(),
        "carrier_batch_size": list(carrier.batch_size),
        "simulator": simulator,
    }


def load_collector_state(collector: Collector, state: dict) -> None:
    """Restores what :func:`collector_state` saved on a collector built the same way."""
    _require_single(collector)
    collector.load_state_dict(state["state_dict"])
    carrier = TensorDict.from_dict(
        state["carrier"], batch_size=state["carrier_batch_size"], device=collector._carrier.device
    )
    collector._carrier.update(carrier)
    # load_state_dict allocates new trajectory ids for what it assumes are new
    # episodes; ours continue, so the id counter goes back to its saved value.
    traj_pool = state["state_dict"].get("traj_pool")
    if traj_pool is not None and getattr(collector, "track_traj_ids", False):
        collector._traj_pool.load_state_dict(traj_pool)
    if state["simulator"] is not None:
        load_env_state(collector.env, state["simulator"])


def _is_segment_tree(obj) -> bool:
    return type(obj).__module__ == _trees.__name__ and "SegmentTree" in type(obj).__name__


def _map_dict(obj: dict, fn) -> dict:
    """``{k: fn(v)}`` keeping the dict type and the ``_metadata`` that
    TensorDict/nn.Module state dicts carry (it holds the batch size)."""
    out = type(obj)((k, fn(v)) for k, v in obj.items())
    if hasattr(obj, "_metadata"):
        out._metadata = obj._metadata
    return out


def _encode_trees(obj):
    if _is_segment_tree(obj):
        return {"__segment_tree__": type(obj).__name__, "values": obj[torch.arange(obj.capacity)]}
    if isinstance(obj, dict):
        return _map_dict(obj, _encode_trees)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode_trees(v) for v in obj)
    return obj


def _decode_trees(obj):
    if isinstance(obj, dict):
        if "__segment_tree__" in obj:
            values = obj["values"]
            tree = getattr(_trees, obj["__segment_tree__"])(values.numel())
            tree[torch.arange(values.numel())] = values
            return tree
        return _map_dict(obj, _decode_trees)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode_trees(v) for v in obj)
    return obj


def replay_buffer_state(buffer: ReplayBuffer) -> dict:
    """``buffer.state_dict()`` with segment trees stored as tensors (weights_only-safe)."""
    return _encode_trees(buffer.state_dict())


def load_replay_buffer_state(buffer: ReplayBuffer, state: dict) -> None:
    """Restores what :func:`replay_buffer_state` saved."""
    buffer.load_state_dict(_decode_trees(state))
