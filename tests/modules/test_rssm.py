import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import distributions as D
from torchrl.envs.utils import ExplorationType, set_exploration_type

from latentrl.modules.rssm import RSSM
from latentrl.modules.world_model import RSSMImagine, RSSMObserve

B, T, E, A, DET, HID = 3, 6, 5, 2, 16, 24


class TanhPolicy(torch.nn.Module):
    """a = tanh(W [h, s]), as a keyed module reading the latent state."""

    def __init__(self, features: int):
        super().__init__()
        self.linear = torch.nn.Linear(features, A)

    def forward(self, deter, stoch):
        return torch.tanh(self.linear(torch.cat([deter, stoch], -1)))


def keyed_policy(m: RSSM) -> TensorDictModule:
    return TensorDictModule(TanhPolicy(m.feature_dim), in_keys=["deter", "stoch"], out_keys=["action"])


def imagine(m: RSSM, policy, start_h, start_s, horizon):
    start = TensorDict({"deter": start_h, "stoch": start_s}, start_h.shape[:-1])
    with set_exploration_type(ExplorationType.RANDOM):
        return RSSMImagine(m).rollout(start, policy, horizon)


def make(latent: str, **kw) -> RSSM:
    torch.manual_seed(0)
    if latent == "gaussian":
        return RSSM(A, E, deter_dim=DET, hidden_dim=HID, latent="gaussian", stoch_dim=4, **kw)
    return RSSM(A, E, deter_dim=DET, hidden_dim=HID, latent="categorical", num_vars=3, num_classes=4, **kw)


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, E, generator=g), torch.randn(B, T, A, generator=g)


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_observe_and_imagine_shapes(latent):
    m = make(latent)
    S = 4 if latent == "gaussian" else 12
    assert m.stoch_flat == S and m.feature_dim == DET + S
    embed, action = inputs()
    out = m.observe(embed, action, torch.zeros(B, T, 1, dtype=torch.bool))
    assert out.batch_size == torch.Size([B, T])
    assert out["deter"].shape == (B, T, DET) and out["stoch"].shape == (B, T, S)
    if latent == "gaussian":
        for k in ("prior", "post"):
            assert out[k, "mean"].shape == out[k, "std"].shape == (B, T, 4)
        d = m.dist(out["post"])
        assert isinstance(d, D.Independent) and d.event_shape == (4,) and d.batch_shape == (B, T)
    else:
        assert out["prior", "logits"].shape == out["post", "logits"].shape == (B, T, 3, 4)
        d = m.dist(out["post"])
        assert d.event_shape == (3, 4) and d.batch_shape == (B, T)
        s = out["stoch"].unflatten(-1, (3, 4))
        assert torch.equal(s.sum(-1), torch.ones(B, T, 3))  # one-hot per variable in the forward pass
    policy = keyed_policy(m)
    start_h, start_s = out["deter"].reshape(-1, DET), out["stoch"].reshape(-1, S)
    im = imagine(m, policy, start_h, start_s, horizon=5)
    assert im.batch_size == torch.Size([B * T, 5])  # TorchRL's layout: z_t, a_t and "next" z_{t+1}
    assert im["deter"].shape == (B * T, 5, DET) and im["stoch"].shape == (B * T, 5, S)
    assert im["next", "deter"].shape == (B * T, 5, DET) and im["action"].shape == (B * T, 5, A)
    assert torch.equal(im["deter"][:, 0], start_h) and torch.equal(im["stoch"][:, 0], start_s)
    torch.testing.assert_close(im["deter"][:, 1:], im["next", "deter"][:, :-1])
    # every next state is the prior step from the state and the policy's action
    h1, _ = m.img_step(start_h, start_s, im["action"][:, 0])
    torch.testing.assert_close(im["next", "deter"][:, 0], h1)
    # step functions accept any leading batch shape
    h, s = m.initial_state((2, 3))
    h2, prior, post = m.obs_step(h, s, torch.zeros(2, 3, A), torch.zeros(2, 3, E))
    assert h2.shape == (2, 3, DET) and m.sample_state(post).shape == (2, 3, S)


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
@pytest.mark.parametrize("sample", [False, True])
def test_reset_at_is_init_equals_fresh_observe(latent, sample):
    m = make(latent)
    embed, action = inputs()
    k = 3
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, k] = True
    # a non-zero starting state and previous action, which the reset must also discard
    state = (torch.randn(B, DET), torch.randn(B, m.stoch_flat))
    if sample:
        # same noise for the steps from k on: seed right before step k in both runs
        full_pre = m.observe(embed[:, :k], action[:, :k], is_init[:, :k], state=state, sample=True)
        h, s = full_pre["deter"][:, -1], full_pre["stoch"][:, -1]
        torch.manual_seed(123)
        full_post = m.observe(embed[:, k:], action[:, k:], is_init[:, k:], state=(h, s), prev_action=action[:, k - 1])
        torch.manual_seed(123)
        fresh = m.observe(embed[:, k:], action[:, k:])
        tail = full_post
    else:
        full = m.observe(embed, action, is_init, state=state, prev_action=torch.ones(B, A), sample=False)
        fresh = m.observe(embed[:, k:], action[:, k:], sample=False)
        tail = full[:, k:]
        # without the reset the tail would differ
        no_reset = m.observe(embed, action, None, state=state, sample=False)
        assert not torch.allclose(no_reset["deter"][:, k:], fresh["deter"])
    for key in tail.keys(include_nested=True, leaves_only=True):
        torch.testing.assert_close(tail[key], fresh[key], rtol=0, atol=1e-6)


