"""Launch kernels only with configurations real hardware accepts, in every mode; in cpu mode, run them on the CPU.

The simulator happily runs 2048 threads per block or a 64 KiB shared array; a GPU refuses both.
Checking here means code learned on a laptop also runs on a GPU.

In cpu mode (``NBKIT_MODE=cpu``) every launch, ``nbkit.launch`` and ``kernel[grid, block](*args)`` alike, runs
through the CPU executor (:func:`run_on_executor`); a kernel it cannot run goes to the simulator, with one line.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import math
import sys
import textwrap
from typing import Callable, Iterator, Sequence

import numpy as np

from nbkit.core import simulator
from nbkit.core.hw import MAX_BLOCK_DIM, MAX_GRID_DIM, MAX_STATIC_SHARED_BYTES, MAX_THREADS_PER_BLOCK, WARP_SIZE
from nbkit.core.mode import MODE
from nbkit.core.source import python_function

Dims = int | Sequence[int]


class LaunchConfigError(ValueError):
    """A launch configuration that a real GPU would refuse."""


def _as_dims(value: Dims, what: str) -> tuple[int, ...]:
    if type(value) is int:  # the common cases first: every launch comes here
        return (value,)
    if type(value) is tuple and 1 <= len(value) <= 3 and all(type(d) is int for d in value):
        return value
    if isinstance(value, (int, np.integer, float)):
        dims = (value,)
    elif isinstance(value, (tuple, list)):
        dims = tuple(value)
    else:
        raise LaunchConfigError(f"{what} must be an int or a tuple of 1-3 ints, got {value!r}.")
    if not 1 <= len(dims) <= 3:
        raise LaunchConfigError(f"{what} must have 1, 2 or 3 dimensions, got {value!r}.")
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise LaunchConfigError(f"{what} must be whole numbers, got {value!r}.")
    return tuple(int(d) for d in dims)


def blocks_for(n: int, threads_per_block: int) -> int:
    """How many blocks of ``threads_per_block`` cover ``n`` elements (rounding up)."""
    if n <= 0 or threads_per_block <= 0:
        raise LaunchConfigError(f"need n > 0 and threads_per_block > 0, got n={n}, threads_per_block={threads_per_block}.")
    return math.ceil(n / threads_per_block)


def threads_1d(n: int, largest: int = 128) -> int:
    """Threads per block for ``n`` elements: a power of two, at least one warp (32), at most ``largest``.

    Short vectors then do not launch 128 threads for 8 elements, which costs nothing on a GPU but real
    time in the simulator, where every thread runs as Python code (tens of µs each).
    """
    size = WARP_SIZE
    while size < min(n, largest):
        size *= 2
    return size


def block_2d(rows: int, cols: int, largest: int = 16) -> tuple[int, int]:
    """An (x, y) block no larger than the matrix needs, at most ``largest`` × ``largest``.

    x covers columns, y rows. Small matrices then do not launch 256 threads to fill 12 elements, which
    matters little on a GPU and a lot in the simulator, where every thread costs CPU time.
    """
    def fit(n: int) -> int:
        size = 1
        while size < min(n, largest):
            size *= 2
        return size

    return fit(cols), fit(rows)


def grid_2d(rows: int, cols: int, block: tuple[int, int]) -> tuple[int, int]:
    """The (x, y) grid of ``block``-sized blocks that covers a rows × cols matrix."""
    return blocks_for(cols, block[0]), blocks_for(rows, block[1])


def grid_3d(rows: int, cols: int, depth: int, block: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (x, y, z) grid for a stack of ``depth`` rows × cols maps: x along columns, y along rows, z one per map.

    ``depth`` must fit the z limit (65,535): wrappers that fold a batch into z split it with :func:`batch_chunks`.
    """
    return blocks_for(cols, block[0]), blocks_for(rows, block[1]), blocks_for(depth, block[2])


