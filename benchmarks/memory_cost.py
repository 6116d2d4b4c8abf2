"""MERLIN's memory: the cost of one read (K heads) and one write against the number of rows N_mem.

Times ``memory_read`` and ``memory_write`` (forward and backward through a
window of steps) at batch ``B`` and ``|z|`` for several ``N_mem``, against the
baseline measured in the same process: one step of a 2-layer LSTM of width
``--hidden`` on the same batch (MERLIN's MBP core). Prints JSON with ms per
step and the ratio to the baseline.

    OMP_NUM_THREADS=1 python benchmarks/memory_cost.py --rows 16 64 256 1024
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from latentrl.modules.memory import memory_read, memory_write


def _time(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--z-dim", type=int, default=32)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--window", type=int, default=20, help="steps per timed call (with backward)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    B, Z, K, T = args.batch, args.z_dim, args.heads, args.window
    lstm = torch.nn.LSTM(args.hidden, args.hidden, num_layers=2)
    x = torch.randn(1, B, args.hidden)

    def baseline():
        state = None
        out = x
        for _ in range(T):
            out, state = lstm(out, state)
        out.sum().backward()

    base_ms = _time(baseline, args.repeats) / T
    rows = []
    for n in args.rows:
        zs = torch.randn(T, B, Z, requires_grad=True)
        keys = torch.randn(T, B, K, 2 * Z, requires_grad=True)

        def window():
            state = {"memory": torch.zeros(B, n, 2 * Z), "usage": torch.zeros(B, n), "retro": torch.zeros(B, n),
                     "write": torch.zeros(B, n), "filled": torch.zeros(B, 1, dtype=torch.long)}
            total = 0.0
            for t in range(T):
                reads, weights = memory_read(state["memory"], keys[t], torch.ones(B, K))
                state["usage"] = state["usage"] + weights.detach().sum(-2)
                state = memory_write(state, zs[t], 0.9)
                total = total + reads.sum()
            total.backward()

        ms = _time(window, args.repeats) / T
        rows.append({"rows": n, "ms_per_step": round(ms, 4), "ratio_to_lstm_step": round(ms / base_ms, 3)})
    print(json.dumps({"benchmark": "memory_cost", "threads": torch.get_num_threads(), "batch": B, "z_dim": Z,
                      "heads": K, "baseline": f"2-layer LSTM {args.hidden}, one step, forward + backward",
                      "baseline_ms_per_step": round(base_ms, 4), "memory": rows}, indent=2))


if __name__ == "__main__":
    main()
