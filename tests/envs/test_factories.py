"""make_env: specs and rollouts for every family, and its errors."""
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from latentrl.envs import PREFIXES, UnknownEnvironmentError, accepted_ids, make_env


def _rollout(env, n=5):
    check_env_specs(env)
    return env.rollout(n, break_when_any_done=False)


def test_gym_single_and_vector():
    single = make_env("CartPole-v1", seed=0)
    assert single.batch_size == ()
    assert _rollout(single)["next", "observation"].shape == (5, 4)
    vec = make_env("CartPole-v1", num_envs=3, seed=0)
    assert vec.batch_size == (3,)
    assert _rollout(vec)["next", "observation"].shape == (3, 5, 4)


def test_vector_env_truncates_and_resets_in_place():
    env = make_env("CartPole-v1", num_envs=2, seed=0, max_episode_steps=4)
    r = env.rollout(9, break_when_any_done=False)
    truncated = r["next", "truncated"].squeeze(-1)
    # every 4th step is a truncation (unless the pole fell first), never a termination+truncation mix-up
    assert truncated.any()
    assert not (truncated & r["next", "terminated"].squeeze(-1)).any()


def test_dmc_proprio():
    env = make_env("dmc:cartpole-swingup", seed=0)
    spec = env.observation_spec["observation"]
    assert spec.shape == (5,) and spec.dtype == torch.float32  # position (3) + velocity (2), cast from float64
    r = _rollout(env)
    assert r["next", "observation"].shape == (5, 5)
    assert env.action_spec.shape == (1,)


def test_dmc_pixels_render_at_requested_size():
    env = make_env("dmc:cartpole-swingup", pixels=True, image_size=64, seed=0)
    r = env.rollout(3)
    assert r["next", "pixels"].shape == (3, 3, 64, 64)
    assert r["next", "pixels"].dtype == torch.float32
    assert 0 <= r["next", "pixels"].min() and r["next", "pixels"].max() <= 1
    assert r["next", "pixels"].std() > 0  # an actual image, not a blank buffer


def test_atari_pong_impala_preprocessing():
    env = make_env("atari:Pong", seed=0)
    assert env.observation_spec["pixels"].shape == (4, 84, 84)
    r = env.rollout(6)
    assert r["next", "pixels"].shape == (6, 4, 84, 84)
    assert ("next", "end-of-life") in r.keys(True)  # life-loss flag, training only
    assert r["next", "reward"].abs().max() <= 1
    # frames stack: the newest frame of step t becomes the one before it at t+1
    assert torch.equal(r["next", "pixels"][:-1, 1:], r["next", "pixels"][1:, :-1])
    evaluation = make_env("atari:Pong", seed=0, train=False)
    assert ("next", "end-of-life") not in evaluation.rollout(2).keys(True)


def test_atari_game_name_is_case_insensitive():
    assert make_env("atari:pong").observation_spec["pixels"].shape == (4, 84, 84)


def test_minigrid_memory():
    env = make_env("minigrid:MiniGrid-MemoryS7-v0", seed=0)
    r = _rollout(env, 4)
    assert r["next", "observation"].shape == (4, 7, 7, 3)
    assert r["next", "observation"].dtype == torch.uint8
    assert env.action_spec.shape == (7,)


def test_pomdp_ids():
    assert make_env("pomdp:masked-cartpole", num_envs=2).observation_spec["observation"].shape == (2, 2)
    env = make_env("pomdp:tmaze", num_envs=4, delay=3, num_cues=3)
    assert env.observation_spec["observation"].shape == (4, 5)
    _rollout(env)


@pytest.mark.parametrize(
    "name, listed",
    [
        ("foo:bar", ["gym:", "dmc:", "atari:", "minigrid:", "pomdp:"]),
        ("CartPol-v1", ["CartPole-v1", "Accepted gym ids", "Accepted prefixes"]),
        ("pomdp:tmase", ["pomdp:tmaze?", "masked-cartpole, tmaze"]),
        ("dmc:cartpole-swingupp", ["dmc:cartpole-swingup", "cheetah-run"]),
        ("atari:Pongg", ["atari:Pong", "Breakout"]),
        ("minigrid:MiniGrid-Memory-v0", ["MiniGrid-MemoryS7-v0"]),
    ],
)
def test_unknown_name_lists_prefixes_and_ids(name, listed):
    with pytest.raises(UnknownEnvironmentError) as err:
        make_env(name)
    for text in listed:
        assert text in str(err.value)


