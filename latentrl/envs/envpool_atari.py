"""Atari through envpool's batched C++ simulator, with the specs of ``make_env("atari:...")``.

envpool (Weng et al. 2022, "EnvPool: A Highly Parallel Reinforcement Learning
Environment Execution Engine") steps a batch of ALE games in C++ threads and
applies the Atari preprocessing itself. TorchRL 0.14.1's ``MultiThreadedEnv``
wraps it but imports the legacy ``gym`` package (``ModuleNotFoundError`` with
only gymnasium installed; UPSTREAM.md, ``tests/upstream/test_multithreaded_env_gym.py``),
so :class:`EnvPoolAtari` wraps envpool's gymnasium API directly, as one
batched TorchRL ``EnvBase``.

The preprocessing is the gymnasium path's (IMPALA, Espeholt et al. 2018,
Appendix G): up to ``noop_max`` no-op starts, action repeat ``frame_skip``
with a max over the last two frames, ``screen_size``² grayscale, a stack of
``frame_stack`` frames, no fire reset, 27,000 agent steps per episode at
most; for training the end of a life is flagged under ``"end-of-life"``
(``lives`` decreased, or the game ended; the game itself continues, as
TorchRL's ``EndOfLifeTransform``) and rewards are clipped to [-1, 1].
Observations are float32 in [0, 1] under ``"pixels"``. ``noop_max=0`` (no
no-op starts) is passed to envpool as 1, since envpool draws from
``[0, noop_max)`` and crashes on 0. envpool resizes
with area interpolation (the gymnasium path with torchvision's bilinear
``Resize``), so frames agree in shape, dtype and range, not pixel for pixel.
"""
from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import (
    Bounded,
    Categorical,
    Composite,
    OneHot,
    Unbounded,
    UnboundedDiscrete,
)
from torchrl.envs import EnvBase

__all__ = ["EnvPoolAtari", "envpool_games"]


def envpool_games() -> list[str]:
    """The ALE games envpool provides (``"Pong"`` for envpool's ``"Pong-v5"``)."""
    import envpool

    return sorted(name[: -len("-v5")] for name in envpool.list_all_envs() if name.endswith("-v5"))


