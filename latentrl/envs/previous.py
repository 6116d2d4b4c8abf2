"""The previous action and reward as observations (R2D2, Kapturowski et al. 2019).

R2D2's LSTM reads, besides the torso's output, a one-hot encoding of the
previous action and the previous reward. :class:`PreviousActionReward` adds
them to every step of a TorchRL env, so the values a collector stores are the
ones the actor saw:

* ``"prev_action"``: float one-hot ``[*, n_actions]`` of ``a_{t-1}``;
* ``"prev_reward"``: float ``[*, 1]``, ``r_{t-1}``;

both zeros after a reset (also partial resets of a batched env: only the
reset entries are zeroed).
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey, expand_as_right
from torchrl.data import Bounded, Categorical, OneHot, TensorSpec, Unbounded
from torchrl.envs.transforms import Transform
from torchrl.envs.transforms.utils import _get_reset

__all__ = ["PreviousActionReward"]


class PreviousActionReward(Transform):
    """Writes the previous action (one-hot) and previous reward into each observation.

    The number of actions is read from the parent's action spec: a ``OneHot``
    spec (the actions are one-hot vectors) or a ``Categorical`` spec (the
    actions are indices, of shape ``[*]`` or ``[*, 1]``).

    Args:
        action_key: the action entry. Default ``"action"``.
        reward_key: the reward entry. Default ``"reward"``.
        prev_action_key, prev_reward_key: where to write. Defaults
            ``"prev_action"`` / ``"prev_reward"`` (the keys
            :func:`latentrl.modules.q_networks.make_recurrent_q_network` reads).
        reset_key: the partial-reset entry of the parent (default: the parent's
            only reset key, ``"_reset"``).

    Example:
        >>> from torchrl.envs import TransformedEnv
        >>> env = TransformedEnv(make_env("CartPole-v1", num_envs=4), PreviousActionReward())
        >>> td = env.rollout(3)
        >>> td["next", "prev_action"].shape, td["next", "prev_reward"].shape
        (torch.Size([4, 3, 2]), torch.Size([4, 3, 1]))
    """

    def __init__(
        self,
        action_key: NestedKey = "action",
        reward_key: NestedKey = "reward",
        prev_action_key: NestedKey = "prev_action",
        prev_reward_key: NestedKey = "prev_reward",
        reset_key: NestedKey | None = None,
    ):
        super().__init__(in_keys=[action_key, reward_key], out_keys=[prev_action_key, prev_reward_key])
        self.action_key, self.reward_key = action_key, reward_key
        self.prev_action_key, self.prev_reward_key = prev_action_key, prev_reward_key
        self._reset_key = reset_key

    # ------------------------------------------------------------------ specs
    def _action_spec(self) -> TensorSpec:
        parent = self.parent
        if parent is None:
            raise RuntimeError("PreviousActionReward must be appended to an env (it reads the action spec)")
        return parent.full_action_spec[self.action_key]

    @property
    def n_actions(self) -> int:
        spec = self._action_spec()
        if isinstance(spec, (OneHot, Categorical)):
            return int(spec.space.n)
        raise TypeError(
            f"PreviousActionReward: needs a OneHot or Categorical action spec under {self.action_key!r}, "
            f"got {type(spec).__name__}"
        )

    @property
    def reset_key(self) -> NestedKey:
        if self._reset_key is None:
            keys = self.parent._filtered_reset_keys
            if len(keys) != 1:
                raise ValueError(f"PreviousActionReward: pass reset_key=, the parent has several: {keys}")
            self._reset_key = keys[0]
        return self._reset_key

    def _shapes(self) -> tuple[torch.Size, torch.Size]:
        batch = self.parent.batch_size
        return torch.Size([*batch, self.n_actions]), torch.Size([*batch, 1])

    def transform_observation_spec(self, observation_spec: TensorSpec) -> TensorSpec:
        action_shape, reward_shape = self._shapes()
        reward_spec = self.parent.full_reward_spec[self.reward_key]
        device = observation_spec.device
        observation_spec[self.prev_action_key] = Bounded(
            low=0.0, high=1.0, shape=action_shape, dtype=torch.float32, device=device
        )
        observation_spec[self.prev_reward_key] = Unbounded(shape=reward_shape, dtype=reward_spec.dtype, device=device)
        return observation_spec

    # ------------------------------------------------------------------ values
    def _one_hot(self, action: torch.Tensor) -> torch.Tensor:
        spec = self._action_spec()
        if isinstance(spec, OneHot):
            return action.to(torch.float32)
        n = self.n_actions
        index = action.long()
        batch_ndim = len(self.parent.batch_size)
        if index.ndim > batch_ndim and index.shape[-1] == 1:
            index = index.squeeze(-1)
        return torch.nn.functional.one_hot(index, n).to(torch.float32)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(self.action_key)
        reward = next_tensordict.get(self.reward_key)
        _, reward_shape = self._shapes()
        next_tensordict.set(self.prev_action_key, self._one_hot(action))
        next_tensordict.set(self.prev_reward_key, reward.reshape(reward_shape).clone())
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        action_shape, reward_shape = self._shapes()
        device = tensordict_reset.device
        if device is None:
            device = torch.device("cpu")
        reward_dtype = self.parent.full_reward_spec[self.reward_key].dtype
        zeros = {
            self.prev_action_key: torch.zeros(action_shape, dtype=torch.float32, device=device),
            self.prev_reward_key: torch.zeros(reward_shape, dtype=reward_dtype, device=device),
        }
        reset = _get_reset(self.reset_key, tensordict) if tensordict is not None else None
        for key, zero in zeros.items():
            previous = tensordict.get(key, None) if tensordict is not None else None
            if previous is None or reset is None:
                value = zero
            else:  # partial reset: keep the entries that are not reset
                value = torch.where(expand_as_right(reset, previous), zero, previous)
            tensordict_reset.set(key, value)
        return tensordict_reset

    def _reset_on_native_autoreset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        return self._reset(tensordict, tensordict_reset)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise NotImplementedError(
            "PreviousActionReward is an env transform (append it to a TransformedEnv); "
            "it has no offline form."
        )
