"""Exercises 02.1-02.3 (the worked example): answers written from the learner notebook."""

import numpy as np

from ._answer import Answer

# ---- 02.1 gradient descent step


def gd_ok(X, Y, W, b, lr):
    """Correct: batch backward, sum loss, new arrays."""
    Z = X @ W.T + b
    A = np.maximum(Z, 0)
    d = (A - Y) * (Z > 0)
    return W - lr * d.T @ X, b - lr * d.sum(axis=0)


def gd_loops(X, Y, W, b, lr):
    """Correct: per-sample loop accumulating outer products."""
    dW = np.zeros_like(W)
    db = np.zeros_like(b)
    for x, y in zip(X, Y):
        z = W @ x + b
        d = (np.maximum(z, 0) - y) * (z > 0)
        dW += np.outer(d, x)
        db += d
    return W - lr * dW, b - lr * db


def gd_inplace(X, Y, W, b, lr):
    """Correct in value, updates copies: W.copy() then -=."""
    Z = X @ W.T + b
    d = (np.maximum(Z, 0) - Y) * (Z > 0)
    W2, b2 = W.copy(), b.copy()
    W2 -= lr * d.T @ X
    b2 -= lr * d.sum(axis=0)
    return W2, b2


def gd_mean(X, Y, W, b, lr):
    """Wrong: divides by N (mean loss instead of the sum)."""
    Z = X @ W.T + b
    d = (np.maximum(Z, 0) - Y) * (Z > 0) / X.shape[0]
    return W - lr * d.T @ X, b - lr * d.sum(axis=0)


def gd_no_relu_mask(X, Y, W, b, lr):
    """Wrong: forgets the ReLU derivative (units that are off still get a gradient)."""
    Z = X @ W.T + b
    d = np.maximum(Z, 0) - Y
    return W - lr * d.T @ X, b - lr * d.sum(axis=0)


def gd_plus(X, Y, W, b, lr):
    """Wrong: gradient ascent (+ lr)."""
    Z = X @ W.T + b
    d = (np.maximum(Z, 0) - Y) * (Z > 0)
    return W + lr * d.T @ X, b + lr * d.sum(axis=0)


def gd_first_sample(X, Y, W, b, lr):
    """Wrong: uses only the first sample (written for the article's batch of 1)."""
    x, y = X[0], Y[0]
    z = W @ x + b
    d = (np.maximum(z, 0) - y) * (z > 0)
    return W - lr * np.outer(d, x), b - lr * d


def gd_mask_A(X, Y, W, b, lr):
    """Wrong: ReLU' evaluated as [A >= 0] (always 1)."""
    Z = X @ W.T + b
    A = np.maximum(Z, 0)
    d = (A - Y) * (A >= 0)
    return W - lr * d.T @ X, b - lr * d.sum(axis=0)


def gd_no_bias(X, Y, W, b, lr):
    """Wrong: b is not updated."""
    Z = X @ W.T + b
    d = (np.maximum(Z, 0) - Y) * (Z > 0)
    return W - lr * d.T @ X, b


# ---- 02.2 hidden delta


def hd_ok(delta2, W2, Z1):
    """Correct: (delta2 @ W2) * [Z1 > 0]."""
    return (delta2 @ W2) * (Z1 > 0)


def hd_where(delta2, W2, Z1):
    """Correct: np.where and einsum."""
    return np.where(Z1 > 0, np.einsum("no,oh->nh", delta2, W2), 0.0)


def hd_article(delta2, W2, Z1):
    """Wrong: delta2 @ W2 without the hidden layer's ReLU'(Z1) mask."""
    return delta2 @ W2


def hd_W2T(delta2, W2, Z1):
    """Wrong: masks with the sign of delta2 W2 instead of [Z1 > 0]."""
    return (delta2 @ W2) * (delta2 @ W2 > 0)


def hd_sigmoid_mask(delta2, W2, Z1):
    """Wrong: multiplies by Z1 itself instead of the 0/1 mask."""
    return (delta2 @ W2) * np.maximum(Z1, 0)


def hd_mask_first(delta2, W2, Z1):
    """Wrong: masks the output-layer delta before W2 with a mask taken from the first `out` columns of Z1."""
    out = delta2.shape[1]
    return (delta2 * (Z1[:, :out] > 0)) @ W2


# ---- 02.3 sigmoid example

_x = np.array([1.0, 2.0, 3.0])
_W = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
_b = np.array([1.0, 2.0])
_y = np.array([0.0, 1.0])


