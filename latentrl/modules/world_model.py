"""The world model of PlaNet and DreamerV2: encoder, RSSM, decoder, reward and discount heads.

``WorldModel`` only groups the parts; the loss that trains them is
:class:`~latentrl.objectives.world_model.WorldModelLoss`. Every head reads the
model state's feature ``cat([h_t, s_t])`` (:meth:`RSSM.features`):

* ``encoder(obs) -> e_t``: an MLP for vector observations, TorchRL's
  ``ObsEncoder`` (the Dreamer conv net, 4 layers of stride-2 4x4 convolutions)
  for images ``[C, 64, 64]``;
* ``decoder(feature) -> mean of o_t`` (a unit-variance Gaussian, as in both
  papers): an MLP, or TorchRL's ``ObsDecoder`` (transposed convolutions 5, 5, 6, 6);
* ``reward(feature) -> mean of r_t`` (unit-variance Gaussian), the reward
  received on arriving in the state;
* ``discount(feature) -> logit`` of the Bernoulli discount/continue
  predictor (DreamerV2, Section 2), optional.

Sizes: PlaNet (Hafner et al. 2019, Appendix A) uses 200-unit layers, a
30-unit Gaussian latent and a 200-unit GRU; DreamerV2 (Hafner et al. 2020,
Table D.1) 32x32 categoricals, a 600-unit GRU and 4-layer 400-unit heads
(Atari), 200 units on DMC.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.modules import MLP

from .rssm import RSSM

__all__ = ["WorldModel", "LatentPolicy", "make_world_model", "make_mlp"]


def make_mlp(in_features: int, out_features: int, units: int, layers: int, activation=nn.ELU) -> nn.Module:
    """TorchRL's ``MLP`` with ``layers`` hidden layers of ``units`` (``layers=0``: one linear map)."""
    return MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=[units] * layers,
        activation_class=activation,
    )


class _PixelDecoder(nn.Module):
    """TorchRL's ``ObsDecoder`` read from one feature vector ``cat([h, s])``."""

    def __init__(self, deter_dim: int, stoch_flat: int, channels: int, out_channels: int):
        super().__init__()
        from torchrl.modules.models.model_based import ObsDecoder

        self.deter_dim = deter_dim
        self.net = ObsDecoder(channels=channels, latent_dim=deter_dim + stoch_flat, out_channels=out_channels)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        h, s = feature.split([self.deter_dim, feature.shape[-1] - self.deter_dim], -1)
        return self.net(s, h)  # ObsDecoder concatenates (state, rnn_hidden)


class WorldModel(nn.Module):
    """Encoder, :class:`~latentrl.modules.rssm.RSSM`, decoder and reward (and optional discount) heads."""

    def __init__(
        self,
        rssm: RSSM,
        encoder: nn.Module,
        decoder: nn.Module,
        reward: nn.Module,
        discount: nn.Module | None = None,
    ):
        super().__init__()
        self.rssm, self.encoder, self.decoder, self.reward = rssm, encoder, decoder, reward
        self.discount = discount

    @property
    def feature_dim(self) -> int:
        return self.rssm.feature_dim

    def embed(self, observation: torch.Tensor) -> torch.Tensor:
        return self.encoder(observation)

    def predict_reward(self, feature: torch.Tensor) -> torch.Tensor:
        """Mean reward ``[*, 1]`` for arriving in the state with this feature."""
        return self.reward(feature)

    def predict_discount(self, feature: torch.Tensor, gamma: float = 0.995) -> torch.Tensor:
        """The discount ``[*, 1]`` of the state: the discount head's Bernoulli mean, or ``gamma`` without one.

        With a discount head trained on targets ``gamma * (1 - terminated)``
        (DreamerV2) the mean already includes ``gamma``.
        """
        if self.discount is None:
            return torch.full((*feature.shape[:-1], 1), float(gamma), device=feature.device, dtype=feature.dtype)
        return torch.sigmoid(self.discount(feature))


