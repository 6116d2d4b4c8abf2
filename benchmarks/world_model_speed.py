"""World-model speed: our PlaNet/Dreamer world model vs TorchRL's Dreamer (v1) world model.

Both world models are built at the same size for vector observations (PlaNet's
sizes by default): an MLP encoder ``obs -> 200`` and MLP decoder / reward heads
``cat(state, belief) -> obs / 1``, each with 2 hidden layers of 200 ELU units
(``torchrl.modules.MLP`` on both sides), and an RSSM with a 200-unit GRU, a
200-unit hidden layer and a 30-unit Gaussian stochastic state (min std 0.1).
The parameter counts of both are printed; they match exactly.

* ours: ``latentrl.modules.world_model.make_world_model([obs_dim], action_dim,
  latent="gaussian", ...)`` trained by
  ``latentrl.objectives.world_model.WorldModelLoss(world_model, "planet")``;
* TorchRL's: ``RSSMPrior`` + ``RSSMPosterior`` in ``RSSMRollout``, the MLP
  encoder / decoder / reward wrapped in ``TensorDictModule`` s and grouped by
  ``WorldModelWrapper`` the way TorchRL's ``sota-implementations/dreamer``
  assembles them (``observation -> reco_observation`` instead of
  ``pixels -> reco_pixels``; the decoder and reward write their means, which is
  what the unit-variance ``IndependentNormal`` heads there return in
  deterministic mode), trained by ``torchrl.objectives.DreamerModelLoss``
  (``pixels``/``reco_pixels`` keys pointed at ``observation``/``reco_observation``).

Measured, in one process, on one batch of ``B`` random sequences of ``L`` steps:

1. ``world_model_step_ms``: one training step, loss forward + backward + Adam
   step (median of ``--repeats`` after ``--warmup``; the contenders' calls are
   interleaved, so load from other processes hits them alike). Our loss filters the
   ``L + 1`` observations ``observation[0..L-1], ("next", "observation")[L-1]``;
   TorchRL's filters the ``L`` next observations, so ours does one more RSSM step
   (51 vs 50 at the defaults).
2. ``imagination_steps_per_s``: ``N = B * L`` start states rolled ``H`` steps
   through the prior with the same small MLP policy (``tanh`` output) acting on
   ``cat`` of the two state parts, counting ``N * H`` steps per second, under
   ``torch.no_grad()`` and with autograd recording (forward only). Ours:
   ``RSSMImagine(world_model.rssm).rollout(start, policy, H)``; TorchRL's: a
   Python loop calling its ``RSSMPrior`` module (``prior(state, belief, action)``)
   ``H`` times, and TorchRL's own imagination path, ``DreamerEnv.rollout`` with
   the same prior wrapped as ``DreamerActorLoss`` uses it (reward head included,
   as that env computes it at every step). ``rollout`` calls the policy at
   every state it leaves (``H`` policy calls, ``H`` transitions) and returns
   TorchRL's trajectory layout; the prior loop stacks states, beliefs and actions.

Ratios are ``torchrl / latentrl`` for times (above 1: ours is faster) and
``latentrl / torchrl`` for rates (above 1: ours is faster).

    python benchmarks/world_model_speed.py [--batch 16] [--length 50] [--horizon 15] [--repeats 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs.model_based.dreamer import DreamerEnv
from torchrl.modules import MLP, RSSMPosterior, RSSMPrior, RSSMRollout, WorldModelWrapper
from torchrl.objectives import DreamerModelLoss

from latentrl.modules.world_model import RSSMImagine, make_world_model
from latentrl.objectives.world_model import WorldModelLoss


def _median_ms(fns: dict, repeats: int, warmup: int, device: str) -> dict:
    """Median ms per call of each function, the calls interleaved (order rotated every repeat).

    Interleaving keeps the ratios fair when other processes share the CPU: a
    load spike slows every contender of that repeat, not only the one being timed.
    """
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _mlp(in_features: int, out_features: int, units: int, layers: int) -> MLP:
    return MLP(in_features=in_features, out_features=out_features, num_cells=[units] * layers, activation_class=nn.ELU)


# ------------------------------------------------------------------ models
def make_latentrl(cfg: dict):
    wm = make_world_model(
        [cfg["obs_dim"]], cfg["action_dim"], latent="gaussian", deter_dim=cfg["deter"], hidden_dim=cfg["hidden"],
        stoch_dim=cfg["stoch"], units=cfg["units"], layers=cfg["layers"], embed_dim=cfg["embed"],
    )
    return wm, WorldModelLoss(wm, "planet")


def make_torchrl(cfg: dict):
    """TorchRL's Dreamer world model (``sota-implementations/dreamer/dreamer_utils.py``) for vector observations."""
    deter, hidden, stoch, units, layers = cfg["deter"], cfg["hidden"], cfg["stoch"], cfg["units"], cfg["layers"]
    if deter != hidden:
        raise ValueError("TorchRL's RSSMPrior needs hidden == deter (its prior head reads the belief with a hidden-sized Linear)")
    prior = RSSMPrior(
        Unbounded(shape=(cfg["action_dim"],)), hidden_dim=hidden, rnn_hidden_dim=deter, state_dim=stoch,
        action_dim=cfg["action_dim"],
    )
    posterior = RSSMPosterior(hidden_dim=hidden, state_dim=stoch, rnn_hidden_dim=deter, obs_embed_dim=cfg["embed"])
    encoder = _mlp(cfg["obs_dim"], cfg["embed"], units, layers)
    decoder = _mlp(stoch + deter, cfg["obs_dim"], units, layers)
    reward = _mlp(stoch + deter, 1, units, layers)
    rollout = RSSMRollout(
        TensorDictModule(
            prior, in_keys=["state", "belief", "action"],
            out_keys=[("next", "prior_mean"), ("next", "prior_std"), "_", ("next", "belief")],
        ),
        TensorDictModule(
            posterior, in_keys=[("next", "belief"), ("next", "encoded_latents")],
            out_keys=[("next", "posterior_mean"), ("next", "posterior_std"), ("next", "state")],
        ),
    )
    transition = TensorDictSequential(
        TensorDictModule(encoder, in_keys=[("next", "observation")], out_keys=[("next", "encoded_latents")]),
        rollout,
        TensorDictModule(decoder, in_keys=[("next", "state"), ("next", "belief")], out_keys=[("next", "reco_observation")]),
    )
    reward_model = TensorDictModule(reward, in_keys=[("next", "state"), ("next", "belief")], out_keys=[("next", "reward")])
    wm = WorldModelWrapper(transition, reward_model)
    loss = DreamerModelLoss(wm, free_nats=3)
    loss.set_keys(pixels="observation", reco_pixels="reco_observation")
    return wm, loss, prior, reward


