"""The machinery every exercise check shares: verdicts, comparisons, guarded launches, PTX checks.

Rules the checks keep (the course's "checks never lie"):

* an unsolved stub (a function, kernel or class whose code still raises ``NotImplementedError``, as
  nbgrader's learner copy leaves it) gets one line, "not solved yet", and no traceback, so *Run All*
  goes on; under nbgrader's autograder (``NBGRADER_EXECUTION`` is set) it raises, so it earns no points;
* a wrong answer raises :class:`CheckFailed` naming the first wrong index in row-major order, the value
  found and the value expected, and the likely cause where one can be told;
* a kernel's output is a view into a larger *device* buffer filled with a sentinel, so writes past
  the end are caught on a GPU too, where nothing raises ``IndexError``;
* a message that says something was checked has checked it ("float32 throughout" comes from the PTX).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import types
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from nbkit.core.launch import launch, static_shared_bytes
from nbkit.core.simulator import DivergentBarrier
from nbkit.core.source import python_function
from nbkit.core.warp import WarpError
from nbkit.perf.compiler import KernelCompile, compile_error, compile_kernel
from nbkit.perf.ptx import f64_instructions


class CheckFailed(AssertionError):
    """The learner's answer is wrong; the message says how.

    In a notebook, IPython shows only the message (no traceback into nbkit): the learner needs the
    verdict, not the checker's internals.
    """

    def _render_traceback_(self) -> list[str]:  # IPython hook: replaces the traceback
        return [f"\x1b[31m{self}\x1b[0m"]


class NotSolved(CheckFailed):
    """Raised instead of printing "not solved yet" when nbgrader grades the notebook (zero points)."""


def fail(message: str, run: KernelRun | None = None) -> None:
    """Raise :class:`CheckFailed` with ``message``; first show a picture of ``run``'s launch when there is one."""
    if run is not None:
        show_launch_picture(run)
    raise CheckFailed("✗ " + message)


def passed(message: str) -> None:
    """Print the verdict of a correct answer."""
    print("✓ " + message)


# --------------------------------------------------------------------------------------------------
# "not solved yet"


def _code_objects(obj: object) -> Iterable[types.CodeType]:
    """Code objects of a function, a numba kernel (its Python function) or a class's methods."""
    if isinstance(obj, type):
        for value in vars(obj).values():
            yield from _code_objects(value)
        return
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        for f in (obj.fget, obj.fset):
            if f is not None:
                yield from _code_objects(f)
        return
    func = python_function(obj)
    code = getattr(func, "__code__", None)
    if isinstance(code, types.CodeType):
        stack = [code]
        while stack:  # nested functions and comprehensions too
            c = stack.pop()
            yield c
            stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))


def is_stub(obj: object) -> bool:
    """True when ``obj`` still raises ``NotImplementedError`` somewhere: the learner has not written it yet."""
    return any("NotImplementedError" in code.co_names for code in _code_objects(obj))


def not_solved_message(number: str, task: str) -> str:
    """The one line that says exercise ``number`` has not been attempted yet."""
    return f"◻ Exercise {number} not solved yet: {task} in the cell above, then run this cell again."


def say_not_solved(message: str) -> None:
    """Print the "not solved yet" line; under nbgrader's grader raise :class:`NotSolved` (zero points) instead."""
    if os.environ.get("NBGRADER_EXECUTION"):
        raise NotSolved(message)
    print(message)


def not_solved(number: str, task: str) -> None:
    """Say in one line that exercise ``number`` has not been attempted (raise under nbgrader's grader)."""
    say_not_solved(not_solved_message(number, task))


def exercise(number: str, task: str) -> Callable[[Callable], Callable]:
    """Decorator for a check: ``task`` says what the learner writes ("write the kernel saxpy").

    If any argument of the check is an unsolved stub, or the check meets a ``NotImplementedError``
    raised by the learner's code, the check prints "not solved yet" instead of failing.
    """

    def wrap(check: Callable) -> Callable:
        @functools.wraps(check)
        def run(*args, **kwargs):
            if any(is_stub(a) for a in (*args, *kwargs.values()) if callable(a)):
                return not_solved(number, task)
            try:
                return check(*args, **kwargs)
            except NotImplementedError:
                return not_solved(number, task)

        run.exercise = number  # type: ignore[attr-defined]
        return run

    return wrap


