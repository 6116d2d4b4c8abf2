"""R2D2 replay: our sequence replay against TorchRL's ``PrioritizedSliceSampler``.

Both replays are filled with the same collector-shaped steps and measured in
the same process, calls interleaved (ours, theirs, ours, ...):

* **latentrl**: :class:`~latentrl.collectors.sequence_replay.SequenceReplayBuffer`,
  a ``TensorDictReplayBuffer`` over whole sequences ``[L]``,
  ``L = burn_in + seq_len``, cut when the data is added (adjacent sequences of
  an episode overlap by ``overlap`` training steps, short episodes are padded),
  with TorchRL's ``PrioritizedSampler``: one priority per sequence.
* **torchrl**: a ``TensorDictReplayBuffer`` over ``LazyTensorStorage`` of
  single steps, sampled by
  ``PrioritizedSliceSampler(alpha=0.9, beta=0.6, slice_len=L,
  traj_key=("collector", "traj_ids"), strict_length=False)``: one priority per
  step, a slice starts at a step drawn by priority, slices stop at the end of
  their episode (so they may be shorter than ``L``), and the sample is one
  flat ``[sum of slice lengths]`` batch.

"Same storage": both hold every collected step (capacity = exactly what was
added, nothing is evicted). TorchRL's storage holds each step once; ours holds
each step in up to ``ceil(L / (seq_len - overlap))`` sequences, plus padding.
Every stored row has the same entries on both sides (the collector's keys minus
the network's intermediate outputs, as ``examples/r2d2/train.py`` stores them).

Measured
--------
1. ``sampling``: one ``sample()`` of ``--batch-size`` sequences / slices
   (sequences/s and the real steps in a sample), and one priority update of
   such a sample: ours ``update_priorities(index, sequence_priority(td_error [B, seq_len], mask))``
   (the R2D2 max/mean mixture per sequence), TorchRL's
   ``update_priority(index, |td|)`` on every sampled step index.
2. ``learner``: one full update, split into sample / loss+backward+Adam /
   priority update (TorchRL: also ``split_trajectories``).
   Ours: ``sample`` -> ``R2D2Loss`` (burn-in of online and target networks
   from the stored state, rescaled 5-step double Q) -> ``update_priorities``.
   TorchRL's recipe for a recurrent Q-network on slices: ``sample`` ->
   ``split_trajectories`` (the flat sample to padded ``[B, T_max]`` with
   ``("collector", "mask")``) -> ``DQNLoss(double_dqn=True)`` with the TD(0)
   estimator under ``set_recurrent_mode(True)`` (no burn-in; it masks the
   padding itself) -> ``update_priority`` with the ``td_error`` ``DQNLoss``
   wrote (the squared TD error, see
   ``tests/upstream/test_dqn_priority_squared.py``). Same network (copies of
   one initialisation), same Adam settings. The losses differ in the work they
   do (ours: online and target unrolls of ``L`` steps, gradients through the
   last ``seq_len``; ``DQNLoss`` double: three unrolls of the slice, online on
   ``s_t`` with gradients, online and target on ``s_{t+1}``), so the learner
   ratio compares the two complete recipes, not equal arithmetic.

Data (``--data``): ``synthetic`` (default) builds ``[num_envs, T]`` batches with
exactly the keys, shapes and dtypes of a real ``Collector`` batch of the R2D2
policy on ``make_recurrent_env("pomdp:masked-cartpole", 8, ...)`` (one small
real batch is the template), random values and episodes of random length in
``[--min-episode, --max-episode]``: R2D2's regime, episodes much longer than
``L``. ``collector`` uses the real collector's data: with the untrained
epsilon-greedy policy masked-CartPole episodes last ~10-20 steps, so every
sequence is mostly padding and TorchRL's slices are ~15 steps long.

Ratios are ``ours / torchrl`` of rates (> 1: ours is faster). Prints JSON.

    python benchmarks/r2d2_replay.py [--data synthetic|collector] [--steps 32000]
        [--seq-len 80 --overlap 40 --burn-in 40] [--batch-size 64] [--quick]
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
import warnings

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.collectors import Collector
from torchrl.collectors.utils import split_trajectories
from torchrl.data import (
    LazyTensorStorage,
    PrioritizedSliceSampler,
    TensorDictReplayBuffer,
)
from torchrl.modules import QValueModule, set_recurrent_mode
from torchrl.objectives import DQNLoss, ValueEstimators

from latentrl.collectors.sequence_replay import SequenceReplayBuffer
from latentrl.envs import make_recurrent_env
from latentrl.modules.q_networks import (
    PerEnvEpsilonGreedy,
    apex_epsilons,
    make_recurrent_q_network,
)
from latentrl.objectives.functional import sequence_priority
from latentrl.objectives.r2d2 import R2D2Loss

ENV_NAME = "pomdp:masked-cartpole"
TRAJ_KEY = ("collector", "traj_ids")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=("synthetic", "collector"), default="synthetic")
    p.add_argument("--steps", type=int, default=32000, help="env steps added to both replays")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--frames-per-batch", type=int, default=800, help="steps per collector batch (all envs)")
    p.add_argument("--min-episode", type=int, default=40, help="synthetic episode length, lower bound")
    p.add_argument("--max-episode", type=int, default=1000, help="synthetic episode length, upper bound")
    p.add_argument("--seq-len", type=int, default=80)
    p.add_argument("--overlap", type=int, default=40)
    p.add_argument("--burn-in", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64, help="sequences (slices) per sample")
    p.add_argument("--lstm-hidden", type=int, default=64, help="paper: 512")
    p.add_argument("--head-hidden", type=int, default=64, help="paper: 512")
    p.add_argument("--sample-repeats", type=int, default=50)
    p.add_argument("--updates", type=int, default=20, help="learner updates timed per side")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.frames_per_batch, args.num_envs = 1600, 160, 4
        args.min_episode, args.max_episode = 5, 60
        args.seq_len, args.overlap, args.burn_in, args.batch_size = 8, 4, 4, 8
        args.lstm_hidden = args.head_hidden = 16
        args.sample_repeats, args.updates, args.warmup = 3, 2, 1
    if args.frames_per_batch % args.num_envs or args.steps % args.frames_per_batch:
        p.error("--steps must be a multiple of --frames-per-batch, itself a multiple of --num-envs")
    if not 0 <= args.overlap < args.seq_len:
        p.error("--overlap must be in [0, --seq-len)")
    if not 1 <= args.min_episode <= args.max_episode:
        p.error("need 1 <= --min-episode <= --max-episode")
    return args


# ----------------------------------------------------------------------- data
def make_network(args):
    return make_recurrent_q_network((2,), 2, mlp_hidden=(64,), lstm_hidden=args.lstm_hidden, head_hidden=args.head_hidden)


def collect(args, net, total_frames: int) -> list[TensorDictBase]:
    """Real collector batches ``[num_envs, T]`` of the R2D2 policy (Ape-X epsilons) on masked CartPole."""
    policy = TensorDictSequential(net, TensorDictModule(PerEnvEpsilonGreedy(), ["action_value", "epsilon"], ["action"]))
    env = make_recurrent_env(ENV_NAME, args.num_envs, args.seed, True, apex_epsilons(args.num_envs), net.make_tensordict_primer())
    collector = Collector(env, policy, frames_per_batch=args.frames_per_batch, total_frames=total_frames)
    try:
        return [b.exclude(*net.recomputed_keys).clone() for b in collector]  # stored as examples/r2d2/train.py stores them
    finally:
        collector.shutdown()


def synthesize(args, template: TensorDictBase, gen: torch.Generator) -> list[TensorDictBase]:
    """Collector-shaped batches with the template's entries, random values and
    episodes of random length (each env's stream: back-to-back episodes; the
    last one still running at the end, as in a collector)."""
    E, S = args.num_envs, args.steps // args.num_envs
    one = template[:, :1]

    def rand(x: torch.Tensor) -> torch.Tensor:
        shape = (E, S, *x.shape[2:])
        if x.dtype.is_floating_point:
            return torch.randn(shape, generator=gen, dtype=x.dtype)
        return torch.zeros(shape, dtype=x.dtype)

    data = one.apply(rand, batch_size=[E, S])
    starts = torch.zeros(E, S, dtype=torch.bool)
    for e in range(E):
        t = 0
        while t < S:
            starts[e, t] = True
            t += int(torch.randint(args.min_episode, args.max_episode + 1, (1,), generator=gen))
    ends = torch.zeros_like(starts)
    ends[:, :-1] = starts[:, 1:]
    flag = lambda x: x.unsqueeze(-1)  # noqa: E731  [E, S] -> [E, S, 1]
    data.set("is_init", flag(starts))
    for key in ("done", "terminated"):
        data.set(("next", key), flag(ends))
    action = torch.nn.functional.one_hot(torch.randint(0, 2, (E, S), generator=gen), 2).to(data.get("action").dtype)
    data.set("action", action)
    prev = torch.zeros(E, S, 2)
    prev[:, 1:] = action[:, :-1].float()
    prev[starts] = 0
    data.set("prev_action", prev)
    data.set(("next", "prev_action"), action.float())
    data.set(("next", "reward"), torch.ones(E, S, 1))
    data.set("epsilon", apex_epsilons(E)[:, None].expand(E, S).clone())
    episode = starts.long().cumsum(-1) - 1 + (torch.arange(E) * S)[:, None]  # unique per (env, episode)
    data.set(TRAJ_KEY, episode)
    T = args.frames_per_batch // E
    return [data[:, i : i + T].clone() for i in range(0, S, T)]


def episode_lengths(batches: list[TensorDictBase]) -> torch.Tensor:
    ids = torch.cat([b.get(TRAJ_KEY) for b in batches], -1).reshape(-1)
    return torch.unique(ids, return_counts=True)[1]


def fill(args, batches: list[TensorDictBase]):
    """Both replays holding every step of ``batches`` (nothing evicted)."""
    L = args.burn_in + args.seq_len
    probe = SequenceReplayBuffer(1, seq_len=args.seq_len, overlap=args.overlap, burn_in=args.burn_in)
    n_seq = sum(probe.cutter(b).shape[0] for b in batches)  # exact capacity: the sequences these steps make
    ours = SequenceReplayBuffer(
        n_seq, seq_len=args.seq_len, overlap=args.overlap, burn_in=args.burn_in, batch_size=args.batch_size,
        alpha=0.9, beta=0.6,
    )
    t = time.perf_counter()
    for b in batches:
        ours.extend(b)
    ours_fill_s = time.perf_counter() - t
    # single steps, each env's stream time-contiguous (an episode = one run of
    # equal traj_ids, as the slice sampler expects)
    steps = torch.cat(batches, -1).reshape(-1)
    theirs = TensorDictReplayBuffer(
        storage=LazyTensorStorage(steps.shape[0]),
        sampler=PrioritizedSliceSampler(
            steps.shape[0], alpha=0.9, beta=0.6, slice_len=L, traj_key=TRAJ_KEY, strict_length=False
        ),
        batch_size=args.batch_size * L,
    )
    t = time.perf_counter()
    theirs.extend(steps)
    theirs_fill_s = time.perf_counter() - t
    assert len(ours) == n_seq and len(theirs) == steps.shape[0]
    return ours, theirs, {"latentrl_fill_s": round(ours_fill_s, 3), "torchrl_fill_s": round(theirs_fill_s, 3)}


# ------------------------------------------------------------------ measuring
def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_sampling(args, ours, theirs, gen) -> dict:
    times = {k: [] for k in ("ours_sample", "theirs_sample", "ours_prio", "theirs_prio")}
    ours_steps, theirs_steps, theirs_slices = [], [], []
    for r in range(args.warmup + args.sample_repeats):
        t0 = time.perf_counter()
        s = ours.sample()
        t1 = time.perf_counter()
        mask = s.get("mask")[:, args.burn_in :]
        td = torch.rand(mask.shape, generator=gen)
        t2 = time.perf_counter()
        ours.update_priorities(s.get("index"), sequence_priority(td, mask))
        t3 = time.perf_counter()
        f = theirs.sample()
        t4 = time.perf_counter()
        td = torch.rand(f.shape, generator=gen)
        t5 = time.perf_counter()
        theirs.update_priority(f.get("index"), td)
        t6 = time.perf_counter()
        if r < args.warmup:
            continue
        times["ours_sample"].append(t1 - t0)
        times["ours_prio"].append(t3 - t2)
        times["theirs_sample"].append(t4 - t3)
        times["theirs_prio"].append(t6 - t5)
        ours_steps.append(int(s.get("valid").sum()))
        theirs_steps.append(f.shape[0])
        theirs_slices.append(int(f.get(("next", "truncated")).sum()))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "latentrl": {
            "sample_ms": round(med["ours_sample"] * 1e3, 3),
            "sequences_per_s": round(_rate(args.batch_size, med["ours_sample"]), 1),
            "real_steps_per_sample": round(statistics.mean(ours_steps), 1),
            "positions_per_sample": args.batch_size * (args.burn_in + args.seq_len),
            "priority_update_ms": round(med["ours_prio"] * 1e3, 3),
        },
        "torchrl": {
            "sample_ms": round(med["theirs_sample"] * 1e3, 3),
            "sequences_per_s": round(_rate(statistics.mean(theirs_slices), med["theirs_sample"]), 1),
            "real_steps_per_sample": round(statistics.mean(theirs_steps), 1),
            "slices_per_sample": round(statistics.mean(theirs_slices), 1),
            "priority_update_ms": round(med["theirs_prio"] * 1e3, 3),
        },
    }
    out["ratio_ours_over_torchrl"] = {
        "sequences_per_s": round(out["latentrl"]["sequences_per_s"] / out["torchrl"]["sequences_per_s"], 3),
        "real_steps_per_s": round(
            _rate(statistics.mean(ours_steps), med["ours_sample"]) / _rate(statistics.mean(theirs_steps), med["theirs_sample"]), 3
        ),
        "priority_updates_per_s": round(med["theirs_prio"] / med["ours_prio"], 3),
    }
    return out


def bench_learner(args, ours, theirs, net) -> dict:
    L = args.burn_in + args.seq_len
    gamma, lr, eps = 0.997, 1e-4, 1e-3  # R2D2, Table 2
    ours_loss = R2D2Loss(copy.deepcopy(net), burn_in=args.burn_in, n_steps=5, gamma=gamma, rescale_eps=1e-3, priority_eta=0.9)
    ours_opt = torch.optim.Adam(ours_loss.parameters(), lr=lr, eps=eps)
    qnet = TensorDictSequential(copy.deepcopy(net), QValueModule(action_space="one-hot"))
    dqn = DQNLoss(qnet, action_space="one-hot", delay_value=True, double_dqn=True)
    dqn.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
    dqn_opt = torch.optim.Adam(dqn.parameters(), lr=lr, eps=eps)

    def ours_update():
        t0 = time.perf_counter()
        s = ours.sample()
        t1 = time.perf_counter()
        out = ours_loss(s)
        ours_opt.zero_grad()
        out["loss"].backward()
        ours_opt.step()
        t2 = time.perf_counter()
        ours.update_priorities(s.get("index"), out["priority"])
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    def theirs_update():
        t0 = time.perf_counter()
        flat = theirs.sample()
        ts = time.perf_counter()
        # split at the slice ends the sampler marks (("next", "done") |= truncated);
        # a missing trajectory key makes split_trajectories use the done flags, so
        # two adjacent slices of one episode are not merged
        s = split_trajectories(flat, trajectory_key=("collector", "slice_id"), done_key="done")
        t1 = time.perf_counter()
        with set_recurrent_mode(True):
            loss = dqn(s)["loss"]
        dqn_opt.zero_grad()
        loss.backward()
        dqn_opt.step()
        t2 = time.perf_counter()
        mask = s.get(("collector", "mask"))
        theirs.update_priority(s.get("index")[mask], s.get("td_error").reshape(mask.shape)[mask])
        t3 = time.perf_counter()
        return ts - t0, t1 - ts, t2 - t1, t3 - t2

    parts = {"ours": [], "theirs": []}
    for r in range(args.warmup + args.updates):
        a, b = ours_update(), theirs_update()
        if r >= args.warmup:
            parts["ours"].append(a)
            parts["theirs"].append(b)

    def summary(rows, names) -> dict:
        total = [sum(r) for r in rows]
        sums = [sum(col) for col in zip(*rows)]
        whole = sum(sums)
        return {
            "updates_per_s": round(_rate(1, statistics.median(total)), 3),
            "ms_per_update": round(statistics.median(total) * 1e3, 2),
            "share": {name: round(v / whole, 3) for name, v in zip(names, sums)},
        }

    out = {
        "latentrl": {
            **summary(parts["ours"], ("sample", "loss_backward_adam", "priority_update")),
            "loss": "R2D2Loss (burn-in, rescaled 5-step double Q)",
            "lstm_unrolls": f"online and target over L={L} steps each (burn-in {args.burn_in} without grad)",
        },
        "torchrl": {
            **summary(parts["theirs"], ("sample", "split_trajectories", "loss_backward_adam", "priority_update")),
            "loss": "split_trajectories + DQNLoss(double_dqn=True, TD0), no burn-in",
            "lstm_unrolls": f"online on s_t, online and target on s_t+1, over the slice (<= {L} steps)",
        },
    }
    out["ratio_ours_over_torchrl"] = {
        "updates_per_s": round(out["latentrl"]["updates_per_s"] / out["torchrl"]["updates_per_s"], 3)
    }
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # storage-init INFO lines on stdout
    warnings.filterwarnings("ignore", category=UserWarning, module="torchrl")  # target-updater notices
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    net = make_network(args)
    t = time.perf_counter()
    if args.data == "collector":
        batches = collect(args, net, args.steps)
    else:
        template = collect(args, net, args.num_envs * 2)[0]
        batches = synthesize(args, template, gen)
    data_s = time.perf_counter() - t
    ours, theirs, fill_times = fill(args, batches)
    lengths = episode_lengths(batches)
    L = args.burn_in + args.seq_len
    result = {
        "benchmark": "r2d2_replay",
        "config": {
            k: getattr(args, k)
            for k in ("data", "steps", "num_envs", "seq_len", "overlap", "burn_in", "batch_size", "lstm_hidden", "threads", "quick")
        },
        "storage": {
            "env": ENV_NAME,
            "episodes": int(lengths.numel()),
            "episode_length_mean": round(float(lengths.float().mean()), 1),
            "latentrl_sequences": len(ours),
            "latentrl_stored_rows": len(ours) * L,
            "torchrl_stored_steps": len(theirs),
            "data_s": round(data_s, 2),
            **fill_times,
        },
        "sampling": bench_sampling(args, ours, theirs, gen),
        "learner": bench_learner(args, ours, theirs, net),
        "notes": (
            "ratios are ours/torchrl of rates (>1: ours faster). torchrl sequences_per_s counts its slices "
            "(shorter than L where an episode ends); real_steps counts non-padding steps. Learner: full "
            "recipes (see the module docstring), not equal arithmetic."
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
