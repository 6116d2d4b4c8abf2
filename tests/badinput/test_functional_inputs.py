"""Generated bad inputs for the pure functions: each gets a ValueError (InputError)
naming the argument and what it accepts, never a NaN result or an obscure failure."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentrl.checks import InputError
from latentrl.objectives.functional import lambda_return, vtrace
from latentrl.objectives.value.rescaling import (
    rescaled_n_step_targets,
    value_rescale,
    value_rescale_inverse,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

bad_unit = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6), st.just(math.nan))
bad_positive = st.one_of(st.floats(max_value=0.0), st.just(math.nan))


def _corrupt(x: torch.Tensor, how: str, index: int) -> object:
    """A bad version of a valid tensor argument ``x``."""
    flat = x.clone().reshape(-1)
    if how == "nan":
        flat[index % flat.numel()] = math.nan
        return flat.reshape(x.shape)
    if how == "inf":
        flat[index % flat.numel()] = -math.inf if index % 2 else math.inf
        return flat.reshape(x.shape)
    if how == "shape":
        return torch.cat([x, x[..., :1, :] if x.dim() > 1 else x[:1]], dim=-2 if x.dim() > 1 else 0)
    if how == "int":
        return x.long()
    if how == "float_flag":
        return x.float()
    if how == "list":
        return x.tolist()
    raise AssertionError(how)


def _expect(fn, name):
    with pytest.raises(ValueError) as err:
        fn()
    assert f"`{name}`" in str(err.value), str(err.value)


# -- V-trace ---------------------------------------------------------------
VTRACE_VALUES = ("state_value", "next_state_value", "reward", "log_rhos")
VTRACE_FLAGS = ("done", "terminated")


def _vtrace_args(b, t, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (b, t, 1)
    done = torch.rand(shape, generator=g) < 0.3
    return {
        "log_rhos": torch.randn(shape, generator=g) * 0.3,
        "state_value": torch.randn(shape, generator=g),
        "next_state_value": torch.randn(shape, generator=g),
        "reward": torch.randn(shape, generator=g),
        "done": done,
        "terminated": done & (torch.rand(shape, generator=g) < 0.5),
    }


def _call_vtrace(args, **hyper):
    hyper = {"gamma": 0.9, **hyper}
    return vtrace(args["log_rhos"], args["state_value"], args["next_state_value"], args["reward"],
                  args["done"], args["terminated"], **hyper)


@SETTINGS
@given(b=st.integers(1, 3), t=st.integers(1, 6), seed=st.integers(0, 10**6),
       arg=st.sampled_from(VTRACE_VALUES + VTRACE_FLAGS), index=st.integers(0, 100),
       how=st.sampled_from(["nan", "inf", "shape", "int", "float_flag", "list"]))
def test_vtrace_bad_tensor(tried, b, t, seed, arg, index, how):
    args = _vtrace_args(b, t, seed)
    if how in ("nan", "inf", "int") and arg in VTRACE_FLAGS:
        how = "float_flag"
    if how == "float_flag" and arg in VTRACE_VALUES:
        how = "int"
    args[arg] = _corrupt(args[arg], how, index)
    tried("functional.vtrace")
    _expect(lambda: _call_vtrace(args), arg)


@SETTINGS
@given(seed=st.integers(0, 10**6), name=st.sampled_from(["gamma", "rho_bar", "c_bar", "pg_rho_bar"]),
       data=st.data())
def test_vtrace_bad_hyperparameter(tried, seed, name, data):
    value = data.draw(bad_unit if name == "gamma" else bad_positive)
    tried("functional.vtrace")
    _expect(lambda: _call_vtrace(_vtrace_args(2, 4, seed), **{name: value}), name)


def test_vtrace_bad_time_dim_and_tensor_gamma(tried):
    args = _vtrace_args(2, 4, 0)
    tried("functional.vtrace")
    _expect(lambda: _call_vtrace(args, time_dim=3), "time_dim")
    tried("functional.vtrace")
    _expect(lambda: _call_vtrace(args, gamma=torch.full((2, 4, 1), 1.5)), "gamma")


# -- λ-returns --------------------------------------------------------------
@SETTINGS
@given(b=st.integers(1, 3), h=st.integers(1, 6), seed=st.integers(0, 10**6), index=st.integers(0, 100),
       arg=st.sampled_from(["reward", "next_value", "discount", "lmbda"]),
       how=st.sampled_from(["nan", "inf", "shape", "int", "range"]), data=st.data())
def test_lambda_return_bad_input(tried, b, h, seed, index, arg, how, data):
    g = torch.Generator().manual_seed(seed)
    args = {"reward": torch.randn(b, h, 1, generator=g), "next_value": torch.randn(b, h, 1, generator=g),
            "discount": torch.rand(b, h, 1, generator=g), "lmbda": 0.95}
    if arg == "lmbda":
        args["lmbda"] = data.draw(bad_unit)
    elif how == "range":
        arg = "discount"
        args["discount"] = args["discount"] + 1.0 + data.draw(st.floats(1e-3, 10.0))
    else:
        args[arg] = _corrupt(args[arg], how, index)
    tried("functional.lambda_return")
    _expect(lambda: lambda_return(args["reward"], args["next_value"], args["discount"], args["lmbda"]), arg)


# -- value rescaling and R2D2's n-step targets ------------------------------------------
@SETTINGS
@given(b=st.integers(1, 3), length=st.integers(1, 8), seed=st.integers(0, 10**6), index=st.integers(0, 100),
       arg=st.sampled_from(["reward", "bootstrap_value", "done", "terminated", "has_state", "gamma", "n", "eps"]),
       how=st.sampled_from(["nan", "inf", "shape", "int", "float_flag", "list"]), data=st.data())
def test_rescaled_n_step_targets_bad_input(tried, b, length, seed, index, arg, how, data):
    g = torch.Generator().manual_seed(seed)
    done = torch.rand(b, length, generator=g) < 0.2
    tensors = {"reward": torch.randn(b, length, generator=g), "done": done, "terminated": done,
               "bootstrap_value": torch.randn(b, length, generator=g), "has_state": torch.ones(b, length, dtype=torch.bool)}
    hyper = {"gamma": 0.997, "n": 3, "eps": 1e-3}
    if arg == "gamma":
        hyper["gamma"] = data.draw(bad_unit)
    elif arg == "eps":
        hyper["eps"] = data.draw(bad_positive)
    elif arg == "n":
        hyper["n"] = data.draw(st.one_of(st.integers(max_value=0), st.floats(0.5, 4.5), st.just(True)))
    else:
        if arg in ("done", "terminated", "has_state"):
            how = "float_flag" if how not in ("shape", "list") else how
        elif how == "float_flag":
            how = "int"
        tensors[arg] = _corrupt(tensors[arg].unsqueeze(-1), how, index)
        if isinstance(tensors[arg], torch.Tensor):
            tensors[arg] = tensors[arg].squeeze(-1) if how != "shape" else tensors[arg].squeeze(-1).transpose(-1, -1)
    tried("value.rescaled_n_step_targets")
    _expect(lambda: rescaled_n_step_targets(tensors["reward"], tensors["done"], tensors["terminated"],
                                            tensors["bootstrap_value"], tensors["has_state"], **hyper), arg)


@SETTINGS
@given(eps=bad_positive, inverse=st.booleans())
def test_value_rescale_bad_eps(tried, eps, inverse):
    tried("value.value_rescale")
    fn = value_rescale_inverse if inverse else value_rescale
    with pytest.raises(ValueError, match="eps"):
        fn(torch.randn(3), eps=eps)


def test_input_error_is_also_a_type_error_for_dtypes():
    args = _vtrace_args(1, 2, 0)
    args["done"] = args["done"].float()
    with pytest.raises(TypeError):
        _call_vtrace(args)
    assert issubclass(InputError, ValueError)
