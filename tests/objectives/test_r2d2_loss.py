"""R2D2Loss: a hand-computed small case, burn-in without gradients, burn-in steps out of the loss, weights."""
import copy
import math

import pytest
import torch
from tensordict import TensorDict

from latentrl.modules.q_networks import make_recurrent_q_network
from latentrl.objectives.r2d2 import R2D2Loss, delta_q

EPS = 1e-3
GAMMA = 0.9
N = 2


def _net(seed=0):
    torch.manual_seed(seed)
    return make_recurrent_q_network((2,), 2, mlp_hidden=(4,), lstm_hidden=3, head_hidden=0).double()


def _sequences(B, L, seed=1, ends=None):
    """[B, L] sequences in the replay layout, zero stored state; ``ends[b] = (t, terminated)`` ends episode b at t."""
    g = torch.Generator().manual_seed(seed)
    valid = torch.ones(B, L, dtype=torch.bool)
    bootstrap = torch.zeros(B, L, dtype=torch.bool)
    done = torch.zeros(B, L, 1, dtype=torch.bool)
    terminated = torch.zeros(B, L, 1, dtype=torch.bool)
    for b, (t, term) in (ends or {}).items():
        done[b, t] = True
        terminated[b, t] = term
        valid[b, t + 1 :] = False
        if t + 1 < L:
            bootstrap[b, t + 1] = True
    actions = torch.randint(0, 2, (B, L), generator=g)
    is_init = torch.zeros(B, L, 1, dtype=torch.bool)
    is_init[:, 0] = True
    return TensorDict(
        {
            "observation": torch.randn(B, L, 2, generator=g, dtype=torch.float64),
            "prev_action": torch.nn.functional.one_hot(torch.randint(0, 2, (B, L), generator=g), 2).double(),
            "prev_reward": torch.rand(B, L, 1, generator=g, dtype=torch.float64),
            "recurrent_state_h": torch.zeros(B, L, 1, 3, dtype=torch.float64),
            "recurrent_state_c": torch.zeros(B, L, 1, 3, dtype=torch.float64),
            "is_init": is_init,
            "action": torch.nn.functional.one_hot(actions, 2),
            "valid": valid,
            "mask": valid.clone(),
            "bootstrap": bootstrap,
            "next": {
                "reward": torch.rand(B, L, 1, generator=g, dtype=torch.float64) * 3,
                "done": done,
                "terminated": terminated,
            },
        },
        batch_size=[B, L],
    )


def _step_by_step(net, td, state=None):
    """Q-values by stepping the network one step at a time, carrying the LSTM state (the actor's way)."""
    B, L = td.shape
    h = torch.zeros(B, 1, 3, dtype=torch.float64) if state is None else state[0]
    c = torch.zeros(B, 1, 3, dtype=torch.float64) if state is None else state[1]
    qs = []
    for t in range(L):
        step = td[:, t].select("observation", "prev_action", "prev_reward").clone()
        step.set("recurrent_state_h", h)
        step.set("recurrent_state_c", c)
        step.set("is_init", torch.zeros(B, 1, dtype=torch.bool))
        net(step)
        qs.append(step["action_value"])
        h, c = step["next", "recurrent_state_h"], step["next", "recurrent_state_c"]
    return torch.stack(qs, 1), (h, c)


def _h(x):
    return math.copysign(math.sqrt(abs(x) + 1) - 1, x) + EPS * x


def _h_inv(y):
    return math.copysign(((math.sqrt(1 + 4 * EPS * (abs(y) + 1 + EPS)) - 1) / (2 * EPS)) ** 2 - 1, y)


