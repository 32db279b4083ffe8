"""The CPU path: the same layers computed with NumPy in float32, fast enough to train on all of CIFAR-10.

A learner without a GPU cannot train LeNet in the CUDA simulator (one SGD step on one image took 6 s there on a
2-core machine, 2026-11-30). This backend gives :mod:`nbkit.nn.layers` the same operations in float32.
Convolutions (forward, weight and input gradients) and max-pooling are direct loops compiled with ``numba.njit``,
written so that LLVM vectorises them (see the comment above :func:`_conv_forward_loops`), and so is the ReLU
backward; dense layers, the ReLU forward and the loss are the NumPy references, the dense matrix multiplies on
NumPy's BLAS.

The loops run on one thread. Measured on a 2-core machine (``python -m nbkit.perf.bench``): with numba's
``parallel=True`` the best step got faster, but the median step several times slower, because numba's worker
threads, OpenBLAS's and PyTorch's OpenMP threads then compete for the same two cores.
``tests/test_cpu.py`` checks every operation against the kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nbkit.nn import reference as ref
from nbkit.nn.backend import Param

# Direct convolution, one image at a time. The trick that makes the inner loops vectorise: with the input
# image flattened row-major (row width W), output pixel (i, j) of the "full-width" output o[k], k = i*W + j,
# is the sum over taps (c, p, q) of w[f, c, p, q] * x_c[k + p*W + q]. So each weight tap is one AXPY over a
# contiguous run of L = (OH-1)*W + OW values (o[:L] += w * x_c[off:off+L]), which LLVM turns into SIMD fused
# multiply-adds. The positions with j >= OW (k % W >= OW) wrap into the next row: they are computed and thrown
# away (W/OW more work: 14 % for conv1, 40 % for conv2); in the backward passes the gradient there is kept at 0.
# An AXPY is limited by loads and stores, not arithmetic, so the loops take four taps per pass over the run
# (one load and one store of o for four multiply-adds: about 1.4x faster than one tap per pass; eight taps
# gained nothing more, measured). This never materialises an unfolding (for conv1 at batch 64 that was
# 75 x 50,176 floats, 15 MB, written and read again by BLAS), and what one image touches fits in L1/L2.


_REASSOC = {"reassoc", "contract"}
"""The only fast-math flags the loops use: reorder sums (so LLVM vectorises the dot products) and fuse
multiply-adds. Not ``fastmath=True``, which would also let LLVM assume there is no NaN or infinity."""


@njit(cache=True)
def _tap_offsets(c, h, wd, kh, kw):
    """Offset of tap (c, p, q) in a flattened (C, H, W) image, in the order of ``w.reshape(F, C*KH*KW)``."""
    offs = np.empty(c * kh * kw, dtype=np.int64)
    for ci in range(c):
        for p in range(kh):
            for q in range(kw):
                offs[(ci * kh + p) * kw + q] = (ci * h + p) * wd + q
    return offs


@njit(cache=True, fastmath=_REASSOC)
def _conv_forward_loops(x, w, b, y):
    """y[img] for every image: the bias, then the taps' AXPYs four at a time (see above)."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = y.shape[2], y.shape[3]
    length = (oh - 1) * wd + ow
    taps = c * kh * kw
    xflat = x.reshape(n, c * h * wd)
    wr = w.reshape(f, taps)
    offs = _tap_offsets(c, h, wd, kh, kw)
    acc = np.empty(oh * wd, dtype=y.dtype)
    out = acc[:length]
    for img in range(n):
        xi = xflat[img]
        for fi in range(f):
            out[:] = b[fi]
            t = 0
            while t + 4 <= taps:
                w0, w1, w2, w3 = wr[fi, t], wr[fi, t + 1], wr[fi, t + 2], wr[fi, t + 3]
                s0 = xi[offs[t]: offs[t] + length]
                s1 = xi[offs[t + 1]: offs[t + 1] + length]
                s2 = xi[offs[t + 2]: offs[t + 2] + length]
                s3 = xi[offs[t + 3]: offs[t + 3] + length]
                for k in range(length):
                    out[k] += w0 * s0[k] + w1 * s1[k] + w2 * s2[k] + w3 * s3[k]
                t += 4
            while t < taps:
                w0 = wr[fi, t]
                s0 = xi[offs[t]: offs[t] + length]
                for k in range(length):
                    out[k] += w0 * s0[k]
                t += 1
            for i in range(oh):
                y[img, fi, i, :] = acc[i * wd: i * wd + ow]


