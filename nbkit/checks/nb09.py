"""Checks for notebook 09 (the performance lab): coalescing, a padded tile, a block size for occupancy.

The first two run the learner's kernel twice: once as a normal launch (outputs in sentinel-padded device
buffers, so stray writes are caught) and once under the memory-access tracer (:mod:`nbkit.tracer`),
which measures what the verdict claims: sectors per warp request, bank conflicts, shared-memory races.
The tracer's numbers are a MODEL of the memory system without caches; the check says so.

Both are declared (:data:`SCALE_ADD`, :data:`PADDED_TRANSPOSE`): the tracer's measurements are their proofs.
09.3 stays a procedure: every block size that reaches the highest MODEL occupancy is right, so there is no
single reference to compare with.
"""

from __future__ import annotations

import numpy as np

from nbkit.checks._core import SENTINEL, exercise, fail, passed, where_it_ran
from nbkit.checks.exercise import NEVER_WRITTEN, Attempt, Case, Cause, KernelExercise, equals
from nbkit.core.launch import blocks_for

# A warp's 32 consecutive float32 are 128 bytes: 4 sectors of 32 bytes when aligned, 5 when not.
COALESCED_SECTORS = 5


def _trace(kernel, grid, block, *args):
    from nbkit import tracer

    try:
        return tracer.trace(kernel, grid, block, *args)
    except tracer.TraceError as exc:
        fail(f"your kernel failed under the memory tracer: {exc}")


def _lanes_text(request, info_shape) -> str:
    """'A[0, 0], A[1, 0], A[2, 0], ...' for the first lanes of a request."""
    idx = [np.unravel_index(int(e), info_shape) for e in request.elements[:3]]
    shown = ", ".join(f"{request.array}[{', '.join(str(int(v)) for v in i)}]" for i in idx)
    return shown + (", ..." if len(request.elements) > 3 else "")


def _worst_global_request(t):
    reqs = t.requests(space="global")
    # deterministic whatever order the simulator ran the threads in: most sectors, reads first, then by place
    return min(reqs, key=lambda r: (-len(r.sectors), r.op != "read", r.site.line, r.array, r.block, r.warp, r.n),
               default=None)


def _lanes_cause(request, shape) -> str:
    """' Likely cause: ...' from the addresses of the request's first two lanes: down a column, or apart along a row."""
    if len(request.elements) < 2 or len(shape) != 2:
        return ""
    (r0, c0), (r1, c1) = (np.unravel_index(int(e), shape) for e in request.elements[:2])
    if r0 != r1:
        return (" Likely cause: consecutive threads (threadIdx.x, the lanes of a warp) run down a column; let them run "
                "along a row (the last index, which is contiguous in memory).")
    if abs(int(c1) - int(c0)) > 1:
        return (f" Likely cause: consecutive lanes access elements {abs(int(c1) - int(c0))} apart along a row (each "
                "thread takes a chunk of its own?); let consecutive lanes take consecutive elements, e.g. with a "
                "grid-stride loop.")
    return ""


def _require_coalesced(t, what: str, run=None) -> tuple[float, int]:
    """Fail unless every global request of trace ``t`` touches at most COALESCED_SECTORS sectors."""
    spr = t.sectors_per_request()
    if spr.size == 0:
        fail(f"{what} made no global-memory access at all under the tracer.", run)
    worst = _worst_global_request(t)
    if spr.max() > COALESCED_SECTORS:
        shape = t.array_info(worst.array).shape
        fail(f"{what} is correct, but not coalesced: its global-memory warp requests touch {spr.mean():.1f} "
             f"32-byte sectors on average and up to {int(spr.max())} (measured by the tracer; MODEL without caches). "
             f"The worst is the {worst.op} of {worst.array} at line {worst.site.line}: lanes "
             f"{int(worst.lanes[0])}, {int(worst.lanes[1]) if len(worst.lanes) > 1 else ''}... access "
             f"{_lanes_text(worst, shape)}. A coalesced request needs at most {COALESCED_SECTORS} "
             f"(32 consecutive float32 = 128 bytes = 4 sectors, 5 when not aligned).{_lanes_cause(worst, shape)}", run)
    return float(spr.mean()), int(spr.max())


# --------------------------------------------------------------------------------------------------
# 09.1 coalesced scale-add


def _coalesced(a: Attempt) -> str:
    """The tracer's sectors per warp request of the learner's launch, as the ✓ phrase; fails when not coalesced."""
    out = np.full(a.got.shape, SENTINEL, np.float32)
    mean, worst = _require_coalesced(_trace(a.run.kernel, a.case.grid, a.case.block, a.A, a.B, a.alpha, out),
                                     "your kernel's output")
    return f"coalesced: {mean:.2f} sectors per warp request on average, {worst} at most"


