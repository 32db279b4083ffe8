"""Dense (affine) layer kernels: ``Z = A Wᵀ + b`` and its three gradients, one thread per output element.

These are the plain versions: each thread loops over a whole row and column in global memory.
Notebook 04 explains their memory traffic and adds a shared-memory tiled matrix multiply.
Shapes follow :mod:`nbkit.reference`: A (N, in), W (out, in), b (out,), Z (N, out).
"""

from __future__ import annotations

from numba import cuda

from .launch import blocks_for, launch
from .registry import kernel
from .validate import new_output, require_array

BLOCK_2D = (16, 16)
THREADS_1D = 128

_M = "float32[:, ::1]"  # a C-contiguous float32 matrix
_V = "float32[::1]"


@kernel(f"void({_M}, {_M}, {_V}, {_M})")
def dense_forward_kernel(A, W, b, Z):
    n, j = cuda.grid(2)  # thread (n, j) computes Z[n, j]: sample n, output feature j
    if n < Z.shape[0] and j < Z.shape[1]:
        acc = b[j]
        for k in range(A.shape[1]):
            acc += A[n, k] * W[j, k]
        Z[n, j] = acc


@kernel(f"void({_M}, {_M}, {_M})")
def dense_grad_weight_kernel(dZ, A, dW):
    j, k = cuda.grid(2)  # dW[j, k] = sum over the batch of dZ[n, j] * A[n, k]
    if j < dW.shape[0] and k < dW.shape[1]:
        acc = dZ[0, j] * A[0, k]
        for n in range(1, A.shape[0]):
            acc += dZ[n, j] * A[n, k]
        dW[j, k] = acc


@kernel(f"void({_M}, {_M}, {_M})")
def dense_grad_input_kernel(dZ, W, dA):
    n, k = cuda.grid(2)  # dA[n, k] = sum over output features of dZ[n, j] * W[j, k]
    if n < dA.shape[0] and k < dA.shape[1]:
        acc = dZ[n, 0] * W[0, k]
        for j in range(1, W.shape[0]):
            acc += dZ[n, j] * W[j, k]
        dA[n, k] = acc


@kernel(f"void({_M}, {_V})")
def bias_grad_kernel(dZ, db):
    j = cuda.grid(1)  # db[j] = sum over the batch of dZ[n, j]: one thread per column
    if j < db.size:
        acc = dZ[0, j]
        for n in range(1, dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


def _grid_2d(rows: int, cols: int) -> tuple[int, int]:
    return blocks_for(rows, BLOCK_2D[0]), blocks_for(cols, BLOCK_2D[1])


def dense_forward(A, W, b):
    """``Z = A Wᵀ + b`` on the device; accepts NumPy or device arrays and returns the same kind."""
    A = require_array(A, "A", ndim=2)
    W = require_array(W, "W", ndim=2)
    if W.shape[1] != A.shape[1]:
        raise ValueError(f"W must have shape (out, {A.shape[1]}) to match A {tuple(A.shape)}, got {tuple(W.shape)}.")
    b = require_array(b, "b", shape=(W.shape[0],))
    Z = new_output(A, (A.shape[0], W.shape[0]))
    launch(dense_forward_kernel, _grid_2d(*Z.shape), BLOCK_2D, A, W, b, Z)
    return Z


def dense_backward(dZ, A, W):
    """``(dA, dW, db)`` of the dense layer, as in :func:`nbkit.reference.dense_backward`."""
    A = require_array(A, "A", ndim=2)
    W = require_array(W, "W", ndim=2)
    if W.shape[1] != A.shape[1]:
        raise ValueError(f"W must have shape (out, {A.shape[1]}) to match A {tuple(A.shape)}, got {tuple(W.shape)}.")
    dZ = require_array(dZ, "dZ", shape=(A.shape[0], W.shape[0]))
    dA, dW, db = new_output(A, A.shape), new_output(A, W.shape), new_output(A, (W.shape[0],))
    launch(dense_grad_input_kernel, _grid_2d(*dA.shape), BLOCK_2D, dZ, W, dA)
    launch(dense_grad_weight_kernel, _grid_2d(*dW.shape), BLOCK_2D, dZ, A, dW)
    launch(bias_grad_kernel, blocks_for(db.size, THREADS_1D), THREADS_1D, dZ, db)
    return dA, dW, db


