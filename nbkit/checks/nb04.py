"""Checks for notebook 04 (the dense layer): the backward pass as kernels, shared-memory tiles, races."""

from __future__ import annotations

import numpy as np

from nbkit.checks._core import (
    SENTINEL,
    compare,
    exercise,
    fail,
    find_races,
    passed,
    race_sentence,
    require_float32,
    run_kernel,
    unwritten_cause,
)
from nbkit.core.launch import blocks_for

_MATMUL_SIG = "void(float32[:, ::1], float32[:, ::1], float32[:, ::1])"


@exercise("04.1", "write the kernel matmul_at_b(A, B, C)")
def check_transposed_matmul(kernel, M: int = 19, K: int = 21, N: int = 13, block: tuple[int, int] = (8, 8)) -> None:
    """Exercise 04.1: ``kernel(A, B, C)`` computes ``C = Aᵀ B`` for A (K, M), B (K, N), C (M, N).

    This is the weight gradient ``dW = dZᵀ A`` of the dense layer. Any thread mapping is accepted: the
    launch has blocks of 8×8 threads and covers ``max(M, N)`` threads along both x and y, so x may run along
    the columns of C (the course's convention, ``col, row = cuda.grid(2)``) or along its rows, with or
    without a grid-stride loop. M = 19, N = 13 and K = 21 all differ and none is a multiple of 8, so a
    swapped index or a sum over the wrong dimension fails.
    """
    r = np.random.default_rng(41)
    A = r.standard_normal((K, M)).astype(np.float32)
    B = r.standard_normal((K, N)).astype(np.float32)
    side = max(blocks_for(M, block[1]), blocks_for(N, block[0]))
    run = run_kernel(kernel, (side, side), block, [A, B], [(M, N)], output_names=("C",), call="matmul_at_b(A, B, C)")
    want = A.T.astype(np.float64) @ B
    s = min(M, N)
    compare("C", run.outputs[0], want, rtol=1e-4, atol=1e-4, run=run, causes=[
        (lambda got: np.allclose(got[:s, :s].T, want[:s, :s], rtol=1e-4, atol=1e-4),
         "row and column are swapped: C[row, col] = sum over k of A[k, row] * B[k, col]."),
        (A[:min(M, K)].T.astype(np.float64) @ B[:min(M, K)],
         f"the sum runs over k < A.shape[1] = {M}; it must run over the shared first dimension, "
         f"k < A.shape[0] = {K}."),
        unwritten_cause(run),
    ])
    passed(f"C = Aᵀ B is correct for A {A.shape}, B {B.shape}, without copying a transposed A.")


@exercise("04.2", "write the kernel bias_grad(dZ, db)")
def check_bias_grad(kernel, batch: int = 37, n_out: int = 45, threads: int = 32) -> None:
    """Exercise 04.2: ``kernel(dZ, db)`` writes ``db[j] = sum over n of dZ[n, j]``, one thread per column.

    Launched with ``blocks_for(45, 32)`` blocks of 32 threads for dZ of shape (37, 45): more threads than
    columns, and a batch size that differs from the column count.
    """
    dZ = np.random.default_rng(42).standard_normal((batch, n_out)).astype(np.float32)
    run = run_kernel(kernel, blocks_for(n_out, threads), threads, [dZ], [(n_out,)], output_names=("db",),
                     call="bias_grad(dZ, db)")
    want = dZ.sum(axis=0, dtype=np.float64)
    compare("db", run.outputs[0], want, rtol=1e-5, atol=1e-5, run=run, causes=[
        (want / batch, f"db is the mean over the batch: it is the sum. The 1/N of a mean loss is already inside dZ "
                       f"(notebook 01); dividing again by N = {batch} makes the bias learn {batch} times too slowly."),
        (want + SENTINEL, "you accumulated into db[j] directly, which starts with whatever the memory held (-7 "
                          "here, garbage on a GPU): sum into a local acc = float32(0), then write db[j] = acc once."),
        (want - dZ[-1], "the last row of dZ is missing from every sum: the loop over the batch must run over "
                        "range(dZ.shape[0])."),
        unwritten_cause(run),
    ])
    passed(f"db = column sums of dZ {dZ.shape} is correct: one thread per column, so neighbouring threads read "
           "neighbouring addresses at every step of the loop (coalesced).")


# --------------------------------------------------------------------------------------------------
# shared-memory tiles: the race detector of the memory-access tracer


