"""V-trace (Espeholt et al. 2018): targets and advantages against hand-written sums and a plain loop."""
import itertools
import math

import pytest
import torch
from oracles import vtrace_loop
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch.distributions import Categorical
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives import A2CLoss
from torchrl.objectives.value import VTrace as TorchRLVTrace

from latentrl.objectives.functional import vtrace
from latentrl.objectives.value import VTrace

DT = torch.float64


def _flags(t, at=None):
    f = torch.zeros(t, 1, dtype=torch.bool)
    if at is not None:
        f[at] = True
    return f


def _unroll(t, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(t + 1, 1, generator=g, dtype=DT)  # V(x_0) .. V(x_T)
    return v[:-1], v[1:], torch.randn(t, 1, generator=g, dtype=DT)


# 1. on-policy, no clipping: the n-step Bellman target -------------------------------------------
def test_on_policy_target_is_the_n_step_return():
    t, gamma = 5, 0.9
    value, next_value, reward = _unroll(t, seed=0)
    vs, adv, _ = vtrace(torch.zeros(t, 1, dtype=DT), value, next_value, reward, _flags(t), _flags(t), gamma=gamma)
    r, v_last = reward[:, 0].tolist(), next_value[-1, 0].item()
    for s in range(t):
        n_step = sum(gamma ** (k - s) * r[k] for k in range(s, t)) + gamma ** (t - s) * v_last
        assert vs[s, 0].item() == pytest.approx(n_step, abs=1e-12)
        q = r[s] + gamma * (vs[s + 1, 0].item() if s + 1 < t else v_last)
        assert adv[s, 0].item() == pytest.approx(q - value[s, 0].item(), abs=1e-12)


# 2. the recursion (Remark 1) equals the explicit sum of eq. (1) ---------------------------------
def test_recursion_equals_the_sum_of_eq_1():
    t, gamma, rho_bar, c_bar = 7, 0.95, 1.3, 0.8
    value, next_value, reward = _unroll(t, seed=1)
    log_rhos = torch.randn(t, 1, generator=torch.Generator().manual_seed(2), dtype=DT)
    vs, _, _ = vtrace(log_rhos, value, next_value, reward, _flags(t), _flags(t), gamma=gamma, rho_bar=rho_bar, c_bar=c_bar)
    ratio = log_rhos[:, 0].exp().tolist()
    V = value[:, 0].tolist() + [next_value[-1, 0].item()]
    r = reward[:, 0].tolist()
    rho = [min(rho_bar, x) for x in ratio]
    c = [min(c_bar, x) for x in ratio]
    delta = [rho[k] * (r[k] + gamma * V[k + 1] - V[k]) for k in range(t)]
    for s in range(t):
        eq1 = V[s] + sum(gamma ** (k - s) * math.prod(c[s:k]) * delta[k] for k in range(s, t))
        assert vs[s, 0].item() == pytest.approx(eq1, abs=1e-12)


# 3. an episode end inside the unroll --------------------------------------------------------------
@pytest.mark.parametrize("terminated", [True, False])
def test_episode_end_inside_the_unroll(terminated):
    t, k, gamma = 6, 2, 0.9
    value, next_value, reward = _unroll(t, seed=3)
    next_value[k] = 7.0  # V(x_{k+1}): the last observation of the episode, not value[k + 1] (next episode)
    done = _flags(t, k)
    vs, adv, _ = vtrace(
        torch.zeros(t, 1, dtype=DT), value, next_value, reward, done, done if terminated else _flags(t), gamma=gamma
    )
    r, V = reward[:, 0].tolist(), value[:, 0].tolist()
    tail = 0.0 if terminated else gamma * 7.0  # bootstrap at step k
    assert vs[k, 0].item() == pytest.approx(r[k] + tail, abs=1e-12)
    assert vs[0, 0].item() == pytest.approx(r[0] + gamma * r[1] + gamma**2 * (r[2] + tail), abs=1e-12)
    assert adv[k, 0].item() == pytest.approx(r[k] + tail - V[k], abs=1e-12)  # not vs[k + 1]
    # after the boundary: an episode of its own, bootstrapped at the end of the unroll
    v_end = next_value[-1, 0].item()
    assert vs[k + 1, 0].item() == pytest.approx(
        sum(gamma ** (j - k - 1) * r[j] for j in range(k + 1, t)) + gamma ** (t - k - 1) * v_end, abs=1e-12
    )
    # nothing after k reaches the steps up to k, whatever the ratios
    log_rhos = torch.randn(t, 1, generator=torch.Generator().manual_seed(5), dtype=DT)
    base = vtrace(log_rhos, value, next_value, reward, done, done if terminated else _flags(t), gamma=gamma)
    value2, next_value2, reward2 = value.clone(), next_value.clone(), reward.clone()
    value2[k + 1 :] += 3.0
    next_value2[k + 1 :] -= 2.0
    reward2[k + 1 :] *= -4.0
    log_rhos2 = log_rhos.clone()
    log_rhos2[k + 1 :] += 1.0
    other = vtrace(log_rhos2, value2, next_value2, reward2, done, done if terminated else _flags(t), gamma=gamma)
    for a, b in zip(base, other):
        torch.testing.assert_close(a[: k + 1], b[: k + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(a[k + 1 :], b[k + 1 :])


# 4. rho_bar sets the fixed point, c_bar only the speed (Theorem 1) --------------------------------
MU, PI, R = torch.tensor([0.8, 0.2], dtype=DT), torch.tensor([0.3, 0.7], dtype=DT), torch.tensor([1.0, -1.0], dtype=DT)


def _fixed_point(rho_bar, c_bar, gamma=0.9, n=3, tol=1e-12):
    """Iterate V <- E_mu[v_0] in a one-state, two-action MDP; the expectation is exact, over all a_0..a_{n-1}."""
    seqs = torch.tensor(list(itertools.product([0, 1], repeat=n)))  # [2^n, n]
    prob = MU[seqs].prod(-1)
    log_rhos = (PI[seqs] / MU[seqs]).log().unsqueeze(-1)
    reward = R[seqs].unsqueeze(-1)
    no = torch.zeros_like(reward, dtype=torch.bool)
    V = torch.tensor(0.0, dtype=DT)
    for it in range(10_000):
        v = V.expand_as(reward)
        vs, _, _ = vtrace(log_rhos, v, v, reward, no, no, gamma=gamma, rho_bar=rho_bar, c_bar=c_bar)
        new = (prob * vs[:, 0, 0]).sum()
        if abs(new - V) < tol:
            return new.item(), it
        V = new
    raise AssertionError("no convergence")


def test_rho_bar_sets_the_fixed_point_and_c_bar_only_the_speed():
    gamma = 0.9
    ratio_max = (PI / MU).max().item()  # 3.5
    for rho_bar in (1.0, 2.0, ratio_max + 1.0):
        pi_rho = torch.minimum(rho_bar * MU, PI)
        pi_rho = pi_rho / pi_rho.sum()  # pi_rho_bar(a) ∝ min(rho_bar mu(a), pi(a))
        expected = (pi_rho * R).sum().item() / (1 - gamma)
        results = {c_bar: _fixed_point(rho_bar, c_bar, gamma) for c_bar in (0.3, 1.0)}
        for c_bar, (v, _) in results.items():
            assert v == pytest.approx(expected, abs=1e-9), (rho_bar, c_bar)
        assert results[1.0][1] < results[0.3][1]  # longer traces contract faster
    v_pi = (PI * R).sum().item() / (1 - gamma)  # -4: rho_bar >= max ratio gives V^pi
    assert _fixed_point(ratio_max + 1.0, 1.0)[0] == pytest.approx(v_pi, abs=1e-9)
    assert _fixed_point(1.0, 1.0)[0] == pytest.approx(2.0, abs=1e-9)  # pi_1 = (0.6, 0.4)
    assert _fixed_point(2.0, 1.0)[0] == pytest.approx(-10 / 7, abs=1e-9)  # pi_2 = (3/7, 4/7)


# 5. the policy-gradient clip is its own -----------------------------------------------------------
def test_pg_rho_bar_is_separate_from_rho_bar():
    t, gamma = 8, 0.9
    value, next_value, reward = _unroll(t, seed=4)
    log_rhos = torch.linspace(-1.5, 1.5, t, dtype=DT).unsqueeze(-1)  # ratios 0.22 .. 4.5
    args = (log_rhos, value, next_value, reward, _flags(t), _flags(t))
    vs, adv, _ = vtrace(*args, gamma=gamma, rho_bar=1.0)
    vs_same, adv_same, _ = vtrace(*args, gamma=gamma, rho_bar=1.0, pg_rho_bar=1.0)
    vs_pg, adv_pg, _ = vtrace(*args, gamma=gamma, rho_bar=1.0, pg_rho_bar=2.5)
    _, adv_free, _ = vtrace(*args, gamma=gamma, rho_bar=1.0, pg_rho_bar=float("inf"))
    torch.testing.assert_close(adv, adv_same, rtol=0, atol=0)
    torch.testing.assert_close(vs, vs_pg, rtol=0, atol=0)  # the targets do not depend on it
    ratio = log_rhos.exp()
    q_minus_v = adv_free / ratio  # r_s + gamma v_{s+1} - V(x_s)
    torch.testing.assert_close(adv, ratio.clamp(max=1.0) * q_minus_v)
    torch.testing.assert_close(adv_pg, ratio.clamp(max=2.5) * q_minus_v)
    big = ratio[:, 0] > 1.0
    assert not torch.allclose(adv[big], adv_pg[big])
    torch.testing.assert_close(adv[~big], adv_pg[~big], rtol=0, atol=0)


# 6. the parallel scan equals the loop --------------------------------------------------------------
def _random_batch(shape, dtype, seed, time_dim=-2):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(shape, generator=g, dtype=dtype) for _ in range(4)]
    log_rhos = x[0] * 0.7
    done = torch.rand(shape, generator=g) < 0.08
    terminated = done & (torch.rand(shape, generator=g) < 0.5)
    return log_rhos, x[1], x[2], x[3], done, terminated


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(80, 1), (5, 80, 1), (2, 3, 80, 1)])
def test_fast_equals_reference(dtype, shape):
    inputs = _random_batch(shape, dtype, seed=len(shape))
    gamma = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)  # per step
    for kw in (
        dict(gamma=0.99),
        dict(gamma=0.9, rho_bar=1.5, c_bar=0.7, pg_rho_bar=2.0),
        dict(gamma=gamma, rho_bar=2.0, c_bar=1.0, pg_rho_bar=float("inf")),
    ):
        fast, ref = vtrace(*inputs, **kw), vtrace_loop(*inputs, **kw)
        for a, b in zip(fast, ref):
            assert a.dtype == dtype and a.shape == shape
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # no clipping at all: products of ratios grow the targets (to ~1e3), so compare relative to them
    kw = dict(gamma=gamma, rho_bar=float("inf"), c_bar=float("inf"))
    for a, b in zip(vtrace(*inputs, **kw), vtrace_loop(*inputs, **kw)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fast_equals_reference_for_every_unroll_length():
    # the scan doubles its stride: lengths around powers of two are the edge cases
    for t in (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 129):
        inputs = _random_batch((3, t, 1), torch.float64, seed=t)
        for a, b in zip(vtrace(*inputs, gamma=0.9, c_bar=1.2), vtrace_loop(*inputs, gamma=0.9, c_bar=1.2)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"T={t}")


def test_fast_equals_reference_time_first_and_log_prob_pair():
    log_rhos, *rest = _random_batch((4, 80, 1), torch.float64, seed=5)
    behaviour = torch.randn(4, 80, 1, dtype=torch.float64)
    moved = [x.transpose(0, 1) for x in rest]  # [T, B, 1]
    fast = vtrace((behaviour + log_rhos, behaviour), *rest, gamma=0.97, c_bar=0.9)
    first = vtrace(log_rhos.transpose(0, 1), *moved, gamma=0.97, c_bar=0.9, time_dim=0)
    ref = vtrace_loop(log_rhos, *rest, gamma=0.97, c_bar=0.9)
    for a, b, c in zip(fast, first, ref):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-10)
        torch.testing.assert_close(b.transpose(0, 1), c, rtol=0, atol=1e-10)


