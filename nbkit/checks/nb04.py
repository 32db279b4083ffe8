"""Checks for notebook 04 (the dense layer): the backward pass as kernels, shared-memory tiles, races."""

from __future__ import annotations

import dataclasses

import numpy as np

from nbkit.checks._core import fail, race_sentence, where_it_ran
from nbkit.checks._mapping import carried, coalesced_reads, fewer_threads, one_thread_per_item, trace_of
from nbkit.checks.exercise import (
    NEVER_WRITTEN,
    Attempt,
    Case,
    Cause,
    KernelExercise,
    equals,
    square_grid,
    summed_into_output,
)
from nbkit.core.launch import blocks_for

TILE = 8  # the notebook's TILE_W; the tiled checks take another as tile=


def _swapped(a: Attempt) -> bool:
    s = min(a.M, a.N)
    return s > 1 and np.allclose(a.got[:s, :s].T, a.want[:s, :s], rtol=a.rtol, atol=a.atol)


TRANSPOSED_MATMUL = KernelExercise(
    number="04.1", task="write the kernel matmul_at_b(A, B, C)", call="matmul_at_b(A, B, C)", outputs=("C",),
    inputs=lambda rng, c: {"A": rng.standard_normal((c.K, c.M)).astype(np.float32),
                           "B": rng.standard_normal((c.K, c.N)).astype(np.float32)},
    reference=lambda A, B: A.T.astype(np.float64) @ B,
    # the statement's launch first: M, N, K all differ and none is a multiple of 8, so a swapped index or a sum over
    # the wrong dimension fails; then one row of C, K = 1, whole blocks, a prime M with more blocks than needed
    # (square grids: x may run along the rows or the columns of C)
    cases=tuple(Case(grid=tuple(s + spare for s in square_grid(M, N, (8, 8))), block=(8, 8),
                     sizes={"M": M, "K": K, "N": N})
                for M, K, N, spare in [(19, 21, 13, 0), (1, 5, 7, 0), (16, 1, 16, 0), (37, 3, 2, 1), (5, 6, 3, 0)]),
    realistic=(Case(grid=square_grid(257, 199, (8, 8)), block=(8, 8), sizes={"M": 257, "K": 131, "N": 199},
                    label="C of 257 x 199, a sum over K = 131"),),
    rtol=1e-4, atol=1e-4, seed=41,
    causes=(
        Cause(_swapped, "row and column are swapped: C[row, col] = sum over k of A[k, row] * B[k, col]."),
        equals(lambda a: a.A[:min(a.M, a.K)].T.astype(np.float64) @ a.B[:min(a.M, a.K)],
               lambda a: f"the sum runs over k < A.shape[1] = {a.M}; it must run over the shared first dimension, "
                         f"k < A.shape[0] = {a.K}."),
        NEVER_WRITTEN,
    ),
    proofs={
        "mapping": one_thread_per_item("element", reads=lambda a, index: {"A": (slice(None), index[0]),
                                                                              "B": (slice(None), index[1])}),
        "fewer": fewer_threads(Case(grid=(1, 1), block=(8, 8), sizes={"M": 19, "K": 5, "N": 13}), "element"),
    },
    success=lambda f: (f"C = Aᵀ B is correct for A {f.cases[0].A.shape}, B {f.cases[0].B.shape}, and for (M, K, N) = "
                       + ", ".join(str((c.M, c.K, c.N)) for c in f.cases[1:])
                       + f", without copying a transposed A; {f.mapping}; {f.fewer}."),
)


def check_transposed_matmul(kernel) -> None:
    """Exercise 04.1: ``kernel(A, B, C)`` computes ``C = Aᵀ B`` for A (K, M), B (K, N), C (M, N).

    This is the weight gradient ``dW = dZᵀ A`` of the dense layer. Any thread mapping is accepted: the
    launch covers ``max(M, N)`` threads along both x and y, so x may run along the columns of C (the
    course's convention, ``col, row = cuda.grid(2)``) or along its rows, with or without a grid-stride loop.
    """
    TRANSPOSED_MATMUL.check(kernel)


