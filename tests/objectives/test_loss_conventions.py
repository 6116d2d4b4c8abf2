"""Every LossModule follows TorchRL's shell conventions: no warnings when built, ``in_keys``/``out_keys``
filled and true to ``forward``, and a batch missing any input key fails with a message naming the key and
the loss. The cases are built with the keys renamed where the loss allows it."""
import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch.nn import functional as F
from torchrl.data import OneHot
from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor, ValueOperator

from latentrl.modules import (
    GumbelSoftmax,
    RSSMImagine,
    make_dreamer_actor,
    make_dreamer_critic,
    make_recurrent_q_network,
    make_world_model,
)
from latentrl.modules.world_model import make_latent_head
from latentrl.objectives import (
    DreamerActorCriticLoss,
    DreamerV3ActorCriticLoss,
    GumbelSACLoss,
    IMPALALoss,
    R2D2Loss,
    WorldModelLoss,
)

B, T, OBS, N = 2, 5, 3, 2


def _impala():
    actor = ProbabilisticActor(
        TensorDictModule(torch.nn.Linear(OBS, N), ["obs"], ["logits"]), in_keys=["logits"], out_keys=["act"],
        spec=OneHot(N), distribution_class=OneHotCategorical, return_log_prob=True,
    )
    critic = ValueOperator(torch.nn.Linear(OBS, 1), in_keys=["obs"], out_keys=["v"])
    loss = IMPALALoss(actor, critic)
    g = torch.Generator().manual_seed(0)
    batch = TensorDict({
        "obs": torch.randn(B, T, OBS, generator=g),
        "act": F.one_hot(torch.randint(N, (B, T), generator=g), N).float(),
        "act_log_prob": torch.full((B, T), -0.7),
        "next": {"obs": torch.randn(B, T, OBS, generator=g), "reward": torch.ones(B, T, 1),
                 "done": torch.zeros(B, T, 1, dtype=torch.bool), "terminated": torch.zeros(B, T, 1, dtype=torch.bool)},
    }, [B, T])
    return loss, batch, ()


def _r2d2():
    torch.manual_seed(0)
    net = make_recurrent_q_network((OBS,), N, mlp_hidden=(4,), lstm_hidden=3, head_hidden=0)
    loss = R2D2Loss(net, burn_in=1, n_steps=2)
    g = torch.Generator().manual_seed(0)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    batch = TensorDict({
        "observation": torch.randn(B, T, OBS, generator=g),
        "prev_action": torch.zeros(B, T, N), "prev_reward": torch.zeros(B, T, 1),
        "recurrent_state_h": torch.zeros(B, T, 1, 3), "recurrent_state_c": torch.zeros(B, T, 1, 3),
        "is_init": is_init, "action": F.one_hot(torch.randint(N, (B, T), generator=g), N),
        "next": {"reward": torch.ones(B, T, 1), "done": torch.zeros(B, T, 1, dtype=torch.bool),
                 "terminated": torch.zeros(B, T, 1, dtype=torch.bool)},
    }, [B, T])
    # a SliceSampler-style batch: mask/valid/bootstrap are optional together
    return loss, batch, ("mask", "valid", "bootstrap")


def _world_model():
    torch.manual_seed(0)
    wm = make_world_model([OBS], N, latent="categorical", deter_dim=8, hidden_dim=8, num_vars=2, num_classes=3,
                          units=8, layers=1, embed_dim=8)
    loss = WorldModelLoss(wm, "dreamer_v2")
    loss.set_keys(next_observation=("next", "obs"), reward=("next", "r"))  # the model reads "observation"
    wm_keys_batch = TensorDict({
        "observation": torch.randn(B, T, OBS), "action": F.one_hot(torch.randint(N, (B, T)), N).float(),
        "is_init": torch.zeros(B, T, 1, dtype=torch.bool),
        "next": {"obs": torch.randn(B, T, OBS), "r": torch.zeros(B, T, 1),
                 "terminated": torch.zeros(B, T, 1, dtype=torch.bool)},
    }, [B, T])
    return loss, wm_keys_batch, ("is_init",)


