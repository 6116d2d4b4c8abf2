"""Independent oracles for the tests: each algorithm written out plainly, as a loop, from its paper.

Kept out of the package: nothing in ``latentrl`` may call them.
"""
from __future__ import annotations

import itertools

import torch

from latentrl.objectives.value.rescaling import value_rescale, value_rescale_inverse


def vtrace_loop(
    log_rhos, state_value, next_state_value, reward, done, terminated, *, gamma, rho_bar=1.0, c_bar=1.0,
    pg_rho_bar=None, lmbda=1.0, time_dim=-2,
):
    """V-trace as a plain loop over time, step by step, from the paper's recursion (with rlax's lambda).

    Returns ``(vs, pg_advantage, q_estimate)``."""
    if isinstance(log_rhos, (tuple, list)):
        log_rhos = log_rhos[0] - log_rhos[1]
    pg_rho_bar = rho_bar if pg_rho_bar is None else pg_rho_bar
    gamma = torch.as_tensor(gamma, dtype=reward.dtype, device=reward.device).expand_as(reward)
    log_rhos, v, v_next, r, gamma, done, terminated = (
        x.movedim(time_dim, 0) for x in (log_rhos, state_value, next_state_value, reward, gamma, done, terminated)
    )
    n = v.shape[0]
    vs, adv, qs = torch.empty_like(v), torch.empty_like(v), torch.empty_like(v)
    vs_minus_v_next = torch.zeros_like(v[0])  # v_{s+1} - V(x_{s+1}); 0 past the unroll
    for s in reversed(range(n)):
        rho = log_rhos[s].exp()
        bootstrap = torch.where(terminated[s].bool(), 0.0, gamma[s])
        cut = torch.where(done[s].bool(), 0.0, gamma[s])
        delta = torch.clamp(rho, max=rho_bar) * (r[s] + bootstrap * v_next[s] - v[s])
        vs_minus_v = delta + cut * lmbda * torch.clamp(rho, max=c_bar) * vs_minus_v_next
        vs[s] = v[s] + vs_minus_v
        mixed = v_next[s] if s == n - 1 else lmbda * vs[s + 1] + (1 - lmbda) * v_next[s]
        q_next = torch.where(done[s].bool(), v_next[s], mixed)
        qs[s] = r[s] + bootstrap * q_next
        adv[s] = torch.clamp(rho, max=pg_rho_bar) * (qs[s] - v[s])
        vs_minus_v_next = vs_minus_v
    return vs.movedim(0, time_dim), adv.movedim(0, time_dim), qs.movedim(0, time_dim)


def rescaled_n_step_targets_loop(
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
    """:func:`rescaled_n_step_targets` as a double Python loop straight from its definition ."""
    reward, done, terminated, bootstrap_value, has_state = (
        x.movedim(time_dim, -1) for x in (reward, done, terminated, bootstrap_value, has_state)
    )
    batch_shape, length = reward.shape[:-1], reward.shape[-1]
    target = torch.zeros_like(reward)
    mask = torch.zeros_like(done)
    h, h_inv = value_rescale, value_rescale_inverse
    for b in itertools.product(*[range(s) for s in batch_shape]):
        for t in range(length):
            k_star = next((k for k in range(n) if t + k < length and bool(done[b + (t + k,)])), None)
            if k_star is not None:
                ret = sum(gamma**j * reward[b + (t + j,)] for j in range(k_star + 1))
                if bool(terminated[b + (t + k_star,)]):
                    target[b + (t,)], mask[b + (t,)] = h(ret, eps), True
                elif t + k_star + 1 < length and bool(has_state[b + (t + k_star + 1,)]):
                    boot = h_inv(bootstrap_value[b + (t + k_star + 1,)], eps)
                    target[b + (t,)], mask[b + (t,)] = h(ret + gamma ** (k_star + 1) * boot, eps), True
                continue
            n_prime = min(n, length - 1 - t)
            if n_prime >= 1 and bool(has_state[b + (t + n_prime,)]):
                ret = sum(gamma**j * reward[b + (t + j,)] for j in range(n_prime))
                boot = h_inv(bootstrap_value[b + (t + n_prime,)], eps)
                target[b + (t,)], mask[b + (t,)] = h(ret + gamma**n_prime * boot, eps), True
    return target.movedim(-1, time_dim), mask.movedim(-1, time_dim)