def test_reset_blocks_gradient_across_boundary():
    m = make("gaussian")
    embed, action = inputs()
    embed.requires_grad_(True)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 3] = True
    out = m.observe(embed, action, is_init)
    out["deter"][:, 3:].sum().backward()
    assert torch.all(embed.grad[:, :3] == 0) and embed.grad[:, 3:].abs().sum() > 0


def _one_posterior_step(m: RSSM):
    embed, action = inputs()
    h, s = m.initial_state(B)
    h, _, post = m.obs_step(h, s, action[:, 0], embed[:, 0])
    for v in post.values():
        v.retain_grad()
    return post, m.sample_state(post)


def test_categorical_straight_through_gradient_reaches_posterior_logits():
    m = make("categorical")
    post, s = _one_posterior_step(m)
    z = s.detach().unflatten(-1, (3, 4))
    assert set(z.unique().tolist()) <= {0.0, 1.0}  # the forward value is an exact one-hot
    w = torch.randn(m.stoch_flat)
    (s * w).sum().backward()
    # d(z + p - sg(p))/dlogits = dp/dlogits: the softmax Jacobian applied to w
    p = torch.softmax(post["logits"].detach(), -1)
    wv = w.unflatten(-1, (3, 4))
    expected = p * (wv - (p * wv).sum(-1, keepdim=True))
    torch.testing.assert_close(post["logits"].grad, expected)
    # and through a whole sequence into the posterior network
    m.zero_grad()
    embed, action = inputs()
    (m.observe(embed, action)["stoch"] * w).sum().backward()
    assert m.post_net[-1].weight.grad.abs().sum() > 0


