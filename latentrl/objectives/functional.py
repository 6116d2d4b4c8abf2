"""Pure loss math: tensors in, tensors out, no state. Each function cites its source."""
from __future__ import annotations

import torch

__all__ = ["reinforce_surrogate"]


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
    return (loss - baseline).detach() * log_prob
