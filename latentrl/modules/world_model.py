"""The world model of PlaNet and DreamerV2 as keyed TensorDict modules.

Every part reads and writes named keys, so a user can swap any of them (an
encoder, a decoder, a head) for another ``TensorDictModule`` with the same
keys, TorchRL's own included:

=================  ======================================  ==========================================
part               reads                                   writes
=================  ======================================  ==========================================
``encoder``        ``"observation"``                       ``"embed"``
``observe``        ``"embed"``, ``"action"``, ``"is_init"``  ``"deter"`` h, ``"stoch"`` s, ``("prior", *)``,
(:class:`RSSMObserve`)                                     ``("post", *)`` (stats, see :mod:`~latentrl.modules.rssm`)
``decoder``        ``"deter"``, ``"stoch"``                 ``"reco_observation"`` (mean of a unit Gaussian)
``reward_model``   ``"deter"``, ``"stoch"``                 ``"predicted_reward"`` (mean of a unit Gaussian)
``discount_model`` ``"deter"``, ``"stoch"``                 ``"discount_logit"`` (Bernoulli; optional)
=================  ======================================  ==========================================

:class:`WorldModel` runs them in that order over a batch ``[B, T]`` (the
input of :class:`~latentrl.objectives.world_model.WorldModelLoss`);
:class:`RSSMImagine` rolls the prior out under a policy module (the input of
:class:`~latentrl.objectives.dreamer.DreamerActorCriticLoss`).

Heads read ``(deter, stoch)``, concatenated by TorchRL's ``MLP``. With
categorical latents their first layer is a
:class:`~latentrl.modules.onehot_linear.OneHotBlockLinear` (same parameters as
``nn.Linear``), which skips the multiply-adds of the one-hot ``s``.

Sizes: PlaNet (Hafner et al. 2019, Appendix A) uses 200-unit layers, a
30-unit Gaussian latent and a 200-unit GRU; DreamerV2 (Hafner et al. 2020,
Table D.1) 32x32 categoricals, a 600-unit GRU and 4-layer 400-unit heads
(Atari), 200 units on DMC. Images ``[C, 64, 64]`` use TorchRL's Dreamer
``ObsEncoder``/``ObsDecoder``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import MLP
from torchrl.modules.functional import symlog

from .onehot_linear import PartsMLP
from .rssm import RSSM

__all__ = ["WorldModel", "RSSMObserve", "RSSMImagine", "RSSMPriorStep", "make_world_model", "make_mlp", "make_latent_head",
           "zero_output_layer", "Symlog"]


class Symlog(nn.Module):
    """``symlog(x) = sign(x) log(1 + |x|)`` (DreamerV3's input squashing; TorchRL's function)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return symlog(x)


def zero_output_layer(module: nn.Module) -> nn.Module:
    """Zeroes the weight and bias of ``module``'s last ``nn.Linear`` (DreamerV3's ``outscale: 0.0`` heads)."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"zero_output_layer: {type(module).__name__} has no nn.Linear")
    with torch.no_grad():
        linears[-1].weight.zero_()
        if linears[-1].bias is not None:
            linears[-1].bias.zero_()
    return module


def make_mlp(in_features: int, out_features: int, units: int, layers: int, activation=nn.ELU) -> nn.Module:
    """TorchRL's ``MLP`` with ``layers`` hidden layers of ``units`` (``layers=0``: one linear map)."""
    return MLP(in_features=in_features, out_features=out_features, num_cells=[units] * layers,
               activation_class=activation)


def make_latent_head(rssm: RSSM, out_features: int, units: int, layers: int, activation=nn.ELU) -> nn.Module:
    """An MLP over ``cat([h, s])``; with a categorical latent its first layer skips the one-hot ``s``."""
    mlp = make_mlp(rssm.feature_dim, out_features, units, layers, activation)
    if rssm.latent == "categorical":
        return PartsMLP(mlp, (rssm.deter_dim, rssm.stoch_flat), block=1, num_vars=rssm.num_vars,
                        num_classes=rssm.num_classes)
    return mlp


