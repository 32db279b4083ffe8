"""Exercise 00.1 (saxpy): the check passes right answers (any thread mapping) and names the mistake in wrong ones."""

import numpy as np
import pytest
from conftest import FLOAT32_NOTE
from numba import cuda

from nbkit.checks import CheckFailed, check_saxpy
from nbkit.checks.nb00 import SAXPY


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


# ------------------------------------------------------------------ varied cases (issue 16): fail on the old single case


@cuda.jit
def saxpy_hard_coded_size(alpha, x, y, out):  # the statement's n = 300 copied into the guard
    i = cuda.grid(1)
    if i < 300:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_hard_coded_alpha(alpha, x, y, out):  # the statement's example alpha instead of the parameter
    i = cuda.grid(1)
    if i < out.size:
        out[i] = np.float32(2.5) * x[i] + y[i]


def test_a_size_copied_from_the_statement_fails():
    with pytest.raises(CheckFailed, match="a thread accessed an element outside an array.*not a hard-coded size"):
        check_saxpy(saxpy_hard_coded_size)


def test_alpha_copied_from_the_statement_fails():
    verdict = SAXPY.run(saxpy_hard_coded_alpha)
    assert not verdict.passed and verdict.case.alpha == -1.5, verdict
    assert verdict.message.startswith("✗ out is wrong at 1 of 1 elements; the first is out[0]"), verdict.message


def test_the_success_message_lists_every_case(capsys):
    check_saxpy(saxpy_right)
    out = capsys.readouterr().out
    assert "and on 1 with alpha = -1.5, 97 with alpha = 0.75, 1031 with alpha = -3.0;" in out, out


def test_off_by_one_is_not_claimed_for_a_single_element():
    @cuda.jit
    def saxpy_wrong_for_one(alpha, x, y, out):  # right for n > 1, wrong when out has one element
        i = cuda.grid(1)
        if i < out.size:
            out[i] = alpha * x[i] + y[i] if out.size > 1 else x[i]

    verdict = SAXPY.run(saxpy_wrong_for_one)
    assert verdict.case.n == 1 and verdict.cause is None, verdict


@cuda.jit
def saxpy_thread_index_only(alpha, x, y, out):  # every block writes the first blockDim.x elements
    i = cuda.threadIdx.x
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


def test_an_index_without_the_block_is_named():
    with pytest.raises(CheckFailed, match=r"out\[128\].*only out\[0\] to out\[127\] were written.*i = cuda.threadIdx.x"):
        check_saxpy(saxpy_thread_index_only)


def test_elements_missed_at_the_end_are_not_blamed_on_the_block_index():
    verdict = SAXPY.run(saxpy_misses_elements)
    assert "never written" in verdict.message and "threadIdx.x gives" not in verdict.message, verdict
