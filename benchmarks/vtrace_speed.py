"""V-trace speed: ours against TorchRL's and rlax's (jitted), measured in one process.

Times ``torchrl.objectives.value.functional.vtrace_advantage_estimate`` (a
Python loop over T), ``latentrl.objectives.functional.vtrace`` (on CPU without
autograd a compiled loop per row; with autograd or on CUDA a Hillis-Steele
scan, timed too as ``latentrl_scan``) and, when the benchmark extra is
installed (``pip install -e ".[bench]"``), ``rlax.vtrace_td_error_and_advantage``
under ``jax.jit(jax.vmap(...))`` with XLA on one thread. Same random
``[B, T, 1]`` batch with episode ends inside it (all terminations for the
rlax comparison: rlax has one discount per step). Prints JSON: the median of
``--repeats`` calls (ms), the ratios ours/theirs, and the largest absolute
differences of the outputs.

    python benchmarks/vtrace_speed.py [--batch 256] [--time 80] [--repeats 200] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torchrl.objectives.value.functional import vtrace_advantage_estimate

from latentrl.objectives.functional import vtrace


def _rlax(threads: int):
    """rlax's V-trace, jitted and vmapped over the batch; ``None`` without the benchmark extra."""
    os.environ.setdefault(
        "XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
    )
    try:
        import jax
        import rlax
    except ImportError:
        return None
    jax.config.update("jax_platforms", "cpu")
    fn = jax.jit(jax.vmap(lambda v, nv, r, d, rho: rlax.vtrace_td_error_and_advantage(v, nv, r, d, rho)))
    return jax, fn


def _inputs(batch: int, t: int, device: str):
    g = torch.Generator().manual_seed(0)
    shape = (batch, t, 1)
    x = [torch.randn(shape, generator=g) for _ in range(5)]
    done = torch.rand(shape, generator=g) < 0.02
    terminated = done & (torch.rand(shape, generator=g) < 0.5)
    return [y.to(device) for y in (*x, done, terminated)]


def _median_ms(fn, repeats: int, device: str) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(batch: int, t: int, repeats: int, device: str, gamma: float = 0.99, rlax_fn=None) -> dict:
    log_pi, log_mu, value, next_value, reward, done, terminated = _inputs(batch, t, device)
    kw = dict(rho_thresh=1.0, c_thresh=1.0)

    def theirs():
        return vtrace_advantage_estimate(gamma, log_pi, log_mu, value, next_value, reward, done, terminated, **kw)

    def ours():
        return vtrace((log_pi, log_mu), value, next_value, reward, done, terminated, gamma=gamma)

    # the scan: what runs with autograd (inputs that need a gradient)
    grad_value = value.clone().requires_grad_()

    def ours_scan():
        return vtrace((log_pi, log_mu), grad_value, next_value, reward, done, terminated, gamma=gamma)

    with torch.no_grad():
        adv_theirs, vs_theirs = theirs()
        vs_ours, adv_ours, _ = ours()
        ms_theirs = _median_ms(theirs, repeats, device)
        ms_ours = _median_ms(ours, repeats, device)
    ms_scan = _median_ms(ours_scan, repeats, device)
    result = {
        "torchrl_ms": round(ms_theirs, 4),
        "latentrl_ms": round(ms_ours, 4),
        "latentrl_scan_ms": round(ms_scan, 4),
        "ratio_ours_over_torchrl": round(ms_ours / ms_theirs, 3),
        "max_abs_diff": {
            "value_target": float((vs_ours - vs_theirs).abs().max()),
            "advantage": float((adv_ours - adv_theirs).abs().max()),
        },
    }
    if rlax_fn is not None and device == "cpu":
        jax, fn = rlax_fn
        # rlax has one discount per step: compare on terminations only
        args = [x.squeeze(-1).numpy() for x in (value, next_value, reward)]
        discount = (gamma * (~terminated).float()).squeeze(-1).numpy()
        rho = (log_pi - log_mu).exp().squeeze(-1).numpy()
        jargs = [jax.numpy.asarray(x) for x in (*args, discount, rho)]

        def rlax_call():
            return jax.block_until_ready(fn(*jargs))

        def ours_terminations():
            return vtrace((log_pi, log_mu), value, next_value, reward, terminated, terminated, gamma=gamma)

        with torch.no_grad():
            ref = rlax_call()
            mine = ours_terminations()
            ms_rlax = _median_ms(rlax_call, repeats, device)
            ms_mine = _median_ms(ours_terminations, repeats, device)
        result["rlax_jit_ms"] = round(ms_rlax, 4)
        result["latentrl_terminations_ms"] = round(ms_mine, 4)
        result["ratio_ours_over_rlax"] = round(ms_mine / ms_rlax, 3)
        result["max_abs_diff_rlax"] = {
            "value_target": float(abs((mine.vs.squeeze(-1).numpy()) - (ref.errors + args[0])).max()),
            "advantage": float(abs(mine.pg_advantage.squeeze(-1).numpy() - ref.pg_advantage).max()),
            "q_estimate": float(abs(mine.q_estimate.squeeze(-1).numpy() - ref.q_estimate).max()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--time", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rlax_fn = _rlax(args.threads)
    if rlax_fn is None:
        print("rlax/jax not installed (pip install -e '.[bench]'): no rlax column", file=sys.stderr)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        json.dumps(
            {
                "benchmark": "vtrace_speed",
                "batch": args.batch,
                "time": args.time,
                "repeats": args.repeats,
                "cpu_threads": args.threads,
                "dtype": "float32",
                "results": {
                    (torch.cuda.get_device_name() if d == "cuda" else "cpu"): measure(
                        args.batch, args.time, args.repeats, d, rlax_fn=rlax_fn
                    )
                    for d in devices
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
