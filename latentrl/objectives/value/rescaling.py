"""Invertible value rescaling and R2D2's n-step double-Q targets.

Pohlen et al. 2018 ("Observe and Look Further: Achieving Consistent
Performance on Atari", the transformed Bellman operator) replace reward
clipping by training the Q-network on a rescaled target,

    h(x)     = sign(x) (sqrt(|x| + 1) - 1) + eps x,
    h^-1(x)  = sign(x) (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1),

with ``eps = 1e-3``. R2D2 (Kapturowski et al. 2019, "Recurrent Experience
Replay in Distributed Reinforcement Learning", Section 2; values from its
hyper-parameter table) uses them in an n-step double-Q target:

    y_t = h( sum_{k=0}^{n-1} r_{t+k} gamma^k
             + gamma^n h^-1( Q(s_{t+n}, argmax_a Q(s_{t+n}, a; theta); theta^-) ) ),

with ``n = 5`` and ``gamma = 0.997``.

Numerics
--------
Both formulas as written cancel catastrophically near 0 in float32
(``sqrt(|x| + 1) - 1`` and ``root^2 - 1`` with ``root ~ 1``). Here both are
written as ``x * c(|x|)`` with a positive, cancellation-free ``c``:

    h(x)    = x (1 / (sqrt(|x| + 1) + 1) + eps)
    h^-1(x) = x * 4 (|x| + 1 + eps) (a + 1) / ((1 + 2 eps + 2|x| + D)(D + 1)),
              D = sqrt(1 + 4 eps (|x| + 1 + eps)),  a = 2 (|x| + 1 + eps) / (D + 1)

(``a`` is the root ``(D - 1)/(2 eps)`` rationalized, and ``a - 1`` is
rationalized once more: ``a - 1 = 4|x|(|x| + 1 + eps) / ((1 + 2eps + 2|x| + D)(D + 1))``).
This keeps the sign exact, makes ``h^-1(0) = 0`` with the right gradient
``1 / (1/2 + eps)`` at 0 (a ``sign(x)`` factor would give gradient 0), and
needs no ``torch.where`` branch.

Measured float32 accuracy (``eps = 1e-3``, 2001 log-spaced ``|x|`` in
``[1e-6, 1e8]``, both signs, each against float64 evaluated at the same
float32 input; checked in ``tests/objectives/test_value_rescaling.py``):

=============================  ==========  ====================  ==============
float32, max relative error    ours        TorchRL [#]_          naive formula
=============================  ==========  ====================  ==============
``h(x)``                       3.2 u       0.15 at |x| ~ 1e-6    as TorchRL
``h^-1(y)``, ``|x| < 1e-4``    5.3e-7      0.32                  26.5
``h^-1(y)``, ``|x|`` in 1..1e8 3.9e-7      6.9e-7                1.1e-4
``h^-1(h(x))``, all ``|x|``    6.1e-7      0.26 (~2.5e-7/|x|)    26.9
sign errors, ``h^-1(h(x))``    0           0                     426 of 4002
=============================  ==========  ====================  ==============

(u = 2^-24 = 6e-8 is the float32 unit roundoff; ours round-trips within 10.2 u everywhere, the
test bound is 1e-6; ``h`` and ``h^-1`` have relative condition numbers in
``[1/2, 1]`` and ``[1, 2]``.) TorchRL's round-trip error by decade of ``|x|``:
0.26 (1e-6), 2.6e-2 (1e-5), 1.9e-3 (1e-4), 3.7e-4 (1e-3), 2.5e-5 (1e-2),
3.6e-6 (1e-1), then a few u like ours.

.. [#] ``torchrl.modules.functional.signed_hyperbolic`` / ``signed_parabolic``:
   the same pair with the same ``eps``, but the forward is the naive formula
   and the inverse rationalizes only the root (``root.square() - 1`` still
   cancels). Below ``|x| ~ 6e-8`` TorchRL's ``h`` returns only ``eps x``
   (500x too small) and ``signed_parabolic`` of any ``|y| < ~1e-7`` returns
   ``+-2.4e-7``. See ``tests/upstream/test_signed_hyperbolic_precision.py``.

In float64 ours round-trips to ~1e-15 relative over the same range.
"""
from __future__ import annotations

import torch

from latentrl.checks import InputError, check_positive_int, check_range, check_tensors

