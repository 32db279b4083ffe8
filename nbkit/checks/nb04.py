"""Checks for notebook 04 (the dense layer)."""

from __future__ import annotations

import numpy as np

from ..launch import blocks_for
from ._core import compare, exercise, passed, run_kernel, unwritten_cause


@exercise("04.1", "write the kernel matmul_at_b(A, B, C)")
def check_transposed_matmul(kernel, M: int = 19, K: int = 21, N: int = 40, tile: int = 16) -> None:
    """Exercise 04.1: ``kernel(A, B, C)`` computes ``C = Aᵀ B`` for A (K, M), B (K, N), C (M, N).

    Launched like the course's matmul kernels: blocks of (16, 16) threads, grid (ceil(N/16), ceil(M/16)),
    thread x along the columns of C and thread y along its rows: ``col, row = cuda.grid(2)``. M and N
    need different numbers of tiles (2 and 3), so a kernel that swaps row and column misses elements.
    """
    r = np.random.default_rng(41)
    A = r.standard_normal((K, M)).astype(np.float32)
    B = r.standard_normal((K, N)).astype(np.float32)
    run = run_kernel(kernel, (blocks_for(N, tile), blocks_for(M, tile)), (tile, tile), [A, B], [(M, N)],
                     output_names=("C",), call="matmul_at_b(A, B, C)")
    compare("C", run.outputs[0], A.T.astype(np.float64) @ B, rtol=1e-4, atol=1e-4, run=run, causes=[
        (lambda got: np.allclose(got[:min(M, N), :min(M, N)].T, (A.T.astype(np.float64) @ B)[:min(M, N), :min(M, N)],
                                 rtol=1e-4, atol=1e-4), "row and column are swapped: with col, row = cuda.grid(2), "
         "x runs along the columns of C."),
        unwritten_cause(run),
    ])
    passed(f"C = Aᵀ B is correct for A {A.shape}, B {B.shape}, without copying a transposed A.")
