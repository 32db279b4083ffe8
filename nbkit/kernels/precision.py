"""float32 vs float64 on a GPU: two kernels that differ only in one literal.

Consumer GPUs (GeForce) execute float64 arithmetic at a small fraction of their float32 rate (1/64 on
recent generations; data-center parts such as A100/H100 at 1/2). In numba a Python float literal is a
float64, and mixing it with a float32 value promotes the arithmetic to float64. The PTX shows it.
"""

from __future__ import annotations

from numba import cuda, float32

from nbkit.core.registry import kernel

_SIG = "void(float32[::1], float32[::1])"


@kernel(_SIG, expect_f64=True)  # a demonstration: the PTX test checks that it really emits .f64
def half_square_float64_literal(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = 0.5 * x[i] * x[i]  # 0.5 is a float64: x[i] is widened, both products run in float64


@kernel(_SIG)
def half_square_float32(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = float32(0.5) * x[i] * x[i]  # all float32
