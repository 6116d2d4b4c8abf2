"""IMPALALoss: the loss written out by hand, gradient routing, the ablations, PopArt."""
import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.data import OneHot
from torchrl.modules import OneHotCategorical, ProbabilisticActor, ValueOperator

from latentrl.modules.popart import PopArt
from latentrl.objectives.impala import IMPALALoss

B, T, OBS, N = 2, 3, 4, 3


def _nets(popart_tasks=0):
    torch.manual_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(torch.nn.Linear(OBS, N), ["observation"], ["logits"]),
        in_keys=["logits"],
        out_keys=["action"],
        spec=OneHot(N),
        distribution_class=OneHotCategorical,
        return_log_prob=True,
    )
    if not popart_tasks:
        return actor, ValueOperator(torch.nn.Linear(OBS, 1), ["observation"]), None
    popart = PopArt(OBS, num_tasks=popart_tasks, beta=0.1)
    in_keys = ["observation"] if popart_tasks == 1 else ["observation", "task_id"]
    critic = TensorDictModule(popart, in_keys, ["normalized_value", "state_value"])
    return actor, critic, popart


def _batch(done_at=None, terminated=True, behaviour_shift=0.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, T + 1, OBS, generator=g)
    actions = torch.eye(N)[torch.randint(N, (B, T), generator=g)]
    done = torch.zeros(B, T, 1, dtype=torch.bool)
    if done_at is not None:
        done[:, done_at] = True
    # a behaviour policy that is not the learner's: log mu = log pi(a) - shift * noise
    noise = torch.randn(B, T, generator=g)
    return TensorDict(
        {
            "observation": obs[:, :-1],
            "action": actions,
            "behaviour_noise": noise * behaviour_shift,
            "next": {
                "observation": obs[:, 1:],
                "reward": torch.randn(B, T, 1, generator=g),
                "done": done,
                "terminated": done & terminated,
            },
        },
        [B, T],
    )


def _with_behaviour(actor, data):
    with torch.no_grad():
        log_pi = actor.get_dist(data.clone()).log_prob(data["action"])
    data["action_log_prob"] = log_pi - data["behaviour_noise"]
    return data


def _by_hand(actor, critic, data, gamma, rho_bar, c_bar, baseline_coef, entropy_coef):
    """IMPALA's loss for one unroll, the V-trace recursion written out as a Python loop."""
    with torch.no_grad():
        dist = actor.get_dist(data.clone())
        log_pi = dist.log_prob(data["action"])
        entropy = dist.entropy()
        v = critic(data.clone())["state_value"][..., 0]
        v_next = critic(data["next"].clone())["state_value"][..., 0]
    r = data["next", "reward"][..., 0]
    done, term = data["next", "done"][..., 0], data["next", "terminated"][..., 0]
    ratio = (log_pi - data["action_log_prob"]).exp()
    pg_loss = critic_loss = 0.0
    for b in range(B):
        vs = [0.0] * T
        acc = 0.0
        for t in reversed(range(T)):
            boot = 0.0 if term[b, t] else gamma * v_next[b, t]
            delta = min(rho_bar, ratio[b, t]) * (r[b, t] + boot - v[b, t])
            carry = 0.0 if (done[b, t] or t == T - 1) else gamma * min(c_bar, ratio[b, t]) * acc
            acc = delta + carry
            vs[t] = v[b, t] + acc
        for t in range(T):
            nxt = v_next[b, t] if (done[b, t] or t == T - 1) else vs[t + 1]
            adv = min(rho_bar, ratio[b, t]) * (r[b, t] + (0.0 if term[b, t] else gamma * nxt) - v[b, t])
            pg_loss += -adv * log_pi[b, t] / (B * T)
            critic_loss += 0.5 * (vs[t] - v[b, t]) ** 2 / (B * T)
    return pg_loss, baseline_coef * critic_loss, -entropy_coef * entropy.mean()


@pytest.mark.parametrize("done_at,terminated", [(None, True), (1, True), (1, False)])
def test_loss_equals_the_paper_written_out(done_at, terminated):
    actor, critic, _ = _nets()
    data = _with_behaviour(actor, _batch(done_at, terminated, behaviour_shift=0.8))
    loss = IMPALALoss(actor, critic, gamma=0.9, rho_bar=1.0, c_bar=0.7)
    out = loss(data.clone())
    pg, cr, en = _by_hand(actor, critic, data, 0.9, 1.0, 0.7, 0.5, 0.01)
    torch.testing.assert_close(out["loss_objective"], torch.as_tensor(pg).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["loss_critic"], torch.as_tensor(cr).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["loss_entropy"], en, atol=1e-6, rtol=1e-5)
    assert 0 < out["rho_clipped"] < 1  # the test data does exercise the clip


