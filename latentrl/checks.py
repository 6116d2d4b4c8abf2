"""Input checks shared by the public functions, modules and losses.

Each check raises :class:`InputError` (a ``ValueError``, and a ``TypeError``
for dtype problems) or ``KeyError`` with a message that names the function,
the argument or key, what it accepts and what it got. They are cheap
(one reduction per tensor at most) and run once per call, never inside a
recursion's inner steps.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

import torch
from tensordict import TensorDictBase

__all__ = ["InputError", "check_positive_int", "check_range", "check_tensors", "require_keys", "require_module_inputs"]


class InputError(ValueError, TypeError):
    """A public function or loss got an argument it does not accept; the message names it."""


def _bounds(lo, hi, lo_open, hi_open) -> str:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"


def check_range(
    owner: str,
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    optional: bool = False,
) -> None:
    """``value`` (a number, or every entry of a tensor) lies in the interval; NaN never does."""
    if value is None and optional:
        return
    if type(value) is float or type(value) is int:  # the common case, before the slower isinstance checks
        low = high = float(value)
        bad = low != low  # NaN
    elif isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            raise InputError(f"{owner}: `{name}` must be a number or a real tensor, got a {value.dtype} tensor")
        if value.numel() == 0:
            return
        v = value.detach()
        low, high = v.min().item(), v.max().item()
        bad = bool(torch.isnan(v).any())
    elif isinstance(value, Real) and not isinstance(value, bool):
        low = high = float(value)
        bad = math.isnan(low)
    else:
        raise InputError(f"{owner}: `{name}` must be a number in {_bounds(lo, hi, lo_open, hi_open)}, got {value!r}")
    if lo is not None:
        bad = bad or (low <= lo if lo_open else low < lo)
    if hi is not None:
        bad = bad or (high >= hi if hi_open else high > hi)
    if bad:
        got = f"{low}" if low == high else f"values in [{low}, {high}]"
        raise InputError(f"{owner}: `{name}` must be in {_bounds(lo, hi, lo_open, hi_open)}, got {got}")


def check_positive_int(owner: str, name: str, value: Any) -> None:
    """``value`` is an integer (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{owner}: `{name}` must be an integer >= 1, got {value!r}")


def check_tensors(
    owner: str,
    tensors: Mapping[str, Any],
    *,
    floating: Iterable[str] = (),
    boolean: Iterable[str] = (),
    finite: Iterable[str] = (),
    same_shape: Iterable[str] = (),
    min_dim: int = 0,
) -> None:
    """Type, dtype, shape and finiteness of named tensor arguments.

    ``floating``/``boolean``: required dtypes; ``finite``: no NaN/inf entry;
    ``same_shape``: these share one shape; ``min_dim``: each has at least this
    many dimensions.
    """
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{owner}: `{name}` must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < min_dim:
            raise InputError(f"{owner}: `{name}` needs at least {min_dim} dimension(s), got shape {tuple(t.shape)}")
    for name in floating:
        if not tensors[name].is_floating_point():
            raise InputError(f"{owner}: `{name}` must be a floating-point tensor, got {tensors[name].dtype}")
    for name in boolean:
        if tensors[name].dtype != torch.bool:
            raise InputError(
                f"{owner}: `{name}` must be a bool tensor (episode flags), got {tensors[name].dtype}; "
                "convert with `.bool()` if 0/1 flags are meant"
            )
    same_shape = list(same_shape)
    shapes = {name: tuple(tensors[name].shape) for name in same_shape}
    if len(set(shapes.values())) > 1:
        raise InputError(f"{owner}: {', '.join(f'`{n}`' for n in same_shape)} must share one shape, got {shapes}")
    for name in finite:
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(torch.isinf(t).sum())
            raise InputError(f"{owner}: `{name}` must be finite, got {n_nan} NaN and {n_inf} inf entries")


def require_keys(owner: str, tensordict: TensorDictBase, keys: Mapping[str, Any]) -> None:
    """Every ``keys`` value (a tensordict key, by its ``set_keys`` field name) is in ``tensordict``."""
    present = set(tensordict.keys(True, True))
    for field, key in keys.items():
        if key not in present and not (isinstance(key, tuple) and len(key) == 1 and key[0] in present):
            shown = sorted(("/".join(k) if isinstance(k, tuple) else k) for k in present)
            raise KeyError(
                f"{owner}: the input tensordict has no {key!r} (the `{field}` key; rename it with "
                f"set_keys({field}=...)); it has: {', '.join(shown)}"
            )


def _as_tuple(key) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)


def require_module_inputs(owner: str, tensordict: TensorDictBase, modules: Mapping[str, Any], prefix: tuple = (),
                          skip: tuple = ()) -> None:
    """Every input key of the keyed ``modules`` (by argument name) is in ``tensordict`` (under ``prefix``).

    The message names the key, the loss and the module that reads it, so a
    user who renamed an observation finds where the old name is still read.
    Input keys in ``skip`` are not checked (the loss fills them in).
    """
    leaves = [_as_tuple(k) for k in tensordict.keys(True, True)]
    for name, module in modules.items():
        if module is None:
            continue
        for key in module.in_keys:
            if key in skip:
                continue
            full = (*prefix, *_as_tuple(key))
            if not any(leaf[: len(full)] == full for leaf in leaves):
                shown = sorted("/".join(k) for k in leaves)
                raise KeyError(
                    f"{owner}: the input tensordict has no {full[0] if len(full) == 1 else full!r}, an input of "
                    f"the `{name}` (its in_keys: {list(module.in_keys)}); it has: {', '.join(shown)}"
                )
