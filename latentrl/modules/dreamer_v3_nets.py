"""DreamerV3's networks as keyed TensorDict modules, with the code's size presets (Hafner et al. 2025;
danijar/dreamerv3 ``configs.yaml``, ``rssm.py`` Encoder/Decoder, ``embodied/jax/heads.py``).

Every MLP layer is ``Linear -> RMSNorm -> SiLU`` (``trunc_normal_in`` weights,
zero biases); output layers are scaled by ``outscale`` (0 for the two-hot
reward and value heads, so they predict exactly 0 at the start; 0.01 for the
policy). Vector observations ``[D]`` or images ``[C, H, W]`` in [0, 1] (TorchRL's ``ToTensorImage``;
:mod:`~latentrl.modules.dreamer_v3_cnn`):

=====================  ==========================================  ===============================
part                   the code                                    keys
=====================  ==========================================  ===============================
encoder                ``symlog``, 3 layers of ``units``; images:  observation -> ``embed``
                       the CNN, ``depth · (2, 3, 4, 4)``
RSSM                   :class:`~latentrl.modules.rssm_v3.RSSMV3`    (:class:`RSSMObserve`)
decoder                3 layers, ``symlog_mse`` output; images:    -> ``reco_observation``
                       the transposed CNN, sigmoid, ``mse``
reward head            1 layer, 255-bin symexp two-hot, outscale 0 -> ``reward_logits``
continue head          1 layer, Bernoulli logit                    -> ``continue_logit``
actor                  3 layers; one-hot categorical with 1% unimix, or ``Normal(tanh(μ), (1 − 0.1) σ(s + 2) + 0.1)``
critic                 3 layers, 255-bin two-hot, outscale 0       -> ``value_logits``
=====================  ==========================================  ===============================

:data:`SIZES`: the code's ``size1m`` … ``size400m`` (RSSM ``deter``/``hidden``/``classes``
and MLP ``units``), plus ``cpu``, ours: between ``size1m`` and ``size12m``, sized
for a two-core CPU.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor

from .distributions import UnimixOneHotCategorical
from .dreamer_v3_cnn import V3ImageDecoder, V3ImageEncoder
from .rssm_v3 import RSSMV3, trunc_normal_in_
from .world_model import RSSMObserve, Symlog, WorldModel

__all__ = ["SIZES", "v3_mlp", "LatentInput", "BoundedNormalParams", "make_dreamer_v3_world_model",
           "make_dreamer_v3_actor", "make_dreamer_v3_critic"]

#: size preset -> RSSM deter, hidden, classes, MLP units and CNN depth (32 categoricals, 8 blocks throughout)
SIZES = {
    "size1m": dict(deter=512, hidden=64, classes=4, units=64, depth=4),
    "size12m": dict(deter=2048, hidden=256, classes=16, units=256, depth=16),
    "size25m": dict(deter=3072, hidden=384, classes=24, units=384, depth=24),
    "size50m": dict(deter=4096, hidden=512, classes=32, units=512, depth=32),
    "size100m": dict(deter=6144, hidden=768, classes=48, units=768, depth=48),
    "size200m": dict(deter=8192, hidden=1024, classes=64, units=1024, depth=64),
    "size400m": dict(deter=12288, hidden=1536, classes=96, units=1536, depth=96),
    "cpu": dict(deter=1024, hidden=128, classes=8, units=128, depth=8),
}


def v3_mlp(in_features: int, out_features: int | None, units: int, layers: int, *, outscale: float = 1.0) -> nn.Sequential:
    """``layers`` x (Linear, RMSNorm(eps 1e-4), SiLU), then an output Linear scaled by ``outscale``
    (``out_features=None``: no output layer, the last hidden layer is the output, as the code's encoder)."""
    parts: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        linear = nn.Linear(width, units)
        trunc_normal_in_(linear.weight, width)
        nn.init.zeros_(linear.bias)
        parts += [linear, nn.RMSNorm(units, eps=1e-4), nn.SiLU()]
        width = units
    if out_features is not None:
        out = nn.Linear(width, out_features)
        trunc_normal_in_(out.weight, width)
        with torch.no_grad():
            out.weight.mul_(float(outscale))
        nn.init.zeros_(out.bias)
        parts.append(out)
    return nn.Sequential(*parts)


class LatentInput(nn.Module):
    """``net(cat([deter, stoch]))``: a head over the latent state read as two keys."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, deter: torch.Tensor, stoch: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([deter, stoch], -1))


class BoundedNormalParams(nn.Module):
    """The code's ``bounded_normal``: ``loc = tanh(μ)``, ``scale = (max_std − min_std) σ(s + 2) + min_std``."""

    def __init__(self, net: nn.Module, min_std: float = 0.1, max_std: float = 1.0):
        super().__init__()
        if not 0.0 <= min_std < max_std:
            raise ValueError(f"BoundedNormalParams: need 0 <= `min_std` < `max_std`, got {min_std} and {max_std}")
        self.net, self.min_std, self.max_std = net, float(min_std), float(max_std)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.net(*inputs).chunk(2, -1)
        return torch.tanh(mean), (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std


def _size(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"DreamerV3: `size` must be one of {list(SIZES)}, got {size!r}")
    return SIZES[size]


def make_dreamer_v3_world_model(observation_shape: Sequence[int], action_dim: int, *, size: str = "cpu",
                                num_vars: int = 32, blocks: int = 8, reward_bins: int = 255,
                                observation_key="observation") -> WorldModel:
    """The world model for vector observations ``[D]`` or images ``[C, H, W]`` at a size preset (see the
    module docstring; train an image model with ``WorldModelLoss(..., reco_loss="mse")``)."""
    shape = tuple(int(d) for d in observation_shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"make_dreamer_v3_world_model: observations must be vectors [D] or images [C, H, W], "
                         f"got {list(shape)}")
    p = _size(size)
    units = p["units"]
    if len(shape) == 1:
        enc_net = nn.Sequential(Symlog(), v3_mlp(shape[0], None, units, 3))
        embed_dim = units
    else:
        enc_net = V3ImageEncoder(shape, depth=p["depth"])
        embed_dim = enc_net.out_features
    encoder = TensorDictModule(enc_net, in_keys=[observation_key], out_keys=["embed"])
    rssm = RSSMV3(int(action_dim), embed_dim, deter_dim=p["deter"], hidden_dim=p["hidden"], num_vars=num_vars,
                  num_classes=p["classes"], blocks=blocks)
    feat = rssm.feature_dim
    latent = ["deter", "stoch"]
    if len(shape) == 1:
        dec_net = LatentInput(v3_mlp(feat, shape[0], units, 3))
    else:
        dec_net = V3ImageDecoder(shape, rssm.deter_dim, rssm.stoch_flat, depth=p["depth"], units=units,
                                 blocks=blocks)
    decoder = TensorDictModule(dec_net, latent, ["reco_observation"])
    reward = TensorDictModule(LatentInput(v3_mlp(feat, reward_bins, units, 1, outscale=0.0)), latent,
                              ["reward_logits"])
    cont = TensorDictModule(LatentInput(v3_mlp(feat, 1, units, 1)), latent, ["continue_logit"])
    return WorldModel(encoder, RSSMObserve(rssm), decoder, reward, cont)


def make_dreamer_v3_actor(rssm: RSSMV3, action_dim: int, *, discrete: bool, units: int, layers: int = 3,
                          unimix: float = 0.01, min_std: float = 0.1, max_std: float = 1.0,
                          outscale: float = 0.01, action_key="action") -> ProbabilisticActor:
    """The policy over ``(deter, stoch)``: categorical with ``unimix`` (discrete) or the bounded normal."""
    action_dim = int(action_dim)
    if action_dim < 1:
        raise ValueError(f"make_dreamer_v3_actor: `action_dim` must be >= 1, got {action_dim}")
    net = v3_mlp(rssm.feature_dim, action_dim * (1 if discrete else 2), units, layers, outscale=outscale)
    if discrete:
        params = TensorDictModule(LatentInput(net), in_keys=["deter", "stoch"], out_keys=["logits"])
        return ProbabilisticActor(params, in_keys=["logits"], out_keys=[action_key],
                                  distribution_class=UnimixOneHotCategorical, distribution_kwargs={"unimix": unimix})
    params = TensorDictModule(BoundedNormalParams(LatentInput(net), min_std, max_std), in_keys=["deter", "stoch"],
                              out_keys=["loc", "scale"])
    return ProbabilisticActor(params, in_keys=["loc", "scale"], out_keys=[action_key],
                              distribution_class=IndependentNormal)


def make_dreamer_v3_critic(rssm: RSSMV3, *, units: int, layers: int = 3, bins: int = 255,
                           out_key="value_logits") -> TensorDictModule:
    """The critic: ``value_logits`` over ``bins`` symexp two-hot bins, output layer zero-initialized."""
    return TensorDictModule(LatentInput(v3_mlp(rssm.feature_dim, bins, units, layers, outscale=0.0)),
                            in_keys=["deter", "stoch"], out_keys=[out_key])
