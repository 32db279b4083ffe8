"""Proofs about how a kernel maps threads to work: measured, never assumed from a right output.

Why: a right output does not show how it was computed. A statement that asks for one thread per row (03.1),
per element (03.2, 03.4, 04.1) or per column (04.2) is met only if the memory-access tracer, which records
which thread wrote which element and what it read, says so; a ✓ that speaks of coalesced reads (04.2)
quotes the tracer's sectors per request. And a launch with *fewer* threads than items shows what a kernel
that loops over several items per thread does with the later ones (an accumulator set once before the loop
carries one row's sum into the next), which a launch with one thread per item cannot.

Each function here returns a proof for ``KernelExercise(proofs={...})``: called with the last case's
attempt, it returns the ✓ phrase or fails with :func:`~nbkit.checks._core.fail`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from nbkit.checks._core import CheckFailed, _parameter_names, fail
from nbkit.checks.exercise import Attempt, Case, Cause, _Progress

Proof = Callable[[Attempt], str]
# A warp's 32 consecutive float32 are 128 bytes: 4 sectors of 32 bytes when aligned, 5 when not.
COALESCED_SECTORS = 5


def _index_text(index: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _dims(index: Sequence[int]) -> str:
    """A thread or block index as the messages write it: (3) in 1-D, (3, 1) in 2-D."""
    return "(" + ", ".join(str(int(i)) for i in index) + ")"


def trace_of(a: Attempt):
    """The tracer's record of ``a``'s launch, rerun on fresh outputs (cached on the attempt); None without a tracer."""
    if "_trace" in a.__dict__:
        return a.__dict__["_trace"]
    t = None
    scan = a.__dict__.get("_scan")  # the barrier proof's traced run: the same launch, traced once
    try:
        from nbkit.tracer import trace
    except ImportError:
        pass
    else:
        if scan is not None and scan.trace is not None and _parameter_names(a.run.kernel) == list(a.exercise.parameters):
            a.__dict__["_trace"] = scan.trace  # named by the kernel's parameters, which are the check's names here
            return scan.trace
        run = a.run
        fresh = [np.full(shape, -7.0, dtype) if (a.inputs.get(name) is None) else
                 np.array(a.inputs[name], dtype=dtype, copy=True)
                 for name, shape, dtype in zip(run.output_names, run.out_shapes, run.dtypes)]
        args = [np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in run.inputs]
        try:
            t = trace(run.kernel, a.case.grid, a.case.block, *args, *fresh, *run.extra,
                      names=list(a.exercise.parameters))
        except Exception:  # noqa: BLE001 - the launch was checked before; a tracer failure proves nothing
            t = None
    a.__dict__["_trace"] = t
    return t


def one_thread_per_item(item: str, reads: Callable[[Attempt, tuple[int, ...]], dict[str, object]] | None = None
                        ) -> Proof:
    """Proof: each element of the output was written by one thread, no thread wrote two, and (with ``reads``)
    the thread that wrote an element read by itself every input element that ``reads(a, index)`` names
    (``{"M": (r, slice(None))}``: all of row r), so it computed the element alone.

    Run on a launch with at least one thread per item (the exercise's cases are); ``item`` names the work
    of one thread in the messages ("row", "column", "element").
    """
    def proof(a: Attempt) -> str:
        t = trace_of(a)
        if t is None:
            return f"one thread per {item} was NOT checked (the memory-access tracer could not run here)"
        out = a.output
        wm = t.write_map(out)
        items = int(np.prod(a.want.shape))
        several = np.flatnonzero(wm.writers.ravel() > 1)
        if several.size:
            where = np.unravel_index(int(several[0]), wm.writers.shape)
            fail(f"{out} is right, but {out}{_index_text(where)} was written by {int(wm.writers[where])} different "
                 f"threads (recorded by the memory-access tracer): the exercise asks for one thread per {item}, "
                 f"which computes its {item} alone and writes it.")
        written = wm.writers > 0
        owners = np.stack([wm.block[written], wm.thread[written]], axis=1)
        uniq, first, counts = np.unique(owners, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            k = int(np.argmax(counts))
            b, th = (int(v) for v in uniq[k])
            mine = np.flatnonzero(((wm.block == b) & (wm.thread == th)).ravel())
            e0, e1 = (np.unravel_index(int(e), wm.writers.shape) for e in mine[:2])
            fail(f"{out} is right, but thread {_dims(t.thread_index(th))} of block {_dims(t.block_index(b))} wrote "
                 f"{out}{_index_text(e0)}, {out}{_index_text(e1)} and {int(counts[k]) - 2} more (recorded by the "
                 f"memory-access tracer, in a launch of {a.case.threads} threads for {items} {item}s): the "
                 f"exercise asks for one thread per {item}, so that the {item}s are computed in parallel.")
        if reads is not None:
            for flat in np.flatnonzero(written.ravel()):
                index = tuple(int(i) for i in np.unravel_index(int(flat), wm.writers.shape))
                writer = (int(wm.block[index]), int(wm.thread[index]))
                for name, where in reads(a, index).items():
                    seen = t.read_map(name, writer)[where]
                    if not np.all(seen > 0):
                        fail(f"{out} is right, but {out}{_index_text(index)} was written by thread "
                             f"{_dims(t.thread_index(writer[1]))} of block {_dims(t.block_index(writer[0]))}, which itself read "
                             f"only {int((seen > 0).sum())} of the {seen.size} elements of {name} that "
                             f"{out}{_index_text(index)} is computed from (recorded by the memory-access tracer): "
                             f"other threads did part of its work. The exercise asks for one thread per {item}, "
                             f"which reads its whole {item} itself.")
        return f"one thread per {item} (the memory-access tracer saw each {item} computed and written by one thread)"

    return proof


def coalesced_reads(array: str) -> Proof:
    """Proof: the warp requests that read ``array`` touch at most COALESCED_SECTORS sectors each (the tracer).

    Returns the measured phrase either way: coalescing is what the ✓ says, measured, not a requirement here.
    """
    def proof(a: Attempt) -> str:
        t = trace_of(a)
        if t is None:
            return f"whether the reads of {array} are coalesced was NOT checked (the memory-access tracer could not run)"
        spr = t.sectors_per_request(array, "read")
        if spr.size == 0:
            return f"no warp request read {array} from global memory"
        worst = int(spr.max())
        if worst <= COALESCED_SECTORS:
            return (f"the reads of {array} are coalesced: at most {worst} 32-byte sectors per warp request, measured by "
                    f"the memory-access tracer (32 neighbouring float32 = 4 sectors, 5 when not aligned; MODEL "
                    f"without caches)")
        return (f"but the reads of {array} are NOT coalesced: up to {worst} 32-byte sectors per warp request, "
                f"{spr.mean():.1f} on average, measured by the memory-access tracer (32 neighbouring float32 = 4 "
                f"sectors): neighbouring threads do not read neighbouring addresses")

    return proof


def carried(sums: np.ndarray, step: int) -> np.ndarray:
    """What a grid-stride kernel whose accumulator is set once, before its loop, writes: item i gets the sums of
    items i % step, i % step + step, ..., i (its thread's earlier items), ``step`` being the threads launched."""
    return np.array([sums[i % step:i + 1:step].sum() for i in range(sums.size)])


def fewer_threads(case: Case, item: str, causes: Sequence[Cause] = ()) -> Proof:
    """Proof: launched on ``case``, which has fewer threads than items, every element the kernel writes is right.

    One thread per item is what the statements ask, so the items past the grid may stay unwritten; but a kernel
    that handles them anyway (a grid-stride loop) must handle them right. ``causes`` name mistakes, verified on
    this launch like any :class:`Cause` (``a.got``, ``a.want``, the inputs; ``a.never_written``).
    """
    def proof(a: Attempt) -> str:
        ex = a.exercise
        setting = (f"with {case.threads} threads for "
                   + ", ".join(f"{k} = {v}" for k, v in case.sizes.items()))
        try:
            attempts = ex.attempt(a.run.kernel, case, np.random.default_rng(ex.seed + 1), _Progress())
        except CheckFailed as exc:
            raise CheckFailed(f"✗ {setting} (fewer threads than {item}s; one thread per {item} may leave the rest "
                              f"unwritten): {str(exc).removeprefix('✗ ')}") from None
        count = 0
        for b in attempts:
            written = ~b.never_written
            count = int(written.sum())
            bad = written & b.wrong
            if not bad.any():
                continue
            index = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), bad.shape))
            several = (f"; it wrote {count} {item} values with {case.threads} threads, so its threads handle several "
                       f"{item}s each, and get some wrong" if count > case.threads else "")
            cause = ex.diagnose(b, tuple(causes))
            fail(f"{setting} (fewer threads than {item}s, beyond the launches the exercise asks for: one thread per "
                 f"{item} may leave the rest unwritten), your kernel wrote {b.output}{_index_text(index)} = "
                 f"{float(b.got[index]):.7g}, expected {float(b.want[index]):.7g}{several}."
                 + (f" Likely cause: {cause.text(b)}" if cause else ""))
        loops = count > case.threads
        return (f"with fewer threads than {item}s ({case.threads} threads), "
                + ("every " + item + " it handled was right" if loops else f"each thread still did one {item}"))

    return proof