def batch_chunks(batch: int, per_item: int, limit: int | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of a batch such that ``(stop - start) * per_item`` fits grid z.

    conv and pool give every (image, channel) pair one z index: a batch of 10,000 CIFAR images through a
    6-filter conv needs 60,000 z blocks, 11,000 single-channel images 176,000 with 16 filters, past the
    hardware's 65,535. The wrapper then launches once per chunk on a slice of the batch (a view, no copy).
    """
    limit = MAX_GRID_DIM[2] if limit is None else limit
    if per_item > limit:
        raise LaunchConfigError(f"one item needs {per_item} z blocks, more than the grid's z limit {limit}.")
    step = limit // per_item
    return [(start, min(start + step, batch)) for start in range(0, batch, step)]


def check_launch(griddim: Dims, blockdim: Dims, kernel: object = None, dynamic_shared_bytes: int = 0
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Raise LaunchConfigError for any configuration a real GPU would refuse; return the dims as tuples."""
    grid = _as_dims(griddim, "grid dimensions")
    block = _as_dims(blockdim, "block dimensions")
    key: tuple | None = (grid, block, kernel, dynamic_shared_bytes)
    try:
        if key in _ACCEPTED:  # every launch comes here: the checks below cost 3-4 µs, a look-up 0.3
            return grid, block
    except TypeError:  # an unhashable kernel object: checked every time
        key = None
    axes = "xyz"
    for dims, what in ((grid, "grid"), (block, "block")):
        if any(d <= 0 for d in dims):
            raise LaunchConfigError(
                f"{what} dimensions {dims} contain zero or a negative number: a launch needs at least one "
                f"{'block' if what == 'grid' else 'thread'} along every axis. "
                + ("An empty input gives a zero-size grid: handle n == 0 before launching." if what == "grid" else "")
            )
    for i, d in enumerate(block):
        if d > MAX_BLOCK_DIM[i]:
            raise LaunchConfigError(
                f"block dimension {axes[i]} = {d} exceeds the hardware limit {MAX_BLOCK_DIM[i]} "
                f"(limits x, y, z = {MAX_BLOCK_DIM})."
            )
    threads = math.prod(block)
    if threads > MAX_THREADS_PER_BLOCK:
        raise LaunchConfigError(
            f"{threads} threads per block (block {block}) exceeds the limit of {MAX_THREADS_PER_BLOCK} on every "
            f"NVIDIA GPU. The simulator would run it, a GPU refuses it. Use more blocks with fewer threads, "
            f"e.g. blocks_for(n, 256) blocks of 256."
        )
    for i, d in enumerate(grid):
        if d > MAX_GRID_DIM[i]:
            raise LaunchConfigError(
                f"grid dimension {axes[i]} = {d} exceeds the hardware limit {MAX_GRID_DIM[i]} "
                f"(limits x, y, z = {MAX_GRID_DIM}). Use a grid-stride loop or another axis."
            )
    if dynamic_shared_bytes < 0:
        raise LaunchConfigError(f"dynamic shared memory must be >= 0 bytes, got {dynamic_shared_bytes}.")
    static = static_shared_bytes(kernel) if kernel is not None else 0
    if static + dynamic_shared_bytes > MAX_STATIC_SHARED_BYTES:
        raise LaunchConfigError(
            f"the kernel asks for {static + dynamic_shared_bytes} bytes of shared memory per block "
            f"({static} static + {dynamic_shared_bytes} dynamic), more than the "
            f"{MAX_STATIC_SHARED_BYTES} bytes (48 KiB) a block may use without an explicit opt-in. "
            f"Use smaller tiles."
        )
    if key is not None:
        if len(_ACCEPTED) >= 10_000:  # a bound on memory (a notebook may define kernels without end)
            _ACCEPTED.clear()
        _ACCEPTED.add(key)
    return grid, block


# Configurations check_launch accepted: (grid, block as tuples of ints, kernel, dynamic shared bytes). The checks are
# a function of these alone (the kernel's static shared memory is read once per kernel, from its source).
_ACCEPTED: set[tuple] = set()


_OBSERVERS: list[Callable] = []  # called as observer(kernel, grid, block, args) before each launch (nbkit.perf.steps)
_launch_count = 0


def kernel_name(kernel: object) -> str:
    fn = getattr(kernel, "py_func", kernel)
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(kernel).__name__


def describe_args(args: Sequence[object]) -> str:
    """Shapes and dtypes of a launch's arguments, for error messages."""
    parts = []
    for a in args:
        if hasattr(a, "shape") and hasattr(a, "dtype") and getattr(a, "ndim", 0) > 0:
            kind = "host" if isinstance(a, np.ndarray) else "device"
            parts.append(f"{kind} {a.dtype}{tuple(a.shape)}")
        else:
            parts.append(repr(a))
    return ", ".join(parts)


def launch(kernel: object, griddim: Dims, blockdim: Dims, *args: object, dynamic_shared_bytes: int = 0) -> None:
    """``kernel[griddim, blockdim](*args)``, after :func:`check_launch` has accepted the configuration.

    If the launch fails (a GPU's "too many resources requested", a CUDA error, the simulator's IndexError),
    the exception keeps its type and gets a note naming the kernel, the launch number in this process,
    grid, block and arguments. A GPU reports a fault inside a kernel (e.g. an illegal address) only at the
    next synchronisation, so the note may name a later launch: start Python with
    ``CUDA_LAUNCH_BLOCKING=1`` to have every launch wait, and the failing one named.
    """
    global _launch_count
    grid, block = check_launch(griddim, blockdim, kernel, dynamic_shared_bytes)
    _launch_count += 1
    for observer in _OBSERVERS:
        observer(kernel, grid, block, args)
    try:
        if not simulator.routed_launch(kernel, grid, block, dynamic_shared_bytes, args):  # cpu mode: no second check
            if dynamic_shared_bytes:
                kernel[grid, block, 0, dynamic_shared_bytes](*args)
            else:
                kernel[grid, block](*args)
    except Exception as exc:
        exc.add_note(f"nbkit: while launching kernel {kernel_name(kernel)} (launch #{_launch_count} of this "
                     f"process) with grid {grid}, block {block}, arguments ({describe_args(args)}).")
        raise


def launch_1d(kernel: object, n: int, *args: object) -> None:
    """Launch one thread per element over ``n`` elements, in blocks of :func:`threads_1d` threads."""
    threads = threads_1d(n)
    launch(kernel, blocks_for(n, threads), threads, *args)


def static_shared_bytes(kernel: object) -> int:
    """Bytes of ``cuda.shared.array`` declared in a kernel's own body, read from its source.

    Shapes and dtypes of shared arrays must be compile-time constants, so they can be evaluated from
    the function's globals and closure. Arrays declared in device functions it calls are not counted.
    The PTX test checks this count against the compiler's for every registered kernel.
    """
    fn = getattr(kernel, "py_func", kernel)
    if not callable(fn):
        raise TypeError(f"expected a kernel or a Python function, got {type(kernel).__name__}")
    return _static_shared_bytes(fn)


@functools.lru_cache(maxsize=None)
def _static_shared_bytes(fn: Callable) -> int:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return 0  # no source (e.g. defined in a REPL): nothing we can count
    namespace = dict(fn.__globals__)
    if fn.__closure__:
        namespace.update(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__)))
    total = 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "array"
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "shared"):
            continue
        args = {i: a for i, a in enumerate(node.args)}
        kwargs = {k.arg: k.value for k in node.keywords}
        shape_node = kwargs.get("shape", args.get(0))
        dtype_node = kwargs.get("dtype", args.get(1))
        if shape_node is None or dtype_node is None:
            continue
        try:
            shape = eval(compile(ast.Expression(shape_node), "<shape>", "eval"), namespace)  # noqa: S307
            dtype = eval(compile(ast.Expression(dtype_node), "<dtype>", "eval"), namespace)  # noqa: S307
            itemsize = np.dtype(str(dtype) if not isinstance(dtype, type) else dtype).itemsize
        except Exception:  # noqa: BLE001, S112 - not a constant we can evaluate: leave it to the compiler
            continue
        count = math.prod(shape) if isinstance(shape, tuple) else int(shape)
        if count > 0:  # shape 0 declares dynamic shared memory, sized at launch
            total += count * itemsize
    return total