BIAS_GRAD = KernelExercise(
    number="04.2", task="write the kernel bias_grad(dZ, db)", call="bias_grad(dZ, db)", outputs=("db",),
    inputs=lambda rng, c: {"dZ": rng.standard_normal((c.batch, c.n_out)).astype(np.float32)},
    reference=lambda dZ: dZ.sum(axis=0, dtype=np.float64),
    # the statement's launch first: more threads than columns, and a batch size that differs from the column count;
    # then a batch of one, one column, a prime column count with a block to spare, and a last launch that the tracer
    # measures (one thread per column, coalesced reads)
    cases=tuple(Case(grid=blocks_for(n_out, 32) + extra, block=32, sizes={"batch": batch, "n_out": n_out})
                for batch, n_out, extra in [(37, 45, 0), (1, 3, 0), (20, 1, 0), (7, 97, 1), (9, 45, 0)]),
    # blocks of 128 (the small cases use 32), more columns than a block has threads
    realistic=(Case(grid=blocks_for(4099, 128), block=128, sizes={"batch": 257, "n_out": 4099},
                    label="a batch of 257 through a layer of 4,099 outputs"),),
    rtol=1e-5, atol=1e-5, seed=42,
    causes=(
        equals(lambda a: a.want / a.batch,
               lambda a: f"db is the mean over the batch: it is the sum. The 1/N of a mean loss is already inside dZ "
                         f"(notebook 01); dividing again by N = {a.batch} makes the bias learn {a.batch} times too "
                         "slowly."),
        summed_into_output("you accumulated into db[j] directly, which starts with whatever the memory held (-7 "
                           "here, garbage on a GPU): sum into a local acc = float32(0), then write db[j] = acc once."),
        equals(lambda a: a.want - a.dZ[-1], "the last row of dZ is missing from every sum: the loop over the batch "
                                            "must run over range(dZ.shape[0])."),
        NEVER_WRITTEN,
    ),
    proofs={
        "mapping": one_thread_per_item("column", reads=lambda a, index: {"dZ": (slice(None), index[0])}),
        "coalesced": coalesced_reads("dZ"),
        "fewer": fewer_threads(Case(grid=1, block=32, sizes={"batch": 6, "n_out": 75}), "column", causes=(
            Cause(lambda a: np.allclose(a.got[~a.never_written],
                                        carried(a.dZ.sum(axis=0, dtype=np.float64), a.case.threads)[~a.never_written],
                                        rtol=a.rtol, atol=a.atol),
                  lambda a: f"each thread's sum carries over from one of its columns to the next (db[j] is the sum of "
                            f"columns j, j - {a.case.threads}, j - {2 * a.case.threads}, ...): set acc = float32(0) "
                            "inside the loop over columns, once per column."),)),
    },
    float32="void(float32[:, ::1], float32[::1])",
    success=lambda f: (f"db = column sums of dZ {f.cases[0].dZ.shape} is correct, and of dZ "
                       + ", ".join(str(c.dZ.shape) for c in f.cases[1:])
                       + f"; {f.mapping}; {f.coalesced}; {f.fewer}; {f.float32}."),
)


def check_bias_grad(kernel) -> None:
    """Exercise 04.2: ``kernel(dZ, db)`` writes ``db[j] = sum over n of dZ[n, j]``, one thread per column, in float32.

    Checked on five shapes; then the tracer sees one thread compute and write each column and measures the
    sectors per warp request of the reads of dZ (the ✓ says what it measured), a launch with fewer threads than
    columns must leave every column it writes right, and the PTX must have no float64 arithmetic.
    """
    BIAS_GRAD.check(kernel)


# --------------------------------------------------------------------------------------------------
# shared-memory tiles: the race detector of the memory-access tracer


