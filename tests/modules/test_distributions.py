"""Discrete-latent estimators against independently derived values."""
import pytest
import torch
from torch import distributions as D

from latentrl.modules.distributions import (
    GumbelSoftmax,
    StraightThroughOneHotCategorical,
    UnimixOneHotCategorical,
    gumbel_noise,
    independent,
)

# chi-square critical values at p = 0.001 (tables), df = K - 1
CHI2_999 = {4: 18.467, 9: 27.877}


def _chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("K", [5, 10])
def test_gumbel_max_has_the_categorical_distribution(K):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(K, generator=g) * 1.5
    n = 20_000
    noise = gumbel_noise((n, K), generator=g)
    winners = (logits.log_softmax(-1) + noise).argmax(-1)
    counts = torch.bincount(winners, minlength=K).float()
    assert _chi_square(counts, logits.softmax(-1)) < CHI2_999[K - 1]
    # and a wrong distribution is rejected by the same test
    assert _chi_square(counts, torch.full((K,), 1.0 / K)) > CHI2_999[K - 1]


def test_gumbel_noise_mean_is_euler_gamma():
    g = gumbel_noise((200_000,), generator=torch.Generator().manual_seed(1))
    assert abs(g.mean().item() - 0.5772156649) < 0.01
    assert abs(g.var().item() - torch.pi**2 / 6) < 0.03


def test_relaxed_samples_one_hot_at_low_and_uniform_at_high_temperature():
    torch.manual_seed(0)
    logits = torch.randn(1000, 6)
    # distance to the nearest one-hot, 1 - max_k y_k, shrinks to 0 as T -> 0
    gaps = [(1 - GumbelSoftmax(t, logits=logits).rsample().max(-1).values).mean().item() for t in (1.0, 0.1, 0.01)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.005
    hot = GumbelSoftmax(1e4, logits=logits).rsample()
    torch.testing.assert_close(hot, torch.full_like(hot, 1 / 6), atol=2e-3, rtol=0)
    mid = GumbelSoftmax(1.0, logits=logits).rsample()
    torch.testing.assert_close(mid.sum(-1), torch.ones(1000))
    assert 0.2 < mid.max(-1).values.mean() < 0.99  # neither extreme


def test_straight_through_value_is_a_sample_and_gradient_is_through_probs():
    torch.manual_seed(0)
    logits = torch.randn(4, 7, requires_grad=True)
    w = torch.randn(7)
    z = StraightThroughOneHotCategorical(logits=logits).rsample()
    assert torch.equal(z, torch.nn.functional.one_hot(z.argmax(-1), 7).float())  # exact one-hots forward
    (z * w).sum().backward()
    st_grad = logits.grad.clone()
    logits.grad = None
    (logits.softmax(-1) * w).sum().backward()  # d/dlogits of w . p
    torch.testing.assert_close(st_grad, logits.grad)


def test_straight_through_gumbel_forward_exact_one_hot_backward_relaxed():
    logits = torch.randn(64, 5, requires_grad=True)
    w = torch.randn(5)
    torch.manual_seed(3)
    y_hard = GumbelSoftmax(0.5, logits=logits, hard=True).rsample()
    assert set(y_hard.unique().tolist()) <= {0.0, 1.0} and torch.equal(y_hard.sum(-1), torch.ones(64))
    (y_hard * w).sum().backward()
    hard_grad = logits.grad.clone()
    logits.grad = None
    torch.manual_seed(3)  # same Gumbel noise
    y_soft = GumbelSoftmax(0.5, logits=logits).rsample()
    assert torch.equal(y_hard.detach(), torch.nn.functional.one_hot(y_soft.argmax(-1), 5).float())
    (y_soft * w).sum().backward()
    torch.testing.assert_close(hard_grad, logits.grad)


def test_unimix_probabilities_bounded_below():
    logits = torch.tensor([[50.0, -50.0, -50.0, -50.0], [0.0, 0.0, 0.0, 0.0]])
    d = UnimixOneHotCategorical(logits, unimix=0.01)
    assert (d.probs >= 0.01 / 4 - 1e-9).all()
    torch.testing.assert_close(d.probs[1], torch.full((4,), 0.25))
    torch.testing.assert_close(d.probs[0, 0], torch.tensor(0.99 + 0.0025), atol=1e-6, rtol=0)
    assert torch.isfinite(d.log_prob(torch.eye(4)[[1, 1]])).all()
    with pytest.raises(ValueError, match="unimix"):
        UnimixOneHotCategorical(logits, unimix=1.5)


def test_vector_of_independent_categoricals():
    torch.manual_seed(0)
    logits_p, logits_q = torch.randn(3, 32, 32), torch.randn(3, 32, 32)
    p = independent(StraightThroughOneHotCategorical(logits=logits_p))
    q = independent(StraightThroughOneHotCategorical(logits=logits_q))
    assert p.batch_shape == (3,) and p.event_shape == (32, 32)
    z = p.rsample()
    assert z.shape == (3, 32, 32)
    # log_prob, entropy and KL are sums over the 32 variables, written out by hand
    logp = logits_p.log_softmax(-1)
    torch.testing.assert_close(p.log_prob(z), (logp * z).sum((-1, -2)))
    torch.testing.assert_close(p.entropy(), -(logp.exp() * logp).sum((-1, -2)))
    logq = logits_q.log_softmax(-1)
    torch.testing.assert_close(D.kl_divergence(p, q), (logp.exp() * (logp - logq)).sum((-1, -2)))
    g = independent(GumbelSoftmax(1.0, logits=logits_p, hard=True))
    assert g.event_shape == (32, 32) and g.rsample().shape == (3, 32, 32)


def test_gumbel_softmax_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        GumbelSoftmax(0.0, logits=torch.zeros(3))
