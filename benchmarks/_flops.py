"""FLOP counting and the machine's float32 GEMM rate, for the benchmarks' FLOP-efficiency figures."""
from __future__ import annotations

import time

import torch


def count_flops(fn) -> int:
    """FLOPs of the ops ``torch.utils.flop_counter`` knows (matmuls, convolutions), forward and backward.

    Its ``FlopCounterMode`` tracks modules and trips over TensorDict parameters,
    so this dispatch mode reads the same registry without module tracking.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            packet = func._overloadpacket
            if packet in flop_registry:
                Counter.total += flop_registry[packet](*args, **kwargs,
                                                       out_val=out)
            return out

    with Counter():
        fn()
    return Counter.total


def gemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9
