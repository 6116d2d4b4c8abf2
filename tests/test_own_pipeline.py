"""A user's own TorchRL pipeline, written from the README's recipes alone, with the keys renamed:
IMPALA on a batched env, R2D2 on a SliceSampler, a world model with DreamerV2's actor-critic on
self-collected Pendulum data, and Gumbel-softmax SAC. Each trains a few updates and must move its
parameters with finite losses."""
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer
from torchrl.envs import Compose, GymEnv, InitTracker, RenameTransform, TransformedEnv
from torchrl.modules import (
    MLP,
    EGreedyModule,
    OneHotCategorical,
    ProbabilisticActor,
    QValueModule,
    ValueOperator,
)

from latentrl.envs import PreviousActionReward
from latentrl.modules import (
    GumbelSoftmax,
    RSSMImagine,
    make_dreamer_actor,
    make_dreamer_critic,
    make_recurrent_q_network,
    make_world_model,
)
from latentrl.objectives import (
    DreamerActorCriticLoss,
    GumbelSACLoss,
    HardUpdateEvery,
    IMPALALoss,
    R2D2Loss,
    WorldModelLoss,
)


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _moved(before, module):
    return any(not torch.equal(a, b.detach()) for a, b in zip(before, module.parameters()))


def test_impala_on_a_batched_env_with_renamed_keys():
    torch.manual_seed(0)
    env = TransformedEnv(GymEnv("CartPole-v1", num_envs=2), RenameTransform(["observation"], ["obs"]))
    actor = ProbabilisticActor(
        TensorDictModule(MLP(in_features=4, out_features=2, num_cells=[16]), ["obs"], ["logits"]),
        in_keys=["logits"], spec=env.action_spec, distribution_class=OneHotCategorical, return_log_prob=True,
    )
    critic = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[16]), in_keys=["obs"], out_keys=["my_value"])
    loss = IMPALALoss(actor, critic)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
    before = _snapshot(loss)
    collector = Collector(env, actor, frames_per_batch=64, total_frames=192)
    for batch in collector:
        assert batch.batch_size == (2, 32)  # [num_envs, T]: time last
        out = loss(batch)
        total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
        assert torch.isfinite(total)
        assert out["rho_clipped"] == 0  # on-policy data
        total.backward()
        optim.step()
        optim.zero_grad()
        collector.update_policy_weights_()
    collector.shutdown()
    assert _moved(before, loss)


def test_r2d2_on_a_slice_sampler_with_a_renamed_observation():
    torch.manual_seed(0)
    net = make_recurrent_q_network((4,), 2, observation_key="obs", mlp_hidden=(16,), lstm_hidden=16, head_hidden=16)
    env = TransformedEnv(GymEnv("CartPole-v1"), Compose(RenameTransform(["observation"], ["obs"]), InitTracker(),
                                                        PreviousActionReward(), net.make_tensordict_primer()))
    policy = TensorDictSequential(net, QValueModule(action_space="one-hot"), EGreedyModule(env.action_spec, eps_init=0.5))
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(1000), batch_size=32,
                                    sampler=SliceSampler(slice_len=8, traj_key=("collector", "traj_ids")))
    loss = R2D2Loss(net, burn_in=2, n_steps=2)
    updater = HardUpdateEvery(loss, value_network_update_interval=2)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
    before = _snapshot(loss.value_network_params)
    collector = Collector(env, policy, frames_per_batch=100, total_frames=300)
    for batch in collector:
        buffer.extend(batch)
        out = loss(buffer.sample().reshape(-1, 8))
        assert torch.isfinite(out["loss"]) and out["priority"].shape == (4,)
        out["loss"].backward()
        optim.step()
        optim.zero_grad()
        updater.step()
    collector.shutdown()
    assert any(not torch.equal(a, b) for a, b in zip(before, loss.value_network_params.values(True, True)))


def test_world_model_and_actor_critic_on_own_pendulum_data_with_a_renamed_reward():
    torch.manual_seed(0)
    env = TransformedEnv(GymEnv("Pendulum-v1"), Compose(RenameTransform(["observation"], ["state"]), InitTracker()))
    wm = make_world_model([3], 1, latent="categorical", deter_dim=16, hidden_dim=16, num_vars=4, num_classes=4,
                          units=16, layers=1, embed_dim=16, observation_key="state")
    actor = make_dreamer_actor(wm.rssm, 1, discrete=False, units=16, layers=1)
    critic = make_dreamer_critic(wm.rssm, units=16, layers=1)
    model_loss = WorldModelLoss(wm, "dreamer_v2")
    model_loss.set_keys(observation="state", next_observation=("next", "state"), reward=("next", "r"))
    ac_loss = DreamerActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, horizon=4, gamma=0.99)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(1000), batch_size=32,
                                    sampler=SliceSampler(slice_len=8, traj_key=("collector", "traj_ids")))
    data = next(iter(Collector(env, None, frames_per_batch=200, total_frames=200)))
    data.rename_key_(("next", "reward"), ("next", "r"))
    buffer.extend(data)
    optims = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (wm, actor, critic)]
    before = [_snapshot(m) for m in (wm, actor, critic)]
    for _ in range(2):
        batch = buffer.sample().reshape(-1, 8)
        model_out = model_loss(batch)
        sum(v for k, v in model_out.items() if k.startswith("loss_")).backward()
        ac_out = ac_loss(batch)
        (ac_out["loss_actor"] + ac_out["loss_critic"]).backward()
        assert all(torch.isfinite(v) for k, v in {**model_out, **ac_out}.items() if k.startswith("loss_"))
        for optim in optims:
            optim.step()
            optim.zero_grad()
    assert all(_moved(b, m) for b, m in zip(before, (wm, actor, critic)))


def test_gumbel_sac_with_renamed_observation_and_action_keys():
    torch.manual_seed(0)
    env = GymEnv("CartPole-v1")
    actor = ProbabilisticActor(
        TensorDictModule(MLP(in_features=4, out_features=2, num_cells=[16]), ["o"], ["logits"]),
        in_keys=["logits"], out_keys=["a"], spec=env.action_spec, distribution_class=GumbelSoftmax,
        distribution_kwargs={"temperature": 1.0, "hard": True}, return_log_prob=True,
    )
    qvalue = ValueOperator(MLP(in_features=6, out_features=1, num_cells=[16]), in_keys=["o", "a"],
                           out_keys=["state_action_value"])
    loss = GumbelSACLoss(actor, qvalue, num_qvalue_nets=2, action_spec=env.action_spec)
    assert (loss.tensor_keys.action, loss.tensor_keys.log_prob) == ("a", "a_log_prob")  # taken from the actor
    loss.make_value_estimator(gamma=0.99)
    data = env.rollout(64, break_when_any_done=False)
    data.rename_key_("observation", "o")
    data.rename_key_(("next", "observation"), ("next", "o"))
    data.rename_key_("action", "a")
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
    before = _snapshot(loss)
    out = loss(data)
    total = out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]
    assert torch.isfinite(total)
    total.backward()
    optim.step()
    assert _moved(before, loss)
