"""Checks for notebook 00 (welcome)."""

from __future__ import annotations

import numpy as np

from nbkit.checks._core import compare, exercise, passed, require_float32, run_kernel, unwritten_cause
from nbkit.core.launch import blocks_for

SAXPY_CALL = "saxpy(alpha, x, y, out)"
SAXPY_SIGNATURE = "void(float32, float32[::1], float32[::1], float32[::1])"


@exercise("00.1", "write the kernel saxpy(alpha, x, y, out)")
def check_saxpy(kernel, n: int = 300, threads: int = 128) -> None:
    """Exercise 00.1: ``out[i] = alpha * x[i] + y[i]`` for float32 vectors.

    The kernel's parameters must be ``(alpha, x, y, out)``; any thread mapping that covers every element
    once (one thread per element, or a grid-stride loop) is accepted. ``n`` is not a multiple of
    ``threads``, so the last block has idle threads: without a bounds guard they write past ``out``,
    which the sentinel padding around ``out`` on the device reveals in both modes.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    alpha = np.float32(2.5)
    grid = blocks_for(n, threads)
    run = run_kernel(kernel, grid, threads, [alpha, x, y], [(n,)], output_names=("out",), call=SAXPY_CALL)
    out = run.outputs[0]
    expected = alpha * x + y
    compare("out", out, expected, rtol=1e-6, atol=1e-6, run=run, causes=[
        unwritten_cause(run),
        (x + alpha * y, "alpha multiplies y instead of x: out[i] = alpha * x[i] + y[i]."),
        (alpha * (x + y), "alpha multiplies the sum x[i] + y[i]; only x[i] is scaled."),
        (alpha * x, "y[i] is missing: out[i] = alpha * x[i] + y[i]."),
        (x + y, "alpha is missing: out[i] = alpha * x[i] + y[i]."),
        (lambda got: np.allclose(got[:-1], expected[1:], rtol=1e-6, atol=1e-6),
         "each thread computes its neighbour's element: an off-by-one index (i + 1)."),
    ])
    f32 = require_float32(kernel, SAXPY_SIGNATURE)
    idle = grid * threads - n
    passed(f"saxpy is correct on {n} elements with {grid} blocks of {threads} threads; the {idle} threads without "
           f"an element wrote nothing (checked: the padding around out on the device is untouched); {f32}.")
