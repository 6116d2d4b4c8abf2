"""Config errors name the key and what it accepts."""
import pytest
from omegaconf import OmegaConf

from latentrl.harness import ConfigError, check_config, check_overrides

BASE = OmegaConf.create(
    {
        "seed": 0,
        "lr_scale": 1.0,
        "run_dir": None,
        "logger": {"backend": "csv", "progress_bar": True},
        "ppo": {"epochs": 4, "lr": 0.002, "units": [64]},
    }
)
CHOICES = {"logger.backend": ("csv", "tensorboard", "wandb")}
CONSTRAINTS = {"ppo.epochs": (lambda v: v >= 1, "an integer >= 1")}


def _check(**overrides):
    cfg = OmegaConf.merge(BASE, OmegaConf.create(overrides))
    check_config(cfg, BASE, CHOICES, CONSTRAINTS)


def test_unknown_override_lists_accepted_keys_and_suggests():
    with pytest.raises(ConfigError) as err:
        check_overrides(["ppo.lrr=1"], BASE)
    msg = str(err.value)
    assert "'ppo.lrr'" in msg and "Did you mean 'ppo.lr'" in msg
    assert "Accepted keys under 'ppo': ppo.epochs, ppo.lr, ppo.units" in msg
    with pytest.raises(ConfigError, match="unknown config key 'sed'.*'seed'"):
        check_overrides(["sed=3"], BASE)


def test_valid_overrides_and_hydra_syntax_pass():
    check_overrides(["ppo.lr=0.1", "logger=null", "+extra=1", "~seed", "hydra.run.dir=x", "--multirun"], BASE)


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match="'ppo.epochs' must be an integer .*got 'four'"):
        _check(ppo={"epochs": "four"})
    with pytest.raises(ConfigError, match="'logger.progress_bar' must be a boolean"):
        _check(logger={"progress_bar": 1})
    with pytest.raises(ConfigError, match="'ppo.lr' must be a number"):
        _check(ppo={"lr": "fast"})


def test_int_accepted_for_float_and_null_default_accepts_any():
    _check(lr_scale=2, run_dir="somewhere")


def test_bad_choice_lists_accepted_values():
    with pytest.raises(ConfigError) as err:
        _check(logger={"backend": "tensorbord"})
    assert "'logger.backend'" in str(err.value)
    assert "accepted values: 'csv', 'tensorboard', 'wandb'" in str(err.value)


def test_constraint_message():
    with pytest.raises(ConfigError, match="'ppo.epochs' has value 0; it must be an integer >= 1"):
        _check(ppo={"epochs": 0})


def test_added_key_is_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'ppo.extra'"):
        _check(ppo={"extra": 1})


def test_make_env_from_config_names_the_key():
    from latentrl.harness import make_env_from_config

    env = make_env_from_config(OmegaConf.create({"env": {"name": "pomdp:tmaze"}, "device": "cpu"}), 3)
    assert env.batch_size == (3,)
    with pytest.raises(ConfigError, match=r"(?s)config key 'env.name': unknown gym environment 'CartPol-v1'.*CartPole-v1"):
        make_env_from_config(OmegaConf.create({"env": {"name": "CartPol-v1"}, "device": "cpu"}), 1)


def test_warns_when_threads_exceed_the_free_cores(monkeypatch):
    import os

    import pytest

    from latentrl.harness import experiment

    monkeypatch.setattr(os, "getloadavg", lambda: (1.6, 1.0, 1.0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    with pytest.warns(RuntimeWarning, match="threads"):
        assert experiment.warn_if_oversubscribed(2)
    assert not experiment.warn_if_oversubscribed(1)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not experiment.warn_if_oversubscribed(2)


def test_unflatten_restores_what_flatten_wrote():
    from omegaconf import OmegaConf

    from latentrl.harness import flatten, unflatten

    cfg = OmegaConf.create({"seed": 3, "env": {"name": "pomdp:tmaze", "delay": None, "scales": [1, 10]},
                            "loss": {"gamma": 0.9, "nested": {"k": "v"}}})
    back = unflatten(flatten(cfg))
    assert OmegaConf.to_container(back) == OmegaConf.to_container(cfg)
    assert flatten(back) == flatten(cfg)
