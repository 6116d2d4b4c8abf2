"""Time per DreamerV3 training update, ours against TorchRL 0.14.1's ``DreamerV3Loss`` stack, eager, at
the same size preset and batch, alternating in one process; JSON out.

    python benchmarks/dreamer_v3_update.py --size size1m --batch 16 --seq-len 64 --threads 1

An update is the forward of every loss term, one backward of their sum and one ``DreamerV3Optimizer``
step over all parameters, for both. ``flop_efficiency`` is the update's matmul FLOPs per second over
this machine's float32 GEMM rate (2048^3 ``mm``) measured in the same run. Same sizes: RSSM
deter/hidden/32 x classes with TorchRL's block GRU
(``RSSMPriorV3(recurrent_model="block_gru", num_blocks=8, unimix=0.01)``), MLP widths ``units``
(encoder 3 layers, decoder 3, reward 1, actor 3, critic 3; 255-bin two-hot reward and critic),
imagination of 15 steps from all ``B x T`` states, replay value loss on. The architectures are not
identical (TorchRL's MLPs have no RMSNorm, its model loss no continue head by default; one continuous
action for both): the ratio is stack against stack, as a user would build each.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from tensordict import TensorDict
from torchrl.trainers.algorithms import DreamerV3Optimizer

from _flops import count_flops, gemm_gflops

from latentrl.modules import (
    SIZES,
    RSSMImagine,
    make_dreamer_v3_actor,
    make_dreamer_v3_critic,
    make_dreamer_v3_world_model,
)
from latentrl.objectives import DreamerV3ActorCriticLoss, WorldModelLoss


def build(size: str, obs_dim: int, actions: int):
    wm = make_dreamer_v3_world_model([obs_dim], actions, size=size)
    units = SIZES[size]["units"]
    actor = make_dreamer_v3_actor(wm.rssm, actions, discrete=False, units=units)
    critic = make_dreamer_v3_critic(wm.rssm, units=units)
    model_loss = WorldModelLoss(wm, "dreamer_v3")
    model_loss.set_keys(discount_logit="continue_logit")
    ac_loss = DreamerV3ActorCriticLoss(actor, critic, RSSMImagine(wm.rssm), wm.reward_model, wm.discount_model)
    params = [*wm.parameters(), *actor.parameters(), *ac_loss.value_network_params.parameters()]
    return model_loss, ac_loss, DreamerV3Optimizer(params)


def batch(B: int, T: int, obs_dim: int, actions: int) -> TensorDict:
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init = flags.clone()
    is_init[:, 0] = True
    return TensorDict({
        "observation": torch.randn(B, T, obs_dim), "is_init": is_init,
        "action": torch.rand(B, T, actions) * 2 - 1,
        "next": {"observation": torch.randn(B, T, obs_dim), "reward": torch.randn(B, T, 1), "terminated": flags,
                 "done": flags.clone()},
    }, [B, T])


def build_torchrl(size: str, obs_dim: int, actions: int):
    """TorchRL's DreamerV3 stack at the same sizes (its DreamerV3Loss docstring's learner, resized)."""
    from tensordict.nn import (
        NormalParamExtractor,
        ProbabilisticTensorDictModule,
        ProbabilisticTensorDictSequential,
        TensorDictModule,
        TensorDictSequential,
    )
    from torchrl.data import Bounded, Composite, Unbounded
    from torchrl.envs.model_based import DreamerEnv
    from torchrl.modules import (
        MLP,
        RSSMPosteriorV3,
        RSSMPriorV3,
        RSSMRolloutV3,
        SymExpTwoHot,
        TanhNormal,
        WorldModelWrapper,
    )
    from torchrl.objectives import (
        DreamerV3ActorLoss,
        DreamerV3Loss,
        DreamerV3ModelLoss,
        DreamerV3ValueLoss,
    )

    p = SIZES[size]
    D, H, K, U, A = p["deter"], p["hidden"], p["classes"], p["units"], actions
    S = 32 * K

    class TwoHotHead(torch.nn.Module):  # decoded value (and its logits) from a 255-bin head
        def __init__(self, net, logits: bool):
            super().__init__()
            self.net, self.two_hot, self.logits = net, SymExpTwoHot(255), logits

        def forward(self, state, belief):
            logits = self.net(torch.cat([state, belief], -1))
            value = self.two_hot.decode(logits).unsqueeze(-1)
            return (value, logits) if self.logits else value

    prior_net = RSSMPriorV3(action_shape=(A,), hidden_dim=H, rnn_hidden_dim=D, num_categoricals=32, num_classes=K,
                            action_dim=A, recurrent_model="block_gru", num_blocks=8, unimix=0.01)
    posterior_net = RSSMPosteriorV3(hidden_dim=H, rnn_hidden_dim=D, num_categoricals=32, num_classes=K,
                                    obs_embed_dim=U)
    reward_net = MLP(in_features=S + D, out_features=255, num_cells=U, depth=1)
    latent, nxt = ["state", "belief"], [("next", "state"), ("next", "belief")]
    world_model = TensorDictSequential(
        TensorDictModule(MLP(in_features=obs_dim, out_features=U, num_cells=U, depth=2), in_keys=[("next", "observation")],
                         out_keys=[("next", "encoded")]),
        RSSMRolloutV3(
            TensorDictModule(prior_net, in_keys=[*latent, "action"],
                             out_keys=[("next", "prior_logits"), ("next", "state"), ("next", "belief")]),
            TensorDictModule(posterior_net, in_keys=[("next", "belief"), ("next", "encoded")],
                             out_keys=[("next", "posterior_logits"), ("next", "state")]),
            reset_key="is_init"),
        TensorDictModule(MLP(in_features=S + D, out_features=obs_dim, num_cells=U, depth=3), in_keys=nxt,
                         out_keys=[("next", "reco_pixels")]),
        TensorDictModule(reward_net, in_keys=nxt, out_keys=[("next", "reward")]),
    )
    env = DreamerEnv(WorldModelWrapper(
        TensorDictModule(prior_net, in_keys=[*latent, "action"], out_keys=["_", "state", "belief"]),
        TensorDictModule(TwoHotHead(reward_net, logits=False), in_keys=latent, out_keys=["reward"]),
    ), prior_shape=(S,), belief_shape=(D,))
    env.observation_spec = Composite(state=Unbounded(S), belief=Unbounded(D))
    env.state_spec = env.observation_spec.clone()
    env.action_spec = Bounded(-1, 1, (A,))
    env.reward_spec = Unbounded((1,))
    actor = ProbabilisticTensorDictSequential(
        TensorDictModule(MLP(in_features=S + D, out_features=2 * A, num_cells=U, depth=3), in_keys=latent,
                         out_keys=["params"]),
        TensorDictModule(NormalParamExtractor(), in_keys=["params"], out_keys=["loc", "scale"]),
        ProbabilisticTensorDictModule(in_keys=["loc", "scale"], out_keys=["action"], distribution_class=TanhNormal,
                                      return_log_prob=True),
    )
    value = TensorDictModule(TwoHotHead(MLP(in_features=S + D, out_features=255, num_cells=U, depth=3), logits=True),
                             in_keys=latent, out_keys=["state_value", "state_value_logits"])
    model_loss = DreamerV3ModelLoss(world_model, detach_output=False, kl_mode="separate", unimix=0.01)
    model_loss.set_keys(pixels="observation")
    actor_loss = DreamerV3ActorLoss(actor, value, env, imagination_horizon=15, use_reinforce=True)
    value_loss = DreamerV3ValueLoss(value, value_loss="two_hot", actor_loss=actor_loss, slow_critic_regularization=1.0)
    loss = DreamerV3Loss(model_loss, actor_loss, value_loss)
    return loss, DreamerV3Optimizer([p for p in loss.parameters() if p.requires_grad])


def torchrl_batch(size: str, B: int, T: int, obs_dim: int, actions: int) -> TensorDict:
    p = SIZES[size]
    flags = torch.zeros(B, T, 1, dtype=torch.bool)
    return TensorDict({
        "state": torch.zeros(B, T, 32 * p["classes"]), "belief": torch.zeros(B, T, p["deter"]),
        "action": torch.rand(B, T, actions) * 2 - 1, "is_init": flags.clone(),
        "next": {"observation": torch.randn(B, T, obs_dim), "reward": torch.randn(B, T, 1), "done": flags,
                 "terminated": flags.clone()},
    }, [B, T])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="size1m", choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torchrl", action="store_true", help="time ours only")
    parser.add_argument("--compile", action="store_true", help="also time ours with RSSMV3.compile_core()")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    obs_dim, actions = 4, 1
    model_loss, ac_loss, optimizer = build(args.size, obs_dim, actions)
    data = batch(args.batch, args.seq_len, obs_dim, actions)
    phases = {"world_model_forward": 0.0, "actor_critic_forward": 0.0, "backward_and_step": 0.0}

    def ours(timed: bool) -> float:
        d = data.clone()
        t0 = time.perf_counter()
        wm = model_loss(d)
        t1 = time.perf_counter()
        ac = ac_loss(d)
        t2 = time.perf_counter()
        loss = sum(v for out in (wm, ac) for k, v in out.items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t3 = time.perf_counter()
        if timed:
            for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
                phases[key] += dt / args.repeats
        return t3 - t0

    compiled = None
    if args.compile:
        c_model_loss, c_ac_loss, c_optimizer = build(args.size, obs_dim, actions)
        c_model_loss.world_model.rssm.compile_core()

        def compiled(timed: bool) -> float:
            d = data.clone()
            t0 = time.perf_counter()
            loss = sum(v for out in (c_model_loss(d), c_ac_loss(d)) for k, v in out.items() if k.startswith("loss_"))
            c_optimizer.zero_grad()
            loss.backward()
            c_optimizer.step()
            return time.perf_counter() - t0

        t0 = time.perf_counter()
        compiled(False)
        compile_seconds = time.perf_counter() - t0

    theirs = None
    if not args.no_torchrl:
        trl_loss, trl_opt = build_torchrl(args.size, obs_dim, actions)
        trl_data = torchrl_batch(args.size, args.batch, args.seq_len, obs_dim, actions)

        def theirs(timed: bool) -> float:
            t0 = time.perf_counter()
            out = trl_loss(trl_data.clone())
            trl_opt.zero_grad()
            sum(v for k, v in out.items() if k.startswith("loss_")).backward()
            trl_opt.step()
            return time.perf_counter() - t0

    ours(False)  # warm-up
    if theirs is not None:
        theirs(False)
    times = {"ours": [], "torchrl": [], "compiled": []}
    for _ in range(args.repeats):  # alternating, so all see the same machine load
        times["ours"].append(ours(True))
        if theirs is not None:
            times["torchrl"].append(theirs(True))
        if compiled is not None:
            times["compiled"].append(compiled(True))
    flops = count_flops(lambda: ours(False))
    gemm = gemm_gflops()
    seconds = sum(times["ours"]) / args.repeats
    result = {
        "size": args.size, "batch": args.batch, "seq_len": args.seq_len, "threads": args.threads,
        "imagination_starts": args.batch * args.seq_len, "horizon": ac_loss.horizon,
        "seconds_per_update": seconds, "phases_seconds": phases,
        # matmul FLOPs of one update (forward + backward) over its time, as a share of this machine's
        # float32 GEMM rate measured here: how far the update is from the physical limit
        "gflops_per_update": flops / 1e9, "gemm_gflops_per_s": gemm,
        "flop_efficiency": flops / 1e9 / seconds / gemm,
    }
    if compiled is not None:
        result["compiled_seconds_per_update"] = sum(times["compiled"]) / args.repeats
        result["compile_seconds"] = compile_seconds
        result["ratio_compiled_over_eager"] = result["compiled_seconds_per_update"] / result["seconds_per_update"]
    if theirs is not None:
        result["torchrl_seconds_per_update"] = sum(times["torchrl"]) / args.repeats
        result["ratio_ours_over_torchrl"] = result["seconds_per_update"] / result["torchrl_seconds_per_update"]
        if compiled is not None:
            result["ratio_compiled_over_torchrl"] = (result["compiled_seconds_per_update"]
                                                     / result["torchrl_seconds_per_update"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
