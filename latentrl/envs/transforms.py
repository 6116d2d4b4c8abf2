"""TorchRL transforms that latentrl needs and TorchRL 0.14.1 lacks.

See ``UPSTREAM.md`` (entry "FrameSkipTransform") for how TorchRL's own
``FrameSkipTransform`` differs and ``tests/upstream/test_frame_skip.py`` for
the reproduction.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs.transforms import Transform

__all__ = ["MaxPoolFrameSkip"]


class MaxPoolFrameSkip(Transform):
    """Action repeat with a max over the last two frames (DQN/IMPALA Atari preprocessing).

    Repeats the action ``frame_skip`` times, sums the rewards, stops early
    when the episode ends, and returns as observation the pixel-wise maximum
    of the last two raw frames, which removes the flicker of Atari sprites
    drawn on alternate frames (Mnih et al. 2015, "Human-level control through
    deep reinforcement learning", Extended Data Table 1 and Methods;
    Espeholt et al. 2018, IMPALA, Appendix G uses the same preprocessing).

    Must be the first transform of a ``TransformedEnv`` over an unbatched
    base env (episode ends are per env, so a batch cannot stop early
    consistently); batch several such envs with ``SerialEnv``/``ParallelEnv``.

    Args:
        frame_skip: number of frames an action is repeated for (paper: 4).
        pixels_key: the raw frame entry to max-pool.
    """

    def __init__(self, frame_skip: int = 4, pixels_key: str = "pixels"):
        if int(frame_skip) < 1:
            raise ValueError(f"MaxPoolFrameSkip: `frame_skip` must be >= 1, got {frame_skip}.")
        super().__init__(in_keys=[pixels_key], out_keys=[pixels_key])
        self.frame_skip = int(frame_skip)
        self.pixels_key = pixels_key

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        parent = self.parent
        if parent is None:
            raise RuntimeError("MaxPoolFrameSkip must be appended to a TransformedEnv.")
        if parent.batch_size.numel() != 1:
            raise RuntimeError(
                "MaxPoolFrameSkip needs an unbatched base env (got batch_size="
                f"{tuple(parent.batch_size)}); batch copies with SerialEnv/ParallelEnv instead."
            )
        reward_key = parent.reward_key
        reward = next_tensordict.get(reward_key)
        previous = None
        for _ in range(self.frame_skip - 1):
            if next_tensordict.get("done").any():
                break
            previous = next_tensordict.get(self.pixels_key)
            next_tensordict = parent._step(tensordict)
            reward = reward + next_tensordict.get(reward_key)
        if previous is not None:
            next_tensordict.set(self.pixels_key, torch.maximum(previous, next_tensordict.get(self.pixels_key)))
        return next_tensordict.set(reward_key, reward)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError("MaxPoolFrameSkip can only be used when appended to a TransformedEnv.")
