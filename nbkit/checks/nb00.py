"""Checks for notebook 00 (welcome)."""

from __future__ import annotations

import numpy as np

from nbkit.checks._core import SENTINEL
from nbkit.checks.exercise import NEVER_WRITTEN, Case, Cause, KernelExercise, equals
from nbkit.core.launch import blocks_for

SAXPY = KernelExercise(
    number="00.1", task="write the kernel saxpy(alpha, x, y, out)", call="saxpy(alpha, x, y, out)", outputs=("out",),
    inputs=lambda rng, c: {"x": rng.standard_normal(c.n).astype(np.float32),
                           "y": rng.standard_normal(c.n).astype(np.float32), "alpha": np.float32(c.alpha)},
    reference=lambda alpha, x, y: alpha * x.astype(np.float64) + y,
    # the statement's launch first: n is not a multiple of the block, so the last block has idle threads, which must
    # not write past out; then other sizes (a size hard-coded from the statement fails), other alphas, one element,
    # and grids with more blocks than needed
    cases=(Case(grid=blocks_for(300, 128), block=128, sizes={"n": 300, "alpha": 2.5}),
           Case(grid=1, block=32, sizes={"n": 1, "alpha": -1.5}),
           Case(grid=blocks_for(97, 64) + 1, block=64, sizes={"n": 97, "alpha": 0.75}),
           Case(grid=blocks_for(1031, 128), block=128, sizes={"n": 1031, "alpha": -3.0})),
    realistic=(Case(grid=blocks_for(1_000_003, 256), block=256, sizes={"n": 1_000_003, "alpha": 0.5},
                    label="a vector of a million elements"),),
    rtol=1e-6, atol=1e-6, seed=0,
    causes=(
        equals(lambda a: np.where(np.arange(a.n) < a.case.block, a.want, SENTINEL),
               lambda a: f"only out[0] to out[{min(a.case.block, a.n) - 1}] were written (with the right values), the "
                         f"elements that one block of {a.case.block} threads covers: exactly what the index "
                         "i = cuda.threadIdx.x gives, with which every block writes the same elements. The global index "
                         "is i = cuda.grid(1) = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x."),
        NEVER_WRITTEN,
        equals(lambda a: a.x + a.alpha * a.y, "alpha multiplies y instead of x: out[i] = alpha * x[i] + y[i]."),
        equals(lambda a: a.alpha * (a.x + a.y), "alpha multiplies the sum x[i] + y[i]; only x[i] is scaled."),
        equals(lambda a: a.alpha * a.x, "y[i] is missing: out[i] = alpha * x[i] + y[i]."),
        equals(lambda a: a.x + a.y, "alpha is missing: out[i] = alpha * x[i] + y[i]."),
        Cause(lambda a: a.n > 2 and np.allclose(a.got[:-1], a.want[1:], rtol=a.rtol, atol=a.atol),
              "each thread computes its neighbour's element: an off-by-one index (i + 1)."),
    ),
    float32="void(float32, float32[::1], float32[::1], float32[::1])",
    success=lambda f: (f"saxpy is correct on {f.cases[0].n} elements with {f.cases[0].grid} blocks of "
                       f"{f.cases[0].block} threads, and on "
                       + ", ".join(f"{c.n} with alpha = {c.alpha}" for c in f.cases[1:])
                       + f"; the {sum(c.threads - c.n for c in f.cases)} threads without an element wrote nothing "
                       f"(checked: the padding around out on the device is untouched); {f.float32}."),
)


def check_saxpy(kernel) -> None:
    """Exercise 00.1: ``out[i] = alpha * x[i] + y[i]`` for float32 vectors.

    The kernel's parameters must be ``(alpha, x, y, out)``; any thread mapping that covers every element
    once (one thread per element, or a grid-stride loop) is accepted. Without a bounds guard the idle
    threads of the last block write past ``out``, which the sentinel padding around ``out`` on the device
    reveals in both modes.
    """
    SAXPY.check(kernel)
