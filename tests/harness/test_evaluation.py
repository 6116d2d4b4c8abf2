import pytest
import torch
from tensordict.nn import TensorDictModule

from latentrl.envs import TMazeEnv
from latentrl.harness import evaluate, first_episode_returns, plot_learning_curve


def test_first_episode_returns_hand_computed():
    # two envs, 5 steps: env 0 ends at t=2 then a new episode; env 1 never ends
    reward = torch.tensor([[1.0, 2.0, 3.0, 100.0, 100.0], [1.0, 1.0, 1.0, 1.0, 1.0]]).unsqueeze(-1)
    done = torch.tensor([[0, 0, 1, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.bool).unsqueeze(-1)
    returns, finished = first_episode_returns(reward, done, time_dim=1)
    assert returns.tolist() == [6.0, 5.0]
    assert finished.tolist() == [True, False]


def test_evaluate_constant_answer_on_tmaze_matches_cues():
    env = TMazeEnv(delay=2, batch_size=[50])
    policy = TensorDictModule(
        lambda obs: torch.nn.functional.one_hot(torch.zeros(obs.shape[:-1], dtype=torch.long), 2),
        in_keys=["observation"],
        out_keys=["action"],
    )
    torch.manual_seed(0)
    before = torch.rand(())
    out = evaluate(env, policy, max_steps=10, seed=11)
    expected = (TMazeEnv(delay=2, batch_size=[50], seed=11).reset()["observation"][:, 0]).mean().item()
    assert abs(out["return"] - expected) < 1e-6
    assert out["episodes"] == 50 and out["finished"] == 1.0
    torch.manual_seed(0)
    assert torch.rand(()) == before  # evaluating does not consume the training RNG


def test_learning_curve_png(tmp_path):
    path = plot_learning_curve({"eval/return": [(0, 1.0), (10, 3.0)]}, tmp_path / "c.png")
    assert path.stat().st_size > 1000
    assert plot_learning_curve({}, tmp_path / "none.png") is None


def test_evaluate_reports_each_group():
    # T-maze: a constant answer scores 1 exactly where the cue matches; group = the env's cue
    env = TMazeEnv(delay=2, batch_size=[40], seed=5)
    cues = env.reset()["observation"][:, :2].argmax(-1)  # the cue one-hot leads the observation
    env.reset = (lambda reset: lambda *a, **k: reset(*a, **k).set("cue", cues))(env.reset)
    policy = TensorDictModule(
        lambda obs: torch.nn.functional.one_hot(torch.zeros(obs.shape[:-1], dtype=torch.long), 2),
        in_keys=["observation"],
        out_keys=["action"],
    )
    out = evaluate(env, policy, max_steps=10, seed=5, group_key="cue")
    assert out["return_cue_0"] == 1.0 and out["return_cue_1"] == 0.0
    n0 = int((cues == 0).sum())
    assert out["return"] == pytest.approx(n0 / 40)


def test_evaluate_does_not_depend_on_earlier_calls():
    # a policy that reads the observation (push towards the pole's lean): episodes end at
    # different steps, so some rollouts end with some envs done and others mid-episode,
    # the case where a plain reset of a vector env keeps stale observations (UPSTREAM.md #18)
    from latentrl.envs import make_env

    seen = []

    def act(obs):
        seen.append(obs.clone())
        return torch.nn.functional.one_hot((obs[..., 2] > 0).long(), 2)

    policy = TensorDictModule(act, in_keys=["observation"], out_keys=["action"])
    probe = make_env("gym:CartPole-v1", num_envs=6)
    lengths = []  # rollout lengths whose last step ends some episodes but not all
    for steps in range(10, 150):
        probe.set_seed(7)
        last_done = probe.rollout(steps, policy, break_when_any_done=False)["next", "done"][:, -1]
        if last_done.any() and not last_done.all():
            lengths.append(steps)
        if len(lengths) == 3:
            break
    assert len(lengths) == 3
    env = make_env("gym:CartPole-v1", num_envs=6)
    for max_steps in lengths:
        starts = []
        for target in (env, env, make_env("gym:CartPole-v1", num_envs=6)):
            seen.clear()
            starts.append((evaluate(target, policy, max_steps=max_steps, seed=7), seen[0]))
        (first, obs0), (again, obs1), (fresh, obs2) = starts
        assert torch.equal(obs0, obs1) and torch.equal(obs0, obs2), max_steps
        assert obs0.abs().max() <= 0.05  # CartPole's start states
        assert first == again == fresh, max_steps
