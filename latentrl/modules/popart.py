"""PopArt value head: Preserving Outputs Precisely, while Adaptively Rescaling Targets.

van Hasselt et al. 2016, "Learning values across many orders of magnitude"
(Section 2) and Hessel et al. 2018, "Multi-task Deep Reinforcement Learning
with PopArt" (Section "PopArt normalisation"). The network predicts a
normalized value ``n(s) = w^T h(s) + b``, one output per task; the value on
the reward scale is

    v(s) = sigma * n(s) + mu.

ART: per task, ``mu`` and ``nu`` are exponential moving averages of the first
and second moments of the (unnormalized) value targets ``G``, with step size
``beta``, and ``sigma = sqrt(nu - mu^2)``:

    mu'  = (1 - beta) mu + beta E[G]
    nu'  = (1 - beta) nu + beta E[G^2]

POP: every change of the statistics is followed by a rescale of the last
linear layer that leaves ``v(s)`` unchanged for every input ``s``:

    w' = (sigma / sigma') w
    b' = (sigma b + mu - mu') / sigma'

TorchRL's ``PopArtValueNorm`` does the ART half only (``UPSTREAM.md`` #8).
"""
from __future__ import annotations

import torch
from torch import nn

from latentrl.checks import InputError, check_range, check_tensors

__all__ = ["PopArt"]


