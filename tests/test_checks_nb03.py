"""Exercise checks of notebook 03: each passes correct answers (other mappings too) and names wrong ones."""

import re

import numpy as np
import pytest
from conftest import needs_compiler
from numba import cuda, float32

from nbkit.checks import (
    CheckFailed,
    check_axpy_grid_stride,
    check_blur3,
    check_row_sum,
    check_transpose,
)
from nbkit.checks.exercise import Case
from nbkit.checks.nb03 import AXPY_GRID_STRIDE, BLUR3, ROW_SUM, TRANSPOSE

# ------------------------------------------------------------------ 03.1 row sums


@cuda.jit
def row_sum_right(M, out):
    r = cuda.grid(1)
    if r < out.size:
        acc = float32(0)
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def row_sum_grid_stride_backwards(M, out):
    for r in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        acc = float32(0)
        for j in range(M.shape[1] - 1, -1, -1):  # another summation order
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def row_sum_columns(M, out):
    r = cuda.grid(1)
    if r < M.shape[1] and r < out.size:
        acc = float32(0)
        for i in range(M.shape[0]):
            acc += M[i, r]
        out[r] = acc


@cuda.jit
def row_sum_unguarded(M, out):
    r = cuda.grid(1)
    acc = float32(0)
    for j in range(M.shape[1]):
        acc += M[r, j]
    out[r] = acc


@cuda.jit
def row_sum_into_output(M, out):
    r = cuda.grid(1)
    if r < out.size:
        for j in range(M.shape[1]):
            out[r] += M[r, j]


@cuda.jit
def row_sum_misses_last_column(M, out):
    r = cuda.grid(1)
    if r < out.size:
        acc = float32(0)
        for j in range(M.shape[1] - 1):
            acc += M[r, j]
        out[r] = acc


def test_row_sum_check(capsys):
    check_row_sum(row_sum_right)
    check_row_sum(row_sum_grid_stride_backwards)
    assert capsys.readouterr().out.count("✓ row sums") == 2
    with pytest.raises(CheckFailed, match="sum of column i"):
        check_row_sum(row_sum_columns)
    with pytest.raises(CheckFailed, match="a thread accessed an element outside an array"):
        check_row_sum(row_sum_unguarded)
    with pytest.raises(CheckFailed, match=r"out\[0\].*accumulated into out\[r\] directly"):
        check_row_sum(row_sum_into_output)
    with pytest.raises(CheckFailed, match="last column is missing"):
        check_row_sum(row_sum_misses_last_column)


# ------------------------------------------------------------------ 03.2 transpose (2-D, any mapping)


@cuda.jit
def transpose_x_along_columns(M, out):
    j, i = cuda.grid(2)  # x along the columns of M (coalesced reads)
    if i < M.shape[0] and j < M.shape[1]:
        out[j, i] = M[i, j]


@cuda.jit
def transpose_x_along_rows(M, out):
    i, j = cuda.grid(2)  # x along the rows of M = the columns of out (coalesced writes)
    if i < M.shape[0] and j < M.shape[1]:
        out[j, i] = M[i, j]


@cuda.jit
def transpose_grid_stride(M, out):
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, out.shape[0], sy):
        for j in range(x0, out.shape[1], sx):
            out[i, j] = M[j, i]


@cuda.jit
def transpose_guard_uses_rows_twice(M, out):
    j, i = cuda.grid(2)
    if i < M.shape[0] and j < M.shape[0]:  # the second bound should be M.shape[1]
        out[j, i] = M[i, j]


@cuda.jit
def transpose_unguarded(M, out):
    j, i = cuda.grid(2)
    out[j, i] = M[i, j]


