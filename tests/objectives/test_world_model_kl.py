"""World-model KL terms: PlaNet free nats, DreamerV2 balancing, DreamerV3 dyn/rep with free bits on the sum."""
import pytest
import torch
from torch.distributions import Independent, Normal, OneHotCategorical

from latentrl.objectives.functional import kl_balanced, kl_dyn_rep, kl_free_nats


def gaussian(mean, std):
    return Independent(Normal(mean, std), 1)


def categorical(logits):
    return Independent(OneHotCategorical(logits=logits), 1)


def _gauss_kl_by_hand(mq, sq, mp, sp):
    return (torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)


def test_planet_free_nats_value_and_no_gradient_below_the_clamp():
    torch.manual_seed(0)
    mq = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    sq = torch.rand(3, 2, 4, dtype=torch.float64) + 0.5
    mp, sp = torch.zeros(3, 2, 4, dtype=torch.float64), torch.ones(3, 2, 4, dtype=torch.float64)
    with torch.no_grad():
        mq[0, 0] = 0.0  # this element's KL is small: below 3 nats
        mq[1, 1] = 5.0  # this one is far above
    kl = _gauss_kl_by_hand(mq, sq, mp, sp)
    out = kl_free_nats((mq, sq), (mp, sp), gaussian, free_nats=3.0)
    assert out.item() == pytest.approx(kl.clamp_min(3.0).mean().item(), rel=1e-12)
    out.backward()
    assert kl[0, 0] < 3 and (mq.grad[0, 0] == 0).all()
    assert kl[1, 1] > 3 and (mq.grad[1, 1] != 0).all()


@pytest.mark.parametrize("family", ["categorical", "gaussian"])
def test_kl_balancing_gives_the_prior_alpha_and_the_posterior_one_minus_alpha_of_the_gradient(family):
    torch.manual_seed(1)
    if family == "categorical":
        post = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
        prior = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
        post_p, prior_p, fn = post, prior, categorical
    else:
        post = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
        prior = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
        std = torch.full((4, 6), 0.7, dtype=torch.float64)
        post_p, prior_p, fn = (post, std), (prior, std * 1.3), gaussian
    full = torch.distributions.kl_divergence(
        fn(*post_p) if isinstance(post_p, tuple) else fn(post_p), fn(*prior_p) if isinstance(prior_p, tuple) else fn(prior_p)
    ).mean()
    g_post, g_prior = torch.autograd.grad(full, (post, prior))
    balanced = kl_balanced(post_p, prior_p, fn, alpha=0.8)
    assert balanced.item() == pytest.approx(full.item(), rel=1e-12)  # the value is KL(q || p)
    b_post, b_prior = torch.autograd.grad(balanced, (post, prior))
    torch.testing.assert_close(b_prior, 0.8 * g_prior)
    torch.testing.assert_close(b_post, 0.2 * g_post)


def test_kl_balancing_free_nats_clamps_each_averaged_term():
    post = torch.zeros(2, 3, 4, requires_grad=True)
    prior = torch.zeros(2, 3, 4, requires_grad=True)
    out = kl_balanced(post, prior, categorical, alpha=0.8, free_nats=1.0)  # KL = 0 < 1
    assert out.item() == pytest.approx(1.0)
    out.backward()
    assert (post.grad == 0).all() and (prior.grad == 0).all()


def _dyn_rep_by_hand(post_logits, prior_logits, free, unimix):
    def probs(logits):
        p = torch.softmax(logits, -1)
        return (1 - unimix) * p + unimix / logits.shape[-1]

    q, p = probs(post_logits), probs(prior_logits)
    kl = (q * (q.log() - p.log())).sum((-1, -2))  # summed over the categorical variables
    return kl.clamp_min(free).mean()


def test_dreamer_v3_dyn_rep_values_scales_and_gradient_routes():
    torch.manual_seed(2)
    post = (3 * torch.randn(5, 4, 6)).requires_grad_()
    prior = (3 * torch.randn(5, 4, 6)).requires_grad_()
    dyn, rep = kl_dyn_rep(post, prior, dyn_scale=1.0, rep_scale=0.1, free_bits=1.0, unimix=0.01)
    expected = _dyn_rep_by_hand(post, prior, 1.0, 0.01).item()
    assert dyn.item() == pytest.approx(expected, rel=1e-5)
    assert rep.item() == pytest.approx(0.1 * expected, rel=1e-5)
    g_post, g_prior = torch.autograd.grad(dyn, (post, prior), retain_graph=True, allow_unused=True, materialize_grads=True)
    assert (g_post == 0).all() and g_prior.abs().sum() > 0  # dynamics loss trains the prior only
    g_post, g_prior = torch.autograd.grad(rep, (post, prior), allow_unused=True, materialize_grads=True)
    assert g_post.abs().sum() > 0 and (g_prior == 0).all()  # representation loss trains the posterior only


def test_lambda_return_matches_the_recursion_written_out():
    from latentrl.objectives.functional import lambda_return

    torch.manual_seed(3)
    B, H, lam = 3, 7, 0.95
    reward = torch.randn(B, H, 1, dtype=torch.float64)
    next_value = torch.randn(B, H, 1, dtype=torch.float64)
    discount = 0.995 * torch.rand(B, H, 1, dtype=torch.float64)  # predicted continuation x gamma
    out = lambda_return(reward, next_value, discount, lam)
    expected = torch.zeros_like(reward)
    for b in range(B):
        g = reward[b, H - 1, 0] + discount[b, H - 1, 0] * next_value[b, H - 1, 0]
        expected[b, H - 1, 0] = g
        for t in range(H - 2, -1, -1):
            g = reward[b, t, 0] + discount[b, t, 0] * ((1 - lam) * next_value[b, t, 0] + lam * g)
            expected[b, t, 0] = g
    torch.testing.assert_close(out, expected)
    # lambda = 0: one-step targets r + gamma_t v(s_{t+1})
    torch.testing.assert_close(lambda_return(reward, next_value, discount, 0.0), reward + discount * next_value)
