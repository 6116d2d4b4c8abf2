"""ActorLearner: unroll batches, measured policy lag, weight pushes, and the three backends."""
from __future__ import annotations

import functools
import time
from collections import Counter

import pytest
import torch
from tensordict.nn import TensorDictModule
from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor

from latentrl.collectors.actor_learner import BACKENDS, ActorLearner
from latentrl.envs import make_env

NUM_ENVS = 4
# picklable (module-level partial): multiprocess and Ray actors rebuild the env from it
make_cartpole = functools.partial(make_env, "CartPole-v1", num_envs=NUM_ENVS)


def make_policy() -> ProbabilisticActor:
    torch.manual_seed(0)
    env = make_cartpole()
    spec = env.action_spec
    env.close()
    return ProbabilisticActor(
        TensorDictModule(MLP(in_features=4, out_features=2, num_cells=[32]), ["observation"], ["logits"]),
        in_keys=["logits"],
        out_keys=["action"],
        spec=spec,
        distribution_class=OneHotCategorical,
        return_log_prob=True,
    )


def force_action(policy, index: int) -> None:
    """Make the policy pick ``index`` always (logits: bias +-100, weights 0)."""
    last = policy.module[0].module[-1]  # the MLP's output Linear
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-100.0)
        last.bias[index] = 100.0


def make_learner(policy, **kwargs) -> ActorLearner:
    kwargs = {"unroll_length": 5, "batch_size": 4, "envs_per_actor": NUM_ENVS, **kwargs}
    return ActorLearner(make_cartpole, policy, **kwargs)


def take(learner: ActorLearner, n: int, work_s: float = 0.0, on_batch=None) -> list:
    """Consume ``n`` batches, calling ``learner_step()`` after each (after ``work_s`` of "training")."""
    batches = []
    for i, batch in enumerate(learner):
        batches.append(batch)
        if on_batch is not None:
            on_batch(i, batch)
        if work_s:
            time.sleep(work_s)
        learner.learner_step()
        if len(batches) == n:
            break
    return batches


def check_unrolls(batch, batch_size: int, unroll_length: int) -> None:
    assert batch.shape == torch.Size([batch_size, unroll_length])
    assert batch["action_log_prob"].shape == batch.shape  # behaviour log-probs, per frame
    assert batch["policy_lag"].shape == batch.shape
    # time-contiguous: each row is consecutive steps of one env
    nxt, obs = batch["next", "observation"][:, :-1], batch["observation"][:, 1:]
    not_done = ~batch["next", "done"][:, :-1].squeeze(-1)
    assert not_done.any()
    torch.testing.assert_close(nxt[not_done], obs[not_done])
    # the behaviour log-probs: log mu(a_t | x_t) of the action taken, under the logits that acted
    behaviour = (batch["logits"].log_softmax(-1) * batch["action"]).sum(-1)
    torch.testing.assert_close(batch["action_log_prob"], behaviour)


def test_bad_arguments_raise_naming_the_argument():
    policy = make_policy()
    with pytest.raises(ValueError, match=r"`backend`.*'sync', 'multiprocess', 'ray'.*'threads'"):
        make_learner(policy, backend="threads")
    with pytest.raises(ValueError, match=r"`unroll_length` must be a positive integer, got 0"):
        make_learner(policy, backend="sync", unroll_length=0)
    with pytest.raises(ValueError, match=r"`sync_interval`"):
        make_learner(policy, backend="sync", sync_interval=0)
    assert BACKENDS == ("sync", "multiprocess", "ray")


def test_sync_actor_has_zero_lag_and_contiguous_unrolls():
    learner = make_learner(make_policy(), backend="sync", sync_interval=1)
    try:
        batches = take(learner, 6)
    finally:
        learner.shutdown()
    for batch in batches:
        check_unrolls(batch, 4, 5)
        assert (batch["policy_lag"] == 0).all()
    assert learner.lag_histogram() == {0: 6 * 4 * 5}
    assert learner.mean_lag() == 0.0
    assert learner.updates == 6 and learner.version == 6