def _stops_early(a: Attempt, axis: int) -> bool:
    """The output equals a loop over one axis that stops at the other axis's length: right before it, unwritten past."""
    M, N = a.M, a.N
    if (axis == 1 and M >= N) or (axis == 0 and N >= M):
        return False
    k = min(M, N)
    inside = (slice(None), slice(0, k)) if axis == 1 else (slice(0, k), slice(None))
    outside = (slice(None), slice(k, None)) if axis == 1 else (slice(k, None), slice(None))
    return bool(np.allclose(a.got[inside], a.want[inside], rtol=a.rtol, atol=a.atol) and a.never_written[outside].all())


# (M, N, grid, alpha): the statement's launch last (the tracer's proof runs on it; N a multiple of 32 there);
# before it a single row, fewer columns than rows, a wide matrix, and grids of other shapes (grid-stride)
_SCALE_ADD_CASES = ((1, 33, (1, 1), -0.5), (67, 5, (1, 2), 2.0), (3, 200, (2, 1), 0.25), (40, 96, (2, 2), 1.5))

SCALE_ADD = KernelExercise(
    number="09.1", task="write the kernel scale_add(A, B, alpha, out) with coalesced accesses",
    call="scale_add(A, B, alpha, out)", outputs=("out",),
    inputs=lambda rng, c: {"A": rng.standard_normal((c.M, c.N)).astype(np.float32),
                           "B": rng.standard_normal((c.M, c.N)).astype(np.float32), "alpha": np.float32(c.alpha)},
    reference=lambda A, B, alpha: alpha * A.astype(np.float64) + B,
    # the grid is smaller than the matrix: every thread loops (grid-stride) in both directions
    cases=tuple(Case(grid=grid, block=(32, 8), sizes={"M": M, "N": N, "alpha": alpha})
                for M, N, grid, alpha in _SCALE_ADD_CASES),
    # about 2 x 8 elements per thread: the grid-stride loops run several times in both directions
    realistic=(Case(grid=(16, 16), block=(32, 8), sizes={"M": 1031, "N": 997, "alpha": 0.5},
                    label="a 1,031 x 997 matrix"),),
    rtol=1e-5, atol=1e-5, seed=91,
    causes=(
        equals(lambda a: a.alpha * a.B.astype(np.float64) + a.A, "alpha multiplies B instead of A."),
        Cause(lambda a: _stops_early(a, axis=1),
              "the columns beyond the first M are missing (never written): a loop over columns stops at the number "
              "of rows (out.shape[0] where out.shape[1] is meant)."),
        Cause(lambda a: _stops_early(a, axis=0),
              "the rows beyond the first N are missing (never written): a loop over rows stops at the number of "
              "columns (out.shape[1] where out.shape[0] is meant)."),
        NEVER_WRITTEN,
    ),
    proofs={"coalesced": _coalesced},
    success=lambda f: ("out = alpha A + B is correct on "
                       + ", ".join(f"{c.M}x{c.N} (grid {c.grid} of (32, 8) blocks)" for c in f.cases)
                       + f", grid-stride; on the last launch {f.coalesced} (tracer; MODEL, no caches)."),
)


def check_coalesced_scale_add(kernel) -> None:
    """Exercise 09.1: ``out = alpha A + B`` for (M, N) float32 matrices, launched with grid (2, 2) of (32, 8).

    The grid is smaller than the matrix on purpose: every thread loops (grid-stride) in both directions.
    Before the statement's 40 x 96 launch, other shapes, alphas and grids (:data:`_SCALE_ADD_CASES`).
    Correct output is checked first, then the tracer measures the sectors of every warp request. N is a
    multiple of 32 so that the 32 lanes of a warp run their loops equally often: the tracer groups a warp's
    accesses into requests by how often each lane executed an access site (see nbkit.tracer).
    """
    SCALE_ADD.check(kernel)


# --------------------------------------------------------------------------------------------------
# 09.2 padded tile

_TILE, _ROWS = 32, 8


