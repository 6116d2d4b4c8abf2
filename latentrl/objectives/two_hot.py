"""Two-hot heads of DreamerV3 in both generations' bin layouts, on TorchRL's two-hot functions.

* ``"symexp"`` (today's code, ``embodied/jax/heads.py`` ``symexp_twohot``): 255
  bins ``symexp(linspace(-20, 20))`` (TorchRL's ``SymExpTwoHot``, centre
  exactly 0); targets are two-hot encoded between raw bin values, the
  prediction is ``Σ p_i b_i``.
* ``"symlog"`` (the 2023 release, ``jaxutils.DiscDist`` under ``symlog_disc``):
  255 bins ``linspace(-20, 20)`` in symlog space; the target ``symlog(y)`` is
  encoded, the prediction is ``symexp(Σ p_i b_i)``.

:func:`two_hot_bins` builds the bins, :func:`two_hot_loss` and :func:`two_hot_value` use them.
"""
from __future__ import annotations

import torch
from torchrl.modules import SymExpTwoHot
from torchrl.modules.functional import symexp, symlog
from torchrl.objectives import two_hot_cross_entropy, two_hot_decode

__all__ = ["TWO_HOT_SPACES", "two_hot_bins", "two_hot_loss", "two_hot_value"]

TWO_HOT_SPACES = ("symexp", "symlog")


def two_hot_bins(num_bins: int = 255, space: str = "symexp", *, owner: str = "two_hot_bins") -> torch.Tensor:
    """``num_bins`` bins of ``space`` (see the module docstring); ``owner`` names the caller in the error."""
    if space not in TWO_HOT_SPACES:
        raise ValueError(f"{owner}: the two-hot `bins` must be one of {list(TWO_HOT_SPACES)}, got {space!r}")
    if space == "symexp":
        return SymExpTwoHot(int(num_bins)).bins.clone()
    bins = torch.linspace(-20.0, 20.0, int(num_bins))
    half = int(num_bins) // 2  # mirror the negative half, so the bins are symmetric and an odd count's centre is 0
    bins[-half:] = -bins[:half].flip(0)
    if int(num_bins) % 2:
        bins[half] = 0.0
    return bins


def two_hot_loss(logits: torch.Tensor, target: torch.Tensor, bins: torch.Tensor, space: str) -> torch.Tensor:
    """Cross-entropy of ``logits [*, K]`` against the two-hot encoding of ``target [*]`` on ``bins``."""
    return two_hot_cross_entropy(logits, symlog(target) if space == "symlog" else target, bins)


def two_hot_value(logits: torch.Tensor, bins: torch.Tensor, space: str) -> torch.Tensor:
    """The head's prediction ``[*]`` from ``logits [*, K]``."""
    value = two_hot_decode(logits, bins)
    return symexp(value) if space == "symlog" else value