def _outside_threads_skip_loads(a: Attempt) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(block, thread) of a thread outside C, by its row or by its column but not both, that stored nothing into
    shared memory in the whole launch, in a block where every thread inside C did (recorded by the tracer); None
    when there is none.

    Block (bx, by) computes the tile of C at rows by*tile..., columns bx*tile... (the exercise's launch), so thread
    (tx, ty) is outside C when by*tile + ty >= M or bx*tile + tx >= N. A thread outside by its row only owns a slot
    of the B tile that threads inside C read (outside by its column only: a slot of the A tile), so its skipped
    loads change C; a thread outside by both feeds no element of C.
    """
    from nbkit.tracer.memory import WRITE

    t = trace_of(a)
    if t is None:
        return None
    shared = [k for k, info in enumerate(t.arrays) if info.space == "shared"]
    r = t.records
    stores = np.isin(r["array"], shared) & (r["op"] == WRITE)
    storing = set(zip(r["block"][stores].tolist(), r["thread"][stores].tolist()))
    threads = int(np.prod(a.case.block))
    for b in range(int(np.prod(a.case.grid))):
        bx, by = t.block_index(b)[:2]
        inside, idle = [], []
        for th in range(threads):
            tx, ty = t.thread_index(th)[:2]
            past_row, past_col = by * a.tile + ty >= a.M, bx * a.tile + tx >= a.N
            if past_row and past_col:
                continue
            (idle if past_row or past_col else inside).append((th, (b, th) in storing))
        skipped = [th for th, stored in idle if not stored]
        if inside and skipped and all(stored for _, stored in inside):
            return t.block_index(b), t.thread_index(skipped[0])
    return None


def _skip_text(a: Attempt) -> str:
    block, thread = _outside_threads_skip_loads(a)
    return (f"in block {block}, thread {thread} lies outside C (row >= M or col >= N) and stored nothing into the "
            "shared tiles, while every thread inside C did (recorded by the memory-access tracer): its slot of a "
            "tile, which threads inside C read, is never filled. Threads outside C must still load their element of "
            "the tiles (a zero) and reach every cuda.syncthreads(); skip only the final write to C, never the loads "
            "(no early return).")


TILED_CAUSES = (
    Cause(lambda a: bool(a.races), lambda a: "a race on shared memory: " + race_sentence(a.races)),
    NEVER_WRITTEN,
    Cause(lambda a: _outside_threads_skip_loads(a) is not None, _skip_text),
)
"""What a wrong tiled product is told, first: a race (the tracer), unwritten elements, threads that skip the loads."""


def _race_free(a: Attempt) -> str:
    """Proof: the kernel uses shared memory and the tracer finds no race in it."""
    t = trace_of(a)
    if t is not None:  # one trace for every proof of this launch
        a.__dict__["_race_scan"] = (list(t.races()), any(info.space == "shared" for info in t.arrays))
    if not a.uses_shared_memory:
        fail("your kernel gives the right C but uses no shared memory: this exercise is about tiles in "
             "cuda.shared.array, loaded once per block and read by every thread of the block.")
    if a.races is None:
        return ("shared-memory races were NOT checked (the memory-access tracer nbkit.tracer is not available here, "
                "or could not run this kernel)")
    if a.races:
        fail(f"C came out right {where_it_ran()}, but "
             "the tracer (which does not depend on that order) found a race on shared memory: "
             + race_sentence(a.races) + " On a GPU the order changes from run to run, and so may the result.")
    return (f"the tracer found no shared-memory race in any of the {int(np.prod(a.case.grid))} blocks (every pair of "
            "accesses between two barriers, whatever order the simulator ran the threads in)")


def _both_tiles(a: Attempt) -> str:
    """Proof: every block reads each element of A and of B from global memory at most once (into its tile).

    In the tiled product a block loads each element of its A and B panels once into shared memory and every
    thread reads it from there; a kernel that reads A (or B) from global memory inside the product reads
    each element once per thread of a block row (``tile`` times). Counted by the memory-access tracer.
    """
    t = trace_of(a)  # names the arrays as the check does (A, B, C), not as the kernel does
    if t is None:
        return "whether A and B are both read through shared memory was NOT checked (the tracer could not run here)"
    for name in ("A", "B"):
        for b in range(int(np.prod(a.case.grid))):
            reads = t.reads_per_element(name, b)
            if reads.max() > 1:
                where = tuple(int(i) for i in np.unravel_index(int(np.argmax(reads)), reads.shape))
                fail(f"C is right, but block {t.block_index(b)} read {name}[{where[0]}, {where[1]}] from global "
                     f"memory {int(reads.max())} times (counted by the tracer): {name} is read from global memory "
                     f"by several threads of a block, not through a tile. Both A and B go through shared memory: "
                     f"each thread loads one element of each tile (sA and sB) per step, and the product reads only "
                     f"sA and sB.")
    return "each block read every element of A and B from global memory at most once (both go through the tiles)"


def _tiled_case(M: int, K: int, N: int, tile: int) -> Case:
    """Block (bx, by) of tile x tile threads computes the tile of C at rows by*tile..., columns bx*tile...."""
    return Case(grid=(blocks_for(N, tile), blocks_for(M, tile)), block=(tile, tile),
                sizes={"M": M, "K": K, "N": N, "tile": tile})


def _realistic_tiled(tile: int) -> Case:
    """(M, K, N) = (257, 131, 199): no size a multiple of the tile, 17 steps along K with tiles of 8."""
    return dataclasses.replace(_tiled_case(257, 131, 199, tile), label="C of 257 x 199, a sum over K = 131")


def _a_bt_cases(tile: int) -> tuple[Case, ...]:
    # the statement's launch first: 3 x 2 blocks (tile 8), 3 steps along K with a partial last tile; then one row of
    # C and K shorter than a tile, whole tiles, and last one block with 3 steps along K, where the tracer looks for
    # races (a race between steps needs several steps)
    return (_tiled_case(19, 21, 13, tile), _tiled_case(1, 3, 2 * tile + 1, tile), _tiled_case(2 * tile, tile, tile, tile),
            _tiled_case(5, 2 * tile + 3, 3, tile))


MATMUL_A_BT_TILED = KernelExercise(
    number="04.3", task="fix the race in matmul_a_bt_tiled(A, B, C)", call="matmul_a_bt_tiled(A, B, C)",
    outputs=("C",),
    inputs=lambda rng, c: {"A": rng.standard_normal((c.M, c.K)).astype(np.float32),
                           "B": rng.standard_normal((c.N, c.K)).astype(np.float32)},
    reference=lambda A, B: A.astype(np.float64) @ B.T,
    cases=_a_bt_cases(TILE), realistic=(_realistic_tiled(TILE),),
    rtol=1e-4, atol=1e-4, seed=43,
    causes=TILED_CAUSES,
    proofs={"races": _race_free},
    success=lambda f: (f"C = A Bᵀ is correct for A {f.cases[0].A.shape}, B {f.cases[0].B.shape} with {f.tile}x{f.tile} "
                       "tiles, and for (M, K, N) = " + ", ".join(str((c.M, c.K, c.N)) for c in f.cases[1:])
                       + f"; {f.races}."),
)


def check_matmul_a_bt_tiled(kernel, tile: int = TILE) -> None:
    """Exercise 04.3 ("find the race"): ``kernel(A, B, C)`` computes ``C = A Bᵀ`` with shared-memory tiles.

    A (19, 21), B (13, 21), C (19, 13) in blocks of ``tile`` × ``tile`` threads. The result must be right *and*
    the memory-access tracer must find no shared-memory race: the simulator may compute the right answer from
    a racy kernel (it runs threads in its own order), so the values alone cannot prove the barrier is there.
    """
    MATMUL_A_BT_TILED.check(kernel, _a_bt_cases(tile), realistic=(_realistic_tiled(tile),))


def _whole_k(a: Attempt) -> int | None:
    """K of a case of this run that came out right with whole tiles along K (None if there was none)."""
    return next((c.K for c in a.earlier if c.K % c.tile == 0), None)


def _partial(a: Attempt) -> bool:
    """Wrong with a partial tile along K, right before with whole tiles."""
    return a.K % a.tile != 0 and _whole_k(a) is not None


def _right_for(a: Attempt) -> str:
    return (f"it is right when K is a multiple of the tile (K = {_whole_k(a)}) and wrong for K = {a.K}, where the "
            "last step along K has a partial tile. ")


def _whole_tiles_only(a: Attempt) -> np.ndarray:
    whole = a.K - a.K % a.tile
    return a.A[:whole].T.astype(np.float64) @ a.B[:whole]


def _stale_slots(a: Attempt) -> np.ndarray:
    """C when the slots of the partial tile that nobody loads keep the previous step's values."""
    whole = a.K - a.K % a.tile
    lo = whole - a.tile + a.K % a.tile
    return a.want + a.A[lo:whole].T.astype(np.float64) @ a.B[lo:whole]


def _at_b_cases(tile: int) -> tuple[Case, ...]:
    # M = 2 tile + 3 and N = tile + 5 need 3 and 2 blocks: every block row and column has a partial tile; first
    # whole tiles along K, then a partial one (a kernel right for the first only does not zero-pad); then one row of
    # C with K shorter than a tile, and last one block with 3 steps along K (the tracer's proofs run on it)
    return (*(_tiled_case(2 * tile + 3, K, tile + 5, tile) for K in (2 * tile, 2 * tile + 5)),
            _tiled_case(1, 3, 2 * tile + 1, tile), _tiled_case(5, 2 * tile + 3, 3, tile))


MATMUL_AT_B_TILED = KernelExercise(
    number="04.4", task="write the kernel matmul_at_b_tiled(A, B, C)", call="matmul_at_b_tiled(A, B, C)",
    outputs=("C",),
    inputs=lambda rng, c: {"A": rng.standard_normal((c.K, c.M)).astype(np.float32),
                           "B": rng.standard_normal((c.K, c.N)).astype(np.float32)},
    reference=lambda A, B: A.T.astype(np.float64) @ B,
    cases=_at_b_cases(TILE), realistic=(_realistic_tiled(TILE),),
    rtol=1e-4, atol=1e-4, seed=44,
    causes=TILED_CAUSES + (
        Cause(lambda a: _partial(a) and np.allclose(a.got, _whole_tiles_only(a), rtol=a.rtol, atol=a.atol),
              lambda a: _right_for(a) + f"Your C is the product over the whole tiles only (k < {a.K - a.K % a.tile}): "
                        "the last, partial step along K is never done: the loop needs ceil(K / TILE_W) steps, "
                        f"(K + TILE_W - 1) // TILE_W = {-(-a.K // a.tile)} here, not K // TILE_W = {a.K // a.tile}."),
        Cause(lambda a: _partial(a) and np.allclose(a.got, _stale_slots(a), rtol=a.rtol, atol=a.atol),
              lambda a: _right_for(a) + "Threads whose k is past the end (k >= K) must store a zero in the tile, not "
                        "skip the store: your C is exactly what the previous step's values left in those slots give."),
        Cause(_partial, lambda a: _right_for(a) + "Look at what the last step loads into the tiles and how many "
                                                  "of their slots it uses."),
    ),
    proofs={"races": _race_free, "tiles": _both_tiles},
    float32="void(float32[:, ::1], float32[:, ::1], float32[:, ::1])",
    success=lambda f: (f"C = Aᵀ B with {f.tile}x{f.tile} shared-memory tiles is correct for K = "
                       f"{' and '.join(str(c.K) for c in f.cases[:2])} (C {f.cases[0].M}x{f.cases[0].N}), and for "
                       "(M, K, N) = " + ", ".join(str((c.M, c.K, c.N)) for c in f.cases[2:])
                       + f"; {f.races}; {f.tiles}; {f.float32}."),
)


def check_matmul_at_b_tiled(kernel, tile: int = TILE) -> None:
    """Exercise 04.4: ``kernel(A, B, C)`` computes ``C = Aᵀ B`` (A (K, M), B (K, N)) with shared-memory tiles.

    Launched with blocks of ``tile`` × ``tile`` threads, grid ``(ceil(N/tile), ceil(M/tile))``, first with
    K = 2·tile (whole tiles along K), then K = 2·tile + 5: a kernel right for the first and wrong for the second
    does not zero-pad the partial tiles (or stops one step early). Then the tracer looks for races (a missing
    ``cuda.syncthreads()``) and counts global reads: each block reads every element of A and B at most once,
    so both go through a shared tile; last, the PTX is searched for float64 arithmetic.
    """
    MATMUL_AT_B_TILED.check(kernel, _at_b_cases(tile), realistic=(_realistic_tiled(tile),))