def _dreamer():
    torch.manual_seed(0)
    wm = make_world_model([OBS], N, latent="categorical", deter_dim=8, hidden_dim=8, num_vars=2, num_classes=3,
                          units=8, layers=1, embed_dim=8)
    actor = make_dreamer_actor(wm.rssm, N, discrete=True, units=8, layers=1)
    critic = make_dreamer_critic(wm.rssm, units=8, layers=1)
    loss = DreamerActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, horizon=3, discrete=True)
    stoch = F.one_hot(torch.randint(3, (B, T, 2)), 3).float().flatten(-2)
    return loss, TensorDict({"deter": torch.randn(B, T, 8), "stoch": stoch}, [B, T]), ()


def _dreamer_v3():
    torch.manual_seed(0)
    wm = make_world_model([OBS], N, latent="categorical", deter_dim=8, hidden_dim=8, num_vars=2, num_classes=3,
                          unimix=0.01, units=8, layers=1, embed_dim=8)
    head = lambda out, key: TensorDictModule(make_latent_head(wm.rssm, out, 8, 1), ["deter", "stoch"], [key])  # noqa: E731
    actor = make_dreamer_actor(wm.rssm, N, discrete=True, units=8, layers=1)
    loss = DreamerV3ActorCriticLoss(actor, head(255, "value_logits"), RSSMImagine(wm.rssm), head(255, "reward_logits"),
                                    head(1, "continue_logit"), horizon=3)
    stoch = F.one_hot(torch.randint(3, (B, T, 2)), 3).float().flatten(-2)
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    return loss, TensorDict({"deter": torch.randn(B, T, 8), "stoch": stoch, "next": {
        "reward": torch.zeros(B, T, 1), "done": flags, "terminated": flags.clone()}}, [B, T]), ()


def _gumbel_sac():
    torch.manual_seed(0)
    logits = TensorDictModule(MLP(in_features=OBS, out_features=N, num_cells=[8]), ["obs"], ["logits"])
    actor = ProbabilisticActor(logits, in_keys=["logits"], out_keys=["act"], spec=OneHot(N),
                               distribution_class=GumbelSoftmax, distribution_kwargs={"temperature": 1.0, "hard": True},
                               return_log_prob=True)
    critic = ValueOperator(MLP(in_features=OBS + N, out_features=1, num_cells=[8]), ["obs", "act"],
                           out_keys=["state_action_value"])
    loss = GumbelSACLoss(actor, critic, num_qvalue_nets=2)
    loss.set_keys(action="act")
    loss.make_value_estimator(gamma=0.9)
    flags = torch.zeros(16, 1, dtype=torch.bool)
    batch = TensorDict({"obs": torch.randn(16, OBS), "act": F.one_hot(torch.randint(N, (16,)), N).float(),
                        "next": {"obs": torch.randn(16, OBS), "reward": torch.ones(16, 1), "done": flags,
                                 "terminated": flags}}, [16])
    return loss, batch, ()


CASES = {"IMPALALoss": _impala, "R2D2Loss": _r2d2, "WorldModelLoss": _world_model,
         "DreamerActorCriticLoss": _dreamer, "DreamerV3ActorCriticLoss": _dreamer_v3, "GumbelSACLoss": _gumbel_sac}


