"""Exercise 00.1 (saxpy): the check passes right answers (any thread mapping) and names the mistake in wrong ones."""

import pytest
from conftest import FLOAT32_NOTE
from numba import cuda

from nbkit.checks import CheckFailed, check_saxpy


@cuda.jit
def saxpy_right(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_grid_stride(alpha, x, y, out):  # another valid thread mapping
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = y[i] + x[i] * alpha


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


@cuda.jit
def saxpy_parameter_order(x, alpha, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_float64(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i] * 1.0000001  # a float64 literal: the arithmetic is promoted


def test_correct_answers_pass(capsys):
    for kernel in (saxpy_right, saxpy_grid_stride):
        check_saxpy(kernel)
        out = capsys.readouterr().out
        assert out.startswith("✓ saxpy is correct on 300 elements"), out
        assert out.rstrip().endswith("; " + FLOAT32_NOTE), out


@pytest.mark.parametrize("wrong, message", [
    (saxpy_swapped, "alpha multiplies y instead of x"),
    (saxpy_unguarded, "bounds guard"),
    (saxpy_misses_elements, "never written"),
    (saxpy_parameter_order, r"parameters are \(x, alpha, y, out\).*saxpy\(alpha, x, y, out\)"),
    pytest.param(saxpy_float64, "float64 instruction", marks=pytest.mark.compiler),
])
def test_wrong_answers_fail_with_a_reason(wrong, message):
    with pytest.raises(CheckFailed, match=message) as info:
        check_saxpy(wrong)
    assert str(info.value).startswith("✗ ")


def test_wrong_answer_names_the_first_wrong_index():
    with pytest.raises(CheckFailed, match=r"the first is out\[0\]: you have"):
        check_saxpy(saxpy_swapped)


def test_unsolved_stub_says_not_solved(capsys):
    @cuda.jit
    def saxpy(alpha, x, y, out):
        raise NotImplementedError()

    check_saxpy(saxpy)
    assert capsys.readouterr().out.startswith("◻ Exercise 00.1 not solved yet")