class PopArt(nn.Module):
    """Linear value head with PopArt-normalized outputs, one per task.

    Default ``beta = 3e-4`` is the PopArt step size of Hessel et al. 2018
    (their hyper-parameters for IMPALA + PopArt); the statistics start at
    ``mu = 0``, ``nu = 1`` (``sigma = 1``, so ``v = n`` before the first update).

    Args:
        in_features: size of the features ``h(s)`` fed to the last layer.
        num_tasks: number of tasks, each with its own output and statistics.
        beta: step size of the moving averages, in ``(0, 1]``.
        epsilon: lower bound on ``sigma`` (keeps ``n(s)`` and the rescale
            finite while a task's targets are constant); rlax's ``scale_lb``.
        sigma_max: upper bound on ``sigma`` (rlax's ``scale_ub``, default
            1e6 as there): a burst of huge targets cannot blow the scale up
            so far that every other target normalizes to ~0.

    ``sigma`` is ``clip(sqrt(nu - mu^2), epsilon, sigma_max)``, as rlax's
    ``popart`` clips it; the rescale of the last layer uses the clipped
    values, so the outputs stay preserved at the bounds too.

    The step size is constant, without Adam-style debiasing (our choice):
    the first updates are pulled towards the initial ``mu = 0, nu = 1``. That
    costs nothing in accuracy because the outputs are preserved whatever the
    statistics are; only the normalization of the loss is slower to settle.

    Use: ``forward`` (or ``TensorDictModule(popart, in_keys=["features",
    "task_id"], out_keys=["normalized_value", "state_value"])``) gives the
    normalized and unnormalized values; in the learner, call
    :meth:`update` on the value targets first, then regress the normalized
    value on :meth:`normalize` of the targets. :meth:`update` changes the
    parameters in place under ``torch.no_grad``, so the optimizer keeps
    working on the same tensors (its moment estimates are not rescaled).
    """

    def __init__(self, in_features: int, num_tasks: int = 1, beta: float = 3e-4, epsilon: float = 1e-4,
                 sigma_max: float = 1e6):
        super().__init__()
        check_range("PopArt", "beta", beta, 0.0, 1.0, lo_open=True)
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
            raise InputError(f"PopArt: `num_tasks` must be an integer >= 1, got {num_tasks!r}")
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise InputError(f"PopArt: `in_features` must be an integer >= 1, got {in_features!r}")
        check_range("PopArt", "epsilon", epsilon, 0.0, lo_open=True)
        check_range("PopArt", "sigma_max", sigma_max, 0.0, lo_open=True)
        if not sigma_max > epsilon:
            raise InputError(f"PopArt: `sigma_max` ({sigma_max}) must be greater than `epsilon` ({epsilon})")
        self.num_tasks, self.beta, self.epsilon = int(num_tasks), float(beta), float(epsilon)
        self.sigma_max = float(sigma_max)
        self.linear = nn.Linear(in_features, self.num_tasks)
        self.register_buffer("mu", torch.zeros(self.num_tasks))
        self.register_buffer("nu", torch.ones(self.num_tasks))

    @property
    def sigma(self) -> torch.Tensor:
        """``sqrt(nu - mu^2)`` per task, clipped to ``[epsilon, sigma_max]``."""
        return (self.nu - self.mu.square()).clamp_min(0.0).sqrt().clamp(self.epsilon, self.sigma_max)

    # ------------------------------------------------------------- task ids

    def _task_index(self, task_ids: torch.Tensor, name: str) -> torch.Tensor:
        task_ids = torch.as_tensor(task_ids, device=self.mu.device)
        if task_ids.is_floating_point() or task_ids.is_complex() or task_ids.dtype == torch.bool:
            raise TypeError(f"PopArt: `{name}` must be an integer tensor of task indices, got {task_ids.dtype}")
        task_ids = task_ids.long()
        if task_ids.numel() and bool((task_ids.min() < 0) | (task_ids.max() >= self.num_tasks)):
            raise ValueError(
                f"PopArt: `{name}` must hold task indices in [0, {self.num_tasks - 1}] "
                f"(num_tasks={self.num_tasks}), got values in "
                f"[{int(task_ids.min())}, {int(task_ids.max())}]"
            )
        return task_ids

    def _stats(self, like: torch.Tensor, task_ids: torch.Tensor | None, name: str = "task_ids"):
        """``(mu, sigma)`` broadcastable against ``like`` (targets or values)."""
        mu, sigma = self.mu, self.sigma
        if task_ids is None:
            if self.num_tasks > 1 and (like.ndim == 0 or like.shape[-1] != self.num_tasks):
                raise ValueError(
                    f"PopArt: `{name}` is required with num_tasks={self.num_tasks} unless the "
                    f"last dim holds one entry per task; got shape {tuple(like.shape)}"
                )
            if self.num_tasks == 1:
                mu, sigma = mu[0], sigma[0]
            return mu.to(like.dtype), sigma.to(like.dtype)
        ids = self._align(self._task_index(task_ids, name), like)
        return mu[ids].to(like.dtype), sigma[ids].to(like.dtype)

    @staticmethod
    def _align(ids: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # task ids of shape [...] go with values of shape [..., 1] and vice versa
        if ids.ndim == like.ndim - 1:
            return ids.unsqueeze(-1)
        if ids.ndim == like.ndim + 1 and ids.shape[-1] == 1:
            return ids.squeeze(-1)
        return ids

    # --------------------------------------------------------------- values

    def forward(self, features: torch.Tensor, task_id: torch.Tensor | None = None):
        """Normalized ``n(s)`` and unnormalized ``v(s) = sigma n(s) + mu``.

        With ``task_id`` (integer tensor of shape ``[...]`` or ``[..., 1]``,
        ``features`` of shape ``[..., in_features]``) both have shape
        ``[..., 1]``: the head of that task. Without it, all heads,
        ``[..., num_tasks]`` (a single ``[..., 1]`` head when ``num_tasks == 1``).
        """
        normalized = self.linear(features)
        value = normalized * self.sigma.to(normalized.dtype) + self.mu.to(normalized.dtype)
        if task_id is None:
            return normalized, value
        ids = self._task_index(task_id, "task_id")
        if ids.ndim == features.ndim - 1:
            ids = ids.unsqueeze(-1)
        if ids.shape[-1] != 1:
            raise ValueError(
                f"PopArt: `task_id` must have shape [...] or [..., 1] for features of shape "
                f"{tuple(features.shape)}, got {tuple(ids.shape)}"
            )
        ids = ids.expand(*normalized.shape[:-1], 1)
        return normalized.gather(-1, ids), value.gather(-1, ids)

    def normalize(self, targets: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(G - mu) / sigma`` with the statistics of each target's task."""
        mu, sigma = self._stats(targets, task_ids)
        return (targets - mu) / sigma

    def denormalize(self, normalized: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``sigma * n + mu`` with the statistics of each value's task."""
        mu, sigma = self._stats(normalized, task_ids)
        return normalized * sigma + mu

    # --------------------------------------------------------------- update

    @torch.no_grad()
    def update(self, targets: torch.Tensor, task_ids: torch.Tensor | None = None) -> None:
        """Move the statistics towards the batch of value ``targets``, then preserve outputs.

        Each task's ``mu, nu`` move by ``beta`` towards the mean of the targets
        of that task in the batch; tasks absent from the batch keep theirs.
        ``task_ids`` (integer, broadcastable against ``targets``, or of shape
        ``targets.shape[:-1]``) may be omitted when ``num_tasks == 1``.
        """
        check_tensors("PopArt.update", {"targets": targets}, floating=("targets",), finite=("targets",))
        targets = targets.detach().to(device=self.mu.device, dtype=self.mu.dtype)
        if task_ids is None:
            if self.num_tasks > 1:
                raise ValueError(f"PopArt: `task_ids` is required with num_tasks={self.num_tasks}")
            ids = torch.zeros_like(targets, dtype=torch.long)
        else:
            ids = self._align(self._task_index(task_ids, "task_ids"), targets)
        ids, targets = torch.broadcast_tensors(ids, targets)
        ids, targets = ids.reshape(-1), targets.reshape(-1)
        count = torch.zeros_like(self.mu).index_add_(0, ids, torch.ones_like(targets))
        first = torch.zeros_like(self.mu).index_add_(0, ids, targets) / count.clamp_min(1.0)
        second = torch.zeros_like(self.mu).index_add_(0, ids, targets.square()) / count.clamp_min(1.0)
        present = count > 0
        mu_old, sigma_old = self.mu.clone(), self.sigma
        self.mu.copy_(torch.where(present, torch.lerp(self.mu, first, self.beta), self.mu))
        self.nu.copy_(torch.where(present, torch.lerp(self.nu, second, self.beta), self.nu))
        sigma_new = self.sigma
        w, b = self.linear.weight, self.linear.bias
        w.mul_((sigma_old / sigma_new).to(w.dtype).unsqueeze(-1))
        b.copy_(((sigma_old * b + mu_old - self.mu) / sigma_new).to(b.dtype))

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, beta={self.beta}, epsilon={self.epsilon}, sigma_max={self.sigma_max}"
