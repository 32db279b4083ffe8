"""Checks for notebook 03 (the CUDA programming model): 1-D, 2-D and grid-stride indexing, float32 literals."""

from __future__ import annotations

import numpy as np

from nbkit.checks._core import SENTINEL, compare, exercise, passed, require_float32, run_kernel, unwritten_cause
from nbkit.core.launch import blocks_for


@exercise("03.1", "write the kernel row_sum(M, out)")
def check_row_sum(kernel, rows: int = 37, cols: int = 13, threads: int = 32) -> None:
    """Exercise 03.1: ``kernel(M, out)`` with one thread per row writes ``out[r] = sum of row r``.

    Launched with ``blocks_for(rows, 32)`` blocks of 32 threads over a (37, 13) float32 matrix: 64
    threads for 37 rows, so the guard matters, and 13 columns, so a column sum is told apart.
    """
    M = np.random.default_rng(31).standard_normal((rows, cols)).astype(np.float32)
    run = run_kernel(kernel, blocks_for(rows, threads), threads, [M], [(rows,)], output_names=("out",),
                     call="row_sum(M, out)")
    want = M.sum(axis=1, dtype=np.float64)
    col_sums = np.full(rows, np.nan)
    col_sums[:cols] = M.sum(axis=0)[:rows]
    compare("out", run.outputs[0], want, rtol=1e-5, atol=1e-5, run=run, causes=[
        (lambda got: np.allclose(got[:cols], col_sums[:cols], rtol=1e-5, atol=1e-5),
         "out[i] holds the sum of column i: a row sum runs along the second index, M[r, j] for j in range(M.shape[1])."),
        (want / cols, "out[r] is the mean of row r: the exercise asks for the sum (do not divide by the row length)."),
        (want - M[:, -1], "the last column is missing from every sum: range(M.shape[1]) already stops at the last "
                          "column (range(M.shape[1] - 1) stops one too early)."),
        (want + SENTINEL, "you accumulated into out[r] directly, which starts with whatever the memory held "
                                  "(-7 here): sum into a local variable acc = float32(0), then write out[r] = acc once."),
        unwritten_cause(run),
    ])
    passed(f"row sums of a {rows}x{cols} matrix are correct ({blocks_for(rows, threads)} blocks of {threads} threads).")


@exercise("03.2", "write the kernel transpose(M, out)")
def check_transpose(kernel, rows: int = 13, cols: int = 29, block: tuple[int, int] = (8, 8)) -> None:
    """Exercise 03.2: ``kernel(M, out)`` writes ``out[j, i] = M[i, j]`` for M (13, 29) and out (29, 13).

    Any thread-to-data mapping is right, and this check accepts them all: the launch has blocks of 8×8
    threads and enough of them to cover ``max(rows, cols)`` threads along *both* x and y, so thread x may run
    along the columns of M or along its rows, and a 2-D grid-stride loop works too. The extra threads
    (1024 for 377 elements) must be stopped by the guard. 13 and 29 need 2 and 4 blocks of 8: a guard or an
    index that mixes up the two dimensions misses elements or writes outside ``out``.
    """
    M = np.random.default_rng(32).standard_normal((rows, cols)).astype(np.float32)
    side = max(blocks_for(rows, block[1]), blocks_for(cols, block[0]))
    grid = (side, side)
    run = run_kernel(kernel, grid, block, [M], [(cols, rows)], output_names=("out",), call="transpose(M, out)")
    got = run.outputs[0]
    compare("out", got, M.T, rtol=0, atol=0, run=run, causes=[
        unwritten_cause(run),
        (lambda g: np.array_equal(np.sort(g.ravel()), np.sort(M.ravel())),
         "every value of M is in out, but some at the wrong place: out[j, i] must receive M[i, j] (out has shape "
         "(cols, rows) = (29, 13); the row index of out is the column index of M)."),
    ])
    passed(f"out = Mᵀ for M of shape {M.shape} ({grid[0]}x{grid[1]} blocks of {block[0]}x{block[1]} threads, "
           f"{side * side * block[0] * block[1]} threads for {M.size} elements: the guard stopped the rest).")


def _axpy_configs() -> list[tuple[int, int, int]]:
    # (elements, blocks, threads per block): fewer threads than elements, always >= 2 blocks (a stride of
    # blockDim.x would then revisit elements), grid sizes that do not divide n, and one grid larger than n.
    return [(1000, 2, 32), (1000, 3, 64), (1000, 7, 32), (45, 2, 32)]


def _update_count_cause(times: np.ndarray, setting: str, total: int, threads: int, blocks: int) -> str:
    """Say how often elements were updated, when some were updated 0 or several times."""
    never = np.flatnonzero(times == 0)
    again = np.flatnonzero(times > 1)
    parts = []
    if again.size:
        parts.append(f"y[{again[0]}] was updated {int(times[again[0]])} times")
    if never.size:
        parts.append(f"y[{never[0]}] was never updated (it still holds its old value)")
    if not parts:
        return ""
    said = f"with {setting}, " + " and ".join(parts) + ". "
    if again.size:
        return said + ("Several threads handle the same element: start at cuda.grid(1) (the global index, not "
                       f"threadIdx.x) and step by cuda.gridsize(1) = gridDim.x * blockDim.x = {total} (the whole "
                       f"grid, not blockDim.x = {threads} or gridDim.x = {blocks}).")
    n = times.size
    if np.array_equal(never, np.arange(total, n)):  # exactly the elements past the grid's width
        return said + ("Each thread handled only its first element. Loop over i in range(cuda.grid(1), n, "
                       f"cuda.gridsize(1)), so every thread handles elements i, i + {total}, i + {2 * total}, ...")
    if np.array_equal(never, np.arange(never[0], n)):  # a tail of the array
        tail = ("only the last element was missed" if never.size == 1 else
                f"only the last {never.size} elements, y[{never[0]}] to y[{n - 1}], were missed")
        return said + (f"The loop stops too early: {tail}, the others were updated once. A grid-stride loop runs "
                       "while i < y.size: "
                       "range(cuda.grid(1), y.size, cuda.gridsize(1)) (range already stops before its end; no - 1).")
    return said + (f"The loop skips elements in the middle ({never.size} never updated, y[{never[0]}] the first, "
                   "while later ones were updated): it steps too far (or starts in the wrong place). Start at "
                   f"cuda.grid(1) and step by exactly cuda.gridsize(1) = {total}, so that thread i handles i, "
                   f"i + {total}, i + {2 * total}, ... and together the threads leave no gap.")


