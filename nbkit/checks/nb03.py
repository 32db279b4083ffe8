"""Checks for notebook 03 (the CUDA programming model): 1-D, 2-D and grid-stride indexing, float32 literals."""

from __future__ import annotations

import numpy as np

from nbkit.checks._mapping import carried, fewer_threads, one_thread_per_item
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


def _row_sum_matrix(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Normal values; past 64 columns multiples of 1/64 in [-4, 4] instead: a float32 sum of hundreds of normals can
    round beyond the tolerance in some orders of addition, while such multiples sum exactly in every order."""
    if cols <= 64:
        return rng.standard_normal((rows, cols)).astype(np.float32)
    return (rng.integers(-256, 257, (rows, cols)) / 64).astype(np.float32)


ROW_SUM = KernelExercise(
    number="03.1", task="write the kernel row_sum(M, out)", call="row_sum(M, out)", outputs=("out",),
    inputs=lambda rng, c: {"M": _row_sum_matrix(rng, c.rows, c.cols)},
    reference=lambda M: M.sum(axis=1, dtype=np.float64),
    # the statement's launch first: 64 threads for 37 rows, so the guard matters; 13 columns, so a column sum is told
    # apart. Then other shapes (one row, one column, a prime number of rows, more blocks than needed): a size
    # hard-coded from the statement fails there.
    cases=(Case(grid=blocks_for(37, 32), block=32, sizes={"rows": 37, "cols": 13}),
           Case(grid=1, block=32, sizes={"rows": 1, "cols": 5}),
           Case(grid=2, block=32, sizes={"rows": 50, "cols": 1}),
           Case(grid=blocks_for(97, 32) + 1, block=32, sizes={"rows": 97, "cols": 31}),
           Case(grid=1, block=32, sizes={"rows": 23, "cols": 7})),
    # blocks of 128 (the small cases use 32: a hard-coded block size fails here), 4,099 rows of a dense layer's 400
    realistic=(Case(grid=blocks_for(4099, 128), block=128, sizes={"rows": 4099, "cols": 400},
                    label="a dense layer's inputs, 4,099 rows of 400"),),
    rtol=1e-5, atol=1e-5, seed=31,
    causes=(
        Cause(lambda a: min(a.rows, a.cols) > 1 and np.allclose(
                  a.got[:min(a.rows, a.cols)], a.M.sum(axis=0)[:min(a.rows, a.cols)], rtol=1e-5, atol=1e-5),
              "out[i] holds the sum of column i: a row sum runs along the second index, M[r, j] for j in "
              "range(M.shape[1])."),
        equals(lambda a: a.want / a.cols,
               "out[r] is the mean of row r: the exercise asks for the sum (do not divide by the row length)."),
        equals(lambda a: a.want - a.M[:, -1],
               "the last column is missing from every sum: range(M.shape[1]) already stops at the last column "
               "(range(M.shape[1] - 1) stops one too early)."),
        summed_into_output("you accumulated into out[r] directly, which starts with whatever the memory held (-7 "
                           "here): sum into a local variable acc = float32(0), then write out[r] = acc once."),
        NEVER_WRITTEN,
    ),
    proofs={
        "mapping": one_thread_per_item("row", reads=lambda a, index: {"M": (index[0], slice(None))}),
        "fewer": fewer_threads(Case(grid=1, block=32, sizes={"rows": 70, "cols": 5}), "row", causes=(
            Cause(lambda a: np.allclose(a.got[~a.never_written],
                                        carried(a.M.sum(axis=1, dtype=np.float64), a.case.threads)[~a.never_written],
                                        rtol=a.rtol, atol=a.atol),
                  lambda a: f"each thread's sum carries over from one of its rows to the next (out[r] is the sum "
                            f"of rows r, r - {a.case.threads}, r - {2 * a.case.threads}, ...): set acc = float32(0) "
                            "inside the loop over rows, once per row."),)),
    },
    float32="void(float32[:, ::1], float32[::1])",
    success=lambda f: (f"row sums of a {f.cases[0].rows}x{f.cases[0].cols} matrix are correct ({f.cases[0].grid} "
                       f"blocks of {f.cases[0].block} threads), and of "
                       + ", ".join(f"{c.rows}x{c.cols}" for c in f.cases[1:])
                       + f"; {f.mapping}; {f.fewer}; {f.float32}."),
)


def check_row_sum(kernel) -> None:
    """Exercise 03.1: ``kernel(M, out)`` with one thread per row writes ``out[r] = sum of row r``, in float32.

    Checked on five shapes; then the tracer sees one thread compute and write each row, a launch with fewer
    threads than rows must leave every row it writes right, and the PTX must have no float64 arithmetic.
    """
    ROW_SUM.check(kernel)


TRANSPOSE = KernelExercise(
    number="03.2", task="write the kernel transpose(M, out)", call="transpose(M, out)", outputs=("out",),
    inputs=lambda rng, c: {"M": rng.standard_normal((c.rows, c.cols)).astype(np.float32)},
    reference=lambda M: M.T,
    # 13 and 29 need 2 and 4 blocks of 8: a guard or an index that mixes up the dimensions misses elements or
    # writes outside out; 1024 threads for 377 elements, so the guard must stop the rest
    cases=tuple(Case(grid=square_grid(rows, cols, block), block=block, sizes={"rows": rows, "cols": cols})
                for rows, cols, block in [(13, 29, (8, 8)), (1, 7, (8, 8)), (6, 1, (8, 8)), (32, 16, (16, 16)),
                                          (5, 3, (8, 8))]),
    realistic=(Case(grid=square_grid(2053, 601, (16, 16)), block=(16, 16), sizes={"rows": 2053, "cols": 601},
                    label="a 2,053 x 601 matrix"),),
    rtol=0, atol=0, seed=32,
    causes=(
        Cause(lambda a: min(a.rows, a.cols) > 1 and np.array_equal(a.got[:min(a.rows, a.cols), :min(a.rows, a.cols)],
                                                                   a.M[:min(a.rows, a.cols), :min(a.rows, a.cols)]),
              "out[i, j] holds M[i, j]: a copy, not a transpose. Element (i, j) of M goes to out[j, i]."),
        NEVER_WRITTEN,
        Cause(lambda a: np.array_equal(np.sort(a.got.ravel()), np.sort(a.M.ravel())),
              lambda a: "every value of M is in out, but some at the wrong place: out[j, i] must receive M[i, j] (out "
                        f"has shape (cols, rows) = ({a.cols}, {a.rows}); the row index of out is the column index of "
                        "M)."),
    ),
    proofs={
        "mapping": one_thread_per_item("element", reads=lambda a, index: {"M": (index[1], index[0])}),
        "fewer": fewer_threads(Case(grid=(1, 1), block=(8, 8), sizes={"rows": 13, "cols": 29}), "element"),
    },
    success=lambda f: (f"out = Mᵀ for M of shape {f.cases[0].M.shape} ({f.cases[0].grid} blocks of {f.cases[0].block} "
                       f"threads, {f.cases[0].threads} threads for {f.cases[0].M.size} elements: the guard stopped "
                       "the rest), and for M of shape " + ", ".join(str(c.M.shape) for c in f.cases[1:])
                       + f"; {f.mapping}; {f.fewer}."),
)


def check_transpose(kernel) -> None:
    """Exercise 03.2: ``kernel(M, out)`` writes ``out[j, i] = M[i, j]`` for M (13, 29) and out (29, 13).

    Any thread-to-data mapping is right, and this check accepts them all: the launch covers
    ``max(rows, cols)`` threads along *both* x and y, so thread x may run along the columns of M or along
    its rows, and a 2-D grid-stride loop works too.
    """
    TRANSPOSE.check(kernel)


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


def _update_counts(a: Attempt) -> np.ndarray:
    """How many times each element of y was updated: y is updated in place, so (y - y0) / (a x) counts."""
    with np.errstate(all="ignore"):
        return np.rint((a.got.astype(np.float64) - a.y) / (a.a * a.x.astype(np.float64)))


def _updated_unevenly(a: Attempt) -> bool:
    times = _update_counts(a)
    return bool((times != 1).any()) and np.allclose(a.got, a.y + times * (a.a * a.x.astype(np.float64)), rtol=a.rtol,
                                                    atol=a.atol)


def _uneven_message(a: Attempt) -> str:
    c = a.case
    setting = f"{c.n} elements, {c.grid} blocks of {c.block} threads = {c.threads} threads"
    return _update_count_cause(_update_counts(a), setting, c.threads, c.block, c.grid)


AXPY_GRID_STRIDE = KernelExercise(
    number="03.3", task="write the kernel axpy(a, x, y) with a grid-stride loop", call="axpy(a, x, y)",
    outputs=("y",),
    inputs=lambda rng, c: {"a": np.float32(c.sizes.get("a", 2.0)),
                           "x": (rng.uniform(0.5, 1.5, c.n) * rng.choice([-1.0, 1.0], c.n)).astype(np.float32),
                           "y": rng.standard_normal(c.n).astype(np.float32)},
    reference=lambda a, x, y: a.astype(np.float64) * x + y,
    # the statement's launches first: fewer threads than elements, always >= 2 blocks (a stride of blockDim.x would
    # then revisit elements), grid sizes that do not divide n, and one grid larger than n; then other values of a,
    # one element, a prime n with blocks of 96, and exactly one element per thread
    cases=tuple(Case(grid=blocks, block=threads, sizes={"n": n, "a": a})
                for n, blocks, threads, a in [(1000, 2, 32, 2.0), (1000, 3, 64, 2.0), (1000, 7, 32, 2.0),
                                              (45, 2, 32, 2.0), (1, 1, 32, -0.5), (997, 3, 96, 1.25),
                                              (64, 2, 32, -3.0)]),
    # a million elements on 160 blocks of 256 threads: about 24 elements per thread
    realistic=(Case(grid=160, block=256, sizes={"n": 1_000_003, "a": 0.75}, label="a vector of a million elements"),),
    rtol=1e-5, atol=1e-5, seed=33,
    causes=(
        equals(lambda a: a.a * a.x, "y[i] = a * x[i] overwrites y: axpy adds to the old value, y[i] = a * x[i] + y[i]."),
        equals(lambda a: a.x + a.a * a.y, "a multiplies y instead of x: y[i] = a * x[i] + y[i]."),
        Cause(_updated_unevenly, _uneven_message),
    ),
    success=lambda f: ("axpy with a grid-stride loop is correct for every launch ("
                       + ", ".join(f"{c.threads} threads for {c.n}" for c in f.cases)
                       + " elements, a = " + ", ".join(sorted({f"{float(c.a):g}" for c in f.cases}))
                       + "): each element was updated exactly once."),
)


def check_axpy_grid_stride(kernel) -> None:
    """Exercise 03.3: ``kernel(a, x, y)`` does ``y[i] = a * x[i] + y[i]`` in place, for any grid.

    Because y is updated *in place*, the number of times each element was updated can be read from the
    result: a kernel that handles only its own first element leaves y unchanged past the grid's width (0
    updates), one that strides by ``blockDim.x`` (or starts at ``threadIdx.x``) updates elements several
    times. Both are named, with the element and the count.
    """
    AXPY_GRID_STRIDE.check(kernel)


BLUR3 = KernelExercise(
    number="03.4", task="write the kernel blur3(x, out) in float32", call="blur3(x, out)", outputs=("out",),
    inputs=lambda rng, c: {"x": rng.standard_normal(c.n).astype(np.float32)},
    reference=lambda x: (x[:-2].astype(np.float64) + 2 * x[1:-1].astype(np.float64) + x[2:]) / 4,
    # out has n - 2 elements. The statement's launch first, then one output, a grid with a block to spare, one block
    cases=(Case(grid=blocks_for(298, 64), block=64, sizes={"n": 300}),
           Case(grid=1, block=32, sizes={"n": 3}),
           Case(grid=blocks_for(129, 64) + 1, block=64, sizes={"n": 131}),
           Case(grid=1, block=64, sizes={"n": 40})),
    realistic=(Case(grid=blocks_for(1_000_001, 256), block=256, sizes={"n": 1_000_003},
                    label="a signal of a million samples"),),
    rtol=1e-5, atol=1e-6, seed=34,
    causes=(
        Cause(lambda a: a.n > 4 and np.allclose(a.got[1:], a.want[:-1], rtol=a.rtol, atol=a.atol),
              "out[i] is centred on x[i] (it reads x[i-1], x[i], x[i+1]); here the window starts at x[i]: out[i] uses "
              "x[i], x[i+1], x[i+2], since out is 2 shorter than x."),
        equals(lambda a: 4 * a.want, "the weighted sum is not divided by 4: the weights 1, 2, 1 sum to 4."),
        equals(lambda a: (a.x[:-2].astype(np.float64) + a.x[1:-1] + a.x[2:]) / 3,
               "out[i] is the plain mean of three values: the middle one has weight 2, "
               "out[i] = (x[i] + 2 x[i+1] + x[i+2]) / 4."),
        NEVER_WRITTEN,
    ),
    proofs={
        "mapping": one_thread_per_item("output", reads=lambda a, index: {"x": slice(index[0], index[0] + 3)}),
        "fewer": fewer_threads(Case(grid=1, block=32, sizes={"n": 100}), "output"),
    },
    float32="void(float32[::1], float32[::1])",
    success=lambda f: (f"the [1, 2, 1] / 4 blur of {f.cases[0].n} values is correct, and of "
                       + ", ".join(str(c.n) for c in f.cases[1:]) + f"; {f.mapping}; {f.fewer}; {f.float32}."),
)


def check_blur3(kernel) -> None:
    """Exercise 03.4: ``kernel(x, out)`` writes ``out[i] = (x[i] + 2 x[i+1] + x[i+2]) / 4``, all in float32.

    ``out`` has ``n - 2`` elements (a "valid" window: no padding). The kernel is then compiled to PTX for
    float32 arrays: a Python literal in the arithmetic (``0.25 * x[i]``, ``2 * x[i+1]``, ``/ 4``) makes Numba
    compute in float64, which shows up as ``.f64`` instructions, and the check says so. (Whether a literal
    promotes is read from the PTX, never guessed: a lone ``/ 4`` or ``* 0.5`` may be narrowed back to float32
    by the compiler, a chain is not.)
    """
    BLUR3.check(kernel)