def test_gradients_reach_the_right_networks():
    actor, critic, _ = _nets()
    loss = IMPALALoss(actor, critic)
    out = loss(_with_behaviour(actor, _batch()))
    a, c = list(actor.parameters()), list(critic.parameters())
    for key, reaches, spared in (("loss_objective", a, c), ("loss_entropy", a, c), ("loss_critic", c, a)):
        grads = torch.autograd.grad(out[key], reaches + spared, allow_unused=True, retain_graph=True)
        assert all(g is not None and g.abs().sum() > 0 for g in grads[: len(reaches)]), key
        assert all(g is None or g.abs().sum() == 0 for g in grads[len(reaches) :]), key


def test_summed_losses_are_the_mean_times_the_steps_and_why_it_matters_to_rmsprop():
    actor, critic, _ = _nets()
    data = _with_behaviour(actor, _batch())
    steps = data.numel()
    mean, total = (IMPALALoss(actor, critic, reduction=r)(data.clone()) for r in ("mean", "sum"))
    for key in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(total[key], mean[key] * steps)
    # RMSProp with eps on the summed loss takes the steps of eps / steps on the mean loss (the paper's eps is 0.01)
    params = [torch.nn.Parameter(p.detach().clone()) for p in actor.parameters()]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    a = torch.optim.RMSprop(params, lr=1e-3, alpha=0.99, eps=0.01)
    b = torch.optim.RMSprop(twins, lr=1e-3, alpha=0.99, eps=0.01 / steps)
    for p, q, g in zip(params, twins, grads):
        p.grad, q.grad = g * steps, g.clone()
    a.step()
    b.step()
    for p, q in zip(params, twins):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="`reduction` must be 'mean' or 'sum'"):
        IMPALALoss(actor, critic, reduction="none")


def test_on_policy_vtrace_is_the_uncorrected_loss():
    actor, critic, _ = _nets()
    data = _with_behaviour(actor, _batch(behaviour_shift=0.0))
    a = IMPALALoss(actor, critic, correction="vtrace")(data.clone())
    b = IMPALALoss(actor, critic, correction="none")(data.clone())
    for key in ("loss_objective", "loss_critic"):
        torch.testing.assert_close(a[key], b[key])


def test_ablations_differ_as_the_paper_defines_them():
    actor, critic, _ = _nets()
    data = _with_behaviour(actor, _batch(behaviour_shift=0.8))
    out = {c: IMPALALoss(actor, critic, correction=c)(data.clone()) for c in ("vtrace", "none", "epsilon", "one_step_is")}
    # the critic targets: corrected only by V-trace
    torch.testing.assert_close(out["none"]["loss_critic"], out["one_step_is"]["loss_critic"])
    torch.testing.assert_close(out["none"]["loss_critic"], out["epsilon"]["loss_critic"])
    assert not torch.isclose(out["vtrace"]["loss_critic"], out["none"]["loss_critic"])
    # epsilon: log(pi + 1e-6) barely differs from log pi for these probabilities
    torch.testing.assert_close(out["epsilon"]["loss_objective"], out["none"]["loss_objective"], atol=1e-4, rtol=1e-4)
    # 1-step IS: the uncorrected advantage times the raw ratio pi/mu
    with torch.no_grad():
        log_pi = actor.get_dist(data.clone()).log_prob(data["action"])
    ratio = (log_pi - data["action_log_prob"]).exp()
    assert out["one_step_is"]["advantage"] != pytest.approx(out["none"]["advantage"].item())
    assert ratio.max() > 1.5  # some weights are far from 1, so the two must differ


def test_popart_targets_and_advantages_are_normalized():
    actor, critic, popart = _nets(popart_tasks=1)
    data = _with_behaviour(actor, _batch())
    data["next", "reward"] *= 1000.0
    probe = data.clone()
    before = critic(probe.clone())["state_value"]
    loss = IMPALALoss(actor, critic, popart=popart)
    out = loss(data.clone())
    assert popart.mu.abs().item() > 1.0  # the statistics moved towards the targets' scale
    torch.testing.assert_close(critic(probe.clone())["state_value"], before, atol=1e-3, rtol=1e-5)  # outputs preserved
    # the critic loss is on the normalized scale, far below the raw squared error of ~1e6
    assert out["loss_critic"] < 1e3
    grads = torch.autograd.grad(out["loss_critic"], list(popart.parameters()))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_multitask_popart_needs_task_ids():
    actor, critic, popart = _nets(popart_tasks=3)
    data = _with_behaviour(actor, _batch())
    loss = IMPALALoss(actor, critic, popart=popart)
    with pytest.raises(KeyError, match="task_id"):
        loss(data.clone())
    data["task_id"] = torch.tensor([[0] * T, [2] * T])
    out = loss(data.clone())
    assert torch.isfinite(out["loss_critic"])
    assert popart.mu[1] == 0 and popart.mu[0] != 0 and popart.mu[2] != 0  # task 1 absent: untouched


