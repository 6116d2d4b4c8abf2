"""envpool's Atari path against the gymnasium path: the same specs, flags and reward clipping."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from latentrl.envs import make_env

pytest.importorskip("envpool")


def _spec_summary(env):
    out = {}
    for name, spec in (("obs", env.observation_spec), ("action", env.full_action_spec),
                       ("reward", env.full_reward_spec), ("done", env.full_done_spec)):
        for key, leaf in spec.items(True, True):
            out[(name, key)] = (type(leaf).__name__, tuple(leaf.shape), leaf.dtype)
    return out


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("num_envs", [1, 3])
def test_same_specs_as_the_gymnasium_path(train, num_envs):
    fast = make_env("envpool:Pong", num_envs=num_envs, seed=0, train=train)
    slow = make_env("atari:Pong", num_envs=num_envs, seed=0, train=train)
    try:
        assert _spec_summary(fast) == _spec_summary(slow)
        assert fast.batch_size == slow.batch_size
        check_env_specs(fast)
        a, b = fast.rollout(5), slow.rollout(5)
        assert set(a.keys(True, True)) == set(b.keys(True, True))
        for key in a.keys(True, True):
            assert (a.get(key).shape, a.get(key).dtype) == (b.get(key).shape, b.get(key).dtype), key
        pixels = a.get(("next", "pixels"))
        assert 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.max() > 0.1  # [0, 1], not 0..255
    finally:
        fast.close()
        slow.close()


def _random_rollout(env, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = env.action_spec.shape[-1]

    def policy(td):
        idx = torch.randint(n, td.batch_size, generator=g)
        td.set("action", torch.nn.functional.one_hot(idx, n))
        return td

    return env.rollout(steps, policy, break_when_any_done=False)


def test_rewards_clipped_for_training_raw_for_evaluation():
    # Space Invaders' invaders score 5 to 30: random play hits some within 200 steps
    raw = _random_rollout(make_env("envpool:SpaceInvaders", num_envs=4, seed=1, train=False), 200)
    clipped = _random_rollout(make_env("envpool:SpaceInvaders", num_envs=4, seed=1, train=True), 200)
    assert raw["next", "reward"].max() > 1.0
    assert set(clipped["next", "reward"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert clipped["next", "reward"].max() == 1.0


def test_end_of_life_flags_every_lost_life_and_the_game_continues():
    td = _random_rollout(make_env("envpool:Breakout", num_envs=2, seed=0, train=True), 1200)
    lives, prev = td["next", "lives"], td["lives"]
    eol, done = td["next", "end-of-life"][..., 0], td["next", "done"][..., 0]
    lost = lives < prev
    assert lost.any() and done.any()
    assert torch.equal(eol, lost | done)
    assert (eol & ~done).any()  # a life lost without the episode ending


def test_unknown_game_lists_the_accepted_ones():
    from latentrl.envs import UnknownEnvironmentError

    with pytest.raises(UnknownEnvironmentError, match="Breakout"):
        make_env("envpool:NotAGame")


def test_partial_reset_restarts_only_the_masked_envs():
    # two pools with one seed and one action sequence; one of them resets env 0 halfway
    envs = [make_env("envpool:Breakout", num_envs=3, seed=0, train=True, noop_max=0) for _ in range(2)]
    try:
        start = [env.reset() for env in envs][0]["pixels"].clone()
        tds = [_random_rollout(env, 30, seed=3) for env in envs]
        assert torch.equal(tds[0]["next", "pixels"], tds[1]["next", "pixels"])
        last = tds[0][:, -1]["next"].exclude("reward")
        mask = torch.tensor([[True], [False], [False]])
        out = envs[0].reset(last.clone().set("_reset", mask))
        assert torch.equal(out["pixels"][0], start[0])  # no no-op starts: the first frame again
        assert torch.equal(out["pixels"][1:], last["pixels"][1:])
        action = torch.nn.functional.one_hot(torch.ones(3, dtype=torch.long), envs[0].action_spec.shape[-1])
        after = [env.step(TensorDict({"action": action}, batch_size=[3]))["next", "pixels"] for env in envs]
        assert torch.equal(after[0][1:], after[1][1:])  # envs 1 and 2 went on from where they were
        assert not torch.equal(after[0][0], after[1][0])
    finally:
        for env in envs:
            env.close()


def test_no_snapshot_so_the_harness_warns_that_a_resume_restarts_episodes():
    from latentrl.envs import SnapshotUnsupported, env_state

    env = make_env("envpool:Pong")
    with pytest.raises(SnapshotUnsupported):
        env_state(env)
    env.close()
