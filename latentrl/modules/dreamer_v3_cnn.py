"""DreamerV3's image encoder and decoder (Hafner et al. 2025; danijar/dreamerv3 ``rssm.py`` ``Encoder``/``Decoder``
with ``typ: simple``, ``outer: False``, ``strided: False``, ``bspace: 8``), channels-first as TorchRL's images.

With ``N(x) = SiLU(RMSNorm_channels(x))`` (eps 1e-4), ``depths = depth · (2, 3, 4, 4)`` and ``K = 5``:

.. code-block:: text

    encoder   x = image − 0.5                     (TorchRL's ToTensorImage scales to [0, 1])
              x = N(MaxPool2(Conv_K(x)))          per depth: 64 x 64 -> 4 x 4
              embed = flatten(x)
    decoder   x0 = BlockLinear_8(h) -> [(g h w c)] -> [h w (g c)]    the deterministic state, per block
              x1 = Linear(N(Linear(s)))                               the stochastic state
              x  = N(x0 + x1)                                         [depths[-1], 4, 4]
              x  = N(Conv_K(Upsample2(x)))        per depth, in reverse, but the last
              image = sigmoid(Conv_K(Upsample2(x)))                    ``mse`` against the image in [0, 1]

Weights are the code's ``trunc_normal_in`` (std ``1.1368 / sqrt(fan_in)``), biases zero.
The resolution must halve ``len(depths)`` times into 3..16 pixels (64 -> 4, 96 -> 6).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .rssm_v3 import BlockLinear, trunc_normal_in_

__all__ = ["V3ImageEncoder", "V3ImageDecoder", "ChannelRMSNorm"]

MULTS = (2, 3, 4, 4)


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the channels of ``[N, C, H, W]`` (the code normalizes its channels-last last axis)."""

    def __init__(self, channels: int, eps: float = 1e-4):
        super().__init__()
        self.norm = nn.RMSNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(-3, -1)).movedim(-1, -3)


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
    trunc_normal_in_(conv.weight, cin * kernel * kernel)
    nn.init.zeros_(conv.bias)
    return conv


def _min_resolution(hw: Sequence[int], stages: int) -> tuple[int, int]:
    factor = 2 ** stages
    res = tuple(int(x) // factor for x in hw)
    if any(x * factor != int(y) for x, y in zip(res, hw)) or not all(3 <= x <= 16 for x in res):
        raise ValueError(f"DreamerV3 CNN: the image's {list(hw)} pixels must halve {stages} times into 3..16 "
                         f"(e.g. 64 or 96), got {list(res)}")
    return res


def _flat_images(x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    if x.ndim < 4:
        raise ValueError(f"DreamerV3 CNN: expected images [*, C, H, W], got shape {tuple(x.shape)}")
    return x.reshape(-1, *x.shape[-3:]), x.shape[:-3]


class V3ImageEncoder(nn.Module):
    """``[*, C, H, W]`` images in [0, 1] -> ``[*, depths[-1] · H/16 · W/16]`` (see the module docstring)."""

    def __init__(self, image_shape: Sequence[int], depth: int = 64, mults: Sequence[int] = MULTS, kernel: int = 5):
        super().__init__()
        channels, *hw = (int(d) for d in image_shape)
        res = _min_resolution(hw, len(mults))
        depths = [depth * m for m in mults]
        layers: list[nn.Module] = []
        for cin, cout in zip([channels, *depths[:-1]], depths):
            layers += [_conv(cin, cout, kernel), nn.MaxPool2d(2), ChannelRMSNorm(cout), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out_features = depths[-1] * res[0] * res[1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x, batch = _flat_images(image)
        return self.net(x - 0.5).reshape(*batch, self.out_features)


class V3ImageDecoder(nn.Module):
    """``(deter, stoch)`` -> ``[*, C, H, W]`` images in [0, 1] (see the module docstring)."""

    def __init__(self, image_shape: Sequence[int], deter_dim: int, stoch_flat: int, *, depth: int = 64,
                 units: int = 1024, mults: Sequence[int] = MULTS, kernel: int = 5, blocks: int = 8):
        super().__init__()
        channels, *hw = (int(d) for d in image_shape)
        self.res = _min_resolution(hw, len(mults))
        depths = [depth * m for m in mults]
        self.top, self.blocks = depths[-1], int(blocks)
        if self.top % self.blocks:
            raise ValueError(f"V3ImageDecoder: the last depth {self.top} must be divisible by blocks {blocks}")
        u = self.top * self.res[0] * self.res[1]
        self.space0 = BlockLinear(deter_dim, u, self.blocks)
        hidden = nn.Linear(stoch_flat, 2 * units)
        out = nn.Linear(2 * units, u)
        for layer in (hidden, out):
            trunc_normal_in_(layer.weight, layer.in_features)
            nn.init.zeros_(layer.bias)
        self.space1 = nn.Sequential(hidden, nn.RMSNorm(2 * units, eps=1e-4), nn.SiLU(), out)
        self.space_norm = nn.Sequential(ChannelRMSNorm(self.top), nn.SiLU())
        layers: list[nn.Module] = []
        for cin, cout in zip(depths[::-1][:-1], depths[::-1][1:]):  # reversed depths but the last
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, cout, kernel), ChannelRMSNorm(cout),
                       nn.SiLU()]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(depths[0], channels, kernel), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, deter: torch.Tensor, stoch: torch.Tensor) -> torch.Tensor:
        batch = deter.shape[:-1]
        g, (h, w) = self.blocks, self.res
        x0 = self.space0(deter.reshape(-1, deter.shape[-1]))  # [N, (g h w c)]
        x0 = x0.reshape(-1, g, h, w, self.top // g).permute(0, 1, 4, 2, 3).reshape(-1, self.top, h, w)  # (g c) h w
        x1 = self.space1(stoch.reshape(-1, stoch.shape[-1])).reshape(-1, h, w, self.top).permute(0, 3, 1, 2)
        image = self.net(self.space_norm(x0 + x1))
        return image.reshape(*batch, *image.shape[1:])