def test_long_unroll_is_stable():
    # products of gamma * c over 5000 steps underflow; nothing may turn into inf or nan
    inputs = _random_batch((3, 5000, 1), torch.float32, seed=6)
    inputs = (inputs[0] - 3.0,) + inputs[1:4] + (torch.zeros_like(inputs[4]),) * 2  # tiny c, no episode end
    fast, ref = vtrace(*inputs, gamma=0.999), vtrace_loop(*inputs, gamma=0.999)
    for a, b in zip(fast, ref):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_gradients_match_the_loop():
    inputs = [x.requires_grad_() if x.is_floating_point() else x for x in _random_batch((2, 20, 1), DT, seed=7)]
    grads = [torch.autograd.grad(sum(o.sum() for o in f(*inputs, gamma=0.9, c_bar=0.8)), inputs[:4])
             for f in (vtrace, vtrace_loop)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_shape_mismatch_is_an_error():
    x = torch.zeros(3, 5, 1)
    with pytest.raises(ValueError, match="reward"):
        vtrace(x, x, x, torch.zeros(3, 5), x.bool(), x.bool(), gamma=0.9)


# 7. the TorchRL estimator ---------------------------------------------------------------------------
OBS, N_ACTIONS, B, T = 3, 4, 4, 12


def _actor_critic():
    torch.manual_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(torch.nn.Linear(OBS, N_ACTIONS), ["observation"], ["logits"]),
        in_keys=["logits"],
        out_keys=["action"],
        distribution_class=Categorical,
        return_log_prob=True,
    )
    return actor, ValueOperator(torch.nn.Linear(OBS, 1), ["observation"])


