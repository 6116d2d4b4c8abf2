"""V-trace as a TorchRL value estimator (Espeholt et al. 2018, IMPALA).

A drop-in for :class:`torchrl.objectives.value.VTrace` that

* evaluates the learner's ``log pi`` at the action the actor took (TorchRL's
  evaluates it at a new sample, or at the mode, of the current policy:
  UPSTREAM.md #9),
* adds ``pg_rho_bar``, the separate clip of the policy-gradient weights
  (rlax's ``clip_pg_rho_threshold``), and ``lmbda`` (rlax's ``lambda_``:
  ``c_i = lambda min(c_bar, rho_i)``), and writes the q-estimate,
* names the clips as the paper does (``rho_bar``, ``c_bar``), and
* runs the recursion by :func:`latentrl.objectives.functional.vtrace`.

TorchRL's ``VTrace.forward`` computes ``log pi`` inline (``_call_actor_net``)
and calls its functional directly, with no method between them to
override, so ``forward`` is restated here: TorchRL's value-network
plumbing (``_call_value_nets``, shifted calls, ``average_adv``) is reused
unchanged; only :meth:`VTrace.target_log_prob` and the estimate differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase, is_tensor_collection
from tensordict.nn import CompositeDistribution, dispatch, set_composite_lp_aggregate
from tensordict.utils import NestedKey
from torchrl.objectives.utils import _maybe_get_or_select, hold_out_net
from torchrl.objectives.value import VTrace as _TorchRLVTrace
from torchrl.objectives.value.advantages import (
    _self_set_grad_enabled,
    _self_set_skip_existing,
    _standardize_by_group,
)

from latentrl.objectives.functional import vtrace

__all__ = ["VTrace"]


class VTrace(_TorchRLVTrace):
    """V-trace targets and advantages (Espeholt et al. 2018, eq. 1 and Sec. 4.2).

    Writes ``"value_target"`` (``v_s``) and ``"advantage"``
    (``min(pg_rho_bar, pi/mu) (q_s - V(x_s))``) like TorchRL's
    ``VTrace``, and ``"q_estimate"`` (``q_s``); see :func:`latentrl.objectives.functional.vtrace` for the
    equations and the episode-boundary rules.

    ``log mu`` is read from the ``sample_log_prob`` key (the log-probability
    the acting policy stored with its action); ``log pi`` is the current
    ``actor_network``'s log-probability of the stored ``action``.

    Keyword Args:
        gamma: discount.
        actor_network: the learner's policy (a ``ProbabilisticTensorDictSequential``
            / ``ProbabilisticActor``: it must provide ``get_dist``).
        value_network: the critic ``V``.
        rho_bar: clip of the importance weights in the TD errors, sets the
            fixed point. Paper: 1.0 (Sec. 5, all experiments).
        c_bar: clip of the trace coefficients, sets the contraction speed.
            Paper: 1.0.
        pg_rho_bar: clip of the policy-gradient importance weights;
            ``None`` (default, the paper) uses ``rho_bar``.
        lmbda: ``lambda`` of the traces (default 1.0, the paper).
        rho_thresh, c_thresh: TorchRL's names for ``rho_bar`` / ``c_bar``,
            accepted so that code written for TorchRL's ``VTrace`` runs.
        **kwargs: the rest of TorchRL's ``VTrace`` arguments (``average_adv``,
            ``differentiable``, ``shifted``, ``time_dim``, ...).

    Keys (``set_keys``): TorchRL's, plus ``action`` (default ``"action"``),
    the action whose probability ``log pi`` is, and ``q_estimate``.
    """

    @dataclass
    class _AcceptedKeys(_TorchRLVTrace._AcceptedKeys):
        # Redeclared: set_keys() only accepts names found in this class's own __dict__.
        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        sample_log_prob: NestedKey | None = None
        action: NestedKey = "action"
        q_estimate: NestedKey = "q_estimate"

    default_keys = _AcceptedKeys

    def __init__(
        self,
        *,
        gamma: float | torch.Tensor,
        actor_network,
        value_network,
        rho_bar: float | torch.Tensor | None = None,
        c_bar: float | torch.Tensor | None = None,
        pg_rho_bar: float | torch.Tensor | None = None,
        lmbda: float = 1.0,
        rho_thresh: float | torch.Tensor | None = None,
        c_thresh: float | torch.Tensor | None = None,
        **kwargs,
    ):
        rho_bar = _alias("rho_bar", rho_bar, "rho_thresh", rho_thresh)
        c_bar = _alias("c_bar", c_bar, "c_thresh", c_thresh)
        super().__init__(
            gamma=gamma,
            actor_network=actor_network,
            value_network=value_network,
            rho_thresh=rho_bar,
            c_thresh=c_bar,
            **kwargs,
        )
        self.lmbda = float(lmbda)
        if pg_rho_bar is None:
            self.pg_rho_bar = None
        else:
            self.register_buffer("pg_rho_bar", torch.as_tensor(pg_rho_bar, device=self.rho_thresh.device))

    @property
    def rho_bar(self) -> torch.Tensor:
        return self.rho_thresh

    @property
    def c_bar(self) -> torch.Tensor:
        return self.c_thresh

    @property
    def in_keys(self):
        return super().in_keys + [self.tensor_keys.action]

    def target_log_prob(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``log pi(a_s|x_s)`` of the stored actions under the current actor."""
        actor = self.actor_network
        data = tensordict.select(*actor.in_keys, self.tensor_keys.action, strict=False)
        with hold_out_net(actor):
            dist = actor.get_dist(data)
            if isinstance(dist, CompositeDistribution):  # actions spread over several keys
                with set_composite_lp_aggregate(True):
                    return dist.log_prob(tensordict)
            return dist.log_prob(tensordict.get(self.tensor_keys.action))

    @_self_set_skip_existing
    @_self_set_grad_enabled
    @dispatch
    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: TensorDictBase | None = None,
        target_params: TensorDictBase | None = None,
        time_dim: int | None = None,
    ) -> TensorDictBase:
        """Writes ``advantage`` and ``value_target`` into ``tensordict`` (shaped ``[*B, T]``).

        Gradients are off unless the estimator was built with
        ``differentiable=True``: V-trace outputs are targets.
        """
        if tensordict.batch_dims < 1:
            raise RuntimeError(f"VTrace needs a time dimension, got batch_size {tensordict.batch_size}")
        reward = tensordict.get(("next", self.tensor_keys.reward))
        if self.gamma.device != reward.device:
            self.gamma = self.gamma.to(reward.device)
        gamma = self.gamma
        steps_to_next_obs = tensordict.get(self.tensor_keys.steps_to_next_obs, None)
        if steps_to_next_obs is not None:
            gamma = gamma ** steps_to_next_obs.view_as(reward)

        if self.value_network is not None:
            if params is not None:
                params = params.detach()
                if target_params is None:
                    target_params = params.clone(False)
            with hold_out_net(self.value_network):
                value, next_value, valid = self._call_value_nets(
                    data=tensordict,
                    params=params,
                    next_params=target_params,
                    single_call=self.shifted,
                    value_key=self.tensor_keys.value,
                    detach_next=True,
                    vmap_randomness=self.vmap_randomness,
                )
            if valid is not None:
                tensordict.set("shifted_valid", valid)
        else:
            value = tensordict.get(self.tensor_keys.value)
            next_value = tensordict.get(("next", self.tensor_keys.value))

        log_mu = _maybe_get_or_select(tensordict, self.tensor_keys.sample_log_prob)
        if is_tensor_collection(log_mu):
            log_mu = log_mu.sum(dim="feature", reduce=True)
        log_mu = log_mu.reshape(value.shape)
        log_pi = self.target_log_prob(tensordict).reshape(value.shape)

        time_dim = self._get_time_dim(time_dim, tensordict)
        valid = tensordict.get("shifted_valid", default=None)
        data = self._prepare_shifted_tensordict(tensordict, valid, time_dim)
        reward = data.get(("next", self.tensor_keys.reward))
        done = data.get(("next", self.tensor_keys.done))
        terminated = data.get(("next", self.tensor_keys.terminated), default=done)

        out = vtrace(
            (log_pi, log_mu),
            value,
            next_value,
            reward,
            done,
            terminated,
            gamma=gamma,
            rho_bar=self.rho_bar,
            c_bar=self.c_bar,
            pg_rho_bar=self.pg_rho_bar,
            lmbda=self.lmbda,
            time_dim=time_dim,
        )
        adv = out.pg_advantage
        if self.average_adv:
            groups = self._group_ids(tensordict)
            if groups is None:
                adv = (adv - adv.mean()) / adv.std().clamp_min(1e-5)
            else:
                adv = _standardize_by_group(adv, groups, eps=1e-5)
        tensordict.set(self.tensor_keys.advantage, adv)
        tensordict.set(self.tensor_keys.value_target, out.vs)
        tensordict.set(self.tensor_keys.q_estimate, out.q_estimate)
        self._mask_shifted_output(tensordict, valid)
        return tensordict


def _alias(name, value, torchrl_name, torchrl_value, default=1.0):
    if value is not None and torchrl_value is not None:
        raise TypeError(f"VTrace: pass {name} or {torchrl_name} (TorchRL's name for it), not both")
    if value is None:
        value = torchrl_value
    return default if value is None else value
