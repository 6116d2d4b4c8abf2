"""Simulator snapshots restore the exact future of an env."""
import io

import pytest
import torch

from latentrl.envs import make_env
from latentrl.envs.snapshot import SnapshotUnsupported, env_state, load_env_state


def _advance(env, steps, seed=0):
    torch.manual_seed(seed)
    td = env.reset()
    for _ in range(steps):
        _, td = env.step_and_maybe_reset(env.rand_action(td))
    return td


def _future(env, td, actions):
    out = []
    for a in actions:
        step, td = env.step_and_maybe_reset(td.clone().set("action", a))
        out.append(step["next"].exclude("action").clone())
    return torch.stack(out)


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("CartPole-v1", {}),
        ("pomdp:masked-cartpole", {"num_envs": 3}),
        ("pomdp:tmaze", {"num_envs": 4, "delay": 2}),
        ("Acrobot-v1", {}),
    ],
)
def test_restore_reproduces_the_future(name, kwargs):
    env = make_env(name, seed=1, **kwargs)
    td = _advance(env, 25)
    state = _roundtrip(env_state(env))
    torch.manual_seed(1)
    actions = [env.action_spec.rand() for _ in range(60)]  # long enough to cross episode ends
    first = _future(env, td, actions)
    second_without_restore = _future(env, td, actions)
    load_env_state(env, state)
    second = _future(env, td, actions)
    assert (first == second).all()
    # the env really had moved on: without restoring, the future differs
    assert not (first == second_without_restore).all()


def test_dm_control_restore_reproduces_the_future_across_an_episode_end():
    """MuJoCo's integration state, the step counter and the task's RandomState (which draws the next start state)."""
    env = make_env("dmc:cartpole-swingup", seed=1, action_repeat=8)  # 125 steps per episode
    td = _advance(env, 100)
    state = _roundtrip(env_state(env))
    torch.manual_seed(1)
    actions = [env.action_spec.rand() for _ in range(40)]
    first = _future(env, td, actions)
    assert first["done"].any()  # the future crosses a reset
    second_without_restore = _future(env, td, actions)
    load_env_state(env, state)
    second = _future(env, td, actions)
    assert (first == second).all()
    assert not (first == second_without_restore).all()


def test_unsupported_simulator_says_so():
    with pytest.raises(SnapshotUnsupported):
        env_state(make_env("dmc:cartpole-swingup", num_envs=2))  # a batch of dm_control envs
