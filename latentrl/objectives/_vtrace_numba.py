"""The V-trace recursion as one compiled loop per row (numba; imported only when numba is installed).

``vtrace_rows`` evaluates, for each row of ``[N, T]`` inputs and ``s`` from
``T - 1`` down to 0, exactly the recursion of
:func:`latentrl.objectives.functional.vtrace` (its docstring has the
equations), writing ``vs``, ``pg_advantage`` and ``q_estimate`` in place. It
returns a sentinel, ``sum(0 * x)`` over the log-ratios, the next values and
the outputs (which carry every other input), finite only when they all are;
the caller reruns the named checks when it is not.
"""
from __future__ import annotations

import numba


@numba.njit(cache=True, error_model="numpy", nogil=True)
def vtrace_rows(rho, log_rho, v, nv, r, done, term, gamma_rows, per_step, gamma, rho_bar, c_bar, pg_rho_bar, lmbda,
                vs, adv, q):  # pragma: no cover - compiled
    n, t = v.shape
    zero = v.dtype.type(0.0)
    one = v.dtype.type(1.0)
    sentinel = zero
    for b in range(n):
        acc = zero  # v_{s+1} - V(x_{s+1})
        vs_next = zero
        for s in range(t - 1, -1, -1):
            p = rho[b, s]
            g = gamma_rows[b, s] if per_step else gamma
            vv, nvs, rr = v[b, s], nv[b, s], r[b, s]
            g_term = zero if term[b, s] else g
            delta = min(p, rho_bar) * (rr + g_term * nvs - vv)
            if done[b, s] or s == t - 1:
                boot = nvs
                acc = delta
            else:
                boot = lmbda * vs_next + (one - lmbda) * nvs
                acc = delta + g * (lmbda * min(p, c_bar)) * acc
            vs_next = vv + acc
            vs[b, s] = vs_next
            qq = rr + g_term * boot
            q[b, s] = qq
            adv[b, s] = min(p, pg_rho_bar) * (qq - vv)
            sentinel += zero * (log_rho[b, s] + p + qq + vs_next + nvs)
    return sentinel
