"""Exercise checks of notebook 04: each passes correct answers (other mappings too) and names wrong ones."""

import re
import sys

import numpy as np
import pytest
from conftest import needs_compiler
from numba import cuda, float32

from nbkit.checks import (
    CheckFailed,
    check_bias_grad,
    check_matmul_a_bt_tiled,
    check_matmul_at_b_tiled,
    check_transposed_matmul,
)
from nbkit.checks.nb04 import BIAS_GRAD, MATMUL_AT_B_TILED, TRANSPOSED_MATMUL

T = 8  # the exercises' tile width

def needs_tracer():
    return pytest.importorskip("nbkit.tracer", reason="the memory-access tracer (nbkit.tracer) is not in this checkout")


# ------------------------------------------------------------------ 04.1 C = Aᵀ B (dW = dZᵀ A)


@cuda.jit
def at_b_right(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def at_b_x_along_rows_backwards(A, B, C):
    row, col = cuda.grid(2)  # the other mapping, and the sum in the other order
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[0] - 1, -1, -1):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def at_b_grid_stride(A, B, C):
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for row in range(y0, C.shape[0], sy):
        for col in range(x0, C.shape[1], sx):
            acc = float32(0)
            for k in range(A.shape[0]):
                acc += A[k, row] * B[k, col]
            C[row, col] = acc


