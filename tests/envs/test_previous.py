"""PreviousActionReward: the previous action (one-hot) and reward as observations, zeros after resets."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import Compose, EnvBase, GymEnv, InitTracker, TransformedEnv
from torchrl.envs.utils import check_env_specs, step_mdp

from latentrl.envs import make_env
from latentrl.envs.previous import PreviousActionReward


class _ScoreEnv(EnvBase):
    """Batched env with index actions (Categorical spec, 3 actions): reward = 10 * step + action;
    env i terminates after ``lengths[i]`` steps."""

    def __init__(self, lengths=(2, 3)):
        super().__init__(batch_size=(len(lengths),))
        self.lengths = torch.tensor(lengths)
        b = len(lengths)
        self.observation_spec = Composite(observation=Unbounded(shape=(b, 1)), shape=(b,))
        self.action_spec = Categorical(3, shape=(b,), dtype=torch.long)
        self.reward_spec = Unbounded(shape=(b, 1))
        self.done_spec = Composite(
            done=Categorical(2, shape=(b, 1), dtype=torch.bool),
            terminated=Categorical(2, shape=(b, 1), dtype=torch.bool),
            truncated=Categorical(2, shape=(b, 1), dtype=torch.bool),
            shape=(b,),
        )
        self.steps = torch.zeros(b, dtype=torch.long)

    def _reset(self, td=None, **kwargs):
        reset = td.get("_reset", None) if td is not None else None
        reset = torch.ones(self.batch_size, dtype=torch.bool) if reset is None else reset.reshape(self.batch_size)
        self.steps = torch.where(reset, 0, self.steps)
        f = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        obs = self.steps.float().unsqueeze(-1)
        return TensorDict({"observation": obs, "done": f, "terminated": f.clone(), "truncated": f.clone()}, self.batch_size)

    def _step(self, td):
        self.steps = self.steps + 1
        reward = (10 * self.steps + td["action"]).float().unsqueeze(-1)
        end = (self.steps >= self.lengths).unsqueeze(-1)
        return TensorDict(
            {
                "observation": self.steps.float().unsqueeze(-1),
                "reward": reward,
                "done": end,
                "terminated": end.clone(),
                "truncated": torch.zeros_like(end),
            },
            self.batch_size,
        )

    def _set_seed(self, seed):
        return None


def test_specs_on_cartpole():
    for num_envs in (1, 4):
        env = make_env("CartPole-v1", num_envs=num_envs).append_transform(PreviousActionReward())
        check_env_specs(env)
        batch = (num_envs,) if num_envs > 1 else ()
        assert env.observation_spec["prev_action"].shape == (*batch, 2)
        assert env.observation_spec["prev_reward"].shape == (*batch, 1)
        td = env.reset()
        assert (td["prev_action"] == 0).all() and (td["prev_reward"] == 0).all()
    env = TransformedEnv(GymEnv("CartPole-v1", categorical_action_encoding=True), PreviousActionReward())
    check_env_specs(env)


def test_hand_chosen_steps_one_hot_actions():
    env = TransformedEnv(make_env("CartPole-v1"), PreviousActionReward())
    env.set_seed(0)
    td = env.reset()
    assert td["prev_action"].tolist() == [0.0, 0.0] and td["prev_reward"].tolist() == [0.0]
    for a in (1, 0, 0, 1):
        td["action"] = torch.nn.functional.one_hot(torch.tensor(a), 2)
        td = env.step(td)
        assert td["next", "prev_action"].tolist() == torch.nn.functional.one_hot(torch.tensor(a), 2).float().tolist()
        assert td["next", "prev_action"].dtype == torch.float32
        assert td["next", "prev_reward"].tolist() == td["next", "reward"].tolist() == [1.0]
        td = step_mdp(td)


def test_values_and_partial_reset_with_index_actions():
    env = TransformedEnv(_ScoreEnv(lengths=(2, 3)), Compose(InitTracker(), PreviousActionReward()))
    check_env_specs(env)
    td = env.reset()
    assert td["prev_action"].shape == (2, 3) and (td["prev_action"] == 0).all() and (td["prev_reward"] == 0).all()
    actions = [torch.tensor([2, 0]), torch.tensor([1, 1]), torch.tensor([0, 2])]
    seen = []
    for t, a in enumerate(actions):
        td["action"] = a
        td, td_next = env.step_and_maybe_reset(td)
        seen.append(td)
        td = td_next
        if t == 0:
            # both envs took their first step: prev = (a_0, r_0 = 10 + a_0)
            assert td["prev_action"].tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
            assert td["prev_reward"].squeeze(-1).tolist() == [12.0, 10.0]
        if t == 1:
            # env 0 terminated at its 2nd step and was reset: zeros; env 1 carries on
            assert td["is_init"].squeeze(-1).tolist() == [True, False]
            assert td["prev_action"].tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
            assert td["prev_reward"].squeeze(-1).tolist() == [0.0, 21.0]
        if t == 2:
            assert td["is_init"].squeeze(-1).tolist() == [False, True]
            assert td["prev_action"].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
            assert td["prev_reward"].squeeze(-1).tolist() == [10.0, 0.0]
    # the "next" entries hold the values *before* the reset (the final step's)
    assert seen[1]["next", "prev_action"].tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    assert seen[1]["next", "prev_reward"].squeeze(-1).tolist() == [21.0, 21.0]


def test_collector_autoreset_sees_zeros_after_done():
    env = make_env("CartPole-v1", num_envs=4).append_transform(Compose(InitTracker(), PreviousActionReward()))
    env.set_seed(0)
    collector = Collector(env, None, frames_per_batch=400, total_frames=400)
    data = next(iter(collector))
    collector.shutdown()
    assert data.batch_size == (4, 100)
    done = data["next", "done"].squeeze(-1)
    assert done.sum() >= 4  # random CartPole episodes last ~20 steps
    is_init = data["is_init"].squeeze(-1)
    after_done = torch.zeros_like(done)
    after_done[:, 1:] = done[:, :-1]
    # the step after every done is a reset: is_init, zero previous action and reward
    assert (is_init[:, 1:] == done[:, :-1]).all()
    assert (data["prev_action"][after_done] == 0).all() and (data["prev_reward"][after_done] == 0).all()
    assert (data["prev_action"][:, 0] == 0).all()  # the first step of the batch follows env.reset()
    # everywhere else: the action and reward of the step before
    cont = ~after_done
    cont[:, 0] = False
    prev_action = torch.zeros_like(data["prev_action"])
    prev_action[:, 1:] = data["action"][:, :-1].float()
    prev_reward = torch.zeros_like(data["prev_reward"])
    prev_reward[:, 1:] = data["next", "reward"][:, :-1]
    assert cont.sum() > 300
    assert (data["prev_action"][cont] == prev_action[cont]).all()
    assert (data["prev_reward"][cont] == prev_reward[cont]).all()
    # and "next" of a step holds that step's action and reward
    assert (data["next", "prev_action"] == data["action"].float()).all()
    assert (data["next", "prev_reward"] == data["next", "reward"]).all()
    assert (data["prev_action"].sum(-1)[cont] == 1).all()


def test_needs_a_discrete_action_spec():
    env = TransformedEnv(GymEnv("Pendulum-v1"), PreviousActionReward())
    with pytest.raises(TypeError, match="OneHot or Categorical"):
        env.observation_spec