@cuda.jit
def transpose_flat_copy(M, out):
    j, i = cuda.grid(2)
    if i < M.shape[0] and j < M.shape[1]:
        k = i * M.shape[1] + j  # copies M's memory order into out's: a reshape, not a transpose
        out[k // out.shape[1], k % out.shape[1]] = M[i, j]


def test_transpose_check_accepts_every_mapping(capsys):
    for kernel in (transpose_x_along_columns, transpose_x_along_rows, transpose_grid_stride):
        check_transpose(kernel)
    assert capsys.readouterr().out.count("✓ out = Mᵀ") == 3


def test_transpose_check_names_the_mistake():
    with pytest.raises(CheckFailed, match=r"out\[13, 0\].*never written"):
        check_transpose(transpose_guard_uses_rows_twice)
    with pytest.raises(CheckFailed, match="a thread accessed an element outside an array"):
        check_transpose(transpose_unguarded)
    with pytest.raises(CheckFailed, match=r"out\[0, 1\].*wrong place: out\[j, i\] must receive M\[i, j\]"):
        check_transpose(transpose_flat_copy)


# ------------------------------------------------------------------ 03.3 grid-stride axpy


@cuda.jit
def axpy_grid_stride(a, x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = a * x[i] + y[i]


@cuda.jit
def axpy_grid_stride_while(a, x, y):
    i = cuda.threadIdx.x + cuda.blockIdx.x * cuda.blockDim.x
    stride = cuda.blockDim.x * cuda.gridDim.x
    while i < y.size:
        y[i] += a * x[i]
        i += stride


@cuda.jit
def axpy_one_per_thread(a, x, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = a * x[i] + y[i]


@cuda.jit
def axpy_stride_block(a, x, y):
    for i in range(cuda.grid(1), y.size, cuda.blockDim.x):
        y[i] = a * x[i] + y[i]


@cuda.jit
def axpy_start_thread_idx(a, x, y):
    for i in range(cuda.threadIdx.x, y.size, cuda.gridsize(1)):
        y[i] = a * x[i] + y[i]


@cuda.jit
def axpy_overwrites(a, x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = a * x[i]


@cuda.jit
def axpy_contiguous_chunks(a, x, y):
    # another correct mapping: each thread takes one contiguous chunk of ceil(n / threads) elements
    t, total = cuda.grid(1), cuda.gridsize(1)
    per = (y.size + total - 1) // total
    for i in range(t * per, min((t + 1) * per, y.size)):
        y[i] = a * x[i] + y[i]


@cuda.jit
def axpy_stops_one_early(a, x, y):
    for i in range(cuda.grid(1), y.size - 1, cuda.gridsize(1)):
        y[i] = a * x[i] + y[i]


@cuda.jit
def axpy_steps_too_far(a, x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1) + 1):
        y[i] = a * x[i] + y[i]


def test_axpy_check_accepts_grid_stride_loops(capsys):
    check_axpy_grid_stride(axpy_grid_stride)
    check_axpy_grid_stride(axpy_grid_stride_while)
    out = capsys.readouterr().out
    assert out.count("✓ axpy with a grid-stride loop") == 2 and "64 threads for 1000" in out
    check_axpy_grid_stride(axpy_contiguous_chunks)
    assert capsys.readouterr().out.startswith("✓ axpy with a grid-stride loop")


def test_axpy_check_tells_a_loop_that_stops_early_or_steps_too_far():
    # These kernels do loop: "each thread handled only its first element" would be a wrong diagnosis.
    with pytest.raises(CheckFailed, match=r"y\[999\] was never updated.*stops too early: only the last element "
                                          r"was missed.*no - 1") as info:
        check_axpy_grid_stride(axpy_stops_one_early)
    assert "only its first element" not in str(info.value)
    with pytest.raises(CheckFailed, match=r"y\[64\] was never updated.*skips elements in the middle \(15 never "
                                          r"updated, y\[64\] the first.*steps too far.*exactly cuda.gridsize\(1\) = 64"
                       ) as info:
        check_axpy_grid_stride(axpy_steps_too_far)
    assert "only its first element" not in str(info.value)


def test_axpy_check_names_the_mistake():
    with pytest.raises(CheckFailed, match=r"y\[64\].*y\[64\] was never updated.*only its first element.*cuda.gridsize\(1\)"):
        check_axpy_grid_stride(axpy_one_per_thread)
    with pytest.raises(CheckFailed, match=r"y\[32\].*updated 2 times.*not blockDim.x = 32"):
        check_axpy_grid_stride(axpy_stride_block)
    with pytest.raises(CheckFailed, match=r"y\[0\].*y\[0\] was updated 2 times and y\[32\] was never updated.*not threadIdx.x"):
        check_axpy_grid_stride(axpy_start_thread_idx)
    with pytest.raises(CheckFailed, match="overwrites y"):
        check_axpy_grid_stride(axpy_overwrites)


# ------------------------------------------------------------------ 03.4 [1, 2, 1] / 4 blur in float32


@cuda.jit
def blur3_right(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = float32(0.25) * x[i] + float32(0.5) * x[i + 1] + float32(0.25) * x[i + 2]


@cuda.jit
def blur3_sum_then_scale(x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):  # grid-stride, another order of operations
        out[i] = (x[i + 2] + x[i + 1] + x[i + 1] + x[i]) / float32(4)


@cuda.jit
def blur3_float64_literals(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = 0.25 * x[i] + 0.5 * x[i + 1] + 0.25 * x[i + 2]


@cuda.jit
def blur3_integer_two(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = (x[i] + 2 * x[i + 1] + x[i + 2]) / float32(4)


@cuda.jit
def blur3_centred(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = (x[i - 1] + float32(2) * x[i] + x[i + 1]) / float32(4)


@cuda.jit
def blur3_no_division(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + float32(2) * x[i + 1] + x[i + 2]


@cuda.jit
def blur3_guard_one_too_many(x, out):
    i = cuda.grid(1)
    if i < x.size - 1:  # should be x.size - 2 = out.size
        out[i] = (x[i] + float32(2) * x[i + 1] + x[i + 2]) / float32(4)


@needs_compiler
def test_blur3_check_accepts_float32_forms(capsys):
    check_blur3(blur3_right)
    check_blur3(blur3_sum_then_scale)
    out = capsys.readouterr().out
    assert out.count("float32 throughout (checked in the PTX") == 2


@needs_compiler
@pytest.mark.parametrize("kernel", [blur3_float64_literals, blur3_integer_two])
def test_blur3_check_rejects_python_literals(kernel):
    with pytest.raises(CheckFailed, match=r"float64 instruction.*float32\(0.1\)"):
        check_blur3(kernel)


def test_blur3_check_names_the_mistake():
    with pytest.raises(CheckFailed, match=r"out\[0\].*centred on x\[i\]"):
        check_blur3(blur3_centred)
    with pytest.raises(CheckFailed, match="not divided by 4"):
        check_blur3(blur3_no_division)
    with pytest.raises(CheckFailed, match="a thread accessed an element outside an array"):
        check_blur3(blur3_guard_one_too_many)


def test_stubs_say_not_solved(capsys):
    @cuda.jit
    def stub(M, out):
        """Learner's copy: the solution region became this line."""
        raise NotImplementedError()

    for check in (check_row_sum, check_transpose, check_blur3):
        check(stub)

    @cuda.jit
    def axpy_stub(a, x, y):
        raise NotImplementedError()

    check_axpy_grid_stride(axpy_stub)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" not solved")[0] for line in lines] == [f"◻ Exercise 03.{k}" for k in (1, 2, 4, 3)]
    assert np.all([line.endswith("then run this cell again.") for line in lines])


# ------------------------------------------------------------------ issue 16: varied cases, stated requirements, causes


@cuda.jit
def row_sum_hard_coded(M, out):  # 37 x 13 copied from the statement
    r = cuda.grid(1)
    if r < 37:
        acc = float32(0)
        for j in range(13):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def row_sum_float64(M, out):  # acc = 0.0 is a float64: the statement asks for float32
    r = cuda.grid(1)
    if r < out.size:
        acc = 0.0
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def row_sum_accumulator_once(M, out):  # grid-stride, but acc is set once, before the loop over rows
    acc = float32(0)
    for r in range(cuda.grid(1), M.shape[0], cuda.gridsize(1)):
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def row_sum_later_rows_short(M, out):  # grid-stride, acc reset, but later rows miss their last column
    for r in range(cuda.grid(1), M.shape[0], cuda.gridsize(1)):
        acc = float32(0)
        stop = M.shape[1] if r < cuda.gridsize(1) else M.shape[1] - 1
        for j in range(stop):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def row_sum_one_thread(M, out):  # thread 0 does every row: right values, no parallelism
    if cuda.grid(1) == 0:
        for r in range(M.shape[0]):
            acc = float32(0)
            for j in range(M.shape[1]):
                acc += M[r, j]
            out[r] = acc


def test_row_sum_rejects_sizes_copied_from_the_statement():
    verdict = ROW_SUM.run(row_sum_hard_coded)
    assert not verdict.passed and (verdict.case.rows, verdict.case.cols) == (1, 5), verdict
    assert "outside an array" in verdict.message


@needs_compiler
def test_row_sum_requires_float32_accumulation():
    with pytest.raises(CheckFailed, match="float64 instruction"):
        check_row_sum(row_sum_float64)


def test_row_sum_names_an_accumulator_set_once_before_a_grid_stride_loop():
    verdict = ROW_SUM.run(row_sum_accumulator_once)
    assert verdict.stage == "proof fewer", verdict
    assert re.search(r"with 32 threads for rows = 70, cols = 5.*your kernel wrote out\[32\] = .*it wrote 70 row values "
                     r"with 32 threads.*Likely cause: each thread's sum carries over.*rows r, r - 32, r - 64",
                     verdict.message), verdict.message


def test_row_sum_does_not_blame_the_accumulator_for_another_mistake_on_later_rows():
    verdict = ROW_SUM.run(row_sum_later_rows_short)
    assert verdict.stage == "proof fewer" and "out[32]" in verdict.message, verdict
    assert "Likely cause" not in verdict.message and "carries over" not in verdict.message


def test_row_sum_requires_one_thread_per_row():
    verdict = ROW_SUM.run(row_sum_one_thread)
    assert verdict.stage == "proof mapping", verdict
    assert re.search(r"out is right, but thread \(0\) of block \(0\) wrote out\[0\], out\[1\] and 21 more.*one thread "
                     r"per row", verdict.message), verdict.message


def test_row_sum_success_names_what_was_checked(capsys):
    check_row_sum(row_sum_right)
    out = capsys.readouterr().out
    assert "and of 1x5, 50x1, 97x31, 23x7; one thread per row (the memory-access tracer saw" in out, out
    assert "with fewer threads than rows (32 threads), each thread still did one row" in out, out
    check_row_sum(row_sum_grid_stride_backwards)
    assert "with fewer threads than rows (32 threads), every row it handled was right" in capsys.readouterr().out


@cuda.jit
def transpose_hard_coded(M, out):
    j, i = cuda.grid(2)
    if i < 13 and j < 29:
        out[j, i] = M[i, j]


@cuda.jit
def transpose_copy(M, out):  # out[i, j] = M[i, j]: a copy, not a transpose
    j, i = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1] and i < M.shape[0] and j < M.shape[1]:
        out[i, j] = M[i, j]


def test_transpose_rejects_sizes_copied_from_the_statement():
    verdict = TRANSPOSE.run(transpose_hard_coded)
    assert not verdict.passed and (verdict.case.rows, verdict.case.cols) == (1, 7), verdict


def test_transpose_names_a_copy():
    with pytest.raises(CheckFailed, match=r"out\[0, 1\].*a copy, not a transpose"):
        check_transpose(transpose_copy)


def test_transpose_copy_cause_is_not_given_to_another_mistake():
    verdict = TRANSPOSE.run(transpose_flat_copy)
    assert "a copy, not a transpose" not in verdict.message and "wrong place" in verdict.message


@cuda.jit
def axpy_hard_coded_a(a, x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = float32(2.0) * x[i] + y[i]


def test_axpy_rejects_a_copied_from_the_statement():
    verdict = AXPY_GRID_STRIDE.run(axpy_hard_coded_a)
    assert not verdict.passed and verdict.case.a == -0.5, verdict


def test_axpy_success_lists_the_values_of_a(capsys):
    check_axpy_grid_stride(axpy_grid_stride)
    assert "a = -0.5, -3, 1.25, 2): each element was updated exactly once." in capsys.readouterr().out


@cuda.jit
def blur3_hard_coded(x, out):
    i = cuda.grid(1)
    if i < 298:
        out[i] = (x[i] + x[i + 1] + x[i + 1] + x[i + 2]) / float32(4)


def test_blur3_rejects_a_size_copied_from_the_statement():
    verdict = BLUR3.run(blur3_hard_coded)
    assert not verdict.passed and verdict.case.n == 3, verdict


def test_blur3_window_cause_is_not_claimed_with_one_output():
    @cuda.jit
    def blur3_wrong_for_one(x, out):  # right for n > 3, wrong when out has one element
        i = cuda.grid(1)
        if i < out.size:
            out[i] = float32(0.25) * x[i] + float32(0.5) * x[i + 1] + float32(0.25) * x[i + 2]
            if out.size == 1:
                out[i] = x[i]

    verdict = BLUR3.run(blur3_wrong_for_one)
    assert verdict.case.n == 3 and verdict.cause is None, verdict


def test_blur3_requires_one_thread_per_output():
    @cuda.jit
    def blur3_two_per_thread(x, out):  # thread i writes outputs 2i and 2i + 1: right values, half the threads
        i = 2 * cuda.grid(1)
        for k in range(i, min(i + 2, out.size)):
            out[k] = float32(0.25) * x[k] + float32(0.5) * x[k + 1] + float32(0.25) * x[k + 2]

    verdict = BLUR3.run(blur3_two_per_thread)
    assert verdict.stage == "proof mapping" and "one thread per output" in verdict.message, verdict


@cuda.jit
def row_sum_two_threads_per_row(M, out):  # right values, one writer per row, but two threads share each row's reads
    half = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    r = t % 32
    acc = float32(0)
    if r < M.shape[0]:
        start = 0 if t < 32 else M.shape[1] // 2
        stop = M.shape[1] // 2 if t < 32 else M.shape[1]
        for j in range(start, stop):
            acc += M[r, j]
        if t >= 32:
            half[r] = acc
    cuda.syncthreads()
    if t < 32 and r < M.shape[0]:
        out[r] = acc + half[r]


def test_row_sum_one_thread_per_row_means_it_reads_its_whole_row():
    verdict = ROW_SUM.run(row_sum_two_threads_per_row, [Case(grid=1, block=64, sizes={"rows": 20, "cols": 4})])
    assert verdict.stage == "proof mapping", verdict
    assert re.search(r"out\[0\] was written by thread \(0\) of block \(0\), which itself read only 2 of the 4 elements "
                     r"of M", verdict.message), verdict.message
