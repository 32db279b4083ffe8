"""Run a kernel in the CUDA simulator with every global- and shared-memory access recorded.

Why: the simulator runs every CUDA thread, so it can say which thread touched which element, and
group those accesses the way a GPU serves them: one *warp request* is the n-th execution of one access
site (a subscript in the source) by the active lanes of one warp. From the requests follow the units
hardware moves: 32-byte sectors per global request (coalescing), n-way shared-memory bank conflicts, and
from the barrier counts, shared-memory races that the simulator's lucky scheduling may have hidden.
The same records draw the learner's pictures (who wrote what, what one thread read).

How: the kernel's Python function runs on the simulator's own thread machinery, but each array argument
and each ``cuda.shared.array`` is a proxy that records (block, thread, array, element, read/write, source
site, barrier epoch) and forwards to a NumPy array; ``cuda.syncthreads`` counts epochs. This works in
both nbkit modes: in GPU mode the kernel's ``py_func`` runs on the simulator just the same.

What the model leaves out (say so when you show its numbers):
- caches (L1, L2, texture, constant): every request is counted as if it went to DRAM, so "bytes moved"
  is the traffic *requested* from the memory system, not what DRAM served;
- timing, latency hiding, occupancy, instruction issue: nothing here is a speed;
- the real warp scheduling order and divergence details beyond which lanes were active: lanes of a warp are
  grouped by how often each executed an access site, which matches SIMT execution for the usual loops and
  branches but not for every data-dependent divergence;
- atomics contention (an atomic request is counted like any other request), ``cuda.local`` and
  ``cuda.const`` arrays, NumPy arrays captured as globals or closures (not traced), and global-memory races
  (only shared-memory hazards within a block are reported);
- addresses: each global array is assumed to start 256-byte aligned (as cudaMalloc guarantees); shared
  arrays are laid out one after another (bank conflicts do not depend on where an array starts).
"""

from __future__ import annotations

import bisect
import dis
import inspect
import itertools
import linecache
import re
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable

import numpy as np

from nbkit.core.launch import Dims, check_launch
from nbkit.core.source import python_function

SECTOR_BYTES = 32
BANKS = 32
BANK_BYTES = 4
WARP_SIZE = 32
GLOBAL_ALIGNMENT = 256
DYNAMIC_SHARED_BASE = 1 << 24  # a model address: past any static shared array (banks do not depend on it)

SPACES = ("global", "shared")
OPS = ("read", "write", "atomic")
_READ, _WRITE, _ATOMIC = 0, 1, 2

__all__ = ["Trace", "TraceError", "TraceIndexError", "Request", "Race", "WriteMap", "trace"]


class TraceError(RuntimeError):
    """A kernel raised while being traced; the message names the block and thread."""


class TraceIndexError(TraceError, IndexError):
    """An out-of-bounds access under the tracer; the message names the thread, array, index and shape."""


# --------------------------------------------------------------------------------------------- recording

@dataclass
class ArrayInfo:
    """One traced array: where its elements live (byte offset = base + dot(index, strides))."""

    name: str
    space: str  # "global" or "shared"
    shape: tuple[int, ...]
    dtype: np.dtype
    strides: tuple[int, ...]  # bytes
    base: int  # byte address of element 0 (global: 0, i.e. 256-byte aligned; shared: offset in the block's shared memory)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def addresses(self, flat: np.ndarray) -> np.ndarray:
        """Byte addresses of C-order flat element indices."""
        flat = np.asarray(flat, dtype=np.int64)
        if not self.shape:
            return np.full(flat.shape, self.base, dtype=np.int64)
        multi = np.unravel_index(flat, self.shape)
        return self.base + sum(m.astype(np.int64) * s for m, s in zip(multi, self.strides))

    def label(self, flat: int) -> str:
        """``out[37]`` or ``sA[0, 6]``."""
        idx = np.unravel_index(int(flat), self.shape) if self.shape else ()
        return f"{self.name}[{', '.join(str(int(i)) for i in idx)}]"


class _Recorder:
    """Collects records from all simulated threads (list.append is atomic under the GIL).

    A record keeps the index object exactly as the kernel wrote it; turning indices into element numbers
    happens once, vectorised, when the :class:`Trace` is built, which keeps each access cheap.
    """

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.arrays: list[ArrayInfo] = []
        self.views: dict[int, tuple[int, np.ndarray]] = {}  # view id -> (array id, flat index of each element)
        self._view_ids = itertools.count(1)  # next() on a count is atomic under the GIL
        self.error: str | None = None
        self.shared_top = 0

    def add_array(self, info: ArrayInfo) -> int:
        self.arrays.append(info)
        return len(self.arrays) - 1

    def add_view(self, aid: int, flatmap: np.ndarray) -> int:
        """Register a sub-array a kernel sliced out; its records carry a negative array id."""
        vid = -next(self._view_ids)
        self.views[vid] = (aid, flatmap)
        return vid


def _fmt_dim(d: Iterable[int], ndim: int) -> str:
    d = tuple(int(v) for v in d)[:max(ndim, 1)]
    return f"({d[0]})" if len(d) == 1 else str(d)


_getframe = sys._getframe
_current_thread = threading.current_thread