class RSSMObserve(TensorDictModuleBase):
    """Posterior filtering (:meth:`RSSM.observe`) of a batch ``[*B, T]`` of sequences, by keys.

    Reads ``embed_key [*B, T, E]``, ``action_key [*B, T, A]`` and (if present)
    ``is_init_key [*B, T, 1]``; writes ``deter_key``, ``stoch_key`` and the
    stats under ``prior_key`` and ``posterior_key`` (``mean``/``std`` or ``logits``).

    Each sequence starts from the zero state, or, if the batch has
    ``context_key`` (DreamerV3's replay context, see
    :class:`~latentrl.collectors.ReplayContext`), from the state carried into
    its first step: ``(context_key, "deter") [*B, T, D]``, ``(context_key,
    "stoch")`` and ``(context_key, "action")``, of which only step 0 is read
    (an ``is_init`` at step 0 still resets it).
    """

    def __init__(self, rssm: RSSM, *, embed_key: NestedKey = "embed", action_key: NestedKey = "action",
                 is_init_key: NestedKey = "is_init", deter_key: NestedKey = "deter", stoch_key: NestedKey = "stoch",
                 prior_key: NestedKey = "prior", posterior_key: NestedKey = "post", context_key: NestedKey = "context",
                 sample: bool = True):
        super().__init__()
        self.rssm, self.sample, self.context_key = rssm, bool(sample), context_key
        self.embed_key, self.action_key, self.is_init_key = embed_key, action_key, is_init_key
        self.deter_key, self.stoch_key, self.prior_key, self.posterior_key = deter_key, stoch_key, prior_key, posterior_key
        stats = ("mean", "std") if rssm.latent == "gaussian" else ("logits",)
        self.in_keys = [embed_key, action_key, is_init_key]
        self.out_keys = [deter_key, stoch_key] + [_join(k, s) for k in (prior_key, posterior_key) for s in stats]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.ndim < 1:
            raise ValueError("RSSMObserve: expected a TensorDict with a time dimension (batch [*B, T])")
        shape = tensordict.batch_size
        flat = tensordict.reshape(-1, shape[-1])
        embed = flat.get(self.embed_key)
        state = prev_action = None
        context = flat.get(self.context_key, None)
        if context is not None:
            if not isinstance(context, TensorDictBase) or not {"deter", "stoch", "action"} <= set(context.keys()):
                got = sorted(context.keys()) if isinstance(context, TensorDictBase) else type(context).__name__
                raise KeyError(f"RSSMObserve: {self.context_key!r} (`context_key`) must be a TensorDict with 'deter', "
                               f"'stoch' and 'action' (the state carried into each step), got {got}")
            first = context[:, 0]
            state = (first.get("deter").to(embed.dtype), first.get("stoch").to(embed.dtype))
            prev_action = first.get("action").to(embed.dtype)
        out = self.rssm.observe(embed, flat.get(self.action_key).to(embed.dtype), flat.get(self.is_init_key, None),
                                state=state, prev_action=prev_action, sample=self.sample).reshape(shape)
        tensordict.set(self.deter_key, out["deter"])
        tensordict.set(self.stoch_key, out["stoch"])
        tensordict.set(self.prior_key, out["prior"])
        tensordict.set(self.posterior_key, out["post"])
        return tensordict


def _join(key: NestedKey, leaf: str) -> tuple:
    return (*((key,) if isinstance(key, str) else key), leaf)


