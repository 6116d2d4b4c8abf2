"""Value rescaling h, h^-1 (Pohlen et al. 2018) and R2D2's rescaled n-step double-Q targets."""
import pytest
import torch
from oracles import rescaled_n_step_targets_loop
from torchrl.objectives.value.functional import td0_return_estimate

from latentrl.objectives.value import (
    rescaled_n_step_targets,
    value_rescale,
    value_rescale_inverse,
)

EPS = 1e-3
ULP32 = 2.0**-24  # unit roundoff of float32


def _grid(dtype=torch.float64) -> torch.Tensor:
    mags = torch.logspace(-6, 8, 2001, dtype=torch.float64)
    return torch.cat([mags, -mags, torch.zeros(1, dtype=torch.float64)]).to(dtype)


def _naive_inverse(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The formula as printed: sign(x)(((sqrt(1 + 4eps(|x| + 1 + eps)) - 1) / (2eps))^2 - 1)."""
    return x.sign() * (((torch.sqrt(1 + 4 * eps * (x.abs() + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.double(), b.double()
    return torch.where(b == 0, (a - b).abs(), (a - b).abs() / b.abs())


# --------------------------------------------------------------------------
# h and h^-1
# --------------------------------------------------------------------------
def test_hand_computed_values():
    x = torch.tensor([0.0, 3.0, -3.0, 8.0, 99.0, -1.25], dtype=torch.float64)
    # sqrt(|x| + 1) - 1 = 0, 1, 1, 2, 9, 0.5
    expected = torch.tensor([0.0, 1.003, -1.003, 2.008, 9.099, -0.5 - 0.00125], dtype=torch.float64)
    torch.testing.assert_close(value_rescale(x), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(value_rescale_inverse(expected), x, rtol=1e-14, atol=0)
    # eps changes only the linear term
    torch.testing.assert_close(value_rescale(torch.tensor(3.0, dtype=torch.float64), eps=0.5), torch.tensor(2.5, dtype=torch.float64))


def test_round_trip_float64():
    x = _grid()
    assert (_rel(value_rescale_inverse(value_rescale(x)), x) <= 1e-9).all()
    assert (_rel(value_rescale(value_rescale_inverse(x)), x) <= 1e-9).all()
    # actually ~1e-15
    assert _rel(value_rescale_inverse(value_rescale(x)), x).max() < 1e-14
    assert value_rescale(torch.zeros(1)).item() == 0.0 and value_rescale_inverse(torch.zeros(1)).item() == 0.0


def test_matches_the_printed_formulas_in_float64():
    x = _grid()
    h_printed = x.sign() * (torch.sqrt(x.abs() + 1) - 1) + EPS * x
    far = x.abs() > 1e-2  # where the printed formulas are accurate in float64 too
    torch.testing.assert_close(value_rescale(x)[far], h_printed[far], rtol=1e-13, atol=0)
    torch.testing.assert_close(value_rescale_inverse(x)[far], _naive_inverse(x)[far], rtol=1e-10, atol=0)


def test_odd_monotone_and_gradients():
    x = _grid().sort().values
    y = value_rescale(x)
    assert (y.diff() > 0).all()
    torch.testing.assert_close(value_rescale(-x), -y, rtol=0, atol=0)
    torch.testing.assert_close(value_rescale_inverse(-y), -value_rescale_inverse(y), rtol=0, atol=0)
    z = torch.tensor([0.0, 1e-3, -2.0, 1e6], dtype=torch.float64, requires_grad=True)
    g_h, g_inv = torch.autograd.grad(value_rescale(z).sum(), z)[0], torch.autograd.grad(value_rescale_inverse(z).sum(), z)[0]
    # h'(0) = 1/2 + eps, (h^-1)'(0) = 1 / (1/2 + eps) (a sign(x) factor would make it 0)
    assert g_h[0].item() == pytest.approx(0.5 + EPS, rel=1e-12)
    assert g_inv[0].item() == pytest.approx(1 / (0.5 + EPS), rel=1e-12)
    zz = z.detach()
    h_prime = 1 / (2 * torch.sqrt(zz.abs() + 1)) + EPS
    torch.testing.assert_close(g_h, h_prime, rtol=1e-10, atol=0)
    inv_prime = 1 / (1 / (2 * torch.sqrt(value_rescale_inverse(zz).abs() + 1)) + EPS)  # 1 / h'(h^-1(y))
    torch.testing.assert_close(g_inv, inv_prime, rtol=1e-10, atol=0)


# measured (see the module docstring): round trip max 6.1e-7 = 10.2 u (u = 2^-24) over [1e-6, 1e8],
# h alone 3.2 u, h^-1 alone 8.9 u. h is relatively well conditioned (x h'/h in [1/2, 1]),
# h^-1 likewise (in [1, 2]); the bound below is ~16.8 u.
FLOAT32_ROUND_TRIP_BOUND = 1e-6


def test_float32_accuracy_ours_vs_naive():
    x64 = _grid()
    x32 = x64.float()
    exact = x32.double()
    ours = value_rescale_inverse(value_rescale(x32))
    assert ours.dtype == torch.float32
    err_ours = _rel(ours, exact)
    assert err_ours.max() <= FLOAT32_ROUND_TRIP_BOUND
    assert (ours.sign() == exact.sign()).all()
    # h and h^-1 separately, each against float64 at the same float32 input
    y32 = value_rescale(x32)
    assert _rel(y32, value_rescale(exact)).max() <= 6 * ULP32  # measured 3.2 u
    assert _rel(value_rescale_inverse(y32), value_rescale_inverse(y32.double())).max() <= 16 * ULP32  # measured 8.9

    # the printed inverse formula cancels catastrophically near 0: wrong sign and errors > 100%
    naive = _naive_inverse(value_rescale(x32))
    err_naive = _rel(naive, exact)
    small = exact.abs() < 1e-4
    assert (naive.sign() != exact.sign()).sum() > 100
    assert err_naive[small].max() > 10.0
    assert err_naive[(exact.abs() >= 1) & (exact.abs() < 1e4)].max() > 1e-5  # still 100x worse at 1..1e4
    assert err_naive.max() > 1e6 * err_ours.max()


# --------------------------------------------------------------------------
# n-step targets
# --------------------------------------------------------------------------
def _seq(done=(), terminated=(), has_state=(0, 1, 2, 3), length=4):
    d = torch.zeros(length, dtype=torch.bool)
    term = torch.zeros(length, dtype=torch.bool)
    s = torch.zeros(length, dtype=torch.bool)
    d[list(done)] = True
    term[list(terminated)] = True
    s[list(has_state)] = True
    return d, term, s


R = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
Q = torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64)  # return-space values of s_0..s_3
BV = value_rescale(Q)  # what the network outputs
KW = dict(gamma=0.5, n=2)


def _check(done, terminated, has_state, expected, n=2):
    h = value_rescale
    target, mask = rescaled_n_step_targets(R, done, terminated, BV, has_state, gamma=0.5, n=n)
    ref_target, ref_mask = rescaled_n_step_targets_loop(R, done, terminated, BV, has_state, gamma=0.5, n=n)
    exp_mask = torch.tensor([e is not None for e in expected])
    exp_target = torch.tensor([0.0 if e is None else e for e in expected], dtype=torch.float64)
    exp_target = torch.where(exp_mask, h(exp_target), exp_target)
    assert mask.tolist() == exp_mask.tolist() == ref_mask.tolist()
    torch.testing.assert_close(target, exp_target, rtol=1e-12, atol=0)
    torch.testing.assert_close(ref_target, exp_target, rtol=1e-12, atol=0)


def test_no_done_and_sequence_end():
    # t=0: 1 + .5*2 + .25*30; t=1: 2 + .5*3 + .25*40; t=2: n'=1: 3 + .5*40; t=3: n'=0 -> undefined
    _check(*_seq(), [9.5, 13.5, 23.0, None])


def test_terminated_inside():
    # episode terminates on the transition 1->2; s_2 is its final state (bootstrap position)
    d, term, s = _seq(done=[1], terminated=[1], has_state=[0, 1, 2])
    # t=0: 1 + .5*2 (no bootstrap); t=1: 2; t=2: no done after, n'=1 needs s_3 (missing)
    _check(d, term, s, [2.0, 2.0, None, None])


def test_truncated_inside():
    d, term, s = _seq(done=[1], terminated=[], has_state=[0, 1, 2])
    # t=0: 1 + .5*2 + .25*Q[2] (k*+1 = 2 = n: same as no done); t=1: 2 + .5*Q[2]
    _check(d, term, s, [9.5, 17.0, None, None])
    # truncated, but the final next-state is not stored: undefined
    d, term, s = _seq(done=[1], terminated=[], has_state=[0, 1])
    _check(d, term, s, [None, None, None, None])


def test_terminated_differs_from_truncated_only_by_bootstrap():
    d, term, s = _seq(done=[0], terminated=[0], has_state=[0, 1])
    _check(d, term, s, [1.0, None, None, None])
    d, term, s = _seq(done=[0], terminated=[], has_state=[0, 1])
    _check(d, term, s, [1.0 + 0.5 * 20.0, None, None, None])


def test_done_at_the_last_step():
    d, term, s = _seq(done=[3], terminated=[3])
    # t=2: 3 + .5*4 (terminated at 3 beats the sequence end); t=3: 4; t=1: 2 + .5*3 + .25*40
    _check(d, term, s, [9.5, 13.5, 5.0, 4.0])
    d, term, s = _seq(done=[3], terminated=[])
    # truncated at 3: its next state s_4 is outside the sequence
    _check(d, term, s, [9.5, 13.5, None, None])


def test_n_larger_than_sequence():
    # n = 10 > L: t=0: n'=3: 1 + .5*2 + .25*3 + .125*40
    _check(*_seq(), [1 + 1 + 0.75 + 5.0, 2 + 1.5 + 0.25 * 40, 3 + 0.5 * 40, None], n=10)


def test_n1_is_one_step_double_q_with_rescaling():
    torch.manual_seed(0)
    B, L, gamma = 5, 9, 0.75  # exact in float32: TorchRL computes gamma * (~terminated).int() in float32
    reward = torch.randn(B, L, dtype=torch.float64) * 10
    terminated = torch.rand(B, L) < 0.2
    done = terminated | (torch.rand(B, L) < 0.1)
    has_state = torch.ones(B, L, dtype=torch.bool)
    bv = torch.randn(B, L, dtype=torch.float64) * 3
    target, mask = rescaled_n_step_targets(reward, done, terminated, bv, has_state, gamma=gamma, n=1)
    next_q = torch.cat([value_rescale_inverse(bv[:, 1:]), torch.zeros(B, 1, dtype=torch.float64)], -1)
    expected = value_rescale(
        td0_return_estimate(gamma, next_q.unsqueeze(-1), reward.unsqueeze(-1), terminated.unsqueeze(-1)).squeeze(-1)
    )
    assert mask[:, :-1].all() and (mask[:, -1] == terminated[:, -1]).all()
    torch.testing.assert_close(target[mask], expected[mask], rtol=1e-12, atol=1e-12)


def test_reduces_to_plain_n_step_return_in_return_space():
    """Without episode ends, h^-1(y_t) is the plain n-step return over h^-1(bootstrap)."""
    torch.manual_seed(1)
    B, L, n, gamma = 3, 20, 5, 0.997
    reward = torch.randn(B, L, dtype=torch.float64)
    q = torch.randn(B, L, dtype=torch.float64) * 100
    false = torch.zeros(B, L, dtype=torch.bool)
    target, mask = rescaled_n_step_targets(reward, false, false, value_rescale(q), ~false, gamma=gamma, n=n)
    assert mask[:, :-1].all() and not mask[:, -1].any()
    discounts = gamma ** torch.arange(n, dtype=torch.float64)
    windows = reward.unfold(-1, n, 1)  # [B, L-n+1, n]
    plain = (windows * discounts).sum(-1)[:, : L - n] + gamma**n * q[:, n:]
    torch.testing.assert_close(value_rescale_inverse(target[:, : L - n]), plain, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 5, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorized_matches_reference(n, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (3, 2, 13)
    reward = torch.randn(shape, generator=g, dtype=torch.float64) * 5
    done = torch.rand(shape, generator=g) < 0.2
    terminated = done & (torch.rand(shape, generator=g) < 0.5)
    has_state = torch.rand(shape, generator=g) < 0.8
    bv = torch.randn(shape, generator=g, dtype=torch.float64) * 5
    kw = dict(gamma=0.95, n=n, eps=1e-2)
    fast = rescaled_n_step_targets(reward, done, terminated, bv, has_state, **kw)
    ref = rescaled_n_step_targets_loop(reward, done, terminated, bv, has_state, **kw)
    assert fast[1].tolist() == ref[1].tolist()
    assert fast[1].any() and not fast[1].all()
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-12, atol=1e-12)
    assert (fast[0][~fast[1]] == 0).all()
    # time_dim: the same data laid out time-first
    moved = [x.movedim(-1, 0) for x in (reward, done, terminated, bv, has_state)]
    fast_t = rescaled_n_step_targets(*moved, time_dim=0, **kw)
    torch.testing.assert_close(fast_t[0].movedim(0, -1), fast[0], rtol=0, atol=0)
    assert (fast_t[1].movedim(0, -1) == fast[1]).all()


def test_one_dim_and_float32():
    d, term, s = _seq()
    target, mask = rescaled_n_step_targets(R.float(), d, term, BV.float(), s, **KW)
    assert target.dtype == torch.float32 and target.shape == (4,)
    torch.testing.assert_close(target[:3], value_rescale(torch.tensor([9.5, 13.5, 23.0])), rtol=1e-6, atol=0)


def test_shape_and_dtype_errors():
    d, term, s = _seq()
    with pytest.raises(ValueError, match="done"):
        rescaled_n_step_targets(R, d.unsqueeze(-1), term, BV, s)
    with pytest.raises(TypeError, match="has_state"):
        rescaled_n_step_targets(R, d, term, BV, s.float())
    with pytest.raises(ValueError, match="`n` must"):
        rescaled_n_step_targets(R, d, term, BV, s, n=0)


def test_short_sequences_match_reference():
    g = torch.Generator().manual_seed(3)
    for _ in range(60):
        length = int(torch.randint(1, 8, (1,), generator=g))
        n = int(torch.randint(1, 10, (1,), generator=g))
        shape = (2, length)
        reward = torch.randn(shape, generator=g, dtype=torch.float64)
        done = torch.rand(shape, generator=g) < 0.3
        terminated = done & (torch.rand(shape, generator=g) < 0.5)
        has_state = torch.rand(shape, generator=g) < 0.7
        bv = torch.randn(shape, generator=g, dtype=torch.float64)
        fast = rescaled_n_step_targets(reward, done, terminated, bv, has_state, gamma=0.9, n=n)
        ref = rescaled_n_step_targets_loop(reward, done, terminated, bv, has_state, gamma=0.9, n=n)
        assert fast[1].tolist() == ref[1].tolist()
        torch.testing.assert_close(fast[0], ref[0], rtol=1e-12, atol=1e-12)
