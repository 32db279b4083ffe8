"""Exercises 04.1-04.4 (the dense layer): answers written from the learner notebook."""

from numba import cuda, float32

from ._answer import Answer

TILE_W = 8  # as in the notebook

# ---- 04.1 C = A^T B, naive


@cuda.jit
def atb_ok(A, B, C):
    """Correct: col, row = cuda.grid(2)."""
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def atb_rows_x(A, B, C):
    """Correct: x along the rows of C."""
    row, col = cuda.grid(2)
    if row < A.shape[1] and col < B.shape[1]:
        acc = float32(0)
        for k in range(B.shape[0]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def atb_stride(A, B, C):
    """Correct: 2-D grid-stride loop."""
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for row in range(y0, C.shape[0], sy):
        for col in range(x0, C.shape[1], sx):
            acc = float32(0)
            for k in range(A.shape[0]):
                acc += A[k, row] * B[k, col]
            C[row, col] = acc


@cuda.jit
def atb_plain(A, B, C):
    """Wrong: reads A[row, k] as in a plain matmul (guarded to stay inside A)."""
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[0]):
            if row < A.shape[0] and k < A.shape[1]:
                acc += A[row, k] * B[k, col]
        C[row, col] = acc


@cuda.jit
def atb_k_bound(A, B, C):
    """Wrong: k runs over A.shape[1] (M = 19) instead of K = 21."""
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[1]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def atb_acc_f64(A, B, C):
    """Correct: acc = 0.0 (float64 accumulation; 04.1 does not ask for float32, and the values are right)."""
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = 0.0
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def atb_guard_swapped(A, B, C):
    """Wrong: guard compares row with N and col with M."""
    col, row = cuda.grid(2)
    if row < C.shape[1] and col < C.shape[0]:
        acc = float32(0)
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def atb_hardcoded(A, B, C):
    """Wrong: hard-codes M = 19, N = 13, K = 21."""
    col, row = cuda.grid(2)
    if row < 19 and col < 13:
        acc = float32(0)
        for k in range(21):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


# ---- 04.2 bias gradient


@cuda.jit
def bg_ok(dZ, db):
    """Correct: one thread per column."""
    j = cuda.grid(1)
    if j < db.size:
        acc = float32(0)
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bg_stride(dZ, db):
    """Correct: grid-stride over columns, accumulator reset per column."""
    for j in range(cuda.grid(1), dZ.shape[1], cuda.gridsize(1)):
        acc = float32(0)
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bg_mean(dZ, db):
    """Wrong: mean over the batch."""
    j = cuda.grid(1)
    if j < db.size:
        acc = float32(0)
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc / float32(dZ.shape[0])


@cuda.jit
def bg_rows(dZ, db):
    """Wrong: sums row j (dZ[j, n]) instead of column j (guarded)."""
    j = cuda.grid(1)
    if j < db.size:
        acc = float32(0)
        for n in range(dZ.shape[1]):
            if j < dZ.shape[0]:
                acc += dZ[j, n]
        db[j] = acc


@cuda.jit
def bg_off_by_one(dZ, db):
    """Wrong: skips the last sample."""
    j = cuda.grid(1)
    if j < db.size:
        acc = float32(0)
        for n in range(dZ.shape[0] - 1):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bg_guard_rows(dZ, db):
    """Wrong: guard against dZ.shape[0] = 37 (columns 37..44 never written)."""
    j = cuda.grid(1)
    if j < dZ.shape[0]:
        acc = float32(0)
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def bg_into_db(dZ, db):
    """Wrong: accumulates into db[j] directly."""
    j = cuda.grid(1)
    if j < db.size:
        for n in range(dZ.shape[0]):
            db[j] += dZ[n, j]


@cuda.jit
def bg_hardcoded(dZ, db):
    """Wrong: hard-codes the statement's shape (37, 45)."""
    j = cuda.grid(1)
    if j < 45:
        acc = float32(0)
        for n in range(37):
            acc += dZ[n, j]
        db[j] = acc


# ---- 04.3 fix the race


