"""The CPU executor against the CUDA simulator on the same launches: ``python -m nbkit.perf.bench_executor``.

Both sides run the same kernel on the same inputs; the script checks that the outputs agree, then prints the
time per launch of each and their ratio, all measured in this run (the executor's first-call compilation is
printed separately, not folded into the ratio). Run in simulator mode (``NBKIT_MODE=sim``).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from nbkit.core.executor import run_on_cpu
from nbkit.core.mode import MODE
from nbkit.kernels import conv, matmul, reduce, transpose


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _cases(rng: np.random.Generator) -> list[tuple[str, object, tuple, tuple, Callable[[], list]]]:
    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    N, C, H, W, F, K = 2, 3, 32, 32, 8, 5
    OH, OW = H - K + 1, W - K + 1
    x, w, b = f32(N, C, H, W), f32(F, C, K, K), f32(F)
    M = 64
    A, B = f32(M, M), f32(M, M)
    v = f32(4096)
    T = f32(96, 96)
    return [
        (f"conv2d_forward x{(N, C, H, W)} w{(F, C, K, K)}", conv.conv2d_forward_kernel,
         (_cdiv(OW, 8), _cdiv(OH, 8), N * F), conv.BLOCK,
         lambda: [x, w, b, np.zeros((N, F, OH, OW), np.float32)]),
        (f"matmul_naive {M}x{M}x{M}", matmul.matmul_naive_kernel, (M // 16, M // 16), (16, 16),
         lambda: [A, B, np.zeros((M, M), np.float32), 0, 0]),
        (f"matmul_tiled {M}x{M}x{M} (2 barriers per tile)", matmul.matmul_tiled_kernel, (M // 16, M // 16),
         (16, 16), lambda: [A, B, np.zeros((M, M), np.float32), 0, 0]),
        ("sum_tree 4096 (barrier in a while loop)", reduce.sum_tree_kernel, 32, 128,
         lambda: [v, np.zeros(32, np.float32)]),
        ("transpose_shared 96x96 (1 barrier)", transpose.transpose_shared_kernel, *transpose.launch_config(96, 96),
         lambda: [T, np.zeros((96, 96), np.float32)]),
    ]


def _timed(fn: Callable[[], None], min_seconds: float) -> float:
    """Seconds per call: the best of repeated runs (at least one), for at least ``min_seconds`` in all."""
    best, spent = float("inf"), 0.0
    while spent < min_seconds or best == float("inf"):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return best


def main() -> None:
    if MODE.name != "sim":
        raise SystemExit("run with NBKIT_MODE=sim: this compares the executor with the CUDA simulator")
    rng = np.random.default_rng(0)
    print(f"CPU executor vs CUDA simulator, same launches, measured now ({os.cpu_count()} CPU cores visible)")
    print(f"{'kernel':52s} {'threads':>8s} {'simulator':>11s} {'executor':>11s} {'ratio':>9s} {'compile':>8s}  same")
    for name, kernel, grid, block, make in _cases(rng):
        g, bl = (grid,) if isinstance(grid, int) else grid, (block,) if isinstance(block, int) else block
        threads = int(np.prod(g)) * int(np.prod(bl))
        sim_args, cpu_args = make(), make()
        start = time.perf_counter()
        run_on_cpu(kernel, grid, block, *cpu_args)  # the first call compiles
        compile_s = time.perf_counter() - start
        sim_s = _timed(lambda: kernel[grid, block](*sim_args), 0.0)
        cpu_s = _timed(lambda: run_on_cpu(kernel, grid, block, *cpu_args), 0.5)
        same = all(np.array_equal(s, c) for s, c in zip(sim_args, cpu_args) if isinstance(s, np.ndarray))
        print(f"{name:52s} {threads:8d} {sim_s:10.3f}s {cpu_s * 1e3:9.3f}ms {sim_s / cpu_s:8.0f}x "
              f"{compile_s:7.2f}s  {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
