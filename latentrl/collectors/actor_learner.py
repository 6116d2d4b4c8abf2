"""IMPALA's actor-learner split on TorchRL collectors, with measured policy lag.

Espeholt et al. 2018 (Section 3): actors run copies of the policy ``mu`` and
send unrolls of ``n`` steps (paper: 20) with the behaviour log-probabilities;
the learner trains on batches of unrolls and pushes its weights back to the
actors now and then. Because acting and learning overlap, the policy that
acted lags behind the learner's, and V-trace corrects for it.

:class:`ActorLearner` wires that up from TorchRL parts:

* ``backend="sync"``: one :class:`~torchrl.collectors.Collector` in the
  learner's process, collecting after each learner step with its own copy
  of the policy (no lag with ``sync_interval=1``; between pushes it acts
  with the last pushed weights, as remote actors would);
* ``backend="multiprocess"``: ``num_actors`` processes under a
  :class:`~torchrl.collectors.MultiAsyncCollector` that keep acting while the
  learner trains;
* ``backend="ray"``: the same actors as TorchRL's Ray-based
  :class:`~torchrl.collectors.distributed.RayCollector`, for users who outgrow
  one machine (tested against a local Ray instance). It joins a Ray instance
  already running in the process, or starts a local one
  (``num_cpus=num_actors + 1``, no dashboard) that :meth:`ActorLearner.shutdown`
  shuts down again.

Every frame is stamped with the version of the weights that produced it by
TorchRL's ``track_policy_version`` (``("next", "policy_version")``, bumped in
each actor when it loads new weights). The learner counts its updates; the **policy
lag** of a frame is the learner's update count when the frame is consumed
minus the update count at which the acting weights were pushed. It is
written into every batch (``"policy_lag"``, per frame) and accumulated in
:attr:`ActorLearner.lag_counts` for a histogram.
"""
from __future__ import annotations

import copy
from collections import Counter
from typing import Callable, Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector, MultiAsyncCollector

__all__ = ["ActorLearner", "BACKENDS"]

BACKENDS = ("sync", "multiprocess", "ray")


