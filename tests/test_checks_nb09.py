"""Notebook 09's checks: each passes a correct answer and a correct alternative, and fails wrong answers
with the message a learner needs (sectors, bank conflicts, races and occupancy measured, not assumed)."""

import numpy as np
import pytest
from numba import cuda, float32

from nbkit.checks import CheckFailed, check_block_size, check_coalesced_scale_add, check_padded_transpose
from nbkit.perf.occupancy import occupancy

TILE = 32
TILE_PAD = TILE + 1
ROWS = 8

# ------------------------------------------------------------------------------------------- 09.1


@cuda.jit
def scale_add_coalesced(A, B, alpha, out):
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, out.shape[0], sy):  # y down the rows, x (the lanes) along a row
        for j in range(x0, out.shape[1], sx):
            out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def scale_add_flat(A, B, alpha, out):
    """Alternative: one flat grid-stride loop over the elements in memory order."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    n = out.shape[1]
    for k in range(y0 * sx + x0, out.size, sx * sy):
        i, j = k // n, k % n
        out[i, j] = B[i, j] + A[i, j] * alpha


@cuda.jit
def scale_add_strided(A, B, alpha, out):
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(x0, out.shape[0], sx):  # lanes down the rows: correct but strided
        for j in range(y0, out.shape[1], sy):
            out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def scale_add_columns_stop_early(A, B, alpha, out):
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, out.shape[0], sy):
        for j in range(x0, out.shape[0], sx):  # bound of the wrong axis
            out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def scale_add_fixed_strides(A, B, alpha, out):  # wrong: the strides of the (2, 2) grid hard-coded
    x0, y0 = cuda.grid(2)
    for i in range(y0, out.shape[0], 16):
        for j in range(x0, out.shape[1], 64):
            out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def scale_add_stub(A, B, alpha, out):
    raise NotImplementedError()


def test_coalesced_passes_with_sector_counts(capsys):
    check_coalesced_scale_add(scale_add_coalesced)
    out = capsys.readouterr().out
    assert out.startswith("✓ out = alpha A + B is correct") and "sectors per warp request" in out


def test_coalesced_flat_alternative_passes(capsys):
    check_coalesced_scale_add(scale_add_flat)
    assert capsys.readouterr().out.startswith("✓")


def test_strided_but_correct_fails_on_sectors():
    with pytest.raises(CheckFailed, match=r"not coalesced: .* up to 32 .*run down a column") as info:
        check_coalesced_scale_add(scale_add_strided)
    assert "line" in str(info.value) and "A[0, 0], A[1, 0]" in str(info.value)


def test_missing_columns_fail_on_output():
    with pytest.raises(CheckFailed, match=r"out is wrong at .* first is out\[0, 1\].*columns beyond the first M"):
        check_coalesced_scale_add(scale_add_columns_stop_early)


@cuda.jit
def scale_add_chunk_per_thread(A, B, alpha, out):  # correct values, lanes 4 apart along a row (probe 09.1 C)
    tid = ((cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x) * (cuda.blockDim.x * cuda.blockDim.y)
           + cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x)
    nthreads = cuda.gridDim.x * cuda.gridDim.y * cuda.blockDim.x * cuda.blockDim.y
    M, N = out.shape
    per = (M * N + nthreads - 1) // nthreads
    for k in range(tid * per, min(tid * per + per, M * N)):
        i = k // N
        j = k - i * N
        out[i, j] = alpha * A[i, j] + B[i, j]


def test_lanes_apart_along_a_row_are_not_called_a_column():
    with pytest.raises(CheckFailed, match="not coalesced.*elements 4 apart along a row") as e:
        check_coalesced_scale_add(scale_add_chunk_per_thread)
    assert "down a column" not in str(e.value)


@cuda.jit
def scale_add_fixed_alpha(A, B, alpha, out):  # wrong: alpha written into the kernel (mutant 09.1-m37)
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, out.shape[0], sy):
        for j in range(x0, out.shape[1], sx):
            out[i, j] = float32(1.5) * A[i, j] + B[i, j]


def test_scale_add_uses_alpha():
    with pytest.raises(CheckFailed, match="out is wrong"):
        check_coalesced_scale_add(scale_add_fixed_alpha)


def test_scale_add_runs_other_grids():
    with pytest.raises(CheckFailed, match=r"out is wrong.*never written"):
        check_coalesced_scale_add(scale_add_fixed_strides)


def test_stub_is_not_solved(capsys):
    check_coalesced_scale_add(scale_add_stub)
    assert capsys.readouterr().out.startswith("◻ Exercise 09.1 not solved yet")


# ------------------------------------------------------------------------------------------- 09.2


@cuda.jit
def transpose_padded(A, B):
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        if y0 + ty + r < A.shape[0] and x0 + tx < A.shape[1]:
            tile[ty + r, tx] = A[y0 + ty + r, x0 + tx]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        if x0 + ty + r < B.shape[0] and y0 + tx < B.shape[1]:
            B[x0 + ty + r, y0 + tx] = tile[tx, ty + r]


@cuda.jit
def transpose_swizzled(A, B):
    """Alternative: no padding, columns XOR-swizzled by the row, which also spreads a column over the banks."""
    tile = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        if y0 + ty + r < A.shape[0] and x0 + tx < A.shape[1]:
            tile[ty + r, tx ^ (ty + r)] = A[y0 + ty + r, x0 + tx]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        if x0 + ty + r < B.shape[0] and y0 + tx < B.shape[1]:
            B[x0 + ty + r, y0 + tx] = tile[tx, (ty + r) ^ tx]


@cuda.jit
def transpose_unpadded(A, B):
    tile = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        if y0 + ty + r < A.shape[0] and x0 + tx < A.shape[1]:
            tile[ty + r, tx] = A[y0 + ty + r, x0 + tx]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        if x0 + ty + r < B.shape[0] and y0 + tx < B.shape[1]:
            B[x0 + ty + r, y0 + tx] = tile[tx, ty + r]


@cuda.jit
def transpose_padded_no_sync(A, B):
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        if y0 + ty + r < A.shape[0] and x0 + tx < A.shape[1]:
            tile[ty + r, tx] = A[y0 + ty + r, x0 + tx]
    for r in range(0, TILE, ROWS):
        if x0 + ty + r < B.shape[0] and y0 + tx < B.shape[1]:
            B[x0 + ty + r, y0 + tx] = tile[tx, ty + r]


@cuda.jit
def transpose_padded_not_transposed(A, B):
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        if y0 + ty + r < A.shape[0] and x0 + tx < A.shape[1]:
            tile[ty + r, tx] = A[y0 + ty + r, x0 + tx]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        if x0 + ty + r < B.shape[0] and y0 + tx < B.shape[1]:
            B[x0 + ty + r, y0 + tx] = tile[ty + r, tx]  # the tile read as it was written


@cuda.jit
def transpose_without_shared(A, B):
    j = cuda.blockIdx.x * TILE + cuda.threadIdx.x
    for r in range(0, TILE, ROWS):
        i = cuda.blockIdx.y * TILE + cuda.threadIdx.y + r
        if i < A.shape[0] and j < A.shape[1]:
            B[j, i] = A[i, j]


def test_padded_transpose_passes(capsys):
    check_padded_transpose(transpose_padded)
    out = capsys.readouterr().out
    assert out.startswith("✓ B = Aᵀ is correct") and "no bank conflict" in out


def test_swizzled_alternative_passes(capsys):
    check_padded_transpose(transpose_swizzled)
    assert capsys.readouterr().out.startswith("✓")


def test_unpadded_tile_fails_with_32_way_conflict():
    with pytest.raises(CheckFailed, match=r"32-way bank conflict .*TILE \+ 1"):
        check_padded_transpose(transpose_unpadded)


def test_missing_syncthreads_is_a_race():
    # The simulator's threads really race here, so B comes out wrong; the tracer names the cause.
    with pytest.raises(CheckFailed, match=r"B is wrong at .*Likely cause: threads of a block race on the shared tile.*"
                                          r"cuda.syncthreads\(\)"):
        check_padded_transpose(transpose_padded_no_sync)


def test_untransposed_tile_fails_on_output():
    # the first tile of B then holds the first tile of A: the cause is named (33 x 45 crosses a tile boundary)
    with pytest.raises(CheckFailed, match=r"B is wrong at .* first is B\[0, 1\].*Likely cause: B holds A itself, not "
                                          r"its transpose.*tile\[tx, ty \+ r\]"):
        check_padded_transpose(transpose_padded_not_transposed)


@cuda.jit
def transpose_padded_fixed_size(A, B):  # wrong: the statement's 33 x 45 hard-coded in the guards
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        if y0 + ty + r < 33 and x0 + tx < 45:
            tile[ty + r, tx] = A[y0 + ty + r, x0 + tx]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        if x0 + ty + r < 45 and y0 + tx < 33:
            B[x0 + ty + r, y0 + tx] = tile[tx, ty + r]


TILE_PAD2 = TILE + 2


@cuda.jit
def transpose_padded_by_two(A, B):  # an even padding: rows r and r + 16 share a bank (2-way), probe 09.2 C
    tile = cuda.shared.array((TILE, TILE_PAD2), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        if y0 + ty + r < A.shape[0] and x0 + tx < A.shape[1]:
            tile[ty + r, tx] = A[y0 + ty + r, x0 + tx]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        if x0 + ty + r < B.shape[0] and y0 + tx < B.shape[1]:
            B[x0 + ty + r, y0 + tx] = tile[tx, ty + r]


def test_even_padding_is_not_explained_as_an_unpadded_tile():
    with pytest.raises(CheckFailed, match="2-way bank conflict.*Note: .*w must be odd") as e:
        check_padded_transpose(transpose_padded_by_two)
    assert "lies in one bank" not in str(e.value)


def test_padded_transpose_runs_other_shapes():
    with pytest.raises(CheckFailed, match=r"B is wrong .* the first is B\[0, 33\].*never written"):
        check_padded_transpose(transpose_padded_fixed_size)


def test_transpose_without_shared_memory_is_refused():
    with pytest.raises(CheckFailed, match="never touched shared memory"):
        check_padded_transpose(transpose_without_shared)


# ------------------------------------------------------------------------------------------- 09.3


def smallest_best(cc, registers_per_thread, shared_bytes_per_block):
    sizes = range(32, 1025, 32)
    fr = [occupancy(cc, n, registers_per_thread, shared_bytes_per_block).fraction for n in sizes]
    return list(sizes)[int(np.argmax(fr))]


def largest_best(cc, registers_per_thread, shared_bytes_per_block):
    """Alternative: the largest block size among the best, found from the top down, returned as a NumPy int."""
    best, pick = -1.0, None
    for n in range(1024, 0, -32):
        f = occupancy(cc, n, registers_per_thread, shared_bytes_per_block).fraction
        if f > best:
            best, pick = f, n
    return np.int64(pick)


def best_power_of_two(cc, registers_per_thread, shared_bytes_per_block):  # wrong: tries powers of two only
    return max((32, 64, 128, 256, 512, 1024),
               key=lambda n: occupancy(cc, n, registers_per_thread, shared_bytes_per_block).fraction)


def test_block_size_passes(capsys):
    check_block_size(smallest_best)
    assert capsys.readouterr().out.startswith("✓ your block sizes reach the highest MODEL occupancy in all 8 cases")


def registers_ignored(cc, registers_per_thread, shared_bytes_per_block):  # wrong: 32 registers assumed (probe 09.3 A)
    return max(range(32, 1025, 32), key=lambda n: (occupancy(cc, n, 32, shared_bytes_per_block).fraction, -n))


def test_ignoring_the_registers_fails():
    with pytest.raises(CheckFailed, match=r"sm_75, 72 registers/thread, 10240 B.*block size 256 reaches 75%") as e:
        check_block_size(registers_ignored)
    assert "Likely cause" not in str(e.value)


def test_powers_of_two_fail_where_none_reaches_the_best():
    with pytest.raises(CheckFailed, match=r"sm_75, 72 registers/thread, 10240 B.*e.g. with 224 or 896 threads.*"
                                          r"Likely cause: your function returns only powers of two"):
        check_block_size(best_power_of_two)


def test_block_size_alternative_passes(capsys):
    check_block_size(largest_best)
    assert capsys.readouterr().out.startswith("✓")


def test_fixed_256_fails_where_shared_memory_limits():
    with pytest.raises(CheckFailed, match=r"sm_75, 32 registers/thread, 40960 B .* block size 256 reaches 25% .*"
                                          r"limited by shared memory.*100% is possible, e.g. with 1024.*"
                                          r"Your function returned 256 in every case"):
        check_block_size(lambda cc, r, s: 256)


def test_fixed_1024_fails_where_registers_limit():
    with pytest.raises(CheckFailed, match=r"sm_80, 128 registers/thread.* 1024 reaches 0% .*25% is possible"):
        check_block_size(lambda cc, r, s: 1024)


def test_not_a_multiple_of_32_fails():
    with pytest.raises(CheckFailed, match="not a multiple of the warp size"):
        check_block_size(lambda cc, r, s: 100)


def test_block_size_stub_is_not_solved(capsys):
    def best_block_size(cc, registers_per_thread, shared_bytes_per_block):
        raise NotImplementedError()

    check_block_size(best_block_size)
    assert capsys.readouterr().out.startswith("◻ Exercise 09.3 not solved yet")


def test_the_tile_proof_reuses_the_barrier_proofs_traced_launch(traced_launches, capsys):
    # the barrier proof and the tile proof need the same launch traced: it is traced once (a traced launch of the
    # 64 x 96 transpose costs about a second)
    seen = traced_launches
    check_padded_transpose(transpose_padded)
    assert capsys.readouterr().out.startswith("✓ B = Aᵀ is correct")
    assert seen and len(seen) == len(set(seen)), [s[:3] for s in seen]
