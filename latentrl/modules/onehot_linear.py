"""A linear layer that skips the multiply-adds of a one-hot block of its input.

DreamerV2's latent ``s`` is 32 one-hot categoricals of 32 classes, 1024 of the
1224 inputs of every head that reads ``cat([h, s])`` and 1024 of the inputs of
the RSSM's ``MLP([s, a])``. For a one-hot block, ``W_s s`` is the sum of the
32 columns of ``W_s`` that ``s`` selects, so the forward pass and the weight
gradient cost ``32 x out`` additions per row instead of ``1024 x out``
multiply-adds; only the gradient with respect to ``s`` (when ``s`` needs one,
e.g. for straight-through gradients) remains a dense matmul.

:class:`OneHotBlockLinear` is an ``nn.Linear`` (same parameters, so it can
replace the first layer of TorchRL's ``MLP``: :class:`PartsMLP`) whose
output equals ``nn.Linear``'s to float32 rounding whenever the block holds,
per categorical, either a one-hot vector or zeros (the reset state). Any
other value in the block raises a ``ValueError`` (``validate=True``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["OneHotBlockLinear", "PartsMLP", "one_hot_block"]


class _OneHotMatmul(torch.autograd.Function):
    """``x @ weight.T`` for ``x [N, V*K]`` holding per categorical a one-hot or zeros.

    Forward: a gather-sum of the selected columns (``embedding_bag``); backward:
    the dense gradients ``grad @ weight`` and ``grad.T @ x`` (on CPU a dense
    matmul is as fast as ``embedding_bag``'s scatter for the weight gradient).
    """

    @staticmethod
    def forward(ctx, x, weight, num_vars: int, num_classes: int, validate: bool):
        n = x.shape[0]
        value, index = _block_index(x.reshape(n * num_vars, num_classes), validate)
        value, index = value.reshape(n, num_vars), index.reshape(n, num_vars)
        index = index + torch.arange(num_vars, device=x.device) * num_classes
        weights = None if bool((value == 1).all()) else value
        out = F.embedding_bag(index, weight.t().contiguous(), mode="sum", per_sample_weights=weights)
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_w = grad.t() @ x if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None, None


def _block_index(rows: torch.Tensor, validate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mass, hot class)`` of each row of ``rows [M, K]``, from one thin matmul with ``[1, k, k^2]``.

    A row is a one-hot (mass 1) or zeros (mass 0) iff it is non-negative, its
    mass is 0 or 1 and the "variance" of ``k`` under it, ``E[k^2] - E[k]^2``,
    is zero; for one-hots these moments are exact integers in float32.
    """
    k = torch.arange(rows.shape[-1], device=rows.device, dtype=rows.dtype)
    moments = rows.detach() @ torch.stack([torch.ones_like(k), k, k * k], 1)  # [M, 3]
    mass, first, second = moments.unbind(-1)
    if validate:
        ok = bool(rows.min() >= 0) and bool(((mass == 0) | (mass == 1)).all()) and bool((second == first * first).all())
        if not ok:
            raise ValueError(
                f"OneHotBlockLinear: each categorical of the one-hot block ({rows.shape[-1]} classes) must hold a "
                "one-hot vector or zeros; got other values (use nn.Linear for dense inputs)"
            )
    return mass, first.long()


def one_hot_block(x: torch.Tensor, weight: torch.Tensor, num_vars: int, num_classes: int,
                  validate: bool = True) -> torch.Tensor:
    """``x @ weight.T`` for a block ``x [..., num_vars * num_classes]`` of one-hots (or zeros)."""
    lead = x.shape[:-1]
    out = _OneHotMatmul.apply(x.reshape(-1, x.shape[-1]), weight, num_vars, num_classes, validate)
    return out.reshape(*lead, weight.shape[0])


class OneHotBlockLinear(nn.Linear):
    """``nn.Linear`` over inputs given in parts, one of which is a block of one-hot categoricals.

    Args:
        part_sizes: the sizes of the input parts, in order (they sum to the
            layer's ``in_features``), e.g. ``(deter_dim, num_vars * num_classes)``
            for a head over ``(h, s)``.
        block: the index of the one-hot part.
        out_features, bias: as ``nn.Linear``.
        num_vars, num_classes: the block's shape (DreamerV2: 32 x 32).
        validate: check that the block holds one-hots or zeros (cheap: it
            comes with finding the hot classes; the error names the layer's block).

    ``forward(*parts)`` takes the parts separately (no concatenation, whose
    backward would copy the whole input gradient) or one tensor to split.
    """

    #: below this many rows a dense matmul is faster than the gather's fixed costs
    min_rows = 1024

    def __init__(self, part_sizes, out_features: int, *, block: int, num_vars: int, num_classes: int,
                 bias: bool = True, validate: bool = True, device=None, dtype=None):
        self.part_sizes = tuple(int(p) for p in part_sizes)
        super().__init__(sum(self.part_sizes), out_features, bias=bias, device=device, dtype=dtype)
        if not 0 <= block < len(self.part_sizes) or self.part_sizes[block] != int(num_vars) * int(num_classes):
            raise ValueError(
                f"OneHotBlockLinear: part {block} of {self.part_sizes} must be the one-hot block of "
                f"{num_vars} x {num_classes} inputs"
            )
        self.block, self.num_vars, self.num_classes, self.validate = int(block), int(num_vars), int(num_classes), bool(validate)

    @classmethod
    def from_linear(cls, linear: nn.Linear, part_sizes, **block) -> "OneHotBlockLinear":
        """The same layer (its parameters, shared) over input parts with a one-hot block."""
        new = nn.utils.skip_init(cls, part_sizes, linear.out_features, bias=linear.bias is not None,
                                 **block, device=linear.weight.device, dtype=linear.weight.dtype)  # no RNG draws
        if new.in_features != linear.in_features:
            raise ValueError(f"OneHotBlockLinear.from_linear: parts {tuple(part_sizes)} do not sum to {linear.in_features}")
        new.weight, new.bias = linear.weight, linear.bias
        return new

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        if len(parts) == 1 and len(self.part_sizes) > 1:
            parts = parts[0].split(self.part_sizes, -1)
        if len(parts) != len(self.part_sizes):
            raise ValueError(f"OneHotBlockLinear: expected {len(self.part_sizes)} input parts, got {len(parts)}")
        columns = self.weight.split(self.part_sizes, 1)
        dense = parts[self.block].numel() < self.min_rows * self.part_sizes[self.block]
        out = self.bias
        for i, (x, w) in enumerate(zip(parts, columns)):
            if i == self.block and not dense:
                y = one_hot_block(x, w, self.num_vars, self.num_classes, self.validate)
            else:
                y = F.linear(x, w)
            out = y if out is None else y + out
        return out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, parts={self.part_sizes}, one_hot=part {self.block} "
                f"({self.num_vars}x{self.num_classes})")


class PartsMLP(nn.Module):
    """TorchRL's ``MLP`` whose first layer reads the input parts separately (an :class:`OneHotBlockLinear`).

    Same parameters and ``state_dict`` as the ``MLP`` it is built from.
    """

    def __init__(self, mlp: nn.Sequential, part_sizes, **block):
        super().__init__()
        self.first = OneHotBlockLinear.from_linear(mlp[0], part_sizes, **block)
        self.rest = nn.Sequential(*list(mlp)[1:])

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first(*parts))