class EnvPoolAtari(EnvBase):
    """A batch of ``num_envs`` Atari games stepped by envpool (see the module docstring).

    Args:
        game: envpool's game name, e.g. ``"Pong"`` (:func:`envpool_games`).
        num_envs: batch size; 1 gives an unbatched env, as ``make_env``.

    Keyword Args:
        train, frame_skip, noop_max, screen_size, frame_stack,
        repeat_action_probability, full_action_space: as ``make_env("atari:...")``.
        num_threads: envpool's worker threads (0: one per env, up to the cores).
        seed: the pool's seed (``set_seed`` rebuilds the pool with a new one).
        device: the device of the outputs.
    """

    def __init__(self, game: str, num_envs: int = 1, *, train: bool = True, frame_skip: int = 4, noop_max: int = 30,
                 screen_size: int = 84, frame_stack: int = 4, repeat_action_probability: float = 0.0,
                 full_action_space: bool = False, num_threads: int = 0, seed: int = 0, device=None):
        self.game, self.num_envs, self.train = game, int(num_envs), bool(train)
        self._options = dict(
            frame_skip=int(frame_skip), noop_max=max(int(noop_max), 1), img_height=int(screen_size),
            img_width=int(screen_size), stack_num=int(frame_stack),
            repeat_action_probability=float(repeat_action_probability), full_action_space=bool(full_action_space),
            num_threads=int(num_threads), episodic_life=False, reward_clip=False, use_fire_reset=False,
            gray_scale=True, max_episode_steps=27000,
        )
        batch = (self.num_envs,) if self.num_envs > 1 else ()
        super().__init__(batch_size=batch, device=device)
        self._pool = self._make_pool(int(seed))
        n_actions = int(self._pool.action_space.n)
        shape = (int(frame_stack), int(screen_size), int(screen_size))
        obs = {"pixels": Unbounded(shape=(*batch, *shape), dtype=torch.float32, device=self.device)}
        if self.train:
            obs["end-of-life"] = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=self.device)
            obs["lives"] = UnboundedDiscrete(shape=batch, dtype=torch.int64, device=self.device)
        self.observation_spec = Composite(obs, shape=batch)
        self.action_spec = OneHot(n_actions, shape=(*batch, n_actions), dtype=torch.int64, device=self.device)
        self.reward_spec = (Bounded(-1.0, 1.0, shape=(*batch, 1), dtype=torch.float32, device=self.device) if self.train
                            else Unbounded(shape=(*batch, 1), dtype=torch.float32, device=self.device))
        flag = lambda: Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=self.device)  # noqa: E731
        self.done_spec = Composite(done=flag(), terminated=flag(), truncated=flag(), shape=batch)
        self._lives = np.zeros(self.num_envs, dtype=np.int64)
        self._pixels = np.zeros((self.num_envs, *shape), dtype=np.uint8)

    @property
    def pool(self):
        """envpool's own gymnasium pool behind this env (stepping it directly desynchronizes this env)."""
        return self._pool

    def _make_pool(self, seed: int):
        import envpool

        return envpool.make_gymnasium(f"{self.game}-v5", num_envs=self.num_envs, batch_size=self.num_envs,
                                      seed=seed, **self._options)

    def _set_seed(self, seed: int | None):
        self._pool.close()
        self._pool = self._make_pool(0 if seed is None else int(seed))

    def _out(self, rows: np.ndarray | None = None) -> dict:
        """``pixels`` (and ``lives``) of every env as tensors shaped as the batch."""
        pixels = torch.from_numpy(self._pixels).to(self.device, torch.float32).div_(255.0)
        out = {"pixels": pixels.reshape(*self.batch_size, *pixels.shape[1:])}
        if self.train:
            out["lives"] = torch.from_numpy(self._lives.copy()).to(self.device).reshape(self.batch_size)
        return out

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if reset is None or bool(reset.all()):
            ids = np.arange(self.num_envs)
        else:
            ids = np.flatnonzero(reset.reshape(self.num_envs).cpu().numpy())
        if ids.size:
            obs, info = self._pool.reset(ids if ids.size < self.num_envs else None)
            rows = info["env_id"]
            self._pixels[rows] = obs
            self._lives[rows] = info["lives"]
        out = self._out()
        flag = torch.zeros(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        out.update(done=flag, terminated=flag.clone(), truncated=flag.clone())
        if self.train:
            out["end-of-life"] = flag.clone()
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").reshape(self.num_envs, -1).argmax(-1).cpu().numpy().astype(np.int32)
        obs, reward, terminated, truncated, info = self._pool.step(action)
        rows = info["env_id"]
        self._pixels[rows] = obs
        lives = np.asarray(info["lives"], dtype=np.int64)
        ordered = np.empty_like(lives)
        ordered[rows] = lives
        term, trunc, rew = (np.empty(self.num_envs, dtype=x.dtype) for x in (terminated, truncated, reward))
        term[rows], trunc[rows], rew[rows] = terminated, truncated, reward
        life_lost = ordered < self._lives
        self._lives = ordered
        if self.train:
            rew = np.clip(rew, -1.0, 1.0)
        shape = (*self.batch_size, 1)
        as_flag = lambda x: torch.from_numpy(np.asarray(x, dtype=bool)).to(self.device).reshape(shape)  # noqa: E731
        done = term | trunc
        out = self._out()
        out.update(reward=torch.from_numpy(rew.astype(np.float32)).to(self.device).reshape(shape),
                   done=as_flag(done), terminated=as_flag(term), truncated=as_flag(trunc))
        if self.train:
            out["end-of-life"] = as_flag(life_lost | done)
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    def close(self, *, raise_if_closed: bool = True):
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.close()
        super().close(raise_if_closed=raise_if_closed)
