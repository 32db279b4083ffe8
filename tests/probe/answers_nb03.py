"""Exercises 03.1-03.4 (the CUDA model): answers written from the learner notebook."""

from numba import cuda, float32

from ._answer import Answer

# ---- 03.1 row sums


@cuda.jit
def rs_ok(M, out):
    """Correct: one thread per row, float32 accumulator."""
    r = cuda.grid(1)
    if r < M.shape[0]:
        acc = float32(0)
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def rs_stride(M, out):
    """Correct: grid-stride over rows, accumulator reset per row."""
    for r in range(cuda.grid(1), M.shape[0], cuda.gridsize(1)):
        acc = float32(0)
        for j in range(M.shape[1] - 1, -1, -1):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def rs_acc_outside(M, out):
    """Wrong: grid-stride loop with the accumulator set once outside it (a thread with two rows adds the first
    row's sum into the second; hidden when every thread has at most one row, as on 64 threads for 37 rows)."""
    acc = float32(0)
    for r in range(cuda.grid(1), M.shape[0], cuda.gridsize(1)):
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def rs_into_out(M, out):
    """Wrong: accumulates into out[r] directly without zeroing it (out starts as garbage)."""
    r = cuda.grid(1)
    if r < M.shape[0]:
        for j in range(M.shape[1]):
            out[r] += M[r, j]


@cuda.jit
def rs_cols(M, out):
    """Wrong: sums column r (M[j, r]) instead of row r; guarded by both shapes to stay in bounds."""
    r = cuda.grid(1)
    if r < M.shape[0]:
        acc = float32(0)
        for j in range(M.shape[1]):
            if r < M.shape[1] and j < M.shape[0]:
                acc += M[j, r]
        out[r] = acc


@cuda.jit
def rs_off_by_one(M, out):
    """Wrong: range(M.shape[1] - 1) misses the last column."""
    r = cuda.grid(1)
    if r < M.shape[0]:
        acc = float32(0)
        for j in range(M.shape[1] - 1):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def rs_guard_cols(M, out):
    """Wrong: guard against M.shape[1] (13 columns) instead of rows: rows 13..36 never written."""
    r = cuda.grid(1)
    if r < M.shape[1]:
        acc = float32(0)
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def rs_mean(M, out):
    """Wrong: the mean of the row."""
    r = cuda.grid(1)
    if r < M.shape[0]:
        acc = float32(0)
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc / float32(M.shape[1])


@cuda.jit
def rs_f64(M, out):
    """Wrong: acc = 0.0 (a float64 accumulator)."""
    r = cuda.grid(1)
    if r < M.shape[0]:
        acc = 0.0
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


# ---- 03.2 transpose


@cuda.jit
def tr_ok(M, out):
    """Correct: x along the columns of M."""
    j, i = cuda.grid(2)
    if i < M.shape[0] and j < M.shape[1]:
        out[j, i] = M[i, j]


@cuda.jit
def tr_rows(M, out):
    """Correct: x along the rows of M (writes coalesced)."""
    i, j = cuda.grid(2)
    if i < M.shape[0] and j < M.shape[1]:
        out[j, i] = M[i, j]


@cuda.jit
def tr_stride(M, out):
    """Correct: 2-D grid-stride loop."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(y0, M.shape[0], sy):
        for j in range(x0, M.shape[1], sx):
            out[j, i] = M[i, j]


@cuda.jit
def tr_guard_one(M, out):
    """Wrong: guards only the rows dimension."""
    j, i = cuda.grid(2)
    if i < M.shape[0]:
        out[j, i] = M[i, j]


@cuda.jit
def tr_swapped_guard(M, out):
    """Wrong: guard compares i with cols and j with rows (swapped)."""
    j, i = cuda.grid(2)
    if i < M.shape[1] and j < M.shape[0]:
        out[j, i] = M[i, j]


@cuda.jit
def tr_copy(M, out):
    """Wrong: out[i, j] = M[j, i] within out's shape: reads M transposed... i.e. copies instead of transposing."""
    j, i = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1] and i < M.shape[0] and j < M.shape[1]:
        out[i, j] = M[i, j]


@cuda.jit
def tr_hardcoded(M, out):
    """Wrong: hard-codes the statement's 13 x 29 (wrong on any other shape)."""
    j, i = cuda.grid(2)
    if i < 13 and j < 29:
        out[j, i] = M[i, j]


