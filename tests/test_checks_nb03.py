"""Exercise checks of notebook 03: each passes correct answers (other mappings too) and names wrong ones."""

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
