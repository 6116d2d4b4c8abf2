"""Baselines for score-function estimators."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MovingAverageBaseline"]


class MovingAverageBaseline(nn.Module):
    """Exponential moving average of the loss, ``b <- decay * b + (1 - decay) * mean(L)``.

    The first update sets ``b`` to ``mean(L)``. Its value is a buffer, so it is
    saved with the model and moves with ``.to(device)``.

    Args:
        decay: weight of the old value (default 0.99).
    """

    def __init__(self, decay: float = 0.99):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MovingAverageBaseline: `decay` must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self) -> torch.Tensor:
        """The current baseline ``b`` (a detached scalar)."""
        return self.value.detach()

    @torch.no_grad()
    def update(self, loss: torch.Tensor) -> torch.Tensor:
        """Folds ``mean(loss)`` into the average and returns the new ``b``."""
        mean = loss.detach().float().mean()
        if not bool(self.initialized):
            self.value.copy_(mean)
            self.initialized.fill_(True)
        else:
            self.value.mul_(self.decay).add_((1.0 - self.decay) * mean)
        return self.value.clone()
