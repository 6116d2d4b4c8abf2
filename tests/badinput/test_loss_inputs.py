"""Generated bad batches and hyperparameters for the IMPALA and R2D2 losses and
bad names for ``make_env``: a KeyError naming the missing key (and its
``set_keys`` field), a ValueError naming the argument."""
import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "objectives"))
from test_impala_loss import _batch as impala_batch  # noqa: E402
from test_impala_loss import _nets as impala_nets  # noqa: E402
from test_impala_loss import _with_behaviour  # noqa: E402
from test_r2d2_loss import _net as r2d2_net  # noqa: E402
from test_r2d2_loss import _sequences as r2d2_sequences  # noqa: E402

from latentrl.envs import make_env  # noqa: E402
from latentrl.objectives.impala import IMPALALoss  # noqa: E402
from latentrl.objectives.r2d2 import R2D2Loss  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(SETTINGS, max_examples=20)  # cases that build a world model and its actor-critic

IMPALA_KEYS = {"action": "action", "sample_log_prob": "action_log_prob", "reward": ("next", "reward"),
               "done": ("next", "done"), "terminated": ("next", "terminated")}
R2D2_KEYS = {"action": "action", "mask": "mask", "valid": "valid", "bootstrap": "bootstrap",
             "reward": ("next", "reward"), "done": ("next", "done"), "terminated": ("next", "terminated")}


@SETTINGS
@given(missing=st.sets(st.sampled_from(sorted(IMPALA_KEYS)), min_size=1), renamed=st.booleans())
def test_impala_missing_keys_are_named(tried, missing, renamed):
    actor, critic, _ = impala_nets()
    loss = IMPALALoss(actor, critic)
    data = _with_behaviour(actor, impala_batch())
    if renamed:  # the user renamed the key: the loss is told, the batch still has the old name
        field = sorted(missing)[0]
        loss.set_keys(**{field: "my_" + field})
        expected = {field}
    else:
        data = data.exclude(*[IMPALA_KEYS[f] for f in missing])
        expected = missing
    tried("IMPALALoss")
    with pytest.raises(KeyError) as err:
        loss(data)
    message = str(err.value)
    assert any(f"`{f}` key" in message for f in expected), message


@SETTINGS
@given(name=st.sampled_from(["gamma", "rho_bar", "c_bar", "pg_rho_bar", "baseline_coef", "entropy_coef", "epsilon"]),
       data=st.data())
def test_impala_bad_hyperparameters_are_named(tried, name, data):
    if name == "gamma":
        value = data.draw(st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1 + 1e-6), st.just(math.nan)))
    elif name in ("baseline_coef", "entropy_coef"):
        value = data.draw(st.one_of(st.floats(max_value=-1e-6), st.just(math.nan)))
    else:
        value = data.draw(st.one_of(st.floats(max_value=0.0), st.just(math.nan)))
    actor, critic, _ = impala_nets()
    tried("IMPALALoss")
    with pytest.raises(ValueError, match=name):
        IMPALALoss(actor, critic, **{name: value})


@SETTINGS
@given(missing=st.sets(st.sampled_from(sorted(R2D2_KEYS)), min_size=1))
@example(missing={"mask", "valid", "bootstrap"})
def test_r2d2_missing_keys_are_named(tried, missing):
    loss = R2D2Loss(r2d2_net(), burn_in=0, n_steps=2, gamma=0.9)
    data = r2d2_sequences(2, 5).exclude(*[R2D2_KEYS[f] for f in missing])
    tried("R2D2Loss")
    if missing == {"mask", "valid", "bootstrap"}:  # a plain slice batch: a layout of its own
        assert torch.isfinite(loss(data)["loss"])
        return
    with pytest.raises(KeyError) as err:
        loss(data)
    assert any(f"`{f}` key" in str(err.value) for f in missing), str(err.value)


@SETTINGS
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz-:0123456789", min_size=1, max_size=20))
def test_make_env_unknown_names_list_what_it_accepts(tried, name):
    known = name.startswith(("gym:", "dmc:", "atari:", "minigrid:", "pomdp:")) or name in ("CartPole-v1",)
    if known:
        return
    tried("make_env")
    with pytest.raises(ValueError) as err:
        make_env(name)
    assert "ccepted" in str(err.value), str(err.value)


WM_KEYS = {"observation": "observation", "next_observation": ("next", "observation"), "action": "action",
           "reward": ("next", "reward"), "terminated": ("next", "terminated")}


@SETTINGS
@given(missing=st.sets(st.sampled_from(sorted(WM_KEYS)), min_size=1), nan=st.booleans(), index=st.integers(0, 50))
def test_world_model_loss_missing_keys_and_nan_observations(tried, missing, nan, index):
    from test_world_model_loss import make_batch, tiny_world_model

    from latentrl.objectives.world_model import WorldModelLoss

    loss = WorldModelLoss(tiny_world_model(latent="gaussian"), kl="planet")
    data = make_batch()
    tried("WorldModelLoss")
    if nan:
        data["observation"].view(-1)[index % data["observation"].numel()] = math.nan
        with pytest.raises(ValueError, match="`observation` must be finite"):
            loss(data)
        return
    with pytest.raises(KeyError) as err:
        loss(data.exclude(*[WM_KEYS[f] for f in missing]))
    assert any(f"`{f}` key" in str(err.value) for f in missing), str(err.value)


@FEW
@given(name=st.sampled_from(["horizon", "target_update_interval", "gamma", "lmbda", "rho", "entropy_coef"]),
       data=st.data())
def test_dreamer_loss_bad_hyperparameters(tried, name, data):
    from test_dreamer_losses import build

    if name in ("horizon", "target_update_interval"):
        value = data.draw(st.one_of(st.integers(max_value=0), st.floats(0.5, 9.5), st.just(True)))
    elif name == "entropy_coef":
        value = data.draw(st.one_of(st.floats(max_value=-1e-6), st.just(math.nan)))
    else:
        value = data.draw(st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1 + 1e-6), st.just(math.nan)))
    tried("DreamerActorCriticLoss")
    with pytest.raises(ValueError, match=f"`{name}`"):
        build(**{name: value})


@FEW
@given(missing=st.sampled_from(["deter", "stoch", None]), index=st.integers(0, 100))
def test_dreamer_loss_missing_or_nan_start_states(tried, missing, index):
    from test_dreamer_losses import build, start_states

    loss, _, _ = build()
    td = start_states()
    tried("DreamerActorCriticLoss")
    if missing is None:
        td["deter"].view(-1)[index % td["deter"].numel()] = math.nan
        with pytest.raises(ValueError, match="`deter` must be finite"):
            loss(td)
    else:
        with pytest.raises(KeyError, match=f"`{missing}` key"):
            loss(td.exclude(missing))


@SETTINGS
@given(arg=st.sampled_from(["log_prob", "loss", "baseline"]), bad=st.sampled_from([math.nan, math.inf, "int"]),
       index=st.integers(0, 20))
def test_reinforce_surrogate_bad_input(tried, arg, bad, index):
    import torch

    from latentrl.objectives.functional import reinforce_surrogate

    args = {"log_prob": torch.randn(4, requires_grad=True), "loss": torch.randn(4), "baseline": torch.randn(4)}
    if bad == "int":
        args[arg] = args[arg].detach().long()
    else:
        with torch.no_grad():
            args[arg] = args[arg].detach().clone()
            args[arg][index % 4] = bad
    tried("reinforce_surrogate")
    with pytest.raises(ValueError, match=f"`{arg}`"):
        reinforce_surrogate(**args)
