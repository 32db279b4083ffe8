"""Exercises 09.1-09.3 (performance lab): answers written from the learner notebook."""

from numba import cuda, float32

from nbkit.perf import occupancy as occ

from ._answer import Answer

TILE, ROWS = 32, 8
TILE_PAD = TILE + 1
TILE_PAD2 = TILE + 2

# ---- 09.1 coalesced scale_add


@cuda.jit
def sa_ok(A, B, alpha, out):
    """Correct: 2-D grid-stride, x along a row."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, A.shape[0], sy):
        for j in range(x0, A.shape[1], sx):
            out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def sa_flat(A, B, alpha, out):
    """Correct: one flat grid-stride loop in memory order (thread rank with x fastest)."""
    M, N = A.shape
    tid = (cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x) * (cuda.blockDim.x * cuda.blockDim.y) \
        + cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    nthreads = cuda.gridDim.x * cuda.gridDim.y * cuda.blockDim.x * cuda.blockDim.y
    for k in range(tid, M * N, nthreads):
        i = k // N
        j = k - i * N
        out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def sa_cols_outer(A, B, alpha, out):
    """Correct: loops in the other nesting order (column loop outside), x still along a row."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for j in range(x0, A.shape[1], sx):
        for i in range(y0, A.shape[0], sy):
            out[i, j] = B[i, j] + A[i, j] * alpha


@cuda.jit
def sa_strided(A, B, alpha, out):
    """Wrong (slow): x down the rows: lanes 96 floats apart (the strided kernel)."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(x0, A.shape[0], sx):
        for j in range(y0, A.shape[1], sy):
            out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def sa_no_loop(A, B, alpha, out):
    """Wrong: no loop (covers only 64 x 16 of the 40 x 96 matrix... rows 0..15, cols 0..63)."""
    j, i = cuda.grid(2)
    if i < A.shape[0] and j < A.shape[1]:
        out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def sa_alpha_B(A, B, alpha, out):
    """Wrong: alpha multiplies B."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, A.shape[0], sy):
        for j in range(x0, A.shape[1], sx):
            out[i, j] = A[i, j] + alpha * B[i, j]


@cuda.jit
def sa_chunks(A, B, alpha, out):
    """Wrong (slow): each thread takes a contiguous chunk of the flat array (lanes a chunk apart)."""
    M, N = A.shape
    tid = (cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x) * (cuda.blockDim.x * cuda.blockDim.y) \
        + cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    nthreads = cuda.gridDim.x * cuda.gridDim.y * cuda.blockDim.x * cuda.blockDim.y
    per = (M * N + nthreads - 1) // nthreads
    for k in range(tid * per, min(tid * per + per, M * N)):
        i = k // N
        j = k - i * N
        out[i, j] = alpha * A[i, j] + B[i, j]


@cuda.jit
def sa_stride_blockdim(A, B, alpha, out):
    """Wrong: strides by blockDim instead of the grid size (elements done several times; value still right
    since it is not in place) - but x still along a row."""
    x0, y0 = cuda.grid(2)
    for i in range(y0, A.shape[0], cuda.blockDim.y):
        for j in range(x0, A.shape[1], cuda.blockDim.x):
            out[i, j] = alpha * A[i, j] + B[i, j]


# ---- 09.2 padded transpose


@cuda.jit
def tp_ok(A, B):
    """Correct: the shared kernel with a (TILE, TILE_PAD) tile."""
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[tx, ty + r]


@cuda.jit
def tp_swizzle(A, B):
    """Correct: no padding, an XOR-swizzled column (row r, column c stored at column c ^ r): conflict-free too."""
    tile = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx ^ (ty + r)] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[tx, (ty + r) ^ tx]


@cuda.jit
def tp_transposed_store(A, B):
    """Correct: stores the tile transposed (tile[tx, ty + r]) and reads rows, padded."""
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[tx, ty + r] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[ty + r, tx]


@cuda.jit
def tp_unpadded(A, B):
    """Wrong (slow): the unpadded tile: 32-way bank conflicts on the column reads."""
    tile = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[tx, ty + r]


@cuda.jit
def tp_pad2(A, B):
    """Wrong (slow): padding of 2 words: rows start at 34 r, so a column hits every bank twice (2-way)."""
    tile = cuda.shared.array((TILE, TILE_PAD2), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[tx, ty + r]


@cuda.jit
def tp_no_sync(A, B):
    """Wrong: no barrier between loading the tile and reading it (a race)."""
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx] = A[i, j]
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[tx, ty + r]


@cuda.jit
def tp_naive(A, B):
    """Wrong (not the exercise): the naive transpose without shared memory (writes strided)."""
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            B[j, i] = A[i, j]


@cuda.jit
def tp_row_read(A, B):
    """Wrong: reads the tile by row (tile[ty + r, tx]): copies the tile instead of transposing it."""
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[ty + r, tx]


@cuda.jit
def tp_no_write_guard(A, B):
    """Wrong: guard only on the load; the write to B is unguarded."""
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        B[i, j] = tile[tx, ty + r]


# ---- 09.3 block size


def bbs_first(cc, registers_per_thread, shared_bytes_per_block):
    """Correct: the first block size with the largest fraction."""
    best, best_f = 32, -1.0
    for t in range(32, 1025, 32):
        f = occ.occupancy(cc, t, registers_per_thread, shared_bytes_per_block).fraction
        if f > best_f:
            best, best_f = t, f
    return best


