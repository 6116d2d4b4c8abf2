"""The networks of DreamerV3's first release as keyed modules, the ``v1_2023`` preset (Hafner et al. 2023,
arXiv v1; danijar/dreamerv3 at 423291a, ``configs.yaml``, ``nets.py`` ``MLP``/``Dist``/``MultiEncoder``).

Every hidden layer is ``Linear (no bias) -> LayerNorm(eps 1e-3) -> SiLU``
(:func:`~latentrl.modules.rssm_v3_2023.v1_linear`, ``winit: normal, fan: avg``);
output layers use the code's ``Dist`` default, a uniform fan-avg init scaled by ``outscale``.
Sizes are the code's ``dmc_proprio`` (= ``small``) preset, :data:`V1_SIZES`; its
size overrides (``.*\\.units``, ``.*\\.layers``) do not match the encoder's and
decoder's ``mlp_units``/``mlp_layers``, which keep 5 layers of 1024:

=====================  =====================================================  ===========================
part                   the 2023 code                                          keys
=====================  =====================================================  ===========================
encoder                ``symlog``, 5 layers of 1024                           observation -> ``embed``
RSSM                   :class:`~latentrl.modules.rssm_v3_2023.RSSMV3v1`       (:class:`RSSMObserve`)
decoder                5 layers of 1024, ``symlog_mse``, outscale 1           -> ``reco_observation``
images                 the stride-2 CNN, depth 32 (``dmc_vision``), ``mse``   (:mod:`.dreamer_v3_2023_cnn`)
reward head            2 x 512, 255 bins uniform in symlog space, outscale 0  -> ``reward_logits``
continue head          2 x 512, Bernoulli logit (target ``1 − terminal``)     -> ``continue_logit``
actor                  2 x 512; one-hot with 1% unimix, or ``Normal(tanh(μ), 0.9 σ(s + 2) + 0.1)``, outscale 1
critic                 2 x 512, 255 symlog bins, outscale 0                   -> ``value_logits``
=====================  =====================================================  ===========================
"""
from __future__ import annotations

from collections.abc import Sequence

from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor

from .distributions import UnimixOneHotCategorical
from .dreamer_v3_2023_cnn import V1ImageDecoder, V1ImageEncoder
from .dreamer_v3_nets import BoundedNormalParams, LatentInput
from .rssm_v3_2023 import RSSMV3v1, v1_linear, variance_scaling_
from .world_model import RSSMObserve, Symlog, WorldModel

__all__ = ["V1_SIZES", "v1_mlp", "make_dreamer_v3_2023_world_model", "make_dreamer_v3_2023_actor",
           "make_dreamer_v3_2023_critic"]

#: the 2023 code's ``dmc_proprio``/``dmc_vision`` sizes: RSSM, heads/actor/critic, the encoder/decoder MLPs, CNN depth
V1_SIZES = dict(deter=512, hidden=512, classes=32, units=512, layers=2, mlp_units=1024, mlp_layers=5, cnn_depth=32)


def v1_mlp(in_features: int, out_features: int | None, units: int, layers: int, *, outscale: float = 1.0,
           out_chunks: int = 1) -> nn.Sequential:
    """``layers`` hidden :func:`v1_linear` layers, then an output ``Linear`` (uniform fan-avg init times
    ``outscale``; ``out_chunks`` equal parts initialized as separate layers, as the code's ``out`` and
    ``std``); ``out_features=None``: no output layer."""
    parts: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        parts.append(v1_linear(width, units, norm=True))
        width = units
    if out_features is not None:
        out = v1_linear(width, out_features, norm=False, dist="uniform", scale=outscale)
        if out_chunks > 1:
            for part in out.weight.data.chunk(out_chunks, 0):
                variance_scaling_(part, "uniform", outscale)
        parts.append(out)
    return nn.Sequential(*parts)


