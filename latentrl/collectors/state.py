"""Complete, safely loadable state of a single-process TorchRL ``Collector``.

``Collector.state_dict()`` (TorchRL 0.14.1) stores the transforms, the policy
weights and the frame counters, but not the tensordict the collector carries
between batches (current observation, recurrent state, running episode
return) nor the simulator state, so a collector rebuilt from it starts new
episodes (``UPSTREAM.md``, "Collector.state_dict";
``tests/upstream/test_collector_state.py``). :func:`collector_state` adds both;
:func:`load_collector_state` restores them, so the next batch is the one the
original collector would have produced.
"""
from __future__ import annotations

import warnings

from tensordict import TensorDict
from torchrl.collectors import Collector

from latentrl.envs.snapshot import SnapshotUnsupported, env_state, load_env_state

__all__ = ["collector_state", "load_collector_state"]


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
    if state["simulator"] is not None:
        load_env_state(collector.env, state["simulator"])
