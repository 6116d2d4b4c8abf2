"""World model parts (make_world_model) and the filtering policy LatentPolicy inside a TorchRL env."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs.utils import ExplorationType, exploration_type, set_exploration_type

from latentrl.envs import make_recurrent_env
from latentrl.modules.latent_policy import LatentPolicy
from latentrl.modules.rssm import RSSM
from latentrl.modules.world_model import WorldModel, make_world_model

OBS, ACT, DET, STOCH = 5, 1, 8, 4  # dmc:cartpole-balance: 5 proprio features, 1 action
SMALL = dict(deter_dim=DET, hidden_dim=8, stoch_dim=STOCH, units=8, layers=1, embed_dim=6)


# ----------------------------------------------------------------- make_world_model
def _sequence(B, T, obs_shape, A=2):
    return TensorDict({"observation": torch.randn(B, T, *obs_shape), "action": torch.randn(B, T, A),
                       "is_init": torch.zeros(B, T, 1, dtype=torch.bool)}, [B, T])


def test_vector_world_model_keys_and_shapes():
    torch.manual_seed(0)
    wm = make_world_model([OBS], 2, **SMALL)
    assert isinstance(wm, WorldModel) and wm.discount_model is None
    assert wm.rssm.action_dim == 2 and wm.rssm.embed_dim == 6 and wm.rssm.feature_dim == DET + STOCH
    assert wm.in_keys == ["observation", "action", "is_init"]
    assert {"embed", "deter", "stoch", "reco_observation", "predicted_reward"} <= set(wm.out_keys)
    td = wm(_sequence(3, 7, (OBS,)))
    assert td["embed"].shape == (3, 7, 6) and td["deter"].shape == (3, 7, DET)
    assert td["reco_observation"].shape == (3, 7, OBS) and td["predicted_reward"].shape == (3, 7, 1)
    assert ("post", "mean") in td.keys(True) and ("prior", "std") in td.keys(True)


def test_discount_head_writes_its_logit():
    torch.manual_seed(0)
    wm = make_world_model([OBS], 2, predict_discount=True, **SMALL)
    td = wm(_sequence(2, 3, (OBS,)))
    assert td["discount_logit"].shape == (2, 3, 1)
    torch.testing.assert_close(td["discount_logit"], wm.discount_model.module(td["deter"], td["stoch"]))


def test_image_world_model_shapes():
    torch.manual_seed(0)
    wm = make_world_model([3, 64, 64], 2, cnn_channels=4, **SMALL)
    td = wm(_sequence(2, 2, (3, 64, 64)))
    assert td["embed"].shape[:-1] == (2, 2) and td["embed"].shape[-1] == wm.rssm.embed_dim
    assert td["reco_observation"].shape == (2, 2, 3, 64, 64) and td["predicted_reward"].shape == (2, 2, 1)


def test_categorical_heads_equal_dense_linear_layers():
    """The categorical heads' first layer skips the one-hot multiply-adds; the output is nn.Linear's."""
    torch.manual_seed(0)
    wm = make_world_model([OBS], 2, latent="categorical", num_vars=8, num_classes=16, **SMALL)
    td = wm(_sequence(64, 16, (OBS,)))  # 1024 rows: at the gather's threshold
    head = wm.reward_model.module
    dense = torch.nn.functional.linear(torch.cat([td["deter"], td["stoch"]], -1), head.first.weight, head.first.bias)
    torch.testing.assert_close(head.first(td["deter"], td["stoch"]), dense)
    with pytest.raises(ValueError, match="one-hot"):
        head.first(td["deter"], torch.rand_like(td["stoch"]))


def test_bad_observation_shape_raises():
    with pytest.raises(ValueError, match="observation_shape"):
        make_world_model([2, 3], 2, **SMALL)
    with pytest.raises(ValueError, match="observation_shape"):
        make_world_model([1, 2, 3, 4], 2, **SMALL)
    # images of another size: the message names the expected and the given shape
    # (but not the argument `observation_shape`, unlike the message above)
    with pytest.raises(ValueError, match=r"\[C, 64, 64\].*\[3, 32, 32\]"):
        make_world_model([3, 32, 32], 2, cnn_channels=4, **SMALL)


# ----------------------------------------------------------------- LatentPolicy
class Act(torch.nn.Module):
    """A deterministic actor of (h, s) that records whether TorchRL's exploration type asks it to explore."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = torch.randn(DET + STOCH, ACT, generator=g)
        self.explore = []

    def forward(self, h, s):
        self.explore.append(exploration_type() in (ExplorationType.RANDOM, None))
        return self.expected(h, s)

    def expected(self, h, s):
        return torch.tanh(torch.cat([h, s], -1) @ self.w)


