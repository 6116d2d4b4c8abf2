"""DreamerV2 actor/critic losses in imagination: the pure functions and DreamerActorCriticLoss, by hand."""
import copy

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from latentrl.modules.actor_critic import make_dreamer_actor, make_dreamer_critic
from latentrl.modules.world_model import RSSMImagine, make_world_model
from latentrl.objectives.dreamer import DreamerActorCriticLoss
from latentrl.objectives.functional import (
    dreamer_actor_loss,
    dreamer_critic_loss,
    imagination_weights,
    lambda_return,
)

pytestmark = pytest.mark.filterwarnings("ignore:No target network updater:UserWarning")

OBS, A, DETER, NV, NC = 5, 3, 16, 4, 4
FEAT = DETER + NV * NC


# ------------------------------------------------------------ pure functions
def test_imagination_weights_is_the_product_of_earlier_discounts():
    torch.manual_seed(0)
    disc = torch.rand(3, 6, 1, dtype=torch.float64, requires_grad=True)
    w = imagination_weights(disc, time_dim=-2)
    assert w.shape == disc.shape
    assert not w.requires_grad
    expected = torch.empty(3, 6, 1, dtype=torch.float64)
    for b in range(3):
        for t in range(6):
            prod = 1.0
            for i in range(t):
                prod *= disc[b, i, 0].item()
            expected[b, t, 0] = prod
    torch.testing.assert_close(w, expected)
    # time as the last dim
    torch.testing.assert_close(imagination_weights(disc[..., 0], time_dim=-1), expected[..., 0])


