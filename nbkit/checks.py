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
