"""UPSTREAM.md #18: after a rollout whose last step ended some (not all)
episodes of a gymnasium vector env (``SAME_STEP`` autoreset, as ``make_env``
builds it), ``env.reset()`` is not a full reset: ``VecGymEnvTransform`` takes
its stored done mask as the reset mask and returns the last observations of
the envs that had not ended. An explicit all-true ``_reset`` fixes that but
raises ``AttributeError`` before the env's first step. Ours:
``latentrl.harness.full_reset`` (used by ``evaluate``)."""
import pytest
import torch
from tensordict import TensorDict

from latentrl.envs import make_env
from latentrl.harness import full_reset


def _rollout_ending_in_a_partial_done(env):
    """Random-action rollouts of growing length until one ends with some, not all, envs done."""
    torch.manual_seed(0)
    for steps in range(5, 200):
        env.set_seed(0)
        rollout = env.rollout(steps, break_when_any_done=False)
        last_done = rollout["next", "done"][:, -1].squeeze(-1)
        if last_done.any() and not last_done.all():
            return rollout, last_done
    raise AssertionError("no rollout ended in a partial done")


def test_plain_reset_after_partial_done_keeps_last_observations():
    env = make_env("gym:CartPole-v1", num_envs=4)
    rollout, last_done = _rollout_ending_in_a_partial_done(env)
    last_obs = rollout["next", "observation"][:, -1]
    # TorchRL: the envs that had not ended come back with their last observation
    stale = (env.reset()["observation"] == last_obs).all(-1)
    assert stale[~last_done].all()
    # ours: every env restarts; CartPole's start states lie in [-0.05, 0.05]
    rollout, last_done = _rollout_ending_in_a_partial_done(env)
    obs = full_reset(env)["observation"]
    assert not (obs == rollout["next", "observation"][:, -1]).all(-1).any()
    assert obs.abs().max() <= 0.05


def test_explicit_full_reset_fails_before_the_first_step():
    env = make_env("gym:CartPole-v1", num_envs=4)
    with pytest.raises(AttributeError):
        env.reset(TensorDict({"_reset": torch.ones(4, 1, dtype=torch.bool)}, batch_size=[4]))
    fresh = make_env("gym:CartPole-v1", num_envs=4)
    assert full_reset(fresh)["observation"].abs().max() <= 0.05


def test_full_reset_is_the_same_whatever_came_before():
    seeded = [full_reset(make_env("gym:CartPole-v1", num_envs=4), seed=3)["observation"]]
    env = make_env("gym:CartPole-v1", num_envs=4)
    _rollout_ending_in_a_partial_done(env)
    seeded.append(full_reset(env, seed=3)["observation"])
    assert torch.equal(seeded[0], seeded[1])
