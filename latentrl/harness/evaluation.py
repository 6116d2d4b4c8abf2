"""Periodic evaluation: deterministic policy, fixed seed, one episode per env."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

__all__ = ["evaluate", "first_episode_returns", "full_reset"]


def full_reset(env: EnvBase, seed: int | None = None) -> TensorDictBase:
    """Resets every batch element of ``env`` (after ``env.set_seed(seed)``), whatever its last step was.

    ``env.reset()`` with no tensordict is not always a full reset: after a
    rollout whose last step ended some episodes of a gymnasium vector env,
    TorchRL's ``VecGymEnvTransform`` takes its stored done mask as the reset
    mask and hands back the *last* observations of the envs that had not
    ended (``UPSTREAM.md`` #18). An explicit all-true ``_reset`` entry for
    every reset key makes it a full reset; before the env's first step that
    transform fails on it (``AttributeError``), and a plain reset is full.
    The result is the same either way: a seeded call gives the same start states.
    """
    if seed is not None:
        env.set_seed(seed)
    td = TensorDict({}, batch_size=env.batch_size, device=env.device)
    for reset_key in env.reset_keys:
        parent = reset_key[:-1] if isinstance(reset_key, tuple) else ()
        done_key = (*parent, "done") if parent else "done"
        shape = env.full_done_spec[done_key].shape
        td.set(reset_key, torch.ones(shape, dtype=torch.bool, device=env.device))
    try:
        return env.reset(td)
    except AttributeError:  # VecGymEnvTransform before any step (UPSTREAM.md #18)
        if seed is not None:
            env.set_seed(seed)  # the failed attempt reset the simulator once: start again from the seed
        return env.reset()


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
    Every call starts with a full reset (:func:`full_reset`), so re-seeding
    ``env`` with ``seed`` evaluates every policy on the same start states,
    whatever earlier calls left behind: a run resumed from a checkpoint
    evaluates as the uninterrupted run does.

    With ``group_key`` (an integer entry of the env's output, one value per
    batch element, e.g. ``"task_id"``), the mean return of each group ``g``
    is also reported, as ``f"return_{group_key}_{g}"``.
    """
    with torch.random.fork_rng(devices=[]), set_exploration_type(ExplorationType.DETERMINISTIC):
        start = full_reset(env, seed)
        rollout = env.rollout(max_steps, policy, break_when_any_done=False, auto_reset=False, tensordict=start)
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
