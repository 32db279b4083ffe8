"""2×2 max-pool with stride 2: forward records the winner, backward routes the gradient to it.

Launches fold (image, channel) into grid z, in chunks of the batch that fit its 65,535 limit.
Like PyTorch (``ceil_mode=False``) an odd last row or column is dropped, and on a tie the first maximum
in row-major order wins (a strict ``>`` while scanning), so gradients agree with PyTorch's.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32

from nbkit.core.launch import batch_chunks, grid_3d, launch
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array

BLOCK = (8, 8, 1)
_T4 = "float32[:, :, :, ::1]"
_I4 = "int8[:, :, :, ::1]"


@kernel(f"void({_T4}, {_T4}, {_I4})")
def maxpool2x2_forward_kernel(x, y, argmax):
    j, i, z = cuda.grid(3)  # one thread per output
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        best = x[n, c, 2 * i, 2 * j]
        k = 0
        for t in range(1, 4):  # window positions 1, 2, 3 in row-major order
            v = x[n, c, 2 * i + t // 2, 2 * j + t % 2]
            if v > best:  # strict: on a tie the earlier position keeps the max
                best = v
                k = t
        y[n, c, i, j] = best
        argmax[n, c, i, j] = k


@kernel(f"void({_T4}, {_I4}, {_T4})")
def maxpool2x2_backward_kernel(dy, argmax, dx):
    col, row, z = cuda.grid(3)  # one thread per INPUT pixel: no two threads write the same place
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and row < dx.shape[2] and col < dx.shape[3]:
        i, j = row // 2, col // 2  # the output whose window holds this pixel
        if i < dy.shape[2] and j < dy.shape[3] and argmax[n, c, i, j] == (row % 2) * 2 + (col % 2):
            dx[n, c, row, col] = dy[n, c, i, j]
        else:
            dx[n, c, row, col] = float32(0)  # lost the max, or in a dropped odd row/column


def _launch_per_map(kernel, rows: int, cols: int, channels: int, *batch_args) -> None:
    """One z index per (image, channel), in chunks of the batch that fit grid z (65,535); slices are views."""
    for start, stop in batch_chunks(batch_args[0].shape[0], channels):
        launch(kernel, grid_3d(rows, cols, (stop - start) * channels, BLOCK), BLOCK,
               *(a[start:stop] for a in batch_args))


def maxpool2x2_forward(x):
    """``(y, argmax)`` for x (N, C, H, W): y (N, C, H//2, W//2), argmax int8 in 0..3 (row-major in the window)."""
    x = require_array(x, "x", ndim=4)
    N, C, H, W = x.shape
    if H < 2 or W < 2:
        raise ValueError(f"max-pool 2x2 needs H, W >= 2, got input shape {tuple(x.shape)}.")
    y = new_output(x, (N, C, H // 2, W // 2))
    argmax = new_output(x, y.shape, dtype=np.int8)
    _launch_per_map(maxpool2x2_forward_kernel, H // 2, W // 2, C, x, y, argmax)
    return y, argmax


def maxpool2x2_backward(dy, argmax, input_shape: tuple[int, ...]):
    """Gradient w.r.t. the input: ``dy`` where the input won its window, 0 elsewhere."""
    N, C, H, W = input_shape
    dy = require_array(dy, "dy", shape=(N, C, H // 2, W // 2))
    argmax = require_array(argmax, "argmax", shape=dy.shape, dtype=np.int8)
    dx = new_output(dy, tuple(input_shape))
    _launch_per_map(maxpool2x2_backward_kernel, H, W, C, dy, argmax, dx)
    return dx
