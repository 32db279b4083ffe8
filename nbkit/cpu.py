"""The CPU path: the same layers computed with NumPy in float32, fast enough to train on all of CIFAR-10.

A learner without a GPU cannot train LeNet in the CUDA simulator (a Python thread per CUDA thread). This
backend gives :mod:`nbkit.layers` the same operations in float32. Convolutions are unfolded ("im2col") into
one matrix multiply on NumPy's BLAS; the unfolding and the pooling loops are compiled with ``numba.njit``
(single-threaded: at these sizes threads cost more than they save). Dense layers, activations and the loss
are the NumPy references. ``tests/test_cpu.py`` checks every operation against the kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import reference as ref
from .backend import Param


@njit(cache=True)
def _unfold(x, kh, kw):
    """(N, C, H, W) -> (C*KH*KW, N*OH*OW): row (c, p, q) holds x[:, c, p:p+OH, q:q+OW] for every output.

    Copied by a compiled loop (numba.njit); NumPy's reshape of a 6-D sliding-window view copies along a
    5-long innermost axis and is several times slower.
    """
    n, c, h, w = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    for ci in range(c):
        for p in range(kh):
            for q in range(kw):
                row = (ci * kh + p) * kw + q
                for img in range(n):
                    for i in range(oh):
                        base = (img * oh + i) * ow
                        for j in range(ow):
                            cols[row, base + j] = x[img, ci, i + p, j + q]
    return cols


@njit(cache=True)
def _fold(cols, n, c, h, w, kh, kw):
    """The adjoint of :func:`_unfold`: add every column entry back onto the input pixel it came from."""
    oh, ow = h - kh + 1, w - kw + 1
    x = np.zeros((n, c, h, w), dtype=cols.dtype)
    for ci in range(c):
        for p in range(kh):
            for q in range(kw):
                row = (ci * kh + p) * kw + q
                for img in range(n):
                    for i in range(oh):
                        base = (img * oh + i) * ow
                        for j in range(ow):
                            x[img, ci, i + p, j + q] += cols[row, base + j]
    return x


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``(y, saved)``: ``saved`` is the unfolding of ``x`` (and its shape), which the weight gradient needs.

    The caller (the :class:`~nbkit.layers.Conv2d` layer) keeps ``saved`` from forward to backward. There is
    no cache keyed by the input array: a caller that refills its input buffer in place gets a fresh unfolding.
    """
    N, _, H, W = x.shape
    F, C, KH, KW = w.shape
    OH, OW = H - KH + 1, W - KW + 1
    cols = _unfold(x, KH, KW)
    y = w.reshape(F, C * KH * KW) @ cols  # (F, N*OH*OW): one matrix multiply
    y += b[:, None]
    return np.ascontiguousarray(y.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)), (cols, x.shape)


def conv2d_backward(dy: np.ndarray, saved: tuple, w: np.ndarray, need_dx: bool = True):
    """``(dx, dw, db)`` from forward's ``saved``. dx: ``Wᵀ dy`` folded back onto the pixels it came from."""
    cols, (N, _, H, W) = saved
    F, C, KH, KW = w.shape
    dy_rows = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(F, -1)  # (F, N*OH*OW)
    dw = (dy_rows @ cols.T).reshape(w.shape)
    db = dy_rows.sum(axis=1)
    if not need_dx:
        return None, dw, db
    dcols = w.reshape(F, C * KH * KW).T @ dy_rows  # (C*KH*KW, N*OH*OW)
    return _fold(dcols, N, C, H, W, KH, KW), dw, db


@njit(cache=True)
def maxpool2x2_forward(x):
    """As :func:`nbkit.reference.maxpool2x2_forward` (first maximum wins a tie), in compiled loops."""
    n, c, h, w = x.shape
    oh, ow = h // 2, w // 2
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int8)
    for img in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best = x[img, ch, 2 * i, 2 * j]
                    k = 0
                    for t in range(1, 4):
                        v = x[img, ch, 2 * i + t // 2, 2 * j + t % 2]
                        if v > best:
                            best = v
                            k = t
                    y[img, ch, i, j] = best
                    argmax[img, ch, i, j] = k
    return y, argmax


@njit(cache=True)
def _maxpool_backward(dy, argmax, h, w):
    n, c, oh, ow = dy.shape
    dx = np.zeros((n, c, h, w), dtype=dy.dtype)
    for img in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    k = argmax[img, ch, i, j]
                    dx[img, ch, 2 * i + k // 2, 2 * j + k % 2] = dy[img, ch, i, j]
    return dx


def maxpool2x2_backward(dy: np.ndarray, argmax: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    return _maxpool_backward(dy, argmax, input_shape[2], input_shape[3])


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
    """From the log-softmax, never ``-log(softmax)``: logits [0, 120], label 0 give 120, not ``inf``."""
    log_probs = ref.log_softmax(logits)
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return float(loss), np.exp(log_probs)


def _xent_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    grad = probs.copy()
    grad[np.arange(len(labels)), labels] -= 1
    return grad / np.float32(len(labels))


class CPUBackend:
    """The :class:`nbkit.backend.Backend` operations on NumPy float32 arrays (see the module docstring)."""

    name = "NumPy CPU path"

    @staticmethod
    def asarray(a: np.ndarray) -> np.ndarray:
        return np.array(a, dtype=np.float32, order="C")  # always a copy: the caller's array stays theirs

    @staticmethod
    def to_host(a: np.ndarray) -> np.ndarray:
        return a.copy()

    dense_forward = staticmethod(ref.dense_forward)
    dense_backward = staticmethod(ref.dense_backward)
    relu_forward = staticmethod(ref.relu_forward)
    relu_backward = staticmethod(ref.relu_backward)
    tanh_forward = staticmethod(ref.tanh_forward)
    tanh_backward = staticmethod(ref.tanh_backward)
    conv2d_forward = staticmethod(conv2d_forward)
    conv2d_backward = staticmethod(conv2d_backward)
    maxpool2x2_forward = staticmethod(maxpool2x2_forward)
    maxpool2x2_backward = staticmethod(maxpool2x2_backward)
    softmax_xent_forward = staticmethod(_xent_forward)
    softmax_xent_backward = staticmethod(_xent_backward)
    sgd_update = staticmethod(sgd_update)

    def __repr__(self) -> str:
        return f"<backend: {self.name}>"


CPU = CPUBackend()
