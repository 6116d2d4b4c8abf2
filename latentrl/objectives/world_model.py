"""One world-model loss for PlaNet, DreamerV2 and DreamerV3, the KL term chosen by a paper preset.

For a replayed sequence (batch ``[B, T]``, TorchRL's layout: ``action[t]``
follows ``observation[t]`` and leads to ``("next", "observation")[t]`` with
``("next", "reward")[t]``), the loss filters the ``T + 1`` observations
``observation[0..T-1], ("next", "observation")[T-1]`` through the RSSM
posterior (resetting at ``is_init``) and sums

* ``loss_model_reco``: ``-log N(o_t; decoder(h_t, s_t), 1)`` summed over the
  observation's dimensions (without the constant), averaged over ``[B, T+1]``;
  DreamerV3 (``reco_loss``): the squared error, to ``symlog(o_t)`` for vectors;
* ``loss_model_reward``: ``-log N(r; reward(h_{t+1}, s_{t+1}), 1)`` for each
  transition ``t -> t+1`` whose next state was observed (not across an
  ``is_init`` reset); DreamerV3 (``reward_loss="two_hot"``): the two-hot
  cross-entropy of the reward head's 255 symexp-bin logits (TorchRL's
  ``two_hot_cross_entropy``); ``reward_loss="symlog_two_hot"``: the 2023 release's
  255 bins uniform in symlog space (:mod:`latentrl.objectives.two_hot`);
* ``loss_model_discount`` (with a discount head): binary cross-entropy of the
  Bernoulli discount predictor against ``discount * (1 - terminated)``
  (DreamerV2, Section 2: 0.995 inside an episode, 0 at termination;
  DreamerV3 predicts the continue flag, target 1);
* ``loss_model_kl``: the preset's KL term between ``q(s_t | h_t, e_t)`` and
  ``p(s_t | h_t)``, over ``[B, T+1]``:

  =============  ===================================================================
  ``planet``     ``max(free_nats, KL(q || p))``, free nats 3 (Hafner et al. 2019,
                 PlaNet, Section 4 / Appendix A), scale 1, Gaussian latent
  ``dreamer_v2`` ``kl_scale * (alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p)))``,
                 ``alpha = 0.8``, ``kl_scale = 0.1``, free nats optional (0 on Atari,
                 1 on DMC) (Hafner et al. 2020, DreamerV2, Algorithm 2, Table D.1)
  ``dreamer_v3`` ``dyn_scale * max(1, KL(sg(q) || p)) + rep_scale * max(1, KL(q || sg(p)))``,
                 1.0 and 0.1, free bits on the KL summed over the 32 latents
                 (Hafner et al. 2023, DreamerV3, eq. 5); categorical latent, with
                 the 1% unimix in the RSSM (``RSSM(unimix=0.01)``), whose logits carry it
  =============  ===================================================================

Each term is also scaled by ``*_scale`` (DreamerV2 Atari: ``discount_scale=5``).

The loss reads keys only. It builds the ``[B, T + 1]`` sequence
(``observation``, ``action``, ``is_init``), runs the ``world_model`` module on
it (any ``TensorDictModuleBase``, e.g.
:class:`~latentrl.modules.world_model.WorldModel`, or TorchRL parts with the
same keys) and reads what it wrote: ``reco_observation``,
``predicted_reward``, ``discount_logit`` (its loss is added when the key is
there), and the latent stats under ``prior``/``posterior`` (``mean``/``std``:
Gaussian, ``logits``: categorical). ``forward`` also writes the posterior
states ``deter`` ``[B, T, deter]`` and ``stoch`` ``[B, T, stoch]`` (with
gradients; detach them to start imagination, as Dreamer does) into the input
TensorDict. Every key is set by ``set_keys``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import distributions as D
from torch.nn import functional as F
from torchrl.modules.functional import symlog
from torchrl.objectives import LossModule

from latentrl.checks import check_tensors, require_keys
from latentrl.modules.distributions import StraightThroughOneHotCategorical

from .functional import kl_balanced, kl_dyn_rep, kl_free_nats
from .two_hot import two_hot_bins, two_hot_loss, two_hot_value

__all__ = ["WorldModelLoss", "KL_PRESETS", "HEAD_LOSSES"]

#: the paper values of each preset (any of them can be overridden by keyword)
KL_PRESETS = {
    "planet": dict(kl_scale=1.0, free_nats=3.0, discount=0.995),
    "dreamer_v2": dict(kl_scale=0.1, free_nats=0.0, kl_balance=0.8, discount=0.995),
    # the code's continue target (1 - terminal)(1 - 1/horizon), horizon 333 ("contdisc")
    "dreamer_v3": dict(dyn_scale=1.0, rep_scale=0.1, free_bits=1.0, discount=1.0 - 1.0 / 333),
}
#: per preset: the reconstruction loss and the reward loss
HEAD_LOSSES = {
    "planet": ("gaussian", "gaussian"),
    "dreamer_v2": ("gaussian", "gaussian"),
    "dreamer_v3": ("symlog_mse", "two_hot"),
}
RECO_LOSSES = ("gaussian", "mse", "symlog_mse")
REWARD_LOSSES = ("gaussian", "two_hot", "symlog_two_hot")
_TWO_HOT_SPACE = {"two_hot": "symexp", "symlog_two_hot": "symlog"}
_PRESET_KEYS = {
    "planet": ("kl_scale", "free_nats"),
    "dreamer_v2": ("kl_scale", "free_nats", "kl_balance"),
    "dreamer_v3": ("dyn_scale", "rep_scale", "free_bits"),
}


def _gaussian_nll(mean: torch.Tensor, target: torch.Tensor, event_dims: int) -> torch.Tensor:
    """``-log N(target; mean, 1)`` without the constant, summed over the last ``event_dims`` dims."""
    sq = 0.5 * (target - mean).pow(2)
    return sq.flatten(-event_dims).sum(-1) if event_dims > 0 else sq


def _reco_loss(kind: str, prediction: torch.Tensor, target: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Per-step reconstruction loss: Gaussian NLL (PlaNet/V2), or DreamerV3's squared error
    (``mse``, images) and squared error to ``symlog(target)`` (``symlog_mse``, vectors: the decoder
    predicts in symlog space), summed over the observation's dimensions."""
    if kind == "gaussian":
        return _gaussian_nll(prediction, target, event_dims)
    if kind == "symlog_mse":
        target = symlog(target)
    sq = (prediction - target).pow(2)
    return sq.flatten(-event_dims).sum(-1) if event_dims > 0 else sq


