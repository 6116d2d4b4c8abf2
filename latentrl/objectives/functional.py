"""Pure loss math: tensors in, tensors out, no state. Each function cites its source."""
from __future__ import annotations

import torch

from latentrl.checks import check_range, check_tensors
from latentrl.objectives._vtrace import VTraceOutput, vtrace

__all__ = [
    "reinforce_surrogate", "vtrace", "VTraceOutput", "kl_free_nats", "kl_balanced", "kl_dyn_rep", "lambda_return", "sequence_priority"]


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