def _trajectories(actor, log_prob_key, actions="mode", seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, T + 1, OBS, generator=g)
    logits = actor.module[0].module(obs[:, :-1]).detach()
    action = logits.argmax(-1) if actions == "mode" else torch.randint(N_ACTIONS, (B, T), generator=g)
    behaviour = torch.log_softmax(torch.randn(B, T, N_ACTIONS, generator=g), -1)  # some other policy mu
    done = torch.zeros(B, T, 1, dtype=torch.bool)
    terminated = done.clone()
    done[0, 4], terminated[0, 4] = True, True  # a termination
    done[1, 7] = True  # a truncation
    return TensorDict(
        {
            "observation": obs[:, :-1],
            "action": action,
            log_prob_key: behaviour.gather(-1, action.unsqueeze(-1)).squeeze(-1),
            "next": {
                "observation": obs[:, 1:],
                "reward": torch.randn(B, T, 1, generator=g),
                "done": done,
                "terminated": terminated,
            },
        },
        [B, T],
    )


@pytest.mark.parametrize("rho_bar,c_bar", [(1.0, 1.0), (1.5, 0.8)])
def test_estimator_matches_torchrl_vtrace(rho_bar, c_bar):
    # With the stored actions at the current policy's mode, TorchRL's estimator scores the
    # right actions (UPSTREAM.md #9) and both must agree.
    actor, critic = _actor_critic()
    ours = VTrace(gamma=0.95, actor_network=actor, value_network=critic, rho_bar=rho_bar, c_bar=c_bar)
    theirs = TorchRLVTrace(gamma=0.95, actor_network=actor, value_network=critic, rho_thresh=rho_bar, c_thresh=c_bar)
    same_pg = VTrace(
        gamma=0.95, actor_network=actor, value_network=critic, rho_bar=rho_bar, c_bar=c_bar, pg_rho_bar=rho_bar
    )
    td = _trajectories(actor, theirs.tensor_keys.sample_log_prob)
    out_theirs, out_ours, out_same = theirs(td.clone()), ours(td.clone()), same_pg(td.clone())
    for key in ("value_target", "advantage"):
        torch.testing.assert_close(out_ours[key], out_theirs[key], rtol=0, atol=1e-5)
        torch.testing.assert_close(out_same[key], out_theirs[key], rtol=0, atol=1e-5)
        assert not out_ours[key].requires_grad
    assert ours.rho_bar.item() == pytest.approx(rho_bar) and ours.c_bar.item() == pytest.approx(c_bar)