# --------------------------------------------------------------------------------------------------
# comparisons


def first_wrong(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> tuple[int, ...] | None:
    """Index of the first element (row-major order) outside the tolerance, or None if all agree."""
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape))


def _fmt_number(value: float) -> str:
    """A value for a message, 7 significant digits; negative zero (e.g. dy * 0) is shown as 0."""
    return f"{float(value) + 0.0:.7g}"


def _fmt_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def compare(name: str, got: object, want: object, rtol: float = 1e-6, atol: float = 0.0,
            causes: Sequence[tuple[object, str]] = (), run: KernelRun | None = None) -> None:
    """Fail unless ``got`` matches ``want``; say the first wrong index, the values, and the likely cause.

    ``causes`` lists (alternative, message): when ``got`` matches an alternative (an array, or a predicate
    called with ``got``), its message names the mistake. Tolerances are relative *and* absolute, so a
    correct answer computed in another (stable) way is accepted.
    """
    want = np.asarray(want, dtype=np.float64)
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        fail(f"{name} must be an array of numbers with shape {want.shape}, got {type(got).__name__}.", run)
    if got.shape != want.shape:
        hint = " (transposed?)" if got.shape == want.shape[::-1] and got.ndim == 2 else ""
        fail(f"{name} has shape {got.shape}{hint}, expected {want.shape}.", run)
    index = first_wrong(got, want, rtol, atol)
    if index is None:
        return
    n_bad = int((~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)).sum())
    cause = likely_cause(got, causes, rtol, atol)
    if run is not None:
        matches = [k for k, out in enumerate(run.outputs) if out.shape == got.shape
                   and np.array_equal(np.asarray(out, dtype=np.float64), got, equal_nan=True)]
        show_launch_picture(run, matches[0] if matches else 0, index)
        run = None  # shown once
    fail(f"{name} is wrong at {n_bad} of {want.size} elements; the first is {name}{_fmt_index(index)}: "
         f"you have {_fmt_number(got[index])}, expected {_fmt_number(want[index])}."
         + (f" Likely cause: {cause}" if cause else ""), run)


def likely_cause(got: np.ndarray, causes: Sequence[tuple[object, str]], rtol: float = 1e-6,
                 atol: float = 0.0) -> str:
    """The message of the first alternative that ``got`` matches, or ''."""
    for alternative, message in causes:
        try:
            if callable(alternative):
                if alternative(got):
                    return message
            elif np.shape(alternative) == got.shape and np.allclose(got, alternative, rtol=rtol, atol=atol):
                return message
        except Exception:  # noqa: BLE001, S112 - a diagnosis that cannot be computed is simply not offered
            continue
    return ""


# --------------------------------------------------------------------------------------------------
# guarded kernel launches

SENTINEL = -7.0
PAD = 256  # elements of sentinel before and after every output, on the device


@dataclass
class KernelRun:
    """One launch of the learner's kernel inside a check: what was launched and what came back."""

    kernel: object
    griddim: object
    blockdim: object
    inputs: list
    outputs: list[np.ndarray] = field(default_factory=list)
    extra: tuple = ()
    output_names: tuple[str, ...] = ()
    out_shapes: tuple[tuple[int, ...], ...] = ()
    dtypes: tuple = ()


def _device():
    from numba import cuda

    return cuda


