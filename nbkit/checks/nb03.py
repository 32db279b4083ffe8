"""Checks for notebook 03 (the CUDA programming model)."""

from __future__ import annotations

import numpy as np

from ..launch import blocks_for
from ._core import compare, exercise, passed, run_kernel, unwritten_cause


@exercise("03.1", "write the kernel row_sum(M, out)")
def check_row_sum(kernel, rows: int = 37, cols: int = 13, threads: int = 32) -> None:
    """Exercise 03.1: ``kernel(M, out)`` with one thread per row writes ``out[r] = sum of row r``.

    Launched with ``blocks_for(rows, 32)`` blocks of 32 threads over a (37, 13) float32 matrix.
    """
    M = np.random.default_rng(31).standard_normal((rows, cols)).astype(np.float32)
    run = run_kernel(kernel, blocks_for(rows, threads), threads, [M], [(rows,)], output_names=("out",),
                     call="row_sum(M, out)")
    col_sums = np.full(rows, np.nan)
    col_sums[:cols] = M.sum(axis=0)[:rows]
    compare("out", run.outputs[0], M.sum(axis=1, dtype=np.float64), rtol=1e-5, atol=1e-5, run=run, causes=[
        (lambda got: np.allclose(got[:cols], col_sums[:cols], rtol=1e-5, atol=1e-5),
         "out[i] holds the sum of column i: a row sum runs along the second index, M[r, j] for j in range(M.shape[1])."),
        unwritten_cause(run),
    ])
    passed(f"row sums of a {rows}x{cols} matrix are correct ({blocks_for(rows, threads)} blocks of {threads} threads).")
