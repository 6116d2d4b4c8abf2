"""TorchRL's categorical_kl_balanced clamps free bits per categorical; DreamerV3 clamps the KL summed over them.

With 4 categoricals of KL ~0.45 nats each, the sum (~1.8) is above DreamerV3's
1 free nat, so the reference trains on it; ``categorical_kl_balanced(free_bits=1)``
clamps every categorical to 1 and returns a constant with no gradient. Its
docstring says so and points to ``categorical_kl_terms``, which clamps the sum
(ours, ``kl_dyn_rep``, reuses it).
"""
import pytest
import torch

from latentrl.objectives.functional import kl_dyn_rep


def test_free_bits_on_the_sum_differ_from_torchrls_per_categorical_clamp():
    # 4 categoricals with KL ~0.45 each: the sum (~1.8) is above the 1-nat free bits, each one is below
    from torchrl.objectives.dreamer_v3 import categorical_kl_balanced

    post = torch.tensor([[2.0, 0.0, 0.0]]).expand(4, 3).clone().requires_grad_()
    prior = torch.zeros(4, 3, requires_grad=True)
    per_var = (torch.softmax(post, -1) * (torch.log_softmax(post, -1) - torch.log_softmax(prior, -1))).sum(-1)
    assert (per_var < 1).all() and per_var.sum() > 1
    dyn, rep = kl_dyn_rep(post, prior, dyn_scale=1.0, rep_scale=1.0, free_bits=1.0, unimix=0.0)
    assert dyn.item() == pytest.approx(per_var.sum().item(), rel=1e-5)  # DreamerV3: the sum is not clamped
    theirs = categorical_kl_balanced(post, prior, alpha=0.8, free_bits=1.0)
    assert theirs.item() == pytest.approx(1.0, rel=1e-5)  # every categorical clamped to 1, then averaged
    assert torch.autograd.grad(theirs, prior, allow_unused=True, materialize_grads=True)[0].abs().sum() == 0  # and no gradient at all
    assert torch.autograd.grad(dyn, prior)[0].abs().sum() > 0
