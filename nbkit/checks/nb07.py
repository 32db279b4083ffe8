"""Checks for notebook 07 (training)."""

from __future__ import annotations

import numpy as np

from ._core import compare, exercise, fail, passed


@exercise("07.1", "write the class Sigmoid with forward and backward")
def check_sigmoid_layer(layer_cls) -> None:
    """Exercise 07.1: a ``Sigmoid`` layer with ``forward(x)`` and ``backward(dout)``, like ``nbkit.layers.Tanh``."""
    from numba import cuda

    from .. import reference as ref

    r = np.random.default_rng(71)
    x = (r.standard_normal((5, 7)) * 3).astype(np.float32)
    dout = r.standard_normal((5, 7)).astype(np.float32)
    layer = layer_cls()
    y = layer.forward(cuda.to_device(x))
    y = y.copy_to_host() if hasattr(y, "copy_to_host") else np.asarray(y)
    compare("forward", y, ref.sigmoid_forward(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    dx = layer.backward(cuda.to_device(dout))
    dx = dx.copy_to_host() if hasattr(dx, "copy_to_host") else np.asarray(dx)
    want = ref.sigmoid_backward(dout.astype(np.float64), ref.sigmoid_forward(x.astype(np.float64)))
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    if np.allclose(dx, dout * (1 / (1 + np.exp(-s))) * (1 - 1 / (1 + np.exp(-s))), rtol=1e-4, atol=1e-6):
        fail("backward applied the sigmoid to its output again: sigmoid_backward takes y = σ(x) itself.")
    if np.allclose(dx, dout * ref.sigmoid_backward(np.ones_like(x), x.astype(np.float64)), rtol=1e-4, atol=1e-6):
        fail("backward passed the input x where sigmoid_backward needs the forward output y = σ(x).")
    compare("backward", dx, want, rtol=1e-4, atol=1e-6)
    passed("the Sigmoid layer's forward and backward agree with the reference.")