def make_policy(**kw):
    torch.manual_seed(0)
    wm = make_world_model([OBS], ACT, **SMALL)
    act = Act()
    actor = TensorDictModule(act, in_keys=["deter", "stoch"], out_keys=[kw.get("action_key", "action")])
    return LatentPolicy(wm.encoder, wm.rssm, actor, **kw), wm, act


def make_env(policy, num_envs=2):
    return make_recurrent_env(
        "dmc:cartpole-balance", num_envs=num_envs, seed=0, primer=policy.make_tensordict_primer(),
        prev_action_reward=False, action_repeat=4,
    )


def test_latent_policy_in_env_carries_and_updates_state():
    policy, wm, act = make_policy()
    env = make_env(policy)
    with torch.no_grad():
        r = env.rollout(6, policy, break_when_any_done=False)
    assert r.batch_size == (2, 6)
    h, s, a = r["next", "rssm_deter"], r["next", "rssm_stoch"], r["action"]
    assert h.shape == (2, 6, DET) and s.shape == (2, 6, STOCH) and a.shape == (2, 6, ACT)
    # the state written at step t is read back at step t + 1
    assert torch.equal(r["rssm_deter"][:, 1:], h[:, :-1])
    assert torch.equal(r["rssm_stoch"][:, 1:], s[:, :-1])
    assert torch.equal(r["rssm_action"][:, 1:], a[:, :-1])
    assert torch.equal(r["next", "rssm_action"], a)
    assert r["is_init"][:, 0].all() and not r["is_init"][:, 1:].any()
    # the env state is not all zeros after the first step (it is really written)
    assert h[:, 1:].abs().sum() > 0 and s.abs().sum() > 0
    rssm = wm.rssm
    with torch.no_grad():
        # h_t = GRU(h_{t-1}, s_{t-1}, a_{t-1}), from the zero state at the first step
        h0, s0 = rssm.initial_state(2)
        expected = [rssm.img_step(h0, s0, torch.zeros(2, ACT))[0]]
        expected += [rssm.img_step(h[:, t - 1], s[:, t - 1], a[:, t - 1])[0] for t in range(1, 6)]
        torch.testing.assert_close(h, torch.stack(expected, 1))
        # s_t is a sample of the posterior q(s_t | h_t, e_t), not its mean
        post = rssm._stats(rssm.post_net(torch.cat([h, wm.encoder.module(r["observation"])], -1)))
        z = (s - post["mean"]) / post["std"]
        assert (z.abs() > 1e-4).any() and z.abs().max() < 6
        # the action is act_fn(h_t, s_t)
        torch.testing.assert_close(a, act.expected(h, s))
    assert a.abs().sum() > 0 and a.abs().max() <= 1