@cuda.jit
def at_b_sums_over_m(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[1]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def at_b_wrong_index(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, row % B.shape[1]]
        C[row, col] = acc


@cuda.jit
def at_b_guard_swapped(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[1] and col < C.shape[0]:
        acc = float32(0)
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


def test_transposed_matmul_check_accepts_every_mapping(capsys):
    for kernel in (at_b_right, at_b_x_along_rows_backwards, at_b_grid_stride):
        check_transposed_matmul(kernel)
    assert capsys.readouterr().out.count("✓ C = Aᵀ B is correct") == 3


def test_transposed_matmul_check_names_the_mistake():
    with pytest.raises(CheckFailed, match=r"C\[0, 0\].*k < A.shape\[0\] = 21"):
        check_transposed_matmul(at_b_sums_over_m)
    with pytest.raises(CheckFailed, match=r"C is wrong at .*C\[0, 1\]"):
        check_transposed_matmul(at_b_wrong_index)
    with pytest.raises(CheckFailed, match="a thread accessed an element outside an array"):
        check_transposed_matmul(at_b_guard_swapped)


# ------------------------------------------------------------------ 04.2 db = column sums of dZ


@cuda.jit
def bias_grad_right(dZ, db):
    j = cuda.grid(1)
    if j < db.size:
        acc = float32(0)
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bias_grad_grid_stride_backwards(dZ, db):
    for j in range(cuda.grid(1), db.size, cuda.gridsize(1)):
        acc = float32(0)
        for n in range(dZ.shape[0] - 1, -1, -1):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bias_grad_mean(dZ, db):
    j = cuda.grid(1)
    if j < db.size:
        acc = float32(0)
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc / float32(dZ.shape[0])


@cuda.jit
def bias_grad_into_output(dZ, db):
    j = cuda.grid(1)
    if j < db.size:
        for n in range(dZ.shape[0]):
            db[j] += dZ[n, j]


@cuda.jit
def bias_grad_unguarded(dZ, db):
    j = cuda.grid(1)
    acc = float32(0)
    for n in range(dZ.shape[0]):
        acc += dZ[n, j]
    db[j] = acc


def test_bias_grad_check(capsys):
    check_bias_grad(bias_grad_right)
    check_bias_grad(bias_grad_grid_stride_backwards)
    assert capsys.readouterr().out.count("✓ db = column sums") == 2
    with pytest.raises(CheckFailed, match=r"db\[0\].*mean over the batch.*N = 37"):
        check_bias_grad(bias_grad_mean)
    with pytest.raises(CheckFailed, match=r"accumulated into db\[j\] directly"):
        check_bias_grad(bias_grad_into_output)
    with pytest.raises(CheckFailed, match="a thread accessed an element outside an array"):
        check_bias_grad(bias_grad_unguarded)


# ------------------------------------------------------------------ 04.3 find the race: C = A Bᵀ tiled


@cuda.jit
def a_bt_fixed(A, B, C):
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def a_bt_double_buffered(A, B, C):
    # another correct fix: two pairs of tiles used in turn, so one barrier per step suffices
    sA = cuda.shared.array((2, T, T), float32)
    sB = cuda.shared.array((2, T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        b = t % 2
        k = t * T + tx
        sA[b, ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[b, tx, ty] = B[col, k] if col < N and k < K else float32(0)  # stored transposed
        cuda.syncthreads()
        for i in range(T):
            acc += sA[b, ty, i] * sB[b, tx, i]
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def a_bt_racy_second(A, B, C):  # the notebook's kernel: no barrier after the multiply-adds
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def a_bt_racy_first(A, B, C):  # no barrier between loading the tiles and reading them
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def a_bt_redundant_row_loads(A, B, C):
    # right values whatever the order (every thread of a row writes the same values into the whole row of sA),
    # but threads write the same shared words between two barriers: a write-after-write hazard
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        for i in range(T):
            k = t * T + i
            sA[ty, i] = A[row, k] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def a_bt_naive(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[1]):
            acc += A[row, k] * B[col, k]
        C[row, col] = acc


def test_race_check_accepts_fixed_kernels(capsys):
    needs_tracer()
    check_matmul_a_bt_tiled(a_bt_fixed)
    check_matmul_a_bt_tiled(a_bt_double_buffered)
    out = capsys.readouterr().out
    assert out.count("✓ C = A Bᵀ is correct") == 2 and out.count("the tracer found no shared-memory race") == 2


# Which kind the tracer names depends on the order the simulator happened to run the two threads in (as with
# compute-sanitizer): a missing barrier shows as read-after-write or write-after-read, either is right.
@pytest.mark.parametrize("kernel, kind", [(a_bt_racy_second, "write-after-read|read-after-write"),
                                          (a_bt_racy_first, "read-after-write|write-after-read")])
def test_race_check_names_the_race(kernel, kind):
    needs_tracer()
    with pytest.raises(CheckFailed, match=rf"(?s)thread \(\d+, \d+\) (reads|writes) s[AB]\[\d+, \d+\].*no syncthreads "
                                          rf"between \(({kind}) hazard"):
        check_matmul_a_bt_tiled(kernel)


def test_race_check_catches_a_race_that_gave_the_right_values():
    needs_tracer()
    with pytest.raises(CheckFailed, match=r"C came out right in the simulator.*write-after-write hazard"):
        check_matmul_a_bt_tiled(a_bt_redundant_row_loads)


def test_race_check_wants_shared_memory():
    with pytest.raises(CheckFailed, match="uses no shared memory"):
        check_matmul_a_bt_tiled(a_bt_naive)


def test_race_check_says_when_races_were_not_checked(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbkit.tracer", None)  # as on a checkout without the tracer
    check_matmul_a_bt_tiled(a_bt_fixed)
    assert "races were NOT checked" in capsys.readouterr().out


# ------------------------------------------------------------------ 04.4 C = Aᵀ B tiled


@cuda.jit
def at_b_tiled_right(A, B, C):
    sA = cuda.shared.array((T, T), float32)  # sA[i, k]: row i of the tile of Aᵀ
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def at_b_tiled_guarded_loop(A, B, C):
    # no zero padding, but the inner loop stops at K and the loads are arranged along k (coalesced on A)
    sA = cuda.shared.array((T, T), float32)  # sA[k, i]
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row0 = cuda.blockIdx.y * T
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + ty
        if k < K and row0 + tx < M:
            sA[ty, tx] = A[k, row0 + tx]
        if k < K and col < N:
            sB[ty, tx] = B[k, col]
        cuda.syncthreads()
        for i in range(min(T, K - t * T)):
            acc += sA[i, ty] * sB[i, tx]
        cuda.syncthreads()
    if row0 + ty < M and col < N:
        C[row0 + ty, col] = acc


@cuda.jit
def at_b_tiled_no_padding(A, B, C):
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        if row < M and k < K:
            sA[ty, tx] = A[k, row]
        k = t * T + ty
        if k < K and col < N:
            sB[ty, tx] = B[k, col]
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def at_b_tiled_early_return(A, B, C):
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    if row >= M or col >= N:
        return
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    C[row, col] = acc


@cuda.jit
def at_b_tiled_float64_accumulator(A, B, C):
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = 0.0
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def at_b_tiled_no_barrier(A, B, C):
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < N else float32(0)
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def at_b_tiled_whole_steps_only(A, B, C):
    # loads zero-padded correctly, but the loop runs K // T steps: the last, partial step is never done
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range(K // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def at_b_tiled_only_b(A, B, C):
    # right values, but only B goes through shared memory: A is read from global memory in the product
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < N else float32(0)
        cuda.syncthreads()
        if row < M:
            for i in range(T):
                kk = t * T + i
                if kk < K:
                    acc += A[kk, row] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@needs_compiler
def test_tiled_check_accepts_correct_kernels(capsys):
    check_matmul_at_b_tiled(at_b_tiled_right)
    check_matmul_at_b_tiled(at_b_tiled_guarded_loop)
    out = capsys.readouterr().out
    assert out.count("✓ C = Aᵀ B with 8x8 shared-memory tiles is correct for K = 16 and 21") == 2
    assert out.count("float32 throughout (checked in the PTX") == 2
    assert out.count("each block read every element of A and B from global memory at most once") == 2


def test_tiled_check_names_the_missing_last_step():
    # not the zero padding (the loads pad correctly): the loop stops before the partial step
    with pytest.raises(CheckFailed, match=r"right when K is a multiple of the tile \(K = 16\) and wrong for K = 21.*"
                                          r"product over the whole tiles only \(k < 16\).*the loop needs "
                                          r"ceil\(K / TILE_W\) steps, \(K \+ TILE_W - 1\) // TILE_W = 3 here, not "
                                          r"K // TILE_W = 2") as info:
        check_matmul_at_b_tiled(at_b_tiled_whole_steps_only)
    assert "store a zero" not in str(info.value)


def test_tiled_check_wants_both_tiles_in_shared_memory():
    needs_tracer()
    with pytest.raises(CheckFailed, match=r"C is right, but block \(0, 0\) read A\[\d+, \d+\] from global memory 8 "
                                          r"times.*Both A and B go through shared memory"):
        check_matmul_at_b_tiled(at_b_tiled_only_b)


def test_tiled_check_names_the_missing_zero_padding():
    with pytest.raises(CheckFailed, match=r"C\[0, 0\].*right when K is a multiple of the tile \(K = 16\) and wrong "
                                          r"for K = 21.*store a zero.*exactly what the previous step's values"):
        check_matmul_at_b_tiled(at_b_tiled_no_padding)


def test_tiled_check_names_the_early_return():
    needs_tracer()
    with pytest.raises(CheckFailed, match=r"in block \(1, 0\), thread \(5, 0\) lies outside C.*stored nothing into the "
                                          r"shared tiles, while every thread inside C did.*no early return"):
        check_matmul_at_b_tiled(at_b_tiled_early_return)


@cuda.jit
def at_b_tiled_short_b_guard(A, B, C):  # only edge blocks wrong too, but every thread loads: the B guard is one short
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < N - 1 else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


def test_tiled_check_does_not_blame_the_loads_of_threads_outside_c_when_they_load():
    verdict = MATMUL_AT_B_TILED.run(at_b_tiled_short_b_guard)
    assert not verdict.passed and verdict.message.startswith("✗ C is wrong at 19 of 247 elements; the first is C[0, 12]")
    assert "no early return" not in verdict.message and verdict.cause is None, verdict


def test_tiled_check_names_the_missing_barrier():
    needs_tracer()
    with pytest.raises(CheckFailed, match=r"a race on shared memory: block \(\d+, \d+\): thread .* no syncthreads"):
        check_matmul_at_b_tiled(at_b_tiled_no_barrier)


@needs_compiler
def test_tiled_check_rejects_float64_arithmetic():
    with pytest.raises(CheckFailed, match=r"float64 instruction"):
        check_matmul_at_b_tiled(at_b_tiled_float64_accumulator)


def test_stubs_say_not_solved(capsys):
    @cuda.jit
    def stub(A, B, C):
        raise NotImplementedError()

    for check in (check_transposed_matmul, check_matmul_a_bt_tiled, check_matmul_at_b_tiled):
        check(stub)

    @cuda.jit
    def bias_stub(dZ, db):
        raise NotImplementedError()

    check_bias_grad(bias_stub)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" not solved")[0] for line in lines] == [f"◻ Exercise 04.{k}" for k in (1, 3, 4, 2)]
    assert np.all([line.endswith("then run this cell again.") for line in lines])


# ------------------------------------------------------------------ issue 16: varied cases, stated requirements, causes


@cuda.jit
def at_b_hard_coded(A, B, C):  # M = 19, N = 13, K = 21 copied from the statement
    col, row = cuda.grid(2)
    if row < 19 and col < 13:
        acc = float32(0)
        for k in range(21):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def at_b_accumulator_once(A, B, C):  # 2-D grid-stride, acc set once per thread
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    acc = float32(0)
    for row in range(y0, C.shape[0], sy):
        for col in range(x0, C.shape[1], sx):
            for k in range(A.shape[0]):
                acc += A[k, row] * B[k, col]
            C[row, col] = acc


@cuda.jit
def at_b_one_thread(A, B, C):  # one thread computes all of C
    if cuda.grid(2) == (0, 0):
        for row in range(C.shape[0]):
            for col in range(C.shape[1]):
                acc = float32(0)
                for k in range(A.shape[0]):
                    acc += A[k, row] * B[k, col]
                C[row, col] = acc


def test_transposed_matmul_rejects_sizes_copied_from_the_statement():
    verdict = TRANSPOSED_MATMUL.run(at_b_hard_coded)
    assert not verdict.passed and verdict.case.M == 1, verdict


def test_transposed_matmul_rejects_an_accumulator_set_once():
    verdict = TRANSPOSED_MATMUL.run(at_b_accumulator_once)
    assert verdict.stage == "proof fewer", verdict
    assert re.search(r"with 64 threads for M = 19, K = 5, N = 13 \(fewer threads than elements.*your kernel wrote C\[",
                     verdict.message), verdict.message


def test_transposed_matmul_requires_one_thread_per_element():
    verdict = TRANSPOSED_MATMUL.run(at_b_one_thread)
    assert verdict.stage == "proof mapping" and "one thread per element" in verdict.message, verdict


@cuda.jit
def bias_grad_hard_coded(dZ, db):  # (37, 45) copied from the statement
    j = cuda.grid(1)
    if j < 45:
        acc = float32(0)
        for n in range(37):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bias_grad_float64(dZ, db):
    j = cuda.grid(1)
    if j < db.size:
        acc = 0.0
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bias_grad_accumulator_once(dZ, db):
    acc = float32(0)
    for j in range(cuda.grid(1), db.size, cuda.gridsize(1)):
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bias_grad_one_thread(dZ, db):
    if cuda.grid(1) == 0:
        for j in range(db.size):
            acc = float32(0)
            for n in range(dZ.shape[0]):
                acc += dZ[n, j]
            db[j] = acc


@cuda.jit
def bias_grad_strided_columns(dZ, db):  # one thread per column, but lane j takes column (7 j) mod n: not coalesced
    t = cuda.grid(1)
    if t < db.size:
        j = (7 * t) % db.size if db.size % 7 else t
        acc = float32(0)
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


def test_bias_grad_rejects_sizes_copied_from_the_statement():
    verdict = BIAS_GRAD.run(bias_grad_hard_coded)
    assert not verdict.passed and verdict.case.batch == 1, verdict


@needs_compiler
def test_bias_grad_requires_float32_accumulation():
    with pytest.raises(CheckFailed, match="float64 instruction"):
        check_bias_grad(bias_grad_float64)


def test_bias_grad_names_an_accumulator_set_once():
    verdict = BIAS_GRAD.run(bias_grad_accumulator_once)
    assert verdict.stage == "proof fewer", verdict
    assert "Likely cause: each thread's sum carries over" in verdict.message, verdict.message


def test_bias_grad_requires_one_thread_per_column():
    verdict = BIAS_GRAD.run(bias_grad_one_thread)
    assert verdict.stage == "proof mapping" and "one thread per column" in verdict.message, verdict


def test_bias_grad_success_says_what_the_tracer_measured(capsys):
    needs_tracer()
    check_bias_grad(bias_grad_right)
    out = capsys.readouterr().out
    assert "one thread per column (the memory-access tracer saw" in out, out
    assert re.search(r"the reads of dZ are coalesced: at most [45] 32-byte sectors per warp request, measured", out), out
    check_bias_grad(bias_grad_strided_columns)
    out = capsys.readouterr().out
    assert out.startswith("✓") and "the reads of dZ are NOT coalesced" in out, out


# mutants from /work/scratch/mutation-results.md (04.3-m63/m64, 04.4-m63/m64): a sign flipped in the tile's row or
# column; negative indices wrap around in NumPy, so the statement's single shape came out right


@cuda.jit
def a_bt_row_minus(A, B, C):
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T - ty
    col = cuda.blockIdx.x * T + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def at_b_tiled_col_minus(A, B, C):
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T - tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if row < M and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


def test_tiled_checks_reject_a_flipped_sign_that_wraps_around():
    from nbkit.checks.nb04 import MATMUL_A_BT_TILED

    verdict = MATMUL_A_BT_TILED.run(a_bt_row_minus)
    assert not verdict.passed and verdict.case.M == 1, verdict
    verdict = MATMUL_AT_B_TILED.run(at_b_tiled_col_minus)
    assert not verdict.passed and verdict.case.sizes["M"] in (1, 5), verdict


@cuda.jit
def at_b_tiled_hard_coded(A, B, C):  # the statement's M = 19 and N = 13 in the guards (probe, "hard-coded")
    sA = cuda.shared.array((T, T), float32)
    sB = cuda.shared.array((T, T), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    K = A.shape[0]
    acc = float32(0)
    for t in range((K + T - 1) // T):
        k = t * T + tx
        sA[ty, tx] = A[k, row] if row < 19 and k < K else float32(0)
        k = t * T + ty
        sB[ty, tx] = B[k, col] if k < K and col < 13 else float32(0)
        cuda.syncthreads()
        for i in range(T):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < 19 and col < 13:
        C[row, col] = acc


def test_tiled_check_rejects_sizes_copied_from_the_statement():
    verdict = MATMUL_AT_B_TILED.run(at_b_tiled_hard_coded)
    assert not verdict.passed and verdict.case.sizes["M"] == 1, verdict


def test_the_tiled_proofs_reuse_the_barrier_proofs_traced_launch(traced_launches, capsys):
    # the barrier proof and the proof that each block read A and B once trace the same launch: traced once
    check_matmul_at_b_tiled(at_b_tiled_right)
    assert "✓ C = Aᵀ B with 8x8 shared-memory tiles is correct" in capsys.readouterr().out
    assert traced_launches and len(traced_launches) == len(set(traced_launches)), [s[:3] for s in traced_launches]
