"""UPSTREAM.md #5 and #6: TorchRL's OneHotCategorical.

#5: its samples are one-hot vectors but its event_shape is (), so a vector of
32 categoricals built with torch.distributions.Independent has event shape
[32] instead of [32, 32], and log_prob/entropy reduce over the wrong dims.
#6: its RelaxedOneHot strategy fixes the Gumbel-softmax temperature to 1.
Ours: latentrl.modules.distributions."""
import inspect

import torch
from torch import distributions as D
from torchrl.modules.distributions import OneHotCategorical, ReparamGradientStrategy

from latentrl.modules.distributions import GumbelSoftmax, StraightThroughOneHotCategorical, independent


def test_event_shape_of_one_hot_samples():
    logits = torch.randn(4, 32, 32)
    torchrl_dist = OneHotCategorical(logits=logits)
    assert torchrl_dist.sample().shape == (4, 32, 32)
    assert torchrl_dist.event_shape == ()  # TorchRL
    assert D.Independent(torchrl_dist, 1).event_shape == (32,)
    ours = StraightThroughOneHotCategorical(logits=logits)
    assert ours.event_shape == (32,)  # like torch.distributions.OneHotCategorical
    assert independent(ours).event_shape == (32, 32)
    # both give one-hot values with the straight-through gradient, that of the probabilities
    # (ours draws by inverse CDF, so the samples of one seed differ)
    w = torch.randn(4, 32, 32)
    expected = torch.autograd.grad((w * torch.softmax(logits.requires_grad_(), -1)).sum(), logits)[0]
    for make in (OneHotCategorical, StraightThroughOneHotCategorical):
        z = make(logits=logits).rsample()
        torch.testing.assert_close(z.detach().sum(-1), torch.ones(4, 32))
        torch.testing.assert_close(z.detach(), z.detach().round())
        torch.testing.assert_close(torch.autograd.grad((w * z).sum(), logits)[0], expected)


def test_relaxed_strategy_has_no_temperature():
    params = inspect.signature(OneHotCategorical.__init__).parameters
    assert "temperature" not in params  # TorchRL: T is fixed to 1 inside rsample
    d = OneHotCategorical(logits=torch.zeros(3), grad_method=ReparamGradientStrategy.RelaxedOneHot)
    assert d.rsample().shape == (3,)
    ours = GumbelSoftmax(0.1, logits=torch.zeros(3), hard=True)  # any T > 0
    assert ours.temperature == torch.tensor(0.1)
