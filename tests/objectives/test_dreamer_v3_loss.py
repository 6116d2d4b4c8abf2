"""DreamerV3ActorCriticLoss against the official ``imag_loss`` written out (danijar/dreamerv3 agent.py, with
``contdisc: True``, ``slowtar: False``, retnorm perc 5/95 decay 0.99 limit 1, valnorm and advnorm none),
its gradient routes, the slow-critic regularizer's direction, and its resumable state."""
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch.nn import functional as F
from torchrl.objectives import two_hot_decode

from latentrl.modules import RSSMImagine, make_dreamer_actor, make_world_model
from latentrl.modules.world_model import make_latent_head
from latentrl.objectives import DreamerV3ActorCriticLoss
from latentrl.objectives.dreamer_v3 import replay_lambda_return

A, NV, NC, DETER, BINS = 3, 2, 3, 8, 255


def build(seed=0, value_gain=4.0, **kwargs):
    torch.manual_seed(seed)
    wm = make_world_model([4], A, latent="categorical", deter_dim=DETER, hidden_dim=8, num_vars=NV, num_classes=NC,
                          unimix=0.01, units=8, layers=1, embed_dim=8)
    rssm = wm.rssm
    actor = make_dreamer_actor(rssm, A, discrete=True, units=8, layers=1)
    value = TensorDictModule(make_latent_head(rssm, BINS, 8, 1), ["deter", "stoch"], ["value_logits"])
    reward = TensorDictModule(make_latent_head(rssm, BINS, 8, 1), ["deter", "stoch"], ["reward_logits"])
    cont = TensorDictModule(make_latent_head(rssm, 1, 8, 1), ["deter", "stoch"], ["continue_logit"])
    with torch.no_grad():  # heads whose predictions vary over states, with continues in (0, 1)
        for head, gain in ((value, value_gain), (reward, 4.0), (cont, 11.0)):
            for p in head.parameters():
                p.mul_(gain)
    loss = DreamerV3ActorCriticLoss(actor, value, RSSMImagine(rssm), reward, cont, horizon=4, **kwargs)
    with torch.no_grad():  # a slow critic that differs from the online one
        for p in loss.target_value_network_params.values(True, True):
            p.add_(0.05 * torch.randn_like(p))
    return loss, (wm, actor, value, reward, cont)


def starts(B=2, T=3, seed=1):
    """Replayed posterior states [B, T] with their steps' rewards and flags (TorchRL's layout)."""
    g = torch.Generator().manual_seed(seed)
    stoch = F.one_hot(torch.randint(NC, (B, T, NV), generator=g), NC).float().flatten(-2)
    done = torch.zeros(B, T, 1, dtype=torch.bool)
    done[0, 1] = True  # sequence 0 terminates at step 1
    return TensorDict({"deter": torch.randn(B, T, DETER, generator=g), "stoch": stoch,
                       "next": {"reward": torch.randn(B, T, 1, generator=g), "done": done, "terminated": done.clone()}},
                      [B, T])


def _official_lambda_return(last, term, rew, val, boot, disc, lam):
    """agent.py lambda_return, line by line."""
    rets = [boot[:, -1]]
    live = (1 - term)[:, 1:] * disc
    cont = (1 - last)[:, 1:] * lam
    interm = rew[:, 1:] + (1 - cont) * live * boot[:, 1:]
    for t in reversed(range(live.shape[1])):
        rets.append(interm[:, t] + live[:, t] * cont[:, t] * rets[-1])
    return np.stack(list(reversed(rets))[:-1], 1)


def _states(td):
    traj = td["imagination"].reshape(-1, td["imagination"].shape[-1])
    last = traj["next"][:, -1:].select("deter", "stoch")
    return traj, torch.cat([traj.select("deter", "stoch"), last], 1)


@torch.no_grad()
def head_outputs(loss, actor, reward, cont, traj, states) -> dict:
    """The heads on the imagined states ``[N, H + 1]`` (float64): reward and value logits (online and slow),
    the continue logit, and the actor's log-probability and entropy of the imagined actions ``[N, H]``."""
    out = {"reward_logits": reward(states.clone())["reward_logits"].double(),
           "continue_logit": cont(states.clone())["continue_logit"].double()[..., 0]}
    for key, params in (("value_logits", loss.value_network_params), ("slow_logits", loss.target_value_network_params)):
        with params.to_module(loss.value_network):
            out[key] = loss.value_network(states.clone())["value_logits"].double()
    dist = actor.get_dist(traj.select("deter", "stoch"))
    out["logpi"] = dist.log_prob(traj["action"]).double().numpy()
    out["entropy"] = dist.entropy().double().numpy()
    return out


def updates(loss, actor, reward, cont, n: int = 3):
    """``n`` calls of ``loss`` on fresh replayed states: yields the batch, the output, the bins (float64) and
    :func:`head_outputs` on its imagination."""
    for update in range(n):
        td = starts(seed=update)
        out = loss(td)
        traj, states = _states(td)
        yield td, out, loss.bins.double(), head_outputs(loss, actor, reward, cont, traj, states)


