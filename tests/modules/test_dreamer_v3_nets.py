"""DreamerV3's networks: the code's layer layout and initialization, the policy distributions, size
presets, and one update of both DreamerV3 losses on them (gradients reach every trained part)."""
import math

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torch.nn import functional as F

from latentrl.modules import (
    SIZES,
    RSSMImagine,
    make_dreamer_v3_actor,
    make_dreamer_v3_critic,
    make_dreamer_v3_world_model,
    v3_mlp,
)
from latentrl.objectives import DreamerV3ActorCriticLoss, WorldModelLoss


def test_mlp_layers_are_linear_rmsnorm_silu_and_outscale_zero_is_exact_zero():
    net = v3_mlp(6, 5, 8, 2, outscale=0.0)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.RMSNorm, nn.SiLU, nn.Linear, nn.RMSNorm, nn.SiLU, nn.Linear]
    assert net[1].eps == 1e-4 and float(net[-1].weight.abs().max()) == 0 and float(net[-1].bias.abs().max()) == 0
    assert float(net(torch.randn(3, 6)).abs().max()) == 0
    torch.manual_seed(0)
    wide = v3_mlp(2000, 4, 16, 1)
    assert float(wide[0].weight.abs().max()) <= 2 * 1.1368 / math.sqrt(2000) + 1e-7  # trunc_normal_in
    assert float(wide[0].bias.abs().max()) == 0


def test_sizes_are_the_code_s_presets():
    assert SIZES["size1m"] == dict(deter=512, hidden=64, classes=4, units=64, depth=4)
    assert SIZES["size12m"] == dict(deter=2048, hidden=256, classes=16, units=256, depth=16)
    assert SIZES["size200m"] == dict(deter=8192, hidden=1024, classes=64, units=1024, depth=64)
    wm = make_dreamer_v3_world_model([5], 2, size="size1m")
    assert (wm.rssm.deter_dim, wm.rssm.hidden_dim, wm.rssm.num_vars, wm.rssm.num_classes) == (512, 64, 32, 4)
    with pytest.raises(ValueError, match="`size` must be one of"):
        make_dreamer_v3_world_model([5], 2, size="huge")


def test_policy_distributions():
    wm = make_dreamer_v3_world_model([5], 3, size="size1m")
    h, s = wm.rssm.initial_state((4,))
    td = TensorDict({"deter": h + torch.randn_like(h), "stoch": s}, [4])
    disc = make_dreamer_v3_actor(wm.rssm, 3, discrete=True, units=16)
    probs = disc.get_dist(td.clone()).probs
    assert float(probs.min()) >= 0.01 / 3 - 1e-7  # 1% unimix
    cont = make_dreamer_v3_actor(wm.rssm, 2, discrete=False, units=16)
    out = cont(td.clone())
    loc, scale = out["loc"], out["scale"]
    assert float(loc.abs().max()) < 1 and float(scale.min()) >= 0.1 and float(scale.max()) <= 1.0
    # outscale 0.01: the std logit starts near 0, so the std starts at 0.9 sigmoid(2) + 0.1
    assert float(scale.mean()) == pytest.approx(0.9 * torch.sigmoid(torch.tensor(2.0)).item() + 0.1, abs=0.02)


def test_one_update_of_both_losses_trains_every_part():
    torch.manual_seed(0)
    B, T, OBS, A = 2, 6, 5, 2
    wm = make_dreamer_v3_world_model([OBS], A, size="size1m")
    actor = make_dreamer_v3_actor(wm.rssm, A, discrete=True, units=64)
    critic = make_dreamer_v3_critic(wm.rssm, units=64)
    model_loss = WorldModelLoss(wm, "dreamer_v3")
    model_loss.set_keys(discount_logit="continue_logit")
    ac_loss = DreamerV3ActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, wm.discount_model,
                                       horizon=3)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    batch = TensorDict({
        "observation": torch.randn(B, T, OBS), "action": F.one_hot(torch.randint(A, (B, T)), A).float(),
        "is_init": is_init,
        "next": {"observation": torch.randn(B, T, OBS), "reward": torch.randn(B, T, 1), "terminated": flags,
                 "done": flags.clone()},
    }, [B, T])
    out = model_loss(batch)
    assert out["loss_model_reward"].item() == pytest.approx(math.log(255), rel=1e-5)  # zero-initialized head
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    assert all(p.grad is not None for p in wm.parameters())
    ac = ac_loss(batch)
    (ac["loss_actor"] + ac["loss_critic"] + ac["loss_critic_replay"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert ac["value"].item() == 0.0  # zero-initialized critic


def test_continuous_actor_trains_by_reinforce_through_both_losses():
    torch.manual_seed(1)
    wm = make_dreamer_v3_world_model([3], 1, size="size1m")
    actor = make_dreamer_v3_actor(wm.rssm, 1, discrete=False, units=32)
    critic = make_dreamer_v3_critic(wm.rssm, units=32)
    loss = DreamerV3ActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, wm.discount_model,
                                    horizon=3, replay_scale=0.0)
    h, s = wm.rssm.initial_state((5,))
    out = loss(TensorDict({"deter": h + torch.randn_like(h), "stoch": s}, [5]))
    out["loss_actor"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert all(p.grad is None for p in wm.parameters())  # REINFORCE: no path into the world model
    assert torch.isfinite(out["entropy"])