def test_latent_policy_matches_rssm_observe_with_posterior_mode(monkeypatch):
    """With the posterior mode instead of a sample, the whole filtered trajectory is
    RSSM.observe over the logged observations and actions (action[t-1] drives step t)."""
    policy, wm, _ = make_policy()
    rssm = wm.rssm
    monkeypatch.setattr(rssm, "sample_state", lambda stats, sample=True: RSSM.sample_state(rssm, stats, sample=False))
    env = make_env(policy)
    with torch.no_grad():
        r = env.rollout(6, policy, break_when_any_done=False)
        ref = rssm.observe(wm.encoder.module(r["observation"]), r["action"], r["is_init"], sample=False)
    torch.testing.assert_close(r["next", "rssm_deter"], ref["deter"])
    torch.testing.assert_close(r["next", "rssm_stoch"], ref["stoch"])


def test_latent_policy_resets_state_at_is_init():
    policy, _, _ = make_policy()
    env = make_env(policy)
    td = env.reset()
    assert td["is_init"].all()
    g = torch.Generator().manual_seed(3)
    stale = {k: torch.randn(td[k].shape, generator=g) for k in ("rssm_deter", "rssm_stoch", "rssm_action")}
    with torch.no_grad():
        fresh = policy(td.clone())["next", "rssm_deter"]
        with_stale = td.clone().update(stale)
        reset = policy(with_stale.clone())["next", "rssm_deter"]
        with_stale["is_init"] = torch.zeros_like(with_stale["is_init"])
        carried = policy(with_stale)["next", "rssm_deter"]
    torch.testing.assert_close(reset, fresh)  # stale state ignored at is_init
    assert not torch.allclose(carried, fresh)  # and used otherwise
    # per env: only the env marked is_init restarts
    mixed = td.clone().update(stale)
    mixed["is_init"] = torch.tensor([[True], [False]])
    with torch.no_grad():
        out = policy(mixed)["next", "rssm_deter"]
    torch.testing.assert_close(out[0], fresh[0])
    torch.testing.assert_close(out[1], carried[1])


@pytest.mark.parametrize(
    "exploration, explore",
    [(ExplorationType.DETERMINISTIC, False), (ExplorationType.MODE, False), (ExplorationType.RANDOM, True)],
)
def test_latent_policy_explore_flag(exploration, explore):
    policy, _, act = make_policy()
    env = make_env(policy)
    with torch.no_grad(), set_exploration_type(exploration):
        env.rollout(2, policy)
    assert act.explore == [explore, explore]


def test_latent_policy_unbatched_env():
    policy, wm, act = make_policy()
    env = make_env(policy, num_envs=1)
    assert env.batch_size == ()
    with torch.no_grad():
        r = env.rollout(3, policy)
    assert r.batch_size == (3,)
    assert r["rssm_deter"].shape == (3, DET) and r["next", "rssm_deter"].shape == (3, DET)
    assert r["action"].shape == (3, ACT)
    assert torch.equal(r["rssm_deter"][1:], r["next", "rssm_deter"][:-1])
    assert torch.equal(r["rssm_deter"][0], torch.zeros(DET))
    with torch.no_grad():
        h1 = wm.rssm.img_step(r["next", "rssm_deter"][0], r["next", "rssm_stoch"][0], r["action"][0])[0]
        torch.testing.assert_close(r["next", "rssm_deter"][1], h1)
        torch.testing.assert_close(r["action"], act.expected(r["next", "rssm_deter"], r["next", "rssm_stoch"]))


def test_latent_policy_keys():
    policy, _, _ = make_policy(action_key="act", state_keys=("d", "s", "a"))
    assert policy.in_keys == ["observation", "is_init", "d", "s", "a"]
    assert policy.out_keys == ["act", ("next", "d"), ("next", "s"), ("next", "a")]
    assert policy.recomputed_keys == ["d", "s", "a", ("next", "d"), ("next", "s"), ("next", "a")]
    primer = policy.make_tensordict_primer()
    assert {k: tuple(v.shape) for k, v in primer.primers.items()} == {"d": (DET,), "s": (STOCH,), "a": (ACT,)}
    with pytest.raises(ValueError, match="state_keys"):
        LatentPolicy(policy.encoder, policy.rssm, policy.actor, state_keys=("d", "s"))