def _tile_proof(a: Attempt) -> str:
    """The tracer's measurements of the shared tile and the global requests, as the ✓ phrase; fails on a problem."""
    scan = a.__dict__.get("_scan")  # the barrier proof traced this same launch (A, and B as the sentinel) already
    t = scan.trace if scan is not None and scan.trace is not None else _trace(
        a.run.kernel, a.case.grid, a.case.block, a.A, np.full(a.got.shape, SENTINEL, np.float32))
    ways = t.bank_conflicts()
    if ways.size == 0:
        fail("B is correct, but your kernel never touched shared memory: this exercise stages the tile in "
             "cuda.shared.array so that both the read of A and the write of B are coalesced.")
    races = t.races()
    if races:
        fail(f"B came out right {where_it_ran()}, but threads race on the shared tile: {races[0]}. On a GPU the "
             f"threads of a block run in no fixed order. Likely cause: {races[0].missing_barrier} "
             f"(between filling the tile and reading it).")
    if ways.max() > 1:
        worst = max(t.requests(space="shared"), key=lambda q: q.bank_ways)
        if worst.bank_ways == 32:
            why = (f"a tile of {_TILE} float32 per row is 128 bytes, so a tile column lies in one bank; pad each row by "
                   "one element: cuda.shared.array((TILE, TILE_PAD), float32) with TILE_PAD = TILE + 1 defined next to "
                   "TILE (numba needs a constant shape).")
        else:
            why = None
        advice = why or ("when a warp reads down a tile column, rows of w words put rows r and r + 32 / gcd(w, 32) in "
                         "the same bank, so w must be odd: pad each row by exactly one element, TILE_PAD = TILE + 1.")
        fail(f"B is correct, but the shared tile has a {worst.bank_ways}-way bank conflict ({int((ways > 1).sum())} "
             f"of {ways.size} shared requests conflict; measured by the tracer): the {worst.op} of {worst.array} at "
             f"line {worst.site.line} puts {worst.bank_ways} different 4-byte words of one warp request in the same "
             f"bank. " + (f"Likely cause: {why}" if why else f"Note: {advice}"))
    mean, worst_spr = _require_coalesced(t, "your transpose")
    return (f"the shared tile has no bank conflict ({ways.size} shared requests, all 1-way), no race between barriers, "
            f"and global requests are coalesced ({mean:.2f} sectors per request, {worst_spr} at most)")


def _first_tile_untransposed(a: Attempt) -> bool:
    """The first tile holds A itself (past it, an untransposed tile read lands in another block's place)."""
    k = min(a.M, a.N, _TILE)
    corner = a.A[:k, :k]
    return k >= 2 and not np.array_equal(corner, corner.T) and np.array_equal(a.got[:k, :k], corner)


PADDED_TRANSPOSE = KernelExercise(
    number="09.2", task="write the kernel transpose_padded(A, B) with a shared tile free of bank conflicts",
    call="transpose_padded(A, B)", outputs=("B",),
    inputs=lambda rng, c: {"A": rng.standard_normal((c.M, c.N)).astype(np.float32)},
    reference=lambda A: A.T,
    # full tiles, a single row, a thin matrix, then the statement's 33 x 45 (the tracer's proofs run on it)
    cases=tuple(Case(grid=(blocks_for(N, _TILE), blocks_for(M, _TILE)), block=(_TILE, _ROWS), sizes={"M": M, "N": N})
                for M, N in ((64, 32), (1, 40), (40, 7), (33, 45))),
    realistic=(Case(grid=(blocks_for(997, _TILE), blocks_for(1031, _TILE)), block=(_TILE, _ROWS),
                    sizes={"M": 1031, "N": 997}, label="a 1,031 x 997 matrix"),),
    rtol=0, atol=0, seed=92,
    causes=(
        Cause(_first_tile_untransposed, "B holds A itself, not its transpose: the tile is read the way it was written "
                                        "(tile[ty, tx]); read it transposed (tile[tx, ty + r])."),
        Cause(lambda a: bool(a.races), "threads of a block race on the shared tile: the tracer saw a thread read a tile "
                                       "element that another thread writes with no barrier between. Add "
                                       "cuda.syncthreads() between filling the tile and reading it."),
        NEVER_WRITTEN,
    ),
    proofs={"tile": _tile_proof},
    success=lambda f: ("B = Aᵀ is correct (" + ", ".join(f"{c.M}x{c.N}" for c in f.cases) + f"); on the last launch "
                       f"{f.tile}. Measured by the tracer: a MODEL without caches."),
)