def bbs_last(cc, registers_per_thread, shared_bytes_per_block):
    """Correct: the largest block size among the ties (max with a key, sizes in reverse)."""
    sizes = list(range(1024, 0, -32))
    return max(sizes, key=lambda t: occ.occupancy(cc, t, registers_per_thread, shared_bytes_per_block).fraction)


def bbs_1024(cc, registers_per_thread, shared_bytes_per_block):
    """Wrong: always 1024."""
    return 1024


def bbs_256(cc, registers_per_thread, shared_bytes_per_block):
    """Wrong: always 256 (a common default)."""
    return 256


def bbs_no_regs(cc, registers_per_thread, shared_bytes_per_block):
    """Wrong: ignores the registers (passes 32 registers per thread)."""
    best, best_f = 32, -1.0
    for t in range(32, 1025, 32):
        f = occ.occupancy(cc, t, 32, shared_bytes_per_block).fraction
        if f > best_f:
            best, best_f = t, f
    return best


def bbs_shared_per_thread(cc, registers_per_thread, shared_bytes_per_block):
    """Wrong: scales shared memory with the block size (treats it as per thread / 32)."""
    best, best_f = 32, -1.0
    for t in range(32, 1025, 32):
        f = occ.occupancy(cc, t, registers_per_thread, shared_bytes_per_block * t // 32).fraction
        if f > best_f:
            best, best_f = t, f
    return best


def bbs_most_blocks(cc, registers_per_thread, shared_bytes_per_block):
    """Wrong: maximises the number of active blocks instead of the occupancy."""
    best, best_b = 32, -1
    for t in range(32, 1025, 32):
        b = occ.occupancy(cc, t, registers_per_thread, shared_bytes_per_block).active_blocks
        if b > best_b:
            best, best_b = t, b
    return best


def bbs_cached(cc, registers_per_thread, shared_bytes_per_block, _cache={}):
    """Wrong: caches the first answer for every later call (ignores the arguments after the first)."""
    if "v" not in _cache:
        _cache["v"] = bbs_first(cc, registers_per_thread, shared_bytes_per_block)
    return _cache["v"]


ANSWERS = [
    Answer("09.1", "2d-grid-stride", "check_coalesced_scale_add", (sa_ok,), True),
    Answer("09.1", "flat-memory-order", "check_coalesced_scale_add", (sa_flat,), True),
    Answer("09.1", "column-loop-outside", "check_coalesced_scale_add", (sa_cols_outer,), True),
    Answer("09.1", "x-down-rows", "check_coalesced_scale_add", (sa_strided,), False),
    Answer("09.1", "no-loop", "check_coalesced_scale_add", (sa_no_loop,), False),
    Answer("09.1", "alpha-times-B", "check_coalesced_scale_add", (sa_alpha_B,), False),
    Answer("09.1", "contiguous-chunks", "check_coalesced_scale_add", (sa_chunks,), False),
    Answer("09.2", "padded", "check_padded_transpose", (tp_ok,), True),
    Answer("09.2", "xor-swizzle", "check_padded_transpose", (tp_swizzle,), True),
    Answer("09.2", "transposed-store", "check_padded_transpose", (tp_transposed_store,), True),
    Answer("09.2", "unpadded", "check_padded_transpose", (tp_unpadded,), False),
    Answer("09.2", "pad-2", "check_padded_transpose", (tp_pad2,), False),
    Answer("09.2", "no-barrier", "check_padded_transpose", (tp_no_sync,), False),
    Answer("09.2", "naive-no-shared", "check_padded_transpose", (tp_naive,), False),
    Answer("09.2", "tile-read-by-row", "check_padded_transpose", (tp_row_read,), False),
    Answer("09.2", "write-unguarded", "check_padded_transpose", (tp_no_write_guard,), False),
    Answer("09.3", "first-best", "check_block_size", (bbs_first,), True),
    Answer("09.3", "largest-best", "check_block_size", (bbs_last,), True),
    Answer("09.3", "always-1024", "check_block_size", (bbs_1024,), False),
    Answer("09.3", "always-256", "check_block_size", (bbs_256,), False),
    Answer("09.3", "ignores-registers", "check_block_size", (bbs_no_regs,), False),
    Answer("09.3", "shared-grows", "check_block_size", (bbs_shared_per_thread,), False),
    Answer("09.3", "most-blocks", "check_block_size", (bbs_most_blocks,), False),
    Answer("09.3", "cached", "check_block_size", (bbs_cached,), False),
]


@cuda.jit
def sa_hardcoded(A, B, alpha, out):
    """Wrong: the statement's 40 x 96 copied into the loops."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, 40, sy):
        for j in range(x0, 96, sx):
            out[i, j] = alpha * A[i, j] + B[i, j]


ANSWERS.append(Answer("09.1", "hard-coded-40x96", "check_coalesced_scale_add", (sa_hardcoded,), False))


@cuda.jit
def tp_hardcoded(A, B):
    """Wrong: the padded kernel with the check's 33 x 45 copied into the guards."""
    tile = cuda.shared.array((TILE, TILE_PAD), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < 33 and j < 45:
            tile[ty + r, tx] = A[i, j]
    cuda.syncthreads()
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx
        if i < 45 and j < 33:
            B[i, j] = tile[tx, ty + r]


ANSWERS.append(Answer("09.2", "hard-coded-33x45", "check_padded_transpose", (tp_hardcoded,), False))