def test_estimator_scores_the_stored_actions_and_clips_pg_separately():
    actor, critic = _actor_critic()
    est = VTrace(gamma=0.95, actor_network=actor, value_network=critic, c_bar=0.9, pg_rho_bar=2.0)
    td = _trajectories(actor, est.tensor_keys.sample_log_prob, actions="random", seed=1)
    est(td)
    with torch.no_grad():
        log_pi = Categorical(logits=actor.module[0].module(td["observation"])).log_prob(td["action"])
        value, next_value = critic(td.clone())["state_value"], critic(td["next"].clone())["state_value"]
    vs, adv, _ = vtrace_loop(
        (log_pi.unsqueeze(-1), td[est.tensor_keys.sample_log_prob].unsqueeze(-1)),
        value, next_value, td["next", "reward"], td["next", "done"], td["next", "terminated"],
        gamma=0.95, c_bar=0.9, pg_rho_bar=2.0,
    )
    torch.testing.assert_close(td["value_target"], vs, rtol=0, atol=1e-5)
    torch.testing.assert_close(td["advantage"], adv, rtol=0, atol=1e-5)


def test_estimator_keys_and_torchrl_names():
    actor, critic = _actor_critic()
    est = VTrace(gamma=0.9, actor_network=actor, value_network=critic, rho_thresh=2.0, c_thresh=0.5)
    assert est.rho_bar.item() == 2.0 and est.c_bar.item() == 0.5 and est.pg_rho_bar is None
    with pytest.raises(TypeError, match="rho_thresh"):
        VTrace(gamma=0.9, actor_network=actor, value_network=critic, rho_bar=1.0, rho_thresh=2.0)
    td = _trajectories(actor, est.tensor_keys.sample_log_prob, actions="random")
    td.rename_key_("action", "act")
    est.set_keys(action="act", advantage="adv", value_target="target")
    assert "act" in est.in_keys
    est(td)
    assert {"adv", "target"} <= set(td.keys())


