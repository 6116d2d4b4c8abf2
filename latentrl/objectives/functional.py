"""Pure loss math: tensors in, tensors out, no state. Each function cites its source."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from latentrl.checks import InputError, check_range, check_tensors

__all__ = [
    "reinforce_surrogate", "vtrace", "kl_free_nats", "kl_balanced", "kl_dyn_rep", "lambda_return", "sequence_priority"]


def reinforce_surrogate(
    log_prob: torch.Tensor, loss: torch.Tensor, baseline: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Score-function (REINFORCE) surrogate with a baseline.

    For ``z ~ p_theta(z)`` and a loss ``L(z)``, Williams (1992) gives

        grad_theta E[L(z)] = E[(L(z) - b) grad_theta log p_theta(z)]

    for any baseline ``b`` that does not depend on ``z``. This returns
    ``sg(L - b) * log p(z)``, elementwise: its gradient is that estimator,
    unbiased whatever ``b`` is, and lower-variance when ``b`` is close to
    ``E[L]``. Both ``L`` and ``b`` are stopped here; when ``L`` also depends
    on ``theta`` through other paths (e.g. a decoder), add ``L`` itself to
    the objective for those (Schulman et al. 2015, "Gradient estimation using
    stochastic computation graphs", surrogate loss).

    Args:
        log_prob: ``log p_theta(z)`` of the sampled ``z`` (differentiable).
        loss: ``L(z)``, broadcastable to ``log_prob``.
        baseline: ``b``, broadcastable to ``log_prob``.
    """
    tensors = {"log_prob": log_prob, "loss": loss}
    check_tensors("reinforce_surrogate", tensors, floating=tensors, finite=tensors)
    if isinstance(baseline, torch.Tensor):
        check_tensors("reinforce_surrogate", {"baseline": baseline}, floating=("baseline",), finite=("baseline",))
    else:
        check_range("reinforce_surrogate", "baseline", baseline)
    return (loss - baseline).detach() * log_prob


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
    time_dim: int = -2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, IMPALA).

    With the truncated importance weights of the target policy ``pi`` over the
    behaviour policy ``mu`` that acted,

        rho_s = min(rho_bar, pi(a_s|x_s) / mu(a_s|x_s)),
        c_s   = min(c_bar,   pi(a_s|x_s) / mu(a_s|x_s)),
        delta_s = rho_s (r_s + gamma_s V(x_{s+1}) - V(x_s)),

    the n-step V-trace target (eq. 1) is
    ``v_s = V(x_s) + sum_{t>=s} gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t``,
    computed by its recursion (Remark 1)

        v_s - V(x_s) = delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1})),

    and the policy-gradient advantage (Sec. 4.2) is

        A_s = min(pg_rho_bar, pi/mu) (r_s + gamma_s v_{s+1} - V(x_s)).

    ``rho_bar`` sets the fixed point (the value of the policy
    ``pi_rho_bar(a|x) ∝ min(rho_bar mu(a|x), pi(a|x))``), ``c_bar`` only the
    speed of the contraction (Theorem 1); ``pg_rho_bar`` clips the
    policy-gradient weights separately, as rlax's ``clip_pg_rho_threshold``
    does (the paper uses ``rho_bar`` for both: ``pg_rho_bar=None``).

    Episode ends inside the batch: the recursion never crosses a ``done``
    step. At ``terminated`` there is no bootstrap (``gamma_s = 0`` in
    ``delta_s`` and in ``A_s``); at a truncation (``done`` but not
    ``terminated``) ``delta_s`` and ``A_s`` bootstrap from
    ``next_state_value[s]``. ``v_{s+1}`` in ``A_s`` is replaced by
    ``V(x_{s+1})`` at ``done`` steps and at the last step.

    The recursion is evaluated as a parallel (Hillis-Steele) scan of the
    affine maps ``u -> delta_s + gamma_s c_s u``: ``ceil(log2 T)`` sweeps of
    elementwise products and sums over the whole ``[*B, T]`` tensor instead
    of a Python loop over ``T``. There is no division and no cumulative
    product to invert, so long unrolls and ``c_s = 0`` are exact (products
    of discounts can only underflow towards 0, which is their true value to
    float precision).

    The function is differentiable like any torch expression; V-trace
    outputs are *targets*: the caller detaches them (or the inputs), e.g.
    runs it under ``torch.no_grad()`` as :class:`latentrl.objectives.value.VTrace`
    does unless ``differentiable=True``.

    Args:
        log_rhos: ``log pi(a_s|x_s) - log mu(a_s|x_s)`` (target minus
            behaviour), or the pair ``(target_log_prob, behaviour_log_prob)``:
            ``log pi`` of the learner's current policy and ``log mu`` of the
            actor that collected the data, both at the actions taken.
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
        time_dim: the time dimension. All tensors share one shape
            ``[*B, T, *F]`` (TorchRL: ``[*B, T, 1]``, ``time_dim=-2``).

    Returns:
        ``(vs, pg_advantages)``, both shaped like ``state_value``. (TorchRL's
        ``vtrace_advantage_estimate`` returns ``(advantage, value_target)``.)
    """
    disc_terminated, disc_done, rhos = _vtrace_inputs(
        log_rhos, state_value, next_state_value, reward, done, terminated, gamma, rho_bar, c_bar, pg_rho_bar, time_dim
    )
    if pg_rho_bar is None:
        pg_rho_bar = rho_bar
    deltas = torch.clamp(rhos, max=rho_bar) * (reward + disc_terminated * next_state_value - state_value)
    decay = disc_done * torch.clamp(rhos, max=c_bar)
    # time last: slices along it are contiguous-ish and the scan is written for dim -1
    vs_minus_v = _reverse_affine_scan(deltas.movedim(time_dim, -1), decay.movedim(time_dim, -1))
    vs = vs_minus_v.movedim(-1, time_dim) + state_value
    adv = _pg_advantages(vs, rhos, state_value, next_state_value, reward, done, disc_terminated, pg_rho_bar, time_dim)
    return vs, adv


def _vtrace_inputs(log_rhos, state_value, next_state_value, reward, done, terminated, gamma, rho_bar, c_bar,
                   pg_rho_bar, time_dim):
    if isinstance(log_rhos, tuple):
        target_log_prob, behaviour_log_prob = log_rhos
        check_tensors("vtrace", {"target_log_prob": target_log_prob, "behaviour_log_prob": behaviour_log_prob},
                      floating=("target_log_prob", "behaviour_log_prob"))
        log_rhos = target_log_prob - behaviour_log_prob
    tensors = {
        "log_rhos": log_rhos,
        "state_value": state_value,
        "next_state_value": next_state_value,
        "reward": reward,
        "done": done,
        "terminated": terminated,
    }
    values = ("log_rhos", "state_value", "next_state_value", "reward")
    check_tensors("vtrace", tensors, floating=values, boolean=("done", "terminated"), finite=values,
                  same_shape=tensors, min_dim=1)
    check_range("vtrace", "gamma", gamma, 0.0, 1.0)
    check_range("vtrace", "rho_bar", rho_bar, 0.0, None, lo_open=True)
    check_range("vtrace", "c_bar", c_bar, 0.0, None, lo_open=True)
    check_range("vtrace", "pg_rho_bar", pg_rho_bar, 0.0, None, lo_open=True, optional=True)
    if not -reward.dim() <= time_dim < reward.dim():
        raise InputError(f"vtrace: `time_dim` {time_dim} is not a dimension of inputs shaped {tuple(reward.shape)}")
    not_terminated = (~terminated.bool()).to(reward.dtype)
    not_done = (~done.bool()).to(reward.dtype)
    return gamma * not_terminated, gamma * not_done, log_rhos.exp()


def _pg_advantages(vs, rhos, state_value, next_state_value, reward, done, disc_terminated, pg_rho_bar, time_dim):
    t = vs.shape[time_dim]
    vs_next = torch.cat([vs.narrow(time_dim, 1, t - 1), next_state_value.narrow(time_dim, t - 1, 1)], time_dim)
    # across an episode boundary v_{s+1} belongs to the next episode: bootstrap from V(x_{s+1})
    vs_next = torch.where(done.bool(), next_state_value, vs_next)
    return torch.clamp(rhos, max=pg_rho_bar) * (reward + disc_terminated * vs_next - state_value)


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


def _vtrace_reference(
    log_rhos, state_value, next_state_value, reward, done, terminated, *, gamma, rho_bar=1.0, c_bar=1.0,
    pg_rho_bar=None, time_dim=-2,
):
    """:func:`vtrace` as a plain loop over time, step by step (the independent check in the tests)."""
    if isinstance(log_rhos, (tuple, list)):
        log_rhos = log_rhos[0] - log_rhos[1]
    pg_rho_bar = rho_bar if pg_rho_bar is None else pg_rho_bar
    gamma = torch.as_tensor(gamma, dtype=reward.dtype, device=reward.device).expand_as(reward)
    log_rhos, v, v_next, r, gamma, done, terminated = (
        x.movedim(time_dim, 0) for x in (log_rhos, state_value, next_state_value, reward, gamma, done, terminated)
    )
    n = v.shape[0]
    vs, adv = torch.empty_like(v), torch.empty_like(v)
    vs_minus_v_next = torch.zeros_like(v[0])  # v_{s+1} - V(x_{s+1}); 0 past the unroll
    for s in reversed(range(n)):
        rho = log_rhos[s].exp()
        bootstrap = torch.where(terminated[s].bool(), 0.0, gamma[s])
        cut = torch.where(done[s].bool(), 0.0, gamma[s])
        delta = torch.clamp(rho, max=rho_bar) * (r[s] + bootstrap * v_next[s] - v[s])
        vs_minus_v = delta + cut * torch.clamp(rho, max=c_bar) * vs_minus_v_next
        vs[s] = v[s] + vs_minus_v
        q_next = v_next[s] if s == n - 1 else torch.where(done[s].bool(), v_next[s], vs[s + 1])
        adv[s] = torch.clamp(rho, max=pg_rho_bar) * (r[s] + bootstrap * q_next - v[s])
        vs_minus_v_next = vs_minus_v
    return vs.movedim(0, time_dim), adv.movedim(0, time_dim)


# --------------------------------------------------------------------------
# world-model KL terms (PlaNet, DreamerV2, DreamerV3)
# --------------------------------------------------------------------------
def _detached(params):
    return tuple(p.detach() for p in params) if isinstance(params, (tuple, list)) else params.detach()


def _make(dist_fn, params):
    return dist_fn(*params) if isinstance(params, (tuple, list)) else dist_fn(params)


def kl_free_nats(posterior, prior, dist_fn, free_nats: float = 3.0) -> torch.Tensor:
    """PlaNet's KL term: ``mean(max(free_nats, KL(q || p)))``.

    Hafner et al. 2019 (PlaNet), Section 4 and Appendix A: the KL between
    posterior and prior, summed over the latent dimensions (``dist_fn`` builds
    a distribution whose event covers them, e.g. ``Independent(Normal, 1)``),
    is clamped from below at ``free_nats = 3`` for every sequence element
    ``[B, T]`` (no gradient where it is below), then averaged.

    Args:
        posterior, prior: the distributions' parameters (a tensor or a tuple of
            tensors, e.g. ``(mean, std)``), passed to ``dist_fn``.
        dist_fn: parameters -> ``torch.distributions.Distribution``.
        free_nats: the clamp, in nats.
    """
    kl = torch.distributions.kl_divergence(_make(dist_fn, posterior), _make(dist_fn, prior))
    return kl.clamp_min(free_nats).mean()


def kl_balanced(posterior, prior, dist_fn, alpha: float = 0.8, free_nats: float = 0.0) -> torch.Tensor:
    """DreamerV2's KL balancing: ``alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p))``.

    Hafner et al. 2020 (DreamerV2), Section 2 and Algorithm 2, Table D.1:
    ``alpha = 0.8`` trains the prior four times as fast as the posterior is
    regularized. The value is ``KL(q || p)``; only the gradients are split.
    ``free_nats`` (0 on Atari, 1 on DMC in the authors' configs) clamps each
    of the two averaged terms from below, as the reference does with
    ``free_avg``. The KL is summed over the latent variables (the event of
    ``dist_fn``'s distribution).

    Args:
        posterior, prior: parameters (tensor or tuple) for ``dist_fn``.
        dist_fn: parameters -> distribution (e.g. 32 independent categoricals).
        alpha: the prior's share of the gradient.
        free_nats: lower clamp of each averaged term.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"kl_balanced: `alpha` must be in [0, 1], got {alpha}")
    q, p = _make(dist_fn, posterior), _make(dist_fn, prior)
    q_sg, p_sg = _make(dist_fn, _detached(posterior)), _make(dist_fn, _detached(prior))
    prior_term = torch.distributions.kl_divergence(q_sg, p).mean().clamp_min(free_nats)
    posterior_term = torch.distributions.kl_divergence(q, p_sg).mean().clamp_min(free_nats)
    return alpha * prior_term + (1.0 - alpha) * posterior_term


def kl_dyn_rep(
    posterior_logits: torch.Tensor,
    prior_logits: torch.Tensor,
    dyn_scale: float = 1.0,
    rep_scale: float = 0.1,
    free_bits: float = 1.0,
    unimix: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV3's dynamics and representation losses, scaled: ``(beta_dyn L_dyn, beta_rep L_rep)``.

    Hafner et al. 2023 (DreamerV3), Section 3, eq. 5:

        L_dyn = max(1, KL(sg(q) || p)),   L_rep = max(1, KL(q || sg(p)))

    with ``beta_dyn = 1``, ``beta_rep = 0.1``, the KL summed over the 32
    categorical variables before the free-bits clamp, and 1% uniform mixed
    into both distributions. TorchRL 0.14.1's ``categorical_kl_terms`` computes
    exactly these two terms (clamp on the sum, unimix); this scales them.
    TorchRL's ``categorical_kl_balanced`` instead clamps each categorical's KL
    (``tests/upstream/test_kl_balanced_free_bits.py`` shows the difference, ``UPSTREAM.md`` #14).

    Args:
        posterior_logits, prior_logits: ``[..., num_vars, num_classes]``.
    """
    from torchrl.objectives.dreamer_v3 import categorical_kl_terms

    dyn, rep = categorical_kl_terms(posterior_logits, prior_logits, free_nats=free_bits, unimix=unimix)
    return dyn_scale * dyn, rep_scale * rep


def lambda_return(
    reward: torch.Tensor, next_value: torch.Tensor, discount: torch.Tensor, lmbda: float = 0.95, *, time_dim: int = -2
) -> torch.Tensor:
    """Dreamer's λ-return over an imagined trajectory (Hafner et al. 2020, DreamerV2, eq. 4):

        V^λ_t = r_t + γ_t ((1 − λ) v(s_{t+1}) + λ V^λ_{t+1}),   V^λ_{H-1} = r_{H-1} + γ_{H-1} v(s_H)

    where ``γ_t`` is the per-step discount (DreamerV2: the discount head's
    prediction times γ = 0.995) and ``next_value[t] = v(s_{t+1})``. Computed by
    TorchRL's ``td_lambda_return_estimate`` with the discount as a rolling
    gamma tensor and no done flags (continuation lives in ``discount``).

    Args:
        reward, next_value, discount: ``[*B, H, 1]`` (time along ``time_dim``).
        lmbda: λ (DreamerV2: 0.95).
    """
    from torchrl.objectives.value.functional import td_lambda_return_estimate

    check_range("lambda_return", "lmbda", lmbda, 0.0, 1.0)
    tensors = {"reward": reward, "next_value": next_value, "discount": discount}
    check_tensors("lambda_return", tensors, floating=tensors, finite=tensors, same_shape=tensors, min_dim=1)
    check_range("lambda_return", "discount", discount, 0.0, 1.0)
    never = torch.zeros_like(reward, dtype=torch.bool)
    return td_lambda_return_estimate(
        discount, lmbda, next_value, reward, never, never, rolling_gamma=True, time_dim=time_dim
    )


# --------------------------------------------------------------------------
# Dreamer actor and critic in imagination (DreamerV2)
# --------------------------------------------------------------------------
def imagination_weights(discount: torch.Tensor, *, time_dim: int = -2) -> torch.Tensor:
    """Cumulative discount weights ``w_t = prod_{i < t} γ_i`` (``w_0 = 1``), detached.

    DreamerV2 (Hafner et al. 2020, Section 3 and the authors' code) weighs
    every imagined step's actor and critic loss by the predicted probability
    of still being inside the episode, the product of the earlier discounts.
    """
    discount = discount.detach().movedim(time_dim, 0)
    shifted = torch.cat([torch.ones_like(discount[:1]), discount[:-1]], 0)
    return shifted.cumprod(0).movedim(0, time_dim)


def dreamer_actor_loss(
    log_prob: torch.Tensor,
    entropy: torch.Tensor,
    lambda_target: torch.Tensor,
    baseline: torch.Tensor,
    weight: torch.Tensor,
    rho: float,
    eta: float,
) -> torch.Tensor:
    """DreamerV2's actor loss (Hafner et al. 2020, eq. 6):

        L = E[ − ρ · log π(a_t | z_t) · sg(V^λ_t − v(z_t))     (REINFORCE)
               − (1 − ρ) · V^λ_t                               (dynamics backprop)
               − η · H[π(· | z_t)] ]

    each step weighted by ``weight`` (:func:`imagination_weights`, no
    gradient). ``ρ = 1, η = 1e-3`` for discrete and ``ρ = 0, η = 1e-4`` for
    continuous actions (Table D.1). Gradients: the REINFORCE term reaches
    only ``log_prob`` (its advantage and the baseline are stopped); the
    dynamics term reaches ``V^λ`` (through the imagined rewards, values and
    straight-through or reparameterized actions); ``baseline`` gets none.

    Args:
        log_prob, entropy, lambda_target, baseline, weight: same shape
            ``[*B, H]`` or ``[*B, H, 1]`` (steps ``0..H-1`` of an imagined trajectory).
        rho, eta: ρ and η.
    """
    shapes = {t.shape for t in (log_prob, entropy, lambda_target, baseline, weight)}
    if len(shapes) != 1:
        raise ValueError(
            "dreamer_actor_loss: log_prob, entropy, lambda_target, baseline and weight must share one shape, "
            f"got {[tuple(t.shape) for t in (log_prob, entropy, lambda_target, baseline, weight)]}"
        )
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"dreamer_actor_loss: `rho` must be in [0, 1], got {rho}")
    advantage = (lambda_target - baseline).detach()
    objective = rho * log_prob * advantage + (1.0 - rho) * lambda_target + eta * entropy
    return -(weight.detach() * objective).mean()


def dreamer_critic_loss(value: torch.Tensor, lambda_target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """DreamerV2's critic loss (Hafner et al. 2020, eq. 5): ``E[w_t · ½ (v(z_t) − sg(V^λ_t))²]``.

    The unit-variance Gaussian negative log-likelihood of the authors' code
    (without its constant); ``V^λ`` comes from the slow target critic.
    """
    if value.shape != lambda_target.shape or value.shape != weight.shape:
        raise ValueError(
            f"dreamer_critic_loss: value, lambda_target and weight must share one shape, got "
            f"{tuple(value.shape)}, {tuple(lambda_target.shape)}, {tuple(weight.shape)}"
        )
    return (weight.detach() * 0.5 * (value - lambda_target.detach()).pow(2)).mean()


def sequence_priority(td_error: torch.Tensor, mask: torch.Tensor, eta: float = 0.9) -> torch.Tensor:
    r"""R2D2's sequence priority (Kapturowski et al. 2019, Section 2, "Prioritized
    replay"): a mixture of the max and the mean absolute n-step TD error over
    the sequence,

    .. math:: p = \eta \max_t |\delta_t| + (1 - \eta) \frac{1}{|M|}\sum_{t \in M} |\delta_t|

    taken over the masked steps ``M`` (``mask`` True: real training steps).
    ``eta = 0.9`` in the paper; large ``eta`` keeps a few large errors from being
    averaged away over a long sequence.

    Args:
        td_error: ``[..., T]`` (a trailing singleton dim ``[..., T, 1]`` is accepted).
        mask: bool, same shape as ``td_error`` (without the singleton).
        eta: mixing weight in ``[0, 1]``.

    Returns:
        ``[...]`` priorities. A sequence without any masked step gets priority
        ``0`` (the sampler still adds its ``eps``).
    """
    check_range("sequence_priority", "eta", eta, 0.0, 1.0)
    check_tensors("sequence_priority", {"td_error": td_error}, floating=("td_error",), finite=("td_error",))
    if td_error.ndim == mask.ndim + 1 and td_error.shape[-1] == 1:
        td_error = td_error.squeeze(-1)
    if td_error.shape != mask.shape:
        raise ValueError(f"td_error {tuple(td_error.shape)} and mask {tuple(mask.shape)} must have the same shape")
    if td_error.ndim == 0:
        raise ValueError("td_error needs a time dimension ([..., T])")
    mask = mask.bool()
    err = td_error.detach().abs().masked_fill(~mask, 0)
    count = mask.sum(-1)
    max_err = err.amax(-1)
    mean_err = err.sum(-1) / count.clamp_min(1)
    priority = eta * max_err + (1 - eta) * mean_err
    return torch.where(count > 0, priority, torch.zeros_like(priority))
