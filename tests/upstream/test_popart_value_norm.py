"""UPSTREAM.md #8: TorchRL's PopArtValueNorm is ART without POP.

``torchrl.modules.PopArtValueNorm`` keeps moving averages of the value
targets' moments (the "Adaptively Rescaling Targets" half of PopArt) but owns
no parameters and never touches the value network, so when a critic predicts
the normalized value ``n(s)`` and the value is read off as
``denormalize(n(s)) = sigma n(s) + mu`` (the use its ``ValueNorm`` docstring
describes), every statistics update changes the value of every state. PopArt
(van Hasselt et al. 2016; Hessel et al. 2018) rescales the last layer along
with the statistics, ``w' = sigma/sigma' w``, ``b' = (sigma b + mu - mu')/sigma'``,
so the unnormalized outputs are "preserved precisely". The test feeds both the
same critic and the same targets, changing scale from ~1 to ~1000, and checks
TorchRL's values move by orders of magnitude while ours do not move.
(``MAPPOLoss`` uses it differently, normalizing a critic that outputs values
on the reward scale, which only rescales the loss.)
Ours: latentrl.modules.popart.PopArt."""
import copy
import inspect

import torch
from torchrl.modules import PopArtValueNorm

from latentrl.modules.popart import PopArt


def _targets(g: torch.Generator, scale: float) -> torch.Tensor:
    return scale * (1.0 + 0.1 * torch.randn(256, 1, generator=g, dtype=torch.float64))


def test_torchrl_update_changes_values_ours_preserves_them():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, dtype=torch.float64)
    ours = PopArt(8, beta=0.01).double()
    critic = copy.deepcopy(ours.linear)  # same n(s) for both
    theirs = PopArtValueNorm(shape=1, beta=0.99).double()  # decay 0.99 = our step size 0.01

    # warm up both on targets of scale ~1
    for _ in range(20):
        t = _targets(g, 1.0)
        theirs.update(t)
        ours.update(t)
    with torch.no_grad():
        theirs_before, ours_before = theirs.denormalize(critic(x)), ours(x)[1]

    # the return scale grows to ~1000 (a better policy, a new reward scale)
    for _ in range(20):
        t = _targets(g, 1000.0)
        theirs.update(t)
        ours.update(t)
    with torch.no_grad():
        theirs_after, ours_after = theirs.denormalize(critic(x)), ours(x)[1]

    # TorchRL: no parameters, update() sees only the targets -> it cannot rescale the critic
    assert list(theirs.parameters()) == []
    assert list(inspect.signature(PopArtValueNorm.update).parameters) == ["self", "value_target"]
    theirs_change = ((theirs_after - theirs_before).abs() / theirs_before.abs().clamp_min(1.0)).median()
    assert theirs_change > 10.0  # every state's value jumped by more than 10x
    assert (theirs.scale() > 100.0).all()  # its statistics did track the new scale ...
    assert (ours.sigma > 100.0).all()  # ... and so did ours
    # ours: the same statistics change leaves v(s) = sigma n(s) + mu where it was
    torch.testing.assert_close(ours_after, ours_before, rtol=1e-9, atol=1e-9)


def test_same_critic_loss_scale_as_torchrl():
    """Both normalize targets to unit scale: the departure is only in the outputs."""
    g = torch.Generator().manual_seed(1)
    ours = PopArt(4, beta=0.01).double()
    theirs = PopArtValueNorm(shape=1, beta=0.99).double()
    for _ in range(500):
        t = _targets(g, 1000.0)
        theirs.update(t)
        ours.update(t)
    t = _targets(g, 1000.0)
    for z in (ours.normalize(t), theirs.normalize(t)):
        assert abs(float(z.mean())) < 0.5 and 0.5 < float(z.std()) < 2.0
