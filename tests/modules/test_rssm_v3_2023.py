"""The 2023 release's RSSM and networks (danijar/dreamerv3 at 423291a, ``nets.py``): the step written out by
hand, the learned initial state and its resets, the code's initializers, and the ``dmc_proprio`` layout."""
import math

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torch.nn import functional as F

from latentrl.modules import (
    V1_SIZES,
    ChannelLayerNorm,
    V1ImageDecoder,
    V1ImageEncoder,
    LatentPolicy,
    RSSMV3v1,
    make_dreamer_v3_2023_actor,
    make_dreamer_v3_2023_critic,
    make_dreamer_v3_2023_world_model,
    variance_scaling_,
)

A, E = 3, 16


def small(seed=0):
    torch.manual_seed(seed)
    rssm = RSSMV3v1(A, E, deter_dim=24, hidden_dim=12, num_vars=4, num_classes=5)
    with torch.no_grad():  # non-trivial LayerNorm affines and a non-zero learned initial state
        for m in rssm.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        rssm.initial.uniform_(-1, 1)
    return rssm


def ln(x, m):
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-3) * m.weight + m.bias


def test_deter_step_is_the_2023_gru_written_out():
    rssm = small()
    h, s, a = torch.randn(5, 24), torch.randn(5, 20), 3 * torch.randn(5, A)
    lin_in, norm_in = rssm.img_in[0], rssm.img_in[1]
    assert lin_in.bias is None and rssm.gru[0].bias is None  # a layer with a norm has no bias
    a_clip = a / torch.clamp(a.abs(), min=1.0)
    x = F.silu(ln(torch.cat([s, a_clip], -1) @ lin_in.weight.T, norm_in))
    gates = ln(torch.cat([h, x], -1) @ rssm.gru[0].weight.T, rssm.gru[1])
    r, c, u = gates[:, :24], gates[:, 24:48], gates[:, 48:]
    u = torch.sigmoid(u - 1)
    expected = u * torch.tanh(torch.sigmoid(r) * c) + (1 - u) * h
    torch.testing.assert_close(rssm._deter_step(h, s, a), expected)


def test_learned_initial_state_starts_and_restarts_every_sequence():
    rssm = small()
    h0, s0 = rssm.initial_state((2,))
    torch.testing.assert_close(h0, torch.tanh(rssm.initial).expand(2, -1))
    prior = rssm._stats(rssm.prior_net(torch.tanh(rssm.initial)))["logits"]
    assert torch.equal(s0[0].reshape(4, 5), F.one_hot(prior.argmax(-1), 5).float())  # the prior's mode
    B, T = 2, 6
    embed, action = torch.randn(B, T, E), torch.randn(B, T, A)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 3] = True
    out = rssm.observe(embed, action, is_init, sample=False)
    fresh = rssm.observe(embed[:, 3:], action[:, 3:], sample=False)  # a reset restarts as a new sequence
    torch.testing.assert_close(out["deter"][:, 3:], fresh["deter"])
    by_step = rssm.obs_step(h0, s0, torch.zeros(B, A), embed[:, 0])[0]  # no state given: the learned one
    torch.testing.assert_close(out["deter"][:, 0], by_step)
    out["deter"][:, 3:].sum().backward()
    assert rssm.initial.grad is not None and rssm.initial.grad.abs().sum() > 0  # trained through the resets


def test_latent_policy_resets_to_the_learned_state():
    torch.manual_seed(0)
    wm = make_dreamer_v3_2023_world_model([4], A, sizes=dict(deter=16, hidden=8, units=8, mlp_units=8, classes=4))
    with torch.no_grad():
        wm.rssm.initial.uniform_(-1, 1)
    actor = make_dreamer_v3_2023_actor(wm.rssm, A, discrete=True, units=8)
    policy = LatentPolicy(wm.encoder, wm.rssm, actor)
    td = TensorDict({"observation": torch.randn(2, 4), "is_init": torch.tensor([[True], [True]]),
                     "rssm_deter": torch.randn(2, 16), "rssm_stoch": torch.randn(2, 128),
                     "rssm_action": torch.randn(2, A)}, [2])
    out = policy(td)
    h0, s0 = wm.rssm.initial_state((2,))
    embed = wm.encoder(td.select("observation").clone())["embed"]
    expected = wm.rssm.filter_step(h0, s0, torch.zeros(2, A), embed)[0]
    torch.testing.assert_close(out["next", "rssm_deter"], expected)


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_initializers_are_the_code_s_fan_avg_variance_scaling(dist):
    torch.manual_seed(0)
    w = variance_scaling_(torch.empty(300, 500), dist)
    fan = (300 + 500) / 2
    assert w.std().item() == pytest.approx(math.sqrt(1 / fan), rel=0.03)  # both keep variance 1 / fan_avg
    bound = 2 * math.sqrt(1 / fan) / 0.87962566103423978 if dist == "normal" else math.sqrt(3 / fan)
    assert w.abs().max().item() <= bound + 1e-6
    assert variance_scaling_(torch.ones(3, 4), dist, 0.0).abs().sum() == 0  # outscale 0: zeros


