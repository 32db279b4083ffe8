"""Recording: the proxies a traced kernel sees instead of its arrays, the log they append to, and what a record
names (an array, a source site).

Why: the hot path of tracing is one element access of one simulated thread; it must stay a NumPy access plus
one tuple appended to a list. Everything else (element numbers, sites, requests) is worked out afterwards,
vectorised, by :mod:`nbkit.tracer.analysis`.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from nbkit.core.fibers import current_thread
from nbkit.tracer.memory import ATOMIC, READ, WRITE


class TraceError(RuntimeError):
    """A kernel raised while being traced; the message names the block and thread."""


class TraceIndexError(TraceError, IndexError):
    """An out-of-bounds access under the tracer; the message names the thread, array, index and shape."""


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


@dataclass(frozen=True)
class Site:
    """One access site: a subscript in the source (file, line, function)."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.function}:{self.line}"


class Recorder:
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
        # per thread (block, thread, ((site, line), ...) of its barriers, line it left the kernel on or None)
        self.barriers: list[tuple] = []
        self.return_lines: frozenset[int] = frozenset()  # lines of the kernel's return statements
        # (linear block, linear thread) -> serials (in its warp) of the cuda.syncwarp() meetings it passed, in order
        self.syncwarps: dict[tuple[int, int], list[int]] = {}

    def add_array(self, info: ArrayInfo) -> int:
        self.arrays.append(info)
        return len(self.arrays) - 1

    def add_view(self, aid: int, flatmap: np.ndarray) -> int:
        """Register a sub-array a kernel sliced out; its records carry a negative array id."""
        vid = -next(self._view_ids)
        self.views[vid] = (aid, flatmap)
        return vid


def fmt_dim(d: Iterable[int], ndim: int) -> str:
    d = tuple(int(v) for v in d)[:max(ndim, 1)]
    return f"({d[0]})" if len(d) == 1 else str(d)


_getframe = sys._getframe
_current_thread = current_thread


class TracedArray:
    """A kernel's view of one array: records each element access, then forwards it to NumPy."""

    __slots__ = ("_a", "_aid", "_rec", "_log", "_base", "_flatmap")

    def __init__(self, a: np.ndarray, aid: int, rec: Recorder, flatmap: np.ndarray | None = None):
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
        self._log((t.blin, t.thread_id, self._aid, idx, READ, f.f_code, f.f_lasti, t.epoch, t.wsync))
        return v

    def __setitem__(self, idx: Any, value: Any) -> None:
        try:
            self._a[idx] = value
        except IndexError as exc:
            self._fail(idx, exc)
        f = _getframe(1)
        t = _current_thread()
        self._log((t.blin, t.thread_id, self._aid, idx, WRITE, f.f_code, f.f_lasti, t.epoch, t.wsync))

    def _atomic(self, index: Any, update: Callable[[np.ndarray, Any], Any], frame) -> Any:
        """Run ``update(ndarray, index)`` (the simulator's own locked atomic) and record one atomic access."""
        try:
            old = update(self._a, index)
        except IndexError as exc:
            self._fail(index, exc, frame)
        t = _current_thread()
        self._log((t.blin, t.thread_id, self._aid, index, ATOMIC, frame.f_code, frame.f_lasti, t.epoch, t.wsync))
        return old

    def _view(self, idx: Any, v: np.ndarray) -> "TracedArray":
        fm = self._flatmap
        if fm is None:
            fm = np.arange(self._a.size, dtype=np.int64).reshape(self._a.shape)
        return TracedArray(v, self._base, self._rec, fm[idx])

    def _fail(self, idx: Any, exc: BaseException, caller=None) -> None:
        t = _current_thread()
        info = self._rec.arrays[self._base]
        shown = idx if isinstance(idx, tuple) else (idx,)
        name = info.name if self._flatmap is None else f"{info.name}(view)"
        where = f"{name}[{', '.join(str(i) for i in shown)}]"
        caller = caller or sys._getframe(2)
        line = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        grid = getattr(t, "launch_ndim", (3, 3))
        who = (f"block {fmt_dim(t.blockIdx, grid[0])}, thread {fmt_dim(t.threadIdx, grid[1])}"
               if hasattr(t, "blockIdx") else "a thread")
        msg = f"{who} accessed {where} at {line}: {exc}. {info.name} has shape {tuple(self._a.shape)} ({info.space} memory)."
        if "out of bounds" in str(exc):
            msg += " On a GPU this access would read or corrupt memory silently; add or fix the bounds guard."
        if self._rec.error is None:
            self._rec.error = msg
        raise TraceIndexError(msg) from None


def flat_indices(indices: list, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
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
