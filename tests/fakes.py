"""Tiny hand-checkable environments for tests."""
import torch
from tensordict import TensorDict
from torchrl.data import Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase


class FlickerEnv(EnvBase):
    """Frame k (k = 1, 2, ...) draws a 'sprite' of value k at pixel (0, 0) on
    odd frames and at pixel (0, 1) on even frames, like Atari sprites drawn on
    alternate frames. Reward 1 per frame; the episode terminates after
    ``episode_frames`` frames. ``frames`` counts the simulator steps taken."""

    def __init__(self, episode_frames: int = 100):
        super().__init__(batch_size=())
        self.episode_frames = episode_frames
        self.observation_spec = Composite(pixels=Unbounded(shape=(1, 2), dtype=torch.uint8))
        self.action_spec = OneHot(2, dtype=torch.long)
        self.reward_spec = Unbounded(shape=(1,))
        self.done_spec = Composite(
            done=Categorical(2, shape=(1,), dtype=torch.bool),
            terminated=Categorical(2, shape=(1,), dtype=torch.bool),
            truncated=Categorical(2, shape=(1,), dtype=torch.bool),
        )
        self.frames = 0

    def _pixels(self):
        p = torch.zeros(1, 2, dtype=torch.uint8)
        if self.frames:
            p[0, 0 if self.frames % 2 else 1] = self.frames
        return p

    def _reset(self, td=None, **kwargs):
        self.frames = 0
        f = torch.zeros(1, dtype=torch.bool)
        return TensorDict({"pixels": self._pixels(), "done": f, "terminated": f.clone(), "truncated": f.clone()}, [])

    def _step(self, td):
        self.frames += 1
        end = torch.tensor([self.frames >= self.episode_frames])
        return TensorDict(
            {"pixels": self._pixels(), "reward": torch.ones(1), "done": end, "terminated": end.clone(), "truncated": torch.zeros(1, dtype=torch.bool)},
            [],
        )

    def _set_seed(self, seed):
        return None


class Fn(torch.nn.Module):
    """A function as an ``nn.Module``, to wrap in a ``TensorDictModule``."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)