@njit(cache=True, fastmath=_REASSOC)
def _conv_dw_loops(dy, x, dw):
    """Adds to dw the dot products of dy[img, f] (full width, 0 at j >= OW) with x's shifted runs.

    Two filters times four taps per pass: eight dot products share each load (1.2-1.4x faster than one filter
    times four taps, measured). With an odd number of filters the last pass computes its filter twice.
    """
    n, c, h, wd = x.shape
    f, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = dw.shape[2], dw.shape[3]
    length = (oh - 1) * wd + ow
    taps = c * kh * kw
    xflat = x.reshape(n, c * h * wd)
    dwr = dw.reshape(f, taps)
    offs = _tap_offsets(c, h, wd, kh, kw)
    dpad = np.zeros((f, oh * wd), dtype=dy.dtype)  # the columns j >= OW stay 0
    zero = dy.dtype.type(0)
    for img in range(n):
        xi = xflat[img]
        for fi in range(f):
            for i in range(oh):
                dpad[fi, i * wd: i * wd + ow] = dy[img, fi, i, :]
        for fa in range(0, f, 2):
            fb = min(fa + 1, f - 1)
            da, db = dpad[fa, :length], dpad[fb, :length]
            t = 0
            while t + 4 <= taps:
                s0 = xi[offs[t]: offs[t] + length]
                s1 = xi[offs[t + 1]: offs[t + 1] + length]
                s2 = xi[offs[t + 2]: offs[t + 2] + length]
                s3 = xi[offs[t + 3]: offs[t + 3] + length]
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
                for k in range(length):
                    u, v = da[k], db[k]
                    a0 += u * s0[k]
                    a1 += u * s1[k]
                    a2 += u * s2[k]
                    a3 += u * s3[k]
                    b0 += v * s0[k]
                    b1 += v * s1[k]
                    b2 += v * s2[k]
                    b3 += v * s3[k]
                dwr[fa, t] += a0
                dwr[fa, t + 1] += a1
                dwr[fa, t + 2] += a2
                dwr[fa, t + 3] += a3
                if fb != fa:
                    dwr[fb, t] += b0
                    dwr[fb, t + 1] += b1
                    dwr[fb, t + 2] += b2
                    dwr[fb, t + 3] += b3
                t += 4
            while t < taps:
                s0 = xi[offs[t]: offs[t] + length]
                a0 = b0 = zero
                for k in range(length):
                    a0 += da[k] * s0[k]
                    b0 += db[k] * s0[k]
                dwr[fa, t] += a0
                if fb != fa:
                    dwr[fb, t] += b0
                t += 1