def _edge_blocks_only(wrong: np.ndarray, tile: int) -> bool:
    """All wrong outputs lie in the last row or last column of blocks (the partial tiles of C)."""
    M, N = wrong.shape
    inner = np.zeros_like(wrong)
    inner[:(M // tile) * tile, :(N // tile) * tile] = True
    return bool(wrong.any() and not (wrong & inner).any())


def _tiled_run(kernel, A, B, M, N, tile, call, want, extra_causes=()):
    grid = (blocks_for(N, tile), blocks_for(M, tile))
    run = run_kernel(kernel, grid, (tile, tile), [A, B], [(M, N)], output_names=("C",), call=call)
    got = run.outputs[0]
    wrong = ~np.isclose(got, want, rtol=1e-4, atol=1e-4)
    causes = [unwritten_cause(run)]
    if wrong.any():
        races, _ = find_races(kernel, grid, (tile, tile), A, B, np.zeros((M, N), np.float32))
        if races:
            causes.insert(0, (lambda g: True, "a race on shared memory: " + race_sentence(races)))
        causes.append((lambda g: _edge_blocks_only(wrong, tile),
                       "only blocks on the edge of C are wrong: threads outside C (row >= M or col >= N) must still load their "
                       "element of the tiles (a zero) and reach every cuda.syncthreads(); skip only the final "
                       "write to C, never the loads (no early return)."))
        causes.extend(extra_causes)
    compare("C", got, want, rtol=1e-4, atol=1e-4, run=run, causes=causes)
    return grid


def _no_race_or_fail(kernel, grid, tile, A, B, M, N) -> str:
    races, shared = find_races(kernel, grid, (tile, tile), A, B, np.zeros((M, N), np.float32))
    if not shared:
        fail("your kernel gives the right C but uses no shared memory: this exercise is about tiles in "
             "cuda.shared.array, loaded once per block and read by every thread of the block.")
    if races is None:
        return ("shared-memory races were NOT checked (the memory-access tracer nbkit.tracer is not available here, "
                "or could not run this kernel)")
    if races:
        fail("C came out right in the simulator, which ran the threads of each block in one particular order, but "
             "the tracer (which does not depend on that order) found a race on shared memory: " + race_sentence(races)
             + " On a GPU the order changes from run to run, and so may the result.")
    return (f"the tracer found no shared-memory race in any of the {grid[0] * grid[1]} blocks (every pair of "
            "accesses between two barriers, whatever order the simulator ran the threads in)")


def _both_tiles_or_fail(kernel, grid, tile, A, B, M, N) -> str:
    """Fail unless every block reads each element of A and of B from global memory at most once (into its tile).

    In the tiled product a block loads each element of its A and B panels once into shared memory and every
    thread reads it from there; a kernel that reads A (or B) from global memory inside the product reads
    each element once per thread of a block row (``tile`` times). Counted by the memory-access tracer.
    """
    try:
        from nbkit.tracer import trace
    except ImportError:
        return "whether A and B are both read through shared memory was NOT checked (no tracer here)"
    try:
        t = trace(kernel, grid, (tile, tile), np.array(A), np.array(B), np.zeros((M, N), np.float32),
                  names=["A", "B", "C"])  # the check's names, whatever the kernel calls its parameters
    except Exception:  # noqa: BLE001 - the launch was checked before; a tracer failure proves nothing
        return "whether A and B are both read through shared memory was NOT checked (the tracer could not run it)"
    for name in ("A", "B"):
        for b in range(grid[0] * grid[1]):
            reads = t.reads_per_element(name, b)
            if reads.max() > 1:
                where = tuple(int(i) for i in np.unravel_index(int(np.argmax(reads)), reads.shape))
                fail(f"C is right, but block {t.block_index(b)} read {name}[{where[0]}, {where[1]}] from global "
                     f"memory {int(reads.max())} times (counted by the tracer): {name} is read from global memory "
                     f"by several threads of a block, not through a tile. Both A and B go through shared memory: "
                     f"each thread loads one element of each tile (sA and sB) per step, and the product reads only "
                     f"sA and sB.")
    return "each block read every element of A and B from global memory at most once (both go through the tiles)"


@exercise("04.3", "fix the race in matmul_a_bt_tiled(A, B, C)")
def check_matmul_a_bt_tiled(kernel, tile: int = 8, M: int = 19, K: int = 21, N: int = 13) -> None:
    """Exercise 04.3 ("find the race"): ``kernel(A, B, C)`` computes ``C = A Bᵀ`` with shared-memory tiles.

    A (19, 21), B (13, 21), C (19, 13): 3 × 2 blocks of ``tile`` × ``tile`` threads (tile 8), 3 steps along K
    with a partial last tile. The result must be right *and* the memory-access tracer must find no
    shared-memory race: the simulator may compute the right answer from a racy kernel (it runs threads in
    its own order), so the values alone cannot prove the barrier is there.
    """
    r = np.random.default_rng(43)
    A = r.standard_normal((M, K)).astype(np.float32)
    B = r.standard_normal((N, K)).astype(np.float32)
    want = A.astype(np.float64) @ B.T
    grid = _tiled_run(kernel, A, B, M, N, tile, "matmul_a_bt_tiled(A, B, C)", want)
    verdict = _no_race_or_fail(kernel, grid, tile, A, B, M, N)
    passed(f"C = A Bᵀ is correct for A {A.shape}, B {B.shape} with {tile}x{tile} tiles; {verdict}.")


@exercise("04.4", "write the kernel matmul_at_b_tiled(A, B, C)")
def check_matmul_at_b_tiled(kernel, tile: int = 8) -> None:
    """Exercise 04.4: ``kernel(A, B, C)`` computes ``C = Aᵀ B`` (A (K, M), B (K, N)) with shared-memory tiles.

    Launched with blocks of ``tile`` × ``tile`` threads, grid ``(ceil(N/tile), ceil(M/tile))``: block (bx, by)
    computes the tile of C at rows ``by*tile...``, columns ``bx*tile...``. M = 2·tile + 3 and N = tile + 5 need
    3 and 2 blocks, so every block row and column has a partial tile. Run first with K = 2·tile (whole tiles
    along K), then K = 2·tile + 5: a kernel right for the first and wrong for the second does not zero-pad
    the partial tiles (or stops one step early). Then the tracer looks for races (a missing ``cuda.syncthreads()``)
    and counts global reads: each block reads every element of A and B at most once, so both go through a
    shared tile; last, the PTX is searched for float64 arithmetic.
    """
    M, N = 2 * tile + 3, tile + 5
    r = np.random.default_rng(44)
    call = "matmul_at_b_tiled(A, B, C)"
    for K in (2 * tile, 2 * tile + 5):
        A = r.standard_normal((K, M)).astype(np.float32)
        B = r.standard_normal((K, N)).astype(np.float32)
        want = A.T.astype(np.float64) @ B
        causes = []
        if K % tile:  # the run with whole tiles along K passed: name the partial tile
            right_for = (f"it is right when K is a multiple of the tile (K = {2 * tile}) and wrong for K = {K}, where "
                         "the last step along K has a partial tile. ")
            partial = right_for + ("Threads whose k is past the end (k >= K) must store a zero in the tile, not skip "
                                   "the store: ")
            whole = K - K % tile
            lo, hi = whole - tile + K % tile, whole
            stale = want + A[lo:hi].T.astype(np.float64) @ B[lo:hi]  # unloaded slots keep the previous step's values
            causes = [
                (A[:whole].T.astype(np.float64) @ B[:whole],
                 right_for + f"Your C is the product over the whole tiles only (k < {whole}): the last, partial step "
                             f"along K is never done: the loop needs ceil(K / TILE_W) steps, "
                             f"(K + TILE_W - 1) // TILE_W = {-(-K // tile)} here, not K // TILE_W = {K // tile}."),
                (stale, partial + "your C is exactly what the previous step's values left in those slots give."),
                (lambda g: True, right_for + "Possibly the partial tile is not zero-padded (threads whose k >= K must "
                                             "store a zero in the tile, not skip the store, or the slot keeps an old "
                                             "value), or the last step along K is handled differently from the others."),
            ]
        grid = _tiled_run(kernel, A, B, M, N, tile, call, want, causes)
    verdict = _no_race_or_fail(kernel, grid, tile, A, B, M, N)
    tiles = _both_tiles_or_fail(kernel, grid, tile, A, B, M, N)
    ok = require_float32(kernel, _MATMUL_SIG)
    passed(f"C = Aᵀ B with {tile}x{tile} shared-memory tiles is correct for K = {2 * tile} and {2 * tile + 5} "
           f"(C {M}x{N}); {verdict}; {tiles}; {ok}.")

