"""Helpers shared by the benchmarks: the machine's GEMM rates, measured in the same run."""

from __future__ import annotations

import time
from typing import Callable


def best_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Minimum wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs (noisy machines)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_gflops(dtype: str = "fp32", n: int = 4096, repeats: int = 3, device: str = "cpu") -> float:
    """Sustained GFLOP/s of an n x n x n matmul in ``dtype`` ("fp32" or "bf16") on ``device``
    (on CUDA, fp32 as fstore runs it: TF32 off; timed to the end of the kernels)."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(n, n, dtype=dt, device=device)
    b = torch.randn(n, n, dtype=dt, device=device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False

        def product() -> None:
            for _ in range(10):
                torch.mm(a, b)
            torch.cuda.synchronize()

        return 10 * 2 * n**3 / best_seconds(product, repeats=repeats) / 1e9
    seconds = best_seconds(lambda: torch.mm(a, b), repeats=repeats)
    return 2 * n**3 / seconds / 1e9