@njit(cache=True, fastmath=_REASSOC)
def _conv_dx_loops(dy, w, dx):
    """dx[img] for every image: tap (c, p, q) adds w[f, c, p, q] * dy[img, f] onto dx's run, 4 filters a pass."""
    n, c, h, wd = dx.shape
    f, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    length = (oh - 1) * wd + ow
    dxflat = dx.reshape(n, c, h * wd)
    dpad = np.zeros((f, oh * wd), dtype=dy.dtype)  # the columns j >= OW stay 0
    for img in range(n):
        dxflat[img, :, :] = 0
        for fi in range(f):
            for i in range(oh):
                dpad[fi, i * wd: i * wd + ow] = dy[img, fi, i, :]
        for ci in range(c):
            for p in range(kh):
                for q in range(kw):
                    dst = dxflat[img, ci, p * wd + q: p * wd + q + length]
                    fi = 0
                    while fi + 4 <= f:
                        w0, w1, w2, w3 = w[fi, ci, p, q], w[fi + 1, ci, p, q], w[fi + 2, ci, p, q], w[fi + 3, ci, p, q]
                        d0 = dpad[fi, :length]
                        d1 = dpad[fi + 1, :length]
                        d2 = dpad[fi + 2, :length]
                        d3 = dpad[fi + 3, :length]
                        for k in range(length):
                            dst[k] += w0 * d0[k] + w1 * d1[k] + w2 * d2[k] + w3 * d3[k]
                        fi += 4
                    while fi < f:
                        w0 = w[fi, ci, p, q]
                        d0 = dpad[fi, :length]
                        for k in range(length):
                            dst[k] += w0 * d0[k]
                        fi += 1


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, saved)``: ``saved`` is a copy of ``x``, which the weight gradient needs.

    The caller (the :class:`~nbkit.nn.layers.Conv2d` layer) keeps ``saved`` from forward to backward. It is a copy,
    so a caller that refills its input buffer in place (even between forward and backward) changes nothing here.
    """
    x = np.array(x, dtype=np.float32, order="C")  # always a copy (see above); 0.8 MB for conv1 at batch 64
    w = np.ascontiguousarray(w, dtype=np.float32)
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1] or x.shape[2] < w.shape[2] or x.shape[3] < w.shape[3]:
        raise ValueError(f"input {x.shape} and weights {w.shape} do not fit: expected x (N, C, H, W) and "
                         "w (F, C, KH, KW) with the same C and KH <= H, KW <= W")
    if np.shape(b) != (w.shape[0],):
        raise ValueError(f"bias of shape {np.shape(b)} for {w.shape[0]} filters: expected ({w.shape[0]},)")
    N, _, H, W = x.shape
    F, _, KH, KW = w.shape
    y = np.empty((N, F, H - KH + 1, W - KW + 1), dtype=np.float32)
    _conv_forward_loops(x, w, np.ascontiguousarray(b, dtype=np.float32), y)
    return y, x


def conv2d_backward(dy: np.ndarray, saved: np.ndarray, w: np.ndarray, need_dx: bool = True):
    """``(dx, dw, db)`` from forward's ``saved`` (the input); ``dx`` is None when ``need_dx`` is false."""
    x = saved
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    want = (x.shape[0], w.shape[0], x.shape[2] - w.shape[2] + 1, x.shape[3] - w.shape[3] + 1)
    if dy.shape != want or x.shape[1] != w.shape[1]:
        raise ValueError(f"output gradient of shape {dy.shape} for input {x.shape} and weights {w.shape}: "
                         f"expected {want}")
    dw = np.zeros(w.shape, dtype=np.float32)
    _conv_dw_loops(dy, x, dw)
    db = dy.sum(axis=(0, 2, 3))
    if not need_dx:
        return None, dw, db
    dx = np.empty(x.shape, dtype=np.float32)
    _conv_dx_loops(dy, w, dx)
    return dx, dw, db


@njit(cache=True)
def maxpool2x2_forward(x):
    """As :func:`nbkit.nn.reference.maxpool2x2_forward` (first maximum wins a tie), in compiled loops."""
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
    """Writes every element of dx once (the window's winner gets dy, the other three 0): no separate zeroing pass."""
    n, c, oh, ow = dy.shape
    dx = np.empty((n, c, h, w), dtype=dy.dtype)
    zero = dy.dtype.type(0)
    for img in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    k = argmax[img, ch, i, j]
                    g = dy[img, ch, i, j]
                    dx[img, ch, 2 * i, 2 * j] = g if k == 0 else zero
                    dx[img, ch, 2 * i, 2 * j + 1] = g if k == 1 else zero
                    dx[img, ch, 2 * i + 1, 2 * j] = g if k == 2 else zero
                    dx[img, ch, 2 * i + 1, 2 * j + 1] = g if k == 3 else zero
            if h % 2:  # an odd last row or column is never any window's winner
                dx[img, ch, h - 1, :] = zero
            if w % 2:
                dx[img, ch, :, w - 1] = zero
    return dx


def maxpool2x2_backward(dy: np.ndarray, argmax: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    return _maxpool_backward(np.ascontiguousarray(dy, dtype=np.float32), argmax, input_shape[2], input_shape[3])


@njit(cache=True)
def _relu_backward(dout, x):
    out = np.empty_like(dout)
    d, v, o = dout.reshape(-1), x.reshape(-1), out.reshape(-1)
    one, zero = dout.dtype.type(1), dout.dtype.type(0)
    for i in range(o.size):
        o[i] = d[i] * (one if v[i] > 0 else zero)  # a product, as the reference: inf * 0 stays NaN
    return out


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """As :func:`nbkit.nn.reference.relu_backward` in one compiled pass (no boolean temporary)."""
    if dout.shape != x.shape:
        raise ValueError(f"gradient of shape {dout.shape} for an input of shape {x.shape}: expected the same shape")
    return _relu_backward(np.ascontiguousarray(dout, dtype=np.float32), np.ascontiguousarray(x, dtype=np.float32))


def sgd_update(p: Param, hyper: tuple, nesterov: int, first_step: bool) -> None:
    """PyTorch's SGD rule (see :func:`nbkit.nn.reference.sgd_momentum_step`), in place, in float32."""
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
    """The :class:`nbkit.nn.backend.Backend` operations on NumPy float32 arrays (see the module docstring)."""

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
    relu_backward = staticmethod(relu_backward)
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