__all__ = [
    "value_rescale",
    "value_rescale_inverse",
    "rescaled_n_step_targets",
]


def value_rescale(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x`` (Pohlen et al. 2018).

    Computed as ``x (1 / (sqrt(|x| + 1) + 1) + eps)``, which equals the
    formula exactly and has no cancellation near 0 (relative error a few
    units of roundoff everywhere; see the module docstring).

    Args:
        x: any tensor (floating point).
        eps: the linear term that makes ``h^-1`` Lipschitz. Paper: ``1e-3``.
    """
    check_range("value_rescale", "eps", eps, 0.0, lo_open=True)
    return x * ((x.abs() + 1).sqrt().add(1).reciprocal() + eps)


def value_rescale_inverse(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The exact inverse of :func:`value_rescale` (Pohlen et al. 2018).

    ``h^-1(x) = sign(x) (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1)``,
    computed without cancellation: with ``D = sqrt(1 + 4 eps (|x| + 1 + eps))``
    and ``a = (D - 1) / (2 eps) = 2 (|x| + 1 + eps) / (D + 1)``::

        a^2 - 1 = (a - 1)(a + 1),
        a - 1   = 4 |x| (|x| + 1 + eps) / ((1 + 2 eps + 2|x| + D)(D + 1)),

    so ``h^-1(x) = x * 4 ((|x| + 1 + eps) / (1 + 2 eps + 2|x| + D)) ((a + 1) / (D + 1))``
    (each factor positive and bounded, no overflow before the result
    overflows). Float32 round-trip error: <= 6.1e-7 relative (10.2 u, u = 2^-24) for
    ``|x|`` in ``[1e-6, 1e8]``.
    """
    check_range("value_rescale_inverse", "eps", eps, 0.0, lo_open=True)
    m = x.abs()
    m1 = m + (1 + eps)
    d = (1 + 4 * eps * m1).sqrt()
    a = 2 * m1 / (d + 1)
    return x * (4 * (m1 / (2 * m + (1 + 2 * eps) + d)) * ((a + 1) / (d + 1)))


# --------------------------------------------------------------------------
# n-step double-Q targets (R2D2)
# --------------------------------------------------------------------------
def _check_inputs(reward, done, terminated, bootstrap_value, has_state, n, gamma=0.5, eps=1e-3, time_dim=-1):
    owner = "rescaled_n_step_targets"
    tensors = {"reward": reward, "done": done, "terminated": terminated, "bootstrap_value": bootstrap_value,
               "has_state": has_state}
    check_tensors(owner, tensors, floating=("reward", "bootstrap_value"), boolean=("done", "terminated", "has_state"),
                  finite=("reward", "bootstrap_value"), same_shape=tensors, min_dim=1)
    check_positive_int(owner, "n", n)
    check_range(owner, "gamma", gamma, 0.0, 1.0)
    check_range(owner, "eps", eps, 0.0, lo_open=True)
    if not -reward.dim() <= time_dim < reward.dim():
        raise InputError(f"{owner}: `time_dim` {time_dim} is not a dimension of inputs shaped {tuple(reward.shape)}")


def _shift(x: torch.Tensor, k: int, fill) -> torch.Tensor:
    """``out[..., t] = x[..., t + k]`` (time last), ``fill`` past the end."""
    if k == 0:
        return x
    length = x.shape[-1]
    pad = x.new_full((*x.shape[:-1], min(k, length)), fill)
    return torch.cat([x[..., k:], pad], dim=-1)


def rescaled_n_step_targets(
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    bootstrap_value: torch.Tensor,
    has_state: torch.Tensor,
    *,
    gamma: float = 0.997,
    n: int = 5,
    eps: float = 1e-3,
    time_dim: int = -1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """R2D2's n-step double-Q target with value rescaling (Kapturowski et al. 2019, Sec. 2).

        y_t = h( sum_{j=0}^{n'-1} gamma^j r_{t+j} + gamma^{n'} h^-1( Qbar_{t+n'} ) ),
        Qbar_s = Q(s, argmax_a Q(s, a; theta); theta^-)      (double Q)

    with ``h`` from Pohlen et al. 2018 (:func:`value_rescale`), cut at the
    first episode end:

    * ``k*`` = the first ``k`` in ``[0, n)`` with ``done[t + k]`` (``t + k``
      inside the sequence);
    * terminated at ``t + k*``: ``y_t = h(sum_{j<=k*} gamma^j r_{t+j})`` (no
      bootstrap);
    * truncated at ``t + k*``: ``y_t = h(sum_{j<=k*} gamma^j r_{t+j} +
      gamma^{k*+1} h^-1(bootstrap_value[t+k*+1]))``, defined only if
      ``has_state[t+k*+1]``;
    * no ``done`` within reach: ``n' = min(n, L - 1 - t)``,
      ``y_t = h(sum_{j<n'} gamma^j r_{t+j} + gamma^{n'} h^-1(bootstrap_value[t+n']))``,
      defined only if ``n' >= 1`` and ``has_state[t+n']``.

    Args:
        reward: ``[*B, L]`` (time along ``time_dim``); ``reward[t]`` is the
            reward of the transition ``s_t -> s_{t+1}``.
        done, terminated: bool, same shape, flags of that transition.
        bootstrap_value: ``Qbar_t`` for the state ``s_t``, in h-space (as the
            network outputs it), already selected by double Q.
        has_state: bool, where ``s_t`` exists in the sequence (the valid steps
            plus the position after an episode's final step that holds its
            final next-state).

    Keyword Args:
        gamma: discount. R2D2: 0.997.
        n: the n of the n-step return. R2D2: 5.
        eps: ``h``'s ``eps``. R2D2: 1e-3.
        time_dim: the time dimension.

    Returns:
        ``(target, target_mask)``: the targets (0 where undefined) and a bool
        mask, False where the target is undefined (sequence end with
        ``n' = 0``, or bootstrap state missing). The mask says nothing about
        whether ``t`` itself is a valid transition: combine it with the
        caller's own mask of valid steps.

    The loop runs over the ``n`` offsets, vectorized over time (the plain
    definition, a double loop, is the oracle in ``tests/oracles.py``).
    """
    _check_inputs(reward, done, terminated, bootstrap_value, has_state, n, gamma, eps, time_dim)
    n = int(n)
    reward, done, terminated, bootstrap_value, has_state = (
        x.movedim(time_dim, -1) for x in (reward, done, terminated, bootstrap_value, has_state)
    )
    length = reward.shape[-1]
    t_idx = torch.arange(length, device=reward.device)
    q = value_rescale_inverse(bootstrap_value, eps)  # back to return space

    ret = torch.zeros_like(reward)  # the discounted reward sum so far
    out = torch.zeros_like(reward)  # untransformed target
    mask = torch.zeros_like(done)
    open_ = torch.ones_like(done)  # target not decided yet
    for k in range(n):
        # position p = t + k; the rows with p > L-1 were decided at p = L-1
        r_k, d_k, term_k = _shift(reward, k, 0.0), _shift(done, k, False), _shift(terminated, k, False)
        at_last = (t_idx + k) == (length - 1)
        ends = open_ & d_k
        ret_k = ret + gamma**k * r_k
        # an episode ends at p: terminated -> no bootstrap; truncated -> bootstrap at p + 1
        q_next, s_next = _shift(q, k + 1, 0.0), _shift(has_state, k + 1, False)
        term_end = ends & term_k
        trunc_end = ends & ~term_k & s_next
        out = torch.where(term_end, ret_k, out)
        out = torch.where(trunc_end, ret_k + gamma ** (k + 1) * q_next, out)
        mask = mask | term_end | trunc_end
        # no end up to p - 1 and p = L - 1 is the last state: bootstrap there (n' = k)
        seq_end = open_ & ~d_k & at_last
        if k > 0:
            seq_ok = seq_end & _shift(has_state, k, False)
            out = torch.where(seq_ok, ret + gamma**k * _shift(q, k, 0.0), out)
            mask = mask | seq_ok
        open_ = open_ & ~ends & ~seq_end
        ret = ret_k
    # no end within n steps and t + n <= L - 1: bootstrap at t + n
    full_ok = open_ & _shift(has_state, n, False)
    out = torch.where(full_ok, ret + gamma**n * _shift(q, n, 0.0), out)
    mask = mask | full_ok
    target = torch.where(mask, value_rescale(out, eps), torch.zeros_like(out))
    return target.movedim(-1, time_dim), mask.movedim(-1, time_dim)