def run_kernel(kernel: object, griddim: object, blockdim: object, inputs: Sequence[object],
               out_shapes: Sequence[tuple[int, ...]], extra: tuple = (), dtypes: Sequence[object] | None = None,
               output_names: Sequence[str] | None = None, initial: Sequence[np.ndarray | None] | None = None,
               call: str | None = None) -> KernelRun:
    """Launch ``kernel(*inputs, *outputs, *extra)`` with each output a view into a padded device buffer.

    Arrays among ``inputs`` and ``extra`` are copied to the device first (``extra`` holds the parameters
    after the outputs, e.g. the inputs of a kernel whose output comes first).

    Outputs start as the sentinel (or ``initial``); after the launch a changed sentinel anywhere in the
    padding means a thread wrote outside the array: a missing or wrong bounds guard. The sentinel is -7, not NaN
    (which nbkit's simulator puts in uninitialised shared and local memory): NaN is also what some wrong answers
    compute (0 / 0 in a softmax without the maximum subtracted), and the checks tell "never written" from that.
    In the simulator an out-of-bounds access raises IndexError, reported the same way; on a GPU a fault inside the
    kernel (an illegal address) surfaces at the copy back and a compile error at the launch, each one line
    (:func:`launch_failed`).
    ``call`` (e.g. ``"saxpy(alpha, x, y, out)"``) is how the check calls the kernel: parameter count and order
    are checked against it first, and error messages quote it.
    """
    if call:
        check_parameters(kernel, call)
    cuda = _device()
    dtypes = list(dtypes) if dtypes is not None else [np.float32] * len(out_shapes)
    names = tuple(output_names) if output_names else tuple(f"output {k}" for k in range(len(out_shapes)))
    initial = list(initial) if initial is not None else [None] * len(out_shapes)
    buffers, views = [], []
    for shape, dtype, init in zip(out_shapes, dtypes, initial):
        size = int(np.prod(shape))
        host = np.full(size + 2 * PAD, SENTINEL, dtype=dtype)
        if init is not None:
            host[PAD:PAD + size] = np.asarray(init, dtype=dtype).ravel()
        d = cuda.to_device(host)
        buffers.append(d)
        views.append(d[PAD:PAD + size].reshape(shape) if len(shape) > 1 else d[PAD:PAD + size])
    d_inputs = [cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in inputs]
    d_extra = [cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in extra]
    run = KernelRun(kernel, griddim, blockdim, list(inputs), [], tuple(extra), names,
                    tuple(tuple(sh) for sh in out_shapes), tuple(dtypes))
    try:
        launch(kernel, griddim, blockdim, *d_inputs, *views, *d_extra)
    except Exception as exc:  # noqa: BLE001 - each kind is said in words below; any other is raised again
        launch_failed(exc, call)
    for shape, buf, name in zip(out_shapes, buffers, names):
        try:
            full = buf.copy_to_host()  # on a GPU, a fault inside the kernel is reported here, at the next sync
        except Exception as exc:  # noqa: BLE001 - said in words by launch_failed, or raised again
            launch_failed(exc, call)
        size = int(np.prod(shape))
        pad = np.concatenate([full[:PAD], full[PAD + size:]])
        if np.any(pad != np.asarray(SENTINEL, dtype=full.dtype)):
            where = "before the start" if np.any(full[:PAD] != SENTINEL) else "past the end"
            run.outputs.append(full[PAD:PAD + size].reshape(shape))
            fail(f"threads wrote {where} of {name} (shape {tuple(shape)}), into memory they do not own: "
                 "add or correct the bounds guard.", run)
        run.outputs.append(full[PAD:PAD + size].reshape(shape))
    return run


def where_it_ran() -> str:
    """Where the learner's launch ran in this process, in words for a verdict ("C came out right {where}")."""
    from nbkit.core.mode import MODE

    if MODE.name == "gpu":
        return "on the GPU in this run"
    if MODE.name == "cpu":
        return "in the CPU executor, which ran the threads of each block one after another"
    return "in the simulator, which ran the threads of each block in one particular order"


