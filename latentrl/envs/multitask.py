"""Multi-task batches: one env batch split into tasks, each with its reward scale.

PopArt's multi-task setting (Hessel et al. 2018) trains one agent on tasks
whose returns differ by orders of magnitude. :class:`TaskRewardScale` builds
the controlled version of that: a batch of ``num_tasks * envs_per_task``
copies of one environment, where the envs of task ``k`` (the ``k``-th block
of ``envs_per_task`` batch elements) have their rewards multiplied by
``scales[k]`` and every step carries the task index under ``"task_id"``
(int64, one per env), for the agent and for a per-task value head.

:func:`make_multitask_env` builds it from a :func:`make_env` name; with
``train=False`` (evaluation) rewards are left unscaled, as Atari evaluation
envs report raw scores, so every task's score is on the task's own scale.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from torchrl.data import Categorical
from torchrl.envs import EnvBase, RewardSum, TransformedEnv

from .transforms import PerEnvConstant

__all__ = ["TaskRewardScale", "make_multitask_env"]


class TaskRewardScale(PerEnvConstant):
    """Task ids and per-task reward scales over a batch of envs.

    Args:
        scales: reward multiplier of each task (its length is the number of
            tasks).
        envs_per_task: batch elements per task; the parent env's batch size
            must be ``len(scales) * envs_per_task``, task ``k`` owning
            elements ``[k * envs_per_task, (k + 1) * envs_per_task)``.
        task_key: where the task index is written (an int64 observation entry).
        scale_rewards: ``False`` writes the task ids and leaves rewards alone.
    """

    def __init__(
        self,
        scales: Sequence[float],
        envs_per_task: int,
        task_key: str = "task_id",
        scale_rewards: bool = True,
    ):
        scales = [float(s) for s in scales]
        if not scales:
            raise ValueError("TaskRewardScale: `scales` must hold one reward scale per task, got an empty list")
        if not all(s > 0 for s in scales):
            raise ValueError(f"TaskRewardScale: every reward scale must be > 0, got {scales}")
        if int(envs_per_task) < 1:
            raise ValueError(f"TaskRewardScale: `envs_per_task` must be >= 1, got {envs_per_task}")
        self.num_tasks, self.envs_per_task = len(scales), int(envs_per_task)
        task_ids = torch.arange(self.num_tasks).repeat_interleave(self.envs_per_task)
        spec = Categorical(self.num_tasks, shape=task_ids.shape, dtype=torch.int64)
        super().__init__(task_key, task_ids, spec=spec)
        self.task_key = task_key
        self.scale_rewards = bool(scale_rewards)
        self.register_buffer("scales", torch.tensor(scales)[task_ids].unsqueeze(-1), persistent=False)

    def _check_batch(self, batch_size) -> None:
        n = self.values.shape[0]
        if tuple(batch_size) != (n,):
            raise ValueError(
                f"TaskRewardScale: the env batch must be [{n}] ({self.num_tasks} tasks x "
                f"envs_per_task={self.envs_per_task}), got {list(batch_size)}"
            )

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        next_tensordict = super()._step(tensordict, next_tensordict)
        if self.scale_rewards:
            device = next_tensordict.device or "cpu"
            for key in self.parent.reward_keys:
                reward = next_tensordict.get(key)
                next_tensordict.set(key, reward * self.scales.to(device=device, dtype=reward.dtype))
        return next_tensordict

    # the reward spec stays Unbounded float: scaling keeps it unbounded


def make_multitask_env(
    name: str,
    scales: Sequence[float],
    envs_per_task: int = 1,
    seed: int | None = None,
    train: bool = True,
    **options,
) -> EnvBase:
    """``len(scales) * envs_per_task`` copies of ``name`` as one batched env with task ids.

    Training envs (``train=True``) multiply task ``k``'s rewards by
    ``scales[k]``; evaluation envs report raw rewards. Both carry
    ``"task_id"`` and TorchRL's ``RewardSum`` (``("next", "episode_reward")``,
    on the scale the env reports). Module-level, so
    ``functools.partial(make_multitask_env, ...)`` pickles into actor processes.
    """
    from .factories import make_env

    scales = list(scales)
    num_envs = len(scales) * int(envs_per_task)
    if num_envs < 2:
        # make_env(num_envs=1) is unbatched; the transform needs a batch dimension
        raise ValueError(
            f"make_multitask_env: needs at least 2 envs in all (tasks x envs_per_task), got "
            f"{len(scales)} task(s) x envs_per_task={envs_per_task}"
        )
    env = make_env(name, num_envs=num_envs, seed=seed, train=train, **options)
    transform = TaskRewardScale(scales, envs_per_task, scale_rewards=train)
    env = TransformedEnv(env, transform)
    env.append_transform(RewardSum())
    return env
