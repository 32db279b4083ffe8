"""Loss kernels. MSE here; softmax + cross-entropy join in notebook 05."""

from __future__ import annotations

import numpy as np
from numba import cuda

from .launch import blocks_for, launch
from .registry import kernel
from .validate import new_output, require_array

THREADS = 128


@kernel("void(float32[::1], float32[::1], float32, float32[::1])")
def scaled_difference_kernel(pred, target, scale, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = scale * (pred[i] - target[i])


def mse_backward(pred, target, scale: float | None = None):
    """Gradient of the squared error: ``scale * (pred - target)``.

    The default ``scale = 2 / pred.size`` is the gradient of PyTorch's ``mse_loss`` (the mean);
    ``scale = 1`` is the gradient of ``½ Σ (pred - target)²``. Notebook 01 explains both.
    """
    pred = require_array(pred, "pred")
    target = require_array(target, "target", shape=pred.shape)
    scale = np.float32(2.0 / pred.size if scale is None else scale)
    flat_p, flat_t = pred.reshape(pred.size), target.reshape(target.size)
    out = new_output(flat_p, flat_p.shape)
    launch(scaled_difference_kernel, blocks_for(out.size, THREADS), THREADS, flat_p, flat_t, scale, out)
    return out.reshape(pred.shape)