@cuda.jit
def abt_fixed(A, B, C):
    """Correct: the notebook's kernel with the second syncthreads after the inner loop."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        k = t * TILE_W + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * TILE_W + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def abt_sync_top(A, B, C):
    """Correct: barrier at the top of each step (before the loads) instead of after the inner loop."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        cuda.syncthreads()
        sA[ty, tx] = A[row, t * TILE_W + tx] if row < M and t * TILE_W + tx < K else float32(0)
        sB[ty, tx] = B[col, t * TILE_W + ty] if col < N and t * TILE_W + ty < K else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def abt_double_buffer(A, B, C):
    """Correct: two tile buffers alternating per step, one barrier per step."""
    sA = cuda.shared.array((2, TILE_W, TILE_W), float32)
    sB = cuda.shared.array((2, TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        p = t % 2
        k = t * TILE_W + tx
        sA[p, ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * TILE_W + ty
        sB[p, ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[p, ty, i] * sB[p, i, tx]
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def abt_racy(A, B, C):
    """Wrong: the notebook's racy kernel unchanged (second barrier missing)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        k = t * TILE_W + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * TILE_W + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def abt_sync_moved(A, B, C):
    """Wrong: the one barrier moved after the inner loop (read-after-write race on the loads)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        k = t * TILE_W + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * TILE_W + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def abt_no_zero_pad(A, B, C):
    """Wrong: the partial tile along K is not padded with zeros (stale shared values stay)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        k = t * TILE_W + tx
        if row < M and k < K:
            sA[ty, tx] = A[row, k]
        k = t * TILE_W + ty
        if col < N and k < K:
            sB[ty, tx] = B[col, k]
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def abt_sync_in_branch(A, B, C):
    """Wrong: the second barrier inside `if row < M and col < N` (divergent barrier; threads outside C skip it)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    M, K = A.shape
    N = B.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        k = t * TILE_W + tx
        sA[ty, tx] = A[row, k] if row < M and k < K else float32(0)
        k = t * TILE_W + ty
        sB[ty, tx] = B[col, k] if col < N and k < K else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        if row < M and col < N:
            cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


# ---- 04.4 tiled C = A^T B


@cuda.jit
def atbt_ok(A, B, C):
    """Correct: the hint's loads, two barriers per step."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        ka = t * TILE_W + tx
        arow = cuda.blockIdx.y * TILE_W + ty
        sA[ty, tx] = A[ka, arow] if ka < K and arow < M else float32(0)
        kb = t * TILE_W + ty
        sB[ty, tx] = B[kb, col] if kb < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def atbt_coalesced_loads(A, B, C):
    """Correct: A's tile loaded with tx along A's rows (coalesced), stored transposed: sAT[k, m]."""
    sAT = cuda.shared.array((TILE_W, TILE_W), float32)  # sAT[kk, mm] = A[t*T + kk, by*T + mm]
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    m0 = cuda.blockIdx.y * TILE_W
    row = m0 + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        k = t * TILE_W + ty
        sAT[ty, tx] = A[k, m0 + tx] if k < K and m0 + tx < M else float32(0)
        sB[ty, tx] = B[k, col] if k < K and col < N else float32(0)
        cuda.syncthreads()
        for kk in range(TILE_W):
            acc += sAT[kk, ty] * sB[kk, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def atbt_partial_loop(A, B, C):
    """Correct: the inner loop stops at the valid part of the last tile (no padding needed for the products,
    but the tile is padded anyway)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for k0 in range(0, K, TILE_W):
        sA[ty, tx] = A[k0 + tx, row] if k0 + tx < K and row < M else float32(0)
        sB[ty, tx] = B[k0 + ty, col] if k0 + ty < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(min(TILE_W, K - k0)):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def atbt_no_pad(A, B, C):
    """Wrong: loads only when inside A/B, no zero padding of partial tiles."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        ka = t * TILE_W + tx
        if ka < K and row < M:
            sA[ty, tx] = A[ka, row]
        kb = t * TILE_W + ty
        if kb < K and col < N:
            sB[ty, tx] = B[kb, col]
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def atbt_early_return(A, B, C):
    """Wrong: threads outside C return early (stop loading; also skip barriers)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    if row >= M or col >= N:
        return
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        ka = t * TILE_W + tx
        sA[ty, tx] = A[ka, row] if ka < K else float32(0)
        kb = t * TILE_W + ty
        sB[ty, tx] = B[kb, col] if kb < K else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    C[row, col] = acc


@cuda.jit
def atbt_no_second_sync(A, B, C):
    """Wrong: missing the barrier after the inner loop (write-after-read race)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        ka = t * TILE_W + tx
        sA[ty, tx] = A[ka, row] if ka < K and row < M else float32(0)
        kb = t * TILE_W + ty
        sB[ty, tx] = B[kb, col] if kb < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def atbt_plain_A(A, B, C):
    """Wrong: loads A[row, k] as in a plain matmul (guarded by A's shape)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        ka = t * TILE_W + tx
        sA[ty, tx] = A[row, ka] if row < K and ka < M else float32(0)
        kb = t * TILE_W + ty
        sB[ty, tx] = B[kb, col] if kb < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def atbt_floor_steps(A, B, C):
    """Wrong: K // TILE_W steps (drops the partial last step when K = 21)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = float32(0)
    for t in range(K // TILE_W):
        ka = t * TILE_W + tx
        sA[ty, tx] = A[ka, row] if ka < K and row < M else float32(0)
        kb = t * TILE_W + ty
        sB[ty, tx] = B[kb, col] if kb < K and col < N else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


@cuda.jit
def atbt_f64_pad(A, B, C):
    """Wrong: pads with the float64 literal 0.0 and accumulates from acc = 0.0."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K, M = A.shape
    N = B.shape[1]
    acc = 0.0
    for t in range((K + TILE_W - 1) // TILE_W):
        ka = t * TILE_W + tx
        sA[ty, tx] = A[ka, row] if ka < K and row < M else 0.0
        kb = t * TILE_W + ty
        sB[ty, tx] = B[kb, col] if kb < K and col < N else 0.0
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc


def _t(n, name, check, fn, ok, **kw):
    return Answer(n, name, check, (fn,), ok, kwargs={"tile": TILE_W} if n in ("04.3", "04.4") else {}, **kw)


ANSWERS = [
    _t("04.1", "col-row", "check_transposed_matmul", atb_ok, True),
    _t("04.1", "row-col", "check_transposed_matmul", atb_rows_x, True),
    _t("04.1", "grid-stride", "check_transposed_matmul", atb_stride, True),
    _t("04.1", "plain-matmul-index", "check_transposed_matmul", atb_plain, False),
    _t("04.1", "k-bound-M", "check_transposed_matmul", atb_k_bound, False),
    _t("04.1", "float64-acc", "check_transposed_matmul", atb_acc_f64, True),
    _t("04.1", "swapped-guard", "check_transposed_matmul", atb_guard_swapped, False),
    _t("04.1", "hard-coded", "check_transposed_matmul", atb_hardcoded, False),
    _t("04.2", "one-thread-per-col", "check_bias_grad", bg_ok, True),
    _t("04.2", "grid-stride", "check_bias_grad", bg_stride, True),
    _t("04.2", "mean", "check_bias_grad", bg_mean, False),
    _t("04.2", "row-sum", "check_bias_grad", bg_rows, False),
    _t("04.2", "off-by-one", "check_bias_grad", bg_off_by_one, False),
    _t("04.2", "guard-rows", "check_bias_grad", bg_guard_rows, False),
    _t("04.2", "into-db", "check_bias_grad", bg_into_db, False),
    _t("04.2", "hard-coded", "check_bias_grad", bg_hardcoded, False),
    _t("04.3", "second-barrier", "check_matmul_a_bt_tiled", abt_fixed, True),
    _t("04.3", "barrier-at-top", "check_matmul_a_bt_tiled", abt_sync_top, True),
    _t("04.3", "double-buffer", "check_matmul_a_bt_tiled", abt_double_buffer, True),
    _t("04.3", "unchanged-racy", "check_matmul_a_bt_tiled", abt_racy, False),
    _t("04.3", "barrier-moved", "check_matmul_a_bt_tiled", abt_sync_moved, False),
    _t("04.3", "no-zero-pad", "check_matmul_a_bt_tiled", abt_no_zero_pad, False),
    _t("04.3", "barrier-in-branch", "check_matmul_a_bt_tiled", abt_sync_in_branch, False),
    _t("04.4", "hint", "check_matmul_at_b_tiled", atbt_ok, True),
    _t("04.4", "coalesced-A-loads", "check_matmul_at_b_tiled", atbt_coalesced_loads, True),
    _t("04.4", "partial-inner-loop", "check_matmul_at_b_tiled", atbt_partial_loop, True),
    _t("04.4", "no-zero-pad", "check_matmul_at_b_tiled", atbt_no_pad, False),
    _t("04.4", "early-return", "check_matmul_at_b_tiled", atbt_early_return, False),
    _t("04.4", "no-second-barrier", "check_matmul_at_b_tiled", atbt_no_second_sync, False),
    _t("04.4", "plain-A-index", "check_matmul_at_b_tiled", atbt_plain_A, False),
    _t("04.4", "floor-steps", "check_matmul_at_b_tiled", atbt_floor_steps, False),
    _t("04.4", "float64-literals", "check_matmul_at_b_tiled", atbt_f64_pad, False),
]


@cuda.jit
def atbt_hardcoded_mn(A, B, C):
    """Wrong: the hint's kernel with M = 19 and N = 13 copied from the statement (K still read from A)."""
    sA = cuda.shared.array((TILE_W, TILE_W), float32)
    sB = cuda.shared.array((TILE_W, TILE_W), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE_W + ty
    col = cuda.blockIdx.x * TILE_W + tx
    K = A.shape[0]
    acc = float32(0)
    for t in range((K + TILE_W - 1) // TILE_W):
        ka = t * TILE_W + tx
        sA[ty, tx] = A[ka, row] if ka < K and row < 19 else float32(0)
        kb = t * TILE_W + ty
        sB[ty, tx] = B[kb, col] if kb < K and col < 13 else float32(0)
        cuda.syncthreads()
        for i in range(TILE_W):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    if row < 19 and col < 13:
        C[row, col] = acc


ANSWERS.append(_t("04.4", "hard-coded-M-N", "check_matmul_at_b_tiled", atbt_hardcoded_mn, False))
