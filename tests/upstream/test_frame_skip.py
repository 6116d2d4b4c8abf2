"""UPSTREAM.md #1: TorchRL's FrameSkipTransform does not max-pool the last two
frames and keeps stepping after the episode ended; the DQN/IMPALA Atari
preprocessing max-pools and stops. Ours: latentrl.envs.MaxPoolFrameSkip."""
from torchrl.envs import FrameSkipTransform, TransformedEnv

from fakes import FlickerEnv
from latentrl.envs import MaxPoolFrameSkip


def _two_steps(transform, episode_frames):
    env = TransformedEnv(FlickerEnv(episode_frames=episode_frames), transform)
    td = env.reset()
    first = env.step(td.set("action", env.action_spec.zero()))
    second = env.step(first["next"].clone().set("action", env.action_spec.zero()))
    return env, first, second


def test_torchrl_frame_skip_returns_last_frame_only():
    _, torchrl_out, _ = _two_steps(FrameSkipTransform(4), 100)
    _, ours, _ = _two_steps(MaxPoolFrameSkip(4), 100)
    assert torchrl_out["next", "pixels"].tolist() == [[0, 4]]  # the sprite of frame 3 is lost
    assert ours["next", "pixels"].tolist() == [[3, 4]]  # max over frames 3 and 4


def test_torchrl_frame_skip_steps_past_episode_end():
    env, _, torchrl_out = _two_steps(FrameSkipTransform(4), 6)
    assert env.base_env.frames == 8  # frames 7 and 8 belong to no episode
    assert torchrl_out["next", "reward"].item() == 4.0  # and their rewards are counted
    env, _, ours = _two_steps(MaxPoolFrameSkip(4), 6)
    assert env.base_env.frames == 6
    assert ours["next", "reward"].item() == 2.0