def test_bad_arguments_are_named():
    actor, critic, _ = _nets()
    with pytest.raises(ValueError, match="`correction` must be one of.*'vtrace', 'none', 'epsilon', 'one_step_is'"):
        IMPALALoss(actor, critic, correction="retrace")
    with pytest.raises(ValueError, match="`rho_bar` must be > 0"):
        IMPALALoss(actor, critic, rho_bar=0.0)
    with pytest.raises(TypeError, match="`popart`"):
        IMPALALoss(actor, critic, popart=torch.nn.Linear(2, 1))
    assert math.isfinite(IMPALALoss(actor, critic).gamma)


# -- the value estimator, swapped by make_value_estimator ---------------------------------------------
def _values(critic, data):
    with torch.no_grad():
        return critic(data.clone())["state_value"], critic(data["next"].clone())["state_value"]


def test_default_estimator_is_our_vtrace_with_the_loss_hyperparameters():
    from oracles import vtrace_loop

    from latentrl.objectives.value import VTrace

    actor, critic, _ = _nets()
    loss = IMPALALoss(actor, critic, gamma=0.9, rho_bar=1.5, c_bar=0.8, pg_rho_bar=2.0, lmbda=0.7)
    assert type(loss.value_estimator) is VTrace and loss.value_estimator.lmbda == 0.7
    data = _with_behaviour(actor, _batch(done_at=1))
    out = loss(data.clone())
    v, nv = _values(critic, data)
    with torch.no_grad():
        log_pi = actor.get_dist(data.clone()).log_prob(data["action"]).unsqueeze(-1)
    vs, adv, _ = vtrace_loop((log_pi, data["action_log_prob"].unsqueeze(-1)), v, nv, data["next", "reward"],
                             data["next", "done"], data["next", "terminated"], gamma=0.9, rho_bar=1.5, c_bar=0.8,
                             pg_rho_bar=2.0, lmbda=0.7)
    torch.testing.assert_close(out["value_target"], vs.mean())
    torch.testing.assert_close(out["advantage"], adv.mean())
    torch.testing.assert_close(out["loss_critic"], 0.5 * 0.5 * (vs - v).pow(2).mean())


def test_a_torchrl_estimator_swaps_in_without_subclassing():
    from torchrl.objectives.utils import ValueEstimators
    from torchrl.objectives.value.functional import td_lambda_return_estimate

    actor, critic, _ = _nets()
    loss = IMPALALoss(actor, critic, gamma=0.9)
    loss.make_value_estimator(ValueEstimators.TDLambda, lmbda=0.8)
    data = _with_behaviour(actor, _batch(done_at=1))
    out = loss(data.clone())
    v, nv = _values(critic, data)
    target = td_lambda_return_estimate(0.9, 0.8, nv, data["next", "reward"], data["next", "done"],
                                       data["next", "terminated"])
    torch.testing.assert_close(out["value_target"], target.mean())
    torch.testing.assert_close(out["advantage"], (target - v).mean())  # TD(lambda) advantage, no importance weights
    torch.testing.assert_close(out["loss_critic"], 0.5 * 0.5 * (target - v).pow(2).mean())


def test_an_estimator_instance_and_renamed_keys_reach_the_estimator():
    from latentrl.objectives.value import VTrace

    actor, critic, _ = _nets()
    loss = IMPALALoss(actor, critic, gamma=0.9)
    data = _with_behaviour(actor, _batch(done_at=1))
    base = loss(data.clone())
    loss.make_value_estimator(VTrace(gamma=0.9, actor_network=actor, value_network=None, lmbda=0.0))
    one_step = loss(data.clone())
    assert not torch.isclose(base["value_target"], one_step["value_target"])  # lambda 0 cuts every trace
    renamed = data.clone().rename_key_("action_log_prob", "mu")
    loss.set_keys(sample_log_prob="mu")
    assert loss.value_estimator.tensor_keys.sample_log_prob == "mu"
    torch.testing.assert_close(loss(renamed)["value_target"], one_step["value_target"])
