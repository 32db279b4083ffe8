"""GPU performance measurements. They run only on a real GPU: simulator timings measure nothing useful."""

from __future__ import annotations

import numpy as np

from nbkit.core.mode import MODE


def _require_gpu(what: str) -> None:
    if MODE.is_simulator or not MODE.probe.usable:
        raise RuntimeError(f"{what} needs a real GPU; this process runs in {MODE.name} mode "
                           f"({MODE.reason}). Simulator timings say nothing about GPU speed.")


def matmul_gflops(sizes=(256, 512, 1024, 2048), repeat: int = 10) -> list[dict]:
    """GFLOP/s of the naive and tiled kernels and of ``torch.matmul`` (TF32 off) on square float32 matrices.

    One FLOP count per size, ``2 n³``, divided by the median time of ``repeat`` calls after a warm-up,
    with device-resident inputs and a preallocated output (no copies, no allocation timed).
    """
    _require_gpu("matmul_gflops")
    from numba import cuda

    from nbkit.core.launch import blocks_for, launch
    from nbkit.core.timing import time_it
    from nbkit.kernels.matmul import KERNELS, TILE

    has_torch = _torch_on_gpu()
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
            row["torch"] = _torch_gflops(A, B, repeat)
        rows.append(row)
    return rows


def _torch_on_gpu() -> bool:
    """Whether torch itself can use this GPU (its CUDA paired with the driver), not only numba."""
    try:
        from nbkit.nn.torchdev import torch_device

        return torch_device()[0] == "cuda"
    except ImportError:
        return False


def _torch_gflops(A: np.ndarray, B: np.ndarray, repeat: int, trans_a: bool = False, trans_b: bool = False) -> float:
    """GFLOP/s of ``torch.matmul`` (cuBLAS, TF32 off) on op(A) op(B): ``repeat`` calls between one pair of events."""
    from nbkit.nn.torchdev import strict_float32

    with strict_float32():  # plain float32 FMA, like our kernels
        return _torch_gflops_float32(A, B, repeat, trans_a, trans_b)


def _torch_gflops_float32(A: np.ndarray, B: np.ndarray, repeat: int, trans_a: bool, trans_b: bool) -> float:
    import torch

    tA, tB = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
    opA, opB = (tA.T if trans_a else tA), (tB.T if trans_b else tB)  # transposed views, as cuBLAS takes them
    torch.matmul(opA, opB)  # warm-up (cuBLAS picks its kernel)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        torch.matmul(opA, opB)
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / repeat
    n = A.shape[0]
    return 2 * n**3 / seconds / 1e9


# The transposes the dense layer runs (nbkit.kernels.dense): forward A Wᵀ, backward dZ W and dZᵀ A.
DENSE_VARIANTS: dict[str, tuple[int, int]] = {"A Wᵀ (forward)": (0, 1), "dZ W (input gradient)": (0, 0),
                                              "dZᵀ A (weight gradient)": (1, 0)}


def matmul_gflops_transposed(sizes=(256, 512, 1024, 2048), repeat: int = 10, variants: dict | None = None,
                             allow_simulator: bool = False) -> list[dict]:
    """GFLOP/s of the course's kernels (naive, tiled, coalesced) and of ``torch.matmul`` (TF32 off) for each
    transpose the dense layer uses (square float32).

    One row per size and variant: ``{"n", "variant", "trans_a", "trans_b", "naive", "tiled", "coalesced",
    "torch" (GPU only), "clock"}``,
    rates ``2 n³ / median time``, with the per-call time of ``repeat`` back-to-back launches between
    one pair of CUDA events (:func:`nbkit.time_it`). It needs a GPU. ``allow_simulator=True`` runs the
    same code in the simulator only to test its plumbing on tiny sizes: every result is checked
    against NumPy, and ``clock`` then says SIMULATOR (the rates measure nothing about a GPU).
    """
    if not allow_simulator:
        _require_gpu("matmul_gflops_transposed")
    from numba import cuda

    from nbkit.core.launch import blocks_for, launch
    from nbkit.core.timing import time_it
    from nbkit.kernels.coalescing import matmul_tiled_coalesced_kernel
    from nbkit.kernels.matmul import KERNELS, TILE

    kernels = {**KERNELS, "coalesced": matmul_tiled_coalesced_kernel}  # notebook 09's fix for transposed loads
    has_torch = not MODE.is_simulator and _torch_on_gpu()

    variants = DENSE_VARIANTS if variants is None else variants
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        A, B = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        dA, dB, dC = cuda.to_device(A), cuda.to_device(B), cuda.device_array((n, n), np.float32)
        grid = (blocks_for(n, TILE), blocks_for(n, TILE))
        for label, (ta, tb) in variants.items():
            expected = (A.T if ta else A) @ (B.T if tb else B)
            row = {"n": n, "variant": label, "trans_a": ta, "trans_b": tb}
            for method, kern in kernels.items():
                t = time_it(lambda k=kern: launch(k, grid, (TILE, TILE), dA, dB, dC, ta, tb), repeat=repeat)
                got = dC.copy_to_host()
                if not np.allclose(got, expected, rtol=1e-4, atol=1e-3 * n):
                    bad = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
                    raise AssertionError(f"{method} matmul ({label}) is wrong at {bad}: {got[bad]} vs {expected[bad]}")
                row[method] = 2 * n**3 / t.median / 1e9
                row["clock"] = t.method
            if has_torch:
                row["torch"] = _torch_gflops(A, B, repeat, bool(ta), bool(tb))
            rows.append(row)
    if MODE.is_simulator:
        for row in rows:
            row["clock"] = "SIMULATOR wall-clock plumbing test: these rates say nothing about GPU speed"
    return rows
