"""Finite-difference gradients: the independent check of every analytic gradient in the course."""

from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences ``(f(x+h) - f(x-h)) / 2h`` of a scalar ``f()`` w.r.t. every entry of ``x``.

    ``x`` is perturbed in place and restored. Use float64: in float32 the rounding error of ``f``
    (about 1e-7 relative) divided by a small ``h`` swamps the derivative.
    """
    if x.dtype != np.float64:
        raise TypeError(f"finite differences need float64 to be meaningful, got {x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writes go to x and grad
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-300) -> float:
    """``max |a - b| / max(max |a|, max |b|)``: the error relative to the size of the gradient.

    Measured against the largest entry rather than entry by entry, because finite differences have an
    absolute error (about 1e-10 here) that would look huge next to a gradient entry of 1e-7.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), floor)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)