def test_dmc_proprio_layout():
    wm = make_dreamer_v3_2023_world_model([5], 2)
    rssm = wm.rssm
    assert (rssm.deter_dim, rssm.hidden_dim, rssm.num_vars, rssm.num_classes) == (512, 512, 32, 32)
    linears = lambda m: [x for x in m.modules() if isinstance(x, nn.Linear)]  # noqa: E731
    enc = linears(wm.encoder)
    assert [x.out_features for x in enc] == [1024] * 5 and all(x.bias is None for x in enc)
    assert [x.out_features for x in linears(wm.decoder)] == [1024] * 5 + [5]
    reward, cont = linears(wm.reward_model), linears(wm.discount_model)
    assert [x.out_features for x in reward] == [512, 512, 255] and reward[-1].weight.abs().sum() == 0
    assert [x.out_features for x in cont] == [512, 512, 1] and cont[-1].weight.abs().sum() > 0
    critic = linears(make_dreamer_v3_2023_critic(rssm))
    assert [x.out_features for x in critic] == [512, 512, 255] and critic[-1].weight.abs().sum() == 0
    actor = make_dreamer_v3_2023_actor(rssm, 2, discrete=False)
    out = linears(actor)[-1]
    assert out.out_features == 4  # mean and std, initialized as two layers of fan-avg (512 + 2) / 2
    assert all(isinstance(m, nn.LayerNorm) and m.eps == 1e-3 for m in wm.modules() if "Norm" in type(m).__name__)
    assert V1_SIZES["mlp_layers"] == 5 and V1_SIZES["layers"] == 2
    with pytest.raises(ValueError, match="unknown `sizes` keys \\['deep'\\]"):
        make_dreamer_v3_2023_world_model([5], 2, sizes={"deep": 3})


def test_image_encoder_and_decoder_are_the_2023_stride_cnn():
    torch.manual_seed(0)
    enc = V1ImageEncoder([3, 64, 64], depth=4)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.bias) for c in convs] == \
        [(d, (4, 4), (2, 2), None) for d in (4, 8, 16, 32)]
    assert sum(isinstance(m, ChannelLayerNorm) for m in enc.modules()) == 4
    x = torch.rand(2, 3, 3, 64, 64)
    assert enc(x).shape == (2, 3, 32 * 16) and enc.out_features == 512
    dec = V1ImageDecoder([3, 64, 64], 20, depth=4)
    out = dec(torch.randn(2, 3, 20))
    assert out.shape == (2, 3, 3, 64, 64)
    tconvs = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in tconvs] == [16, 8, 4, 3] and tconvs[-1].bias is not None
    with torch.no_grad():  # no sigmoid: the output is the last layer plus 0.5
        tconvs[-1].weight.zero_()
        tconvs[-1].bias.zero_()
    assert torch.equal(dec(torch.randn(4, 20)), torch.full((4, 3, 64, 64), 0.5))
    with pytest.raises(ValueError, match="power-of-two side"):
        V1ImageEncoder([1, 96, 96])


def test_image_world_model_of_the_2023_release_trains():
    from latentrl.objectives import WorldModelLoss

    torch.manual_seed(0)
    wm = make_dreamer_v3_2023_world_model([3, 64, 64], A, sizes=dict(deter=16, hidden=8, units=8, classes=4,
                                                                    cnn_depth=4))
    loss = WorldModelLoss(wm, "dreamer_v3", reco_loss="mse", reward_loss="symlog_two_hot", discount=1.0)
    loss.set_keys(discount_logit="continue_logit")
    B, T = 2, 3
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    batch = TensorDict({"observation": torch.rand(B, T, 3, 64, 64), "action": torch.randn(B, T, A),
                        "is_init": flags.clone(), "next": {"observation": torch.rand(B, T, 3, 64, 64),
                                                           "reward": torch.randn(B, T, 1), "terminated": flags}},
                       [B, T])
    out = loss(batch)
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    assert all(p.grad is not None for p in wm.parameters())
