"""DreamerV3ActorCriticLoss under the 2023 release's switches (danijar/dreamerv3 at 423291a, ``agent.py``
``ImagActorCritic.loss`` and ``VFunction.score``/``loss``, ``jaxutils.DiscDist``), written out line by line:
symlog-space bins, the continue head's mode times ``1 − 1/333``, and dynamics backpropagation."""
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from test_dreamer_v3_loss import BINS, build, starts, updates
from torchrl.objectives import two_hot_encode

from latentrl.modules import RSSMImagine, make_dreamer_actor
from latentrl.modules.world_model import make_latent_head
from latentrl.objectives import DreamerV3ActorCriticLoss
from latentrl.objectives.two_hot import two_hot_bins, two_hot_loss, two_hot_value

GAMMA = 1 - 1 / 333
V1 = dict(bins="symlog", continuation="mode", discount=GAMMA, replay_scale=0.0)


def symlog(x):
    return np.sign(x) * np.log1p(np.abs(x))


def symexp(x):
    return np.sign(x) * np.expm1(np.abs(x))


def test_symlog_bins_are_the_2023_disc_dist():
    bins = two_hot_bins(BINS, "symlog").double()
    np.testing.assert_allclose(bins.numpy(), np.linspace(-20, 20, BINS), atol=1e-6)
    assert bins[BINS // 2] == 0.0 and torch.equal(bins, -bins.flip(0))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, BINS, generator=g, dtype=torch.float64)
    probs = torch.softmax(logits, -1).numpy()
    np.testing.assert_allclose(two_hot_value(logits, bins, "symlog").numpy(),
                               symexp((probs * bins.numpy()).sum(-1)), rtol=1e-10)
    # DiscDist.log_prob: two-hot of symlog(x) between its neighbouring bins
    x = np.array([0.0, 0.37, -4.2, 150.0, 1e-3, -2e4])
    lin = bins.numpy()
    expected = []
    for xi, lp in zip(symlog(x), torch.log_softmax(logits, -1).numpy()):
        below = (lin <= xi).sum() - 1
        above = BINS - (lin > xi).sum()
        if below == above:
            target = np.eye(BINS)[below]
        else:
            wb = abs(lin[above] - xi) / (abs(lin[below] - xi) + abs(lin[above] - xi))
            target = wb * np.eye(BINS)[below] + (1 - wb) * np.eye(BINS)[above]
        expected.append(-(target * lp).sum())
    np.testing.assert_allclose(two_hot_loss(logits, torch.from_numpy(x), bins, "symlog").numpy(), expected, rtol=1e-8)
    # the two layouts are different heads: the same logits predict different values
    other = two_hot_value(logits, two_hot_bins(BINS, "symexp").double(), "symexp")
    assert not torch.allclose(other, two_hot_value(logits, bins, "symlog"))
    with pytest.raises(ValueError, match="`bins` must be one of \\['symexp', 'symlog'\\]"):
        two_hot_bins(BINS, "linear")


def _score(rew, cont, val, lam=0.95):
    """VFunction.score: ``disc = cont[1:] * (1 − 1/horizon)``, the λ-return loop as written."""
    disc = cont[:, 1:] * GAMMA
    vals = [val[:, -1]]
    interm = rew[:, 1:] + disc * val[:, 1:] * (1 - lam)
    for t in reversed(range(disc.shape[1])):
        vals.append(interm[:, t] + disc[:, t] * lam * vals[-1])
    return np.stack(list(reversed(vals))[:-1], 1)


def test_matches_the_2023_imag_actor_critic_over_updates():
    loss, (_, actor, value, reward, cont) = build(**V1)
    lo = hi = 0.0
    saw_end = False
    for td, out, bins, heads in updates(loss, actor, reward, cont):
        rew = two_hot_value(heads["reward_logits"], bins, "symlog").numpy()
        con = (heads["continue_logit"] > 0).double().numpy()
        con[:, 0] = 1.0  # first_cont = 1 − is_terminal of a replayed (never terminal) state
        logits = heads["value_logits"]
        val = two_hot_value(logits, bins, "symlog").numpy()
        slowval = two_hot_value(heads["slow_logits"], bins, "symlog").numpy()
        logpi, ent = heads["logpi"], heads["entropy"]
        saw_end |= bool((con == 0).any())
        weight = np.cumprod(GAMMA * con, 1) / GAMMA
        ret = _score(rew, con, val)
        lo = 0.99 * lo + 0.01 * np.percentile(ret, 5)
        hi = 0.99 * hi + 0.01 * np.percentile(ret, 95)
        adv = (ret - val[:, :-1]) / max(1.0, hi - lo)
        policy = (-logpi * adv - 3e-4 * ent) * weight[:, :-1]
        log_softmax = torch.log_softmax(logits[:, :-1], -1).numpy()

        def log_prob(target):  # DiscDist.log_prob
            return (two_hot_encode(torch.from_numpy(symlog(target)), bins).numpy() * log_softmax).sum(-1)

        critic = (-log_prob(ret) - 1.0 * log_prob(slowval[:, :-1])) * weight[:, :-1]
        np.testing.assert_allclose(td["imagination", "lambda_target"].reshape(-1, 4).numpy(), ret, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(td["imagination", "weight"].reshape(-1, 4).numpy(), weight[:, :-1], rtol=1e-6)
        assert out["loss_actor"].item() == pytest.approx(policy.mean(), rel=1e-4, abs=1e-6)
        assert out["loss_critic"].item() == pytest.approx(critic.mean(), rel=1e-4)
        assert out["loss_critic_replay"].item() == 0.0
    assert saw_end, "the continue head's mode never ended an imagined trajectory: the test would not see it"


def build_continuous(seed=0, **kwargs):
    """:func:`build` with a continuous actor and the heads scaled so rewards and values vary over states."""
    _, (wm, _, value, reward, cont) = build(seed)
    torch.manual_seed(seed)
    actor = make_dreamer_actor(wm.rssm, wm.rssm.action_dim, discrete=False, units=8, layers=1)
    loss = DreamerV3ActorCriticLoss(actor, value, RSSMImagine(wm.rssm), reward, cont, horizon=4, **{**V1, **kwargs})
    return loss, (wm, actor, value, reward, cont)


def test_backprop_sends_the_actor_loss_to_the_actor_only():
    loss, (wm, actor, value, reward, cont) = build_continuous(actor_grad="backprop")
    out = loss(starts())
    params = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    others = list(loss.value_network_params.values(True, True)) + params(wm) + params(reward) + params(cont)
    grads = torch.autograd.grad(out["loss_actor"], params(actor) + others, allow_unused=True)
    n = len(params(actor))
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:n])
    assert all(g is None or g.abs().sum() == 0 for g in grads[n:])
    # the critic's loss still reaches the critic only (it reads the states without their gradient)
    critic_params = list(loss.value_network_params.values(True, True))
    grads = torch.autograd.grad(out["loss_critic"], critic_params + params(actor), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads[:len(critic_params)])
    assert all(g is None for g in grads[len(critic_params):])


