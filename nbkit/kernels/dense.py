"""The dense (affine) layer on the device: ``Z = A Wᵀ + b`` and its three gradients.

Built from the matmul kernels (:mod:`nbkit.kernels.matmul`), a bias kernel and a column sum
(:mod:`nbkit.kernels.reduce`). Shapes follow :mod:`nbkit.nn.reference`: A (N, in), W (out, in), b (out,), Z (N, out).
"""

from __future__ import annotations

from numba import cuda

from nbkit.core.launch import block_2d, grid_2d, launch
from nbkit.core.registry import kernel
from nbkit.core.validate import require_array
from nbkit.kernels.matmul import matmul
from nbkit.kernels.reduce import column_sum


@kernel("void(float32[:, ::1], float32[::1])")
def add_bias_kernel(Z, b):
    j, n = cuda.grid(2)  # thread (n, j) adds b[j] to Z[n, j]
    if n < Z.shape[0] and j < Z.shape[1]:
        Z[n, j] += b[j]


def _check(A, W):
    A = require_array(A, "A", ndim=2)
    W = require_array(W, "W", ndim=2)
    if W.shape[1] != A.shape[1]:
        raise ValueError(f"W must have shape (out, {A.shape[1]}) to match A {tuple(A.shape)}, got {tuple(W.shape)}.")
    return A, W


def dense_forward(A, W, b, method: str = "tiled"):
    """``Z = A Wᵀ + b``; NumPy or device arrays in, the same kind out. ``method``: "tiled" or "naive"."""
    A, W = _check(A, W)
    b = require_array(b, "b", shape=(W.shape[0],))
    Z = matmul(A, W, trans_b=True, method=method)
    block = block_2d(*Z.shape)
    launch(add_bias_kernel, grid_2d(*Z.shape, block), block, Z, b)
    return Z


def dense_backward(dZ, A, W, method: str = "tiled"):
    """``(dA, dW, db) = (dZ W, dZᵀ A, column sums of dZ)``, as in :func:`nbkit.nn.reference.dense_backward`."""
    A, W = _check(A, W)
    dZ = require_array(dZ, "dZ", shape=(A.shape[0], W.shape[0]))
    return matmul(dZ, W, method=method), matmul(dZ, A, trans_a=True, method=method), column_sum(dZ)