# -------------------------------------------------------------------- data
def make_batch(cfg: dict, device: str) -> TensorDict:
    """Random sequences ``[B, L]`` with the keys of both losses (an episode starts at t = 0)."""
    g = torch.Generator().manual_seed(0)
    B, L, D, A = cfg["batch"], cfg["length"], cfg["obs_dim"], cfg["action_dim"]
    obs = torch.randn(B, L + 1, D, generator=g)
    is_init = torch.zeros(B, L, 1, dtype=torch.bool)
    is_init[:, 0] = True
    td = TensorDict(
        {
            "observation": obs[:, :-1],
            "action": torch.rand(B, L, A, generator=g) * 2 - 1,
            "is_init": is_init,
            # TorchRL's Dreamer: zero state/belief primers, rolled forward by RSSMRollout
            "state": torch.zeros(B, L, cfg["stoch"]),
            "belief": torch.zeros(B, L, cfg["deter"]),
            "next": {
                "observation": obs[:, 1:],
                "reward": torch.randn(B, L, 1, generator=g),
                "terminated": torch.zeros(B, L, 1, dtype=torch.bool),
                "done": torch.zeros(B, L, 1, dtype=torch.bool),
            },
        },
        batch_size=[B, L],
    )
    return td.to(device)


# ---------------------------------------------------------------- measures
def world_model_step(cfg: dict, ours, theirs, data: TensorDict, repeats: int, warmup: int, device: str) -> dict:
    wm_ours, loss_ours = ours
    wm_theirs, loss_theirs = theirs[:2]
    opt_ours = torch.optim.Adam(wm_ours.parameters(), lr=1e-4)
    opt_theirs = torch.optim.Adam(wm_theirs.parameters(), lr=1e-4)

    def step_ours():
        out = loss_ours(data.clone(False))
        total = out["loss_model_kl"] + out["loss_model_reco"] + out["loss_model_reward"]
        opt_ours.zero_grad(set_to_none=True)
        total.backward()
        opt_ours.step()

    def step_theirs():
        out, _ = loss_theirs(data.clone(False))
        total = (out["loss_model_kl"] + out["loss_model_reco"] + out["loss_model_reward"]).sum()
        opt_theirs.zero_grad(set_to_none=True)
        total.backward()
        opt_theirs.step()

    ms = _median_ms({"latentrl": step_ours, "torchrl": step_theirs}, repeats, warmup, device)
    ms_ours, ms_theirs = ms["latentrl"], ms["torchrl"]
    return {
        "latentrl": round(ms_ours, 3),
        "torchrl": round(ms_theirs, 3),
        "ratio_torchrl_over_latentrl": round(ms_theirs / ms_ours, 3),
    }