@exercise("03.3", "write the kernel axpy(a, x, y) with a grid-stride loop")
def check_axpy_grid_stride(kernel) -> None:
    """Exercise 03.3: ``kernel(a, x, y)`` does ``y[i] = a * x[i] + y[i]`` in place, for any grid.

    Launched four times: 1000 elements with 64, 192 and 224 threads (2, 3 and 7 blocks), and 45 elements
    with 64 threads. Because y is updated *in place*, the number of times each element was updated can be
    read from the result: a kernel that handles only its own first element leaves y unchanged past the
    grid's width (0 updates), one that strides by ``blockDim.x`` (or starts at ``threadIdx.x``) updates
    elements several times. Both are named, with the element and the count.
    """
    r = np.random.default_rng(33)
    a = np.float32(2.0)
    shown = []
    for n, blocks, threads in _axpy_configs():
        x = (r.uniform(0.5, 1.5, n) * r.choice([-1.0, 1.0], n)).astype(np.float32)
        y0 = r.standard_normal(n).astype(np.float32)
        run = run_kernel(kernel, blocks, threads, [a, x], [(n,)], initial=[y0], output_names=("y",),
                         call="axpy(a, x, y)")
        got = run.outputs[0]
        want = a.astype(np.float64) * x + y0
        total = blocks * threads
        with np.errstate(all="ignore"):
            times = np.rint((got.astype(np.float64) - y0) / (a * x.astype(np.float64)))
        setting = f"{n} elements, {blocks} blocks of {threads} threads = {total} threads"
        compare("y", got, want, rtol=1e-5, atol=1e-5, run=run, causes=[
            (a * x, "y[i] = a * x[i] overwrites y: axpy adds to the old value, y[i] = a * x[i] + y[i]."),
            (x + a * y0, "a multiplies y instead of x: y[i] = a * x[i] + y[i]."),
            (lambda g, t=times: bool((t != 1).any()) and np.allclose(g, y0 + t * (a * x.astype(np.float64)),
                                                                     rtol=1e-5, atol=1e-5),
             _update_count_cause(times, setting, total, threads, blocks)),
        ])
        shown.append(f"{total} threads for {n}")
    passed("axpy with a grid-stride loop is correct for every launch (" + ", ".join(shown) + " elements): "
           "each element was updated exactly once.")


@exercise("03.4", "write the kernel blur3(x, out) in float32")
def check_blur3(kernel, n: int = 300, threads: int = 64) -> None:
    """Exercise 03.4: ``kernel(x, out)`` writes ``out[i] = (x[i] + 2 x[i+1] + x[i+2]) / 4``, all in float32.

    ``out`` has ``n - 2`` elements (a "valid" window: no padding). Launched with ``blocks_for(n - 2, 64)``
    blocks of 64 threads. Then the kernel is compiled to PTX for float32 arrays: a Python literal in the
    arithmetic (``0.25 * x[i]``, ``2 * x[i+1]``, ``/ 4``) makes Numba compute in float64, which shows up as
    ``.f64`` instructions, and the check says so. (Whether a literal promotes is read from the PTX, never
    guessed: a lone ``/ 4`` or ``* 0.5`` may be narrowed back to float32 by the compiler, a chain is not.)
    """
    x = np.random.default_rng(34).standard_normal(n).astype(np.float32)
    m = n - 2
    run = run_kernel(kernel, blocks_for(m, threads), threads, [x], [(m,)], output_names=("out",),
                     call="blur3(x, out)")
    x64 = x.astype(np.float64)
    total = x64[:-2] + 2 * x64[1:-1] + x64[2:]
    want = total / 4
    compare("out", run.outputs[0], want, rtol=1e-5, atol=1e-6, run=run, causes=[
        (lambda g: np.allclose(g[1:], want[:-1], rtol=1e-5, atol=1e-6),
         "out[i] is centred on x[i] (it reads x[i-1], x[i], x[i+1]); here the window starts at x[i]: out[i] uses "
         "x[i], x[i+1], x[i+2], since out is 2 shorter than x."),
        (total, "the weighted sum is not divided by 4: the weights 1, 2, 1 sum to 4."),
        ((x64[:-2] + x64[1:-1] + x64[2:]) / 3, "out[i] is the plain mean of three values: the middle one has "
                                               "weight 2, out[i] = (x[i] + 2 x[i+1] + x[i+2]) / 4."),
        unwritten_cause(run),
    ])
    ok = require_float32(kernel, "void(float32[::1], float32[::1])")
    passed(f"the [1, 2, 1] / 4 blur of {n} values is correct; {ok}.")