def check_padded_transpose(kernel) -> None:
    """Exercise 09.2: ``B = Aᵀ`` through a shared tile, launched like nbkit.kernels.transpose's kernels.

    Block (32, 8), grid (ceil(N / 32), ceil(M / 32)) for A of shapes (64, 32), (1, 40), (40, 7) and (33, 45),
    the tracer's measurements on the last. Checked: the transpose (first
    wrong index), then by the tracer: shared memory is used, no shared-memory race (missing
    ``cuda.syncthreads``), no n-way bank conflict (n > 1), and coalesced global reads and writes.
    """
    PADDED_TRANSPOSE.check(kernel)


# --------------------------------------------------------------------------------------------------
# 09.3 block size for occupancy

BLOCK_SIZE_CASES: tuple[tuple[str, int, int], ...] = (
    ("sm_75", 32, 40 * 1024),  # 40 KiB of shared memory: one block per SM fits in 64 KiB
    ("sm_80", 128, 0),  # 128 registers: 1024 threads would need 131072 registers, twice the register file
    ("sm_86", 32, 0),  # 48 warps per SM: 1024-thread blocks (32 warps) leave a third empty
    ("sm_90", 64, 0),  # register-limited to 32 warps; any block that fits
    ("sm_75", 64, 2 * 1024),
    # no power of two reaches the best here: 224, 448 or 896; only 768; 288, 384 or 576
    ("sm_75", 72, 10 * 1024),
    ("sm_86", 32, 40 * 1024),
    ("sm_80", 56, 20 * 1024),
)


def _best(cc: str, regs: int, shared: int):
    from nbkit.perf.occupancy import occupancy

    table = {n: occupancy(cc, n, regs, shared) for n in range(32, 1025, 32)}
    best = max(o.fraction for o in table.values())
    return table, best


def _block_size_cause(fn, cases, good: list[int]) -> str:
    """What the answers on every case show (one size for all; powers of two only), else ''. Only facts: returning
    one size everywhere may be a fixed size or a rule that happens to pick it, so no cause is guessed."""
    try:
        answers = [int(fn(*c)) for c in cases]
    except Exception:  # noqa: BLE001 - a cause that cannot be established is not named
        return ""
    if len(set(answers)) == 1:
        return (f" Your function returned {answers[0]} in every case, while the best size changes with the limits "
                f"of each case.")
    powers = {32, 64, 128, 256, 512, 1024}
    if set(answers) <= powers and not set(good) & powers:
        return (" Likely cause: your function returns only powers of two (" + ", ".join(map(str, answers)) + "), and "
                "here none reaches the best.")
    return ""


@exercise("09.3", "write the function best_block_size(cc, registers_per_thread, shared_bytes_per_block)")
def check_block_size(fn, cases=BLOCK_SIZE_CASES) -> None:
    """Exercise 09.3: ``fn(cc, regs, shared)`` returns a block size (a multiple of 32, at most 1024) reaching the
    highest occupancy the MODEL (:func:`nbkit.perf.occupancy.occupancy`) allows. Every such block size is accepted.
    In the last three cases no power of two reaches it (the best are 224/448/896, 768, and 288/384/576).
    """
    from nbkit.perf.occupancy import occupancy

    for cc, regs, shared in cases:
        label = f"{cc}, {regs} registers/thread, {shared} B shared memory/block"
        got = fn(cc, regs, shared)
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, np.integer)):
            fail(f"for {label} your function returned {got!r} ({type(got).__name__}); it must return the number of "
                 f"threads per block as an int (e.g. 256).")
        got = int(got)
        if not 32 <= got <= 1024:
            fail(f"for {label} your function returned {got}: a block has 32 to 1024 threads.")
        if got % 32:
            fail(f"for {label} your function returned {got}, not a multiple of the warp size 32: the last warp of "
                 f"every block would run with {32 - got % 32} idle lanes.")
        table, best = _best(cc, regs, shared)
        mine = occupancy(cc, got, regs, shared)
        if mine.fraction < best - 1e-12:
            good = [n for n, o in table.items() if abs(o.fraction - best) < 1e-12]
            fail(f"for {label} your block size {got} reaches {mine.fraction:.0%} occupancy ({mine.active_blocks} "
                 f"block(s) per SM, limited by {', '.join(mine.limited_by)}), but {best:.0%} is possible, e.g. with "
                 f"{good[0]}" + (f" or {good[-1]}" if len(good) > 1 else "") + f" threads ({len(good)} block sizes "
                 f"reach it).{_block_size_cause(fn, cases, good)} Try every multiple of 32 with "
                 f"nbkit.perf.occupancy.occupancy and keep one with the highest fraction.")
    passed(f"your block sizes reach the highest MODEL occupancy in all {len(cases)} cases "
           f"({', '.join(f'{c[0]}: {fn(*c)}' for c in cases)}).")