def imagination(cfg: dict, ours, theirs, repeats: int, warmup: int, device: str) -> dict:
    wm_ours = ours[0]
    prior, reward = theirs[2], theirs[3]
    N, H = cfg["batch"] * cfg["length"], cfg["horizon"]
    deter, stoch, A = cfg["deter"], cfg["stoch"], cfg["action_dim"]
    torch.manual_seed(0)
    policy = nn.Sequential(_mlp(deter + stoch, A, cfg["policy_units"], 2), nn.Tanh()).to(device)
    start_h = torch.randn(N, deter, device=device)
    start_s = torch.randn(N, stoch, device=device)

    imagine = RSSMImagine(wm_ours.rssm)
    keyed_policy = TensorDictModule(lambda h, s: policy(torch.cat([h, s], -1)), in_keys=["deter", "stoch"],
                                    out_keys=["action"])
    start_ours = TensorDict({"deter": start_h, "stoch": start_s}, [N], device=device)

    def ours_fn():
        return imagine.rollout(start_ours, keyed_policy, H)

    def theirs_loop():  # TorchRL's prior module, called directly
        state, belief = start_s, start_h
        states, beliefs, actions = [], [], []
        for _ in range(H):
            action = policy(torch.cat([state, belief], -1))
            _, _, state, belief = prior(state, belief, action)
            states.append(state)
            beliefs.append(belief)
            actions.append(action)
        return torch.stack(states, 1), torch.stack(beliefs, 1), torch.stack(actions, 1)

    # TorchRL's imagination path (DreamerActorLoss): DreamerEnv.rollout with the prior as transition model
    env = DreamerEnv(
        world_model=WorldModelWrapper(
            TensorDictModule(prior, in_keys=["state", "belief", "action"], out_keys=["_", "_", "state", "belief"]),
            TensorDictModule(reward, in_keys=["state", "belief"], out_keys=["reward"]),
        ),
        prior_shape=torch.Size([stoch]),
        belief_shape=torch.Size([deter]),
        device=device,
        batch_size=torch.Size([N]),
    )
    env.observation_spec = Composite(
        state=Unbounded(shape=(N, stoch)), belief=Unbounded(shape=(N, deter)), shape=(N,), device=device
    )
    env.state_spec = Composite(
        state=Unbounded(shape=(N, stoch)), belief=Unbounded(shape=(N, deter)), shape=(N,), device=device
    )
    env.action_spec = Unbounded(shape=(N, A), device=device)
    env.reward_spec = Unbounded(shape=(N, 1), device=device)
    actor = TensorDictModule(
        lambda s, b: policy(torch.cat([s, b], -1)), in_keys=["state", "belief"], out_keys=["action"]
    )
    start_td = TensorDict({"state": start_s, "belief": start_h}, batch_size=[N], device=device)

    def theirs_env():
        td = env.reset(start_td.clone())
        return env.rollout(max_steps=H, policy=actor, auto_reset=False, tensordict=td)

    out = theirs_env()
    assert out.batch_size == (N, H), out.batch_size
    result = {}
    for mode, ctx in (("no_grad", torch.no_grad), ("grad_forward", torch.enable_grad)):
        with ctx():
            ms = _median_ms(
                {"latentrl": ours_fn, "torchrl_prior_loop": theirs_loop, "torchrl_dreamer_env": theirs_env},
                repeats, warmup, device,
            )
            rates = {name: N * H / (t / 1e3) for name, t in ms.items()}
        result[mode] = {k: round(v, 1) for k, v in rates.items()}
        result[mode]["ratio_latentrl_over_torchrl_prior_loop"] = round(rates["latentrl"] / rates["torchrl_prior_loop"], 3)
        result[mode]["ratio_latentrl_over_torchrl_dreamer_env"] = round(rates["latentrl"] / rates["torchrl_dreamer_env"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16, help="sequences per batch (B)")
    parser.add_argument("--length", type=int, default=50, help="steps per sequence (L)")
    parser.add_argument("--horizon", type=int, default=15, help="imagination horizon (H), from N = B * L start states")
    parser.add_argument("--obs-dim", type=int, default=5)
    parser.add_argument("--action-dim", type=int, default=1)
    parser.add_argument("--deter", type=int, default=200, help="GRU state / belief size (TorchRL needs deter == hidden)")
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--stoch", type=int, default=30)
    parser.add_argument("--units", type=int, default=200, help="encoder/decoder/reward MLP width")
    parser.add_argument("--layers", type=int, default=2, help="encoder/decoder/reward MLP hidden layers")
    parser.add_argument("--embed", type=int, default=200)
    parser.add_argument("--policy-units", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = {
        "batch": args.batch, "length": args.length, "horizon": args.horizon, "obs_dim": args.obs_dim,
        "action_dim": args.action_dim, "deter": args.deter, "hidden": args.hidden, "stoch": args.stoch,
        "units": args.units, "layers": args.layers, "embed": args.embed, "policy_units": args.policy_units,
        "imagination_start_states": args.batch * args.length,
        "repeats": args.repeats, "warmup": args.warmup, "cpu_threads": args.threads, "device": args.device,
        "dtype": "float32",
    }
    torch.manual_seed(0)
    ours = make_latentrl(cfg)
    theirs = make_torchrl(cfg)
    ours[0].to(args.device)
    theirs[0].to(args.device)
    data = make_batch(cfg, args.device)
    print(
        json.dumps(
            {
                "benchmark": "world_model_speed",
                "config": cfg,
                "params": {"latentrl": _n_params(ours[0]), "torchrl": _n_params(theirs[0])},
                "world_model_step_ms": world_model_step(cfg, ours, theirs, data, args.repeats, args.warmup, args.device),
                "imagination_steps_per_s": imagination(cfg, ours, theirs, args.repeats, args.warmup, args.device),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
