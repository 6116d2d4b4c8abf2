"""MaxPoolFrameSkip against hand-computed frames (see tests/fakes.py)."""
import pytest
from torchrl.envs import SerialEnv, TransformedEnv

from fakes import FlickerEnv
from latentrl.envs import MaxPoolFrameSkip


def _step(env):
    td = env.reset()
    return env.step(td.set("action", env.action_spec.zero()))


def test_max_over_last_two_frames_and_summed_reward():
    env = TransformedEnv(FlickerEnv(), MaxPoolFrameSkip(4))
    out = _step(env)
    # frames 3 (odd -> pixel 0) and 4 (even -> pixel 1): both sprites visible
    assert out["next", "pixels"].tolist() == [[3, 4]]
    assert out["next", "reward"].item() == 4.0
    assert env.base_env.frames == 4
    out = env.step(out["next"].clone().set("action", env.action_spec.zero()))
    assert out["next", "pixels"].tolist() == [[7, 8]]


def test_stops_at_episode_end():
    env = TransformedEnv(FlickerEnv(episode_frames=6), MaxPoolFrameSkip(4))
    td = _step(env)["next"].clone()
    out = env.step(td.set("action", env.action_spec.zero()))
    assert out["next", "done"].item()
    assert env.base_env.frames == 6  # frames 5, 6 then stop: never steps a finished episode
    assert out["next", "reward"].item() == 2.0
    assert out["next", "pixels"].tolist() == [[5, 6]]


def test_episode_end_on_first_frame_has_nothing_to_pool():
    env = TransformedEnv(FlickerEnv(episode_frames=1), MaxPoolFrameSkip(4))
    out = _step(env)
    assert env.base_env.frames == 1 and out["next", "reward"].item() == 1.0
    assert out["next", "pixels"].tolist() == [[1, 0]]


def test_frame_skip_one_is_identity():
    env = TransformedEnv(FlickerEnv(), MaxPoolFrameSkip(1))
    assert _step(env)["next", "pixels"].tolist() == [[1, 0]]


def test_rejects_batched_parent_and_bad_skip():
    with pytest.raises(ValueError, match="frame_skip"):
        MaxPoolFrameSkip(0)
    env = TransformedEnv(SerialEnv(2, FlickerEnv), MaxPoolFrameSkip(4))
    td = env.reset()
    with pytest.raises(RuntimeError, match="unbatched"):
        env.step(td.set("action", env.action_spec.zero()))
