"""Self-checks for the exercises. Each says what is right, or what exactly is wrong.

Convention (fixed for the whole course): the learner's solution cell carries the cell tag
``solution``; the cell right after it calls one ``check_*`` function from here. A passing check
prints a line starting with ✓; a failing one raises :class:`CheckFailed` whose message starts with ✗
and explains the mistake. ``python -m nbkit.strip`` removes the solution cells to make the learner's copy.
"""

from __future__ import annotations

import numpy as np

from .launch import blocks_for, launch


class CheckFailed(AssertionError):
    """The learner's answer is wrong; the message says how."""


def _fail(message: str) -> None:
    raise CheckFailed("✗ " + message)


def _passed(message: str) -> None:
    print("✓ " + message)


def _run_guarded(kernel, n: int, threads: int, inputs: list[np.ndarray], sentinel: float = -7.0):
    """Launch over views of padded buffers, so writes past the end are caught on a GPU too.

    The simulator raises IndexError on out-of-bounds access; a GPU does not check, so the output is a
    view into a larger buffer filled with a sentinel: a changed sentinel means a missing bounds guard.
    """
    out_buf = np.full(n + threads, sentinel, dtype=np.float32)
    out = out_buf[:n]
    try:
        launch(kernel, blocks_for(n, threads), threads, *inputs, out)
    except IndexError as exc:
        _fail(f"a thread accessed an element past the end of an array ({exc}). With {blocks_for(n, threads)} "
              f"blocks of {threads} threads there are more threads than the {n} elements: guard with "
              "`if i < out.size:`.")
    if np.any(out_buf[n:] != sentinel):
        _fail("threads past the end of the array wrote to memory they do not own: add the bounds guard "
              "`if i < out.size:`.")
    return out


def check_saxpy(kernel, n: int = 300, threads: int = 128) -> None:
    """Exercise 00.1: ``out[i] = alpha * x[i] + y[i]`` for float32 vectors, one thread per element.

    The kernel's parameters must be ``(alpha, x, y, out)``.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    alpha = np.float32(2.5)
    expected = alpha * x + y
    out = _run_guarded(kernel, n, threads, [alpha, x, y])
    if not np.allclose(out, expected, rtol=1e-6, atol=1e-6):
        wrong = np.flatnonzero(~np.isclose(out, expected, rtol=1e-6, atol=1e-6))
        i = int(wrong[0])
        hint = ""
        if np.allclose(out, x + alpha * y, rtol=1e-6):
            hint = " It looks like alpha multiplies y instead of x."
        elif np.all(out[wrong] == -7.0):
            hint = " Those elements were never written: does every element get a thread?"
        _fail(f"{wrong.size} of {n} elements are wrong; e.g. out[{i}] = {out[i]:.6g}, expected "
              f"{alpha} * {x[i]:.6g} + {y[i]:.6g} = {expected[i]:.6g}.{hint}")
    _passed(f"saxpy is correct on {n} elements with {blocks_for(n, threads)} blocks of {threads} threads "
            f"({blocks_for(n, threads) * threads - n} idle threads were guarded).")


def _compare(name: str, got, want, rtol: float = 1e-6, atol: float = 0.0) -> None:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != np.shape(want):
        _fail(f"{name} has shape {got.shape}, expected {np.shape(want)}.")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        i = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
        _fail(f"{name} is wrong: at index {tuple(int(j) for j in i)} you have {got[i]:.6g}, expected {want[i]:.6g}.")


def check_tanh_backward(fn) -> None:
    """Exercise 01.1: ``fn(dout, y)`` returns ∂L/∂x for ``y = tanh(x)``, given the upstream gradient."""
    from . import reference as ref

    r = np.random.default_rng(11)
    x = r.standard_normal((4, 5)) * 2
    y, dout = np.tanh(x), r.standard_normal((4, 5))
    got = np.asarray(fn(dout, y), dtype=np.float64)
    want = ref.tanh_backward(dout, y)
    if got.shape == want.shape and not np.allclose(got, want):
        if np.allclose(got, 1 - y**2):
            _fail("you returned tanh'(x) = 1 - y² but forgot to multiply by the upstream gradient dout.")
        if np.allclose(got, dout * (1 - np.tanh(y) ** 2)):
            _fail("fn receives y = tanh(x), not x: use 1 - y², not 1 - tanh(y)².")
        if np.allclose(got, dout * (1 - y)):
            _fail("tanh'(x) is 1 - tanh(x)², so 1 - y², not 1 - y.")
    _compare("dx", got, want, rtol=1e-9)
    _passed("tanh backward is dout * (1 - y²): correct.")


def check_dense_backward(fn) -> None:
    """Exercise 01.2: ``fn(dZ, A, W)`` returns ``(dA, dW, db)`` for ``Z = A Wᵀ + b`` (samples as rows)."""
    from . import reference as ref

    r = np.random.default_rng(12)
    A, W, dZ = r.standard_normal((5, 3)), r.standard_normal((2, 3)), r.standard_normal((5, 2))
    got = fn(dZ, A, W)
    if not isinstance(got, tuple) or len(got) != 3:
        _fail("fn must return a tuple (dA, dW, db).")
    for name, g, w, shape_of in zip(("dA", "dW", "db"), got, ref.dense_backward(dZ, A, W), ("A", "W", "b")):
        if np.shape(g) != w.shape:
            hint = " (transposed?)" if np.shape(g) == w.shape[::-1] else ""
            _fail(f"{name} has shape {np.shape(g)}{hint}; a gradient always has the shape of its variable, "
                  f"here {shape_of}: {w.shape}.")
        _compare(name, g, w, rtol=1e-9)
    _passed("dA = dZ W, dW = dZᵀ A, db = column sums of dZ: all three correct.")


def check_sigmoid_example(dW, db) -> None:
    """Exercise 02.1: the gradients of the article's 3→2 example with sigmoid in place of ReLU."""
    X, W, b, Y = (np.array([1.0, 2, 3]), np.array([[1.0, 2, 3], [4, 5, 6]]), np.array([1.0, 2]), np.array([0.0, 1]))
    s = 1 / (1 + np.exp(-(W @ X + b)))
    delta = (s - Y) * s * (1 - s)
    if np.shape(dW) == (2, 3) and np.allclose(dW, np.outer(s - Y, X)):
        _fail("you left out the sigmoid's derivative σ'(z) = σ(z)(1 - σ(z)) from δ.")
    _compare("dW", dW, np.outer(delta, X), rtol=1e-6, atol=1e-40)
    _compare("db", db, delta, rtol=1e-6, atol=1e-40)
    _passed(f"correct: δ = {delta[0]:.4g}, {delta[1]:.4g}. The sigmoid saturates at z = 15 and 34, so the "
            "gradient almost vanishes.")
