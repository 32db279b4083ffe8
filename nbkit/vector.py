"""The course's first kernels: vector add, and a kernel that reports which thread touched what."""

from __future__ import annotations

import numpy as np
from numba import cuda

from .launch import blocks_for, launch
from .registry import kernel
from .validate import require_array


@kernel("void(float32[::1], float32[::1], float32[::1])")
def vector_add(a, b, out):
    i = cuda.grid(1)  # = blockIdx.x * blockDim.x + threadIdx.x
    if i < out.size:  # the guard: the last block may have more threads than elements left
        out[i] = a[i] + b[i]


@kernel("void(int32[::1], int32[::1], int32[::1])")
def record_thread_ids(block_of, thread_of, global_of):
    i = cuda.grid(1)
    if i < global_of.size:
        block_of[i] = cuda.blockIdx.x
        thread_of[i] = cuda.threadIdx.x
        global_of[i] = i


def add(a: np.ndarray, b: np.ndarray, threads_per_block: int = 128) -> np.ndarray:
    """``a + b`` for float32 vectors, computed by :func:`vector_add`, one thread per element."""
    a = require_array(a, "a", ndim=1, dtype=np.float32)
    b = require_array(b, "b", shape=a.shape, dtype=np.float32)
    out = np.empty_like(a)
    launch(vector_add, blocks_for(a.size, threads_per_block), threads_per_block, a, b, out)
    return out


def thread_map(n: int, threads_per_block: int) -> dict[str, np.ndarray]:
    """Launch :func:`record_thread_ids` over ``n`` elements and return who wrote each element."""
    block_of = np.full(n, -1, dtype=np.int32)
    thread_of = np.full(n, -1, dtype=np.int32)
    global_of = np.full(n, -1, dtype=np.int32)
    blocks = blocks_for(n, threads_per_block)
    launch(record_thread_ids, blocks, threads_per_block, block_of, thread_of, global_of)
    return {"block": block_of, "thread": thread_of, "global": global_of,
            "blocks": blocks, "threads_per_block": threads_per_block}
