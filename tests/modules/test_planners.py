"""CEM planning finds the optimum of a known quadratic reward in a toy latent model."""
import pytest
import torch
from fakes import Fn
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs.utils import ExplorationType, set_exploration_type

from latentrl.modules.planners import CEMPlanner, cem_plan


def keyed_line_model(key="x", action_key="action"):
    """The toy model x' = x + a and reward -||x||^2, as keyed modules."""
    transition = TensorDictModule(Fn(lambda x, a: x + a), in_keys=[key, action_key], out_keys=[("next", key)])
    reward = TensorDictModule(Fn(lambda x: -(x**2).sum(-1, keepdim=True)), in_keys=[key], out_keys=["predicted_reward"])
    return transition, reward


def test_cem_finds_the_optimum_of_a_quadratic_reward():
    # latent s' = s + a (a in [-1, 1]^2), reward -||s' - target||^2 at every step: the best first
    # action moves straight to the target, clipped to the bounds
    target = torch.tensor([0.5, -0.3])
    start = torch.tensor([[0.0, 0.0], [0.2, 0.2], [-2.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    action = cem_plan(
        start, lambda s, a: s + a, lambda s: -((s - target) ** 2).sum(-1), 2,
        horizon=4, iterations=10, candidates=1000, top_k=100, generator=g,
    )
    expected = (target - start).clamp(-1, 1)
    torch.testing.assert_close(action, expected, atol=0.05, rtol=0)


def test_cem_with_tuple_states_and_one_iteration_is_worse_than_ten():
    target = torch.tensor([0.7])

    def step(state, a):
        h, s = state
        return (h + 1, s + a)

    def reward(state):
        return -((state[1] - target) ** 2).sum(-1)

    start = (torch.zeros(64, 3), torch.zeros(64, 1))
    err = {}
    for its in (1, 10):
        g = torch.Generator().manual_seed(1)
        a = cem_plan(start, step, reward, 1, horizon=3, iterations=its, candidates=100, top_k=10, generator=g)
        err[its] = (a - target).abs().mean().item()
    assert err[10] < 0.05 < err[1]


def test_planner_policy_bounds_noise_and_errors():
    transition, reward = keyed_line_model()
    planner = CEMPlanner(transition, reward, 2, state_keys=("x",), horizon=2, iterations=10, candidates=200, top_k=20)
    s = torch.full((400, 2), 3.0)  # the optimum is the bound: a = -1
    torch.manual_seed(0)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        greedy = planner(TensorDict({"x": s}, [400]))["action"]
    assert greedy.shape == (400, 2) and (greedy <= -0.85).all()
    with set_exploration_type(ExplorationType.RANDOM):  # + N(0, 0.3^2), clipped: ~30% of the entries move above -0.8
        noisy = planner(TensorDict({"x": s}, [400]))["action"]
    assert (noisy.abs() <= 1).all() and 0.15 < (noisy > -0.8).float().mean() < 0.45
    with pytest.raises(ValueError, match="exploration_noise"):
        CEMPlanner(transition, reward, 2, state_keys=("x",), exploration_noise=-0.1)
    with pytest.raises(ValueError, match="top_k"):
        cem_plan(s, lambda s, a: s + a, lambda s: s.sum(-1), 2, candidates=10, top_k=20)


def test_planner_reads_and_writes_its_keys():
    transition, reward = keyed_line_model(key=("agent", "z"), action_key="act")
    planner = CEMPlanner(transition, reward, 2, state_keys=(("agent", "z"),), action_key="act", horizon=2,
                         iterations=5, candidates=100, top_k=10, exploration_noise=0.0)
    assert planner.in_keys == [("agent", "z")] and planner.out_keys == ["act"]
    td = planner(TensorDict({("agent", "z"): torch.full((3, 2), 0.4)}, [3]))
    torch.testing.assert_close(td["act"], torch.full((3, 2), -0.4), atol=0.1, rtol=0)
