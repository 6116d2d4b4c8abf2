"""RSSMV3 against the code's ``_core``/``_prior``/``_observe`` written out with einsum (danijar/dreamerv3
rssm.py), its initializer, and its fast ``observe`` against the step-by-step definition."""
import math

import pytest
import torch
from torch.nn import functional as F

from latentrl.modules import RSSMV3, make_dreamer_actor
from latentrl.modules.rssm_v3 import BlockLinear
from latentrl.modules.world_model import RSSMImagine

A, E = 3, 10


def _rms(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-4) * weight


def _official_core(m, deter, stoch, action):
    """rssm.py _core, line by line (einops rearranges as reshapes)."""
    action = action / torch.clamp(action.abs(), min=1.0)
    g = m.blocks
    flat2group = lambda x: x.reshape(*x.shape[:-1], g, -1)  # noqa: E731
    group2flat = lambda x: x.reshape(*x.shape[:-2], -1)  # noqa: E731
    act = F.silu
    xs = []
    for name, v in (("deter", deter), ("stoch", stoch), ("action", action)):
        lin, norm = m.proj[name], m.proj_norm[name][0]
        xs.append(act(_rms(v @ lin.weight.T + lin.bias, norm.weight)))
    x = torch.cat(xs, -1)[..., None, :].repeat_interleave(g, -2)
    x = group2flat(torch.cat([flat2group(deter), x], -1))
    for linear, norm in m.dyn:
        x = group2flat(torch.einsum("...ki,kio->...ko", flat2group(x), linear.weight)) + linear.bias
        x = act(_rms(x, norm[0].weight))
    x = group2flat(torch.einsum("...ki,kio->...ko", flat2group(x), m.gates.weight)) + m.gates.bias
    reset, cand, update = [group2flat(t) for t in torch.split(flat2group(x), x.shape[-1] // g // 3, -1)]
    reset = torch.sigmoid(reset)
    cand = torch.tanh(reset * cand)
    update = torch.sigmoid(update - 1)
    return update * cand + (1 - update) * deter


def _official_head(layers, x):
    for i in range(0, len(layers) - 1, 2):
        lin, norm = layers[i], layers[i + 1][0]
        x = F.silu(_rms(x @ lin.weight.T + lin.bias, norm.weight))
    return x @ layers[-1].weight.T + layers[-1].bias


def _rssm(seed=0, **kw):
    torch.manual_seed(seed)
    return RSSMV3(A, E, deter_dim=16, hidden_dim=6, num_vars=4, num_classes=5, blocks=4, **kw).double()


@pytest.mark.parametrize("dyn_layers", [1, 2])
def test_core_prior_and_posterior_are_the_code_s(dyn_layers):
    m = _rssm(dyn_layers=dyn_layers)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 16, generator=g, dtype=torch.float64)
    s = F.one_hot(torch.randint(5, (5, 4), generator=g), 5).double().flatten(-2)
    a = torch.randn(5, A, generator=g, dtype=torch.float64) * 3  # |a| > 1 gets normalized
    e = torch.randn(5, E, generator=g, dtype=torch.float64)
    h_next = _official_core(m, h, s, a)
    torch.testing.assert_close(m._deter_step(h, s, a), h_next)
    _, prior = m.img_step(h, s, a)
    logits = _official_head(list(m.prior_net), h_next).unflatten(-1, (4, 5))
    probs = 0.99 * torch.softmax(logits, -1) + 0.01 / 5  # unimix
    torch.testing.assert_close(prior["logits"], probs.log())
    _, post = m.filter_step(h, s, a, e)
    logits = _official_head(list(m.post_net), torch.cat([h_next, e], -1)).unflatten(-1, (4, 5))
    torch.testing.assert_close(post["logits"], (0.99 * torch.softmax(logits, -1) + 0.01 / 5).log())
    assert len(m.prior_net) == 2 * 2 + 1 and len(m.post_net) == 2 * 1 + 1  # imglayers 2, obslayers 1


def test_observe_equals_the_step_by_step_filter():
    m = _rssm()
    g = torch.Generator().manual_seed(2)
    B, T = 3, 6
    embed = torch.randn(B, T, E, generator=g, dtype=torch.float64)
    action = torch.randn(B, T, A, generator=g, dtype=torch.float64)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[1, 3] = True
    torch.manual_seed(7)
    out = m.observe(embed, action, is_init, sample=False)
    h, s = m.initial_state((B,), dtype=torch.float64)
    for t in range(T):
        keep = (~is_init[:, t]).double()
        prev = action[:, t - 1] if t else torch.zeros_like(action[:, 0])
        h, prior, post = m.obs_step(h * keep, s * keep, prev * keep, embed[:, t])
        s = m.sample_state(post, sample=False)
        torch.testing.assert_close(out["deter"][:, t], h)
        torch.testing.assert_close(out["post", "logits"][:, t], post["logits"])
        torch.testing.assert_close(out["prior", "logits"][:, t], prior["logits"])


def test_block_linear_is_block_diagonal_and_initialized_trunc_normal_in():
    torch.manual_seed(0)
    layer = BlockLinear(4000, 800, 8)
    w = layer.weight
    assert w.shape == (8, 500, 100) and float(layer.bias.abs().max()) == 0
    std = 1.1368 / math.sqrt(4000)
    assert float(w.abs().max()) <= 2 * std + 1e-7
    assert float(w.std()) == pytest.approx(std * 0.8796, rel=0.02)  # the std of N(0,1) truncated to ±2
    x = torch.zeros(2, 4000, requires_grad=True)
    layer(x)[:, :100].sum().backward()  # the first output block reads only the first input block
    assert x.grad[:, 500:].abs().sum() == 0 and x.grad[:, :500].abs().sum() > 0


def test_drops_into_imagination_and_the_actor():
    m = _rssm().float()
    actor = make_dreamer_actor(m, A, discrete=True, units=8, layers=1)
    h, s = m.initial_state((4,))
    from tensordict import TensorDict
    traj = RSSMImagine(m).rollout(TensorDict({"deter": h, "stoch": s}, [4]), actor, 3)
    assert traj["next", "deter"].shape == (4, 3, 16) and traj["next", "stoch"].shape == (4, 3, 20)


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="`deter_dim` \\(10\\) must be divisible by `blocks` \\(4\\)"):
        RSSMV3(A, E, deter_dim=10, blocks=4)
