"""Reductions: many numbers to one (or one per column).

Two ways to sum a vector: every thread adds into one cell with ``cuda.atomic.add`` (short, but the
additions happen in whatever order the hardware serves them, so float results can differ from run to
run), or a tree inside each block in shared memory (a fixed order: the same bits every time).
"""

from __future__ import annotations

from numba import cuda, float32

from nbkit.core.launch import blocks_for, launch, launch_1d, threads_1d
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array

TREE_MAX = 128  # the most threads (and shared-memory slots) per block of the tree reduction


@kernel("void(float32[::1], float32[::1])")
def sum_atomic_kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        cuda.atomic.add(out, 0, x[i])


@kernel("void(float32[::1], float32[::1])")
def sum_tree_kernel(x, partial):
    buf = cuda.shared.array(TREE_MAX, float32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    buf[t] = x[i] if i < x.size else float32(0)
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2  # blockDim.x is a power of two, at most TREE_MAX
    while stride > 0:  # e.g. 128 -> 64 -> ... -> 1 values, halving each step
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]  # one partial sum per block


@kernel("void(float32[:, ::1], float32[::1])")
def column_sum_kernel(M, out):
    j = cuda.grid(1)  # one thread per column, summing down the rows in a fixed order
    if j < out.size:
        acc = float32(0)
        for n in range(M.shape[0]):
            acc += M[n, j]
        out[j] = acc


def sum_atomic(x):
    """Sum of a float32 vector with one atomic add per element (order not fixed)."""
    x = require_array(x, "x", ndim=1)
    out = new_output(x, (1,), zeros=True)
    launch_1d(sum_atomic_kernel, x.size, x, out)
    return out


def sum_tree(x):
    """Sum of a float32 vector by block-wise trees, repeated on the partial sums until one is left."""
    x = require_array(x, "x", ndim=1)
    while True:
        threads = threads_1d(x.size, TREE_MAX)  # a power of two, as the tree halves it
        blocks = blocks_for(x.size, threads)
        partial = new_output(x, (blocks,))
        launch(sum_tree_kernel, blocks, threads, x, partial)
        if blocks == 1:
            return partial
        x = partial


def column_sum(M):
    """Sums of the columns of a float32 matrix: the bias gradient of a dense layer."""
    M = require_array(M, "M", ndim=2)
    out = new_output(M, (M.shape[1],))
    launch_1d(column_sum_kernel, out.size, M, out)
    return out