class RSSMImagine(TensorDictModuleBase):
    """Prior rollouts (imagination) from start states under a policy module, TorchRL's trajectory layout.

    :meth:`rollout` reads ``deter_key``/``stoch_key`` ``[*N, D]`` (detach them
    to keep imagination from training the representation, as Dreamer does)
    and returns a TensorDict ``[*N, H]``: at step ``t`` the state ``z_t``
    (``deter``, ``stoch``), everything the policy wrote from it (``action``
    ``a_t`` and e.g. its distribution parameters), and under ``"next"`` the
    state ``z_{t+1} = prior(z_t, a_t)``. Gradients flow through the actions and
    the reparameterized / straight-through prior samples. The policy is
    called ``H`` times under the caller's exploration type (the
    ``RANDOM`` type samples), on ``sg(z_t)`` (``detach_policy_input=True``,
    as DreamerV2: the policy's log-probabilities then send no gradient into
    earlier actions).
    """

    def __init__(self, rssm: RSSM, *, deter_key: NestedKey = "deter", stoch_key: NestedKey = "stoch",
                 action_key: NestedKey = "action", sample: bool = True, detach_policy_input: bool = True):
        super().__init__()
        self.rssm, self.sample, self.detach_policy_input = rssm, bool(sample), bool(detach_policy_input)
        self.deter_key, self.stoch_key, self.action_key = deter_key, stoch_key, action_key
        self.in_keys = [deter_key, stoch_key]
        self.out_keys = [deter_key, stoch_key, action_key, ("next", deter_key), ("next", stoch_key)]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError("RSSMImagine: call rollout(tensordict, policy, horizon), as with a TorchRL env")

    def rollout(self, tensordict: TensorDictBase, policy: TensorDictModuleBase, horizon: int) -> TensorDictBase:
        if int(horizon) < 1:
            raise ValueError(f"RSSMImagine.rollout: `horizon` must be >= 1, got {horizon}")
        h, s = tensordict.get(self.deter_key), tensordict.get(self.stoch_key)
        if h.shape[:-1] != s.shape[:-1] or h.shape[:-1] != tensordict.batch_size:
            raise ValueError(f"RSSMImagine.rollout: {self.deter_key!r} {tuple(h.shape)} and {self.stoch_key!r} "
                             f"{tuple(s.shape)} must share the batch {list(tensordict.batch_size)}")
        batch = tensordict.batch_size
        steps, deters, stochs = [], [h], [s]
        for _ in range(int(horizon)):
            # the policy sees sg(z_t) (DreamerV2); the trajectory keeps z_t with its graph
            seen = (h.detach(), s.detach()) if self.detach_policy_input else (h, s)
            step = policy(TensorDict({self.deter_key: seen[0], self.stoch_key: seen[1]}, batch))
            step.set(self.deter_key, h)
            step.set(self.stoch_key, s)
            h, prior = self.rssm.img_step(h, s, step.get(self.action_key).to(h.dtype))
            s = self.rssm.sample_state(prior, sample=self.sample)
            steps.append(step)
            deters.append(h)
            stochs.append(s)
        traj = torch.stack(steps, -1)
        dim = len(batch)
        traj.set("next", TensorDict({self.deter_key: torch.stack(deters[1:], dim),
                                     self.stoch_key: torch.stack(stochs[1:], dim)}, traj.batch_size))
        return traj


class RSSMPriorStep(TensorDictModuleBase):
    """One prior transition by keys: ``(deter, stoch, action) -> ("next", deter), ("next", stoch)``.

    ``s' ~ p(s' | h')`` is sampled (``sample=True``, PlaNet's planner) or its mode.
    """

    def __init__(self, rssm: RSSM, *, deter_key: NestedKey = "deter", stoch_key: NestedKey = "stoch",
                 action_key: NestedKey = "action", sample: bool = True):
        super().__init__()
        self.rssm, self.sample = rssm, bool(sample)
        self.deter_key, self.stoch_key, self.action_key = deter_key, stoch_key, action_key
        self.in_keys = [deter_key, stoch_key, action_key]
        self.out_keys = [("next", deter_key), ("next", stoch_key)]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        h = tensordict.get(self.deter_key)
        h, prior = self.rssm.img_step(h, tensordict.get(self.stoch_key), tensordict.get(self.action_key).to(h.dtype))
        tensordict.set(("next", self.deter_key), h)
        tensordict.set(("next", self.stoch_key), self.rssm.sample_state(prior, sample=self.sample))
        return tensordict


