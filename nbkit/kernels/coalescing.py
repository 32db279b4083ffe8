"""Kernels that show coalescing in notebook 09 (the performance lab), and a coalesced tiled matmul.

A warp's 32 lanes issue one memory request together; global memory answers it in 32-byte sectors.
When the lanes read 32 consecutive float32 (128 bytes) the request needs 4 sectors; when each lane's
address lies in another sector it needs 32, and 7/8 of every sector moved is thrown away.

- ``gather_strided_kernel``: ``out[i] = x[offset + i * stride]``: stride 1 = 4 sectors per request,
  stride 2 = 8, stride >= 8 = 32; offset 1 (misaligned) = 5.
- ``scale_add_strided_kernel``: ``out = alpha A + B`` on a matrix, correct but with thread x running
  down the rows: every request touches one element per row (the starting point of exercise 09.1).
- ``matmul_tiled_coalesced_kernel``: the tiled matmul of :mod:`nbkit.kernels.matmul` with the same interface,
  but a transposed operand is loaded with the lanes running along its contiguous (last) axis and
  stored transposed into a padded shared tile. In ``nbkit.kernels.matmul.matmul_tiled_kernel`` the loads
  ``A[ka, row]`` (trans_a) and ``B[col, kb]`` (trans_b) make the lanes of a warp read down a column.
"""

from __future__ import annotations

from numba import cuda, float32

from nbkit.core.launch import block_2d, grid_2d, launch
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array

TILE = 16  # the same tile as nbkit.kernels.matmul
TILE_PAD = TILE + 1  # padded tile rows (a named constant: numba needs constant shared-array shapes)


@kernel("void(float32[::1], float32[::1], int32, int32)")
def gather_strided_kernel(x, out, stride, offset):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[offset + i * stride]  # lane i reads element offset + i*stride: stride 1 is coalesced


@kernel("void(float32[:, ::1], float32[:, ::1], float32, float32[:, ::1])")
def scale_add_strided_kernel(A, B, alpha, out):
    x0, y0 = cuda.grid(2)
    sx, sy = cuda.gridsize(2)
    for i in range(x0, out.shape[0], sx):  # x (consecutive lanes) runs down the ROWS: one row per lane
        for j in range(y0, out.shape[1], sy):
            out[i, j] = alpha * A[i, j] + B[i, j]


_SIG = "void(float32[:, ::1], float32[:, ::1], float32[:, ::1], int32, int32)"


@kernel(_SIG, block=(TILE, TILE), min_occupancy=0.5)
def matmul_tiled_coalesced_kernel(A, B, C, trans_a, trans_b):
    # Padded tiles: a transposed store writes a tile column; TILE + 1 spreads it over the banks.
    sA = cuda.shared.array((TILE, TILE_PAD), float32)  # sA[a, b] = op(A)[by*TILE + a, t*TILE + b]
    sB = cuda.shared.array((TILE, TILE_PAD), float32)  # sB[a, b] = op(B)[t*TILE + a, bx*TILE + b]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    r0, c0 = cuda.blockIdx.y * TILE, cuda.blockIdx.x * TILE
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    acc = float32(0)
    for t in range((K + TILE - 1) // TILE):
        k0 = t * TILE
        if trans_a:  # op(A)[r, k] = A[k, r]: lanes (tx) along r, A's contiguous axis
            k, r = k0 + ty, r0 + tx
            sA[tx, ty] = A[k, r] if k < K and r < M else float32(0)
        else:  # op(A)[r, k] = A[r, k]: lanes along k
            r, k = r0 + ty, k0 + tx
            sA[ty, tx] = A[r, k] if r < M and k < K else float32(0)
        if trans_b:  # op(B)[k, c] = B[c, k]: lanes along k, B's contiguous axis
            c, k = c0 + ty, k0 + tx
            sB[tx, ty] = B[c, k] if c < N and k < K else float32(0)
        else:  # op(B)[k, c] = B[k, c]: lanes along c
            k, c = k0 + ty, c0 + tx
            sB[ty, tx] = B[k, c] if k < K and c < N else float32(0)
        cuda.syncthreads()
        for i in range(TILE):
            acc += sA[ty, i] * sB[i, tx]
        cuda.syncthreads()
    row, col = r0 + ty, c0 + tx
    if row < M and col < N:
        C[row, col] = acc


def matmul_coalesced(A, B, trans_a: bool = False, trans_b: bool = False):
    """``op(A) @ op(B)`` with :func:`matmul_tiled_coalesced_kernel` (same contract as :func:`nbkit.kernels.matmul.matmul`)."""
    A = require_array(A, "A", ndim=2)
    B = require_array(B, "B", ndim=2)
    M, K = (A.shape[1], A.shape[0]) if trans_a else A.shape
    K2, N = (B.shape[1], B.shape[0]) if trans_b else B.shape
    if K != K2:
        raise ValueError(f"inner dimensions differ: op(A) is {M}x{K}, op(B) is {K2}x{N}.")
    C = new_output(A, (M, N))
    launch(matmul_tiled_coalesced_kernel, grid_2d(M, N, (TILE, TILE)), (TILE, TILE), A, B, C, int(trans_a), int(trans_b))
    return C


def scale_add_strided(A, B, alpha: float):
    """``alpha A + B`` with :func:`scale_add_strided_kernel` (a small grid; every thread loops)."""
    A = require_array(A, "A", ndim=2)
    B = require_array(B, "B", shape=A.shape)
    out = new_output(A, A.shape)
    block = block_2d(*A.shape, largest=32)
    launch(scale_add_strided_kernel, (2, 2), (block[0], max(1, block[1] // 4)), A, B, float32(alpha), out)
    return out
