"""TorchRL's TDLambdaEstimator takes one scalar gamma; Dreamer's λ-return needs a per-step predicted discount.

``torchrl.objectives.value.TDLambdaEstimator`` (torchrl 0.14.1) discounts every
step by its scalar ``gamma`` (episode ends only through done flags). DreamerV2
(Hafner et al. 2020, eq. 4) discounts step ``t`` by the discount head's
prediction ``γ_t``. Ours: ``latentrl.objectives.value.DreamerLambdaEstimator``
reads ``("next", "discount")``. With a constant discount both agree; with a
predicted one they differ (UPSTREAM.md #17).
"""
import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives.value import TDLambdaEstimator

from latentrl.objectives.value import DreamerLambdaEstimator

N, H = 3, 6


def trajectory(discount: torch.Tensor, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    zeros = torch.zeros(N, H, 1, dtype=torch.bool)
    return TensorDict({"next": {"reward": torch.randn(N, H, 1, generator=g), "discount": discount,
                                "state_value": torch.randn(N, H, 1, generator=g), "done": zeros,
                                "terminated": zeros}}, [N, H])


def by_hand(reward, next_value, discount, lmbda):
    """V_t = r_t + γ_t ((1 − λ) v_{t+1} + λ V_{t+1}), V_{H-1} = r_{H-1} + γ_{H-1} v_H (DreamerV2, eq. 4)."""
    out = torch.zeros_like(reward)
    nxt = next_value[:, -1]
    for t in reversed(range(reward.shape[1])):
        boot = next_value[:, t] if t == reward.shape[1] - 1 else (1 - lmbda) * next_value[:, t] + lmbda * nxt
        out[:, t] = reward[:, t] + discount[:, t] * boot
        nxt = out[:, t]
    return out


def test_per_step_discount_matches_the_recursion_written_out():
    g = torch.Generator().manual_seed(1)
    discount = torch.rand(N, H, 1, generator=g)
    td = trajectory(discount)
    value = DreamerLambdaEstimator(lmbda=0.95).value_estimate(td, next_value=td["next", "state_value"], time_dim=1)
    expected = by_hand(td["next", "reward"], td["next", "state_value"], discount, 0.95)
    torch.testing.assert_close(value, expected)


def test_equals_torchrl_td_lambda_with_a_constant_discount_and_differs_with_a_predicted_one():
    gamma = 0.9
    td = trajectory(torch.full((N, H, 1), gamma))
    ours = DreamerLambdaEstimator(lmbda=0.8).value_estimate(td, next_value=td["next", "state_value"], time_dim=1)
    theirs = TDLambdaEstimator(gamma=gamma, lmbda=0.8, value_network=None).value_estimate(
        td, next_value=td["next", "state_value"], time_dim=1)
    torch.testing.assert_close(ours, theirs)
    # a predicted, per-step discount (here: one step of the episode likely ends) is what TorchRL's scalar
    # gamma cannot express
    predicted = torch.full((N, H, 1), gamma)
    predicted[:, 2] = 0.05
    td2 = trajectory(predicted)
    ours2 = DreamerLambdaEstimator(lmbda=0.8).value_estimate(td2, next_value=td2["next", "state_value"], time_dim=1)
    theirs2 = TDLambdaEstimator(gamma=gamma, lmbda=0.8, value_network=None).value_estimate(
        td2, next_value=td2["next", "state_value"], time_dim=1)
    torch.testing.assert_close(ours2, by_hand(td2["next", "reward"], td2["next", "state_value"], predicted, 0.8))
    assert (ours2 - theirs2).abs().max() > 0.1


def test_keys_and_errors():
    est = DreamerLambdaEstimator(lmbda=0.5)
    est.set_keys(discount="gamma_t", reward="r")
    td = trajectory(torch.full((N, H, 1), 0.5))
    td.rename_key_(("next", "discount"), ("next", "gamma_t")).rename_key_(("next", "reward"), ("next", "r"))
    value = est.value_estimate(td, next_value=td["next", "state_value"], time_dim=1)
    torch.testing.assert_close(value, by_hand(td["next", "r"], td["next", "state_value"], td["next", "gamma_t"], 0.5))
    with pytest.raises(KeyError, match="discount"):
        DreamerLambdaEstimator().value_estimate(trajectory(torch.ones(N, H, 1)).exclude(("next", "discount")),
                                                next_value=torch.zeros(N, H, 1), time_dim=1)
    with pytest.raises(ValueError, match="lmbda"):
        DreamerLambdaEstimator(lmbda=1.5)
