"""The course's first kernel: vector add, one thread per element."""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbkit.core.launch import blocks_for, launch
from nbkit.core.registry import kernel
from nbkit.core.validate import require_array


@kernel("void(float32[::1], float32[::1], float32[::1])")
def vector_add(a, b, out):
    i = cuda.grid(1)  # = blockIdx.x * blockDim.x + threadIdx.x
    if i < out.size:  # the guard: the last block may have more threads than elements left
        out[i] = a[i] + b[i]


def add(a: np.ndarray, b: np.ndarray, threads_per_block: int = 128) -> np.ndarray:
    """``a + b`` for float32 vectors, computed by :func:`vector_add`, one thread per element."""
    a = require_array(a, "a", ndim=1, dtype=np.float32)
    b = require_array(b, "b", shape=a.shape, dtype=np.float32)
    out = np.empty_like(a)
    launch(vector_add, blocks_for(a.size, threads_per_block), threads_per_block, a, b, out)
    return out