class _TracedArray:
    """A kernel's view of one array: records each element access, then forwards it to NumPy."""

    __slots__ = ("_a", "_aid", "_rec", "_log", "_base", "_flatmap")

    def __init__(self, a: np.ndarray, aid: int, rec: _Recorder, flatmap: np.ndarray | None = None):
        self._a = a
        self._rec = rec
        self._log = rec.log.append
        self._flatmap = flatmap  # None: a is the whole traced array; else flat index (in it) of each element of a
        self._base = aid
        self._aid = aid if flatmap is None else rec.add_view(aid, flatmap)

    # --- what kernels use besides subscripts
    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    def __len__(self) -> int:
        return len(self._a)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._a, name)

    def __repr__(self) -> str:
        return f"<traced {self._rec.arrays[self._base].name} {self._a.shape} {self._a.dtype}>"

    # --- element access: forward to NumPy, then append one tuple (the hot path: keep it short)
    def __getitem__(self, idx: Any) -> Any:
        try:
            v = self._a[idx]
        except IndexError as exc:
            self._fail(idx, exc)
        if type(v) is np.ndarray:  # a sub-array (e.g. x[i] of a matrix): a view, no access yet
            return self._view(idx, v)
        f = _getframe(1)
        t = _current_thread()
        self._log((t.blin, t.thread_id, self._aid, idx, _READ, f.f_code, f.f_lasti, t.epoch))
        return v

    def __setitem__(self, idx: Any, value: Any) -> None:
        try:
            self._a[idx] = value
        except IndexError as exc:
            self._fail(idx, exc)
        f = _getframe(1)
        t = _current_thread()
        self._log((t.blin, t.thread_id, self._aid, idx, _WRITE, f.f_code, f.f_lasti, t.epoch))

    def _atomic(self, index: Any, update: Callable[[np.ndarray, Any], Any], frame) -> Any:
        """Run ``update(ndarray, index)`` (the simulator's own locked atomic) and record one atomic access."""
        try:
            old = update(self._a, index)
        except IndexError as exc:
            self._fail(index, exc, frame)
        t = _current_thread()
        self._log((t.blin, t.thread_id, self._aid, index, _ATOMIC, frame.f_code, frame.f_lasti, t.epoch))
        return old

    def _view(self, idx: Any, v: np.ndarray) -> "_TracedArray":
        fm = self._flatmap
        if fm is None:
            fm = np.arange(self._a.size, dtype=np.int64).reshape(self._a.shape)
        return _TracedArray(v, self._base, self._rec, fm[idx])

    def _fail(self, idx: Any, exc: BaseException, caller=None) -> None:
        t = threading.current_thread()
        info = self._rec.arrays[self._base]
        shown = idx if isinstance(idx, tuple) else (idx,)
        name = info.name if self._flatmap is None else f"{info.name}(view)"
        where = f"{name}[{', '.join(str(i) for i in shown)}]"
        caller = caller or sys._getframe(2)
        line = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        grid = getattr(t, "launch_ndim", (3, 3))
        who = (f"block {_fmt_dim(t.blockIdx, grid[0])}, thread {_fmt_dim(t.threadIdx, grid[1])}"
               if hasattr(t, "blockIdx") else "a thread")
        msg = f"{who} accessed {where} at {line}: {exc}. {info.name} has shape {tuple(self._a.shape)} ({info.space} memory)."
        if "out of bounds" in str(exc):
            msg += " On a GPU this access would read or corrupt memory silently; add or fix the bounds guard."
        if self._rec.error is None:
            self._rec.error = msg
        raise TraceIndexError(msg) from None


