"""Loss kernels: mean squared error, and softmax + cross-entropy with its fused ``(p - y) / N`` gradient.

Softmax + cross-entropy comes in two forward versions with the same result. One thread per row loops
over the classes itself: simple, and right when rows are short (10 classes in CIFAR-10). One block per
row lets 32 threads share a row and combine their maxima and sums in shared memory: worth it when
rows are long (thousands of classes), wasteful when they are short.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from nbkit.core.launch import block_2d, grid_2d, launch, launch_1d
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array
from nbkit.kernels.reduce import sum_tree

ROW_THREADS = 32  # threads per row in the one-block-per-row version: one warp


@kernel("void(float32[::1], float32[::1], float32, float32[::1])")
def scaled_difference_kernel(pred, target, scale, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = scale * (pred[i] - target[i])


@kernel("void(float32[::1], float32[::1], float32[::1])")
def squared_difference_kernel(pred, target, out):
    i = cuda.grid(1)
    if i < out.size:
        d = pred[i] - target[i]
        out[i] = d * d


def _pair(pred, target):
    pred = require_array(pred, "pred")
    target = require_array(target, "target", shape=pred.shape)
    return pred.reshape(pred.size), target.reshape(target.size)


def mse_forward(pred, target) -> float:
    """Mean of the squared errors over all elements, like ``torch.nn.functional.mse_loss``."""
    p, t = _pair(pred, target)
    sq = new_output(p, p.shape)
    launch_1d(squared_difference_kernel, sq.size, p, t, sq)
    total = sum_tree(sq)
    total = total if isinstance(total, np.ndarray) else total.copy_to_host()
    return float(total[0]) / p.size


def mse_backward(pred, target, scale: float | None = None):
    """Gradient of the squared error: ``scale * (pred - target)``.

    The default ``scale = 2 / pred.size`` is the gradient of PyTorch's ``mse_loss`` (the mean);
    ``scale = 1`` is the gradient of ``½ Σ (pred - target)²``. Notebook 01 explains both.
    """
    p, t = _pair(pred, target)
    scale = np.float32(2.0 / p.size if scale is None else scale)
    out = new_output(p, p.shape)
    launch_1d(scaled_difference_kernel, out.size, p, t, scale, out)
    return out.reshape(pred.shape)


_XENT_SIGS = [f"void(float32[:, ::1], {lab}[::1], float32[::1], float32[:, ::1])" for lab in ("int32", "int64")]


@kernel(*_XENT_SIGS)
def softmax_xent_row_per_thread_kernel(logits, labels, loss_rows, probs):
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            e = math.exp(logits[n, j] - m)  # <= 1: cannot overflow
            probs[n, j] = e
            s += e
        for j in range(C):
            probs[n, j] /= s
        loss_rows[n] = math.log(s) - (logits[n, labels[n]] - m)  # = -log softmax(logits)[label]; subtract m first


@kernel(*_XENT_SIGS)
def softmax_xent_row_per_block_kernel(logits, labels, loss_rows, probs):
    buf = cuda.shared.array(ROW_THREADS, float32)
    n = cuda.blockIdx.x  # this block's row
    t = cuda.threadIdx.x
    C = logits.shape[1]
    # 1. each thread takes the max over its strided share of the row, then a tree combines the maxima
    m = float32(-math.inf)
    for j in range(t, C, ROW_THREADS):
        m = max(m, logits[n, j])
    buf[t] = m
    cuda.syncthreads()
    stride = ROW_THREADS // 2
    while stride > 0:
        if t < stride:
            buf[t] = max(buf[t], buf[t + stride])
        cuda.syncthreads()
        stride //= 2
    m = buf[0]
    cuda.syncthreads()
    # 2. the same for the sum of exponentials
    s = float32(0)
    for j in range(t, C, ROW_THREADS):
        e = math.exp(logits[n, j] - m)
        probs[n, j] = e
        s += e
    buf[t] = s
    cuda.syncthreads()
    stride = ROW_THREADS // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    s = buf[0]
    for j in range(t, C, ROW_THREADS):
        probs[n, j] /= s
    if t == 0:
        loss_rows[n] = math.log(s) - (logits[n, labels[n]] - m)


@kernel(*[f"void(float32[:, ::1], {lab}[::1], float32, float32[:, ::1])" for lab in ("int32", "int64")])
def softmax_xent_backward_kernel(probs, labels, scale, dlogits):
    j, n = cuda.grid(2)
    if n < probs.shape[0] and j < probs.shape[1]:
        y = float32(1) if j == labels[n] else float32(0)
        dlogits[n, j] = (probs[n, j] - y) * scale  # (p - y) / N with scale = 1 / N


def _check_xent(logits, labels):
    logits = require_array(logits, "logits", ndim=2)
    labels = require_array(labels, "labels", dtype=None, shape=(logits.shape[0],))
    if np.dtype(labels.dtype) not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"labels must be int32 or int64 class indices, got {labels.dtype}.")
    if isinstance(labels, np.ndarray) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got values from {labels.min()} to {labels.max()}.")
    return logits, labels


def softmax_xent_forward(logits, labels, method: str = "row_per_thread"):
    """``(mean loss, probs)``: the loss is a Python float, ``probs`` (N, C) stays for the backward pass."""
    logits, labels = _check_xent(logits, labels)
    N = logits.shape[0]
    probs = new_output(logits, logits.shape)
    loss_rows = new_output(logits, (N,))
    if method == "row_per_thread":
        launch_1d(softmax_xent_row_per_thread_kernel, N, logits, labels, loss_rows, probs)
    elif method == "row_per_block":
        launch(softmax_xent_row_per_block_kernel, N, ROW_THREADS, logits, labels, loss_rows, probs)
    else:
        raise ValueError(f"method must be 'row_per_thread' or 'row_per_block', got {method!r}")
    total = sum_tree(loss_rows)
    total = total if isinstance(total, np.ndarray) else total.copy_to_host()
    return float(total[0]) / N, probs


def softmax_xent_backward(probs, labels):
    """The fused gradient ``(p - onehot(labels)) / N`` from the forward pass's probabilities."""
    probs, labels = _check_xent(probs, labels)
    N, C = probs.shape
    dlogits = new_output(probs, probs.shape)
    block = block_2d(N, C)
    launch(softmax_xent_backward_kernel, grid_2d(N, C, block), block, probs, labels, np.float32(1.0 / N), dlogits)
    return dlogits