def launch_failed(exc: Exception, call: str | None = None) -> None:
    """Fail with one line for an exception raised by the learner's launch; raise it again when it is not theirs.

    An out-of-bounds access raises IndexError only in the simulator and cpu mode (on a GPU a write out of
    bounds is caught by the sentinel padding, a read is not caught at all); a numba error (GPU mode: the
    compiler's TypingError or LoweringError, the driver's CudaAPIError) names the learner's line.
    """
    calls = f" (the check calls it as {call})." if call else "."
    if type(exc).__module__.startswith("numba"):
        refused = "the GPU refused or aborted the launch" if "Cuda" in type(exc).__name__ else COMPILER_REFUSES
        if "ILLEGAL_ADDRESS" in str(exc):
            refused += (" (a thread accessed memory that no array owns: a missing or wrong bounds guard, or a wrong "
                        "index; the GPU context is unusable now: restart the Python kernel after fixing it)")
        fail(f"{refused}: {compile_error(exc)}{calls}")
    if isinstance(exc, IndexError) and "only integers" in str(exc):
        fail(f"your kernel indexed an array with a number that is not an integer ({exc}): an index computed with "
             "`/` (a float) instead of `//`, or from a float variable. A GPU compiler refuses such a kernel"
             + (f" (the check calls it as {call})." if call else "."))
    if isinstance(exc, IndexError):
        if "scalar" in str(exc):
            fail(f"your kernel indexed a scalar parameter ({exc}): the parameters are probably in another order "
                 f"than the check passes them" + (f": it calls {call}." if call else "."))
        fail(f"a thread accessed an element outside an array ({exc}). The grid has more threads than elements "
             "(or an index is computed wrongly): every thread must check its index before reading or writing "
             "(the bounds guard), and use the array's shape, not a hard-coded size.")
    if isinstance(exc, DivergentBarrier):  # the simulator saw threads of a block wait at different barriers
        fail(str(exc).split(": ", 1)[-1] if str(exc).startswith("tid=") else str(exc))
    if isinstance(exc, (TypeError, ValueError, AttributeError, ZeroDivisionError, WarpError)):
        fail(f"your kernel raised {type(exc).__name__}: {exc}{calls}")
    raise exc


def _parameter_names(kernel: object) -> list[str] | None:
    func = python_function(kernel)
    try:
        return list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None


def call_parameters(call: str) -> tuple[str, ...]:
    """The parameter names of a call written as ``"name(a, b, out)"``."""
    return tuple(p.strip() for p in call[call.index("(") + 1:call.rindex(")")].split(",") if p.strip())


def check_parameters(kernel: object, call: str) -> None:
    """Fail when the kernel's parameters cannot match ``call`` ("name(a, b, out)"): wrong count or a permutation."""
    expected = list(call_parameters(call))
    names = _parameter_names(kernel)
    if names is None:
        return
    if len(names) != len(expected):
        fail(f"your kernel takes {len(names)} parameter(s) ({', '.join(names)}), but the check calls it as {call}.")
    if names != expected and sorted(names) == sorted(expected):
        fail(f"your kernel's parameters are ({', '.join(names)}), but the check passes them in the order {call}: "
             "put them in that order.")


def never_written(run: KernelRun, k: int = 0) -> np.ndarray:
    """Mask of output ``k``'s elements that still hold the sentinel: no thread wrote them."""
    return run.outputs[k] == np.asarray(SENTINEL, dtype=run.outputs[k].dtype)


UNWRITTEN = ("some elements were never written (they still hold the sentinel -7): too few threads, a guard that is "
             "too strict (< n - 1, or the wrong dimension), or a grid-stride loop that stops early.")


_pictures_allowed = contextvars.ContextVar("nbkit_check_pictures_allowed", default=True)


@contextlib.contextmanager
def no_pictures() -> Iterator[None]:
    """Inside this block no launch picture is drawn: for checks run by a program (mutation tests), not a learner."""
    token = _pictures_allowed.set(False)
    try:
        yield
    finally:
        _pictures_allowed.reset(token)


