"""TorchRL 0.14.1's DreamerV3 parts that latentrl reuses, each checked against the official definition
written out here (danijar/dreamerv3, 2025: ``embodied/jax/outs.py`` TwoHot, ``dreamerv3/agent.py`` and
``embodied/jax/utils.py`` Normalize, ``embodied/jax/opt.py`` clip_by_agc / scale_by_rms /
scale_by_momentum with a linear warm-up, ``embodied/core/when.py`` Ratio)."""
import math

import numpy as np
import pytest
import torch
from torchrl.modules import PercentileValueNorm, SymExpTwoHot
from torchrl.modules.functional import symexp, symlog
from torchrl.objectives import two_hot_cross_entropy, two_hot_decode, two_hot_encode
from torchrl.trainers.algorithms import DreamerV3Optimizer, DreamerV3UpdateRatio


def symexp_bins(dtype=torch.float32):
    return SymExpTwoHot(255).bins.to(dtype)


# ------------------------------------------------------------------ symlog
def test_symlog_symexp_are_the_paper_functions_and_inverse():
    x = torch.tensor([-1e6, -3.0, -1e-4, 0.0, 1e-4, 0.5, 7.0, 1e6], dtype=torch.float64)
    torch.testing.assert_close(symlog(x), torch.sign(x) * torch.log1p(x.abs()))
    torch.testing.assert_close(symexp(x.clamp(-30, 30)), torch.sign(x) * (torch.exp(x.clamp(-30, 30).abs()) - 1))
    torch.testing.assert_close(symexp(symlog(x)), x)


# ----------------------------------------------------------------- two-hot
def _official_bins(n=255):
    half = np.linspace(-20, 0, (n - 1) // 2 + 1, dtype=np.float64)
    half = np.sign(half) * (np.exp(np.abs(half)) - 1)
    return np.concatenate([half, -half[:-1][::-1]], 0)


def _official_two_hot(bins, target):
    """TwoHot.loss's target, as written in outs.py (below/above by counting, weights by distance)."""
    below = (bins <= target[..., None]).sum(-1) - 1
    above = len(bins) - (bins > target[..., None]).sum(-1)
    below, above = np.clip(below, 0, len(bins) - 1), np.clip(above, 0, len(bins) - 1)
    equal = below == above
    to_below = np.where(equal, 1, np.abs(bins[below] - target))
    to_above = np.where(equal, 1, np.abs(bins[above] - target))
    total = to_below + to_above
    out = np.zeros((*target.shape, len(bins)))
    np.put_along_axis(out, below[..., None], (to_above / total)[..., None], -1)
    np.add.at(out, (*np.indices(target.shape), above), to_below / total)  # below == above: weights sum to 1
    return out


def _official_pred(bins, logits):
    """TwoHot.pred's symmetric sum: the middle bin plus mirrored pairs summed from the centre outwards."""
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    m = (len(bins) - 1) // 2
    return (p[..., m] * bins[m]) + ((p[..., :m] * bins[:m])[..., ::-1] + p[..., m + 1:] * bins[m + 1:]).sum(-1)


def test_bins_are_the_official_255_symexp_bins_with_an_exact_zero_centre():
    bins = symexp_bins()
    assert bins.shape == (255,)
    np.testing.assert_allclose(bins.double().numpy(), _official_bins(), rtol=1e-6)
    assert bins[127].item() == 0.0
    assert torch.equal(bins, -bins.flip(0))  # exactly antisymmetric
    assert bool((bins[1:] > bins[:-1]).all())


@pytest.mark.parametrize("target", [0.0, 1e-7, -0.37, 3.2, -150.0, 1e4, 5e8, -5e8, 1e12])
def test_two_hot_encode_matches_the_official_target_and_decodes_back(target):
    bins = symexp_bins(dtype=torch.float64)
    x = torch.tensor([target], dtype=torch.float64)
    encoded = two_hot_encode(x, bins)
    np.testing.assert_allclose(encoded.numpy(), _official_two_hot(bins.numpy(), x.numpy()), atol=1e-12)
    assert encoded.sum().item() == pytest.approx(1.0) and (encoded > 0).sum() <= 2
    clipped = float(np.clip(target, bins[0].item(), bins[-1].item()))
    # the expectation of the encoding is the target (linear interpolation in raw value space)
    assert (encoded * bins).sum().item() == pytest.approx(clipped, rel=1e-9, abs=1e-12)


def test_two_hot_decode_is_the_symmetric_sum_and_zero_for_uniform_logits():
    bins = symexp_bins()
    assert two_hot_decode(torch.zeros(3, 255), bins).abs().max().item() == 0.0  # zero at initialization, exactly
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 255, generator=g, dtype=torch.float64) * 3
    np.testing.assert_allclose(two_hot_decode(logits, bins.double()).numpy(),
                               _official_pred(bins.double().numpy(), logits.numpy()), rtol=1e-10)


