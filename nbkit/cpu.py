"""The CPU path: the same layers computed with NumPy in float32, fast enough to train on all of CIFAR-10.

A learner without a GPU cannot train LeNet in the CUDA simulator (a Python thread per CUDA thread). This
backend gives :mod:`nbkit.layers` the same operations, built on NumPy's BLAS: convolutions are unfolded
with a sliding-window view ("im2col") into one matrix multiply. Dense layers, activations, pooling and the
loss are the float32 NumPy references. ``tests/test_cpu.py`` checks every operation against the kernels.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import reference as ref
from .optim import Param


def _im2col(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """(N, C, H, W) -> (N*OH*OW, C*KH*KW): row (n, i, j) holds the window that output (i, j) reads."""
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))  # (N, C, OH, OW, KH, KW), a view
    n, c, oh, ow = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    N, _, H, W = x.shape
    F, C, KH, KW = w.shape
    OH, OW = H - KH + 1, W - KW + 1
    y = _im2col(x, KH, KW) @ w.reshape(F, C * KH * KW).T + b  # (N*OH*OW, F)
    return np.ascontiguousarray(y.reshape(N, OH, OW, F).transpose(0, 3, 1, 2))


def conv2d_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray):
    """``(dx, dw, db)``; dx as the full correlation of the zero-padded dy with the flipped kernel."""
    F, C, KH, KW = w.shape
    N, _, OH, OW = dy.shape
    dy_rows = dy.transpose(0, 2, 3, 1).reshape(N * OH * OW, F)
    dw = (dy_rows.T @ _im2col(x, KH, KW)).reshape(w.shape)
    padded = np.pad(dy, ((0, 0), (0, 0), (KH - 1, KH - 1), (KW - 1, KW - 1)))
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, KH, KW)
    dx = conv2d_forward(padded, np.ascontiguousarray(flipped), np.zeros(C, dtype=dy.dtype))
    return dx, dw, dy.sum(axis=(0, 2, 3))


def sgd_update(p: Param, hyper: tuple, nesterov: int, first_step: bool) -> None:
    """PyTorch's SGD rule (see :func:`nbkit.reference.sgd_momentum_step`), in place, in float32."""
    lr, momentum, dampening, weight_decay = hyper
    g = p.grad + weight_decay * p.value if weight_decay else p.grad
    if momentum:
        if first_step or p.buf is None:
            p.buf = g.copy()
        else:
            p.buf *= momentum
            p.buf += (1 - dampening) * g
        g = g + momentum * p.buf if nesterov else p.buf
    p.value -= lr * g


def _xent_forward(logits: np.ndarray, labels: np.ndarray):
    probs = ref.softmax(logits)
    loss = -np.log(probs[np.arange(len(labels)), labels]).mean()
    return float(loss), probs


def _xent_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    grad = probs.copy()
    grad[np.arange(len(labels)), labels] -= 1
    return grad / np.float32(len(labels))


CPU = SimpleNamespace(
    name="NumPy CPU path",
    asarray=lambda a: np.ascontiguousarray(a, dtype=np.float32).copy(),
    to_host=lambda a: a.copy(),
    dense_forward=ref.dense_forward, dense_backward=ref.dense_backward,
    relu_forward=ref.relu_forward, relu_backward=ref.relu_backward,
    tanh_forward=ref.tanh_forward, tanh_backward=ref.tanh_backward,
    conv2d_forward=conv2d_forward, conv2d_backward=conv2d_backward,
    maxpool2x2_forward=ref.maxpool2x2_forward, maxpool2x2_backward=ref.maxpool2x2_backward,
    softmax_xent_forward=_xent_forward, softmax_xent_backward=_xent_backward,
    sgd_update=sgd_update,
)