def test_matches_the_official_imag_loss_over_updates():
    loss, (_, actor, value, reward, cont) = build()
    lo = hi = 0.0
    for td, out, bins, heads in updates(loss, actor, reward, cont):
        rew = two_hot_decode(heads["reward_logits"], bins).numpy()
        con = torch.sigmoid(heads["continue_logit"]).numpy()
        logits, slow_logits = heads["value_logits"], heads["slow_logits"]
        val, slowval = two_hot_decode(logits, bins).numpy(), two_hot_decode(slow_logits, bins).numpy()
        logpi, ent = heads["logpi"], heads["entropy"]
        weight = np.cumprod(1.0 * con, 1) / 1.0  # disc = 1 with contdisc
        ret = _official_lambda_return(np.zeros_like(con), 1 - con, rew, val, val, 1.0, 0.95)  # tarval = val
        lo = 0.99 * lo + 0.01 * np.percentile(ret, 5)
        hi = 0.99 * hi + 0.01 * np.percentile(ret, 95)
        adv = (ret - val[:, :-1]) / max(1.0, hi - lo)
        policy = weight[:, :-1] * -(logpi * adv + 3e-4 * ent)
        log_softmax = torch.log_softmax(logits[:, :-1], -1).numpy()

        def two_hot_ce(target):
            from torchrl.objectives import two_hot_encode
            return -(two_hot_encode(torch.from_numpy(target), bins).numpy() * log_softmax).sum(-1)

        value_loss = weight[:, :-1] * (two_hot_ce(ret) + 1.0 * two_hot_ce(slowval[:, :-1]))
        np.testing.assert_allclose(td["imagination", "lambda_target"].reshape(-1, 4).numpy(), ret, rtol=1e-4, atol=1e-5)
        assert out["loss_actor"].item() == pytest.approx(policy.mean(), rel=1e-4, abs=1e-6)
        assert out["loss_critic"].item() == pytest.approx(value_loss.mean(), rel=1e-4)
        assert out["return_scale"].item() == pytest.approx(max(1.0, hi - lo), rel=1e-5)


def test_gradients_reach_the_actor_and_critic_only():
    loss, (wm, actor, value, reward, cont) = build()
    out = loss(starts())
    params = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    critic_params = list(loss.value_network_params.values(True, True))
    grads = torch.autograd.grad(out["loss_actor"], params(actor) + critic_params + params(wm), allow_unused=True)
    n_actor = len(params(actor))
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:n_actor])
    assert all(g is None or g.abs().sum() == 0 for g in grads[n_actor:])
    grads = torch.autograd.grad(out["loss_critic"], critic_params + params(actor) + params(wm), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads[:len(critic_params)])
    assert all(g is None for g in grads[len(critic_params):])


def test_slow_critic_regularizer_pulls_the_critic_toward_the_slow_critic():
    td = starts()
    with_reg, _ = build(slow_reg=1.0, value_gain=1.0)  # values of order 1
    without, _ = build(slow_reg=0.0, value_gain=1.0)

    def distance(loss):
        _, states = _states(td)
        with torch.no_grad():
            with loss.value_network_params.to_module(loss.value_network):
                v = two_hot_decode(loss.value_network(states.clone())["value_logits"], loss.bins)
            with loss.target_value_network_params.to_module(loss.value_network):
                slow = two_hot_decode(loss.value_network(states.clone())["value_logits"], loss.bins)
        return (v - slow).abs().mean().item()

    grads = []
    for loss in (with_reg, without):
        torch.manual_seed(5)  # the same imagined trajectories
        out = loss(td)
        params = list(loss.value_network_params.values(True, True))
        grads.append(torch.autograd.grad(out["loss_critic"], params))
    before = distance(with_reg)
    with torch.no_grad():  # a small step along the regularizer's own gradient (the difference of the two)
        for p, g1, g0 in zip(with_reg.value_network_params.values(True, True), *grads):
            p.sub_(0.05 * (g1 - g0))
    assert distance(with_reg) < before


def test_slow_critic_ema_and_return_norm_are_restored_with_the_state_dict():
    loss, _ = build()
    updater = loss.make_target_updater()
    online = [p.detach().clone() for p in loss.value_network_params.values(True, True)]
    slow = [p.detach().clone() for p in loss.target_value_network_params.values(True, True)]
    updater.step()
    for s, o, new in zip(slow, online, loss.target_value_network_params.values(True, True)):
        torch.testing.assert_close(new, 0.98 * s + 0.02 * o)
    loss(starts())
    state = loss.state_dict()
    assert {"return_norm.low", "return_norm.high"} <= set(state)
    fresh, _ = build(seed=3)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.return_norm.scale(), loss.return_norm.scale())
    torch.manual_seed(9)
    a = loss(starts(seed=4))
    torch.manual_seed(9)
    b = fresh(starts(seed=4))
    assert a["loss_actor"].item() == b["loss_actor"].item() and a["loss_critic"].item() == b["loss_critic"].item()


