"""Matrix transpose three ways: the performance lab's (notebook 09) example of memory traffic.

``B = Aᵀ`` for a row-major float32 A (M, N). All three kernels use the same launch: blocks of
(TILE, ROWS) = (32, 8) threads, each block moving one TILE × TILE tile (each thread TILE / ROWS
elements), grid (ceil(N / TILE), ceil(M / TILE)).

- ``transpose_naive_kernel`` reads A along a row (lanes of a warp on consecutive addresses: coalesced)
  and writes B down a column (each lane in another row of B: one 32-byte sector per lane).
- ``transpose_shared_kernel`` stages the tile in shared memory so that both the read of A and the write
  of B run along rows; the tile is then read down a column, and all 32 words of a tile column lie in
  the same shared-memory bank (a row of 32 float32 is 128 bytes = one pass over the 32 banks): a
  32-way bank conflict.
- ``transpose_padded_kernel`` gives the tile one extra column (TILE + 1): a column's words then fall
  in 32 different banks, and the conflict is gone.
"""

from __future__ import annotations

from numba import cuda, float32

from nbkit.core.launch import blocks_for, launch
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array

TILE = 32  # tile edge: one warp's width, so a tile row is one coalesced request
TILE_PAD = TILE + 1  # a padded tile row (a named constant: numba needs constant shared-array shapes)
ROWS = 8  # block (TILE, ROWS): 256 threads, each moving TILE // ROWS = 4 elements per tile
_SIG = "void(float32[:, ::1], float32[:, ::1])"


@kernel(_SIG, block=(TILE, ROWS), min_occupancy=0.5)
def transpose_naive_kernel(A, B):
    j = cuda.blockIdx.x * TILE + cuda.threadIdx.x  # column of A (consecutive lanes: consecutive columns)
    for r in range(0, TILE, ROWS):
        i = cuda.blockIdx.y * TILE + cuda.threadIdx.y + r  # row of A
        if i < A.shape[0] and j < A.shape[1]:
            B[j, i] = A[i, j]  # the read runs along a row of A, the write down a column of B


@kernel(_SIG, block=(TILE, ROWS), min_occupancy=0.5)
def transpose_shared_kernel(A, B):
    tile = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x0, y0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE  # this tile's first column and row of A
    for r in range(0, TILE, ROWS):
        i, j = y0 + ty + r, x0 + tx
        if i < A.shape[0] and j < A.shape[1]:
            tile[ty + r, tx] = A[i, j]  # coalesced read of a row of A into a row of the tile
    cuda.syncthreads()  # the whole tile is loaded before anyone reads another thread's element
    for r in range(0, TILE, ROWS):
        i, j = x0 + ty + r, y0 + tx  # row and column of B
        if i < B.shape[0] and j < B.shape[1]:
            B[i, j] = tile[tx, ty + r]  # coalesced write of a row of B, from a COLUMN of the tile


@kernel(_SIG, block=(TILE, ROWS), min_occupancy=0.5)
def transpose_padded_kernel(A, B):
    tile = cuda.shared.array((TILE, TILE_PAD), float32)  # one padding column: a tile column spans all banks
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


KERNELS = {"naive": transpose_naive_kernel, "shared": transpose_shared_kernel, "padded": transpose_padded_kernel}


def launch_config(M: int, N: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) for transposing an M × N matrix with any of the kernels here."""
    return (blocks_for(N, TILE), blocks_for(M, TILE)), (TILE, ROWS)


def transpose(A, method: str = "padded"):
    """``Aᵀ`` of a float32 matrix (NumPy or device array; the result is of the same kind)."""
    if method not in KERNELS:
        raise ValueError(f"method must be one of {sorted(KERNELS)}, got {method!r}")
    A = require_array(A, "A", ndim=2)
    M, N = A.shape
    B = new_output(A, (N, M))
    grid, block = launch_config(M, N)
    launch(KERNELS[method], grid, block, A, B)
    return B
