"""Masked CartPole and the delayed-recall T-maze."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from latentrl.envs import SelectObservationIndices, TMazeEnv, make_env


def test_masked_cartpole_hides_exactly_the_velocities():
    full = make_env("CartPole-v1", num_envs=3, seed=7)
    masked = make_env("pomdp:masked-cartpole", num_envs=3, seed=7)
    torch.manual_seed(0)
    actions = [full.action_spec.rand() for _ in range(30)]

    def run(env):
        td, out = env.reset(), []
        for a in actions:
            td, td_next = env.step_and_maybe_reset(td.set("action", a))
            out.append(td["next", "observation"])
            td = td_next
        return torch.stack(out)

    f, m = run(full), run(masked)
    assert m.shape[-1] == 2
    torch.testing.assert_close(m, f[..., [0, 2]])  # position and angle, untouched
    # what was removed is what moves independently: the velocities
    assert not torch.allclose(f[..., 1], f[..., 0]) and not torch.allclose(f[..., 3], f[..., 2])
    spec = masked.observation_spec["observation"]
    full_spec = full.observation_spec["observation"]
    torch.testing.assert_close(spec.space.high, full_spec.space.high[..., [0, 2]])
    check_env_specs(masked)


def test_select_indices_rejects_out_of_range():
    with pytest.raises(IndexError, match="out of range"):
        from torchrl.envs import TransformedEnv

        TransformedEnv(make_env("CartPole-v1"), SelectObservationIndices([0, 7])).observation_spec


def _play(env, policy, episodes):
    """Runs ``policy(obs, memory) -> (answer, memory)`` until every env finished ``episodes``."""
    td = env.reset()
    n = env.batch_size[0]
    memory = torch.zeros(n, dtype=torch.long)
    returns = torch.zeros(n)
    total, finished = 0.0, 0
    while finished < episodes * n:
        answer, memory = policy(td["observation"], memory)
        td = td.set("action", torch.nn.functional.one_hot(answer, env.num_cues))
        td, td_next = env.step_and_maybe_reset(td)
        returns += td["next", "reward"].squeeze(-1)
        done = td["next", "done"].squeeze(-1)
        total += returns[done].sum().item()
        finished += int(done.sum())
        returns[done] = 0
        td = td_next
    return total / finished


def test_tmaze_perfect_memory_scores_one_and_memoryless_is_chance():
    env = TMazeEnv(delay=6, num_cues=2, batch_size=[64], seed=3)
    K = env.num_cues

    def perfect(obs, memory):
        seen = obs[:, :K].sum(-1) > 0  # the cue is visible (first step only)
        memory = torch.where(seen, obs[:, :K].argmax(-1), memory)
        return memory, memory

    assert _play(env, perfect, 30) == 1.0
    # Any memoryless policy sees the same junction observation whatever the cue:
    # each deterministic one answers a constant there and scores 1/K.
    for constant in range(K):
        score = _play(env, lambda obs, m: (torch.full_like(m, constant), m), 60)
        assert abs(score - 1 / K) < 0.05
    # ... and so does a memoryless random policy
    score = _play(env, lambda obs, m: (torch.randint(K, m.shape), m), 60)
    assert abs(score - 1 / K) < 0.05


def test_tmaze_episode_structure():
    env = TMazeEnv(delay=3, num_cues=3, seed=0)
    r = env.rollout(10, break_when_any_done=True)
    assert r.shape == (5,)  # cue, 3 corridor steps, junction
    obs = r["observation"]
    assert obs[0, :3].sum() == 1 and obs[0, 3:].sum() == 0  # cue one-hot
    assert (obs[1:4, 3] == 1).all()  # corridor
    assert obs[4, 4] == 1  # junction
    assert r["next", "terminated"].squeeze(-1).tolist() == [False] * 4 + [True]
    assert (r["next", "reward"][:4] == 0).all()
    assert r["next", "reward"][4].item() == float(r["action"][4].argmax() == obs[0, :3].argmax())


def test_tmaze_partial_reset_keeps_other_envs():
    env = TMazeEnv(delay=2, batch_size=[4], seed=0)
    env.reset()
    env.rand_step()
    t_before, cue_before = env.t.clone(), env.cue.clone()
    mask = torch.tensor([[True], [False], [False], [True]])
    out = env.reset(TensorDict({"_reset": mask}, batch_size=[4]))
    assert env.t.tolist() == [0, t_before[1].item(), t_before[2].item(), 0]
    assert env.cue[1:3].tolist() == cue_before[1:3].tolist()
    assert (out["observation"][[0, 3], : env.num_cues].sum(-1) == 1).all()  # reset envs show a cue


def test_tmaze_seed_reproducible_and_bad_args():
    a = TMazeEnv(delay=1, batch_size=[8], seed=5).reset()["observation"]
    b = TMazeEnv(delay=1, batch_size=[8], seed=5).reset()["observation"]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="delay"):
        TMazeEnv(delay=-1)
    with pytest.raises(ValueError, match="num_cues"):
        TMazeEnv(num_cues=1)