def pictures_wanted() -> bool:
    """Pictures appear in a notebook (a Jupyter kernel), not in pytest; NBKIT_CHECK_PICTURES=1/0 overrides.

    Never inside :func:`no_pictures`.
    """
    if not _pictures_allowed.get():
        return False
    forced = os.environ.get("NBKIT_CHECK_PICTURES")
    if forced is not None:
        return forced == "1"
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def launch_picture(run: KernelRun, output: int = 0, index: tuple[int, ...] | None = None):
    """A figure of the learner's launch, GPU-Puzzles style, from a traced re-run in the simulator.

    Top: which thread wrote each element of the output (never-written and written-twice elements marked).
    Bottom, when ``index`` names a wrong element: what the thread that wrote it read. Returns None when the
    launch cannot be traced (e.g. it reads out of bounds: the verdict already says so).
    """
    import matplotlib.pyplot as plt

    from nbkit.tracer import TraceError, trace
    from nbkit.tracer.plots import plot_reads, plot_write_map

    args = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in run.inputs]
    outs = [np.full(shape, SENTINEL, dtype=dtype) for shape, dtype in zip(run.out_shapes, run.dtypes)]
    try:
        t = trace(run.kernel, run.griddim, run.blockdim, *args, *outs, *run.extra)
    except (TraceError, TypeError, ValueError):
        return None
    params = _parameter_names(run.kernel) or []
    out_name = params[len(args) + output]
    writer = None
    if index is not None:
        wm = t.write_map(out_name)
        if wm.writers[index] > 0:
            writer = (int(wm.block[index]), int(wm.thread[index]))
    read_from = None
    if writer is not None:
        for name, a in zip(params, args):
            if isinstance(a, np.ndarray) and t.read_map(name, writer).any():
                read_from = name
                break
    rows = 2 if read_from else 1
    flat = len(run.out_shapes[output]) <= 1
    fig, axes = plt.subplots(rows, 1, figsize=(12, (2.4 if flat else 4.5) * rows), squeeze=False)
    plot_write_map(t, out_name, ax=axes[0, 0])
    if read_from:
        plot_reads(t, read_from, writer, ax=axes[1, 0])
        axes[1, 0].set_title(f"{out_name}{list(index)} is wrong. It was written by block "
                             f"{t.block_index(writer[0])}, thread {t.thread_index(writer[1])},\nwhich read these "
                             f"elements of {read_from}", fontsize=10)
    fig.suptitle(f"Your kernel {t.kernel_name}, traced in the simulator: who wrote what", fontsize=11)
    fig.tight_layout()
    return fig


def show_launch_picture(run: KernelRun, output: int = 0, index: tuple[int, ...] | None = None) -> None:
    """Display :func:`launch_picture` in a notebook; never let a picture hide or replace the verdict."""
    if not pictures_wanted():
        return
    try:
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = launch_picture(run, output, index)
        if fig is not None:
            display(fig)
            plt.close(fig)
    except Exception:  # noqa: BLE001 - a picture is extra help only
        return


# --------------------------------------------------------------------------------------------------
# "float32 throughout", proved from the PTX


COMPILER_REFUSES = "numba-cuda's compiler refuses your kernel, so a GPU could not run it"


def signature_of(values: Sequence[object]) -> str:
    """The signature a GPU launch with these arguments compiles, e.g. ``"void(float32[::1], float64)"``.

    The types are numba's own (``numba.typeof``) of the host values; device arrays of the check are
    C-contiguous like them. Used to compile a kernel whose exercise declares no signature.
    """
    from numba import typeof

    def one(value: object) -> str:
        if isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
            return f"{typeof(value).dtype}[{', '.join([':'] * (value.ndim - 1) + ['::1'])}]"
        return str(typeof(value))

    return f"void({', '.join(one(v) for v in values)})"


def require_compiles(kernel: object, signature: str) -> KernelCompile:
    """Fail when numba-cuda's compiler refuses the kernel (a GPU would); otherwise return what it made.

    Where no compiler exists, or the kernel cannot be sent to it, the result's ``skipped`` says why: that is
    not the learner's mistake, and the ✓ message says what could not be checked.
    """
    result = compile_kernel(kernel, signature)
    if result.error is not None:
        fail(f"{COMPILER_REFUSES} ({signature}): {result.error}.")
    return result


def float32_ptx(kernel: object, signature: str) -> tuple[bool | None, str]:
    """Compile the learner's kernel to PTX with the real CUDA compiler and look for float64 instructions.

    Returns (True, phrase) when the PTX has no ``.f64``, (False, message) when it has (or the compiler refuses
    the kernel), and (None, phrase) when it could not be checked (no numba-cuda, e.g. macOS, or something the
    kernel refers to that cannot be sent to the compiler). See :func:`nbkit.perf.compiler.compile_kernel`.
    """
    result = compile_kernel(kernel, signature)
    if result.skipped is not None:
        return None, f"float32 not checked: {result.skipped}"
    if result.error is not None:
        return False, f"{COMPILER_REFUSES} ({signature}): {result.error}."
    lines = f64_instructions(result.ptx or "")
    if lines:
        return False, (f"the PTX of your kernel contains {len(lines)} float64 instruction(s), e.g. "
                       f"`{lines[0]}`: something promotes the arithmetic to float64 (up to 64x slower on "
                       "consumer GPUs). Common sources: a float literal such as 0.1 or 0.0 (write float32(0.1)); an "
                       "integer operand mixed with a float32, which numba computes in float64, such as "
                       "1 - dampening with an integer 1 (write float32(1)) or / logits.shape[0] (write "
                       "/ float32(logits.shape[0])); a float64 constant or math call. Compute from float32 values only.")
    return True, "float32 throughout (checked in the PTX: no .f64 instruction)"