def make_dreamer_v3_2023_world_model(observation_shape: Sequence[int], action_dim: int, *, sizes: dict | None = None,
                                     reward_bins: int = 255, observation_key="observation") -> WorldModel:
    """The 2023 world model for vector observations ``[D]`` or images ``[C, H, W]`` in [0, 1]
    (:mod:`~latentrl.modules.dreamer_v3_2023_cnn`; train it with ``reco_loss="mse"``)."""
    shape = tuple(int(d) for d in observation_shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"make_dreamer_v3_2023_world_model: observations must be vectors [D] or images "
                         f"[C, H, W], got {list(shape)}")
    p = {**V1_SIZES, **(sizes or {})}
    unknown = set(p) - set(V1_SIZES)
    if unknown:
        raise ValueError(f"make_dreamer_v3_2023_world_model: unknown `sizes` keys {sorted(unknown)}, "
                         f"it takes {sorted(V1_SIZES)}")
    if len(shape) == 1:
        enc_net, embed_dim = nn.Sequential(Symlog(), v1_mlp(shape[0], None, p["mlp_units"], p["mlp_layers"])), p["mlp_units"]
    else:
        enc_net = V1ImageEncoder(shape, p["cnn_depth"])
        embed_dim = enc_net.out_features
    encoder = TensorDictModule(enc_net, in_keys=[observation_key], out_keys=["embed"])
    rssm = RSSMV3v1(int(action_dim), embed_dim, deter_dim=p["deter"], hidden_dim=p["hidden"],
                    num_classes=p["classes"])
    feat, latent = rssm.feature_dim, ["deter", "stoch"]
    dec_net = (v1_mlp(feat, shape[0], p["mlp_units"], p["mlp_layers"]) if len(shape) == 1
               else V1ImageDecoder(shape, feat, p["cnn_depth"]))
    decoder = TensorDictModule(LatentInput(dec_net), latent, ["reco_observation"])
    reward = TensorDictModule(LatentInput(v1_mlp(feat, reward_bins, p["units"], p["layers"], outscale=0.0)), latent,
                              ["reward_logits"])
    cont = TensorDictModule(LatentInput(v1_mlp(feat, 1, p["units"], p["layers"])), latent, ["continue_logit"])
    return WorldModel(encoder, RSSMObserve(rssm), decoder, reward, cont)


def make_dreamer_v3_2023_actor(rssm: RSSMV3v1, action_dim: int, *, discrete: bool, units: int = 512,
                               layers: int = 2, unimix: float = 0.01, min_std: float = 0.1, max_std: float = 1.0,
                               action_key="action") -> ProbabilisticActor:
    """The 2023 policy over ``(deter, stoch)``: one-hot with ``unimix`` (discrete) or the bounded normal."""
    action_dim = int(action_dim)
    if action_dim < 1:
        raise ValueError(f"make_dreamer_v3_2023_actor: `action_dim` must be >= 1, got {action_dim}")
    if discrete:
        net = v1_mlp(rssm.feature_dim, action_dim, units, layers)
        params = TensorDictModule(LatentInput(net), in_keys=["deter", "stoch"], out_keys=["logits"])
        return ProbabilisticActor(params, in_keys=["logits"], out_keys=[action_key],
                                  distribution_class=UnimixOneHotCategorical, distribution_kwargs={"unimix": unimix})
    net = v1_mlp(rssm.feature_dim, 2 * action_dim, units, layers, out_chunks=2)
    params = TensorDictModule(BoundedNormalParams(LatentInput(net), min_std, max_std), in_keys=["deter", "stoch"],
                              out_keys=["loc", "scale"])
    return ProbabilisticActor(params, in_keys=["loc", "scale"], out_keys=[action_key],
                              distribution_class=IndependentNormal)


def make_dreamer_v3_2023_critic(rssm: RSSMV3v1, *, units: int = 512, layers: int = 2, bins: int = 255,
                                out_key="value_logits") -> TensorDictModule:
    """The 2023 critic: ``value_logits`` over ``bins`` bins uniform in symlog space, output zero-initialized."""
    return TensorDictModule(LatentInput(v1_mlp(rssm.feature_dim, bins, units, layers, outscale=0.0)),
                            in_keys=["deter", "stoch"], out_keys=[out_key])