def _flat_indices(indices: list, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """C-order flat element indices for a list of kernel subscripts of an array of ``shape``.

    Returns (flat, owner): owner[k] is the position in ``indices`` of flat[k] (a slice assignment writes
    several elements). The common case (ints or full tuples of ints) is one NumPy conversion.
    """
    shape_arr = np.array(shape, dtype=np.int64)
    estrides = np.array([int(np.prod(shape[k + 1:], dtype=np.int64)) for k in range(len(shape))], dtype=np.int64)
    try:
        m = np.array(indices, dtype=np.int64)
        if m.ndim == 1 and len(shape) == 1:
            m = m[:, None]
        if m.ndim != 2 or m.shape[1] != len(shape):
            raise ValueError
    except (ValueError, TypeError):
        m = None
    if m is not None:
        m = np.where(m < 0, m + shape_arr, m)
        return m @ estrides, np.arange(len(indices))
    ref = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
    flats = [np.atleast_1d(ref[idx]).ravel() for idx in indices]
    return np.concatenate(flats), np.repeat(np.arange(len(indices)), [len(f) for f in flats])


# --------------------------------------------------------------------------------------------- the fake cuda module

_SHARED_NAME = re.compile(r"(\w+)\s*(?::[^=]+)?=\s*cuda\.shared\.array\b")


def _fake_module_class():
    """Built lazily: the simulator's classes are imported only when tracing (they import fine in GPU mode too)."""
    from numba.cuda import types as numba_types
    from numba.cuda.np import numpy_support
    from numba.cuda.simulator import kernelapi

    class TracingAtomic:
        """``cuda.atomic.*``: on a traced array, one atomic record; otherwise the simulator's atomic."""

        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name: str):
            op = getattr(self._inner, name)

            def atomic(array, *args):
                if isinstance(array, _TracedArray):
                    frame = sys._getframe(1)
                    if name in ("compare_and_swap",):
                        index = (0,) * array.ndim
                        return array._atomic(index, lambda a, _i: op(a, *args), frame)
                    return array._atomic(args[0], lambda a, i: op(a, i, *args[1:]), frame)
                return op(array, *args)

            return atomic

    class TracingShared:
        """``cuda.shared.array``: one traced array per declaration site, like the simulator's own."""

        def __init__(self, inner, rec: _Recorder, used_names: set):
            self._inner = inner
            self._rec = rec
            self._sites: dict = {}
            self._lock = threading.Lock()
            self._used = used_names

        def array(self, shape, dtype, alignment=None):
            caller = sys._getframe(1)
            key = (caller.f_code, caller.f_lineno)  # like the simulator: one array per declaring line
            with self._lock:
                proxy = self._sites.get(key)
                if proxy is None:
                    dynamic = shape == 0 or shape == (0,)
                    if dynamic:  # the simulator's one dynamic buffer, viewed with this dtype
                        raw = self._inner.array(shape, dtype, alignment)
                    else:  # not the simulator's: it keys arrays by its caller's line, which would be ours
                        if alignment is not None:
                            raise RuntimeError("Array alignment is not supported in cudasim")
                        if isinstance(dtype, numba_types.Type):
                            dtype = numpy_support.as_dtype(dtype)
                        raw = np.empty(shape, dtype)
                    line = linecache.getline(caller.f_code.co_filename, caller.f_lineno)
                    m = _SHARED_NAME.search(line)
                    name = m.group(1) if m else f"shared@{caller.f_lineno}"
                    base_name, k = name, 2
                    while name in self._used:
                        name, k = f"{base_name}#{k}", k + 1
                    self._used.add(name)
                    if dynamic:  # every dynamic declaration aliases one buffer, placed after the static arrays
                        base = DYNAMIC_SHARED_BASE
                    else:
                        base = -(-self._rec.shared_top // 16) * 16
                        self._rec.shared_top = base + raw.nbytes
                    info = ArrayInfo(name, "shared", raw.shape, raw.dtype, raw.strides, base)
                    proxy = _TracedArray(raw, self._rec.add_array(info), self._rec)
                    self._sites[key] = proxy
            return proxy

    class TracingModule(kernelapi.FakeCUDAModule):
        """The simulator's fake ``cuda`` module with traced shared memory, atomics and counted barriers."""

        def __init__(self, grid_dim, block_dim, dynshared_size, rec: _Recorder, used_names: set):
            super().__init__(grid_dim, block_dim, dynshared_size)
            self._shared = TracingShared(self._shared, rec, used_names)
            self._atomic = TracingAtomic(self._atomic)

        def syncthreads(self):
            t = threading.current_thread()
            t.syncthreads()
            t.epoch += 1

        def syncthreads_count(self, val):
            t = threading.current_thread()
            r = t.syncthreads_count(val)
            t.epoch += 2
            return r

        def syncthreads_and(self, val):
            t = threading.current_thread()
            r = t.syncthreads_and(val)
            t.epoch += 2
            return r

        def syncthreads_or(self, val):
            t = threading.current_thread()
            r = t.syncthreads_or(val)
            t.epoch += 2
            return r

    return TracingModule


# --------------------------------------------------------------------------------------------- running blocks

@lru_cache(maxsize=None)
def _thread_class():
    from numba.cuda.simulator.kernel import BlockThread

    class TracedThread(BlockThread):
        """The simulator's thread plus what each record needs: linear block id and barrier epoch."""

        def __init__(self, target, manager, grid_point, block_point, blin, launch_ndim):
            super().__init__(target, manager, grid_point, block_point, False)
            self.blin = blin
            self.epoch = 0
            self.launch_ndim = launch_ndim

        def run(self):  # keep the original exception (BlockThread re-creates it with a thread prefix)
            try:
                threading.Thread.run(self)
            except Exception as e:  # noqa: BLE001 - reported by the block loop
                self.exception = (e, e.__traceback__)

    return TracedThread


def _run_block(fn: Callable, args: list, grid_dim: tuple, block_dim: tuple, grid_point: tuple, blin: int,
               launch_ndim: tuple[int, int]) -> None:
    """One block, scheduled exactly like the simulator's BlockManager, on threads that carry trace state."""
    from numba.cuda.simulator.kernel import BlockManager

    thread_class = _thread_class()
    manager = BlockManager(fn, grid_dim, block_dim, False)
    threads = []

    def target():
        fn(*args)

    for block_point in np.ndindex(*block_dim):
        t = thread_class(target, manager, grid_point, block_point, blin, launch_ndim)
        t.start()
        threads.append(t)
    # The simulator's scheduling loop (kernel.BlockManager.run): release a barrier when every live thread waits.
    live, blocked = set(threads), set()
    try:
        while live:
            for t in live:
                if t.syncthreads_blocked:
                    blocked.add(t)
                elif t.exception:
                    for other in threads:
                        other.abort = True
                        other.syncthreads_blocked = False
                        other.syncthreads_event.set()
                    raise _ThreadFailed(t)
            if live == blocked:
                for t in blocked:
                    t.syncthreads_blocked = False
                    t.syncthreads_event.set()
                blocked = set()
            live = {t for t in live if t.is_alive()}
        for t in threads:
            if t.exception:
                raise _ThreadFailed(t)
    except _ThreadFailed:
        for t in threads:  # let aborted threads finish before the real cuda module is put back
            t.join(timeout=1.0)
        raise


class _ThreadFailed(Exception):
    def __init__(self, thread):
        super().__init__()
        self.thread = thread


def _device_functions(fn: Callable, seen: set | None = None) -> list[tuple[dict, str, object, Callable]]:
    """(globals, name, dispatcher, py_func) for every compiled device function reachable from fn's globals."""
    seen = set() if seen is None else seen
    found = []
    for name in fn.__code__.co_names:
        value = fn.__globals__.get(name)
        py = getattr(value, "py_func", None)
        if py is None or id(value) in seen or not getattr(value, "targetoptions", {}).get("device", False):
            continue
        seen.add(id(value))
        found.append((fn.__globals__, name, value, py))
        found.extend(_device_functions(py, seen))
    return found


def _python_function(kernel: object) -> Callable:
    fn = python_function(kernel)
    if not inspect.isfunction(fn):
        raise TypeError(f"trace() needs a @cuda.jit kernel or its Python function, got {type(kernel).__name__}.")
    return fn


def _to_host(arg: object) -> tuple[np.ndarray | None, Callable[[], None] | None]:
    """(array the trace runs on, write-back after a successful run) for one kernel argument."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    if isinstance(arg, FakeCUDAArray):  # simulator device array: its memory is the NumPy array inside
        return arg._ary, None
    if isinstance(arg, np.ndarray) and arg.ndim > 0:
        work = np.array(arg, copy=True, order="K")  # like a launch: the kernel sees a device copy

        def back(arg=arg, work=work):
            arg[...] = work

        return work, back
    if hasattr(arg, "copy_to_host") and hasattr(arg, "__cuda_array_interface__"):  # real device array (GPU mode)
        work = arg.copy_to_host()

        def back(arg=arg, work=work):
            arg.copy_to_device(work)

        return work, back
    return None, None


def trace(kernel: object, griddim: Dims, blockdim: Dims, *args: object, names: list[str] | None = None,
          dynamic_shared_bytes: int = 0) -> "Trace":
    """Launch ``kernel[griddim, blockdim](*args)`` in the simulator, recording every memory access.

    The launch is first checked against real hardware limits (:func:`nbkit.core.launch.check_launch`); results
    are copied back into NumPy (and device) arguments as a normal launch would. ``names`` name the array
    arguments in reports (default: the kernel's parameter names). Works in simulator and GPU mode alike.
    Keep grids small: every simulated thread costs CPU time.
    """
    grid, block = check_launch(griddim, blockdim, kernel, dynamic_shared_bytes)
    fn = _python_function(kernel)
    params = list(inspect.signature(fn).parameters)
    if len(args) != len(params):
        raise TypeError(f"{fn.__name__} takes {len(params)} arguments ({', '.join(params)}), got {len(args)}.")
    if names is None:
        names = params
    elif len(names) != len(args):
        raise ValueError(f"names has {len(names)} entries for {len(args)} kernel arguments.")
    grid3 = tuple(grid) + (1,) * (3 - len(grid))
    block3 = tuple(block) + (1,) * (3 - len(block))

    from numba.cuda.simulator.kernel import FakeCUDAKernel, _push_kernel_context
    from numba.cuda.simulator.kernelapi import swapped_cuda_module

    rec = _Recorder()
    used_names: set = set()
    kernel_args, write_backs = [], []
    for name, arg in zip(names, args):
        work, back = _to_host(arg)
        if work is None:
            kernel_args.append(arg)
            continue
        used_names.add(name)
        info = ArrayInfo(name, "global", work.shape, work.dtype, work.strides, 0)
        kernel_args.append(_TracedArray(work, rec.add_array(info), rec))
        if back is not None:
            write_backs.append(back)

    module = _fake_module_class()(grid3, block3, dynamic_shared_bytes, rec, used_names)
    # In GPU mode device functions are compiled dispatchers: run their Python functions instead.
    swaps = [(g, name, old, FakeCUDAKernel(py, device=True)) for g, name, old, py in _device_functions(fn)
             if not isinstance(old, FakeCUDAKernel)]
    for g, name, _old, new in swaps:
        g[name] = new
    ndim = (len(grid), len(block))
    try:
        with _push_kernel_context(module), swapped_cuda_module(fn, module):
            for blin, grid_point in enumerate(np.ndindex(*grid3[::-1])):
                _run_block(fn, kernel_args, grid3, block3, grid_point[::-1], blin, ndim)
    except _ThreadFailed as failed:
        t, (exc, tb) = failed.thread, failed.thread.exception
        if rec.error is not None:
            raise TraceIndexError(rec.error) from None
        where = ""
        for frame, lineno in reversed(list(_walk_tb(tb))):
            if frame.f_code.co_filename != __file__:
                where = f" at {frame.f_code.co_filename}:{lineno} ({frame.f_code.co_name})"
                break
        raise TraceError(f"block {_fmt_dim(t.blockIdx, ndim[0])}, thread {_fmt_dim(t.threadIdx, ndim[1])} raised "
                         f"{type(exc).__name__}: {exc}{where}") from exc
    finally:
        for g, name, old, _new in swaps:
            g[name] = old
    for back in write_backs:
        back()
    return Trace(rec, grid3, block3, fn.__name__, ndim)


def _walk_tb(tb):
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


# --------------------------------------------------------------------------------------------- analysis

_REC_DTYPE = np.dtype([("block", np.int32), ("thread", np.int32), ("warp", np.int32), ("array", np.int16),
                       ("element", np.int64), ("op", np.int8), ("site", np.int32), ("epoch", np.int32),
                       ("seq", np.int64)])


@dataclass(frozen=True)
class Site:
    """One access site: a subscript in the source (file, line, function)."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.function}:{self.line}"


@dataclass(frozen=True)
class Request:
    """One warp-wide request: the n-th execution of one access site by the active lanes of one warp."""

    index: int
    space: str
    array: str
    op: str
    site: Site
    block: tuple[int, ...]
    warp: int
    n: int
    lanes: np.ndarray  # active lane ids (0-31), one per record
    elements: np.ndarray  # C-order flat element index accessed by each lane
    addresses: np.ndarray  # byte address of each lane's element
    itemsize: int

    def __repr__(self) -> str:
        return (f"Request({self.op} {self.array} at {self.site}, block {self.block}, warp {self.warp}, "
                f"execution {self.n}, {len(self.lanes)} lanes, elements {self.elements.min()}..{self.elements.max()})")

    @property
    def sectors(self) -> np.ndarray:
        """The distinct 32-byte sectors this request touches (global memory model)."""
        first = self.addresses // SECTOR_BYTES
        last = (self.addresses + self.itemsize - 1) // SECTOR_BYTES
        return np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)]))

    @property
    def bank_ways(self) -> int:
        """n-way bank conflict (shared memory model): most distinct 4-byte words asked of one bank."""
        words = _words(self.addresses, self.itemsize)
        words = np.unique(words)
        return int(np.bincount(words % BANKS, minlength=BANKS).max()) if words.size else 0


