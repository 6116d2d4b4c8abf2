"""V-trace speed: TorchRL's loop over time vs our parallel scan.

Times ``torchrl.objectives.value.functional.vtrace_advantage_estimate`` (a
Python loop over T) and ``latentrl.objectives.functional.vtrace`` (a
Hillis-Steele scan, ceil(log2 T) sweeps) on the same random ``[B, T, 1]``
batch with episode ends inside it, on CPU and, if there is one, CUDA. Prints
JSON: the median of ``--repeats`` calls (ms), the ratio ours/theirs measured
in the same process, and the largest absolute difference of the outputs.

    python benchmarks/vtrace_speed.py [--batch 256] [--time 80] [--repeats 50] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torchrl.objectives.value.functional import vtrace_advantage_estimate

from latentrl.objectives.functional import vtrace


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


def measure(batch: int, t: int, repeats: int, device: str, gamma: float = 0.99) -> dict:
    log_pi, log_mu, value, next_value, reward, done, terminated = _inputs(batch, t, device)
    kw = dict(rho_thresh=1.0, c_thresh=1.0)

    def theirs():
        return vtrace_advantage_estimate(gamma, log_pi, log_mu, value, next_value, reward, done, terminated, **kw)

    def ours():
        return vtrace((log_pi, log_mu), value, next_value, reward, done, terminated, gamma=gamma)

    with torch.no_grad():
        adv_theirs, vs_theirs = theirs()
        vs_ours, adv_ours = ours()
        ms_theirs = _median_ms(theirs, repeats, device)
        ms_ours = _median_ms(ours, repeats, device)
    return {
        "torchrl_ms": round(ms_theirs, 4),
        "latentrl_ms": round(ms_ours, 4),
        "ratio_ours_over_torchrl": round(ms_ours / ms_theirs, 3),
        "max_abs_diff": {
            "value_target": float((vs_ours - vs_theirs).abs().max()),
            "advantage": float((adv_ours - adv_theirs).abs().max()),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--time", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
                        args.batch, args.time, args.repeats, d
                    )
                    for d in devices
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
