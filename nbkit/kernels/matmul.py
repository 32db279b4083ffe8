"""Matrix multiply kernels: ``C = op(A) @ op(B)``, where op transposes when asked.

Two versions, same interface. ``matmul_naive_kernel``: one thread per output element, reading a whole
row of op(A) and column of op(B) from global memory (2K loads per output). ``matmul_tiled_kernel``:
a block of TILE×TILE threads stages TILE×TILE tiles of both operands in shared memory, so each value
loaded from global memory is reused TILE times (2K/TILE loads per output). Notebook 04 counts this.

The transpose flags let the dense layer use one kernel for ``A Wᵀ``, ``dZ W`` and ``dZᵀ A`` without
copying a transposed matrix. Thread x runs along the columns of C, so neighbouring threads write
neighbouring addresses (coalesced stores).
"""

from __future__ import annotations

from numba import cuda, float32

from nbkit.core.launch import block_2d, grid_2d, launch
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array

TILE = 16
_SIG = "void(float32[:, ::1], float32[:, ::1], float32[:, ::1], int32, int32)"


@kernel(_SIG)
def matmul_naive_kernel(A, B, C, trans_a, trans_b):
    col, row = cuda.grid(2)
    K = A.shape[0] if trans_a else A.shape[1]
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(K):
            a = A[k, row] if trans_a else A[row, k]
            b = B[col, k] if trans_b else B[k, col]
            acc += a * b
        C[row, col] = acc


@kernel(_SIG, block=(TILE, TILE), min_occupancy=0.5)  # the resource test checks this block on sm_75/80/90
def matmul_tiled_kernel(A, B, C, trans_a, trans_b):
    sA = cuda.shared.array((TILE, TILE), float32)
    sB = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    acc = float32(0)
    for t in range((K + TILE - 1) // TILE):
        # Every thread loads one element of each tile; outside the matrix it loads 0, which adds nothing.
        ka = t * TILE + tx
        if row < M and ka < K:
            sA[ty, tx] = A[ka, row] if trans_a else A[row, ka]
        else:
            sA[ty, tx] = float32(0)
        kb = t * TILE + ty
        if kb < K and col < N:
            sB[ty, tx] = B[col, kb] if trans_b else B[kb, col]
        else:
            sB[ty, tx] = float32(0)
        cuda.syncthreads()  # the tiles are complete before anyone reads them
        for i in range(TILE):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()  # everyone is done reading before the next tiles overwrite them
    if row < M and col < N:
        C[row, col] = acc


KERNELS = {"naive": matmul_naive_kernel, "tiled": matmul_tiled_kernel}


def matmul(A, B, trans_a: bool = False, trans_b: bool = False, method: str = "tiled"):
    """``op(A) @ op(B)`` for float32 matrices (NumPy or device arrays; the result is of the same kind)."""
    if method not in KERNELS:
        raise ValueError(f"method must be one of {sorted(KERNELS)}, got {method!r}")
    A = require_array(A, "A", ndim=2)
    B = require_array(B, "B", ndim=2)
    M, K = (A.shape[1], A.shape[0]) if trans_a else A.shape
    K2, N = (B.shape[1], B.shape[0]) if trans_b else B.shape
    if K != K2:
        raise ValueError(f"inner dimensions differ: op(A) is {M}x{K}, op(B) is {K2}x{N} "
                         f"(A {tuple(A.shape)}{'ᵀ' if trans_a else ''}, B {tuple(B.shape)}{'ᵀ' if trans_b else ''}).")
    C = new_output(A, (M, N))
    # The tiled kernel needs exactly TILE x TILE threads (one per tile element); the naive one any block.
    block = (TILE, TILE) if method == "tiled" else block_2d(M, N)
    launch(KERNELS[method], grid_2d(M, N, block), block, A, B, C, int(trans_a), int(trans_b))
    return C