@pytest.mark.parametrize("grad", ["backprop", "reinforce"])
def test_a_small_actor_step_on_the_actor_loss_raises_the_same_noise_s_imagined_return(grad):
    """With the imagination's noise fixed (same seed), the actor loss is a function of the actor's
    parameters; for dynamics backprop (no entropy) its value is ``−mean(w (R − v) / S)`` (checked), so
    a small step along its gradient must raise the imagined advantage: the gradient is the return's,
    through the imagined rewards, values and states."""
    loss, (_, actor, *_) = build_continuous(actor_grad=grad, entropy_coef=0.0)
    loss.eval()  # keep the return scale fixed between the calls
    td = starts(B=4, T=3)

    def actor_loss():
        torch.manual_seed(123)
        batch = td.clone()
        out = loss(batch)
        imag = batch["imagination"]
        objective = (imag["weight"] * (imag["lambda_target"] - imag["state_value"])).mean() / out["return_scale"]
        if grad == "backprop":  # the loss is the negated normalized advantage itself, not a surrogate of it
            assert out["loss_actor"].item() == pytest.approx(-objective.item(), rel=1e-5)
        return out["loss_actor"]

    before = actor_loss()
    if grad == "reinforce":  # its surrogate's gradient is not the return's: only check it is a different one
        g_r = torch.autograd.grad(before, list(actor.parameters()))
        loss.actor_grad = "backprop"
        g_b = torch.autograd.grad(actor_loss(), list(actor.parameters()))
        assert any(not torch.allclose(a, b) for a, b in zip(g_r, g_b))
        return
    grads = torch.autograd.grad(before, list(actor.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(actor.parameters(), grads):
            p.sub_(1e-3 * g / norm)
    after = actor_loss()
    assert after.item() < before.item() - 1e-4 * norm.item()


def test_bad_switches_are_named():
    loss, (wm, actor, value, reward, cont) = build()
    for kwargs, match in (({"continuation": "sample"}, "`continuation` must be one of"),
                          ({"actor_grad": "dynamics"}, "`actor_grad` must be one of"),
                          ({"bins": "raw"}, "`bins` must be one of"),
                          ({"discount": 0.0}, "`discount`")):
        with pytest.raises(ValueError, match=match):
            DreamerV3ActorCriticLoss(actor, value, RSSMImagine(wm.rssm), reward, cont, **kwargs)


def test_world_model_loss_reward_head_in_symlog_bins():
    from latentrl.modules import make_world_model
    from latentrl.objectives import WorldModelLoss

    torch.manual_seed(0)
    wm = make_world_model([4], 2, latent="categorical", deter_dim=8, hidden_dim=8, num_vars=2, num_classes=3,
                          units=8, layers=1, embed_dim=8)
    wm.reward_model = TensorDictModule(make_latent_head(wm.rssm, BINS, 8, 1), ["deter", "stoch"], ["reward_logits"])
    loss = WorldModelLoss(wm, "dreamer_v3", reward_loss="symlog_two_hot")
    B, T = 2, 5
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    batch = TensorDict({"observation": torch.randn(B, T, 4), "action": torch.randn(B, T, 2), "is_init": flags.clone(),
                        "next": {"observation": torch.randn(B, T, 4), "reward": 30 * torch.randn(B, T, 1),
                                 "terminated": flags}}, [B, T])
    seq_logits = None

    def grab(module, inputs, output):
        nonlocal seq_logits
        seq_logits = output

    handle = wm.reward_model.module.register_forward_hook(grab)
    out = loss(batch)
    handle.remove()
    bins = two_hot_bins(BINS, "symlog")
    expected = two_hot_loss(seq_logits[:, 1:], batch["next", "reward"][..., 0], bins, "symlog").mean()
    assert out["loss_model_reward"].item() == pytest.approx(expected.item(), rel=1e-5)