class WorldModelLoss(LossModule):
    """Reconstruction, reward, discount and a preset KL term for a keyed world model.

    Args:
        world_model: a ``TensorDictModuleBase`` reading ``observation``,
            ``action``, ``is_init`` over ``[B, T + 1]`` and writing the keys
            listed in the module docstring (e.g. :func:`~latentrl.modules.world_model.make_world_model`).
        kl: ``"planet"``, ``"dreamer_v2"`` or ``"dreamer_v3"`` (see the module docstring;
            ``dreamer_v3`` needs categorical latents).
        kl_scale, free_nats, kl_balance: ``planet``/``dreamer_v2`` parameters.
        dyn_scale, rep_scale, free_bits: ``dreamer_v3`` parameters.
        discount: discount target inside an episode (0.995; DreamerV3: ``1 − 1/333``, the code's
            ``contdisc``, so the continue head's prediction is the imagination's discount).
        reco_loss: ``"gaussian"`` (PlaNet, DreamerV2), ``"mse"`` or ``"symlog_mse"`` (DreamerV3,
            images and vectors); default by preset (:data:`HEAD_LOSSES`).
        reward_loss: ``"gaussian"`` (reads ``predicted_reward``), ``"two_hot"`` (DreamerV3: reads
            ``reward_logits`` over 255 symexp bins and writes the decoded ``predicted_reward``) or
            ``"symlog_two_hot"`` (DreamerV3's 2023 release: 255 bins uniform in symlog space);
            default by preset.
        num_bins: two-hot bins (255).
        reco_scale, reward_scale, discount_scale: weights of the other terms.

    Keys (``set_keys``): data ``observation``, ``next_observation``
    (``("next", "observation")``), ``action``, ``reward`` (``("next", "reward")``),
    ``terminated`` (``("next", "terminated")``), ``is_init``; the model's
    ``reco_observation``, ``predicted_reward``, ``discount_logit``, ``prior``,
    ``posterior``, ``deter``, ``stoch``. Keys that change together: the loss
    hands the ``[B, T + 1]`` sequence to ``world_model`` under ``observation``,
    ``action`` and ``is_init``, so renaming one of them renames the model's
    input too (``make_world_model(observation_key=...)``); the model's output
    keys must match ``reco_observation`` ... ``stoch``. Without ``is_init`` a
    sequence is read as one episode (a warning says so once). An optional
    ``context`` (DreamerV3's replay context, :class:`~latentrl.collectors.ReplayContext`:
    the stored state carried into each step) is handed on too, and the model's
    :class:`~latentrl.modules.world_model.RSSMObserve` starts each sequence from it.
    """

    @dataclass
    class _AcceptedKeys:
        observation: NestedKey = "observation"
        next_observation: NestedKey = ("next", "observation")
        action: NestedKey = "action"
        reward: NestedKey = ("next", "reward")
        terminated: NestedKey = ("next", "terminated")
        is_init: NestedKey = "is_init"
        context: NestedKey = "context"
        reco_observation: NestedKey = "reco_observation"
        predicted_reward: NestedKey = "predicted_reward"
        reward_logits: NestedKey = "reward_logits"
        discount_logit: NestedKey = "discount_logit"
        prior: NestedKey = "prior"
        posterior: NestedKey = "post"
        deter: NestedKey = "deter"
        stoch: NestedKey = "stoch"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = ["loss_model_kl", "loss_model_reco", "loss_model_reward", "loss_model_discount", "kl", "reco_nll",
                "reward_nll", "prior_entropy", "post_entropy"]

    def __init__(
        self,
        world_model: TensorDictModuleBase,
        kl: str = "dreamer_v2",
        *,
        kl_scale: float | None = None,
        free_nats: float | None = None,
        kl_balance: float | None = None,
        dyn_scale: float | None = None,
        rep_scale: float | None = None,
        free_bits: float | None = None,
        discount: float | None = None,
        reco_loss: str | None = None,
        reward_loss: str | None = None,
        num_bins: int = 255,
        reco_scale: float = 1.0,
        reward_scale: float = 1.0,
        discount_scale: float = 1.0,
    ):
        super().__init__()
        if kl not in KL_PRESETS:
            raise ValueError(f"WorldModelLoss: `kl` must be one of {sorted(KL_PRESETS)}, got {kl!r}")
        given = dict(kl_scale=kl_scale, free_nats=free_nats, kl_balance=kl_balance, dyn_scale=dyn_scale,
                     rep_scale=rep_scale, free_bits=free_bits)
        for name, value in given.items():
            if value is not None and name not in _PRESET_KEYS[kl]:
                raise ValueError(
                    f"WorldModelLoss: `{name}` does not apply to kl={kl!r} (its parameters: {', '.join(_PRESET_KEYS[kl])})"
                )
        params = dict(KL_PRESETS[kl])
        params.update({k: v for k, v in given.items() if v is not None})
        if discount is not None:
            params["discount"] = discount
        if kl == "dreamer_v2" and not 0.0 <= params["kl_balance"] <= 1.0:
            raise ValueError(f"WorldModelLoss: `kl_balance` must be in [0, 1], got {params['kl_balance']}")
        if not 0.0 <= params["discount"] <= 1.0:
            raise ValueError(f"WorldModelLoss: `discount` must be in [0, 1], got {params['discount']}")
        for name in ("free_nats", "free_bits"):
            if params.get(name, 0.0) < 0:
                raise ValueError(f"WorldModelLoss: `{name}` must be >= 0, got {params[name]}")
        reco_loss = HEAD_LOSSES[kl][0] if reco_loss is None else reco_loss
        reward_loss = HEAD_LOSSES[kl][1] if reward_loss is None else reward_loss
        if reco_loss not in RECO_LOSSES:
            raise ValueError(f"WorldModelLoss: `reco_loss` must be one of {list(RECO_LOSSES)}, got {reco_loss!r}")
        if reward_loss not in REWARD_LOSSES:
            raise ValueError(f"WorldModelLoss: `reward_loss` must be one of {list(REWARD_LOSSES)}, got {reward_loss!r}")
        self.reco_loss, self.reward_loss = reco_loss, reward_loss
        if reward_loss in _TWO_HOT_SPACE:
            self.register_buffer("bins", two_hot_bins(int(num_bins), _TWO_HOT_SPACE[reward_loss], owner="WorldModelLoss"))
        self.world_model = world_model
        self.kl = kl
        self.params = params
        self.reco_scale, self.reward_scale, self.discount_scale = float(reco_scale), float(reward_scale), float(discount_scale)
        self._warned_is_init = False

    @property
    def in_keys(self):
        keys = self.tensor_keys
        return [keys.observation, keys.next_observation, keys.action, keys.reward, keys.terminated, keys.is_init]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    # ----------------------------------------------------------------- terms
    @staticmethod
    def latent_dist_fn(stats: TensorDictBase):
        """``(parameters, dist_fn)`` of the latent from its stats: ``mean``/``std`` (Gaussian) or ``logits``."""
        if "logits" in stats.keys():
            return (stats.get("logits"),), lambda logits: D.Independent(StraightThroughOneHotCategorical(logits=logits), 1)
        if "mean" in stats.keys() and "std" in stats.keys():
            return (stats.get("mean"), stats.get("std")), lambda mean, std: D.Independent(D.Normal(mean, std), 1)
        raise KeyError(f"WorldModelLoss: latent stats need 'logits' or 'mean' and 'std', got {sorted(stats.keys())}")

    def kl_term(self, post: TensorDictBase, prior: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, KL(q || p) per step [B, T])`` of the preset, from the latent stats.

        Categorical KLs are between the distributions the RSSM samples from
        (its logits include any unimix, DreamerV3).
        """
        p = self.params
        q, dist_fn = self.latent_dist_fn(post)
        pr, _ = self.latent_dist_fn(prior)
        if self.kl == "dreamer_v3" and len(q) != 1:
            raise ValueError("WorldModelLoss: kl='dreamer_v3' needs a categorical latent (stats with 'logits')")
        with torch.no_grad():
            value = D.kl_divergence(dist_fn(*q), dist_fn(*pr))
        if self.kl == "planet":
            loss = p["kl_scale"] * kl_free_nats(q, pr, dist_fn, p["free_nats"])
        elif self.kl == "dreamer_v2":
            loss = p["kl_scale"] * kl_balanced(q, pr, dist_fn, alpha=p["kl_balance"], free_nats=p["free_nats"])
        else:
            dyn, rep = kl_dyn_rep(q[0], pr[0], p["dyn_scale"], p["rep_scale"], p["free_bits"], unimix=0.0)
            loss = dyn + rep
        return loss, value

    # --------------------------------------------------------------- forward
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        if tensordict.ndim != 2:
            raise ValueError(
                f"WorldModelLoss: expected a TensorDict of batch [B, T] (sequences, time last), got batch {list(tensordict.batch_size)}"
            )
        require_keys("WorldModelLoss", tensordict, {
            "observation": keys.observation, "next_observation": keys.next_observation, "action": keys.action,
            "reward": keys.reward, "terminated": keys.terminated,
        })
        B, T = tensordict.batch_size
        obs = tensordict.get(keys.observation)
        check_tensors("WorldModelLoss", {"observation": obs}, finite=("observation",))
        obs = torch.cat([obs, tensordict.get(keys.next_observation)[:, -1:]], 1)  # [B, T+1, ...]
        action = tensordict.get(keys.action).to(obs.dtype)
        action = torch.cat([action, torch.zeros_like(action[:, :1])], 1)  # the last is never used
        is_init = tensordict.get(keys.is_init, None)
        if is_init is None:
            if not self._warned_is_init:
                warnings.warn(
                    f"WorldModelLoss: the batch has no {keys.is_init!r} (the `is_init` key): every sequence is read "
                    "as one episode, without a reset inside; add TorchRL's InitTracker() transform to the env (or "
                    "set_keys(is_init=...)) if sequences can cross an episode start", UserWarning, stacklevel=2)
                self._warned_is_init = True
            is_init = torch.zeros(B, T, dtype=torch.bool, device=obs.device)
        is_init = is_init.reshape(B, T).bool()
        is_init = torch.cat([is_init, torch.zeros_like(is_init[:, :1])], 1)  # next obs [T-1] continues step T-1
        reward = tensordict.get(keys.reward).reshape(B, T, -1)[..., :1].to(obs.dtype)
        terminated = tensordict.get(keys.terminated).reshape(B, T).to(obs.dtype)

        seq = TensorDict({keys.observation: obs, keys.action: action, keys.is_init: is_init.unsqueeze(-1)}, [B, T + 1])
        context = tensordict.get(keys.context, None)
        if context is not None:  # only step 0 is read: a view of it over the T + 1 steps, no copy
            seq.set(keys.context, context[:, :1].expand(B, T + 1))
        seq = self.world_model(seq)

        event_dims = obs.ndim - 2
        reco = _reco_loss(self.reco_loss, seq.get(keys.reco_observation), obs, event_dims).mean()
        # transition t -> t+1 is observed unless a reset starts at t+1
        valid = (~is_init[:, 1:]).to(obs.dtype)  # [B, T]
        count = valid.sum().clamp_min(1.0)
        if self.reward_loss in _TWO_HOT_SPACE:
            space = _TWO_HOT_SPACE[self.reward_loss]
            logits = seq.get(keys.reward_logits)
            reward_nll = two_hot_loss(logits[:, 1:], reward[..., 0], self.bins, space)
            seq.set(keys.predicted_reward, two_hot_value(logits.detach(), self.bins, space).unsqueeze(-1))
        else:
            reward_nll = _gaussian_nll(seq.get(keys.predicted_reward)[:, 1:, 0], reward[..., 0], 0)
        reward_loss = (reward_nll * valid).sum() / count
        post, prior = seq.get(keys.posterior), seq.get(keys.prior)
        kl_loss, kl_value = self.kl_term(post, prior)

        out = {
            "loss_model_kl": kl_loss,
            "loss_model_reco": self.reco_scale * reco,
            "loss_model_reward": self.reward_scale * reward_loss,
        }
        logit = seq.get(keys.discount_logit, None)
        if logit is not None:
            target = self.params["discount"] * (1.0 - terminated)
            bce = F.binary_cross_entropy_with_logits(logit[:, 1:, 0], target, reduction="none")
            out["loss_model_discount"] = self.discount_scale * (bce * valid).sum() / count
        with torch.no_grad():
            q, dist_fn = self.latent_dist_fn(post)
            pr, _ = self.latent_dist_fn(prior)
            out["kl"] = kl_value.mean()
            out["reco_nll"] = reco.detach()
            out["reward_nll"] = reward_loss.detach()
            out["prior_entropy"] = dist_fn(*pr).entropy().mean()
            out["post_entropy"] = dist_fn(*q).entropy().mean()
        tensordict.set(keys.deter, seq.get(keys.deter)[:, :T])
        tensordict.set(keys.stoch, seq.get(keys.stoch)[:, :T])
        return TensorDict(out, batch_size=[])
