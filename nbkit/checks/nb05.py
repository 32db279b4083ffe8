"""Checks for notebook 05 (activations and losses)."""

from __future__ import annotations

import numpy as np

from ..launch import blocks_for
from ._core import compare, exercise, passed, require_float32, run_kernel, unwritten_cause


@exercise("05.1", "write the kernels leaky_relu_forward and leaky_relu_backward")
def check_leaky_relu(forward_kernel, backward_kernel, slope: float = 0.01, n: int = 301) -> None:
    """Exercise 05.1: leaky ReLU, ``forward_kernel(x, y, slope)`` and ``backward_kernel(dout, x, dx, slope)``.

    Forward: ``y = x`` if ``x > 0`` else ``slope * x``. Backward: ``dx = dout`` if ``x > 0`` else ``slope * dout``
    (at exactly 0 the slope, as in PyTorch). One thread per element, 128 threads per block. Both kernels must be
    float32 throughout: checked in their PTX where numba-cuda is installed.
    """
    r = np.random.default_rng(51)
    x = r.standard_normal(n).astype(np.float32)
    x[:3] = [0.0, -0.0, 1e-30]
    dout = r.standard_normal(n).astype(np.float32)
    s = np.float32(slope)
    grid = blocks_for(n, 128)
    fwd = run_kernel(forward_kernel, grid, 128, [x], [(n,)], extra=(s,), output_names=("y",),
                     call="leaky_relu_forward(x, y, slope)")
    compare("forward y", fwd.outputs[0], np.where(x > 0, x, s * x), rtol=1e-6, atol=1e-12, run=fwd, causes=[
        (np.maximum(x, 0), "forward returns max(x, 0): for x <= 0 leaky ReLU returns slope * x, not 0."),
        unwritten_cause(fwd),
    ])
    bwd = run_kernel(backward_kernel, grid, 128, [dout, x], [(n,)], extra=(s,), output_names=("dx",),
                     call="leaky_relu_backward(dout, x, dx, slope)")
    want_dx = np.where(x > 0, dout, s * dout)
    compare("backward dx", bwd.outputs[0], want_dx, rtol=1e-6, atol=1e-12, run=bwd, causes=[
        (np.where(x > 0, dout, 0), "backward passes no gradient where x <= 0: there the derivative is the slope, "
                                   "so dx = slope * dout."),
        (np.where(x >= 0, dout, s * dout), "dx at x = 0 is wrong: use the slope there (x > 0 is false at 0), "
                                           "as PyTorch does."),
        unwritten_cause(bwd),
    ])
    f32 = require_float32(forward_kernel, "void(float32[::1], float32[::1], float32)")
    f32b = require_float32(backward_kernel, "void(float32[::1], float32[::1], float32[::1], float32)")
    note = f32 if f32 == f32b else f"forward: {f32}; backward: {f32b}"
    passed(f"leaky ReLU forward and backward are correct on {n} elements, including x = 0; {note}.")
