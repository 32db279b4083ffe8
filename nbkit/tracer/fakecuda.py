"""The ``cuda`` module a traced kernel sees: the simulator's own, with traced shared memory and atomics and
counted barriers (``syncthreads`` and ``syncwarp``). Warp shuffles and votes are the simulator's (installed by
:func:`nbkit.core.simulator.install_warp_intrinsics`): they exchange registers, not memory, so they are not recorded.

Why a subclass of the simulator's fake module: everything else a kernel uses (threadIdx, grid(), math, ...)
must behave exactly as in a plain simulator run. Importing this module loads the simulator (through
:mod:`nbkit.core.simulator`); :func:`nbkit.tracer.trace` imports it on first use.
"""

from __future__ import annotations

import linecache
import re
import sys
import threading

from nbkit.core import simulator
from nbkit.tracer.memory import DYNAMIC_SHARED_BASE
from nbkit.tracer.record import ArrayInfo, Recorder, TracedArray

simulator.harden()  # local arrays poisoned, dynamic shared memory poisoned per block (also in GPU mode)
simulator.install_warp_intrinsics()  # the tracer runs on the simulator in GPU mode too

_SHARED_NAME = re.compile(r"(\w+)\s*(?::[^=]+)?=\s*cuda\.shared\.array\b")


class TracingAtomic:
    """``cuda.atomic.*``: on a traced array, one atomic record; otherwise the simulator's atomic."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name: str):
        op = getattr(self._inner, name)

        def atomic(array, *args):
            if isinstance(array, TracedArray):
                frame = sys._getframe(1)
                if name in ("compare_and_swap",):
                    index = (0,) * array.ndim
                    return array._atomic(index, lambda a, _i: op(a, *args), frame)
                return array._atomic(args[0], lambda a, i: op(a, i, *args[1:]), frame)
            return op(array, *args)

        return atomic


class TracingShared:
    """``cuda.shared.array``: one traced array per declaration site, poisoned afresh for every block.

    Uninitialised shared memory holds NaN (floats) or a sentinel (:func:`nbkit.core.simulator.poison_value`), as
    in nbkit's simulator, so a kernel that reads what no thread wrote computes with it here too.
    """

    def __init__(self, inner, rec: Recorder, used_names: set):
        self._inner = inner
        self._rec = rec
        self._sites: dict = {}
        self._blocks: dict = {}  # declaration site -> the linear block id its memory was last poisoned for
        self._lock = threading.Lock()
        self._used = used_names

    def array(self, shape, dtype, alignment=None):
        if alignment is not None:  # numba-cuda's message; numba's own simulator has no alignment argument at all
            raise RuntimeError("Array alignment is not supported in cudasim")
        caller = sys._getframe(1)
        key = (caller.f_code, caller.f_lineno)  # like the simulator: one array per declaring line
        blin = simulator.current_thread().blin
        dynamic = shape == 0 or shape == (0,)
        with self._lock:
            proxy = self._sites.get(key)
            if proxy is not None and self._blocks[key] != blin:  # a new block: its shared memory starts poisoned
                self._blocks[key] = blin
                if dynamic:
                    self._inner.array(0, dtype)  # the (hardened) simulator poisons its buffer once per block
                else:
                    proxy._a[...] = simulator.poisoned(proxy._a.shape, proxy._a.dtype)
            if proxy is None:
                self._blocks[key] = blin
                if dynamic:  # the simulator's one dynamic buffer, viewed with this dtype
                    raw = self._inner.array(0, dtype)
                else:  # not the simulator's: it keys arrays by its caller's line, which would be ours
                    raw = simulator.poisoned(shape, dtype)
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
                proxy = TracedArray(raw, self._rec.add_array(info), self._rec)
                self._sites[key] = proxy
        return proxy


class TracingModule(simulator.internals().FakeCUDAModule):
    """The simulator's fake ``cuda`` module with traced shared memory, atomics and counted barriers."""

    def __init__(self, grid_dim, block_dim, dynshared_size, rec: Recorder, used_names: set):
        super().__init__(grid_dim, block_dim, dynshared_size)
        self.barrier_log = rec.barriers  # the runner appends each thread's barrier summary
        self._rec = rec
        self._shared = TracingShared(self._shared, rec, used_names)
        self._atomic = TracingAtomic(self._atomic)

    # Each barrier call notes its call site on the thread: the runner compares them across the block (divergence).
    def syncthreads(self):
        t = simulator.current_thread()
        _arrive(t)
        t.syncthreads()
        t.epoch += 1

    def syncwarp(self, mask=0xFFFFFFFF):
        """The simulator's syncwarp (nbkit.core.warp), remembered: it orders memory among the lanes that met there."""
        t = simulator.current_thread()
        serial = simulator.warp_sync(mask)
        self._rec.syncwarps.setdefault((t.blin, t.thread_id), []).append(serial)
        t.wsync += 1

    def syncthreads_count(self, val):
        t = simulator.current_thread()
        _arrive(t)
        r = t.syncthreads_count(val)
        t.epoch += 2
        return r

    def syncthreads_and(self, val):
        t = simulator.current_thread()
        _arrive(t)
        r = t.syncthreads_and(val)
        t.epoch += 2
        return r

    def syncthreads_or(self, val):
        t = simulator.current_thread()
        _arrive(t)
        r = t.syncthreads_or(val)
        t.epoch += 2
        return r


def _arrive(t) -> None:
    """Note the call site of the barrier thread ``t`` is about to wait at (the caller of the cuda.* method)."""
    f = sys._getframe(2)
    t.barriers.append(((f.f_code, f.f_lineno), f.f_lineno))  # by line: specialised code may move instruction offsets