@cuda.jit
def tr_block_only(M, out):
    """Wrong: uses threadIdx only (one 8x8 block's worth)."""
    j, i = cuda.threadIdx.x, cuda.threadIdx.y
    if i < M.shape[0] and j < M.shape[1]:
        out[j, i] = M[i, j]


# ---- 03.3 axpy grid-stride


@cuda.jit
def ax_ok(a, x, y):
    """Correct: the hint's loop."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = a * x[i] + y[i]


@cuda.jit
def ax_while(a, x, y):
    """Correct: a while loop with blockDim * gridDim."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    step = cuda.blockDim.x * cuda.gridDim.x
    while i < x.shape[0]:
        y[i] += a * x[i]
        i += step


@cuda.jit
def ax_block_chunk(a, x, y):
    """Correct: each block takes a contiguous chunk, block-stride inside it."""
    n = y.size
    per = (n + cuda.gridDim.x - 1) // cuda.gridDim.x
    lo = cuda.blockIdx.x * per
    hi = min(lo + per, n)
    for i in range(lo + cuda.threadIdx.x, hi, cuda.blockDim.x):
        y[i] = a * x[i] + y[i]


@cuda.jit
def ax_blockdim(a, x, y):
    """Wrong: steps by blockDim.x (blocks trample each other: elements updated several times)."""
    for i in range(cuda.grid(1), y.size, cuda.blockDim.x):
        y[i] = a * x[i] + y[i]


@cuda.jit
def ax_no_loop(a, x, y):
    """Wrong: one element per thread, no loop."""
    i = cuda.grid(1)
    if i < y.size:
        y[i] = a * x[i] + y[i]


@cuda.jit
def ax_threadidx_start(a, x, y):
    """Wrong: starts at threadIdx.x instead of the global index (every block does the same elements)."""
    for i in range(cuda.threadIdx.x, y.size, cuda.gridsize(1)):
        y[i] = a * x[i] + y[i]


@cuda.jit
def ax_off_by_one(a, x, y):
    """Wrong: stops at y.size - 1."""
    for i in range(cuda.grid(1), y.size - 1, cuda.gridsize(1)):
        y[i] = a * x[i] + y[i]


@cuda.jit
def ax_overwrite(a, x, y):
    """Wrong: y[i] = a * x[i] (drops the old y)."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = a * x[i]


# ---- 03.4 blur3


@cuda.jit
def bl_ok(x, out):
    """Correct: float32 literals."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = float32(0.25) * x[i] + float32(0.5) * x[i + 1] + float32(0.25) * x[i + 2]


@cuda.jit
def bl_add_twice(x, out):
    """Correct: add x[i+1] twice, divide by float32(4)."""
    i = cuda.grid(1)
    if i < x.size - 2:
        out[i] = (x[i] + x[i + 1] + x[i + 1] + x[i + 2]) / float32(4)


@cuda.jit
def bl_stride(x, out):
    """Correct: grid-stride, multiply by float32 constants."""
    q = float32(0.25)
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = q * (x[i] + float32(2) * x[i + 1] + x[i + 2])


@cuda.jit
def bl_f64(x, out):
    """Wrong: 0.25 and 0.5 are float64 literals."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = 0.25 * x[i] + 0.5 * x[i + 1] + 0.25 * x[i + 2]


@cuda.jit
def bl_int2(x, out):
    """Wrong: 2 * x[i+1] and / 4 with Python ints (float64 in numba)."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = (x[i] + 2 * x[i + 1] + x[i + 2]) / 4


@cuda.jit
def bl_guard_x(x, out):
    """Wrong: guard against x.size (reads x[i+2] past the end, writes past out)."""
    i = cuda.grid(1)
    if i < x.size:
        out[i] = (x[i] + x[i + 1] + x[i + 1] + x[i + 2]) / float32(4)


@cuda.jit
def bl_centered(x, out):
    """Wrong: centred window out[i] from x[i-1], x[i], x[i+1] (shifted by one)."""
    i = cuda.grid(1)
    if 1 <= i < out.size:
        out[i] = (x[i - 1] + x[i] + x[i] + x[i + 1]) / float32(4)
    elif i == 0:
        out[i] = (x[0] + x[0] + x[0] + x[1]) / float32(4)


@cuda.jit
def bl_no_div(x, out):
    """Wrong: forgets / 4."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + x[i + 1] + x[i + 1] + x[i + 2]


@cuda.jit
def bl_weights(x, out):
    """Wrong: weights [1, 1, 1] / 3 (a box filter)."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = (x[i] + x[i + 1] + x[i + 2]) / float32(3)


