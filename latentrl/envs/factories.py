"""One factory for every environment family latentrl trains on.

``make_env(name, ...)`` returns a TorchRL ``EnvBase`` with correct specs:

==========================  ==================================================
name                        what you get
==========================  ==================================================
``CartPole-v1`` (``gym:``)  any registered gymnasium id; ``num_envs > 1`` runs
                            a synchronous gymnasium vector env in-process
``dmc:cartpole-swingup``    dm_control suite ``domain-task``; proprioceptive
                            ``observation`` (float32, concatenated) or, with
                            ``pixels=True``, ``pixels`` rendered at
                            ``image_size`` (default 64)
``atari:Pong``              ALE game with the IMPALA preprocessing (below)
``envpool:Pong``            the same game, specs and preprocessing, stepped by
                            envpool's C++ pool (:class:`~latentrl.envs.envpool_atari.EnvPoolAtari`;
                            ``pip install -e ".[atari]"``)
``minatar:Breakout``        MinAtar (Young & Tian 2019): 10x10 games with
                            sticky actions (0.1) and the full 6 actions;
                            float32 ``observation`` of shape [C, 10, 10]
``minigrid:MiniGrid-...``   minigrid through ``ImgObsWrapper`` (egocentric
                            7x7x3 view under ``observation``)
``popgym:RepeatFirstEasy``  POPGym (Morad et al. 2023): a flat float32
                            ``observation`` (one-hot for discrete spaces) and
                            one discrete action (``pip install -e ".[popgym]"``)
``pomdp:masked-cartpole``   CartPole-v1 with the velocities removed
``pomdp:tmaze``             delayed-recall T-maze (``delay``, ``num_cues``)
==========================  ==================================================

Atari preprocessing (Espeholt et al. 2018, IMPALA, Appendix G, following
Mnih et al. 2015): up to 30 no-op starts, action repeat 4 with a max over the
last two frames, 84x84 grayscale, a stack of the last 4 frames; for training
only (``train=True``), the end of a life is flagged under ``"end-of-life"``
(TorchRL's ``EndOfLifeTransform``: a loss registers it as its ``done``/
``terminated`` key; the game itself continues) and rewards are clipped to
[-1, 1]. Evaluation envs (``train=False``) report raw game scores.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import torch
import torchrl  # noqa: F401  (import before dm_control: EGL/OSMesa segfault otherwise)
from torchrl.envs import (
    CatFrames,
    CatTensors,
    Compose,
    DoubleToFloat,
    DTypeCastTransform,
    EndOfLifeTransform,
    EnvBase,
    GrayScale,
    GymEnv,
    GymWrapper,
    NoopResetEnv,
    PermuteTransform,
    RenameTransform,
    Resize,
    RewardClipping,
    SerialEnv,
    ToTensorImage,
    TransformedEnv,
)

# the ids and their error live in ids.py; re-exported here, where make_env's users look for them
from .ids import (  # noqa: F401
    MINATAR_GAMES,
    MINIGRID_MEMORY_IDS,
    POMDP_IDS,
    PREFIXES,
    UnknownEnvironmentError,
    _atari_games,
    _dmc_ids,
    _envpool_games,
    _gym_registry,
    _match_game,
    _minigrid_ids,
    _unknown_id,
    _unknown_prefix_message,
    accepted_ids,
)
from .pomdp import CARTPOLE_POSITION_INDICES, SelectObservationIndices, TMazeEnv
from .transforms import MaxPoolFrameSkip

__all__ = [
    "make_env",
    "make_scored_env",
    "make_recurrent_env",
    "UnknownEnvironmentError",
    "PREFIXES",
    "POMDP_IDS",
    "MINIGRID_MEMORY_IDS",
    "accepted_ids",
]


def _check_kwargs(family: str, kwargs: dict, accepted: tuple[str, ...]) -> None:
    bad = sorted(set(kwargs) - set(accepted))
    if bad:
        raise TypeError(
            f"make_env({family}): unexpected argument(s) {bad}; accepted: {sorted(accepted)}"
        )


# --------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------
def _vector_gym(env_id: str, num_envs: int, **gym_kwargs) -> EnvBase:
    """``num_envs`` gymnasium envs stepped in-process (TorchRL's ``GymEnv(num_envs=)``
    starts one subprocess per env, which costs more than it saves on cheap envs)."""
    import gymnasium

    vec = gymnasium.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP},
        **gym_kwargs,
    )
    return _quiet_gym_wrapper(vec)


def _quiet_gym_wrapper(env, **kwargs) -> EnvBase:
    # GymWrapper probes the info dict with a dummy rollout and logs it at INFO level each time
    log = logging.getLogger("torchrl")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        return GymWrapper(env, **kwargs)
    finally:
        log.setLevel(level)


def _make_gym(env_id: str, num_envs: int, device, **gym_kwargs) -> EnvBase:
    if env_id not in _gym_registry():
        raise _unknown_id("gym", env_id)
    if num_envs > 1:
        env = _vector_gym(env_id, num_envs, **gym_kwargs)
        return env.to(device) if device is not None else env
    return GymEnv(env_id, device=device, **gym_kwargs)


def _make_pomdp(env_id: str, num_envs: int, device, **kwargs) -> EnvBase:
    if env_id == "masked-cartpole":
        _check_kwargs("pomdp:masked-cartpole", kwargs, ())
        base = _make_gym("CartPole-v1", num_envs, device)
        return TransformedEnv(base, SelectObservationIndices(CARTPOLE_POSITION_INDICES))
    if env_id == "tmaze":
        _check_kwargs("pomdp:tmaze", kwargs, ("delay", "num_cues"))
        batch = (num_envs,) if num_envs > 1 else ()
        return TMazeEnv(batch_size=batch, device=device, **kwargs)
    raise _unknown_id("pomdp", env_id)


def _make_dmc(
    env_id: str,
    num_envs: int,
    device,
    pixels: bool = False,
    image_size: int = 64,
    action_repeat: int = 1,
    camera_id: int = 0,
) -> EnvBase:
    domain, _, task = env_id.partition("-")
    if f"{domain}-{task}" not in _dmc_ids():
        raise _unknown_id("dmc", env_id)

    def single() -> EnvBase:
        from dm_control import suite
        from torchrl.envs import DMControlWrapper

        # Build the suite env ourselves: DMControlEnv(from_pixels=True) drops
        # render_kwargs and renders at 240x320 (UPSTREAM.md, "DMControlEnv").
        base = DMControlWrapper(
            suite.load(domain, task),
            from_pixels=pixels,
            pixels_only=True,
            render_kwargs={"height": image_size, "width": image_size, "camera_id": camera_id},
            frame_skip=action_repeat,
            device=device,
        )
        if pixels:
            return TransformedEnv(base, ToTensorImage(in_keys=["pixels"], out_keys=["pixels"]))
        obs_keys = list(base.observation_spec.keys())
        return TransformedEnv(
            base,
            Compose(DoubleToFloat(), CatTensors(in_keys=obs_keys, out_key="observation", del_keys=True)),
        )

    return single() if num_envs == 1 else SerialEnv(num_envs, single)


def _make_atari(
    game: str,
    num_envs: int,
    device,
    train: bool = True,
    frame_skip: int = 4,
    noop_max: int = 30,
    screen_size: int = 84,
    frame_stack: int = 4,
    repeat_action_probability: float = 0.0,
    full_action_space: bool = False,
) -> EnvBase:
    match = _match_game("atari", game)

    def single() -> EnvBase:
        base = GymEnv(
            f"ALE/{match}-v5",
            frameskip=1,  # action repeat is ours (max-pooled), see MaxPoolFrameSkip
            repeat_action_probability=repeat_action_probability,
            full_action_space=full_action_space,
            device=device,
        )
        transforms = [MaxPoolFrameSkip(frame_skip)]
        if noop_max > 0:
            transforms.append(NoopResetEnv(noops=noop_max, random=True))
        if train:
            transforms.append(EndOfLifeTransform())
            transforms.append(RewardClipping(-1.0, 1.0))
        transforms += [
            ToTensorImage(in_keys=["pixels"], out_keys=["pixels"]),
            GrayScale(in_keys=["pixels"]),
            Resize(screen_size, screen_size, in_keys=["pixels"]),
            CatFrames(N=frame_stack, dim=-3, in_keys=["pixels"]),
        ]
        return TransformedEnv(base, Compose(*transforms))

    return single() if num_envs == 1 else SerialEnv(num_envs, single)


def _make_envpool(
    game: str,
    num_envs: int,
    device,
    train: bool = True,
    frame_skip: int = 4,
    noop_max: int = 30,
    screen_size: int = 84,
    frame_stack: int = 4,
    repeat_action_probability: float = 0.0,
    full_action_space: bool = False,
    num_threads: int = 0,
) -> EnvBase:
    match = _match_game("envpool", game)
    from .envpool_atari import EnvPoolAtari

    return EnvPoolAtari(match, num_envs, train=train, frame_skip=frame_skip, noop_max=noop_max,
                        screen_size=screen_size, frame_stack=frame_stack,
                        repeat_action_probability=repeat_action_probability, full_action_space=full_action_space,
                        num_threads=num_threads, device=device)


def _make_minatar(game: str, num_envs: int, device, minimal_action_set: bool = False,
                  sticky_action_prob: float = 0.1, difficulty_ramping: bool = True) -> EnvBase:
    match = _match_game("minatar", game)
    try:
        import minatar.gym
    except ImportError as err:  # pragma: no cover - minatar is in the test extra
        raise ImportError('make_env("minatar:..."): minatar is not installed; pip install minatar') from err
    env_id = f"MinAtar/{match}-{'v1' if minimal_action_set else 'v0'}"
    if env_id not in _gym_registry():
        minatar.gym.register_envs()
    kwargs = dict(sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
    base = _make_gym(env_id, num_envs, device, **kwargs)
    # MinAtar's state is [10, 10, C] booleans: channels first, as floats
    return TransformedEnv(base, Compose(PermuteTransform((-1, -3, -2), in_keys=["observation"]),
                                        DTypeCastTransform(torch.bool, torch.float32, in_keys=["observation"])))


def _make_popgym(name: str, num_envs: int, device, **gym_kwargs) -> EnvBase:
    import gymnasium

    from .popgym_envs import make_popgym_gymnasium

    match = _match_game("popgym", name)
    if num_envs == 1:
        return _quiet_gym_wrapper(make_popgym_gymnasium(match, **gym_kwargs), device=device)
    vec = gymnasium.vector.SyncVectorEnv([functools.partial(make_popgym_gymnasium, match, **gym_kwargs)] * num_envs,
                                         autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    env = _quiet_gym_wrapper(vec)
    return env.to(device) if device is not None else env


def _make_minigrid(env_id: str, num_envs: int, device, **gym_kwargs) -> EnvBase:
    if env_id not in _minigrid_ids():
        raise _unknown_id("minigrid", env_id)

    def single() -> EnvBase:
        import gymnasium
        from minigrid.wrappers import ImgObsWrapper

        base = GymWrapper(ImgObsWrapper(gymnasium.make(env_id, **gym_kwargs)), device=device)
        # TorchRL files image-shaped Boxes under "pixels"; minigrid's view is
        # symbolic (object, colour, state) codes, so call it an observation.
        return TransformedEnv(base, RenameTransform(in_keys=["pixels"], out_keys=["observation"]))

    return single() if num_envs == 1 else SerialEnv(num_envs, single)


_FAMILIES: dict[str, Callable[..., EnvBase]] = {
    "gym": _make_gym,
    "dmc": _make_dmc,
    "atari": _make_atari,
    "envpool": _make_envpool,
    "minatar": _make_minatar,
    "minigrid": _make_minigrid,
    "popgym": _make_popgym,
    "pomdp": _make_pomdp,
}


def make_env(
    name: str,
    *,
    num_envs: int = 1,
    seed: int | None = None,
    device: torch.device | str | None = None,
    train: bool = True,
    **kwargs: Any,
) -> EnvBase:
    """Builds the TorchRL env called ``name`` (see the module docstring).

    Args:
        name: ``"[prefix:]id"``; without a prefix, a gymnasium id.
        num_envs: batch of independent copies (``batch_size=[num_envs]``);
            1 gives an unbatched env.
        seed: seeds the env (``env.set_seed``) when given.
        device: device of the env's outputs.
        train: training env (Atari: life-loss flag and reward clipping) or
            evaluation env (raw scores). Other families ignore it.
        **kwargs: family options: ``pixels``, ``image_size``, ``action_repeat``,
            ``camera_id`` (dmc); ``frame_skip``, ``noop_max``,
            ``screen_size``, ``frame_stack``, ``repeat_action_probability``,
            ``full_action_space`` (atari, envpool), ``num_threads`` (envpool); ``delay``, ``num_cues`` (tmaze);
            gymnasium ``make`` keywords (gym, minigrid).

    Raises:
        UnknownEnvironmentError: the prefix or id is not accepted; the message
            lists the accepted prefixes and ids.
    """
    if not isinstance(name, str) or not name:
        raise UnknownEnvironmentError(f"environment name must be a non-empty string, got {name!r}")
    if int(num_envs) < 1:
        raise ValueError(f"make_env: `num_envs` must be >= 1, got {num_envs}")
    prefix, sep, env_id = name.partition(":")
    if not sep:
        prefix, env_id = "gym", name
    if prefix not in _FAMILIES:
        raise UnknownEnvironmentError(_unknown_prefix_message(prefix))
    if prefix in ("atari", "envpool"):
        kwargs["train"] = bool(train)
    env = _FAMILIES[prefix](env_id, int(num_envs), device, **kwargs)
    if seed is not None:
        env.set_seed(int(seed))
    return env


def make_scored_env(name: str, num_envs: int = 1, seed: int | None = None, train: bool = True, **options) -> EnvBase:
    """``make_env`` plus TorchRL's ``RewardSum`` (``("next", "episode_reward")``).

    A module-level function, so ``functools.partial(make_scored_env, ...)``
    pickles into actor processes (multiprocess and Ray collectors).
    """
    from torchrl.envs import RewardSum, TransformedEnv

    return TransformedEnv(make_env(name, num_envs=num_envs, seed=seed, train=train, **options), RewardSum())


def make_recurrent_env(
    name: str,
    num_envs: int = 1,
    seed: int | None = None,
    train: bool = True,
    epsilons=None,
    primer=None,
    prev_action_reward: bool = True,
    max_steps: int | None = None,
    **options,
) -> EnvBase:
    """An env for recurrent value-based actors (R2D2): ``make_env`` plus

    * :class:`~latentrl.envs.previous.PreviousActionReward` (``"prev_action"``,
      ``"prev_reward"``, read by the Q-network's LSTM; ``prev_action_reward=False``
      leaves it out, e.g. for world-model agents, whose state holds the last action),
    * TorchRL's ``InitTracker`` (``"is_init"``, where the LSTM state restarts),
    * ``epsilons``: one exploration rate per env under ``"epsilon"``
      (:class:`~latentrl.envs.transforms.PerEnvConstant`; Ape-X actors),
    * ``primer``: the network's ``make_tensordict_primer()`` (the recurrent
      state the collector carries and stores),
    * ``max_steps``: TorchRL's ``StepCounter`` truncating episodes after that
      many steps (actions), on top of the env's own limit,
    * TorchRL's ``RewardSum`` (``("next", "episode_reward")``).

    Module-level, so ``functools.partial(make_recurrent_env, ...)`` pickles into
    collector worker processes.
    """
    from torchrl.envs import (
        Compose,
        InitTracker,
        RewardSum,
        StepCounter,
        TransformedEnv,
    )

    from .previous import PreviousActionReward
    from .transforms import PerEnvConstant

    env = make_env(name, num_envs=num_envs, seed=seed, train=train, **options)
    transforms = ([PreviousActionReward()] if prev_action_reward else []) + [InitTracker()]
    if epsilons is not None:
        epsilons = torch.as_tensor(epsilons, dtype=torch.float32).reshape(-1)
        if epsilons.numel() != num_envs:
            raise ValueError(f"make_recurrent_env: `epsilons` needs one rate per env; got {epsilons.numel()} rates for num_envs={num_envs}")
        transforms.append(PerEnvConstant("epsilon", epsilons))
    if primer is not None:
        transforms.append(primer.clone() if hasattr(primer, "clone") else primer)
    if max_steps is not None:
        if int(max_steps) < 1:
            raise ValueError(f"make_recurrent_env: `max_steps` must be >= 1 or None, got {max_steps}")
        transforms.append(StepCounter(max_steps=int(max_steps)))
    transforms.append(RewardSum())
    return TransformedEnv(env, Compose(*transforms))
