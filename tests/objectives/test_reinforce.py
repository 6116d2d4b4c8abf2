"""REINFORCE with baseline: unbiased against an exactly enumerable expectation."""
import pytest
import torch
from torch import distributions as D

from latentrl.objectives.baselines import MovingAverageBaseline
from latentrl.objectives.functional import reinforce_surrogate

COST = torch.tensor([1.0, -2.0, 0.5, 3.0])  # L(z) for the 4 outcomes


def _exact_gradient(theta, cost=COST):
    theta = theta.detach().requires_grad_(True)
    (theta.softmax(-1) * cost).sum().backward()  # E[L] = sum_z p(z) L(z), by enumeration
    return theta.grad


def _mc_gradient(theta, baseline, n, seed, cost=COST):
    theta = theta.detach().requires_grad_(True)
    torch.manual_seed(seed)
    dist = D.Categorical(logits=theta.expand(n, 4))
    z = dist.sample()
    reinforce_surrogate(dist.log_prob(z), cost[z], baseline).mean().backward()
    return theta.grad


@pytest.mark.parametrize("baseline", [0.0, 1.0, -5.0])
def test_surrogate_gradient_is_unbiased(baseline):
    theta = torch.tensor([0.3, -0.2, 0.1, 0.5])
    exact = _exact_gradient(theta)
    estimate = _mc_gradient(theta, baseline, 400_000, seed=0)
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)


def test_good_baseline_reduces_variance():
    cost = COST + 10.0  # far from 0: a zero baseline is a poor one
    theta = torch.tensor([0.3, -0.2, 0.1, 0.5])
    mean_cost = float((theta.softmax(-1) * cost).sum())
    spread = {}
    for b in (0.0, mean_cost):
        grads = torch.stack([_mc_gradient(theta, b, 64, seed, cost) for seed in range(300)])
        spread[b] = grads.var(0).sum().item()
    assert spread[mean_cost] < 0.1 * spread[0.0]


def test_surrogate_stops_gradients_of_loss_and_baseline():
    log_prob = torch.tensor([-1.0], requires_grad=True)
    loss = torch.tensor([2.0], requires_grad=True)
    b = torch.tensor(0.5, requires_grad=True)
    reinforce_surrogate(log_prob, loss, b).sum().backward()
    assert log_prob.grad.item() == 1.5  # d/dlogp of (L - b) * logp
    assert loss.grad is None and b.grad is None


def test_moving_average_baseline():
    b = MovingAverageBaseline(decay=0.9)
    assert b.update(torch.tensor([2.0, 4.0])).item() == 3.0  # first update: the mean
    assert b.update(torch.tensor([13.0])).item() == pytest.approx(0.9 * 3.0 + 0.1 * 13.0)
    assert "value" in b.state_dict()
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(decay=1.0)
