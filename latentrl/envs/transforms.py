"""TorchRL transforms that latentrl needs and TorchRL 0.14.1 lacks.

See ``UPSTREAM.md`` (entry "FrameSkipTransform") for how TorchRL's own
``FrameSkipTransform`` differs and ``tests/upstream/test_frame_skip.py`` for
the reproduction.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs.transforms import Transform

__all__ = ["MaxPoolFrameSkip", "PerEnvConstant"]


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


class PerEnvConstant(Transform):
    """Writes a fixed value per batch element under ``key`` at every reset and step.

    For quantities that belong to an env of a batch and never change: the
    task index of a multi-task batch (:class:`~latentrl.envs.multitask.TaskRewardScale`),
    or the exploration epsilon of each Ape-X actor (R2D2). The values become
    an observation entry, so collectors and replay buffers keep them next to
    the step they belong to.

    Args:
        key: the entry to write.
        values: one value per batch element (a 1-D tensor of length
            ``batch_size[0]``, or ``[batch, *shape]``).
        spec: the entry's spec (default: ``Unbounded`` of the values' shape
            and dtype; ``Categorical`` is a good choice for integer ids).
    """

    def __init__(self, key: str, values, spec=None):
        super().__init__(in_keys=[], out_keys=[key])
        values = torch.as_tensor(values)
        if values.ndim < 1 or values.numel() == 0:
            raise ValueError(f"PerEnvConstant: `values` must hold one value per env (1-D or more), got shape {tuple(values.shape)}")
        self.key = key
        self.register_buffer("values", values.clone(), persistent=False)
        self._spec = spec

    def _check_batch(self, batch_size) -> None:
        n = self.values.shape[0]
        if tuple(batch_size) != (n,) and not (n == 1 and tuple(batch_size) == ()):
            raise ValueError(
                f"{type(self).__name__}: the env batch must be [{n}] (one value per env for {self.key!r}; "
                f"an unbatched env takes one value), got {list(batch_size)}"
            )

    def _values_for(self, td: TensorDictBase) -> torch.Tensor:
        values = self.values if td.batch_dims else self.values[0]
        return values.to(td.device or "cpu")

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        self._check_batch(tensordict_reset.batch_size)
        tensordict_reset.set(self.key, self._values_for(tensordict_reset))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        next_tensordict.set(self.key, self._values_for(next_tensordict))
        return next_tensordict

    def transform_observation_spec(self, observation_spec):
        from torchrl.data import Unbounded

        self._check_batch(observation_spec.shape)
        spec = self._spec
        if spec is None:
            shape = self.values.shape if observation_spec.shape else self.values.shape[1:]
            spec = Unbounded(shape=shape, dtype=self.values.dtype)
        observation_spec[self.key] = spec.to(observation_spec.device) if observation_spec.device is not None else spec
        return observation_spec