def test_zero_burn_in_zero_state_hand_computed():
    net = _net()
    loss_module = R2D2Loss(net, burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS, priority_eta=0.9)
    with torch.no_grad():  # a target network different from the online one
        for p in loss_module.target_value_network_params.values(True, True):
            p.add_(0.05 * torch.randn_like(p))
    target_net = copy.deepcopy(net)
    loss_module.target_value_network_params.to_module(target_net)
    L = 6
    td = _sequences(3, L, ends={1: (2, True), 2: (3, False)})  # 0: no end, 1: terminated at 2, 2: truncated at 3
    out = loss_module(td)

    with torch.no_grad():
        q, _ = _step_by_step(net, td)
        qt, _ = _step_by_step(target_net, td)
    r = td["next", "reward"].squeeze(-1)
    done = td["next", "done"].squeeze(-1)
    term = td["next", "terminated"].squeeze(-1)
    has_state = td["valid"] | td["bootstrap"]
    expected_losses, priorities = [], []
    for b in range(3):
        deltas = []
        for t in range(L):
            if not td["valid"][b, t]:
                continue
            kstar = next((k for k in range(N) if t + k < L and done[b, t + k]), None)
            if kstar is not None:
                ret = sum(GAMMA**j * r[b, t + j].item() for j in range(kstar + 1))
                boot = None if term[b, t + kstar] else (t + kstar + 1, kstar + 1)
            else:
                n_ = min(N, L - 1 - t)
                if n_ == 0:
                    continue  # the sequence's last step: no target
                ret = sum(GAMMA**j * r[b, t + j].item() for j in range(n_))
                boot = (t + n_, n_)
            if boot is not None:
                s, kk = boot
                if s >= L or not has_state[b, s]:
                    continue
                a_star = q[b, s].argmax().item()
                ret += GAMMA**kk * _h_inv(qt[b, s, a_star].item())
            q_taken = (q[b, t] * td["action"][b, t]).sum().item()
            deltas.append(_h(ret) - q_taken)
        expected_losses.append(sum(0.5 * d * d for d in deltas) / len(deltas))
        mags = [abs(d) for d in deltas]
        priorities.append(0.9 * max(mags) + 0.1 * sum(mags) / len(mags))
    assert out["loss"].item() == pytest.approx(sum(expected_losses) / 3, rel=1e-9)
    torch.testing.assert_close(out["priority"], torch.tensor(priorities, dtype=torch.float64), rtol=1e-9, atol=0)
    # the last step of an unfinished sequence has no target; every other real step has one
    assert not out["loss_mask"][0, -1] and out["loss_mask"][0, :-1].all()
    assert out["loss_mask"][1, :3].all() and not out["loss_mask"][1, 3:].any()


