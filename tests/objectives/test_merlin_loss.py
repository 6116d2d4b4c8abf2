"""MERLIN: the core in a collector, the losses' terms against hand-computed values, disjoint gradients, errors."""
import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.envs import Compose, InitTracker
from torchrl.modules import OneHotCategorical, ProbabilisticActor

from latentrl.checks import InputError
from latentrl.envs import make_env
from latentrl.envs.previous import PreviousActionReward
from latentrl.modules.merlin import MerlinCore, MerlinPolicy
from latentrl.objectives.merlin import MerlinLoss

POLICY_PARTS = ("policy_lstm", "policy_read", "policy_head", "value_head")


def _collect(frames_per_env=12, num_envs=3, delay=4, seed=0):
    torch.manual_seed(seed)
    env = make_env("pomdp:tmaze", num_envs=num_envs, delay=delay)
    core = MerlinCore(env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1], z_dim=4, num_rows=8,
                      hidden=16, policy_hidden=8)
    policy = MerlinPolicy(core)
    env = env.append_transform(Compose(InitTracker(), PreviousActionReward(), policy.make_tensordict_primer()))
    actor = ProbabilisticActor(policy, in_keys=["logits"], out_keys=["action"], distribution_class=OneHotCategorical,
                               spec=env.action_spec, return_log_prob=True)
    collector = Collector(env, actor, frames_per_batch=num_envs * frames_per_env, total_frames=num_envs * frames_per_env)
    data = next(iter(collector))
    collector.shutdown()
    return policy, data


