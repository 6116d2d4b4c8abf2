"""Unroll a keyed recurrent step module over the time dimension of a collected window.

A collector runs a recurrent policy one step at a time: the step module reads
its state under some keys and writes the next state under ``("next", ...)``.
A loss on a ``[B, T]`` window (time last) re-runs the same module with
gradients: step 0 from the state the collector stored at ``t = 0``, every
later step from the state the previous step wrote (the module resets it
itself at ``is_init``). :func:`unroll_keyed` does that for any such module, so
a loss needs no knowledge of what the state holds.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from latentrl.checks import InputError, require_module_inputs

__all__ = ["unroll_keyed", "step_after"]


def _as_tuple(key: NestedKey) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _inputs(module: TensorDictModuleBase, state_keys: Sequence[NestedKey]) -> list[NestedKey]:
    states = {_as_tuple(k) for k in state_keys}
    return [k for k in module.in_keys if _as_tuple(k) not in states]


def unroll_keyed(module: TensorDictModuleBase, tensordict: TensorDictBase, state_keys: Sequence[NestedKey],
                 owner: str = "unroll_keyed") -> TensorDictBase:
    """Runs ``module`` over the last batch dimension of ``tensordict`` ``[*B, T]``; returns its outputs ``[*B, T]``.

    ``state_keys`` are the module's state inputs; it must write each of them
    under ``("next", ...)``. The other inputs are read from ``tensordict`` at
    every step; its stored state is read at ``t = 0`` only.
    """
    if tensordict.batch_dims < 1:
        raise InputError(f"{owner}: expected a window [*B, T] (time last), got batch {list(tensordict.batch_size)}")
    inputs = _inputs(module, state_keys)
    require_module_inputs(owner, tensordict, {"step module": module})
    first = tensordict[..., 0]
    state = {k: first.get(k) for k in state_keys}
    outs = []
    for t in range(tensordict.shape[-1]):
        step = tensordict[..., t].select(*inputs)
        for k, v in state.items():
            step.set(k, v)
        step = module(step)
        state = {k: step.get(("next", *_as_tuple(k))) for k in state_keys}
        outs.append(step)
    return torch.stack(outs, tensordict.batch_dims - 1).contiguous()


def step_after(module: TensorDictModuleBase, tensordict: TensorDictBase, unrolled: TensorDictBase,
               state_keys: Sequence[NestedKey], is_init_key: NestedKey = "is_init") -> TensorDictBase:
    """One more step after the window, on the last step's ``("next", ...)`` inputs and the unroll's last state
    (for a bootstrap value; ``is_init`` is False there: a done step's value is masked by the estimator)."""
    last, after = tensordict[..., -1], unrolled[..., -1]
    step = last.get("next").select(*[k for k in _inputs(module, state_keys) if _as_tuple(k) != _as_tuple(is_init_key)])
    step.set(is_init_key, torch.zeros_like(last.get(is_init_key)))
    for k in state_keys:
        step.set(k, after.get(("next", *_as_tuple(k))))
    return module(step)