def test_two_hot_cross_entropy_is_minus_the_target_weighted_log_softmax():
    bins = symexp_bins(dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 255, generator=g, dtype=torch.float64)
    target = torch.tensor([0.0, 0.3, -12.0, 800.0, -3e5], dtype=torch.float64)
    log_softmax = logits - torch.logsumexp(logits, -1, keepdim=True)
    expected = -(torch.from_numpy(_official_two_hot(bins.numpy(), target.numpy())) * log_softmax).sum(-1)
    torch.testing.assert_close(two_hot_cross_entropy(logits, target, bins), expected)
    # zero-initialized output layer (all-zero logits): the loss is log(255) whatever the target
    torch.testing.assert_close(two_hot_cross_entropy(torch.zeros(5, 255, dtype=torch.float64), target, bins),
                               torch.full((5,), math.log(255), dtype=torch.float64))


# ------------------------------------------------- percentile return norm
def test_percentile_norm_is_the_official_retnorm():
    """retnorm: impl perc, rate 0.01, limit 1, perclo 5, perchi 95, debias False; the actor divides by the scale."""
    norm = PercentileValueNorm(shape=1, quantiles=(0.05, 0.95), rate=0.01, min_scale=1.0)
    lo = hi = 0.0
    g = np.random.default_rng(0)
    for step in range(40):
        ret = g.normal(0.0, 1.0 + 30.0 * (step > 20), size=(16, 15)).astype(np.float32)
        norm.update(torch.from_numpy(ret).reshape(-1, 1))
        lo = 0.99 * lo + 0.01 * np.percentile(ret, 5)
        hi = 0.99 * hi + 0.01 * np.percentile(ret, 95)
        scale = max(1.0, hi - lo)
        assert norm.scale().item() == pytest.approx(scale, rel=1e-5)
        adv = torch.tensor([2.0])
        assert norm.normalize(adv).item() == pytest.approx(2.0 / scale, rel=1e-5)  # not centred: (ret - v) / S
    assert norm.scale().item() > 1.0  # the large returns lifted the scale above its floor


def test_percentile_norm_floor_keeps_small_returns_unamplified():
    norm = PercentileValueNorm(shape=1, rate=1.0)
    norm.update(torch.linspace(0.0, 0.1, 101).unsqueeze(-1))
    assert norm.scale().item() == 1.0
    assert norm.normalize(torch.tensor([0.05])).item() == pytest.approx(0.05)


# ------------------------------------------------------- LaProp with AGC
def _official_step(params, grads, state, step, lr=4e-5, agc=0.3, pmin=1e-3, beta1=0.9, beta2=0.999, eps=1e-20,
                   warmup=1000):
    """clip_by_agc -> scale_by_rms (bias-corrected) -> scale_by_momentum (bias-corrected) -> -lr · warm-up."""
    out = []
    sched = lr * min(1.0, (step - 1) / warmup) if warmup else lr  # optax linear_schedule(0, lr, warmup) at count step-1
    for i, (p, u) in enumerate(zip(params, grads)):
        upper = agc * max(pmin, float(p.norm()))
        u = u * (1.0 / max(1.0, float(u.norm()) / upper))
        nu = state.setdefault(("nu", i), torch.zeros_like(p))
        mu = state.setdefault(("mu", i), torch.zeros_like(p))
        nu.mul_(beta2).add_((1 - beta2) * u * u)
        u = u / ((nu / (1 - beta2 ** step)).sqrt() + eps)
        mu.mul_(beta1).add_((1 - beta1) * u)
        out.append(p - sched * mu / (1 - beta1 ** step))
    return out


@pytest.mark.parametrize("warmup", [0, 3])
def test_dreamer_v3_optimizer_is_laprop_with_agc(warmup):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64)),
              torch.nn.Parameter(torch.full((3,), 1e-5, dtype=torch.float64))]  # tiny norm: the pmin floor clips
    ref = [p.detach().clone() for p in params]
    opt = DreamerV3Optimizer(params, lr=1e-2, warmup_steps=warmup)
    state = {}
    g = torch.Generator().manual_seed(1)
    for step in range(1, 7):
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) * (10.0 if step % 2 else 0.01) for p in params]
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
        ref = _official_step(ref, grads, state, step, lr=1e-2, warmup=warmup)
        for p, r in zip(params, ref):
            # TorchRL keeps the moments in float32 (documented): agreement to float32 round-off
            torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-12)
    if warmup:
        assert opt.param_groups[0]["step"] == 6


# ------------------------------------------------------------ train ratio
def _official_ratio(ratio):
    prev = None

    def call(step):
        nonlocal prev
        if ratio == 0:
            return 0
        if prev is None:
            prev = step
            return 1
        repeats = int((step - prev) * ratio)
        prev += repeats / ratio
        return repeats
    return call


def test_update_ratio_matches_when_ratio_and_resumes_without_a_burst():
    ratio = 32 / (16 * 64)  # train_ratio 32, batch 16 x 64: one update per 32 env steps
    ours, official = DreamerV3UpdateRatio(ratio), _official_ratio(ratio)
    steps = np.cumsum(np.random.default_rng(0).integers(1, 9, size=300))
    counts = [ours(int(s)) for s in steps[:150]]
    assert counts == [official(int(s)) for s in steps[:150]]
    saved = ours.state_dict()
    resumed = DreamerV3UpdateRatio(0.0)
    resumed.load_state_dict(saved)
    rest = [resumed(int(s)) for s in steps[150:]]
    assert rest == [official(int(s)) for s in steps[150:]]  # the remainder carried over: no owed burst
    assert sum(counts) + sum(rest) == 1 + int((steps[-1] - steps[0]) * ratio)