def test_accepted_ids_and_prefixes():
    assert set(PREFIXES) == {"gym", "dmc", "atari", "envpool", "minatar", "minigrid", "popgym", "pomdp"}
    assert "CartPole-v1" in accepted_ids("gym")
    assert not any(i.startswith(("ALE/", "MiniGrid")) for i in accepted_ids("gym"))
    assert "Pong" in accepted_ids("atari")
    with pytest.raises(UnknownEnvironmentError, match="Accepted prefixes"):
        accepted_ids("nope")


def test_bad_family_argument_is_named():
    with pytest.raises(TypeError, match="delay"):
        make_env("pomdp:masked-cartpole", delay=3)
    with pytest.raises(ValueError, match="num_envs"):
        make_env("CartPole-v1", num_envs=0)


def test_atari_life_loss_flags_end_of_life_without_ending_the_game():
    env = make_env("atari:Breakout", seed=0)
    torch.manual_seed(0)
    r = env.rollout(400, break_when_any_done=False)
    eol = r["next", "end-of-life"].squeeze(-1)
    done = r["next", "done"].squeeze(-1)
    lives = r["next", "lives"]
    assert eol.any(), "random play loses a life within 400 agent steps"
    first = int(eol.nonzero()[0])
    assert not done[first]  # the game goes on: only losses registered on end-of-life treat it as terminal
    assert lives[first] < r["lives"][first]


def test_make_recurrent_env_max_steps_truncates_episodes():
    from latentrl.envs import make_recurrent_env

    env = make_recurrent_env("dmc:cartpole-balance", num_envs=1, seed=0, prev_action_reward=False, max_steps=4, action_repeat=2)
    rollout = env.rollout(10, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    truncated = rollout["next", "truncated"].squeeze(-1)
    assert done.nonzero().squeeze(-1).tolist() == [3, 7] and bool(truncated[3]) and bool(truncated[7])
    assert not bool(rollout["next", "terminated"].any())
    assert rollout["is_init"].squeeze(-1).nonzero().squeeze(-1).tolist() == [0, 4, 8]
    with pytest.raises(ValueError, match="max_steps"):
        make_recurrent_env("CartPole-v1", max_steps=0)


def test_popgym_observations_are_flat_one_hots_and_multi_discrete_actions_one_action():
    check_env_specs(make_env("popgym:RepeatFirstEasy", num_envs=3, seed=0))
    td = make_env("popgym:RepeatFirstEasy", num_envs=3, seed=0).rollout(20, break_when_any_done=False)
    obs = td["observation"]
    assert obs.dtype == torch.float32 and obs.shape == (3, 20, 4)
    assert ((obs == 0) | (obs == 1)).all() and (obs.sum(-1) == 1).all()  # one card suit, one-hot
    # Battleship's MultiDiscrete([8, 8]) target becomes one action of 64; Autoencode's Tuple observation is flattened
    assert make_env("popgym:BattleshipEasy").action_spec.shape == (64,)
    assert make_env("popgym:AutoencodeEasy").observation_spec["observation"].shape == (2 + 4,)
    # seeded: the same cards
    again = make_env("popgym:RepeatFirstEasy", num_envs=3, seed=0).rollout(20, break_when_any_done=False)
    torch.testing.assert_close(again["observation"], obs)
    assert "RepeatFirstEasy" in accepted_ids("popgym") and "CountRecallMedium" in accepted_ids("popgym")
    with pytest.raises(UnknownEnvironmentError, match="(?s)Did you mean: popgym:RepeatFirstEasy.*Accepted popgym ids"):
        make_env("popgym:RepeatFirstEZ")
