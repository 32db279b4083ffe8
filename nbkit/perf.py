"""GPU performance measurements. They run only on a real GPU: simulator timings measure nothing useful."""

from __future__ import annotations

import numpy as np


def _require_gpu(what: str) -> None:
    import nbkit

    if nbkit.MODE.is_simulator or not nbkit.MODE.probe.usable:
        raise RuntimeError(f"{what} needs a real GPU; this process runs in {nbkit.MODE.name} mode "
                           f"({nbkit.MODE.reason}). Simulator timings say nothing about GPU speed.")


def matmul_gflops(sizes=(256, 512, 1024, 2048), repeat: int = 10) -> list[dict]:
    """GFLOP/s of the naive and tiled kernels and of ``torch.matmul`` (TF32 off) on square float32 matrices.

    One FLOP count per size, ``2 n³``, divided by the median time of ``repeat`` calls after a warm-up,
    with device-resident inputs and a preallocated output (no copies, no allocation timed).
    """
    _require_gpu("matmul_gflops")
    from numba import cuda

    from .launch import blocks_for, launch
    from .matmul import KERNELS, TILE
    from .timing import time_it

    try:
        import torch

        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        A, B = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        dA, dB, dC = cuda.to_device(A), cuda.to_device(B), cuda.device_array((n, n), np.float32)
        grid = (blocks_for(n, TILE), blocks_for(n, TILE))
        row = {"n": n}
        for method, kern in KERNELS.items():
            t = time_it(lambda k=kern: launch(k, grid, (TILE, TILE), dA, dB, dC, 0, 0), repeat=repeat)
            row[method] = 2 * n**3 / t.median / 1e9
        if has_torch:
            torch.backends.cuda.matmul.allow_tf32 = False  # plain float32 FMA, like our kernels
            tA, tB = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
            torch.matmul(tA, tB)
            torch.cuda.synchronize()
            times = []
            for _ in range(repeat):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.matmul(tA, tB)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            row["torch"] = 2 * n**3 / float(np.median(times)) / 1e9
        rows.append(row)
    return rows
