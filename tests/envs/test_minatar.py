"""MinAtar through make_env: Young & Tian's defaults, channels-first float observations, snapshots."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from latentrl.envs import (
    UnknownEnvironmentError,
    accepted_ids,
    env_state,
    load_env_state,
    make_env,
)
from latentrl.envs.factories import MINATAR_GAMES

pytest.importorskip("minatar")

CHANNELS = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_every_game_is_channels_first_float_with_the_full_action_set(game):
    env = make_env(f"minatar:{game}", num_envs=2, seed=0)
    check_env_specs(env)
    spec = env.observation_spec["observation"]
    assert (tuple(spec.shape), spec.dtype) == ((2, CHANNELS[game], 10, 10), torch.float32)
    assert env.action_spec.shape == (2, 6)  # Young & Tian: all six actions
    obs = env.reset()["observation"]
    assert set(obs.unique().tolist()) <= {0.0, 1.0} and obs.sum() > 0


def test_sticky_actions_and_ramping_are_the_paper_defaults_and_configurable():
    def game(**options):
        return make_env("minatar:SpaceInvaders", **options).base_env._env.unwrapped.game

    assert game().sticky_action_prob == 0.1 and game().env.ramping
    off = game(sticky_action_prob=0.0, difficulty_ramping=False)
    assert off.sticky_action_prob == 0.0 and not off.env.ramping
    assert make_env("minatar:Breakout", minimal_action_set=True).action_spec.shape == (3,)


def test_snapshot_restores_the_game_and_its_random_state():
    env = make_env("minatar:SpaceInvaders", seed=3)
    env.reset()
    actions = torch.nn.functional.one_hot(torch.randint(6, (40,), generator=torch.Generator().manual_seed(0)), 6)

    def play():
        return torch.stack([env.step(TensorDict({"action": a}, []))["next", "observation"] for a in actions])

    play()
    state = env_state(env)
    first = play()
    load_env_state(env, state)
    assert torch.equal(play(), first)  # sticky actions and spawns drawn again from the restored generator


def test_unknown_game_lists_the_games():
    assert accepted_ids("minatar") == list(MINATAR_GAMES)
    with pytest.raises(UnknownEnvironmentError, match="SpaceInvaders"):
        make_env("minatar:Pong")
