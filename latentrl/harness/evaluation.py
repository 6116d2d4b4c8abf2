"""Periodic evaluation: deterministic policy, fixed seed, one episode per env."""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

__all__ = ["evaluate", "first_episode_returns"]


def first_episode_returns(reward: torch.Tensor, done: torch.Tensor, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return of the first episode along ``time_dim`` and whether it ended.

    ``reward`` and ``done`` have shape ``[*B, T, 1]``. Steps after the first
    ``done`` (inclusive of it: the done step's reward counts) are ignored.
    """
    done = done.to(torch.long)
    before = done.cumsum(time_dim) - done  # number of episode ends strictly before t
    mask = (before == 0).to(reward.dtype)
    return (reward * mask).sum(time_dim).squeeze(-1), done.any(time_dim).squeeze(-1)


@torch.no_grad()
def evaluate(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    max_steps: int,
    seed: int | None = None,
    group_key: str | None = None,
) -> dict[str, float]:
    """Mean return of the first episode of every batch element of ``env``.

    The policy runs in ``ExplorationType.DETERMINISTIC`` mode; the global
    torch RNG is forked, so evaluating does not change the training run.
    Re-seeding ``env`` with ``seed`` before each call evaluates every policy
    on the same start states.

    With ``group_key`` (an integer entry of the env's output, one value per
    batch element, e.g. ``"task_id"``), the mean return of each group ``g``
    is also reported, as ``f"return_{group_key}_{g}"``.
    """
    with torch.random.fork_rng(devices=[]), set_exploration_type(ExplorationType.DETERMINISTIC):
        if seed is not None:
            env.set_seed(seed)
        rollout = env.rollout(max_steps, policy, break_when_any_done=False)
    time_dim = len(env.batch_size)
    returns, finished = first_episode_returns(rollout["next", "reward"], rollout["next", "done"], time_dim)
    metrics = {
        "return": returns.float().mean().item(),
        "return_std": returns.float().std(unbiased=False).item() if returns.numel() > 1 else 0.0,
        "episodes": int(returns.numel()),
        "finished": finished.float().mean().item(),
    }
    if group_key is not None:
        if group_key not in rollout.keys():
            raise KeyError(f"evaluate: `group_key` {group_key!r} is not in the env's output; keys: {sorted(map(str, rollout.keys()))}")
        groups = rollout.get(group_key).select(time_dim, 0)
        if groups.shape != returns.shape:
            raise ValueError(f"evaluate: `group_key` {group_key!r} must hold one value per env, shape {tuple(returns.shape)}; got {tuple(groups.shape)}")
        for g in groups.unique().tolist():
            metrics[f"return_{group_key}_{g}"] = returns[groups == g].float().mean().item()
    return metrics
