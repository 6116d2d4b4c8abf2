"""CEM planning finds the optimum of a known quadratic reward in a toy latent model."""
import pytest
import torch

from latentrl.modules.planners import CEMPlanner, cem_plan


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
    planner = CEMPlanner(lambda s, a: s + a, lambda s: -(s**2).sum(-1), 2, horizon=2, iterations=10, candidates=200, top_k=20)
    s = torch.full((400, 2), 3.0)  # the optimum is the bound: a = -1
    torch.manual_seed(0)
    greedy = planner(s)
    assert greedy.shape == (400, 2) and (greedy <= -0.85).all()
    noisy = planner(s, explore=True)  # + N(0, 0.3^2), clipped: about 30% of the entries move above -0.8
    assert (noisy.abs() <= 1).all() and 0.15 < (noisy > -0.8).float().mean() < 0.45
    with pytest.raises(ValueError, match="top_k"):
        cem_plan(s, lambda s, a: s + a, lambda s: s.sum(-1), 2, candidates=10, top_k=20)
