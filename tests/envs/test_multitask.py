"""Multi-task batches: task ids per env and per-task reward scales (the PopArt demo's env)."""
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from latentrl.envs import TaskRewardScale, make_env, make_multitask_env
from torchrl.envs import TransformedEnv

SCALES = [1.0, 100.0, 10000.0]


def test_rewards_scaled_per_task_and_task_ids_carried():
    scaled = make_multitask_env("CartPole-v1", SCALES, envs_per_task=2, seed=3)
    raw = make_multitask_env("CartPole-v1", SCALES, envs_per_task=2, seed=3, train=False)
    check_env_specs(make_multitask_env("CartPole-v1", SCALES, envs_per_task=2))
    torch.manual_seed(0)
    a = scaled.rollout(40, break_when_any_done=False)
    torch.manual_seed(0)
    b = raw.rollout(40, break_when_any_done=False)
    expected_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    for td in (a, b, a["next"], b["next"]):
        assert (td["task_id"] == expected_ids[:, None]).all()
    # same seeds, same random actions: the same trajectories, rewards x scale in training only
    torch.testing.assert_close(a["next", "observation"], b["next", "observation"])
    scale = torch.tensor(SCALES).repeat_interleave(2)[:, None, None]
    torch.testing.assert_close(a["next", "reward"], b["next", "reward"] * scale)
    assert (b["next", "reward"] == 1).all()
    # RewardSum accumulates on the scale the env reports
    first_done = a["next", "done"].float().argmax(1).squeeze(-1)
    for i, t in enumerate(first_done.tolist()):
        assert a["next", "episode_reward"][i, t].item() == pytest.approx((t + 1) * scale[i].item())


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="reward scale must be > 0"):
        TaskRewardScale([1.0, 0.0], envs_per_task=1)
    with pytest.raises(ValueError, match="`scales`"):
        TaskRewardScale([], envs_per_task=1)
    with pytest.raises(ValueError, match="`envs_per_task`"):
        TaskRewardScale([1.0], envs_per_task=0)
    with pytest.raises(ValueError, match=r"env batch must be \[6\].*got \[4\]"):
        TransformedEnv(make_env("CartPole-v1", num_envs=4), TaskRewardScale(SCALES, envs_per_task=2)).observation_spec
    with pytest.raises(ValueError, match="at least 2 envs"):
        make_multitask_env("CartPole-v1", [1.0], envs_per_task=1)


def test_per_env_constant_batched_and_unbatched():
    from latentrl.envs import PerEnvConstant

    env = TransformedEnv(make_env("CartPole-v1", num_envs=3), PerEnvConstant("epsilon", [0.4, 0.1, 0.0]))
    check_env_specs(env)
    td = env.rollout(5, break_when_any_done=False)
    assert (td["next", "epsilon"] == torch.tensor([0.4, 0.1, 0.0])[:, None]).all()
    single = TransformedEnv(make_env("CartPole-v1"), PerEnvConstant("epsilon", [0.25]))
    check_env_specs(single)
    assert single.rollout(3)["epsilon"].tolist() == [0.25] * 3
    with pytest.raises(ValueError, match=r"'epsilon'.*got \[3\]"):
        TransformedEnv(make_env("CartPole-v1", num_envs=3), PerEnvConstant("epsilon", [0.4, 0.1])).observation_spec