def test_estimator_inside_a_torchrl_loss():
    actor, critic = _actor_critic()
    est = VTrace(gamma=0.95, actor_network=actor, value_network=critic)
    loss = A2CLoss(actor, critic, entropy_bonus=False)
    loss.make_value_estimator(est)
    td = _trajectories(actor, loss.tensor_keys.sample_log_prob, actions="random")
    out = loss(td.clone())
    (out["loss_objective"] + out["loss_critic"]).backward()
    assert actor.module[0].module.weight.grad is not None
    adv = est(td.clone())["advantage"]
    with torch.no_grad():
        log_pi = Categorical(logits=actor.module[0].module(td["observation"])).log_prob(td["action"])
    torch.testing.assert_close(out["loss_objective"].detach(), -(adv.squeeze(-1) * log_pi).mean())


# 8. lambda, q-estimates and the two evaluations -------------------------------------------------------
@pytest.mark.parametrize("lmbda", [0.0, 0.5, 0.95, 1.0])
def test_lambda_and_q_estimate_match_the_loop(lmbda):
    inputs = _random_batch((5, 40, 1), DT, seed=11)
    kw = dict(gamma=0.97, rho_bar=1.2, c_bar=0.9, pg_rho_bar=1.5, lmbda=lmbda)
    out = vtrace(*inputs, **kw)
    assert out._fields == ("vs", "pg_advantage", "q_estimate")
    for a, b in zip(out, vtrace_loop(*inputs, **kw)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_lambda_zero_is_the_one_step_target():
    # c_s = 0: v_s = V(x_s) + rho_s delta-error, q_s = r_s + gamma_s V(x_{s+1}) (no trace at all)
    log_rhos, v, nv, r, done, terminated = _random_batch((3, 16, 1), DT, seed=12)
    out = vtrace(log_rhos, v, nv, r, done, terminated, gamma=0.9, lmbda=0.0)
    g = 0.9 * (~terminated).to(DT)
    rho = log_rhos.exp().clamp(max=1.0)
    torch.testing.assert_close(out.vs, v + rho * (r + g * nv - v))
    torch.testing.assert_close(out.q_estimate, r + g * nv)
    torch.testing.assert_close(out.pg_advantage, rho * (r + g * nv - v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_loop_equals_the_scan(dtype):
    # CPU and no gradient: the compiled loop; inputs that need a gradient: the torch scan
    inputs = _random_batch((6, 37, 2), dtype, seed=13)
    gamma = torch.rand(inputs[0].shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    kw = dict(gamma=gamma, rho_bar=1.3, c_bar=0.8, lmbda=0.9)
    loop = vtrace(*inputs, **kw)
    grad_inputs = [x.clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    scan = vtrace(*grad_inputs, **kw)
    assert all(o.requires_grad for o in scan) and not any(o.requires_grad for o in loop)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(loop, scan):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=tol)
