"""FTW's two-timescale core: the slow core's ticks, the gradient scale, the KL terms, keys and errors."""
import math

import pytest
import torch
from tensordict import TensorDict

from latentrl.checks import InputError
from latentrl.modules import (
    TwoTimescaleCore,
    TwoTimescaleModule,
    scale_gradient,
    two_timescale_kl,
)


def _core(**kw):
    torch.manual_seed(0)
    return TwoTimescaleCore(5, fast_hidden=6, slow_hidden=7, z_dim=3, **{"period": 4, **kw})


def test_slow_core_updates_exactly_every_period_steps_and_holds_in_between():
    core = _core(period=4)
    B, T = 2, 15
    x = torch.randn(B, T, 5)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[1, 6] = True  # env 1 starts a new episode at t = 6: its ticks restart there
    out, _ = core.unroll(x, is_init, core.initial_state((B,)))
    ticks = {0: [t for t in range(T) if t % 4 == 0], 1: [0, 4] + [t for t in range(6, T) if (t - 6) % 4 == 0]}
    for b in range(B):
        assert [t for t in range(T) if out["tick"][b, t, 0]] == ticks[b]
        for t in range(1, T):
            same = torch.equal(out["prior_mean"][b, t], out["prior_mean"][b, t - 1])
            assert same == (t not in ticks[b]), (b, t)  # the prior (the slow output) changes only at ticks
        assert not torch.equal(out["post_mean"][b, 1], out["post_mean"][b, 2])  # the fast core moves every step


def test_period_one_ticks_every_step():  # the single-timescale control
    core = _core(period=1)
    out, _ = core.unroll(torch.randn(2, 5, 5), torch.zeros(2, 5, 1, dtype=torch.bool), core.initial_state((2,)))
    assert bool(out["tick"].all())


def test_slow_state_is_held_bitwise_between_ticks():
    core = _core(period=3)
    state = core.initial_state((1,))
    held = []
    for t in range(7):
        _, state = core.step(torch.randn(1, 5), state)
        held.append(state["slow_h"].clone())
    # ticks at steps 0, 3, 6: the state after steps 0-2 is one value, after 3-5 another
    assert torch.equal(held[0], held[1]) and torch.equal(held[1], held[2]) and not torch.equal(held[2], held[3])
    assert torch.equal(held[3], held[5]) and not torch.equal(held[5], held[6])


@pytest.mark.parametrize("scale,steps", [(0.0, 9), (0.25, 4), (1.0, 4)])
def test_grad_scale_scales_the_gradient_reaching_the_slow_core(scale, steps):
    """Within one slow period every path from the fast core's output into the slow core crosses the scaled
    inputs once: the gradient is exactly ``scale`` times the unscaled one. Over more ticks paths cross them
    repeatedly (``scale ** k``); 0 still blocks every one."""
    x = torch.randn(3, steps, 5)
    is_init = torch.zeros(3, steps, 1, dtype=torch.bool)

    def slow_grads(s):
        core = _core(grad_scale=s)
        torch.manual_seed(1)
        out, _ = core.unroll(x, is_init, core.initial_state((3,)))
        out["post_mean"].square().sum().backward()  # a loss on the fast core's output only
        return torch.cat([p.grad.flatten() for p in core.slow.parameters()]), out["post_mean"].detach()

    full, forward_full = slow_grads(1.0)
    scaled, forward_scaled = slow_grads(scale)
    assert torch.equal(forward_full, forward_scaled)  # the forward pass does not depend on the scale
    assert full.abs().sum() > 0
    torch.testing.assert_close(scaled, scale * full, rtol=1e-5, atol=1e-7)
    if scale == 0.0:
        assert torch.count_nonzero(scaled) == 0  # blocked


def test_scale_gradient_alone():
    x = torch.randn(4, requires_grad=True)
    y = scale_gradient(x, 0.3)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.3))


def test_kl_terms_match_the_closed_form_at_ticks_only():
    torch.manual_seed(2)
    mq, mp = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    sq, sp = torch.rand(2, 3, 4) + 0.2, torch.rand(2, 3, 4) + 0.2
    tick = torch.tensor([[[True], [False], [True]], [[False], [False], [True]]])
    sigma = 0.5
    kl_qp, kl_p0 = two_timescale_kl(mq, sq, mp, sp, tick, sigma)

    def kl(m1, s1, m2, s2):  # KL(N(m1, s1^2) || N(m2, s2^2)) per dimension, written out
        return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5

    want_qp = want_p0 = 0.0
    steps = [(b, t) for b in range(2) for t in range(3) if tick[b, t, 0]]
    for b, t in steps:
        want_qp += sum(kl(mq[b, t, i].item(), sq[b, t, i].item(), mp[b, t, i].item(), sp[b, t, i].item()) for i in range(4))
        want_p0 += sum(kl(mp[b, t, i].item(), sp[b, t, i].item(), 0.0, sigma) for i in range(4))
    assert kl_qp.item() == pytest.approx(want_qp / len(steps), rel=1e-5)
    assert kl_p0.item() == pytest.approx(want_p0 / len(steps), rel=1e-5)
    none = torch.zeros_like(tick)
    assert two_timescale_kl(mq, sq, mp, sp, none)[0].item() == 0.0


def test_keyed_module_carries_the_state_and_resets_at_is_init():
    core = _core(period=2)
    module = TwoTimescaleModule(core, in_key="emb", out_prefix="ftw_")
    primer = module.make_tensordict_primer()
    assert set(primer.primers["two_timescale"].keys()) == set(TwoTimescaleCore.FIELDS)
    state = {f: v for f, v in core.initial_state((2,)).items()}
    td = TensorDict({"emb": torch.randn(2, 5), "is_init": torch.tensor([[True], [False]]),
                     "two_timescale": state}, batch_size=[2])
    td["two_timescale", "steps"] = torch.tensor([[5], [3]])
    module(td)
    # env 0 reset: step count 0 -> tick; env 1 at step 3 of period 2 -> no tick
    assert td["ftw_tick"].tolist() == [[True], [False]]
    assert td["next", "two_timescale", "steps"].tolist() == [[1], [4]]
    assert td["ftw_z"].shape == (2, 3) and td["next", "two_timescale", "slow_h"].shape == (2, 7)


def test_bad_inputs_name_the_argument_or_key():
    core = _core()
    with pytest.raises(InputError, match=r"embedding \[\*, 5\]"):
        core.step(torch.randn(2, 4), core.initial_state((2,)))
    with pytest.raises(InputError, match="lacks.*'steps'"):
        core.step(torch.randn(2, 5), {k: v for k, v in core.initial_state((2,)).items() if k != "steps"})
    with pytest.raises(InputError, match="grad_scale.*\\[0, 1\\]"):
        core.grad_scale = 1.5
    with pytest.raises(InputError, match="period.*integer >= 1"):
        TwoTimescaleCore(5, period=0)
    with pytest.raises(InputError, match="tick.*\\[\\*, 1\\]"):
        two_timescale_kl(*(torch.zeros(2, 3) for _ in range(4)), torch.zeros(2, dtype=torch.bool))
    module = TwoTimescaleModule(core, in_key="emb")
    with pytest.raises(Exception, match="emb"):
        module(TensorDict({"is_init": torch.ones(2, 1, dtype=torch.bool)}, batch_size=[2]))
