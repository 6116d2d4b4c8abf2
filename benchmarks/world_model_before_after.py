"""World-model updates before and after the keyed, faster rewrite (issue 12), in one process.

The baseline is the package at commit ``BASELINE`` (the last one before the
rewrite), imported beside today's as ``latentrl_baseline``
(``benchmarks/_baseline.py``). Both are built at the CPU sizes of the examples
and given the same parameters and data:

* ``planet``: ``examples/planet`` (Gaussian RSSM, GRU 200, 30 units, 2 x 200
  ELU MLPs), one ``WorldModelLoss("planet")`` step (forward, backward, Adam)
  on 50 sequences of 50 steps;
* ``dreamer_v2``: ``examples/dreamer_v2`` (32 x 32 categoricals, GRU 200,
  2 x 200 MLPs, discount head), one world-model step on 16 x 50, then one
  actor and one critic step on 15-step imaginations from 256 of the 800
  posterior states, as the example's update does.

Before timing, one update of each is compared: every loss and every
parameter gradient must agree to float32 tolerance (the baseline's
categorical sampler is given today's inverse-CDF sampler, so both draw the
same samples from the same seed). Timings are medians of interleaved calls.
FLOPs per update are counted by ``torch.utils.flop_counter`` (matmuls and
convolutions, forward and backward) and divided by the time, as a fraction of
the float32 GEMM rate measured in the same run (2048^3 ``mm``).

    python benchmarks/world_model_before_after.py [--threads 1] [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from tensordict import TensorDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baseline import load_baseline  # noqa: E402
from _flops import count_flops, gemm_gflops  # noqa: E402

from latentrl.modules.actor_critic import make_dreamer_actor, make_dreamer_critic  # noqa: E402
from latentrl.modules.distributions import sample_one_hot  # noqa: E402
from latentrl.modules.world_model import RSSMImagine, make_world_model  # noqa: E402
from latentrl.objectives.dreamer import DreamerActorCriticLoss  # noqa: E402
from latentrl.objectives.world_model import WorldModelLoss  # noqa: E402

BASELINE = "cd9e815"
OBS, ACT = 5, 1  # dmc cartpole: 5 observations, 1 action


def make_batch(B: int, T: int, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, T + 1, OBS, generator=g)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[: B // 4, T // 2] = True  # some sequences cross an episode start
    return TensorDict({
        "observation": obs[:, :-1], "action": torch.rand(B, T, ACT, generator=g) * 2 - 1, "is_init": is_init,
        "next": {"observation": obs[:, 1:], "reward": torch.randn(B, T, 1, generator=g),
                 "terminated": torch.zeros(B, T, 1, dtype=torch.bool)},
    }, [B, T])


class Old:
    """The baseline's world model (+ actor and critic) and losses."""

    def __init__(self, base, latent: str):
        from latentrl_baseline.modules.world_model import make_world_model as old_make
        from latentrl_baseline.objectives.world_model import WorldModelLoss as OldLoss

        self.wm = old_make([OBS], ACT, latent=latent, predict_discount=latent == "categorical")
        if latent == "gaussian":
            self.loss = OldLoss(self.wm, "planet")
            self.ac = None
        else:
            from latentrl_baseline.objectives.dreamer import DreamerActor, DreamerActorCriticLoss as OldAC, make_critic

            self.loss = OldLoss(self.wm, "dreamer_v2", kl_scale=1.0, free_nats=1.0)
            self.actor = DreamerActor(self.wm.feature_dim, ACT, discrete=False, units=200, layers=2)
            self.ac = OldAC(self.actor, make_critic(self.wm.feature_dim, 200, 2), self.wm)
        self.parts = {"rssm": self.wm.rssm, "encoder": self.wm.encoder, "decoder": self.wm.decoder,
                      "reward": self.wm.reward, "discount": self.wm.discount}

    def critic_params(self):
        return self.ac.critic_params


class New:
    """Today's keyed world model (+ actor and critic) and losses."""

    def __init__(self, latent: str):
        self.wm = make_world_model([OBS], ACT, latent=latent, predict_discount=latent == "categorical")
        if latent == "gaussian":
            self.loss = WorldModelLoss(self.wm, "planet")
            self.ac = None
        else:
            self.loss = WorldModelLoss(self.wm, "dreamer_v2", kl_scale=1.0, free_nats=1.0)
            self.actor = make_dreamer_actor(self.wm.rssm, ACT, discrete=False, units=200, layers=2)
            critic = make_dreamer_critic(self.wm.rssm, units=200, layers=2)
            self.ac = DreamerActorCriticLoss(self.actor, critic, RSSMImagine(self.wm.rssm), self.wm.reward_model,
                                             self.wm.discount_model)
        self.parts = {"rssm": self.wm.rssm, "encoder": self.wm.encoder.module, "decoder": self.wm.decoder.module,
                      "reward": self.wm.reward_model.module,
                      "discount": None if self.wm.discount_model is None else self.wm.discount_model.module}

    def critic_params(self):
        return self.ac.value_network_params


def _copy(dst, src) -> None:
    """Parameters copied in order (today's first layers are split by input part, their tensors are the same)."""
    pairs = list(zip(dst, src, strict=True))
    for d, s in pairs:
        if d.shape != s.shape:
            raise AssertionError(f"parameter shapes differ: {tuple(d.shape)} and {tuple(s.shape)}")
        d.data.copy_(s.data)


