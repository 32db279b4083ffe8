"""Checks for notebook 01 (forward and backward math)."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from ._core import compare, exercise, fail, passed


@exercise("01.1", "write tanh_backward(dout, y)")
def check_tanh_backward(fn) -> None:
    """Exercise 01.1: ``fn(dout, y)`` returns ∂L/∂x for ``y = tanh(x)``, given the upstream gradient."""
    r = np.random.default_rng(11)
    x = r.standard_normal((4, 5)) * 2
    y, dout = np.tanh(x), r.standard_normal((4, 5))
    got = fn(dout, y)
    compare("dx", got, ref.tanh_backward(dout, y), rtol=1e-9, atol=1e-12, causes=[
        (1 - y**2, "you returned tanh'(x) = 1 - y² but forgot to multiply by the upstream gradient dout."),
        (dout * (1 - np.tanh(y) ** 2), "fn receives y = tanh(x), not x: use 1 - y², not 1 - tanh(y)²."),
        (dout * (1 - y), "tanh'(x) is 1 - tanh(x)², so 1 - y², not 1 - y."),
    ])
    passed("tanh backward is dout * (1 - y²): correct.")


@exercise("01.2", "write dense_backward(dZ, A, W)")
def check_dense_backward(fn) -> None:
    """Exercise 01.2: ``fn(dZ, A, W)`` returns ``(dA, dW, db)`` for ``Z = A Wᵀ + b`` (samples as rows)."""
    r = np.random.default_rng(12)
    A, W, dZ = r.standard_normal((5, 3)), r.standard_normal((2, 3)), r.standard_normal((5, 2))
    got = fn(dZ, A, W)
    if not isinstance(got, tuple) or len(got) != 3:
        fail("fn must return a tuple (dA, dW, db).")
    for name, g, w, shape_of in zip(("dA", "dW", "db"), got, ref.dense_backward(dZ, A, W), ("A", "W", "b")):
        if np.shape(g) != w.shape:
            hint = " (transposed?)" if np.shape(g) == w.shape[::-1] else ""
            fail(f"{name} has shape {np.shape(g)}{hint}; a gradient always has the shape of its variable, "
                 f"here {shape_of}: {w.shape}.")
        compare(name, g, w, rtol=1e-9, atol=1e-12)
    passed("dA = dZ W, dW = dZᵀ A, db = column sums of dZ: all three correct.")
