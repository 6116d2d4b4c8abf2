"""OneHotBlockLinear: nn.Linear's output and gradients, with the one-hot block's multiply-adds skipped."""
import pytest
import torch
from torch import nn

from latentrl.modules.distributions import sample_one_hot
from latentrl.modules.onehot_linear import OneHotBlockLinear, PartsMLP
from latentrl.modules.world_model import make_mlp

V, K, D, OUT, N = 4, 8, 5, 3, 1100  # N above the gather's threshold (1024 rows)


def parts(seed=0, zero_rows=()):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g)
    p = torch.softmax(torch.randn(N, V, K, generator=g), -1)
    z = sample_one_hot(p, generator=g)
    for r in zero_rows:
        z[r] = 0  # reset (all-zero) categoricals
    return h, p, z


@pytest.mark.parametrize("block", [0, 1])
def test_equals_nn_linear_values_and_gradients(block):
    torch.manual_seed(0)
    dense = nn.Linear(D + V * K, OUT)
    sizes = (D, V * K) if block == 1 else (V * K, D)
    layer = OneHotBlockLinear.from_linear(dense, sizes, block=block, num_vars=V, num_classes=K)
    assert layer.weight is dense.weight and layer.bias is dense.bias
    h, p, z = parts(zero_rows=(3, 7))
    h.requires_grad_()
    p.requires_grad_()
    s = (z + (p - p.detach())).flatten(-2)  # straight-through: one-hot values, gradient of p
    inputs = (h, s) if block == 1 else (s, h)
    out = layer(*inputs)
    ref = dense(torch.cat(inputs, -1))
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    ours = torch.autograd.grad(out, (h, p, dense.weight, dense.bias), g)
    theirs = torch.autograd.grad(ref, (h, p, dense.weight, dense.bias), g)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    # one concatenated tensor is split into the parts
    torch.testing.assert_close(layer(torch.cat(inputs, -1)), ref)


def test_rejects_a_block_that_is_not_one_hot_and_bad_parts():
    layer = OneHotBlockLinear((D, V * K), OUT, block=1, num_vars=V, num_classes=K)
    h, p, _ = parts()
    with pytest.raises(ValueError, match="one-hot"):
        layer(h, p.flatten(-2))  # probabilities, not samples
    twos = torch.zeros(N, V, K)
    twos[..., 0] = 2.0
    with pytest.raises(ValueError, match="one-hot"):
        layer(h, twos.flatten(-2))
    with pytest.raises(ValueError, match="input parts"):
        layer(h, h, h)
    with pytest.raises(ValueError, match="one-hot block"):
        OneHotBlockLinear((D, 7), OUT, block=1, num_vars=V, num_classes=K)


def test_parts_mlp_keeps_the_mlp_parameters():
    torch.manual_seed(0)
    mlp = make_mlp(D + V * K, OUT, units=6, layers=2)
    ref_params = [p.detach().clone() for p in mlp.parameters()]
    head = PartsMLP(mlp, (D, V * K), block=1, num_vars=V, num_classes=K)
    assert [tuple(p.shape) for p in head.parameters()] == [tuple(p.shape) for p in ref_params]
    h, _, z = parts()
    s = z.flatten(-2)
    torch.testing.assert_close(head(h, s), mlp(torch.cat([h, s], -1)))
