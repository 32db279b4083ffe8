"""Elementwise activation kernels on flat float32 arrays: one thread per element."""

from __future__ import annotations

from numba import cuda, float32

from .launch import blocks_for, launch
from .registry import kernel
from .validate import new_output, require_array

THREADS = 128
_V = "float32[::1]"


@kernel(f"void({_V}, {_V})")
def relu_forward_kernel(x, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = max(x[i], float32(0))  # max(x[i], 0) would compare in float64: the PTX test catches it


@kernel(f"void({_V}, {_V}, {_V})")
def relu_backward_kernel(dout, x, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > 0 else 0  # ReLU'(0) = 0, as in PyTorch


def _flat(x, name: str):
    x = require_array(x, name)
    return x.reshape(x.size) if x.ndim != 1 else x


def relu_forward(x):
    """``max(x, 0)`` elementwise; any shape, returned in the input's shape and kind (NumPy or device)."""
    flat = _flat(x, "x")
    y = new_output(flat, flat.shape)
    launch(relu_forward_kernel, blocks_for(flat.size, THREADS), THREADS, flat, y)
    return y.reshape(x.shape)


def relu_backward(dout, x):
    """``dout * (x > 0)``: the gradient flows only where the input was positive."""
    flat_x = _flat(x, "x")
    flat_d = _flat(require_array(dout, "dout", shape=x.shape), "dout")
    dx = new_output(flat_x, flat_x.shape)
    launch(relu_backward_kernel, blocks_for(flat_x.size, THREADS), THREADS, flat_d, flat_x, dx)
    return dx.reshape(x.shape)