def test_zero_initialized_heads_predict_exactly_zero():
    loss, (_, _, value, reward, _) = build()
    with torch.no_grad():
        for head in (value, reward):
            for p in head.parameters():
                p.zero_()
    out = loss(starts())
    assert out["value"].item() == 0.0 and out["imagined_reward"].item() == 0.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`return_percentiles`"):
        build(return_percentiles=(95, 5))
    with pytest.raises(ValueError, match="slow_decay"):
        build(slow_decay=1.0)


def test_replay_lambda_return_is_the_official_recursion_with_terminations():
    """Official layout: obs j+1 follows obs j; ours: step t's "next" entries. A terminal obs's bootstrap is
    multiplied by live = 0 and its successor by cont = 0, so the two layouts give the same returns."""
    g = np.random.default_rng(0)
    B, T = 3, 7
    reward, boot = g.normal(size=(B, T)), g.normal(size=(B, T))
    terminated = np.zeros((B, T), bool)
    terminated[0, 2] = terminated[2, 5] = True
    ours = replay_lambda_return(*(torch.from_numpy(x) for x in (reward, terminated, terminated.copy(), boot)),
                                discount=0.997, lmbda=0.95).numpy()
    off = lambda x: np.concatenate([np.zeros((B, 1)), x[:, :-1]], 1)  # noqa: E731  (obs j+1 carries step j's entries)
    expected = _official_lambda_return(off(terminated), off(terminated), off(reward), None, boot, 0.997, 0.95)
    assert expected.shape == (B, T - 1)
    np.testing.assert_allclose(ours[:, :-1], expected, rtol=1e-12)
    np.testing.assert_allclose(ours[:, -1], boot[:, -1])
    assert ours[0, 2] == reward[0, 2]  # a termination: the reward only


def test_replay_lambda_return_at_a_truncation_takes_the_state_return():
    reward, boot = torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    done = torch.tensor([[False, True, False, False]])
    ret = replay_lambda_return(reward, torch.zeros_like(done), done, boot, discount=0.5, lmbda=0.8)
    assert ret[0, 1] == 20.0  # truncated at step 1: its own imagined return
    assert ret[0, 0] == pytest.approx(1.0 + 0.5 * (0.2 * 20.0 + 0.8 * 20.0))  # one-step target through it
    assert ret[0, 2] == pytest.approx(3.0 + 0.5 * 40.0) and ret[0, 3] == 40.0


def test_replay_value_loss_by_hand():
    loss, _ = build()
    td = starts()
    torch.manual_seed(2)
    out = loss(td)
    start_return = td["imagination", "lambda_target"][:, :, 0, 0]  # R_0 of every replayed state, [B, T]
    states = td.select("deter", "stoch")
    with torch.no_grad():
        with loss.value_network_params.to_module(loss.value_network):
            logits = loss.value_network(states.clone())["value_logits"]
        with loss.target_value_network_params.to_module(loss.value_network):
            slow = two_hot_decode(loss.value_network(states.clone())["value_logits"], loss.bins)
    flags = td["next", "terminated"][..., 0], td["next", "done"][..., 0]
    ret = replay_lambda_return(td["next", "reward"][..., 0], *flags, start_return)
    from torchrl.objectives import two_hot_cross_entropy
    per_step = two_hot_cross_entropy(logits[:, :-1], ret[:, :-1], loss.bins) + two_hot_cross_entropy(
        logits[:, :-1], slow[:, :-1], loss.bins)
    assert out["loss_critic_replay"].item() == pytest.approx(0.3 * per_step.mean().item(), rel=1e-5)
    off = build(replay_scale=0.0)[0]
    assert off(starts().exclude(("next", "reward")))["loss_critic_replay"].item() == 0.0  # not read when off


def test_imagine_last_is_the_full_loss_on_the_last_states():
    """The code's ``imag_last: K``: imagination (and the replay value loss) from the last K states of each
    sequence is the loss on ``td[:, -K:]``; the return normalizer sees only those returns."""
    td = starts(B=2, T=5, seed=3)
    outs = []
    for last, batch in ((2, td.clone()), (0, td[:, -2:].clone())):
        loss, _ = build(imagine_last=last)
        torch.manual_seed(7)
        outs.append(loss(batch))
    for key in ("loss_actor", "loss_critic", "loss_critic_replay", "lambda_return", "return_scale"):
        assert outs[0][key].item() == pytest.approx(outs[1][key].item(), rel=1e-6), key
    loss, _ = build(imagine_last=9)  # longer than the sequence: every state
    torch.manual_seed(7)
    full = td.clone()
    out = loss(full)
    assert full["imagination"].batch_size[:2] == (2, 5) and torch.isfinite(out["loss_actor"])
    with pytest.raises(ValueError, match="`imagine_last` must be an integer >= 0"):
        build(imagine_last=-1)
