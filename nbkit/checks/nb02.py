"""Checks for notebook 02 (the worked 3→2 example)."""

from __future__ import annotations

import numpy as np

from ._core import compare, passed


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) without overflow for large |z|."""
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def check_sigmoid_example(dW, db) -> None:
    """Exercise 02.1: the gradients of the article's 3→2 example with sigmoid in place of ReLU.

    The expected δ uses σ'(z) = σ(z) σ(-z), which keeps full relative precision where σ(z) ≈ 1;
    ``s * (1 - s)`` cancels there (at z = 34 it is wrong by 7 %), so it must not be the reference.
    """
    X, W, b, Y = (np.array([1.0, 2, 3]), np.array([[1.0, 2, 3], [4, 5, 6]]), np.array([1.0, 2]), np.array([0.0, 1]))
    z = W @ X + b
    s = _sigmoid(z)
    delta = (s - Y) * s * _sigmoid(-z)
    # (s - Y) itself cancels for the second output (s ≈ 1 = Y): 1 - σ(34) is computed as σ(-34).
    delta[1] = -_sigmoid(-z[1]) * s[1] * _sigmoid(-z[1])
    s_naive = 1 / (1 + np.exp(-z))
    naive = (s_naive - Y) * s_naive * (1 - s_naive)  # the textbook formula, as a learner writes it
    dW_naive = np.shape(dW) == (2, 3) and np.allclose(dW, np.outer(naive, X), rtol=1e-6, atol=1e-300)
    if dW_naive:
        compare("db", db, naive, rtol=1e-6, atol=1e-300)
        passed(f"correct formula: δ = {naive[0]:.4g}, {naive[1]:.4g}. Note: the exact δ₂ is {delta[1]:.4g}; yours is "
               f"{abs(naive[1] / delta[1] - 1):.0%} off because σ(34) rounds to within one float64 step of 1, so "
               "σ(34) - 1 and 1 - σ(34) cancel. Computing 1 - σ(z) as σ(-z) = 1 / (1 + e^z) keeps full precision.")
        return
    compare("dW", dW, np.outer(delta, X), rtol=1e-6, atol=1e-300, causes=[
        (np.outer(s - Y, X), "you left out the sigmoid's derivative σ'(z) = σ(z)(1 - σ(z)) from δ."),
    ])
    compare("db", db, delta, rtol=1e-6, atol=1e-300)
    passed(f"correct: δ = {delta[0]:.4g}, {delta[1]:.4g}. The sigmoid saturates at z = 15 and 34, so the "
           "gradient almost vanishes.")
