"""How much slower is a traced launch than a plain simulator launch? ``python -m nbkit.perf.bench_trace``

Both are simulator runs on the CPU: the ratio measures the tracer's bookkeeping, never GPU speed. The goal
(issue 10) is under 3x. Each kernel runs plain and traced alternately ``--repeat`` times in one process; the
best time of each is compared, so a busy machine hurts both sides alike.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from nbkit.core.mode import MODE


def _cases() -> list[tuple[str, object, tuple, tuple, Callable[[], tuple]]]:
    """(label, kernel, grid, block, fresh arguments) for a few course kernels at small simulator sizes."""
    from nbkit.core.launch import block_2d, blocks_for, grid_2d
    from nbkit.kernels.conv import BLOCK, conv2d_forward_kernel
    from nbkit.kernels.matmul import TILE, matmul_naive_kernel, matmul_tiled_kernel
    from nbkit.kernels.reduce import TREE_MAX, sum_tree_kernel
    from nbkit.kernels.vector import vector_add

    rng = np.random.default_rng(0)
    f32 = np.float32
    n = 1000
    a, b = rng.standard_normal(n).astype(f32), rng.standard_normal(n).astype(f32)
    M, K, N = 33, 32, 31
    A, B = rng.standard_normal((M, K)).astype(f32), rng.standard_normal((K, N)).astype(f32)
    x4 = rng.standard_normal((2, 3, 14, 14)).astype(f32)
    w4 = rng.standard_normal((4, 3, 5, 5)).astype(f32)
    bias = rng.standard_normal(4).astype(f32)
    OH = OW = 10
    naive_block = block_2d(M, N)
    return [
        (f"vector_add n={n}", vector_add, blocks_for(n, 128), 128, lambda: (a, b, np.zeros(n, f32))),
        (f"matmul naive {M}x{K}x{N}", matmul_naive_kernel, grid_2d(M, N, naive_block), naive_block,
         lambda: (A, B, np.zeros((M, N), f32), 0, 0)),
        (f"matmul tiled {M}x{K}x{N}", matmul_tiled_kernel, grid_2d(M, N, (TILE, TILE)), (TILE, TILE),
         lambda: (A, B, np.zeros((M, N), f32), 0, 0)),
        (f"sum_tree n={n}", sum_tree_kernel, blocks_for(n, TREE_MAX), TREE_MAX,
         lambda: (a, np.zeros(blocks_for(n, TREE_MAX), f32))),
        ("conv2d forward 2x3x14x14 * 4x3x5x5", conv2d_forward_kernel,
         (blocks_for(OW, BLOCK[0]), blocks_for(OH, BLOCK[1]), 2 * 4), BLOCK,
         lambda: (x4, w4, bias, np.zeros((2, 4, OH, OW), f32))),
    ]


def run(repeat: int = 3) -> list[dict]:
    """Time every case plain and traced; return one row per kernel (seconds, ratio, records)."""
    from nbkit.core.launch import launch
    from nbkit.core.simulator import simulated_kernel
    from nbkit.tracer import trace

    rows = []
    for label, kernel, grid, block, make_args in _cases():
        plain, traced, records = [], [], 0
        for _ in range(repeat):
            args = make_args()
            t0 = time.perf_counter()
            if MODE.slow_launches:
                launch(kernel, grid, block, *args)
            else:  # GPU mode: the plain simulator run is the same Python function on the simulator's launcher
                simulated_kernel(kernel.py_func)[grid, block](*args)
            plain.append(time.perf_counter() - t0)
            plain_out = [np.array(x, copy=True) for x in args if isinstance(x, np.ndarray)]
            args = make_args()
            t0 = time.perf_counter()
            tr = trace(kernel, grid, block, *args)
            traced.append(time.perf_counter() - t0)
            records = len(tr.records)
            for p, q in zip(plain_out, [x for x in args if isinstance(x, np.ndarray)]):
                if not np.allclose(p, q, rtol=1e-5, atol=1e-5):
                    raise AssertionError(f"{label}: the traced launch gave different results from the plain one")
        threads = int(np.prod(grid)) * int(np.prod(block))
        rows.append({"kernel": label, "threads": threads, "records": records, "plain_s": min(plain),
                     "traced_s": min(traced), "ratio": min(traced) / min(plain)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side per kernel (best is kept)")
    args = parser.parse_args(argv)
    rows = run(args.repeat)
    print(f"tracer overhead, {MODE.name} mode (both sides run on the CUDA simulator; CPU time, not GPU speed)")
    print(f"{'kernel':<38} {'threads':>7} {'records':>8} {'plain s':>8} {'traced s':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['kernel']:<38} {r['threads']:>7} {r['records']:>8} {r['plain_s']:>8.3f} {r['traced_s']:>9.3f} "
              f"{r['ratio']:>5.2f}x")
    worst = max(r["ratio"] for r in rows)
    print(f"worst ratio {worst:.2f}x (goal < 3x): {'met' if worst < 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
