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

import numpy as np

from nbkit.core import simulator
from nbkit.tracer.memory import DYNAMIC_SHARED_BASE
from nbkit.tracer.record import ArrayInfo, Recorder, TracedArray

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
    """``cuda.shared.array``: one traced array per declaration site, like the simulator's own."""

    def __init__(self, inner, rec: Recorder, used_names: set):
        self._inner = inner
        self._rec = rec
        self._sites: dict = {}
        self._lock = threading.Lock()
        self._used = used_names

    def array(self, shape, dtype, alignment=None):
        if alignment is not None:  # numba-cuda's message; numba's own simulator has no alignment argument at all
            raise RuntimeError("Array alignment is not supported in cudasim")
        caller = sys._getframe(1)
        key = (caller.f_code, caller.f_lineno)  # like the simulator: one array per declaring line
        with self._lock:
            proxy = self._sites.get(key)
            if proxy is None:
                dynamic = shape == 0 or shape == (0,)
                if dynamic:  # the simulator's one dynamic buffer, viewed with this dtype
                    raw = self._inner.array(shape, dtype)
                else:  # not the simulator's: it keys arrays by its caller's line, which would be ours
                    raw = np.empty(shape, simulator.as_dtype(dtype))
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
        self._rec = rec
        self._shared = TracingShared(self._shared, rec, used_names)
        self._atomic = TracingAtomic(self._atomic)

    def syncthreads(self):
        t = threading.current_thread()
        t.syncthreads()
        t.epoch += 1

    def syncwarp(self, mask=0xFFFFFFFF):
        """The simulator's syncwarp (nbkit.core.warp), remembered: it orders memory among the lanes that met there."""
        t = threading.current_thread()
        serial = simulator.warp_sync(mask)
        self._rec.syncwarps.setdefault((t.blin, t.thread_id), []).append(serial)
        t.wsync += 1

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