def test_burn_in_is_a_gradient_free_warm_up_from_the_stored_state():
    burn_in, L = 3, 7
    net = _net(2)
    td = _sequences(2, L, seed=4)
    td["mask"][:, :burn_in] = False
    stored = torch.randn(2, 1, 3, dtype=torch.float64), torch.randn(2, 1, 3, dtype=torch.float64)
    td["recurrent_state_h"][:, 0], td["recurrent_state_c"][:, 0] = stored
    loss_module = R2D2Loss(net, burn_in=burn_in, n_steps=N, gamma=GAMMA, rescale_eps=EPS)  # target = online here
    out = loss_module(td)
    out["loss"].backward()
    grads = [p.grad.clone() for p in loss_module.value_network_params.values(True, True)]

    # the same training steps, started by hand from the state the burn-in reaches, no burn-in
    with torch.no_grad():
        _, state = _step_by_step(net, td[:, :burn_in], state=stored)
    td2 = td[:, burn_in:].clone()
    td2["recurrent_state_h"][:, 0], td2["recurrent_state_c"][:, 0] = state
    net2 = copy.deepcopy(net)
    loss2 = R2D2Loss(net2, burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    out2 = loss2(td2)
    out2["loss"].backward()
    assert out["loss"].item() == pytest.approx(out2["loss"].item(), rel=1e-10)
    torch.testing.assert_close(out["priority"], out2["priority"])
    for g1, g2 in zip(grads, (p.grad for p in loss2.value_network_params.values(True, True))):
        torch.testing.assert_close(g1, g2)  # no gradient through the burn-in unroll

    # starting from zeros instead of the stored state changes the result
    td0 = td.clone()
    td0["recurrent_state_h"].zero_()
    td0["recurrent_state_c"].zero_()
    assert loss_module(td0)["loss"].item() != pytest.approx(out["loss"].item(), rel=1e-6)


def test_burn_in_steps_never_enter_the_loss_or_priorities():
    burn_in, L = 3, 8
    net = _net(3)
    loss_module = R2D2Loss(net, burn_in=burn_in, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    td = _sequences(2, L, seed=5)
    td["mask"][:, :burn_in] = False
    out = loss_module(td)
    changed = td.clone()
    changed["next", "reward"][:, :burn_in] = 100.0  # rewards and actions of burn-in steps
    changed["action"][:, :burn_in] = 1 - changed["action"][:, :burn_in]
    out2 = loss_module(changed)
    assert out["loss"].item() == pytest.approx(out2["loss"].item(), rel=1e-12)
    torch.testing.assert_close(out["priority"], out2["priority"])
    assert out["td_error"].shape == (2, L - burn_in)

    with pytest.raises(ValueError, match="burn_in=3"):
        loss_module(_sequences(2, L))  # mask set on burn-in positions: layouts disagree


def test_importance_weights_scale_each_sequence():
    net = _net(4)
    loss_module = R2D2Loss(net, burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    td = _sequences(2, 5, seed=6)
    per_seq = []
    for b in range(2):
        one = td.clone()
        one["_weight"] = torch.tensor([1.0, 0.0] if b == 0 else [0.0, 1.0], dtype=torch.float64)[:, None].expand(2, 5)
        per_seq.append(loss_module(one)["loss"].item() * 2)
    td["_weight"] = torch.tensor([0.3, 2.0], dtype=torch.float64)[:, None].expand(2, 5)  # [B, L] as the buffer gives
    assert loss_module(td)["loss"].item() == pytest.approx((0.3 * per_seq[0] + 2.0 * per_seq[1]) / 2, rel=1e-10)


def test_delta_q_zero_for_fresh_states_and_positive_for_stale_ones():
    net = _net(5)
    ep = _sequences(1, 12, seed=7)[0]
    with torch.no_grad():
        _, _ = _step_by_step(net, ep.unsqueeze(0))
        # the states the current network has at each step: stored states are then exact
        hs, cs = [], []
        h = torch.zeros(1, 1, 3, dtype=torch.float64)
        c = torch.zeros(1, 1, 3, dtype=torch.float64)
        for t in range(12):
            hs.append(h[0])
            cs.append(c[0])
            _, (h, c) = _step_by_step(net, ep[t : t + 1].unsqueeze(0), state=(h, c))
    ep["recurrent_state_h"] = torch.stack(hs)
    ep["recurrent_state_c"] = torch.stack(cs)
    fresh = delta_q(net, ep, [4, 8], burn_in=2, seq_len=4)
    assert fresh["first"] < 1e-10 and fresh["last"] < 1e-10
    zero = delta_q(net, ep, [4, 8], burn_in=0, seq_len=4, stored_state=False)
    assert zero["first"] > 1e-3  # a zero state at t0 is not the state the episode reached


def test_target_network_copied_every_interval_steps():
    from latentrl.objectives.target_updates import HardUpdateEvery

    net = _net(6)
    loss_module = R2D2Loss(net, burn_in=0, n_steps=N, gamma=GAMMA, rescale_eps=EPS)
    updater = HardUpdateEvery(loss_module, value_network_update_interval=3)
    optim = torch.optim.SGD(loss_module.parameters(), lr=0.1)
    online = loss_module.value_network_params
    target = loss_module.target_value_network_params
    td = _sequences(2, 5, seed=8)
    snapshots = []
    for _ in range(6):
        optim.zero_grad()
        loss_module(td)["loss"].backward()
        optim.step()
        updater.step()
        snapshots.append(all(torch.equal(a, b) for a, b in zip(online.values(True, True), target.values(True, True))))
    assert snapshots == [False, False, True, False, False, True]  # copied on learner steps 3 and 6
    assert all(p.grad is None for p in target.values(True, True))  # the loss never differentiates the target