def make_world_model(
    observation_shape: Sequence[int],
    action_dim: int,
    *,
    latent: str = "gaussian",
    deter_dim: int = 200,
    hidden_dim: int = 200,
    stoch_dim: int = 30,
    num_vars: int = 32,
    num_classes: int = 32,
    min_std: float = 0.1,
    unimix: float = 0.0,
    units: int = 200,
    layers: int = 2,
    embed_dim: int = 200,
    cnn_channels: int = 32,
    predict_discount: bool = False,
) -> WorldModel:
    """Builds a :class:`WorldModel` for vector (``[D]``) or image (``[C, 64, 64]``) observations.

    Vector observations get MLP encoder and decoder of ``layers`` x ``units``
    (the encoder ends in ``embed_dim``); images get TorchRL's Dreamer conv
    encoder/decoder with ``cnn_channels`` (DreamerV2: 48). Reward and discount
    heads are MLPs of ``layers`` x ``units``.
    """
    observation_shape = tuple(int(d) for d in observation_shape)
    act = nn.ELU
    rssm_kwargs = dict(
        deter_dim=deter_dim, hidden_dim=hidden_dim, latent=latent, stoch_dim=stoch_dim,
        num_vars=num_vars, num_classes=num_classes, min_std=min_std, unimix=unimix,
    )
    if len(observation_shape) == 1:
        encoder = make_mlp(observation_shape[0], embed_dim, units, layers, act)
        rssm = RSSM(action_dim, embed_dim, **rssm_kwargs)
        decoder = make_mlp(rssm.feature_dim, observation_shape[0], units, layers, act)
    elif len(observation_shape) == 3:
        from torchrl.modules.models.model_based import ObsEncoder

        channels, height, width = observation_shape
        if (height, width) != (64, 64):
            raise ValueError(f"make_world_model: image observations must be [C, 64, 64], got {list(observation_shape)}")
        encoder = ObsEncoder(channels=cnn_channels, in_channels=channels)
        with torch.no_grad():
            embed = encoder(torch.zeros(1, *observation_shape)).shape[-1]
        rssm = RSSM(action_dim, embed, **rssm_kwargs)
        decoder = _PixelDecoder(deter_dim, rssm.stoch_flat, cnn_channels, channels)
    else:
        raise ValueError(
            f"make_world_model: `observation_shape` must be [D] (vector) or [C, 64, 64] (image), got {list(observation_shape)}"
        )
    reward = make_mlp(rssm.feature_dim, 1, units, layers, act)
    discount = make_mlp(rssm.feature_dim, 1, units, layers, act) if predict_discount else None
    return WorldModel(rssm, encoder, decoder, reward, discount)


class LatentPolicy(TensorDictModuleBase):
    """Acts from the world model's filtered state: the recurrent policy of PlaNet and Dreamer.

    At every env step it updates the posterior state with the new observation,
    ``(h_t, s_t) = obs_step(h_{t-1}, s_{t-1}, a_{t-1}, e_t)`` (``s_t`` sampled),
    and asks ``act_fn(h_t, s_t, explore) -> a_t`` for the action (a planner or
    an actor). The state ``(h, s, a)`` travels with the env, TorchRL's way for
    recurrent policies (like ``LSTMModule``): it is read from
    ``state_keys`` and written to ``("next", key)``; ``make_tensordict_primer()``
    declares it to the env, and ``is_init`` resets it to zero.
    ``explore`` is true under TorchRL's ``RANDOM`` exploration type (collection)
    and false under ``DETERMINISTIC``/``MODE``/``MEAN`` (evaluation).
    """

    def __init__(
        self,
        world_model: WorldModel,
        act_fn,
        *,
        observation_key="observation",
        action_key="action",
        is_init_key="is_init",
        state_keys=("rssm_deter", "rssm_stoch", "rssm_action"),
    ):
        super().__init__()
        self.world_model = world_model
        self.act_fn = act_fn
        self.observation_key, self.action_key, self.is_init_key = observation_key, action_key, is_init_key
        self.state_keys = tuple(state_keys)
        if len(self.state_keys) != 3:
            raise ValueError(f"LatentPolicy: `state_keys` must name (deter, stoch, action), got {state_keys!r}")
        self.in_keys = [observation_key, is_init_key, *self.state_keys]
        self.out_keys = [action_key] + [("next", k) for k in self.state_keys]

    @property
    def recomputed_keys(self) -> list:
        """The filter state at both steps (``state_keys`` and ``("next", key)``).

        A world-model loss refilters replayed observations from the start of
        each sequence, so a replay buffer need not store the acting state.
        """
        return [*self.state_keys, *(("next", k) for k in self.state_keys)]

    def make_tensordict_primer(self):
        from torchrl.data import Unbounded
        from torchrl.envs import TensorDictPrimer

        rssm = self.world_model.rssm
        dims = (rssm.deter_dim, rssm.stoch_flat, rssm.action_dim)
        return TensorDictPrimer(
            {k: Unbounded(shape=(d,)) for k, d in zip(self.state_keys, dims)}, expand_specs=True
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        from torchrl.envs.utils import ExplorationType, exploration_type

        rssm = self.world_model.rssm
        unbatched = tensordict.batch_dims == 0
        td = tensordict.unsqueeze(0) if unbatched else tensordict
        obs = td.get(self.observation_key)
        batch = td.batch_size
        h0, s0 = rssm.initial_state(batch, device=obs.device, dtype=obs.dtype)
        h = td.get(self.state_keys[0], h0)
        s = td.get(self.state_keys[1], s0)
        a = td.get(self.state_keys[2], torch.zeros(*batch, rssm.action_dim, device=obs.device, dtype=obs.dtype))
        is_init = td.get(self.is_init_key, None)
        if is_init is not None:
            keep = (~is_init.reshape(*batch, 1).bool()).to(obs.dtype)
            h, s, a = h * keep, s * keep, a * keep
        h, _, post = rssm.obs_step(h, s, a.to(obs.dtype), self.world_model.embed(obs))
        s = rssm.sample_state(post)
        explore = exploration_type() in (ExplorationType.RANDOM, None)
        action = self.act_fn(h, s, explore)
        values = {self.action_key: action, ("next", self.state_keys[0]): h,
                  ("next", self.state_keys[1]): s, ("next", self.state_keys[2]): action.to(obs.dtype)}
        for key, value in values.items():
            tensordict.set(key, value[0] if unbatched else value)
        return tensordict
