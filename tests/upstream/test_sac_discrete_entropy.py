"""UPSTREAM.md #7: SACLoss with a reparameterized one-hot actor has no entropy gradient.

SACLoss differentiates ``alpha * log pi(a|s)`` through the rsampled action.
torch and TorchRL score a one-hot value by its argmax index, so nothing flows
through ``a`` and only the score function is left, whose mean is zero: the
entropy bonus of SAC (Haarnoja et al. 2018) does nothing in expectation.
Ours (GumbelSACLoss) uses the exact categorical entropy, whose gradient is
the gradient of -H itself.
"""
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.data import OneHot
from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor, ReparamGradientStrategy, ValueOperator
from torchrl.objectives import SACLoss

from latentrl.modules.distributions import GumbelSoftmax
from latentrl.objectives.gumbel_sac import GumbelSACLoss, categorical_entropy

N_ACTIONS, N_SAMPLES = 3, 100_000
ACTORS = {
    "gumbel_softmax_hard": (GumbelSoftmax, {"temperature": 1.0, "hard": True}),
    "torchrl_pass_through": (OneHotCategorical, {"grad_method": ReparamGradientStrategy.PassThrough}),
    "torchrl_relaxed_one_hot": (OneHotCategorical, {"grad_method": ReparamGradientStrategy.RelaxedOneHot}),
}


def _entropy_term_gradient(loss_class, dist_class, dist_kwargs):
    """d loss_actor / d logits-bias with Q == 0, so that loss_actor is the entropy term alone."""
    net = torch.nn.Linear(2, N_ACTIONS)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]]))
        net.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["logits"]),
        in_keys=["logits"],
        out_keys=["action"],
        spec=OneHot(N_ACTIONS),
        distribution_class=dist_class,
        distribution_kwargs=dist_kwargs,
        return_log_prob=True,
    )
    q = MLP(in_features=2 + N_ACTIONS, out_features=1, depth=0)
    for p in q.parameters():
        torch.nn.init.zeros_(p)
    loss = loss_class(actor, ValueOperator(q, ["observation", "action"]), num_qvalue_nets=2, target_entropy=0.1)
    obs = torch.tensor([[0.3, -0.2]]).expand(N_SAMPLES, 2)  # one state, many action samples
    flags = torch.zeros(N_SAMPLES, 1, dtype=torch.bool)
    td = TensorDict(
        {
            "observation": obs,
            "action": torch.eye(N_ACTIONS)[torch.zeros(N_SAMPLES, dtype=torch.long)],
            "next": {"observation": obs, "reward": torch.zeros(N_SAMPLES, 1), "done": flags, "terminated": flags},
        },
        [N_SAMPLES],
    )
    torch.manual_seed(0)
    grad = torch.autograd.grad(loss(td)["loss_actor"], [net.bias])[0]
    exact = torch.autograd.grad(-categorical_entropy(net(obs[:1])).sum(), [net.bias])[0]
    return grad, exact


@pytest.mark.parametrize("actor", list(ACTORS))
def test_sac_loss_entropy_term_has_no_gradient_with_one_hot_actions(actor):
    grad, exact = _entropy_term_gradient(SACLoss, *ACTORS[actor])
    assert exact.norm() > 0.3
    assert grad.norm() < 0.05 * exact.norm()  # TorchRL: only the zero-mean score function is left


@pytest.mark.parametrize("actor", list(ACTORS))
def test_gumbel_sac_loss_entropy_term_is_the_entropy_gradient(actor):
    grad, exact = _entropy_term_gradient(GumbelSACLoss, *ACTORS[actor])
    torch.testing.assert_close(grad, exact, atol=1e-5, rtol=1e-4)  # ours: exact, no sampling noise


def test_one_hot_log_prob_does_not_differentiate_the_value():
    """The mechanism: the log-probability of a one-hot is read off its argmax."""
    value = torch.tensor([0.0, 1.0, 0.0], requires_grad=True)
    for dist in (
        torch.distributions.OneHotCategorical(logits=torch.randn(3)),
        OneHotCategorical(logits=torch.randn(3)),
        GumbelSoftmax(1.0, logits=torch.randn(3), hard=True),
    ):
        assert not dist.log_prob(value).requires_grad
