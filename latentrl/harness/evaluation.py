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
def evaluate(env: EnvBase, policy: TensorDictModuleBase, *, max_steps: int, seed: int | None = None) -> dict[str, float]:
    """Mean return of the first episode of every batch element of ``env``.

    The policy runs in ``ExplorationType.DETERMINISTIC`` mode; the global
    torch RNG is forked, so evaluating does not change the training run.
    Re-seeding ``env`` with ``seed`` before each call evaluates every policy
    on the same start states.
    """
    with torch.random.fork_rng(devices=[]), set_exploration_type(ExplorationType.DETERMINISTIC):
        if seed is not None:
            env.set_seed(seed)
        rollout = env.rollout(max_steps, policy, break_when_any_done=False)
    time_dim = len(env.batch_size)
    returns, finished = first_episode_returns(rollout["next", "reward"], rollout["next", "done"], time_dim)
    return {
        "return": returns.float().mean().item(),
        "return_std": returns.float().std(unbiased=False).item() if returns.numel() > 1 else 0.0,
        "episodes": int(returns.numel()),
        "finished": finished.float().mean().item(),
    }