def test_the_collector_carries_the_state_and_the_unroll_replays_it():
    policy, data = _collect()
    assert data.batch_size == (3, 12) and data["is_init"][:, 1:].any()  # episodes of delay + 2 steps end inside
    state = policy.read_state(data)
    # the state stored at t + 1 is the one written at t, except where a new episode starts (the primer resets it)
    same = ~data["is_init"][:, 1:].squeeze(-1)
    for f, v in state.items():
        nxt = data["next", "merlin", f][:, :-1]
        assert torch.equal(v[:, 1:][same], nxt[same]), f
    # memory rows filled: one per step of the episode
    filled = data["next", "merlin", "memory_filled"].squeeze(-1)
    steps = torch.zeros(3, dtype=torch.long)
    for t in range(12):
        steps = torch.where(data["is_init"][:, t, 0], 1, steps + 1).clamp(max=8)
        assert torch.equal(filled[:, t], steps)
    # the unroll from the state stored at t = 0 (the loss's path) gives finite terms
    out = MerlinLoss(policy)(data)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_policy_and_mbp_losses_update_disjoint_parameters():
    policy, data = _collect()
    out = MerlinLoss(policy)(data)
    core = policy.core
    policy_params = {n for n, _ in core.named_parameters() if n.split(".")[0] in POLICY_PARTS}
    for group, names in (("policy", ("loss_objective", "loss_critic", "loss_entropy")),
                         ("mbp", ("loss_kl", "loss_obs", "loss_prev_action", "loss_prev_reward", "loss_return"))):
        core.zero_grad(set_to_none=True)
        sum(out[n] for n in names).backward(retain_graph=True)
        touched = {n for n, p in core.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        if group == "policy":
            assert touched and touched <= policy_params, touched - policy_params
        else:
            assert touched and not (touched & policy_params), touched & policy_params
            assert {"encoder.0.weight", "prior.0.weight", "posterior.0.weight", "mbp_lstm.weight_ih_l0",
                    "decode_return.0.weight"} <= touched


def _fixed_case(policy):
    """A two-step window with outputs set by hand (|z| = 1, one env)."""
    core = policy.core
    fixed = {
        "prior_mean": torch.tensor([[[0.0], [0.5]]]), "prior_std": torch.tensor([[[1.0], [2.0]]]),
        "post_mean": torch.tensor([[[1.0], [0.5]]]), "post_std": torch.tensor([[[0.5], [1.0]]]),
        "z": torch.tensor([[[0.3], [-0.2]]]),
        "obs_pred": torch.zeros(1, 2, core.obs_dim), "prev_action_logits": torch.zeros(1, 2, core.n_actions),
        "prev_reward_pred": torch.tensor([[[0.5], [0.0]]]),
        "logits": torch.zeros(1, 2, core.n_actions), "state_value": torch.tensor([[[1.0], [2.0]]]),
    }
    core.unroll = lambda *args, **kwargs: (fixed, None)
    core.step = lambda *args, **kwargs: ({"state_value": torch.tensor([[3.0]])}, None)
    core.return_prediction = lambda z, log_pi: torch.tensor([[[0.0], [0.0]]])
    obs = torch.zeros(1, 2, core.obs_dim)
    obs[0, 0, 0] = 2.0
    state = {f: torch.zeros(1, 2, *s) for f, s in core.state_shapes().items()}
    return TensorDict({
        "observation": obs, "prev_action": torch.tensor([[[0.0, 0.0], [1.0, 0.0]]]),
        "prev_reward": torch.tensor([[[0.0], [1.0]]]), "is_init": torch.tensor([[[True], [False]]]),
        "action": torch.tensor([[[1, 0], [0, 1]]]), "merlin": state,
        "next": {"reward": torch.tensor([[[1.0], [0.0]]]), "done": torch.zeros(1, 2, 1, dtype=torch.bool),
                 "terminated": torch.zeros(1, 2, 1, dtype=torch.bool), "observation": obs},
    }, batch_size=[1, 2])


def test_terms_match_hand_computed_values():
    policy, _ = _collect()
    gamma, lmbda = 0.9, 0.5
    out = MerlinLoss(policy, gamma=gamma, lmbda=lmbda)(_fixed_case(policy))

    def kl(mq, sq, mp, sp):  # KL(N(mq, sq) || N(mp, sp)), written out
        return math.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5

    assert float(out["loss_kl"]) == pytest.approx((kl(1.0, 0.5, 0.0, 1.0) + kl(0.5, 1.0, 0.5, 2.0)) / 2, rel=1e-5)
    assert float(out["loss_obs"]) == pytest.approx((0.5 * 4.0 + 0.0) / 2)  # obs 2.0 against a prediction of 0
    # prev action: no previous action at the episode start (0), then class 0 under uniform logits (log 2)
    assert float(out["loss_prev_action"]) == pytest.approx(math.log(2) / 2)
    assert float(out["loss_prev_reward"]) == pytest.approx((0.5 * 0.25 + 0.5 * 1.0) / 2)
    # GAE: values 1, 2, then 3 after the window; rewards 1, 0
    d0, d1 = 1.0 + gamma * 2.0 - 1.0, 0.0 + gamma * 3.0 - 2.0
    a1, a0 = d1, d0 + gamma * lmbda * d1
    assert float(out["advantage"]) == pytest.approx((a0 + a1) / 2, rel=1e-5)
    targets = (a0 + 1.0, a1 + 2.0)
    assert float(out["loss_critic"]) == pytest.approx(0.5 * 0.5 * ((targets[0] - 1.0) ** 2 + (targets[1] - 2.0) ** 2) / 2)
    assert float(out["loss_return"]) == pytest.approx(0.5 * (targets[0] ** 2 + targets[1] ** 2) / 2, rel=1e-5)
    assert float(out["loss_objective"]) == pytest.approx(-(a0 + a1) / 2 * math.log(0.5), rel=1e-5)
    assert float(out["loss_entropy"]) == pytest.approx(-0.01 * math.log(2))


def test_bad_input_is_named():
    policy, data = _collect(frames_per_env=4)
    loss = MerlinLoss(policy)
    with pytest.raises(KeyError, match="no 'prev_reward' \\(the `prev_reward` key"):
        loss(data.exclude("prev_reward"))
    with pytest.raises(KeyError, match="merlin, memory_usage"):
        loss(data.exclude(("merlin", "memory_usage")))
    with pytest.raises(ValueError, match=r"expected \[B, T\] windows"):
        loss(data[:, 0])
    with pytest.raises(InputError, match="`lmbda`"):
        MerlinLoss(policy, lmbda=1.5)
    with pytest.raises(TypeError, match="must be a latentrl.modules.merlin.MerlinPolicy"):
        MerlinLoss(policy.core)
    with pytest.raises(InputError, match=r"expected observation \[\*, 4\]"):
        policy.core.step(torch.zeros(2, 5), torch.zeros(2, 2), torch.zeros(2, 1), policy.core.initial_state((2,)))
    with pytest.raises(InputError, match="`num_rows` must be an integer >= 1"):
        MerlinCore(4, 2, num_rows=0)