class ActorLearner:
    """Batches of unrolls from actors, weight pushes, and the policy lag of every frame.

    Args:
        create_env_fn: a callable building one actor's environment (batched
            environments welcome: each of its ``E`` envs yields one unroll per
            collection).
        policy: the actor (a TensorDict module writing the action and its
            log-probability, e.g. ``ProbabilisticActor(return_log_prob=True)``).
            Train this module in place: each push sends its current weights, and
            the actors act with copies that change only on a push.
        unroll_length: ``n``, steps per unroll (paper: 20).
        batch_size: unrolls per learner batch (paper: 32).
        total_frames: frames to collect over the run (``-1``: forever).
        backend: ``"sync"``, ``"multiprocess"`` or ``"ray"``.
        num_actors: actor processes (``multiprocess``, ``ray``).
        envs_per_actor: the batch size of ``create_env_fn()``'s env (to size
            collections in whole unrolls; read from the env when ``None``).
        sync_interval: learner updates between weight pushes (1: every update).
        device: where the actors run the policy.
        collector_kwargs: extra keyword arguments for the TorchRL collector.

    Iterate to get ``[batch_size, unroll_length]`` TensorDicts; call
    :meth:`learner_step` after every update of the policy (it pushes weights
    every ``sync_interval`` updates). Call :meth:`shutdown` at the end (a
    ``MultiAsyncCollector`` left running can hang at interpreter exit).
    """

    def __init__(
        self,
        create_env_fn: Callable,
        policy: TensorDictModuleBase,
        *,
        unroll_length: int = 20,
        batch_size: int = 32,
        total_frames: int = -1,
        backend: str = "multiprocess",
        num_actors: int = 2,
        envs_per_actor: int | None = None,
        sync_interval: int = 1,
        device: str | torch.device = "cpu",
        collector_kwargs: dict | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"ActorLearner: `backend` must be one of {list(BACKENDS)}, got {backend!r}")
        for name, value in (("unroll_length", unroll_length), ("batch_size", batch_size), ("sync_interval", sync_interval)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ActorLearner: `{name}` must be a positive integer, got {value!r}")
        if backend != "sync" and (not isinstance(num_actors, int) or num_actors < 1):
            raise ValueError(f"ActorLearner: `num_actors` must be a positive integer, got {num_actors!r}")
        if envs_per_actor is None:
            probe = create_env_fn()
            envs_per_actor = max(1, probe.batch_size.numel())
            probe.close()
        self.policy = policy
        self.unroll_length = unroll_length
        self.batch_size = batch_size
        self.sync_interval = sync_interval
        self.backend = backend
        self.updates = 0  # learner updates so far
        self._pushed_at = [0]  # learner update count of each pushed version (version 0: the initial weights)
        self.lag_counts: Counter[int] = Counter()
        frames_per_batch = envs_per_actor * unroll_length
        kwargs = dict(
            frames_per_batch=frames_per_batch,
            total_frames=total_frames,
            device=device,
            track_policy_version=True,
            **(collector_kwargs or {}),
        )
        if backend == "sync":
            # the actor gets its own copy: sharing the learner's module would make every update act
            # at once, whatever the pushes (and sync_interval > 1 would stamp a lag that is not there)
            self.collector = Collector(create_env_fn(), copy.deepcopy(policy), **kwargs)
        elif backend == "multiprocess":
            self.collector = MultiAsyncCollector([create_env_fn] * num_actors, policy, **kwargs)
        else:
            from torchrl.collectors.distributed import RayCollector

            for key in ("track_policy_version", "device", "total_frames"):
                kwargs.pop(key)
            self.collector = RayCollector(
                [create_env_fn] * num_actors,
                policy,
                frames_per_batch=kwargs.pop("frames_per_batch"),
                # RayCollector loops `while collected < total_frames`: -1 would yield nothing
                total_frames=total_frames if total_frames >= 0 else float("inf"),
                collector_class=Collector,
                collector_kwargs={"track_policy_version": True, "device": device, **kwargs},
                sync=False,
                ray_init_config={"num_cpus": num_actors + 1, "include_dashboard": False},
            )
            # connect the weight-sync channel now (the actors already hold the initial weights, and
            # their version stays 0); otherwise the first push connects it mid-run and TorchRL
            # warns that iteration started before weight synchronization was initialized
            init_sync = getattr(self.collector, "_lazy_initialize_weight_sync", None)
            if init_sync is not None:
                init_sync()

    # ------------------------------------------------------------------ learner side
    @property
    def version(self) -> int:
        """The number of weight pushes so far (the version the actors converge to)."""
        return len(self._pushed_at) - 1

    def learner_step(self) -> None:
        """Count one learner update; push the weights every ``sync_interval`` updates."""
        self.updates += 1
        if self.updates % self.sync_interval == 0:
            self.push_weights()

    def push_weights(self) -> None:
        """Send the learner's current weights to the actors now (e.g. after loading a checkpoint)."""
        if self.backend == "sync":  # copy the learner's weights into the actor's copy
            self.collector.update_policy_weights_(TensorDict.from_module(self.policy).data)
        else:  # the collectors hold the learner's weights and send them to their actors
            self.collector.update_policy_weights_()
        self._pushed_at.append(self.updates)

    def _stamp_lag(self, batch: TensorDictBase) -> TensorDictBase:
        # the version stamped when the env stepped with the action of frame t: ("next", "policy_version")
        # (the root entry was stamped when the observation was produced, possibly before a weight push)
        version = batch.get(("next", "policy_version")).reshape(batch.shape).long()
        pushed_at = torch.as_tensor(self._pushed_at, device=version.device)
        lag = self.updates - pushed_at[version.clamp(0, len(self._pushed_at) - 1)]
        batch.set("policy_lag", lag)
        self.lag_counts.update(lag.flatten().tolist())
        return batch

    def __iter__(self) -> Iterator[TensorDictBase]:
        pending: list[TensorDictBase] = []
        count = 0
        for data in self.collector:
            data = data.reshape(-1, data.shape[-1])  # [unrolls, n]
            pending.append(data)
            count += data.shape[0]
            while count >= self.batch_size:
                batch = torch.cat(pending, 0) if len(pending) > 1 else pending[0]
                out, rest = batch[: self.batch_size], batch[self.batch_size :]
                pending, count = ([rest] if rest.shape[0] else []), rest.shape[0]
                yield self._stamp_lag(out.clone())

    def lag_histogram(self) -> dict[int, int]:
        """``{lag: number of frames}`` over everything consumed so far."""
        return dict(sorted(self.lag_counts.items()))

    def mean_lag(self) -> float:
        total = sum(self.lag_counts.values())
        return sum(k * v for k, v in self.lag_counts.items()) / total if total else 0.0

    def shutdown(self) -> None:
        """Stop the actors (idempotent). A Ray instance started by the collector is shut down with it."""
        collector = self.__dict__.pop("collector", None)
        if collector is not None:
            collector.shutdown()