# ---------------------------------------------------------------------------------------------- cpu mode

EXECUTOR_LAUNCHES = 0  # launches the CPU executor ran in this process (cpu mode; tests read it)
FALLBACKS: dict[Callable, str] = {}  # kernel's Python function -> why it runs on the simulator (cpu mode)


def run_on_executor(kernel: object, grid: tuple, block: tuple, dynamic_shared_bytes: int, args: tuple,
                    simulate: Callable[[], None]) -> None:
    """One launch in cpu mode: the CPU executor, or ``simulate()`` for a kernel the executor cannot run.

    The first time a kernel falls back, one line on stderr names it and the reason; its later launches go straight
    to the simulator. The executor's own errors (``IndexError`` out of bounds, ...) are raised as they are.
    """
    global EXECUTOR_LAUNCHES
    from nbkit.core.executor import ExecutorUnsupported, run_on_cpu

    fn = python_function(kernel)
    if fn not in FALLBACKS:
        try:
            if dynamic_shared_bytes:
                raise ExecutorUnsupported("dynamic shared memory (a launch with a shared-memory size)")
            run_on_cpu(kernel, grid, block, *args)
            EXECUTOR_LAUNCHES += 1
            return
        except ExecutorUnsupported as exc:  # raised before anything was written, or with the arrays put back
            FALLBACKS[fn] = exc.reason
            print(f"nbkit: kernel {kernel_name(kernel)} runs on the CUDA simulator (slow): the CPU executor "
                  f"cannot run it: {exc.reason}", file=sys.stderr)
    simulate()


@contextlib.contextmanager
def compiled_launches() -> Iterator[None]:
    """Inside: every kernel launch runs compiled by the CPU executor, as in cpu mode (no GPU needed).

    In sim mode it routes the launches of the block through :func:`run_on_executor` and back to the simulator
    after; in cpu mode they already go there; in GPU mode nothing changes (the kernels run on the GPU). Used where
    only results and speed matter, e.g. notebook 08 training the course's kernels without a GPU.
    """
    if MODE.name != "sim":
        yield
        return
    simulator.route_launches(run_on_executor)
    try:
        yield
    finally:
        simulator.route_launches(None)


def launches_compiled() -> bool:
    """Whether a launch made now runs through the CPU executor: cpu mode, or inside :func:`compiled_launches`."""
    return MODE.name == "cpu" or (MODE.name == "sim" and simulator.routed())


if MODE.name == "cpu":
    simulator.route_launches(run_on_executor)

if MODE.is_simulator:  # the simulators lack warp shuffles and votes: nbkit.core.warp supplies them
    simulator.install_warp_intrinsics()
    simulator.harden()  # poisoned shared/local memory, locked shared arrays, mismatched barriers raise