ANSWERS = [
    Answer("03.1", "one-thread-per-row", "check_row_sum", (rs_ok,), True),
    Answer("03.1", "grid-stride-reversed", "check_row_sum", (rs_stride,), True),
    Answer("03.1", "into-out", "check_row_sum", (rs_into_out,), False),
    Answer("03.1", "column-sum", "check_row_sum", (rs_cols,), False),
    Answer("03.1", "off-by-one", "check_row_sum", (rs_off_by_one,), False),
    Answer("03.1", "guard-cols", "check_row_sum", (rs_guard_cols,), False),
    Answer("03.1", "mean", "check_row_sum", (rs_mean,), False),
    Answer("03.1", "float64-acc", "check_row_sum", (rs_f64,), False),
    Answer("03.2", "x-along-cols", "check_transpose", (tr_ok,), True),
    Answer("03.2", "x-along-rows", "check_transpose", (tr_rows,), True),
    Answer("03.2", "grid-stride-2d", "check_transpose", (tr_stride,), True),
    Answer("03.2", "guard-one-dim", "check_transpose", (tr_guard_one,), False),
    Answer("03.2", "swapped-guard", "check_transpose", (tr_swapped_guard,), False),
    Answer("03.2", "copy", "check_transpose", (tr_copy,), False),
    Answer("03.2", "threadIdx-only", "check_transpose", (tr_block_only,), False),
    Answer("03.3", "hint-loop", "check_axpy_grid_stride", (ax_ok,), True),
    Answer("03.3", "while-loop", "check_axpy_grid_stride", (ax_while,), True),
    Answer("03.3", "block-chunks", "check_axpy_grid_stride", (ax_block_chunk,), True),
    Answer("03.3", "stride-blockDim", "check_axpy_grid_stride", (ax_blockdim,), False),
    Answer("03.3", "no-loop", "check_axpy_grid_stride", (ax_no_loop,), False),
    Answer("03.3", "start-threadIdx", "check_axpy_grid_stride", (ax_threadidx_start,), False),
    Answer("03.3", "off-by-one", "check_axpy_grid_stride", (ax_off_by_one,), False),
    Answer("03.3", "overwrite-y", "check_axpy_grid_stride", (ax_overwrite,), False),
    Answer("03.4", "float32-literals", "check_blur3", (bl_ok,), True),
    Answer("03.4", "add-twice", "check_blur3", (bl_add_twice,), True),
    Answer("03.4", "grid-stride", "check_blur3", (bl_stride,), True),
    Answer("03.4", "float64-literals", "check_blur3", (bl_f64,), False),
    Answer("03.4", "int-literals", "check_blur3", (bl_int2,), False),
    Answer("03.4", "guard-x-size", "check_blur3", (bl_guard_x,), False),
    Answer("03.4", "centred", "check_blur3", (bl_centered,), False),
    Answer("03.4", "no-divide", "check_blur3", (bl_no_div,), False),
    Answer("03.4", "box-filter", "check_blur3", (bl_weights,), False),
]
EXTRA = [
    Answer("03.1", "acc-outside-stride-loop", "check_row_sum", (rs_acc_outside,), False),
    Answer("03.2", "hard-coded-13x29", "check_transpose", (tr_hardcoded,), False),
]
ANSWERS += EXTRA


@cuda.jit
def rs_hardcoded(M, out):
    """Wrong: hard-codes the statement's 37 rows and 13 columns."""
    r = cuda.grid(1)
    if r < 37:
        acc = float32(0)
        for j in range(13):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def bl_hardcoded(x, out):
    """Wrong: hard-codes the statement's 298 outputs."""
    i = cuda.grid(1)
    if i < 298:
        out[i] = (x[i] + x[i + 1] + x[i + 1] + x[i + 2]) / float32(4)


@cuda.jit
def bl_div_int4(x, out):
    """Correct: float32 sum divided by a Python int 4. The hint says float32(4), but the compiler narrows a lone / 4
    back to float32 (the PTX has no .f64), so the check's "float32 throughout" is true."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = (x[i] + x[i + 1] + x[i + 1] + x[i + 2]) / 4


ANSWERS += [
    Answer("03.1", "hard-coded-37x13", "check_row_sum", (rs_hardcoded,), False),
    Answer("03.4", "hard-coded-298", "check_blur3", (bl_hardcoded,), False),
]
ANSWERS.append(Answer("03.4", "divide-int-4", "check_blur3", (bl_div_int4,), True))