def test_sync_actor_acts_with_pushed_weights_only():
    """The sync actor holds a copy: a change of the learner's weights acts from the next push on."""
    policy = make_policy()
    learner = make_learner(policy, backend="sync", sync_interval=3)
    forced = {1: 1, 3: 0}  # batch index -> action forced on the learner's policy after it
    try:
        batches = take(learner, 9, on_batch=lambda i, b: force_action(policy, forced[i]) if i in forced else None)
    finally:
        learner.shutdown()
    # pushes after updates 3 and 6 (batches 3.. and 6..); in between the actor keeps the pushed weights
    expected = {3: 1, 4: 1, 5: 1, 6: 0, 7: 0, 8: 0}
    for i, action in expected.items():
        assert (batches[i]["action"].argmax(-1) == action).all(), i
    assert [int(b["policy_lag"].unique()) for b in batches] == [0, 1, 2] * 3


@pytest.mark.parametrize("k", [2, 3])
def test_sync_interval_pushes_every_k_updates(k):
    learner = make_learner(make_policy(), backend="sync", sync_interval=k)
    versions = []
    try:
        for _ in take(learner, 7, on_batch=lambda i, b: versions.append(learner.version)):
            pass
        assert learner.updates == 7 and learner.version == 7 // k
    finally:
        learner.shutdown()
    assert versions == [i // k for i in range(7)]  # version when batch i was consumed (after i updates)
    # between pushes the single actor acts with the last pushed weights: lag = updates since that push
    assert learner.lag_histogram() == {lag: 4 * 5 * sum(1 for i in range(7) if i % k == lag) for lag in range(k)}


@pytest.mark.timeout(120)
def test_async_actors_lag_behind_the_learner():
    learner = make_learner(make_policy(), backend="multiprocess", num_actors=2)
    try:
        batches = take(learner, 8, work_s=0.05)  # the learner "trains" 50 ms per batch; actors run ahead
    finally:
        learner.shutdown()
    for batch in batches:
        check_unrolls(batch, 4, 5)
    lags = torch.cat([b["policy_lag"].flatten() for b in batches])
    assert (lags >= 0).all() and (lags > 0).any()
    hist = learner.lag_histogram()
    assert sum(hist.values()) == 8 * 4 * 5 == lags.numel()
    assert hist == dict(sorted(Counter(lags.tolist()).items()))
    assert learner.mean_lag() > 0


def _check_forced_weights_reach_actors(learner: ActorLearner, policy, n: int = 10, force_at: int = 3) -> list:
    pushed = {}

    def on_batch(i, batch):
        if i == force_at:  # the learner changes the policy; the push in this learner_step carries it
            force_action(policy, 1)
            pushed["version"] = learner.version + 1

    batches = take(learner, n, work_s=0.02, on_batch=on_batch)
    after = 0
    for batch in batches[force_at + 1 :]:
        version = batch["next", "policy_version"].reshape(batch.shape)
        new = version >= pushed["version"]
        actions = batch["action"].argmax(-1)
        assert (actions[new] == 1).all(), "frames stamped with the new version acted with old weights"
        after += int(new.sum())
    assert after > 0, "no frame acted by the pushed weights was consumed"
    return batches


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sync", "multiprocess"])
def test_pushed_weights_reach_the_actors(backend):
    policy = make_policy()
    learner = make_learner(policy, backend=backend, num_actors=2)
    try:
        _check_forced_weights_reach_actors(learner, policy)
    finally:
        learner.shutdown()


@pytest.mark.timeout(300)
def test_ray_backend_with_a_local_ray_instance():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    policy = make_policy()
    # the collector starts a local Ray instance (num_cpus = num_actors + 1, no dashboard) and owns it
    learner = make_learner(policy, backend="ray", num_actors=2)
    try:
        assert ray.is_initialized()
        batches = _check_forced_weights_reach_actors(learner, policy, n=6, force_at=2)
    finally:
        learner.shutdown()
    for batch in batches:
        check_unrolls(batch, 4, 5)
        assert (batch["policy_lag"] >= 0).all()
    assert max(int(b["next", "policy_version"].max()) for b in batches) >= 3  # the remote versions advance
    assert sum(learner.lag_histogram().values()) == 6 * 4 * 5
    assert not ray.is_initialized()  # the Ray instance the collector started is shut down with it