def _words(addresses: np.ndarray, itemsize: int) -> np.ndarray:
    per = max(1, -(-itemsize // BANK_BYTES))
    return (addresses[:, None] // BANK_BYTES + np.arange(per)[None, :]).ravel()


@dataclass(frozen=True)
class Race:
    """Two threads of one block touching the same shared element between the same pair of barriers."""

    array: str
    element: str  # e.g. "sA[0, 6]"
    block: tuple[int, ...]
    kind: str  # "read-after-write", "write-after-read" or "write-after-write" (in the simulator's order)
    first_thread: tuple[int, ...]
    first_op: str
    first_site: Site
    second_thread: tuple[int, ...]
    second_op: str
    second_site: Site
    epoch: int

    def __str__(self) -> str:
        verb = {"read": "reads", "write": "writes", "atomic": "atomically updates"}
        return (f"block {_tup(self.block)}: thread {_tup(self.second_thread)} {verb[self.second_op]} {self.element} "
                f"(line {self.second_site.line}) that thread {_tup(self.first_thread)} {verb[self.first_op]} "
                f"(line {self.first_site.line}) with no syncthreads between ({self.kind} hazard, "
                f"after {self.epoch} barrier(s))")


def _tup(t: tuple[int, ...]) -> str:
    return f"({t[0]})" if len(t) == 1 else str(tuple(t))


@dataclass
class WriteMap:
    """Who wrote each element of one array (linear block and thread ids; -1 = never written)."""

    array: str
    block: np.ndarray  # linear block id of the first writer, -1 if never written
    thread: np.ndarray  # linear thread id (within its block) of the first writer, -1 if never written
    writers: np.ndarray  # number of distinct threads that wrote the element

    @property
    def never_written(self) -> np.ndarray:
        return self.writers == 0

    @property
    def written_by_several(self) -> np.ndarray:
        return self.writers > 1


class Trace:
    """The recorded accesses of one launch and what follows from them (sectors, conflicts, races, maps).

    ``records`` is a NumPy structured array, one row per element access in the simulator's order: ``block``
    and ``thread`` (linear ids; :meth:`block_index` / :meth:`thread_index` give (x, y, z)), ``warp``
    (thread // 32), ``array`` (index into ``arrays``), ``element`` (C-order flat index), ``op`` (0 read,
    1 write, 2 atomic), ``site`` (index into ``sites``: one subscript in the source), ``epoch`` (barriers
    this thread had passed) and ``seq``.
    """

    def __init__(self, rec: _Recorder, grid: tuple[int, int, int], block: tuple[int, int, int], kernel_name: str,
                 launch_ndim: tuple[int, int]):
        self.arrays: list[ArrayInfo] = rec.arrays
        self.grid = grid
        self.block = block
        self.kernel_name = kernel_name
        self._ndim = launch_ndim
        self.sites: list[Site] = []
        self.records = self._build(rec)
        self._req: dict | None = None

    # ---- construction
    def _build(self, rec: _Recorder) -> np.ndarray:
        log = rec.log
        if not log:
            return np.zeros(0, dtype=_REC_DTYPE)
        blk, tid, aid, idx, op, code, lasti, epoch = zip(*log)
        logged_aid = np.array(aid, dtype=np.int64)
        aid = logged_aid.copy()
        # element numbers, per traced array (views map through their flat-index table to their array)
        flat = np.zeros(len(log), dtype=np.int64)
        owner_rows = []
        flats = []
        for a in np.unique(logged_aid):
            rows = np.flatnonzero(logged_aid == a)
            if a >= 0:
                f, own = _flat_indices([idx[r] for r in rows], self.arrays[a].shape)
            else:
                base, fm = rec.views[int(a)]
                f, own = _flat_indices([idx[r] for r in rows], fm.shape)
                f = fm.ravel()[f]
                aid[rows] = base
            owner_rows.append(rows[own])
            flats.append(f)
        rows = np.concatenate(owner_rows)
        flat = np.concatenate(flats)
        order = np.argsort(rows, kind="stable")  # back to the order of the log (slice writes expand in place)
        rows, flat = rows[order], flat[order]
        out = np.zeros(len(rows), dtype=_REC_DTYPE)
        out["block"] = np.array(blk, dtype=np.int32)[rows]
        out["thread"] = np.array(tid, dtype=np.int32)[rows]
        out["warp"] = out["thread"] // WARP_SIZE
        out["array"] = aid[rows]
        out["element"] = flat
        out["op"] = np.array(op, dtype=np.int8)[rows]
        out["epoch"] = np.array(epoch, dtype=np.int32)[rows]
        out["seq"] = np.arange(len(rows))
        # Sites on one line are separate instructions (e.g. `A[k, r] if t else A[r, k]`): keep them apart.
        # A specialised instruction reports an offset inside its inline cache: map it to the instruction.
        keys = list(zip(code, lasti))
        site_of: dict = {}
        by_instruction: dict = {}
        for c, off in set(keys):
            start = _instruction_start(c, off)
            sid = by_instruction.get((c, start))
            if sid is None:
                sid = by_instruction[(c, start)] = len(self.sites)
                self.sites.append(Site(c.co_filename, _line_of(c, start), c.co_name))
            site_of[(c, off)] = sid
        # number sites in source order, so summaries and ids are stable from run to run
        order_sites = sorted(range(len(self.sites)), key=lambda k: (self.sites[k].file, self.sites[k].line, k))
        renumber = {old: new for new, old in enumerate(order_sites)}
        self.sites = [self.sites[k] for k in order_sites]
        site_ids = np.fromiter(map(site_of.__getitem__, keys), dtype=np.int64, count=len(keys))
        out["site"] = np.array([renumber[k] for k in range(len(renumber))], dtype=np.int64)[site_ids][rows]
        return out

    # ---- names and ids
    def array_id(self, array: str) -> int:
        for i, info in enumerate(self.arrays):
            if info.name == array:
                return i
        raise KeyError(f"no traced array named {array!r}; traced arrays: {', '.join(a.name for a in self.arrays)}")

    def array_info(self, array: str) -> ArrayInfo:
        return self.arrays[self.array_id(array)]

    def block_index(self, blin: int) -> tuple[int, ...]:
        """Linear block id -> (x, y, z) trimmed to the launch's grid dimensions."""
        x = blin % self.grid[0]
        y = (blin // self.grid[0]) % self.grid[1]
        z = blin // (self.grid[0] * self.grid[1])
        return (x, y, z)[:self._ndim[0]]

    def thread_index(self, tlin: int) -> tuple[int, ...]:
        """Linear thread id within a block -> (x, y, z) trimmed to the launch's block dimensions."""
        x = tlin % self.block[0]
        y = (tlin // self.block[0]) % self.block[1]
        z = tlin // (self.block[0] * self.block[1])
        return (x, y, z)[:self._ndim[1]]

    def _block_lin(self, b: int | Iterable[int]) -> int:
        if isinstance(b, (int, np.integer)):
            return int(b)
        b = tuple(b) + (0,) * (3 - len(tuple(b)))
        return b[0] + self.grid[0] * (b[1] + self.grid[1] * b[2])

    def _thread_lin(self, t: int | Iterable[int]) -> int:
        if isinstance(t, (int, np.integer)):
            return int(t)
        t = tuple(t) + (0,) * (3 - len(tuple(t)))
        return t[0] + self.block[0] * (t[1] + self.block[1] * t[2])

    def _mask(self, space: str | None = None, array: str | None = None, op: str | None = None) -> np.ndarray:
        r = self.records
        m = np.ones(len(r), dtype=bool)
        if space is not None:
            if space not in SPACES:
                raise ValueError(f"space must be one of {SPACES}, got {space!r}")
            in_space = np.array([a.space == space for a in self.arrays] + [False], dtype=bool)
            m &= in_space[r["array"]]
        if array is not None:
            m &= r["array"] == self.array_id(array)
        if op is not None:
            if op not in OPS:
                raise ValueError(f"op must be one of {OPS}, got {op!r}")
            m &= r["op"] == OPS.index(op)
        return m

    # ---- warp requests
    def _requests_table(self) -> dict:
        """Per record: request id; per request: metrics. Built once, vectorised."""
        if self._req is not None:
            return self._req
        r = self.records
        nrec = len(r)
        # n-th execution of (site, array, op) by each thread
        order = np.lexsort((r["seq"], r["op"], r["array"], r["site"], r["thread"], r["block"]))
        keys = np.stack([r["block"], r["thread"], r["site"], r["array"], r["op"]], axis=1)[order]
        new = np.ones(nrec, dtype=bool)
        if nrec:
            new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
        start = np.maximum.accumulate(np.where(new, np.arange(nrec), 0))
        nth = np.empty(nrec, dtype=np.int64)
        nth[order] = np.arange(nrec) - start
        # request = (block, warp, site, array, op, n)
        rkeys = np.stack([r["block"], r["warp"], r["site"], r["array"], r["op"], nth], axis=1)
        order2 = np.lexsort(rkeys.T[::-1])
        sk = rkeys[order2]
        new2 = np.ones(nrec, dtype=bool)
        if nrec:
            new2[1:] = np.any(sk[1:] != sk[:-1], axis=1)
        rid_sorted = np.cumsum(new2) - 1
        rid = np.empty(nrec, dtype=np.int64)
        rid[order2] = rid_sorted
        nreq = int(rid_sorted[-1] + 1) if nrec else 0
        first = order2[new2]  # one record per request (its smallest key)
        # addresses
        addr = np.zeros(nrec, dtype=np.int64)
        itemsize = np.zeros(nrec, dtype=np.int64)
        for aid, info in enumerate(self.arrays):
            sel = r["array"] == aid
            if sel.any():
                addr[sel] = info.addresses(r["element"][sel])
                itemsize[sel] = info.itemsize
        # sectors: each element touches sectors first..last (itemsize <= 32 and aligned: exactly one)
        s_first = addr // SECTOR_BYTES
        s_last = (addr + itemsize - 1) // SECTOR_BYTES
        span = int((s_last - s_first).max()) + 1 if nrec else 1
        sec_req = np.concatenate([rid] * span)
        sec_id = np.concatenate([np.minimum(s_first + k, s_last) for k in range(span)])
        sectors = _count_distinct_per_group(sec_req, sec_id, nreq)
        used = _count_distinct_per_group(rid, addr, nreq) * itemsize[first]  # one array, one itemsize per request
        # banks: distinct 4-byte words per (request, bank), max over banks
        wper = int(max(1, -(-itemsize.max() // BANK_BYTES))) if nrec else 1
        w_req = np.concatenate([rid] * wper)
        w_id = np.concatenate([addr // BANK_BYTES + np.minimum(k, np.maximum((itemsize + 3) // 4 - 1, 0))
                               for k in range(wper)])
        ways = np.zeros(nreq, dtype=np.int64)
        if nrec:
            pairs = np.unique(np.stack([w_req, w_id], axis=1), axis=0)
            rb = np.unique(np.stack([pairs[:, 0], pairs[:, 1] % BANKS], axis=1), axis=0, return_counts=True)
            np.maximum.at(ways, rb[0][:, 0], rb[1])
        spaces = np.array([SPACES.index(a.space) for a in self.arrays] + [0])
        self._req = {
            "rid": rid, "addr": addr, "count": nreq,
            "block": r["block"][first], "warp": r["warp"][first], "site": r["site"][first],
            "array": r["array"][first], "op": r["op"][first], "n": nth[first],
            "space": spaces[r["array"][first]] if nrec else np.zeros(0, dtype=np.int64),
            "lanes": np.bincount(rid, minlength=nreq),
            "sectors": sectors, "bytes_used": used, "ways": ways,
        }
        return self._req

    def _req_mask(self, space: str | None, array: str | None, op: str | None) -> np.ndarray:
        q = self._requests_table()
        m = np.ones(q["count"], dtype=bool)
        if space is not None:
            if space not in SPACES:
                raise ValueError(f"space must be one of {SPACES}, got {space!r}")
            m &= q["space"] == SPACES.index(space)
        if array is not None:
            m &= q["array"] == self.array_id(array)
        if op is not None:
            if op not in OPS:
                raise ValueError(f"op must be one of {OPS}, got {op!r}")
            m &= q["op"] == OPS.index(op)
        return m

    def requests(self, space: str | None = None, array: str | None = None, op: str | None = None) -> list[Request]:
        """The warp-wide requests, optionally only of one space ('global'/'shared'), array or op."""
        q = self._requests_table()
        ids = np.flatnonzero(self._req_mask(space, array, op))
        order = np.argsort(q["rid"], kind="stable")
        bounds = np.searchsorted(q["rid"][order], np.arange(q["count"] + 1))
        r = self.records
        out = []
        for i in ids:
            recs = order[bounds[i]:bounds[i + 1]]
            info = self.arrays[int(q["array"][i])]
            lane_order = np.argsort(r["thread"][recs] % WARP_SIZE, kind="stable")
            recs = recs[lane_order]
            out.append(Request(int(i), info.space, info.name, OPS[int(q["op"][i])], self.sites[int(q["site"][i])],
                               self.block_index(int(q["block"][i])), int(q["warp"][i]), int(q["n"][i]),
                               r["thread"][recs] % WARP_SIZE, r["element"][recs], q["addr"][recs], info.itemsize))
        return out

    def sectors_per_request(self, array: str | None = None, op: str | None = None) -> np.ndarray:
        """32-byte sectors touched by each global-memory warp request (4 for 32 consecutive float32)."""
        return self._requests_table()["sectors"][self._req_mask("global", array, op)]

    def bytes_used(self, space: str = "global", array: str | None = None, op: str | None = None) -> int:
        """Bytes the lanes asked for (each distinct element of a request counted once)."""
        return int(self._requests_table()["bytes_used"][self._req_mask(space, array, op)].sum())

    def bytes_moved(self, array: str | None = None, op: str | None = None) -> int:
        """Bytes of global memory moved: 32 per sector per request (caches not modelled)."""
        return int(self.sectors_per_request(array, op).sum()) * SECTOR_BYTES

    def efficiency(self, array: str | None = None, op: str | None = None) -> float:
        """bytes_used / bytes_moved of global requests: 1.0 when every byte moved was wanted."""
        moved = self.bytes_moved(array, op)
        return self.bytes_used("global", array, op) / moved if moved else float("nan")

    def bank_conflicts(self, array: str | None = None, op: str | None = None) -> np.ndarray:
        """n-way conflict of each shared-memory warp request (1 = conflict-free; a broadcast counts once)."""
        return self._requests_table()["ways"][self._req_mask("shared", array, op)]

    # ---- maps
    def reads_per_element(self, array: str, block: int | tuple | None = None) -> np.ndarray:
        """How many times each element was read (atomics count as reads too), shaped like the array."""
        info = self.array_info(array)
        m = self._mask(array=array) & (self.records["op"] != _WRITE)
        if block is not None:
            m &= self.records["block"] == self._block_lin(block)
        return np.bincount(self.records["element"][m], minlength=info.size).reshape(info.shape)

    def write_map(self, array: str, block: int | tuple | None = None) -> WriteMap:
        """Which thread wrote each element; elements never written or written by several threads are marked."""
        info = self.array_info(array)
        r = self.records
        m = self._mask(array=array) & (r["op"] != _READ)
        if block is not None:
            m &= r["block"] == self._block_lin(block)
        el, blk, th = r["element"][m], r["block"][m], r["thread"][m]
        first_block = np.full(info.size, -1, dtype=np.int64)
        first_thread = np.full(info.size, -1, dtype=np.int64)
        rev = slice(None, None, -1)  # assign in reverse order so the first writer wins
        first_block[el[rev]] = blk[rev]
        first_thread[el[rev]] = th[rev]
        writers = np.zeros(info.size, dtype=np.int64)
        if el.size:
            uniq = np.unique(np.stack([el, blk.astype(np.int64), th.astype(np.int64)], axis=1), axis=0)
            writers = np.bincount(uniq[:, 0], minlength=info.size)
        return WriteMap(array, first_block.reshape(info.shape), first_thread.reshape(info.shape),
                        writers.reshape(info.shape))

    def read_map(self, array: str, thread: tuple) -> np.ndarray:
        """How many times one thread read each element; ``thread`` = (block, thread), each an int or (x, y, z)."""
        info = self.array_info(array)
        b, t = thread
        r = self.records
        m = (self._mask(array=array) & (r["op"] != _WRITE) & (r["block"] == self._block_lin(b))
             & (r["thread"] == self._thread_lin(t)))
        return np.bincount(r["element"][m], minlength=info.size).reshape(info.shape)

    # ---- races
    def races(self) -> list[Race]:
        """Shared-memory hazards: two threads of a block on one element between the same barriers, one writing.

        One entry per (block, element, barrier epoch), naming the first conflicting pair in the simulator's
        order. The simulator runs threads in its own order, so a kernel can give the right answer there and
        still race on a GPU; this is what compute-sanitizer racecheck reports there.
        """
        r = self.records
        shared = self._mask(space="shared")
        if not shared.any():
            return []
        q = self._requests_table()
        addr = q["addr"]
        idx = np.flatnonzero(shared)
        keys = np.stack([r["block"][idx], r["epoch"][idx], addr[idx]], axis=1)
        order = np.lexsort((r["seq"][idx], keys[:, 2], keys[:, 1], keys[:, 0]))
        idx, keys = idx[order], keys[order]
        new = np.ones(len(idx), dtype=bool)
        new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], len(idx))
        # groups worth a look: a plain write, or an atomic and a plain read; and at least two threads
        gid = np.cumsum(new) - 1
        ops = r["op"][idx]
        has = {}
        for code in (_READ, _WRITE, _ATOMIC):
            has[code] = np.zeros(len(starts), dtype=bool)
            np.logical_or.at(has[code], gid, ops == code)
        has_write = has[_WRITE] | (has[_ATOMIC] & has[_READ])
        tmin = np.full(len(starts), np.iinfo(np.int32).max)
        tmax = np.full(len(starts), -1)
        np.minimum.at(tmin, gid, r["thread"][idx])
        np.maximum.at(tmax, gid, r["thread"][idx])
        out = []
        for g in np.flatnonzero(has_write & (tmin != tmax)):
            group = idx[starts[g]:ends[g]]
            pair = _first_hazard(r["thread"][group], r["op"][group])
            if pair is None:
                continue
            a, b = group[pair[0]], group[pair[1]]
            info = self.arrays[int(r["array"][b])]
            oa, ob = OPS[int(r["op"][a])], OPS[int(r["op"][b])]
            kind = ("write-after-write" if oa != "read" and ob != "read"
                    else "read-after-write" if oa != "read" else "write-after-read")
            out.append(Race(info.name, info.label(int(r["element"][b])), self.block_index(int(r["block"][b])), kind,
                            self.thread_index(int(r["thread"][a])), oa, self.sites[int(r["site"][a])],
                            self.thread_index(int(r["thread"][b])), ob, self.sites[int(r["site"][b])],
                            int(r["epoch"][b])))
        return out

    # ---- report
    def summary(self) -> str:
        """One line per access site: requests, sectors/request, bytes used/moved, bank conflicts."""
        q = self._requests_table()
        rows = []
        groups: dict = {}
        for i in range(q["count"]):
            groups.setdefault((int(q["site"][i]), int(q["array"][i]), int(q["op"][i])), []).append(i)
        header = (f"{'array':<10} {'space':<6} {'op':<6} {'site':<28} {'requests':>8} {'lanes/req':>9} "
                  f"{'sectors/req':>11} {'bytes used':>10} {'bytes moved':>11} {'ways':>6}")
        rows.append(header)
        rows.append("-" * len(header))
        for (site, aid, op), ids in sorted(groups.items(), key=lambda kv: (self.sites[kv[0][0]].line, kv[0][1])):
            ids = np.array(ids)
            info = self.arrays[aid]
            lanes = q["lanes"][ids].mean()
            used = int(q["bytes_used"][ids].sum())
            if info.space == "global":
                spr = f"{q['sectors'][ids].mean():.2f}"
                moved = str(int(q["sectors"][ids].sum()) * SECTOR_BYTES)
                ways = "-"
            else:
                spr, moved = "-", "-"
                ways = f"{q['ways'][ids].max()}-way"
            rows.append(f"{info.name:<10} {info.space:<6} {OPS[op]:<6} {str(self.sites[site]):<28} {len(ids):>8} "
                        f"{lanes:>9.1f} {spr:>11} {used:>10} {moved:>11} {ways:>6}")
        g = self._req_mask("global", None, None)
        if g.any():
            moved = int(q["sectors"][g].sum()) * SECTOR_BYTES
            rows.append(f"global memory: {int(q['bytes_used'][g].sum())} bytes used of {moved} moved "
                        f"({int(q['bytes_used'][g].sum()) / moved:.0%} efficiency; MODEL: no caches)")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"<Trace of {self.kernel_name}: grid {self.grid}, block {self.block}, {len(self.records)} accesses, "
                f"arrays {', '.join(a.name for a in self.arrays)}>")


def _first_hazard(threads: np.ndarray, ops: np.ndarray) -> tuple[int, int] | None:
    """First (earlier, later) pair of accesses by different threads with a write and not both atomic."""
    n = len(threads)
    for j in range(1, n):
        for i in range(j):
            if threads[i] == threads[j]:
                continue
            if ops[i] == _READ and ops[j] == _READ:
                continue
            if ops[i] == _ATOMIC and ops[j] == _ATOMIC:
                continue
            return i, j
    return None


def _count_distinct_per_group(group: np.ndarray, value: np.ndarray, ngroups: int) -> np.ndarray:
    if group.size == 0:
        return np.zeros(ngroups, dtype=np.int64)
    pairs = np.unique(np.stack([group.astype(np.int64), value.astype(np.int64)], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=ngroups)


@lru_cache(maxsize=256)
def _instruction_offsets(code) -> tuple[int, ...]:
    return tuple(ins.offset for ins in dis.get_instructions(code))


def _instruction_start(code, offset: int) -> int:
    offsets = _instruction_offsets(code)
    i = bisect.bisect_right(offsets, offset) - 1
    return offsets[i] if i >= 0 else offset


def _line_of(code, offset: int) -> int:
    for start, end, line in code.co_lines():
        if start <= offset < end and line is not None:
            return line
    return code.co_firstlineno