def require_float32(kernel: object, signature: str) -> str:
    """Fail when the kernel's PTX has float64 arithmetic; return the phrase to add to the ✓ message."""
    ok, message = float32_ptx(kernel, signature)
    if ok is False:
        fail(message)
    return message


# --------------------------------------------------------------------------------------------------
# shared-memory races, found by the memory-access tracer


@dataclass
class SharedScan:
    """What the memory-access tracer found in one launch: shared-memory races, reads of shared memory no thread
    had written, barriers not reached by every thread of a block. ``None`` fields: the tracer could not run."""

    races: list | None = None
    uninitialised: list | None = None
    divergent: list | None = None
    uses_shared: bool = False
    arguments: list | None = None  # the launch's arguments after the traced run (copies; shared memory poisoned)
    trace: object | None = None  # the tracer's record itself, for a proof that needs the same launch traced


def scan_shared(kernel, grid, block, *args) -> SharedScan:
    """Trace one launch (copies of the array arguments) and collect what :class:`SharedScan` holds."""
    try:
        from nbkit.tracer import trace
    except ImportError:
        return SharedScan(uses_shared=static_shared_bytes(kernel) > 0)
    copies = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
    try:
        t = trace(kernel, grid, block, *copies)
    except Exception:  # noqa: BLE001 - the launch itself was checked before; a tracer failure proves nothing
        return SharedScan(uses_shared=static_shared_bytes(kernel) > 0)
    return SharedScan(list(t.races()), t.uninitialised_reads(), t.divergent_barriers(),
                      any(a.space == "shared" for a in t.arrays), copies, t)


def find_races(kernel, grid, block, *args) -> tuple[list | None, bool]:
    """(races, uses shared memory) of one traced launch; races is None when the tracer is not available."""
    found = scan_shared(kernel, grid, block, *args)
    return found.races, found.uses_shared


_RACE_ADVICE = {
    "read-after-write": "a thread reads a shared-memory element before the thread that writes it is known to have written it: "
                        "put cuda.syncthreads() between the writes (loading a tile, a step of a tree) and the reads.",
    "write-after-read": "a thread overwrites a shared-memory element with the next step's value while another thread may "
                        "still have to read the old one: put cuda.syncthreads() after the reads, before the next "
                        "step's writes.",
    "write-after-write": "two threads write the same shared-memory element between two barriers, so which value stays "
                         "depends on timing: let each element be written by exactly one thread.",
}


def race_sentence(races: list) -> str:
    """The first race in words, how many more, what to do about its kind, and where the barrier is missing.

    The kind and the place come from the program order of the two accesses (:class:`nbkit.tracer.Race`), not from
    the order the simulator ran the threads in, so the advice is the same in every run.
    """
    more = f" (and {len(races) - 1} more in this launch)" if len(races) > 1 else ""
    advice = _RACE_ADVICE.get(getattr(races[0], "kind", ""), "add the missing cuda.syncthreads().")
    where = getattr(races[0], "missing_barrier", "")
    return f"{races[0]}{more}. In words: {advice}" + (f" Here: {where}." if where else "")


def uninitialised_sentence(reads: list) -> str:
    """The first read of never-written shared memory, how many more elements, and what to do."""
    more = f" ({len(reads) - 1} more element(s) like it in this launch)" if len(reads) > 1 else ""
    return (f"{reads[0]}{more}. Every element a thread reads must have been written first, in this block and before "
            "a cuda.syncthreads() that separates the write from the read: shared memory starts with garbage on a GPU, "
            "not zeros.")


def divergence_sentence(divergent: list) -> str:
    """The first divergent barrier in words, and the rule."""
    return (f"{divergent[0]}. Every thread of a block must reach every cuda.syncthreads() (threads that have returned "
            "from the kernel excepted): a barrier inside an if is allowed only when the condition is the same for the "
            "whole block (CUDA Programming Guide, __syncthreads()); otherwise the GPU may hang or let threads through "
            "early. Put the barrier outside the if, where every thread reaches it.")
