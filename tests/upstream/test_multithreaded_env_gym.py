"""TorchRL 0.14.1's MultiThreadedEnv (its envpool wrapper) imports the legacy ``gym`` package.

With only gymnasium installed (TorchRL's own default elsewhere), building it
fails with ``ModuleNotFoundError: No module named 'gym'`` although envpool's
gymnasium API works. Ours: latentrl.envs.EnvPoolAtari (``make_env("envpool:...")``).
"""
import importlib.util

import pytest

pytest.importorskip("envpool")


@pytest.mark.skipif(importlib.util.find_spec("gym") is not None, reason="the legacy gym package is installed")
def test_torchrl_multithreaded_env_needs_legacy_gym():
    from torchrl.envs import MultiThreadedEnv

    with pytest.raises(ModuleNotFoundError, match="gym"):
        MultiThreadedEnv(2, "Pong-v5")


def test_ours_runs_on_gymnasium_alone():
    from latentrl.envs import make_env

    env = make_env("envpool:Pong", num_envs=2)
    assert env.rollout(3).shape == (2, 3)
    env.close()
