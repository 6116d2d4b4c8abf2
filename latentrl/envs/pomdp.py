"""Partially observable tasks for the memory agents.

* :class:`SelectObservationIndices`: keeps a subset of a vector observation.
  With ``indices=(0, 2)`` on CartPole it gives *masked CartPole*: cart
  position and pole angle only, velocities removed (the POMDP variant used
  e.g. by Meng et al. 2021, "Memory-based deep reinforcement learning for
  POMDPs"). A feed-forward policy must then act on positions alone.
* :class:`TMazeEnv`: a delayed-recall task in the form of Bakker's (2002)
  T-maze ("Reinforcement learning with long short-term memory"). A cue is
  shown at the first step only, the agent then walks a corridor of ``delay``
  steps and must answer at the junction with the action matching the cue. The
  corridor is passive (any action moves forward), so the task measures memory
  and nothing else: a perfect-memory policy scores 1.0 and any memoryless
  policy scores ``1 / num_cues`` in expectation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase
from torchrl.envs.transforms import ObservationTransform

__all__ = ["SelectObservationIndices", "TMazeEnv", "CARTPOLE_POSITION_INDICES"]

#: CartPole-v1 observation = (cart position, cart velocity, pole angle, pole angular velocity).
CARTPOLE_POSITION_INDICES = (0, 2)


class SelectObservationIndices(ObservationTransform):
    """Keeps ``indices`` of the last dimension of the observation entries.

    The observation spec is sliced the same way (bounds included), so the
    transformed env reports exactly the shape and bounds of what it emits.

    Args:
        indices: positions to keep along the last dimension, in order.
        in_keys: observation entries to slice (default ``["observation"]``).
        out_keys: where to write them (default: in place).
    """

    def __init__(
        self,
        indices: Sequence[int],
        in_keys: Sequence | None = None,
        out_keys: Sequence | None = None,
    ):
        if in_keys is None:
            in_keys = ["observation"]
        if out_keys is None:
            out_keys = list(in_keys)
        super().__init__(in_keys=in_keys, out_keys=out_keys)
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("SelectObservationIndices: `indices` must name at least one index.")
        self.register_buffer("indices", torch.tensor(indices, dtype=torch.long), persistent=False)

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.index_select(-1, self.indices.to(obs.device))

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            spec = observation_spec[in_key]
            n = spec.shape[-1]
            bad = [i for i in self.indices.tolist() if not -n <= i < n]
            if bad:
                raise IndexError(
                    f"SelectObservationIndices: indices {bad} are out of range for "
                    f"'{in_key}' whose last dimension has size {n}."
                )
            shape = (*spec.shape[:-1], len(self.indices))
            if isinstance(spec, Bounded):
                low = spec.space.low.index_select(-1, self.indices.to(spec.device))
                high = spec.space.high.index_select(-1, self.indices.to(spec.device))
                new_spec = Bounded(low=low, high=high, shape=shape, dtype=spec.dtype, device=spec.device)
            else:
                new_spec = Unbounded(shape=shape, dtype=spec.dtype, device=spec.device)
            observation_spec[out_key] = new_spec
        return observation_spec


class TMazeEnv(EnvBase):
    """Passive T-maze (delayed recall), natively batched in torch.

    Observation (one-hot, size ``num_cues + 2``): ``cue_k`` at step 0, then
    ``corridor`` for ``delay`` steps, then ``junction``. In the corridor the
    action is ignored; at the junction the action is the answer: reward 1 if
    it equals the cue, 0 otherwise, and the episode terminates. Every episode
    lasts ``delay + 2`` steps. Bakker (2002) uses 4 / -0.1 rewards and an
    active corridor; we keep only the memory demand so returns read as
    accuracy.

    Args:
        delay: corridor length between the cue and the junction (>= 0).
        num_cues: number of cues and answers (chance level is ``1 / num_cues``).
        batch_size: independent mazes stepped together.
        device: where the state and outputs live.
        seed: seed of the cue generator.
    """

    batch_locked = True

    def __init__(
        self,
        delay: int = 10,
        num_cues: int = 2,
        batch_size: Sequence[int] | torch.Size = (),
        device: torch.device | str | None = None,
        seed: int | None = None,
    ):
        if int(delay) < 0:
            raise ValueError(f"TMazeEnv: `delay` must be >= 0, got {delay}.")
        if int(num_cues) < 2:
            raise ValueError(f"TMazeEnv: `num_cues` must be >= 2, got {num_cues}.")
        super().__init__(device=device, batch_size=torch.Size(batch_size))
        self.delay = int(delay)
        self.num_cues = int(num_cues)
        bs = self.batch_size
        obs_dim = self.num_cues + 2
        self.observation_spec = Composite(
            observation=Bounded(0.0, 1.0, shape=(*bs, obs_dim), dtype=torch.float32, device=self.device),
            shape=bs,
        )
        self.action_spec = OneHot(self.num_cues, shape=(*bs, self.num_cues), dtype=torch.long, device=self.device)
        self.reward_spec = Unbounded(shape=(*bs, 1), device=self.device)
        self.done_spec = Composite(
            done=Categorical(2, shape=(*bs, 1), dtype=torch.bool, device=self.device),
            terminated=Categorical(2, shape=(*bs, 1), dtype=torch.bool, device=self.device),
            truncated=Categorical(2, shape=(*bs, 1), dtype=torch.bool, device=self.device),
            shape=bs,
        )
        self.rng = torch.Generator(device=self.device)
        self.cue = torch.zeros(bs, dtype=torch.long, device=self.device)
        self.t = torch.zeros(bs, dtype=torch.long, device=self.device)
        if seed is not None:
            self.set_seed(seed)

    # -- internals ---------------------------------------------------------
    @property
    def junction_step(self) -> int:
        return self.delay + 1

    def _observation(self) -> torch.Tensor:
        idx = torch.where(
            self.t == 0,
            self.cue,
            torch.where(self.t >= self.junction_step, self.num_cues + 1, self.num_cues),
        )
        return torch.nn.functional.one_hot(idx, self.num_cues + 2).to(torch.float32)

    def _flags(self, value: torch.Tensor | bool = False) -> torch.Tensor:
        return torch.as_tensor(value, device=self.device).expand(*self.batch_size, 1).clone()

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None
        if tensordict is not None:
            mask = tensordict.get("_reset", None)
        new_cue = torch.randint(
            self.num_cues, self.batch_size, generator=self.rng, device=self.device
        )
        if mask is None:
            self.cue = new_cue
            self.t = torch.zeros_like(self.t)
        else:
            mask = mask.reshape(self.batch_size)
            self.cue = torch.where(mask, new_cue, self.cue)
            self.t = torch.where(mask, torch.zeros_like(self.t), self.t)
        false = self._flags(False)
        return TensorDict(
            {"observation": self._observation(), "done": false, "terminated": false.clone(), "truncated": false.clone()},
            batch_size=self.batch_size,
            device=self.device,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        answer = action.to(torch.long).argmax(-1).reshape(self.batch_size)  # one-hot action spec
        at_junction = self.t >= self.junction_step
        reward = (at_junction & (answer == self.cue)).to(torch.float32).unsqueeze(-1)
        terminated = at_junction.unsqueeze(-1)
        self.t = self.t + 1
        return TensorDict(
            {
                "observation": self._observation(),
                "reward": reward,
                "done": terminated.clone(),
                "terminated": terminated,
                "truncated": self._flags(False),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.rng.manual_seed(int(seed))

    # -- exact checkpointing (see latentrl.envs.snapshot) -------------------
    def snapshot_state(self) -> dict:
        return {"cue": self.cue.clone(), "t": self.t.clone(), "rng": self.rng.get_state()}

    def restore_state(self, state: dict) -> None:
        self.cue = state["cue"].to(self.device).clone()
        self.t = state["t"].to(self.device).clone()
        self.rng.set_state(state["rng"])
