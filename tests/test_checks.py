"""Every exercise check passes a correct answer and fails wrong ones with a useful message."""

import numpy as np
import pytest
from numba import cuda

from nbkit.checks import CheckFailed, check_saxpy


@cuda.jit
def saxpy_right(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_swapped(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + alpha * y[i]


@cuda.jit
def saxpy_unguarded(alpha, x, y, out):
    i = cuda.grid(1)
    out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_misses_elements(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size - 3:
        out[i] = alpha * x[i] + y[i]


def test_correct_answer_passes(capsys):
    check_saxpy(saxpy_right)
    assert capsys.readouterr().out.startswith("✓ saxpy is correct on 300 elements")


@pytest.mark.parametrize("wrong, message", [
    (saxpy_swapped, "alpha multiplies y instead of x"),
    (saxpy_unguarded, "guard with `if i < out.size:`"),
    (saxpy_misses_elements, "never written"),
])
def test_wrong_answers_fail_with_a_reason(wrong, message):
    with pytest.raises(CheckFailed, match=message) as info:
        check_saxpy(wrong)
    assert str(info.value).startswith("✗ ")


def test_writes_past_the_end_are_caught_without_indexerror(monkeypatch):
    # On a GPU nothing raises IndexError; the sentinel padding must catch the stray writes.
    import nbkit.checks as checks

    def launch_without_bounds_check(kernel, grid, block, alpha, x, y, out):
        base = out.base if out.base is not None else out
        full = np.zeros(base.size, dtype=np.float32)
        full[: out.size] = alpha * x + y
        full[out.size:] = 1.0  # what an unguarded kernel would scribble past the end
        base[:] = full

    monkeypatch.setattr(checks, "launch", launch_without_bounds_check)
    with pytest.raises(CheckFailed, match="wrote to memory they do not own"):
        check_saxpy(saxpy_right)
