"""The image encoder and decoder of DreamerV3's first release (Hafner et al. 2023, arXiv v1; danijar/dreamerv3
at 423291a, ``nets.py`` ``ImageEncoderResnet``/``ImageDecoderResnet`` with ``cnn_blocks: 0``, ``resize: stride``,
``minres: 4``, ``cnn_sigmoid: False``), channels-first as TorchRL's images.

With ``N(x) = SiLU(LayerNorm_channels(x))`` (eps 1e-3) and ``stages = log2(H / 4)``:

.. code-block:: text

    encoder   x = image − 0.5;  x = N(Conv_{4, stride 2}(x)) per stage, depth ``d, 2d, 4d, ...``
              embed = flatten(x)                                   64 x 64 -> 4 x 4 x 8d
    decoder   x = Linear([h, s]) -> [8d, 4, 4]                     no norm (the code's ``in`` layer)
              x = N(ConvT_{4, stride 2}(x)) per stage, halving the depth, but the last:
              image = ConvT_{4, stride 2}(x) + 0.5                 ``mse`` against the image in [0, 1]

Hidden convolutions have no bias (a norm follows) and the code's ``normal`` fan-avg init; the decoder's
input and output layers its default ``uniform`` one, with biases.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .rssm_v3_2023 import variance_scaling_

__all__ = ["V1ImageEncoder", "V1ImageDecoder", "ChannelLayerNorm"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm (eps 1e-3) over the channels of ``[N, C, H, W]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(-3, -1)).movedim(-1, -3)


def _stages(hw: Sequence[int]) -> int:
    h, w = (int(x) for x in hw)
    stages = int(math.log2(h / 4)) if h >= 8 else 0
    if h != w or stages < 1 or 4 * 2 ** stages != h:
        raise ValueError(f"DreamerV3 2023 CNN: the image must be square with a power-of-two side >= 8 "
                         f"(it halves down to 4 x 4), got {[h, w]}")
    return stages


def _layer(conv: nn.Module, channels: int, dist: str = "normal") -> nn.Module:
    variance_scaling_(conv.weight, dist)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, ChannelLayerNorm(channels), nn.SiLU())


class V1ImageEncoder(nn.Module):
    """``[*, C, H, W]`` images in [0, 1] -> ``[*, 16 · depth · 2^(stages − 1)]`` (see the module docstring)."""

    def __init__(self, image_shape: Sequence[int], depth: int = 32):
        super().__init__()
        channels, *hw = (int(d) for d in image_shape)
        stages = _stages(hw)
        layers, cin = [], channels
        for i in range(stages):
            cout = depth * 2 ** i
            layers.append(_layer(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), cout))
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out_features = cin * 16

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        batch = image.shape[:-3]
        x = self.net(image.reshape(-1, *image.shape[-3:]) - 0.5)
        return x.reshape(*batch, self.out_features)


class V1ImageDecoder(nn.Module):
    """``features [*, F]`` (the latent ``[h, s]``) -> ``[*, C, H, W]`` (see the module docstring)."""

    def __init__(self, image_shape: Sequence[int], in_features: int, depth: int = 32):
        super().__init__()
        channels, *hw = (int(d) for d in image_shape)
        stages = _stages(hw)
        self.top = depth * 2 ** (stages - 1)
        self.inp = nn.Linear(in_features, 16 * self.top)
        variance_scaling_(self.inp.weight, "uniform")
        nn.init.zeros_(self.inp.bias)
        layers, cin = [], self.top
        for _ in range(stages - 1):
            layers.append(_layer(nn.ConvTranspose2d(cin, cin // 2, 4, 2, 1, bias=False), cin // 2))
            cin //= 2
        out = nn.ConvTranspose2d(cin, channels, 4, 2, 1)
        variance_scaling_(out.weight, "uniform")
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch = features.shape[:-1]
        x = self.inp(features.reshape(-1, features.shape[-1])).reshape(-1, 4, 4, self.top).permute(0, 3, 1, 2)
        image = self.net(x) + 0.5
        return image.reshape(*batch, *image.shape[1:])