def sig_exact():
    """Correct: sigma'(z) = sigma(z) sigma(-z) (the check's own derivative), with a - y as written (a - y still
    rounds at z = 34: 3.6 % off, half the textbook formula's 7 %)."""
    z = _W @ _x + _b
    s = 1 / (1 + np.exp(-z))
    d = (s - _y) * s * (1 / (1 + np.exp(z)))
    return np.outer(d, _x), d


def sig_fully_exact():
    """Correct: a - y and sigma'(z) both without cancellation (a - 1 = -sigma(-z))."""
    z = _W @ _x + _b
    s = 1 / (1 + np.exp(-z))
    sm = 1 / (1 + np.exp(z))
    a_minus_y = np.where(_y == 1, -sm, s - _y)
    d = a_minus_y * s * sm
    return np.outer(d, _x), d


def sig_textbook():
    """Correct (accepted with a note): s (1 - s), which cancels at z = 34."""
    z = _W @ _x + _b
    s = 1 / (1 + np.exp(-z))
    d = (s - _y) * s * (1 - s)
    return np.outer(d, _x), d


def sig_relu_delta():
    """Wrong: keeps the ReLU's derivative (delta = a - y)."""
    z = _W @ _x + _b
    s = 1 / (1 + np.exp(-z))
    d = s - _y
    return np.outer(d, _x), d


def sig_transposed():
    """Wrong: dW = x delta^T, shape (3, 2)."""
    z = _W @ _x + _b
    s = 1 / (1 + np.exp(-z))
    d = (s - _y) * s * (1 - s)
    return np.outer(_x, d), d


def sig_no_bias():
    """Wrong: forgets b in z."""
    z = _W @ _x
    s = 1 / (1 + np.exp(-z))
    d = (s - _y) * s * (1 - s)
    return np.outer(d, _x), d


def sig_float32():
    """Wrong: computes in float32: sigma(34) rounds to exactly 1, so every gradient is 0 (the lesson's point lost)."""
    z = (_W @ _x + _b).astype(np.float32)
    s = np.float32(1) / (np.float32(1) + np.exp(-z))
    d = (s - _y.astype(np.float32)) * s * (np.float32(1) - s)
    return np.outer(d, _x.astype(np.float32)), d


ANSWERS = [
    Answer("02.1", "batch", "check_gradient_descent_step", (gd_ok,), True),
    Answer("02.1", "per-sample-loop", "check_gradient_descent_step", (gd_loops,), True),
    Answer("02.1", "copy-then-update", "check_gradient_descent_step", (gd_inplace,), True),
    Answer("02.1", "mean", "check_gradient_descent_step", (gd_mean,), False),
    Answer("02.1", "no-relu-mask", "check_gradient_descent_step", (gd_no_relu_mask,), False),
    Answer("02.1", "ascent", "check_gradient_descent_step", (gd_plus,), False),
    Answer("02.1", "first-sample-only", "check_gradient_descent_step", (gd_first_sample,), False),
    Answer("02.1", "mask-on-A", "check_gradient_descent_step", (gd_mask_A,), False),
    Answer("02.1", "bias-not-updated", "check_gradient_descent_step", (gd_no_bias,), False),
    Answer("02.2", "matmul-mask", "check_hidden_delta", (hd_ok,), True),
    Answer("02.2", "where-einsum", "check_hidden_delta", (hd_where,), True),
    Answer("02.2", "no-hidden-relu", "check_hidden_delta", (hd_article,), False),
    Answer("02.2", "mask-from-dA-sign", "check_hidden_delta", (hd_W2T,), False),
    Answer("02.2", "times-relu-Z1", "check_hidden_delta", (hd_sigmoid_mask,), False),
    Answer("02.2", "mask-before-W2", "check_hidden_delta", (hd_mask_first,), False),
    Answer("02.3", "exact", "check_sigmoid_example", (sig_exact,), True),
    Answer("02.3", "fully-exact", "check_sigmoid_example", (sig_fully_exact,), True),
    Answer("02.3", "textbook", "check_sigmoid_example", (sig_textbook,), True),
    Answer("02.3", "relu-delta", "check_sigmoid_example", (sig_relu_delta,), False),
    Answer("02.3", "dW-transposed", "check_sigmoid_example", (sig_transposed,), False),
    Answer("02.3", "no-bias", "check_sigmoid_example", (sig_no_bias,), False),
    Answer("02.3", "float32", "check_sigmoid_example", (sig_float32,), False),
]
