"""Elementwise activation kernels, forward and backward: one thread per element, float32 throughout.

Every literal that enters the arithmetic is written ``float32(...)``: a bare ``1`` or ``0.5`` next to a float32
value makes numba compute in float64, which the PTX test (``python -m nbkit.perf.ptx``) would report. Comparisons
with a bare ``0`` (``x[i] > 0``) compile to float32 and stay as they are.
"""

from __future__ import annotations

import math

from numba import cuda, float32

from nbkit.core.launch import launch_1d
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array

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
        dx[i] = dout[i] if x[i] > 0 else float32(0)  # ReLU'(0) = 0, as in PyTorch


@kernel(f"void({_V}, {_V})")
def sigmoid_forward_kernel(x, y):
    i = cuda.grid(1)
    if i < y.size:
        v = x[i]
        if v >= 0:
            y[i] = float32(1) / (float32(1) + math.exp(-v))
        else:  # never exp of a large positive number: no overflow
            e = math.exp(v)
            y[i] = e / (float32(1) + e)


@kernel(f"void({_V}, {_V}, {_V})")
def sigmoid_backward_kernel(dout, y, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] * y[i] * (float32(1) - y[i])


@kernel(f"void({_V}, {_V})")
def tanh_forward_kernel(x, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = math.tanh(x[i])


@kernel(f"void({_V}, {_V}, {_V})")
def tanh_backward_kernel(dout, y, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] * (float32(1) - y[i] * y[i])


def _flat(x, name: str, shape=None):
    x = require_array(x, name, shape=shape)
    return x.reshape(x.size) if x.ndim != 1 else x


def _unary(kernel_fn, x):
    flat = _flat(x, "x")
    y = new_output(flat, flat.shape)
    launch_1d(kernel_fn, flat.size, flat, y)
    return y.reshape(x.shape)


def _binary(kernel_fn, dout, saved, saved_name: str):
    flat_s = _flat(saved, saved_name)
    flat_d = _flat(dout, "dout", shape=saved.shape)
    dx = new_output(flat_s, flat_s.shape)
    launch_1d(kernel_fn, flat_s.size, flat_d, flat_s, dx)
    return dx.reshape(saved.shape)


def relu_forward(x):
    """``max(x, 0)`` elementwise; any shape, returned in the input's shape and kind (NumPy or device)."""
    return _unary(relu_forward_kernel, x)


def relu_backward(dout, x):
    """``dout * (x > 0)``: the gradient flows only where the input was positive."""
    return _binary(relu_backward_kernel, dout, x, "x")


def sigmoid_forward(x):
    return _unary(sigmoid_forward_kernel, x)


def sigmoid_backward(dout, y):
    """From the forward *output* ``y``: ``dout * y * (1 - y)``."""
    return _binary(sigmoid_backward_kernel, dout, y, "y")


def tanh_forward(x):
    return _unary(tanh_forward_kernel, x)


def tanh_backward(dout, y):
    """From the forward *output* ``y``: ``dout * (1 - y²)``."""
    return _binary(tanh_backward_kernel, dout, y, "y")
