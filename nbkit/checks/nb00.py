"""Checks for notebook 00 (welcome)."""

from __future__ import annotations

import numpy as np

from ..launch import blocks_for
from ._core import compare, exercise, passed, run_kernel, unwritten_cause


@exercise("00.1", "write the kernel saxpy(alpha, x, y, out)")
def check_saxpy(kernel, n: int = 300, threads: int = 128) -> None:
    """Exercise 00.1: ``out[i] = alpha * x[i] + y[i]`` for float32 vectors, one thread per element.

    The kernel's parameters must be ``(alpha, x, y, out)``; any thread mapping that covers every element
    once (one thread per element, or a grid-stride loop) is accepted.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    alpha = np.float32(2.5)
    grid = blocks_for(n, threads)
    run = run_kernel(kernel, grid, threads, [alpha, x, y], [(n,)], output_names=("out",), call="saxpy(alpha, x, y, out)")
    out = run.outputs[0]
    expected = alpha * x + y
    compare("out", out, expected, rtol=1e-6, atol=1e-6, run=run, causes=[
        (x + alpha * y, "alpha multiplies y instead of x."),
        (alpha * y + x, "alpha multiplies y instead of x."),
        (y + alpha * x[::-1], "x is read at the wrong index."),
        unwritten_cause(run),
    ])
    idle = grid * threads - n
    passed(f"saxpy is correct on {n} elements with {grid} blocks of {threads} threads; no thread wrote outside "
           f"out ({idle} threads had no element and were guarded).")
