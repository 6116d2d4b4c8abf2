"""TorchRL's signed_hyperbolic / signed_parabolic lose all accuracy near 0 in float32.

``torchrl.modules.functional.signed_hyperbolic`` and ``signed_parabolic``
(and ``SignedHyperbolicValueTransform``) are exactly Pohlen et al.'s
``h`` / ``h^-1`` with the same ``eps = 1e-3`` (R2D2's value rescaling), and in
float64 they round-trip to ~6e-10 over ``|x|`` in ``[1e-6, 1e8]``. In float32:

* ``signed_hyperbolic`` evaluates ``sqrt(|x| + 1) - 1`` directly, which
  cancels: at ``|x| = 1e-6`` it is 5% off (up to 15% just above), and below ``|x| ~ 6e-8`` it returns
  only ``eps x`` (500x too small). Fix: ``x (1 / (sqrt(|x| + 1) + 1) + eps)``.
* ``signed_parabolic`` rationalizes the root ``a = (D - 1)/(2 eps)`` but then
  computes ``a.square() - 1`` with ``a ~ 1``, which cancels: any ``|y|`` below
  ~1e-7 maps to ``+-2.4e-7``; the round-trip relative error is about
  ``2.5e-7 / |x|``: 26% at ``|x| = 1e-6``, 2.6% at 1e-5, 0.2% at 1e-4,
  4e-4 at 1e-3, 2.5e-5 at 1e-2 (ours: <= 6.1e-7 everywhere; above ``|x| ~ 1``
  both are accurate to a few units of roundoff). Fix: ``a^2 - 1 = (a - 1)(a + 1)``
  with ``a - 1 = 4|y|(|y| + 1 + eps) / ((1 + 2eps + 2|y| + D)(D + 1))``.

(Not wrong, just inaccurate: returns up to ~1 are common with sparse or
clipped rewards and ``gamma = 0.997``, and TD errors are taken between such
numbers.) Ours: latentrl.objectives.value.rescaling.
"""
import torch
from torchrl.modules import SignedHyperbolicValueTransform
from torchrl.modules.functional import signed_hyperbolic, signed_parabolic

from latentrl.objectives.value import value_rescale, value_rescale_inverse


def _rel(a, b):
    return ((a.double() - b.double()) / b.double()).abs()


def test_same_pair_as_pohlen_in_float64():
    x = torch.logspace(-2, 8, 101, dtype=torch.float64)
    x = torch.cat([x, -x])
    torch.testing.assert_close(signed_hyperbolic(x), value_rescale(x), rtol=1e-12, atol=0)
    torch.testing.assert_close(signed_parabolic(x), value_rescale_inverse(x), rtol=1e-12, atol=0)
    assert SignedHyperbolicValueTransform().epsilon == 1e-3


def test_float32_cancellation_near_zero():
    x = torch.tensor([1e-8, 1e-7, 1e-6, 1e-5, 1e-3, -1e-6])
    exact = value_rescale(x.double())

    theirs_h = signed_hyperbolic(x)
    assert _rel(theirs_h[0], exact[0]) > 0.99  # 1e-8 -> eps * 1e-8 only
    assert _rel(theirs_h[2], exact[2]) > 0.04
    assert (_rel(value_rescale(x), exact) < 1e-6).all()

    theirs_rt = signed_parabolic(signed_hyperbolic(x))
    ours_rt = value_rescale_inverse(value_rescale(x))
    assert theirs_rt[0].item() == theirs_rt[1].item() == 2.0**-22  # 1e-8 and 1e-7 both -> 2.4e-7
    assert _rel(theirs_rt[2], x[2]) > 0.1
    assert _rel(theirs_rt[3], x[3]) > 1e-2
    assert _rel(theirs_rt[4], x[4]) > 1e-5
    assert (_rel(ours_rt, x) < 1e-6).all()

    # the inverse alone, on exactly representable inputs
    y = value_rescale(x)
    exact_inv = value_rescale_inverse(y.double())
    assert _rel(signed_parabolic(y), exact_inv).max() > 1.0
    assert _rel(value_rescale_inverse(y), exact_inv).max() < 1e-6