def _leaves(shape=(4, 5, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda: torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    log_prob, entropy, target, baseline = mk(), mk(), mk(), mk()
    weight = torch.rand(*shape, generator=g, dtype=torch.float64).requires_grad_()
    return log_prob, entropy, target, baseline, weight


@pytest.mark.parametrize("rho", [1.0, 0.0, 0.3])
def test_dreamer_actor_loss_value_and_stop_gradients(rho):
    eta = 0.05
    log_prob, entropy, target, baseline, weight = _leaves()
    n = log_prob.numel()
    loss = dreamer_actor_loss(log_prob, entropy, target, baseline, weight, rho, eta)
    with torch.no_grad():
        expected = -(weight * (rho * log_prob * (target - baseline) + (1 - rho) * target + eta * entropy)).sum() / n
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    loss.backward()
    w, adv = weight.detach(), (target - baseline).detach()
    torch.testing.assert_close(log_prob.grad, -rho * w * adv / n)
    torch.testing.assert_close(target.grad, -(1 - rho) * w / n)  # nothing through the advantage
    assert baseline.grad is None or (baseline.grad == 0).all()
    torch.testing.assert_close(entropy.grad, -eta * w / n)
    assert weight.grad is None or (weight.grad == 0).all()


def test_dreamer_actor_loss_rejects_bad_input():
    log_prob, entropy, target, baseline, weight = _leaves()
    with pytest.raises(ValueError, match="shape"):
        dreamer_actor_loss(log_prob, entropy, target[..., 0], baseline, weight, 1.0, 1e-3)
    with pytest.raises(ValueError, match="rho"):
        dreamer_actor_loss(log_prob, entropy, target, baseline, weight, 1.5, 1e-3)


def test_dreamer_critic_loss_value_and_gradient():
    _, _, target, value, weight = _leaves(seed=1)
    n = value.numel()
    loss = dreamer_critic_loss(value, target, weight)
    with torch.no_grad():
        expected = (weight * 0.5 * (value - target) ** 2).sum() / n
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    loss.backward()
    torch.testing.assert_close(value.grad, (weight * (value - target)).detach() / n)
    assert target.grad is None or (target.grad == 0).all()
    assert weight.grad is None or (weight.grad == 0).all()
    with pytest.raises(ValueError, match="shape"):
        dreamer_critic_loss(value, target[:, :-1], weight)


def _lambda_return_by_hand(reward, next_value, discount, lmbda):
    """V_t = r_t + g_t ((1 - l) v_{t+1} + l V_{t+1}), V_{H-1} = r_{H-1} + g_{H-1} v_H; time at dim 1."""
    H = reward.shape[1]
    out = torch.empty_like(reward)
    nxt = None
    for t in reversed(range(H)):
        if t == H - 1:
            out[:, t] = reward[:, t] + discount[:, t] * next_value[:, t]
        else:
            out[:, t] = reward[:, t] + discount[:, t] * ((1 - lmbda) * next_value[:, t] + lmbda * nxt)
        nxt = out[:, t]
    return out


def test_lambda_return_by_hand():
    torch.manual_seed(0)
    r, v, d = torch.randn(3, 7, 1), torch.randn(3, 7, 1), torch.rand(3, 7, 1)
    torch.testing.assert_close(lambda_return(r, v, d, 0.95), _lambda_return_by_hand(r, v, d, 0.95))
    # λ = 0: one-step TD targets; λ = 1: discounted return bootstrapped at the end
    torch.testing.assert_close(lambda_return(r, v, d, 0.0), r + d * v)
    torch.testing.assert_close(lambda_return(r, v, d, 1.0), _lambda_return_by_hand(r, v, d, 1.0))


# ---------------------------------------------------- DreamerActorCriticLoss
def tiny_world_model():
    return make_world_model(
        [OBS], A, latent="categorical", deter_dim=DETER, hidden_dim=16, num_vars=NV, num_classes=NC,
        units=16, layers=1, embed_dim=16, predict_discount=True,
    )


def start_states(B=2, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    stoch = F.one_hot(torch.randint(NC, (B, T, NV), generator=g), NC).float().flatten(-2)
    return TensorDict({"deter": torch.randn(B, T, DETER, generator=g), "stoch": stoch}, batch_size=[B, T])


def build(discrete=True, horizon=4, **kwargs):
    torch.manual_seed(0)
    wm = tiny_world_model()
    actor = make_dreamer_actor(wm.rssm, A, discrete=discrete, units=16, layers=1)
    critic = make_dreamer_critic(wm.rssm, units=16, layers=1)
    loss = DreamerActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, wm.discount_model,
                                  horizon=horizon, discrete=discrete, **kwargs)
    return loss, wm, actor


def _params(td_params):
    return list(td_params.values(include_nested=True, leaves_only=True))


def test_defaults_discrete_and_continuous():
    loss, _, _ = build(discrete=True)
    assert (loss.rho, loss.entropy_coef) == (1.0, 1e-3)
    assert (loss.horizon, loss.gamma, loss.lmbda, loss.target_update_interval) == (4, 0.995, 0.95, 100)
    loss, _, _ = build(discrete=False)
    assert (loss.rho, loss.entropy_coef) == (0.0, 1e-4)
    loss, _, _ = build(discrete=False, rho=0.5, entropy_coef=0.0)
    assert (loss.rho, loss.entropy_coef) == (0.5, 0.0)
    with pytest.raises(ValueError, match="rho"):
        build(rho=1.5)
    with pytest.raises(ValueError, match="horizon"):
        build(horizon=0)
    with pytest.raises(ValueError, match="lmbda"):
        build(lmbda=1.5)


@pytest.mark.parametrize("discrete", [True, False])
def test_gradients_reach_actor_and_critic_only(discrete):
    loss, wm, actor = build(discrete=discrete)
    td = start_states()
    td["deter"].requires_grad_()  # the start states are detached inside
    out = loss(td)
    for key in ("loss_actor", "loss_critic", "lambda_return", "value", "entropy", "imagined_reward",
                "imagined_discount"):
        assert key in out.keys(), key
    assert out["loss_actor"].shape == torch.Size([]) and torch.isfinite(out["loss_actor"])
    assert out["loss_critic"].shape == torch.Size([]) and torch.isfinite(out["loss_critic"])
    (out["loss_actor"] + out["loss_critic"]).backward()
    for name, p in wm.named_parameters():
        assert p.grad is None, name
        assert p.requires_grad, name  # unfrozen again afterwards
    assert td["deter"].grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    for p in _params(loss.value_network_params):
        assert p.grad is not None and p.grad.abs().sum() > 0
    for p in _params(loss.target_value_network_params):
        assert p.grad is None


def test_critic_loss_sends_no_gradient_to_the_actor_and_actor_loss_none_to_the_critic():
    loss, _, actor = build(discrete=False)
    out = loss(start_states())
    out["loss_critic"].backward(retain_graph=True)
    assert all(p.grad is None or (p.grad == 0).all() for p in actor.parameters())
    for p in _params(loss.value_network_params):
        p.grad = None
    out["loss_actor"].backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in _params(loss.value_network_params))


def test_rho_zero_actor_learns_through_the_dynamics():
    loss, _, actor = build(discrete=False, entropy_coef=0.0)
    assert loss.rho == 0.0
    loss(start_states())["loss_actor"].backward()
    grads = [p.grad for p in actor.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def _by_hand(loss, td, seed):
    """Imagine with the loss's own rollout (same seed), then every quantity of the loss by hand."""
    torch.manual_seed(seed)
    traj = loss.imagine(td).detach()  # [N, H]: z_t, a_t; z_{t+1}, r_t = r(z_t), γ_t under "next"
    action = traj["action"]
    reward, discount = traj["next", "reward"], traj["next", "discount"]
    N, H = traj.shape
    critic = copy.deepcopy(loss.value_network)
    with loss.target_value_network_params.detach().to_module(critic), torch.no_grad():
        target_value = critic(traj["next"].select("deter", "stoch").clone())["state_value"]  # v(z_{t+1})
    with loss.value_network_params.detach().to_module(critic), torch.no_grad():
        value = critic(traj.select("deter", "stoch").clone())["state_value"]
    lam = _lambda_return_by_hand(reward, target_value, discount, loss.lmbda)
    weight = torch.ones(N, H, 1)
    for t in range(1, H):
        weight[:, t] = weight[:, t - 1] * discount[:, t - 1]
    logits = loss.actor_network.get_dist_params(traj.select("deter", "stoch").clone())["logits"]
    log_p = torch.log_softmax(logits, -1)
    log_prob = (action * log_p).sum(-1, keepdim=True)
    entropy = -(log_p.exp() * log_p).sum(-1, keepdim=True)
    rho, eta = loss.rho, loss.entropy_coef
    actor_loss = -(weight * (rho * log_prob * (lam - value) + (1 - rho) * lam + eta * entropy)).mean()
    critic_loss = (weight * 0.5 * (value - lam) ** 2).mean()
    return dict(lam=lam, value=value, actor_loss=actor_loss, critic_loss=critic_loss, target_value=target_value)


def test_discrete_rho_one_is_reinforce_with_slow_target_lambda_returns():
    loss, _, actor = build(discrete=True, horizon=4)
    # make the slow target differ from the critic, so that using the wrong one shows
    with torch.no_grad():
        for p in _params(loss.target_value_network_params):
            p.add_(0.5 * torch.randn_like(p))
    td = start_states()
    torch.manual_seed(123)
    out = loss(td)
    hand = _by_hand(loss, td, seed=123)
    assert out["lambda_return"].item() == pytest.approx(hand["lam"].mean().item(), rel=1e-5)
    assert out["value"].item() == pytest.approx(hand["value"].mean().item(), rel=1e-5)
    assert out["loss_critic"].item() == pytest.approx(hand["critic_loss"].item(), rel=1e-5)
    assert out["loss_actor"].item() == pytest.approx(hand["actor_loss"].item(), rel=1e-5)
    # ρ = 1: the actor's gradient is the REINFORCE (+ entropy) gradient only
    g_loss = torch.autograd.grad(out["loss_actor"], list(actor.parameters()))
    g_hand = torch.autograd.grad(hand["actor_loss"], list(actor.parameters()))
    for a, b in zip(g_loss, g_hand):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_lambda_return_bootstraps_from_the_slow_target():
    loss, _, _ = build(discrete=True, horizon=3)
    td = start_states()
    torch.manual_seed(7)
    before = loss(td)["lambda_return"].item()
    hand = _by_hand(loss, td, seed=7)
    # zero target critic: the λ-return is the discounted imagined reward sum only
    with torch.no_grad():
        for p in _params(loss.target_value_network_params):
            p.zero_()
    torch.manual_seed(7)
    after = loss(td)["lambda_return"].item()
    hand0 = _by_hand(loss, td, seed=7)
    assert (hand0["target_value"] == 0).all()
    assert after == pytest.approx(hand0["lam"].mean().item(), rel=1e-5)
    assert before == pytest.approx(hand["lam"].mean().item(), rel=1e-5)
    assert abs(after - before) > 1e-4
    # the online critic's parameters are untouched by this
    assert all(p.abs().sum() > 0 for p in _params(loss.value_network_params))


def test_slow_target_copied_every_interval():
    loss, _, _ = build(discrete=True, horizon=2, target_update_interval=3)
    upd = loss.make_target_updater()
    initial = [p.detach().clone() for p in _params(loss.value_network_params)]
    opt = torch.optim.SGD(_params(loss.value_network_params), lr=0.5)
    td = start_states()

    def equal(xs, ys):
        return all(torch.equal(x, y) for x, y in zip(xs, ys))

    for step in range(1, 8):
        opt.zero_grad()
        loss(td)["loss_critic"].backward()
        opt.step()
        upd.step()
        critic = [p.detach() for p in _params(loss.value_network_params)]
        target = [p.detach() for p in _params(loss.target_value_network_params)]
        assert not equal(critic, initial)  # the critic does learn
        if step % 3 == 0:
            assert equal(target, critic), step
            copied = [p.clone() for p in critic]
        else:
            assert not equal(target, critic), step
            torch.testing.assert_close(target, initial if step < 3 else copied, rtol=0, atol=0)


def test_start_state_discount_is_gamma_and_later_ones_are_predicted():
    """The authors' code replaces the predicted discount of the (never terminal) start state by the true gamma."""
    loss, wm, _ = build(discrete=True, horizon=3, gamma=0.9)
    td = start_states()
    torch.manual_seed(0)
    traj = loss.imagine(td)
    disc = traj["next", "discount"]
    assert torch.equal(disc[:, 0], torch.full_like(disc[:, 0], 0.9))
    with torch.no_grad():
        predicted = torch.sigmoid(wm.discount_model(traj.select("deter", "stoch").clone())["discount_logit"])
    torch.testing.assert_close(disc[:, 1:], predicted[:, 1:])
    assert not torch.allclose(predicted[:, 0], disc[:, 0])


def test_the_trajectory_is_written_by_keys_for_other_critic_losses():
    loss, _, _ = build(discrete=False, horizon=3)
    loss.set_keys(imagination="dream", lambda_target="V_lambda")
    td = start_states(B=2, T=3)
    loss(td)
    traj = td["dream"]
    assert traj.batch_size == (2, 3, 3)
    for key in ("V_lambda", "weight", "state_value", "action", "loc", "scale", ("next", "state_value"),
                ("next", "reward"), ("next", "discount"), ("next", "deter")):
        assert key in traj.keys(True), key


def test_unsupported_value_estimator_is_named():
    from torchrl.objectives.utils import ValueEstimators

    loss, _, _ = build()
    with pytest.raises(NotImplementedError, match="GAE"):
        loss.make_value_estimator(ValueEstimators.GAE)


@pytest.mark.parametrize("discrete", [True, False])
def test_actor_explores_by_sampling_and_evaluates_with_the_mode(discrete):
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    _, _, actor = build(discrete=discrete)
    td = start_states(B=64, T=1).reshape(-1)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        a1 = actor(td.clone())["action"]
        a2 = actor(td.clone())["action"]
    torch.testing.assert_close(a1, a2)
    params = actor.get_dist_params(td.clone())
    if discrete:
        expected = F.one_hot(params["logits"].argmax(-1), A).float()
    else:
        expected = params["loc"].clamp(-1, 1)  # the mode: the clipped tanh mean, not the truncated mean
    torch.testing.assert_close(a1, expected, atol=1e-5, rtol=0)
    with set_exploration_type(ExplorationType.RANDOM):
        sampled = actor(td.clone())["action"]
    assert not torch.allclose(sampled, a1)
