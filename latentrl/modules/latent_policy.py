"""Acting from the world model's filtered state: the recurrent policy of PlaNet and Dreamer.

:class:`LatentPolicy` composes three keyed parts: an ``encoder``
(``observation -> embed``), the RSSM's posterior step and an ``actor`` that
reads the latent state ``(deter, stoch)`` and writes the action: a
Dreamer actor (:func:`~latentrl.modules.actor_critic.make_dreamer_actor`) or a
planner (:class:`~latentrl.modules.planners.CEMPlanner`). At every env step
it updates the posterior with the new observation,
``(h_t, s_t) = post(h_{t-1}, s_{t-1}, a_{t-1}, e_t)`` (``s_t`` sampled), then
asks the actor for ``a_t``.

The state ``(h, s, a)`` travels with the env, TorchRL's way for recurrent
policies (like ``LSTMModule``): it is read from ``state_keys`` and written
to ``("next", key)``; :meth:`LatentPolicy.make_tensordict_primer` declares
it to the env, and ``is_init`` resets it to the RSSM's ``initial_state`` (zero, or
learned) and a zero action. Whether the actor samples
or takes its mode follows TorchRL's exploration type (``RANDOM`` while
collecting, ``DETERMINISTIC`` in evaluation).
"""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from .rssm import RSSM

__all__ = ["LatentPolicy"]


class LatentPolicy(TensorDictModuleBase):
    """Filters observations through the RSSM posterior and acts with ``actor`` (see the module docstring).

    Args:
        encoder: reads ``observation_key``, writes ``"embed"`` (e.g. ``world_model.encoder``).
        rssm: the :class:`~latentrl.modules.rssm.RSSM` (``world_model.rssm``).
        actor: reads ``"deter"``, ``"stoch"``, writes ``action_key``.
        observation_key, action_key, is_init_key: env keys.
        state_keys: the carried ``(deter, stoch, action)`` keys.
    """

    def __init__(
        self,
        encoder: TensorDictModuleBase,
        rssm: RSSM,
        actor: TensorDictModuleBase,
        *,
        observation_key: NestedKey = "observation",
        action_key: NestedKey = "action",
        is_init_key: NestedKey = "is_init",
        state_keys=("rssm_deter", "rssm_stoch", "rssm_action"),
    ):
        super().__init__()
        self.encoder, self.rssm, self.actor = encoder, rssm, actor
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

        dims = (self.rssm.deter_dim, self.rssm.stoch_flat, self.rssm.action_dim)
        return TensorDictPrimer(
            {k: Unbounded(shape=(d,)) for k, d in zip(self.state_keys, dims)}, expand_specs=True
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        rssm = self.rssm
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
            keep = (~is_init.reshape(*batch, 1).bool()).to(obs.dtype)  # a reset restarts from the initial state
            h, s, a = keep * h + (1.0 - keep) * h0, keep * s + (1.0 - keep) * s0, a * keep
        embed = self.encoder(TensorDict({self.observation_key: obs}, batch)).get("embed")
        h, post = rssm.filter_step(h, s, a.to(obs.dtype), embed)
        s = rssm.sample_state(post)
        action = self.actor(TensorDict({"deter": h, "stoch": s}, batch)).get(self.action_key)
        values = {self.action_key: action, ("next", self.state_keys[0]): h,
                  ("next", self.state_keys[1]): s, ("next", self.state_keys[2]): action.to(obs.dtype)}
        for key, value in values.items():
            tensordict.set(key, value[0] if unbatched else value)
        return tensordict
