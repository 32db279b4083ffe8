"""The CUDA-kernel backend: every :class:`nbkit.nn.backend.Backend` operation as a launch of the course's kernels.

Arrays live in device memory; a training step copies back only the loss. On a GPU the kernels run there; in
the simulator each CUDA thread runs as Python code (tens of µs each), so the few choices below that trade GPU
speed for simulator speed depend on :data:`nbkit.core.mode.MODE` and say so where they are made.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbkit.core.launch import launches_compiled
from nbkit.core.mode import MODE
from nbkit.kernels import activations, conv, dense, losses, matmul, pool
from nbkit.nn.backend import Param
from nbkit.nn.optim import sgd_update_kernel

# Simulator-only tuning: the tiled matmul (notebook 04) is the faster kernel on a GPU, but it always launches
# 16 × 16 threads per tile, while the naive kernel's block fits the matrix. The simulator trains small networks
# (notebook 07's 2-8-2, batches of 16), and at their sizes the naive kernel is the faster one: 1-4 ms against
# 10-13 ms per product (measured in the simulator, 2026-11-30, 2-core machine). At LeNet's dense sizes the tiled
# one is faster in the simulator too (64x400 by 400x120: 3.0 s against 5.5 s), but the course runs those
# compiled (compiled_launches()), where matmul_method() picks by size. Same results either way (tested in tests/test_matmul.py).
MATMUL_METHOD = "naive" if MODE.slow_launches else "tiled"


def matmul_method(rows: int) -> str:
    """The matmul kernel for a dense layer on a batch of ``rows``: :data:`MATMUL_METHOD`, except for launches the
    CPU executor compiles (cpu mode, ``compiled_launches()``): there the tiled kernel from one tile of rows up, the
    naive one below, where a 16 × 16 tile is mostly empty rows. Measured (LeNet's three dense layers, forward and
    backward, one core, 2026-11-29): tiled 6.4 vs naive 9.5 ms at 64 rows, 3.3 vs 3.6 at 16, 3.2 vs 1.9 at 4.
    """
    if launches_compiled():
        return "tiled" if rows >= matmul.TILE else "naive"
    return MATMUL_METHOD


class KernelBackend:
    """The course's CUDA kernels behind the layer API (on a GPU, or in the simulator)."""

    name = "CUDA kernels"

    def asarray(self, a: np.ndarray):
        return cuda.to_device(np.ascontiguousarray(a, dtype=np.float32))

    def to_host(self, a) -> np.ndarray:
        return a.copy_to_host() if hasattr(a, "copy_to_host") else np.array(a)

    def dense_forward(self, x, W, b):
        return dense.dense_forward(x, W, b, matmul_method(x.shape[0]))

    def dense_backward(self, dy, x, W):
        return dense.dense_backward(dy, x, W, matmul_method(x.shape[0]))

    def relu_forward(self, x):
        return activations.relu_forward(x)

    def relu_backward(self, dout, x):
        return activations.relu_backward(dout, x)

    def tanh_forward(self, x):
        return activations.tanh_forward(x)

    def tanh_backward(self, dout, y):
        return activations.tanh_backward(dout, y)

    def conv2d_forward(self, x, w, b):
        return conv.conv2d_forward(x, w, b), x  # the gather backward needs only x itself

    def conv2d_backward(self, dy, saved, w, need_dx: bool = True):
        return conv.conv2d_backward(dy, saved, w, need_dx=need_dx)

    def maxpool2x2_forward(self, x):
        return pool.maxpool2x2_forward(x)

    def maxpool2x2_backward(self, dy, argmax, input_shape):
        return pool.maxpool2x2_backward(dy, argmax, input_shape)

    def softmax_xent_forward(self, logits, labels):
        return losses.softmax_xent_forward(logits, labels)

    def softmax_xent_backward(self, probs, labels):
        return losses.softmax_xent_backward(probs, labels)

    def sgd_update(self, p: Param, hyper: tuple, nesterov: int, first_step: bool) -> None:
        sgd_update_kernel(p, hyper, nesterov, first_step)

    def __repr__(self) -> str:
        return f"<backend: {self.name}>"


KERNEL_BACKEND = KernelBackend()
