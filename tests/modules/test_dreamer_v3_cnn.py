"""DreamerV3's image encoder and decoder (danijar/dreamerv3 ``rssm.py``, ``typ: simple``): the layer layout,
the decoder's block-linear spatial input written out, resolutions, and a world model on images."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from latentrl.modules import (
    ChannelRMSNorm,
    V3ImageDecoder,
    V3ImageEncoder,
    make_dreamer_v3_world_model,
)


def test_encoder_layout_and_output_size():
    enc = V3ImageEncoder([3, 64, 64], depth=4)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 12, 16, 16] and all(c.kernel_size == (5, 5) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in enc.modules()) == 4
    x = torch.rand(2, 5, 3, 64, 64)
    assert enc(x).shape == (2, 5, 16 * 4 * 4) and enc.out_features == 256
    assert V3ImageEncoder([1, 96, 96], depth=4).out_features == 16 * 6 * 6
    # the convolutions see the image minus 0.5: a mid-grey image is a zero input
    grey = torch.full((1, 3, 64, 64), 0.5)
    zero = nn.Sequential(*list(enc.net)[:1])(torch.zeros(1, 3, 64, 64))
    torch.testing.assert_close(enc.net[0](grey - 0.5), zero)
    torch.testing.assert_close(enc(x[0]), enc.net(x[0] - 0.5).reshape(5, -1))
    with pytest.raises(ValueError, match="must halve 4 times into 3..16"):
        V3ImageEncoder([3, 84, 84])


def test_channel_rmsnorm_normalizes_each_pixel_over_channels():
    norm = ChannelRMSNorm(6)
    x = torch.randn(2, 6, 3, 3)
    expected = x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(norm(x), expected)


def test_decoder_spatial_input_and_output():
    torch.manual_seed(0)
    deter, stoch, g = 16, 12, 8
    dec = V3ImageDecoder([3, 64, 64], deter, stoch, depth=4, units=8, blocks=g)
    h, s = torch.randn(4, deter), torch.randn(4, stoch)
    out = dec(h, s)
    assert out.shape == (4, 3, 64, 64) and (out > 0).all() and (out < 1).all()  # sigmoid
    # x0 by hand: group k maps its deter slice to its (h w c/g) block; channels are (g c)
    top, res = 16, 4
    w = dec.space0.weight  # [g, deter/g, u/g]
    parts = [h[:, k * deter // g:(k + 1) * deter // g] @ w[k] for k in range(g)]
    x0 = torch.cat(parts, -1) + dec.space0.bias
    x0 = x0.reshape(4, g, res, res, top // g)  # (g h w c)
    x0 = x0.permute(0, 2, 3, 1, 4).reshape(4, res, res, top).permute(0, 3, 1, 2)  # h w (g c) -> channels first
    x1 = dec.space1(s).reshape(4, res, res, top).permute(0, 3, 1, 2)
    x = dec.space_norm(x0 + x1)
    torch.testing.assert_close(dec.net(x), out)
    assert sum(isinstance(m, nn.Upsample) for m in dec.net) == 4
    assert [c.out_channels for c in dec.net if isinstance(c, nn.Conv2d)] == [16, 12, 8, 3]  # depths[:-1] reversed

def test_image_world_model_trains_its_decoder():
    torch.manual_seed(0)
    wm = make_dreamer_v3_world_model([3, 64, 64], 2, size="size1m")
    from tensordict import TensorDict

    from latentrl.objectives import WorldModelLoss

    loss = WorldModelLoss(wm, "dreamer_v3", reco_loss="mse")
    loss.set_keys(discount_logit="continue_logit")
    B, T = 2, 4
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    img = torch.rand(B, T + 1, 3, 64, 64)
    batch = TensorDict({"observation": img[:, :-1], "action": F.one_hot(torch.randint(2, (B, T)), 2).float(),
                        "is_init": flags.clone(),
                        "next": {"observation": img[:, 1:], "reward": torch.zeros(B, T, 1), "terminated": flags}},
                       [B, T])
    seen = {}
    handle = wm.decoder.module.register_forward_hook(lambda mod, inp, out: seen.update(reco=out))
    out = loss(batch)
    handle.remove()
    assert seen["reco"].shape == (B, T + 1, 3, 64, 64)  # every observation, the last next one included
    expected = (seen["reco"] - img).pow(2).sum((-3, -2, -1)).mean()  # squared error summed over pixels
    assert out["reco_nll"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss_model_reco"].backward()
    assert all(p.grad is not None for p in [*wm.decoder.parameters(), *wm.encoder.parameters()])
