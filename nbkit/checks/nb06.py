"""Checks for notebook 06 (convolution and pooling)."""

from __future__ import annotations

import numpy as np

from ..launch import blocks_for
from ._core import compare, exercise, fail, passed, run_kernel


@exercise("06.1", "write the kernels avgpool_forward and avgpool_backward")
def check_avgpool(forward_kernel, backward_kernel) -> None:
    """Exercise 06.1: 2×2 average pooling with stride 2, as ``torch.nn.functional.avg_pool2d(x, 2)``.

    ``forward_kernel(x, y)``: one thread per output, ``j, i, z = cuda.grid(3)`` with z = n * C + c.
    ``backward_kernel(dy, dx)``: one thread per input pixel, the same mapping over the input.
    Both are launched with blocks of (8, 8, 1) threads; x has shape (2, 3, 7, 9) (odd: the last row and
    column are dropped, and their gradient is 0).
    """
    N, C, H, W = 2, 3, 7, 9
    OH, OW = H // 2, W // 2
    r = np.random.default_rng(61)
    x = r.standard_normal((N, C, H, W)).astype(np.float32)
    windows = x[:, :, :2 * OH, :2 * OW].reshape(N, C, OH, 2, OW, 2)
    want_y = windows.mean(axis=(3, 5))
    y = run_kernel(forward_kernel, (blocks_for(OW, 8), blocks_for(OH, 8), N * C), (8, 8, 1), [x], [(N, C, OH, OW)],
                   output_names=("y",), call="avgpool_forward(x, y)").outputs[0]
    if np.allclose(y, 4 * want_y, rtol=1e-5, atol=1e-6):
        fail("forward returns the sum of each window: divide by 4 for the average.")
    compare("forward y", y, want_y, rtol=1e-5, atol=1e-6)
    dy = r.standard_normal((N, C, OH, OW)).astype(np.float32)
    want_dx = np.zeros_like(x)
    want_dx[:, :, :2 * OH, :2 * OW] = np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4
    dx = run_kernel(backward_kernel, (blocks_for(W, 8), blocks_for(H, 8), N * C), (8, 8, 1), [dy], [(N, C, H, W)],
                    output_names=("dx",), call="avgpool_backward(dy, dx)").outputs[0]
    if np.allclose(dx, 4 * want_dx, rtol=1e-5, atol=1e-6):
        fail("backward passes dy unchanged: each of the 4 inputs contributed 1/4 of the average, so it gets dy / 4.")
    inner = (slice(None), slice(None), slice(0, 2 * OH), slice(0, 2 * OW))
    if np.allclose(dx[inner], want_dx[inner], rtol=1e-5, atol=1e-6) and not np.allclose(dx, want_dx, atol=1e-6):
        fail("the dropped last row/column must get gradient 0 (they never entered a window); was it written at all?")
    compare("backward dx", dx, want_dx, rtol=1e-5, atol=1e-6)
    passed("average pooling forward and backward are correct, including the dropped odd row and column.")
