"""Kernels that report which thread touched which element: the data behind the thread-map pictures."""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbkit.core.launch import blocks_for, launch
from nbkit.core.registry import kernel

_I = "int32[::1]"


@kernel(f"void({_I}, {_I}, {_I})")
def record_thread_ids(block_of, thread_of, global_of):
    i = cuda.grid(1)
    if i < global_of.size:
        block_of[i] = cuda.blockIdx.x
        thread_of[i] = cuda.threadIdx.x
        global_of[i] = i


@kernel(f"void({_I}, {_I})")
def record_grid_stride(block_of, thread_of):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)  # total number of threads in the grid
    for i in range(start, block_of.size, stride):  # each thread takes every stride-th element
        block_of[i] = cuda.blockIdx.x
        thread_of[i] = cuda.threadIdx.x


@kernel("void(int32[:, ::1], int32[:, ::1])")
def record_thread_ids_2d(block_id, thread_id):
    col, row = cuda.grid(2)  # x runs along columns, y along rows
    if row < block_id.shape[0] and col < block_id.shape[1]:
        block_id[row, col] = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x
        thread_id[row, col] = cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x


def thread_map(n: int, threads_per_block: int) -> dict:
    """Launch :func:`record_thread_ids` over ``n`` elements and return who wrote each element."""
    block_of, thread_of, global_of = (np.full(n, -1, dtype=np.int32) for _ in range(3))
    blocks = blocks_for(n, threads_per_block)
    launch(record_thread_ids, blocks, threads_per_block, block_of, thread_of, global_of)
    return {"block": block_of, "thread": thread_of, "global": global_of,
            "blocks": blocks, "threads_per_block": threads_per_block}


def grid_stride_map(n: int, blocks: int, threads_per_block: int) -> dict:
    """Launch :func:`record_grid_stride` with a grid smaller than ``n`` and return who wrote each element."""
    block_of, thread_of = np.full(n, -1, dtype=np.int32), np.full(n, -1, dtype=np.int32)
    launch(record_grid_stride, blocks, threads_per_block, block_of, thread_of)
    return {"block": block_of, "thread": thread_of, "blocks": blocks, "threads_per_block": threads_per_block}


def thread_map_2d(rows: int, cols: int, block: tuple[int, int]) -> dict:
    """Launch :func:`record_thread_ids_2d` over a rows×cols matrix with ``block`` = (x, y) threads."""
    block_id, thread_id = np.full((rows, cols), -1, dtype=np.int32), np.full((rows, cols), -1, dtype=np.int32)
    grid = (blocks_for(cols, block[0]), blocks_for(rows, block[1]))
    launch(record_thread_ids_2d, grid, block, block_id, thread_id)
    return {"block": block_id, "thread": thread_id, "grid": grid, "block_dim": block}


@kernel("void(int32[:, ::1], int32, int32, int32[:, ::1])")
def record_conv_reads(reads, KH, KW, owner):
    j, i, z = cuda.grid(3)  # the same thread -> output mapping as conv2d_forward_kernel (one image, one filter)
    if z == 0 and i < owner.shape[0] and j < owner.shape[1]:
        owner[i, j] = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x  # which block computed output (i, j)
        for p in range(KH):
            for q in range(KW):
                cuda.atomic.add(reads, (i + p, j + q), 1)  # count the threads that read input (i+p, j+q)


def conv_read_map(H: int, W: int, KH: int, KW: int) -> dict:
    """Launch :func:`record_conv_reads` like the conv2d forward kernel and return who read what."""
    from nbkit.kernels.conv import BLOCK

    OH, OW = H - KH + 1, W - KW + 1
    reads, owner = np.zeros((H, W), dtype=np.int32), np.full((OH, OW), -1, dtype=np.int32)
    grid = (blocks_for(OW, BLOCK[0]), blocks_for(OH, BLOCK[1]), 1)
    launch(record_conv_reads, grid, BLOCK, reads, np.int32(KH), np.int32(KW), owner)
    return {"reads": reads, "owner": owner, "kernel": (KH, KW), "grid": grid, "block": BLOCK}