class WorldModel(TensorDictModuleBase):
    """Runs ``encoder``, ``observe``, ``decoder``, ``reward_model`` and ``discount_model`` (if any) in order.

    Each part is a ``TensorDictModuleBase``; their keys are in the module
    docstring. ``rssm`` is the :class:`RSSM` inside ``observe``, for the
    acting and imagination modules (:class:`RSSMImagine`, ``LatentPolicy``).
    """

    def __init__(self, encoder: TensorDictModuleBase, observe: RSSMObserve, decoder: TensorDictModuleBase,
                 reward_model: TensorDictModuleBase, discount_model: TensorDictModuleBase | None = None):
        super().__init__()
        self.encoder, self.observe, self.decoder = encoder, observe, decoder
        self.reward_model, self.discount_model = reward_model, discount_model
        parts = [p for p in (encoder, observe, decoder, reward_model, discount_model) if p is not None]
        self.in_keys = list(dict.fromkeys(k for p in parts for k in p.in_keys
                                          if k not in {o for q in parts for o in q.out_keys}))
        self.out_keys = list(dict.fromkeys(k for p in parts for k in p.out_keys))

    @property
    def rssm(self) -> RSSM:
        return self.observe.rssm

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        for part in (self.encoder, self.observe, self.decoder, self.reward_model, self.discount_model):
            if part is not None:
                tensordict = part(tensordict)
        return tensordict


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
    observation_key: NestedKey = "observation",
    reward_bins: int | None = None,
    symlog_inputs: bool = False,
) -> WorldModel:
    """Builds a :class:`WorldModel` for vector (``[D]``) or image (``[C, 64, 64]``) observations.

    Vector observations get MLP encoder and decoder of ``layers`` x ``units``
    (the encoder ends in ``embed_dim``); images get TorchRL's Dreamer conv
    encoder/decoder with ``cnn_channels`` (DreamerV2: 48). Reward and discount
    heads are MLPs of ``layers`` x ``units``. The encoder reads ``observation_key``.

    DreamerV3 options: ``reward_bins=255`` makes the reward head write
    ``"reward_logits"`` over that many symexp two-hot bins, its output layer
    zero-initialized (the code's ``outscale: 0.0``: the predicted reward is
    exactly 0 at the start; pair it with ``WorldModelLoss(reward_loss="two_hot")``);
    ``symlog_inputs=True`` squashes vector observations with ``symlog`` before
    the encoder (the decoder then predicts ``symlog(o)``: ``reco_loss="symlog_mse"``).
    """
    observation_shape = tuple(int(d) for d in observation_shape)
    rssm_kwargs = dict(deter_dim=deter_dim, hidden_dim=hidden_dim, latent=latent, stoch_dim=stoch_dim,
                       num_vars=num_vars, num_classes=num_classes, min_std=min_std, unimix=unimix)
    if len(observation_shape) == 1:
        encoder_net = make_mlp(observation_shape[0], embed_dim, units, layers)
        rssm = RSSM(action_dim, embed_dim, **rssm_kwargs)
        decoder = TensorDictModule(make_latent_head(rssm, observation_shape[0], units, layers),
                                   in_keys=["deter", "stoch"], out_keys=["reco_observation"])
    elif len(observation_shape) == 3:
        from torchrl.modules.models.model_based import ObsDecoder, ObsEncoder

        channels, height, width = observation_shape
        if (height, width) != (64, 64):
            raise ValueError(f"make_world_model: image observations must be [C, 64, 64], got {list(observation_shape)}")
        encoder_net = ObsEncoder(channels=cnn_channels, in_channels=channels)
        with torch.no_grad():
            embed = encoder_net(torch.zeros(1, *observation_shape)).shape[-1]
        rssm = RSSM(action_dim, embed, **rssm_kwargs)
        decoder_net = ObsDecoder(channels=cnn_channels, latent_dim=rssm.feature_dim, out_channels=channels)
        # ObsDecoder(state, rnn_hidden) concatenates (stoch, deter)
        decoder = TensorDictModule(decoder_net, in_keys=["stoch", "deter"], out_keys=["reco_observation"])
    else:
        raise ValueError(
            f"make_world_model: `observation_shape` must be [D] (vector) or [C, 64, 64] (image), got {list(observation_shape)}"
        )
    if symlog_inputs:
        if len(observation_shape) != 1:
            raise ValueError("make_world_model: `symlog_inputs` applies to vector observations ([D])")
        encoder_net = nn.Sequential(Symlog(), encoder_net)
    encoder = TensorDictModule(encoder_net, in_keys=[observation_key], out_keys=["embed"])
    if reward_bins is None:
        reward = TensorDictModule(make_latent_head(rssm, 1, units, layers), in_keys=["deter", "stoch"],
                                  out_keys=["predicted_reward"])
    else:
        if int(reward_bins) < 2:
            raise ValueError(f"make_world_model: `reward_bins` must be >= 2, got {reward_bins}")
        head = zero_output_layer(make_latent_head(rssm, int(reward_bins), units, layers))
        reward = TensorDictModule(head, in_keys=["deter", "stoch"], out_keys=["reward_logits"])
    discount = None
    if predict_discount:
        discount = TensorDictModule(make_latent_head(rssm, 1, units, layers), in_keys=["deter", "stoch"],
                                    out_keys=["discount_logit"])
    return WorldModel(encoder, RSSMObserve(rssm), decoder, reward, discount)
