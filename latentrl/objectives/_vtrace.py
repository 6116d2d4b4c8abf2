"""V-trace (Espeholt et al. 2018, IMPALA), pure tensors in and out.

Two evaluations of one recursion, chosen per call:

* a compiled loop over time (numba, one pass per row, CPU, no autograd):
  the default whenever the inputs are CPU tensors that need no gradient;
* a parallel (Hillis-Steele) scan in torch ops: on other devices, with
  autograd, or when numba is not installed.

Both give the same numbers to float round-off (``tests/objectives/test_vtrace.py``
checks them against each other and against the plain loop written out in
``tests/oracles.py``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from latentrl.checks import InputError, check_range, check_tensors

__all__ = ["VTraceOutput", "vtrace"]

_VALUES = ("log_rhos", "state_value", "next_state_value", "reward")


class VTraceOutput(NamedTuple):
    """What :func:`vtrace` returns (rlax's ``VTraceOutput``, with the targets instead of the errors)."""

    vs: torch.Tensor
    """The V-trace value targets ``v_s``."""
    pg_advantage: torch.Tensor
    """``min(pg_rho_bar, pi/mu) (q_s - V(x_s))``."""
    q_estimate: torch.Tensor
    """``q_s = r_s + gamma_s (lambda v_{s+1} + (1 - lambda) V(x_{s+1}))``."""


def vtrace(
    log_rhos: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    *,
    gamma: float | torch.Tensor,
    rho_bar: float | torch.Tensor = 1.0,
    c_bar: float | torch.Tensor = 1.0,
    pg_rho_bar: float | torch.Tensor | None = None,
    lmbda: float = 1.0,
    time_dim: int = -2,
) -> VTraceOutput:
    """V-trace targets, policy-gradient advantages and q-estimates (Espeholt et al. 2018, IMPALA).

    With the truncated importance weights of the target policy ``pi`` over the
    behaviour policy ``mu`` that acted,

        rho_s = min(rho_bar, pi(a_s|x_s) / mu(a_s|x_s)),
        c_s   = lambda min(c_bar, pi(a_s|x_s) / mu(a_s|x_s)),
        delta_s = rho_s (r_s + gamma_s V(x_{s+1}) - V(x_s)),

    the n-step V-trace target (eq. 1) is
    ``v_s = V(x_s) + sum_{t>=s} gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t``,
    computed by its recursion (Remark 1)

        v_s - V(x_s) = delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1})),

    and the policy-gradient advantage (Sec. 4.2) is

        q_s = r_s + gamma_s (lambda v_{s+1} + (1 - lambda) V(x_{s+1})),
        A_s = min(pg_rho_bar, pi/mu) (q_s - V(x_s)).

    ``lambda`` (default 1, the paper) is the trace-cutting variant of the
    paper's Remark/Sec. 4.1 (``c_i = lambda min(c_bar, rho_i)``) as rlax's
    ``vtrace_td_error_and_advantage(lambda_=...)`` has it, including its mixed
    bootstrap in ``q_s``. ``rho_bar`` sets the fixed point, ``c_bar`` only the
    speed of the contraction (Theorem 1); ``pg_rho_bar`` clips the
    policy-gradient weights separately, as rlax's ``clip_pg_rho_threshold``
    does (the paper uses ``rho_bar`` for both: ``pg_rho_bar=None``).

    Episode ends inside the batch: the recursion never crosses a ``done``
    step. At ``terminated`` there is no bootstrap (``gamma_s = 0`` in
    ``delta_s`` and in ``q_s``); at a truncation (``done`` but not
    ``terminated``) ``delta_s`` and ``q_s`` bootstrap from
    ``next_state_value[s]``. ``v_{s+1}`` in ``q_s`` is replaced by
    ``V(x_{s+1})`` at ``done`` steps and at the last step.

    Evaluation: on CPU tensors that need no gradient, a compiled loop over
    time (numba, one pass per row; finiteness is checked by a sentinel the
    loop computes, and a failing sentinel reruns the named checks);
    otherwise a parallel scan of the affine maps ``u -> delta_s + gamma_s c_s u``
    (``ceil(log2 T)`` sweeps of elementwise products and sums, no division,
    exact for ``c_s = 0``), differentiable like any torch expression. V-trace
    outputs are *targets*: the caller detaches them (or the inputs).

    Args:
        log_rhos: ``log pi(a_s|x_s) - log mu(a_s|x_s)`` (target minus
            behaviour), or the pair ``(target_log_prob, behaviour_log_prob)``.
        state_value: ``V(x_s)``.
        next_state_value: ``V(x_{s+1})`` (the true next state, also after a
            reset inside the batch).
        reward: ``r_s``.
        done: the episode ended at step ``s`` (terminated or truncated).
        terminated: the episode ended at step ``s`` in a terminal state.
        gamma: the discount, a scalar or a tensor broadcastable to ``reward``
            (e.g. ``gamma ** steps_to_next_obs``).
        rho_bar: ``rho_bar`` (paper: 1.0).
        c_bar: ``c_bar`` (paper: 1.0).
        pg_rho_bar: clip of the policy-gradient weights; ``None`` uses ``rho_bar``.
        lmbda: ``lambda`` in ``[0, 1]`` (paper: 1.0).
        time_dim: the time dimension. All tensors share one shape
            ``[*B, T, *F]`` (TorchRL: ``[*B, T, 1]``, ``time_dim=-2``).

    Returns:
        :class:`VTraceOutput` ``(vs, pg_advantage, q_estimate)``, each shaped
        like ``state_value``. (TorchRL's ``vtrace_advantage_estimate`` returns
        ``(advantage, value_target)``.)
    """
    if isinstance(log_rhos, tuple):
        target_log_prob, behaviour_log_prob = log_rhos
        check_tensors("vtrace", {"target_log_prob": target_log_prob, "behaviour_log_prob": behaviour_log_prob},
                      floating=("target_log_prob", "behaviour_log_prob"))
        log_rhos = target_log_prob - behaviour_log_prob
    tensors = {"log_rhos": log_rhos, "state_value": state_value, "next_state_value": next_state_value,
               "reward": reward, "done": done, "terminated": terminated}
    fast = _use_kernel(tensors)
    check_tensors("vtrace", tensors, floating=_VALUES, boolean=("done", "terminated"), same_shape=tensors, min_dim=1,
                  finite=() if fast else _VALUES)
    check_range("vtrace", "gamma", gamma, 0.0, 1.0)
    check_range("vtrace", "rho_bar", rho_bar, 0.0, None, lo_open=True)
    check_range("vtrace", "c_bar", c_bar, 0.0, None, lo_open=True)
    check_range("vtrace", "pg_rho_bar", pg_rho_bar, 0.0, None, lo_open=True, optional=True)
    check_range("vtrace", "lmbda", lmbda, 0.0, 1.0)
    if not -reward.dim() <= time_dim < reward.dim():
        raise InputError(f"vtrace: `time_dim` {time_dim} is not a dimension of inputs shaped {tuple(reward.shape)}")
    if pg_rho_bar is None:
        pg_rho_bar = rho_bar
    if fast:
        out = _vtrace_kernel(log_rhos, state_value, next_state_value, reward, done, terminated, gamma,
                             rho_bar, c_bar, pg_rho_bar, lmbda, time_dim)
        if out is not None:
            return out
        # the sentinel saw a NaN or inf: the named checks say which argument
        check_tensors("vtrace", tensors, finite=_VALUES)
    return _vtrace_scan(log_rhos, state_value, next_state_value, reward, done, terminated, gamma,
                        rho_bar, c_bar, pg_rho_bar, lmbda, time_dim)


# --------------------------------------------------------------------------
# the parallel scan (any device, differentiable)
# --------------------------------------------------------------------------
def _vtrace_scan(log_rhos, state_value, next_state_value, reward, done, terminated, gamma, rho_bar, c_bar,
                 pg_rho_bar, lmbda, time_dim):
    disc_terminated = gamma * (~terminated).to(reward.dtype)
    disc_done = gamma * (~done).to(reward.dtype)
    rhos = log_rhos.exp()
    deltas = torch.clamp(rhos, max=rho_bar) * (reward + disc_terminated * next_state_value - state_value)
    decay = disc_done * (lmbda * torch.clamp(rhos, max=c_bar))
    vs_minus_v = _reverse_affine_scan(deltas.movedim(time_dim, -1), decay.movedim(time_dim, -1))
    vs = vs_minus_v.movedim(-1, time_dim) + state_value
    t = vs.shape[time_dim]
    vs_next = torch.cat([vs.narrow(time_dim, 1, t - 1), next_state_value.narrow(time_dim, t - 1, 1)], time_dim)
    bootstrap = lmbda * vs_next + (1.0 - lmbda) * next_state_value if lmbda != 1.0 else vs_next
    bootstrap = torch.where(done, next_state_value, bootstrap)  # across an episode end: V(x_{s+1})
    last = torch.zeros_like(done)
    last.narrow(time_dim, t - 1, 1).fill_(True)
    bootstrap = torch.where(last, next_state_value, bootstrap)
    q = reward + disc_terminated * bootstrap
    return VTraceOutput(vs, torch.clamp(rhos, max=pg_rho_bar) * (q - state_value), q)


def _reverse_affine_scan(deltas: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """``u_s = deltas_s + decay_s u_{s+1}``, ``u_T = 0``, along the last dim, by doubling.

    After the sweep with stride ``k`` each ``(deltas_s, decay_s)`` is the
    composition of the affine maps ``s .. s+2k-1``: ``deltas_s`` is their
    value at ``u = 0`` and ``decay_s`` the product of their slopes (entries
    past ``T`` are the constant map 0, hence the zero padding).
    Out of place, so that autograd works if the caller wants it.
    """
    t, k = deltas.shape[-1], 1
    while k < t:
        deltas = deltas + F.pad(decay[..., :-k] * deltas[..., k:], (0, k))
        if 2 * k < t:  # the slopes are not read after the last sweep
            decay = decay * F.pad(decay[..., k:], (0, k))
        k *= 2
    return deltas


# --------------------------------------------------------------------------
# the compiled loop (CPU, no autograd)
# --------------------------------------------------------------------------
_KERNEL = None  # False: numba is missing


def _use_kernel(tensors) -> bool:
    """CPU tensors without autograd, the values all float32 or all float64, and numba importable."""
    grad = torch.is_grad_enabled()
    for t in tensors.values():  # one pass: this runs on every call
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or (grad and t.requires_grad):
            return False
    dtype = tensors[_VALUES[0]].dtype
    if dtype not in (torch.float32, torch.float64) or any(tensors[k].dtype != dtype for k in _VALUES):
        return False
    return _kernel() is not None


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        try:
            from latentrl.objectives._vtrace_numba import vtrace_rows
        except ImportError:  # numba not installed: the scan
            _KERNEL = False
        else:
            _KERNEL = vtrace_rows
    return _KERNEL or None


def _time_is_last(shape, time_dim: int) -> bool:
    """Rows of ``shape`` are contiguous in time: time last, or TorchRL's ``[*B, T, 1]``."""
    n = len(shape)
    return time_dim % n == n - 1 or (time_dim % n == n - 2 and shape[-1] == 1)


def _rows(x: torch.Tensor, time_dim: int, t: int):
    """``[*B, T, *F]`` -> a ``[N, T]`` numpy view (a copy only if the layout needs one)."""
    if _time_is_last(x.shape, time_dim):
        return x.detach().numpy().reshape(-1, t)  # no move needed
    return x.detach().movedim(time_dim, -1).reshape(-1, t).numpy()


def _as_float(x) -> float:
    return float(x.item() if isinstance(x, torch.Tensor) else x)


def _vtrace_kernel(log_rhos, state_value, next_state_value, reward, done, terminated, gamma, rho_bar, c_bar,
                   pg_rho_bar, lmbda, time_dim):
    shape, dtype = state_value.shape, state_value.dtype
    t = shape[time_dim]
    per_step = isinstance(gamma, torch.Tensor) and gamma.numel() > 1
    value_rows = _rows(state_value, time_dim, t)
    gamma_rows = _rows(torch.broadcast_to(gamma.to(dtype), shape), time_dim, t) if per_step else value_rows
    # one allocation for the three outputs; in the input's own layout when its rows are contiguous in time
    in_place = _time_is_last(shape, time_dim)
    out = torch.empty((3, *(shape if in_place else state_value.movedim(time_dim, -1).shape)), dtype=dtype)
    rows = out.numpy().reshape(3, -1, t)
    cast = rows.dtype.type
    sentinel = _kernel()(
        _rows(log_rhos.exp(), time_dim, t), _rows(log_rhos, time_dim, t), value_rows,
        _rows(next_state_value, time_dim, t), _rows(reward, time_dim, t), _rows(done, time_dim, t),
        _rows(terminated, time_dim, t), gamma_rows, per_step, cast(math.nan if per_step else _as_float(gamma)),
        cast(_as_float(rho_bar)), cast(_as_float(c_bar)), cast(_as_float(pg_rho_bar)), cast(lmbda),
        rows[0], rows[1], rows[2],
    )
    if not math.isfinite(sentinel):
        return None
    if in_place:
        return VTraceOutput(out[0], out[1], out[2])
    return VTraceOutput(*(o.movedim(-1, time_dim) for o in out))