def test_gaussian_rsample_gradient_reaches_posterior_mean_and_std():
    m = make("gaussian")
    torch.manual_seed(3)
    post, s = _one_posterior_step(m)
    s.sum().backward()
    # s = mean + std * eps: ds/dmean = 1, ds/dstd = eps = (s - mean) / std
    torch.testing.assert_close(post["mean"].grad, torch.ones_like(s))
    eps = ((s - post["mean"]) / post["std"]).detach()
    torch.testing.assert_close(post["std"].grad, eps)
    assert eps.abs().sum() > 0
    m.zero_grad()
    embed, action = inputs()
    (m.observe(embed, action)["stoch"] ** 2).sum().backward()
    assert m.post_net[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_imagine_gradients_reach_policy(latent):
    m = make(latent)
    embed, action = inputs()
    out = m.observe(embed, action)
    start_h = out["deter"].reshape(-1, DET).detach()
    start_s = out["stoch"].reshape(-1, m.stoch_flat).detach()
    policy = keyed_policy(m)
    im = imagine(m, policy, start_h, start_s, horizon=4)
    # a loss on the imagined states only (not on the actions directly): the gradient must
    # flow through the dynamics, the actions and the prior samples back into the policy.
    (im["next", "deter"].pow(2).sum() + im["next", "stoch"].pow(2).sum()).backward()
    assert policy.module.linear.weight.grad.abs().sum() > 0
    assert m.img_in[0].weight.grad.abs().sum() > 0
    assert m.prior_net[-1].weight.grad.abs().sum() > 0  # through the rsample / straight-through samples


def test_gaussian_std_at_least_min_std():
    m = make("gaussian", min_std=0.1)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(20.0)  # push the raw std far negative / positive
    embed, action = inputs()
    out = m.observe(embed * 10, action)
    for k in ("prior", "post"):
        assert out[k, "std"].min() >= 0.1
    assert out["post", "std"].min() < 0.11  # the bound is reached, not an offset that's never hit


def test_unimix_probs_at_least_unimix_over_classes():
    m = make("categorical", unimix=0.01)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(50.0)  # near-deterministic logits
    embed, action = inputs()
    out = m.observe(embed, action)
    for k in ("prior", "post"):
        probs = m.dist(out[k]).base_dist.probs
        assert probs.min() >= 0.01 / 4 - 1e-7
        torch.testing.assert_close(probs.sum(-1), torch.ones(B, T, 3))
    # without unimix the same parameters give (near-)zero probabilities
    m0 = make("categorical")
    m0.load_state_dict(m.state_dict())
    assert m0.dist(m0.observe(embed, action)["post"]).base_dist.probs.min() < 0.01 / 4


def test_unimix_and_latent_validation():
    with pytest.raises(ValueError):
        RSSM(A, E, latent="gaussian", unimix=0.01)
    with pytest.raises(ValueError):
        RSSM(A, E, latent="beta")


def test_deterministic_path_is_gru_over_state_and_previous_action():
    m = make("gaussian")
    embed, action = inputs()
    k = 3
    torch.manual_seed(5)
    out1 = m.observe(embed, action, sample=False)
    action2 = action.clone()
    action2[:, k - 1] += 1.0  # a_{k-1}: leads to o_k
    out2 = m.observe(embed, action2, sample=False)
    # h_{k-1} and earlier are unchanged (they use a_{k-2} and earlier), h_k changes
    torch.testing.assert_close(out1["deter"][:, :k], out2["deter"][:, :k], rtol=0, atol=0)
    assert not torch.allclose(out1["deter"][:, k], out2["deter"][:, k])
    # the last action leads to o_T, outside the sequence: it changes nothing
    action3 = action.clone()
    action3[:, -1] += 1.0
    torch.testing.assert_close(m.observe(embed, action3, sample=False)["deter"], out1["deter"])
    # img_step is exactly GRUCell(h, MLP([s, a]))
    h, s, a = torch.randn(B, DET), torch.randn(B, 4), torch.randn(B, A)
    h_next, prior = m.img_step(h, s, a)
    torch.testing.assert_close(h_next, m.gru(m.img_in(torch.cat([s, a], -1)), h))
    torch.testing.assert_close(m.filter_step(h, s, a, embed[:, 0])[0], h_next)
    torch.testing.assert_close(prior["mean"], m.prior_net(h_next)[:, :4])
    # h_t does not depend on e_t (only the posterior does)
    e2 = embed.clone()
    e2[:, k] += 1.0
    out4 = m.observe(e2, action, sample=False)
    torch.testing.assert_close(out4["deter"][:, : k + 1], out1["deter"][:, : k + 1])
    assert not torch.allclose(out4["post", "mean"][:, k], out1["post", "mean"][:, k])


def test_tensordict_wrapper_matches_observe():
    m = make("categorical")
    embed, action = inputs()
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[1, 4] = True
    td = TensorDict({"embed": embed.reshape(1, B, T, E), "action": action.reshape(1, B, T, A),
                     "is_init": is_init.reshape(1, B, T, 1)}, batch_size=[1, B, T])
    module = RSSMObserve(m, sample=False)
    out = module(td)
    ref = m.observe(embed, action, is_init, sample=False)
    for key in module.out_keys:
        torch.testing.assert_close(out[key].reshape(ref[key].shape), ref[key])


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
@pytest.mark.parametrize("unimix", [0.0, 0.01])
def test_observe_equals_the_step_by_step_recursion(latent, unimix):
    """observe() (shares of the first layers and the prior head out of the loop) is obs_step() repeated."""
    if latent == "gaussian" and unimix:
        pytest.skip("unimix is categorical")
    m = make(latent, unimix=unimix)
    embed, action = inputs()
    embed.requires_grad_()
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[1, 3] = True
    torch.manual_seed(7)
    fast = m.observe(embed, action, is_init)
    torch.manual_seed(7)
    h, s = m.initial_state(B)
    a = torch.zeros(B, A)
    rows = []
    for t in range(T):
        keep = (~is_init[:, t]).float()
        h, s, a = h * keep, s * keep, a * keep
        h, prior, post = m.obs_step(h, s, a, embed[:, t])
        s = m.sample_state(post)
        rows.append((h, s, prior, post))
        a = action[:, t]
    torch.testing.assert_close(fast["deter"], torch.stack([r[0] for r in rows], 1))
    torch.testing.assert_close(fast["stoch"], torch.stack([r[1] for r in rows], 1))
    for i, name in ((2, "prior"), (3, "post")):
        for k in rows[0][i]:
            torch.testing.assert_close(fast[name, k], torch.stack([r[i][k] for r in rows], 1))
    # and the gradients agree
    prior_sum = lambda stats: sum(v.sum() for v in stats.values())  # noqa: E731
    g_fast = torch.autograd.grad(fast["deter"].sum() + fast["stoch"].pow(2).sum() + prior_sum(fast["prior"]),
                                 [embed, *m.parameters()])
    slow = (torch.stack([r[0] for r in rows], 1).sum() + torch.stack([r[1] for r in rows], 1).pow(2).sum()
            + sum(prior_sum(r[2]) for r in rows))
    g_slow = torch.autograd.grad(slow, [embed, *m.parameters()])
    for x, y in zip(g_fast, g_slow):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_categorical_samples_follow_the_probabilities():
    """The inverse-CDF sampler draws each class with its probability (chi-square-sized tolerance)."""
    m = make("categorical")
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).expand(20000, 3, 4)
    torch.manual_seed(0)
    s = m.sample_state({"logits": logits}).unflatten(-1, (3, 4))
    freq = s.mean(0)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]).expand(3, 4), atol=0.012, rtol=0)