@pytest.mark.parametrize("name", CASES)
def test_built_without_warnings_and_keys_filled(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, batch, _ = CASES[name]()
    assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert isinstance(loss.in_keys, list) and loss.in_keys
    assert isinstance(loss.out_keys, list) and loss.out_keys
    out = loss(batch.clone())
    terms = {k for k in out.keys() if k.startswith("loss")}
    assert terms and terms <= set(loss.out_keys), (terms, loss.out_keys)
    leaves = set(batch.keys(True, True))
    # every in_key is a key the batch built from the documented layout actually carries
    assert all(k in leaves or (isinstance(k, str) and k in batch.keys()) for k in loss.in_keys
               if k not in CASES[name]()[2]), (loss.in_keys, leaves)


def _missing_cases():
    for name, build in CASES.items():
        loss, batch, optional = build()
        for key in loss.in_keys:
            if key in optional or key not in batch.keys(True, True):
                continue
            yield pytest.param(name, key, id=f"{name}-{key}")


@pytest.mark.parametrize("name,key", list(_missing_cases()))
def test_a_missing_input_key_is_named_with_the_loss(name, key):
    loss, batch, _ = CASES[name]()
    with pytest.raises(KeyError) as err:
        loss(batch.exclude(key))
    message = str(err.value)
    shown = key if isinstance(key, str) else key[-1]
    assert name in message and repr(shown) in message or str(key) in message, message
    assert name in message, message


def test_impala_takes_its_keys_from_the_actor_and_critic():
    loss, _, _ = _impala()
    assert (loss.tensor_keys.action, loss.tensor_keys.sample_log_prob, loss.tensor_keys.value) == (
        "act", "act_log_prob", "v")
    loss.set_keys(action="my_action")  # the log-prob key follows the action key, as TorchRL names it
    assert loss.tensor_keys.sample_log_prob == "my_action_log_prob"
    loss.set_keys(action=("agent", "a"))
    assert loss.tensor_keys.sample_log_prob == ("agent", "a_log_prob")
    loss.set_keys(action="x", sample_log_prob="lp")
    assert loss.tensor_keys.sample_log_prob == "lp"


def test_impala_on_policy_batch_reports_no_clipping():
    loss, batch, _ = _impala()
    actor = loss.actor_network
    with torch.no_grad():
        batch.set("act_log_prob", actor.get_dist(batch.clone()).log_prob(batch.get("act")) + 3e-7)  # round-off
    assert loss(batch)["rho_clipped"] == 0
    batch.set("act_log_prob", batch.get("act_log_prob") - 0.1)  # pi/mu = e^0.1 > rho_bar = 1: all clipped
    assert loss(batch)["rho_clipped"] == 1


def test_impala_refuses_a_time_first_batch():
    loss, batch, _ = _impala()
    ids = torch.arange(B).unsqueeze(-1).expand(B, T)  # one trajectory per row: time last, accepted
    batch.set(("collector", "traj_ids"), ids)
    loss(batch)
    with pytest.raises(ValueError, match="time last.*transpose"):
        loss(batch.transpose(0, 1).contiguous())  # [T, B]: ids change along the last dim without an episode end


def test_world_model_warns_once_without_is_init():
    loss, batch, _ = _world_model()
    with pytest.warns(UserWarning, match="no 'is_init'.*InitTracker"):
        loss(batch.exclude("is_init"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(batch.exclude("is_init"))


def test_r2d2_reads_a_slice_batch_and_names_a_partial_layout():
    loss, batch, _ = _r2d2()
    out = loss(batch)
    # burn_in=1, n=2, no bootstrap past the end: steps 1..T-1 trained where an n-step target exists
    assert out["loss_mask"].shape == (B, T - 1) and out["loss_mask"][:, :-1].all()
    with pytest.raises(KeyError, match="`bootstrap` key"):
        loss(batch.update({"mask": torch.ones(B, T, dtype=torch.bool), "valid": torch.ones(B, T, dtype=torch.bool)}))
    with pytest.raises(ValueError, match=r"reshape\(-1, slice_len\)"):
        loss(batch.reshape(-1))


def test_gumbel_sac_auto_target_entropy_and_negative_warning():
    loss, _, _ = _gumbel_sac()
    assert float(loss.target_entropy) == pytest.approx(0.2 * torch.log(torch.tensor(2.0)).item())
    actor, critic = loss.actor_network, ValueOperator(torch.nn.Linear(OBS + N, 1), ["obs", "act"])
    with pytest.warns(UserWarning, match="target_entropy=-2.0 is below 0"):
        GumbelSACLoss(actor, critic, target_entropy=-2.0)
    actor.return_log_prob = False
    with pytest.raises(ValueError, match="return_log_prob=True"):
        GumbelSACLoss(actor, critic)