def copy_parameters(old: Old, new: New) -> None:
    for name, part in old.parts.items():
        if part is not None:
            _copy(list(new.parts[name].parameters()), list(part.parameters()))
    if old.ac is not None:
        _copy(list(new.actor.parameters()), list(old.actor.parameters()))
        for dst, src in ((new.ac.value_network_params, old.ac.critic_params),
                         (new.ac.target_value_network_params, old.ac.target_critic_params)):
            _copy(list(dst.values(True, True)), list(src.values(True, True)))


def make_update(m, data: TensorDict, starts: int, imagine_seed: int):
    """One update as the example does it: world model, then actor and critic (Adam each)."""
    model_opt = torch.optim.Adam(m.wm.parameters(), lr=3e-4)
    opts = None
    if m.ac is not None:
        opts = (torch.optim.Adam(m.actor.parameters(), lr=8e-5), torch.optim.Adam(m.critic_params().parameters(), lr=8e-5))

    def update(step: bool = True):
        batch = data.clone(False)
        wm = m.loss(batch)
        losses = {k: v for k, v in wm.items() if k.startswith("loss_")}
        model_opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        grads = {name: [p.grad.clone() for p in part.parameters()] for name, part in m.parts.items() if part is not None}
        if step:
            model_opt.step()
        if m.ac is not None:
            flat = batch.select("deter", "stoch").reshape(-1)
            flat = flat[torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(imagine_seed))[:starts]]
            ac = m.ac(flat)
            losses.update(loss_actor=ac["loss_actor"], loss_critic=ac["loss_critic"])
            for opt, key, params in ((opts[0], "loss_actor", m.actor.parameters()),
                                     (opts[1], "loss_critic", m.critic_params().parameters())):
                opt.zero_grad(set_to_none=True)
                ac[key].backward()
                if step:
                    opt.step()
            grads["actor"] = [p.grad.clone() for p in m.actor.parameters() if p.grad is not None]
        return {k: v.detach() for k, v in losses.items()}, grads

    return update


def compare(old_update, new_update, seed: int = 1) -> dict:
    torch.manual_seed(seed)
    lo, go = old_update(step=False)
    torch.manual_seed(seed)
    ln, gn = new_update(step=False)
    loss_diff = {k: abs(float(lo[k] - ln[k])) / max(1.0, abs(float(lo[k]))) for k in lo}
    grad_diff = {}
    for part in go:
        a, b = go[part], gn[part]
        if len(a) != len(b):
                raise AssertionError(f"{part}: {len(a)} gradients before, {len(b)} after")
        grad_diff[part] = max(float((x - y).abs().max() / x.abs().max().clamp_min(1e-6)) for x, y in zip(a, b))
    return {"relative_loss_diff": loss_diff, "relative_grad_diff": grad_diff}


def median_ms(fns: dict, repeats: int, warmup: int) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names, times = list(fns), {k: [] for k in fns}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def run(name: str, latent: str, B: int, T: int, starts: int, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    old = Old(sys.modules["latentrl_baseline"], latent)
    new = New(latent)
    copy_parameters(old, new)
    data = make_batch(B, T)
    old_update, new_update = make_update(old, data, starts, 3), make_update(new, data, starts, 3)
    check = compare(old_update, new_update)
    worst = max([*check["relative_loss_diff"].values(), *check["relative_grad_diff"].values()])
    if worst > 1e-4:  # the rewrite must compute the same update
        raise AssertionError(f"{name}: losses or gradients differ from the baseline by {worst:.2e} (relative)")
    ms = median_ms({"before": old_update, "after": new_update}, repeats, warmup)
    flops = {"before": count_flops(old_update), "after": count_flops(new_update)}
    gemm = gemm_gflops()
    return {
        "sizes": {"batch": B, "length": T, "imagination_starts": starts if latent == "categorical" else None},
        "update_ms": {k: round(v, 1) for k, v in ms.items()},
        "speedup_after_over_before": round(ms["before"] / ms["after"], 2),
        "gflop_per_update_counted": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "gemm_gflops_per_s": round(gemm, 1),
        # the work of the update, as the dense (baseline) computation counts it, per second of each
        "fraction_of_gemm_rate": {k: round(flops["before"] / (ms[k] / 1e3) / 1e9 / gemm, 3) for k in ms},
        **check,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small batches (a smoke test of the script)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_baseline(BASELINE)
    from latentrl_baseline.modules import distributions as old_distributions

    old_distributions.StraightThroughOneHotCategorical.sample = (
        lambda self, shape=torch.Size(): sample_one_hot(self.probs, shape))
    sizes = {"planet": (50, 50, 0), "dreamer_v2": (16, 50, 256)}
    if args.quick:
        sizes = {"planet": (4, 8, 0), "dreamer_v2": (4, 8, 16)}
    results = {name: run(name, latent, *sizes[name], args.repeats, args.warmup)
               for name, latent in (("planet", "gaussian"), ("dreamer_v2", "categorical"))}
    print(json.dumps({"benchmark": "world_model_before_after", "baseline_commit": BASELINE,
                      "cpu_threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
