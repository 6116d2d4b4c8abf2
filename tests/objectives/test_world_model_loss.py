"""WorldModelLoss (PlaNet / DreamerV2 / DreamerV3 presets) against hand-computed values."""
import math

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from latentrl.modules.world_model import make_world_model
from latentrl.objectives.world_model import WorldModelLoss

OBS, ACT = 5, 2
DETER, STOCH, NV, NC = 16, 4, 4, 4

PRESETS = {
    "planet": dict(latent="gaussian", unimix=0.0),
    "dreamer_v2": dict(latent="categorical", unimix=0.0),
    "dreamer_v3": dict(latent="categorical", unimix=0.01, reward_bins=255, symlog_inputs=True),
}


def tiny_world_model(latent="categorical", unimix=0.0, predict_discount=False, reward_bins=None, symlog_inputs=False):
    return make_world_model(
        [OBS], ACT, latent=latent, deter_dim=DETER, hidden_dim=16, stoch_dim=STOCH, num_vars=NV,
        num_classes=NC, unimix=unimix, units=16, layers=1, embed_dim=16, predict_discount=predict_discount,
        reward_bins=reward_bins, symlog_inputs=symlog_inputs,
    )


def make_batch(B=2, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    return TensorDict(
        {
            "observation": torch.randn(B, T, OBS, generator=g),
            "action": F.one_hot(torch.randint(ACT, (B, T), generator=g), ACT).float(),
            "is_init": is_init,
            "next": {
                "observation": torch.randn(B, T, OBS, generator=g),
                "reward": torch.randn(B, T, 1, generator=g),
                "terminated": torch.zeros(B, T, 1, dtype=torch.bool),
            },
        },
        batch_size=[B, T],
    )


class Const(nn.Module):
    """Outputs ``value`` of shape ``[*, out]`` for any (deter, stoch) (keeps a dependence on it for autograd)."""

    def __init__(self, value=0.0, out=1):
        super().__init__()
        self.value, self.out = float(value), out
        self.seen = None

    def forward(self, *parts):
        feature = torch.cat(parts, -1)
        self.seen = feature.detach().clone()
        return torch.full((*feature.shape[:-1], self.out), self.value) + 0.0 * feature[..., :1]


def keyed(module, out_key):
    """A head swapped in by keys: reads the latent state, writes ``out_key``."""
    return TensorDictModule(module, in_keys=["deter", "stoch"], out_keys=[out_key])


def _grad_nonzero(module):
    grads = [p.grad for p in module.parameters()]
    return any(g is not None and g.abs().sum() > 0 for g in grads)


# ----------------------------------------------------------------- forward
@pytest.mark.parametrize("preset", list(PRESETS))
def test_forward_outputs_and_gradients(preset):
    torch.manual_seed(0)
    wm = tiny_world_model(**PRESETS[preset], predict_discount=True)
    loss = WorldModelLoss(wm, kl=preset)
    B, T = 2, 4
    td = make_batch(B, T)
    out = loss(td)
    for key in ("loss_model_kl", "loss_model_reco", "loss_model_reward", "loss_model_discount",
                "kl", "reco_nll", "reward_nll", "prior_entropy", "post_entropy"):
        assert key in out.keys(), key
    loss_keys = [k for k in out.keys() if k.startswith("loss_")]
    assert sorted(loss_keys) == sorted(k for k in loss.out_keys if k.startswith("loss_"))
    for k in loss_keys:
        assert out[k].shape == torch.Size([]) and torch.isfinite(out[k]), k
    stoch_flat = STOCH if preset == "planet" else NV * NC
    assert td["deter"].shape == (B, T, DETER)
    assert td["stoch"].shape == (B, T, stoch_flat)
    if preset != "planet":  # one-hot samples: each categorical sums to 1
        torch.testing.assert_close(td["stoch"].detach().unflatten(-1, (NV, NC)).sum(-1), torch.ones(B, T, NV))
    sum(out[k] for k in loss_keys).backward()
    for name in ("encoder", "rssm", "decoder", "reward_model", "discount_model"):
        assert _grad_nonzero(getattr(wm, name)), name
    # the deterministic path receives gradient as well
    assert _grad_nonzero(wm.rssm.gru)


def test_no_discount_head_gives_no_discount_loss():
    torch.manual_seed(0)
    wm = tiny_world_model("categorical", predict_discount=False)
    out = WorldModelLoss(wm, kl="dreamer_v2")(make_batch())
    assert "loss_model_discount" not in out.keys()
    assert "loss_model_kl" in out.keys()


# ------------------------------------------------------------------- KL terms
def _gauss_kl(mq, sq, mp, sp):
    """KL(N(mq, sq) || N(mp, sp)) summed over the last dim, closed form."""
    return (torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)


def _cat_kl(q_probs, p_probs):
    """KL between vectors of categoricals given their probabilities, summed over [vars, classes]."""
    return (q_probs * (q_probs.log() - p_probs.log())).sum((-1, -2))


def test_kl_term_planet_free_nats_by_hand():
    torch.manual_seed(0)
    loss = WorldModelLoss(tiny_world_model("gaussian"), kl="planet")
    B, T = 3, 4
    mq = torch.randn(B, T, STOCH, dtype=torch.float64, requires_grad=True)
    sq = (torch.rand(B, T, STOCH, dtype=torch.float64) + 0.5).requires_grad_()
    mp = torch.zeros(B, T, STOCH, dtype=torch.float64, requires_grad=True)
    sp = torch.ones(B, T, STOCH, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        mq[0, 0] = 0.0  # small KL, below the 3 free nats
        sq[0, 0] = 1.0
        mq[1, 1] = 4.0  # far above
    kl = _gauss_kl(mq, sq, mp, sp).detach()
    assert kl[0, 0] < 3.0 < kl[1, 1]
    value, diag = loss.kl_term({"mean": mq, "std": sq}, {"mean": mp, "std": sp})
    expected = kl.clamp_min(3.0).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-10)
    torch.testing.assert_close(diag, kl)  # the diagnostic is the unclamped KL per step
    value.backward()
    assert (mq.grad[0, 0] == 0).all() and (mp.grad[0, 0] == 0).all()  # clamped: no gradient
    assert (mq.grad[1, 1] != 0).all() and (mp.grad[1, 1] != 0).all()
    # gradient of the unclamped elements: d/dmq mean(KL) = (mq - mp) / sp^2 / (B T)
    torch.testing.assert_close(mq.grad[1, 1], (mq[1, 1] - mp[1, 1]).detach() / (B * T))


def test_kl_term_planet_scale_and_free_nats_override():
    loss = WorldModelLoss(tiny_world_model("gaussian"), kl="planet", kl_scale=2.0, free_nats=0.0)
    torch.manual_seed(1)
    mq, mp = torch.randn(2, 3, STOCH), torch.randn(2, 3, STOCH)
    sq, sp = torch.rand(2, 3, STOCH) + 0.5, torch.rand(2, 3, STOCH) + 0.5
    value, _ = loss.kl_term({"mean": mq, "std": sq}, {"mean": mp, "std": sp})
    assert value.item() == pytest.approx(2.0 * _gauss_kl(mq, sq, mp, sp).mean().item(), rel=1e-5)


def test_kl_term_dreamer_v2_value_and_balanced_gradients():
    torch.manual_seed(0)
    loss = WorldModelLoss(tiny_world_model("categorical"), kl="dreamer_v2")
    B, T = 2, 3
    q = torch.randn(B, T, NV, NC, dtype=torch.float64, requires_grad=True)
    p = torch.randn(B, T, NV, NC, dtype=torch.float64, requires_grad=True)
    plain = _cat_kl(torch.softmax(q, -1), torch.softmax(p, -1)).mean()
    g_q, g_p = torch.autograd.grad(plain, (q, p))
    value, diag = loss.kl_term({"logits": q}, {"logits": p})
    assert value.item() == pytest.approx(0.1 * plain.item(), rel=1e-10)
    torch.testing.assert_close(diag.mean(), plain.detach())
    b_q, b_p = torch.autograd.grad(value, (q, p))
    torch.testing.assert_close(b_p, 0.1 * 0.8 * g_p)
    torch.testing.assert_close(b_q, 0.1 * 0.2 * g_q)


def test_kl_term_dreamer_v3_unimix_free_bits_on_the_sum():
    torch.manual_seed(0)
    loss = WorldModelLoss(tiny_world_model("categorical", unimix=0.01), kl="dreamer_v3")
    B, T = 2, 3
    q = (4.0 * torch.randn(B, T, NV, NC, dtype=torch.float64)).requires_grad_()
    p = (4.0 * torch.randn(B, T, NV, NC, dtype=torch.float64)).requires_grad_()
    with torch.no_grad():
        # step (0, 0): posterior == prior, KL 0 < 1 (clamped, no gradient)
        p[0, 0] = q[0, 0]
        # step (0, 1): every latent's KL is ~0.3 < 1 but their sum is > 1 (free bits on the sum)
        base = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
        q[0, 1] = base
        p[0, 1] = torch.tensor([1.6, 0.0, 0.0, 0.0], dtype=torch.float64)

    def mix(logits):
        return 0.99 * torch.softmax(logits, -1) + 0.01 / NC

    per_var = (mix(q) * (mix(q).log() - mix(p).log())).sum(-1).detach()
    assert (per_var[0, 1] < 1).all() and per_var[0, 1].sum() > 1
    kl = _cat_kl(mix(q), mix(p))  # [B, T], summed over the latents before the clamp
    expected = 1.0 * kl.clamp_min(1.0).mean() + 0.1 * kl.clamp_min(1.0).mean()
    # the RSSM's stats carry its unimix: the logits of the mixed distribution
    value, _ = loss.kl_term({"logits": mix(q).log()}, {"logits": mix(p).log()})
    assert value.item() == pytest.approx(expected.item(), rel=1e-10)
    # without unimix, or with the clamp per latent, the value would differ
    no_mix = _cat_kl(torch.softmax(q, -1), torch.softmax(p, -1)).clamp_min(1.0).mean() * 1.1
    per_latent = (mix(q) * (mix(q).log() - mix(p).log())).sum(-1).clamp_min(1.0).sum(-1).mean() * 1.1
    assert abs(no_mix.item() - expected.item()) > 1e-3
    assert abs(per_latent.item() - expected.item()) > 1e-3
    # gradients: dyn (scale 1) reaches the prior only, rep (scale 0.1) the posterior only
    clamped = kl.clamp_min(1.0).mean()
    g_q, g_p = torch.autograd.grad(clamped, (q, p))
    b_q, b_p = torch.autograd.grad(value, (q, p))
    torch.testing.assert_close(b_p, 1.0 * g_p)
    torch.testing.assert_close(b_q, 0.1 * g_q)
    assert (b_q[0, 0] == 0).all() and (b_p[0, 0] == 0).all()
    assert b_p[0, 1].abs().sum() > 0


# ------------------------------------------------------------- reward target
def test_reward_nll_on_valid_transitions_only():
    torch.manual_seed(0)
    wm = tiny_world_model("categorical")
    head = Const(0.0)
    wm.reward_model = keyed(head, "predicted_reward")
    loss = WorldModelLoss(wm, kl="dreamer_v2")
    B, T = 2, 5
    td = make_batch(B, T, seed=3)
    r = td["next", "reward"].clone()
    # batch 1: a new episode starts at t=3, so transition 2 -> 3 is not observed
    td["is_init"][1, 3] = True
    r[1, 2] = 1e6
    r[:, -1] = 7.0  # the last transition (to ("next", "observation")[:, -1]) counts
    td["next", "reward"] = r
    out = loss(td)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 2] = False
    expected = 0.5 * r[..., 0][valid].pow(2).mean()
    assert out["reward_nll"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["loss_model_reward"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() > 0.5 * 7.0**2 * (2 / valid.sum().item()) * 0.99  # the 7s are in it
    # the reward head runs on the T + 1 filtered states; the loss reads it at the state reached by
    # each transition, h_{t+1}
    seen = head.seen
    assert seen.shape == (B, T + 1, DETER + NV * NC)
    torch.testing.assert_close(seen[:, 1:T, :DETER], td["deter"][:, 1:].detach())


def test_reward_scale():
    torch.manual_seed(0)
    wm = tiny_world_model("categorical")
    wm.reward_model = keyed(Const(1.0), "predicted_reward")
    td = make_batch(2, 4, seed=5)
    out = WorldModelLoss(wm, kl="dreamer_v2", reward_scale=3.0)(td)
    r = td["next", "reward"][..., 0]
    expected = 0.5 * (r - 1.0).pow(2).mean()
    assert out["reward_nll"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["loss_model_reward"].item() == pytest.approx(3.0 * expected.item(), rel=1e-5)


# ----------------------------------------------------------- discount target
def _bce(logit, target):
    prob = torch.sigmoid(torch.tensor(logit, dtype=torch.float64))
    return F.binary_cross_entropy(prob.expand_as(target), target, reduction="none")


@pytest.mark.parametrize("preset,gamma", [("dreamer_v2", 0.995), ("planet", 0.995), ("dreamer_v3", 1 - 1 / 333)])
def test_discount_bce_by_hand(preset, gamma):
    torch.manual_seed(0)
    wm = tiny_world_model(**PRESETS[preset], predict_discount=True)
    wm.discount_model = keyed(Const(0.3), "discount_logit")
    loss = WorldModelLoss(wm, kl=preset, discount_scale=2.0)
    B, T = 2, 4
    td = make_batch(B, T, seed=1)
    td["next", "terminated"][0, -1] = True  # episode 0 ends at the last transition: target 0
    out = loss(td)
    target = gamma * (1.0 - td["next", "terminated"][..., 0].double())
    assert target[0, -1] == 0 and target[1, -1] == gamma
    expected = _bce(0.3, target).mean()
    assert out["loss_model_discount"].item() == pytest.approx(2.0 * expected.item(), rel=1e-5)


def test_discount_excludes_transitions_across_a_reset():
    torch.manual_seed(0)
    wm = tiny_world_model("categorical", predict_discount=True)
    wm.discount_model = keyed(Const(-1.0), "discount_logit")
    B, T = 2, 4
    td = make_batch(B, T, seed=2)
    td["is_init"][1, 2] = True  # transition (1, 1) leads into a reset: not observed
    td["next", "terminated"][1, 1] = True
    out = WorldModelLoss(wm, kl="dreamer_v2")(td)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 1] = False
    target = 0.995 * (1.0 - td["next", "terminated"][..., 0].double())
    expected = _bce(-1.0, target)[valid].mean()
    assert out["loss_model_discount"].item() == pytest.approx(expected.item(), rel=1e-5)


# ----------------------------------------------------------- reconstruction
def test_reco_nll_over_t_plus_one_observations():
    torch.manual_seed(0)
    wm = tiny_world_model("gaussian")
    head = Const(0.0, out=OBS)
    wm.decoder = keyed(head, "reco_observation")
    B, T = 2, 3
    td = make_batch(B, T, seed=4)
    td["next", "observation"][:, -1] = 3.0  # the appended last observation
    out = WorldModelLoss(wm, kl="planet", reco_scale=0.5)(td)
    obs = torch.cat([td["observation"], td["next", "observation"][:, -1:]], 1)
    assert obs.shape == (B, T + 1, OBS)
    expected = (0.5 * obs.pow(2).sum(-1)).mean()
    assert out["reco_nll"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["loss_model_reco"].item() == pytest.approx(0.5 * expected.item(), rel=1e-5)
    assert head.seen.shape == (B, T + 1, DETER + STOCH)


# ------------------------------------------------------------------ bad input
def test_unknown_preset():
    with pytest.raises(ValueError, match="`kl`"):
        WorldModelLoss(tiny_world_model("categorical"), kl="dreamer_v4")


@pytest.mark.parametrize(
    "preset,kwargs,name",
    [
        ("planet", dict(free_bits=1.0), "free_bits"),
        ("planet", dict(kl_balance=0.8), "kl_balance"),
        ("dreamer_v2", dict(rep_scale=0.1), "rep_scale"),
        ("dreamer_v3", dict(kl_scale=0.1), "kl_scale"),
        ("dreamer_v3", dict(free_nats=1.0), "free_nats"),
    ],
)
def test_parameter_of_another_preset(preset, kwargs, name):
    wm = tiny_world_model(**PRESETS[preset])
    with pytest.raises(ValueError, match=name):
        WorldModelLoss(wm, kl=preset, **kwargs)


def test_dreamer_v3_needs_categorical_latent():
    loss = WorldModelLoss(tiny_world_model("gaussian", reward_bins=255), kl="dreamer_v3")
    with pytest.raises(ValueError, match="categorical"):
        loss(make_batch())


def test_dreamer_v3_kl_reads_the_rssm_unimix_from_its_logits():
    """The RSSM writes the logits of the distribution it samples from: with unimix, log of the mixed probs."""
    raw = torch.randn(2, NV * NC)
    mixed = torch.softmax(tiny_world_model("categorical", unimix=0.01).rssm._stats(raw)["logits"], -1)
    expected = 0.99 * torch.softmax(raw.unflatten(-1, (NV, NC)), -1) + 0.01 / NC
    torch.testing.assert_close(mixed, expected)
    assert mixed.min() >= 0.01 / NC - 1e-7
    plain = torch.softmax(tiny_world_model("categorical", unimix=0.0).rssm._stats(raw)["logits"], -1)
    torch.testing.assert_close(plain, torch.softmax(raw.unflatten(-1, (NV, NC)), -1))


def test_missing_latent_stats_name_the_keys():
    loss = WorldModelLoss(tiny_world_model("categorical"), kl="dreamer_v2")
    with pytest.raises(KeyError, match="logits"):
        loss.kl_term({"mu": torch.zeros(1)}, {"mu": torch.zeros(1)})


def test_batch_without_time_dim():
    loss = WorldModelLoss(tiny_world_model("categorical"), kl="dreamer_v2")
    td = make_batch(2, 4)[:, 0]
    assert td.batch_size == (2,)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        loss(td)


@pytest.mark.parametrize("kwargs", [dict(kl_balance=1.5), dict(discount=1.2), dict(free_nats=-1.0)])
def test_out_of_range_parameters(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        WorldModelLoss(tiny_world_model("categorical"), kl="dreamer_v2", **kwargs)


def test_presets_use_paper_values():
    assert math.isclose(WorldModelLoss(tiny_world_model("gaussian"), kl="planet").params["free_nats"], 3.0)
    v2 = WorldModelLoss(tiny_world_model("categorical"), kl="dreamer_v2").params
    assert (v2["kl_scale"], v2["kl_balance"], v2["free_nats"], v2["discount"]) == (0.1, 0.8, 0.0, 0.995)
    v3 = WorldModelLoss(tiny_world_model("categorical", unimix=0.01), kl="dreamer_v3").params
    assert (v3["dyn_scale"], v3["rep_scale"], v3["free_bits"], v3["discount"]) == (1.0, 0.1, 1.0, 1 - 1 / 333)


class FixedLogits(nn.Module):
    """The same logits for every state (keeps a dependence on the state for autograd)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, *parts):
        feature = torch.cat(parts, -1)
        return self.logits.expand(*feature.shape[:-1], -1) + 0.0 * feature[..., :1]


def test_dreamer_v3_two_hot_reward_and_symlog_reconstruction_by_hand():
    """The code's losses: rew = two-hot CE over 255 symexp bins, vector reconstruction = sum of squared
    errors to symlog(o) (no 1/2), averaged over the steps (rewards over the observed transitions)."""
    from torchrl.modules.functional import symlog
    from torchrl.objectives import two_hot_cross_entropy
    torch.manual_seed(0)
    wm = tiny_world_model(**PRESETS["dreamer_v3"])
    assert all(float(p.abs().max()) == 0 for p in list(wm.reward_model.parameters())[-2:])  # zero-initialized
    logits = torch.randn(255)
    wm.decoder = keyed(Const(0.25, OBS), "reco_observation")
    wm.reward_model = keyed(FixedLogits(logits), "reward_logits")
    loss = WorldModelLoss(wm, kl="dreamer_v3")
    assert (loss.reco_loss, loss.reward_loss) == ("symlog_mse", "two_hot")
    td = make_batch(2, 4, seed=3)
    td["observation"] = td["observation"] * 50  # large enough that symlog matters
    td["next", "reward"] = td["next", "reward"] * 30
    td["is_init"][1, 2] = True  # transition 1 -> 2 of sequence 1 crosses a reset: not predicted
    out = loss(td)
    obs = torch.cat([td["observation"], td["next", "observation"][:, -1:]], 1)
    assert out["loss_model_reco"].item() == pytest.approx((0.25 - symlog(obs)).pow(2).sum(-1).mean().item(), rel=1e-5)
    ce = two_hot_cross_entropy(logits.expand(2, 4, 255), td["next", "reward"][..., 0], loss.bins)
    valid = torch.ones(2, 4, dtype=torch.bool)
    valid[1, 1] = False
    assert out["loss_model_reward"].item() == pytest.approx(ce[valid].mean().item(), rel=1e-5)


def test_head_loss_choices_are_checked():
    wm = tiny_world_model()
    with pytest.raises(ValueError, match="`reco_loss` must be one of"):
        WorldModelLoss(wm, kl="dreamer_v2", reco_loss="l1")
    with pytest.raises(ValueError, match="`reward_loss` must be one of"):
        WorldModelLoss(wm, kl="dreamer_v2", reward_loss="mse")
