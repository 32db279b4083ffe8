"""Simulated CUDA threads as greenlets: one OS thread runs a whole block, switching threads only at barriers.

Why: numba's CUDA simulator starts one OS thread per CUDA thread. Measured here (2-core VM, 2026-11-30), that costs
about 165 µs per CUDA thread, nearly all of it in starting the thread and handing the GIL back and forth, while
the kernel body of a course kernel takes a few µs; a training step of notebook 07's 2-8-2 network spent 14.2 of
15.6 s there. A greenlet (the ``greenlet`` package: a stack that can be suspended and resumed) costs about 1 µs
per switch.

How a block runs (:func:`run_block`), as the simulator's own ``BlockManager.run`` decides: every thread runs until
it waits (at ``cuda.syncthreads()``, or in a warp intrinsic) or ends; when every live thread waits at a barrier,
the barrier opens; a thread that raised stops the block and the others are aborted. Threads are resumed in order
(thread (0, 0, 0) first, x fastest), so a launch is deterministic: the first failing thread is always the same,
and a race shows the same wrong result on every run. The simulator's OS threads could interleave at any bytecode,
so a racy kernel's result varied between runs; the course finds races with the tracer (:mod:`nbkit.tracer`),
which records every access, not by hoping a run goes wrong.

:func:`current_thread` replaces ``threading.current_thread()`` wherever a simulated thread asks who it is: in the
simulators' fake ``cuda`` module (``kernelapi``), patched by :func:`install`, and in nbkit's own code.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np
from greenlet import getcurrent, greenlet

__all__ = ["Fiber", "current_thread", "pause", "run_block", "install"]


def current_thread() -> Any:
    """The simulated thread running now (a :class:`Fiber`), else ``threading.current_thread()``."""
    thread = getattr(getcurrent(), "sim_thread", None)
    return thread if thread is not None else threading.current_thread()


def in_fiber() -> bool:
    """Whether the caller runs inside a simulated thread of :func:`run_block`."""
    return getattr(getcurrent(), "sim_thread", None) is not None


def pause() -> None:
    """Suspend the calling simulated thread until its block's scheduler resumes it (the next round)."""
    getcurrent().parent.switch()


class Fiber:
    """One simulated CUDA thread: what the simulator's ``BlockThread`` offers the fake ``cuda`` module
    (``threadIdx``, ``blockIdx``, ``thread_id``, the barriers, the abort flag), run by :func:`run_block` on a
    greenlet instead of an OS thread. Subclasses say what :meth:`body` runs and how :meth:`run` keeps an error."""

    def __init__(self, manager: Any, block_idx: tuple, thread_idx: tuple, dim3: type) -> None:
        self._manager = manager
        self.blockIdx = dim3(*block_idx)
        self.threadIdx = dim3(*thread_idx)
        bx, by, _ = manager._block_dim
        self.thread_id = thread_idx[0] + bx * (thread_idx[1] + by * thread_idx[2])
        self.syncthreads_blocked = False
        self.abort = False
        self.exception: tuple[BaseException, Any] | None = None
        self._greenlet: greenlet | None = None

    def body(self) -> None:
        """The kernel, as this thread runs it."""
        raise NotImplementedError

    def run(self) -> None:
        """Run :meth:`body`; an exception is kept in ``self.exception`` for the scheduler."""
        try:
            self.body()
        except Exception as e:  # noqa: BLE001 - handed to the scheduler
            self.exception = (e, e.__traceback__)

    def is_alive(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def syncthreads(self) -> None:
        """``cuda.syncthreads()``: wait until every live thread of the block waits at a barrier."""
        if self.abort:
            raise RuntimeError("abort flag set on syncthreads call")
        self.syncthreads_blocked = True
        pause()
        if self.abort:
            raise RuntimeError("abort flag set on syncthreads clear")

    def _vote(self, value: object) -> np.ndarray:
        """The block's values of a ``syncthreads_count/and/or``, once every thread has given its own."""
        state = self._manager.block_state
        state[self.threadIdx.x, self.threadIdx.y, self.threadIdx.z] = value
        self.syncthreads()
        votes = state.copy()
        self.syncthreads()  # nobody overwrites the block's values before every thread has read them
        return votes

    def syncthreads_count(self, value: object) -> int:
        return int(np.count_nonzero(self._vote(value)))

    def syncthreads_and(self, value: object) -> int:
        return 1 if np.all(self._vote(value)) else 0

    def syncthreads_or(self, value: object) -> int:
        return 1 if np.any(self._vote(value)) else 0

    def __str__(self) -> str:
        return "Thread <<<%s, %s>>>" % (self.blockIdx, self.threadIdx)


def run_block(threads: list[Fiber], failure: Callable[[Fiber], BaseException]) -> None:
    """Run one block's threads to the end; raise ``failure(thread)`` for the first thread that raised (the
    others are aborted first: each raises at its barrier and ends). An interrupt (Ctrl-C in a notebook) that
    arrives while a thread runs also ends the others before it propagates."""
    for t in threads:
        g = t._greenlet = greenlet(t.run)
        g.sim_thread = t
    live = threads
    while live:
        waiting = []
        for t in live:
            if not t.syncthreads_blocked:
                try:
                    t._greenlet.switch()
                except BaseException:  # not an error of the kernel's (those are kept): Ctrl-C, for one
                    _abort(threads)
                    raise
                if t.exception is not None:
                    _abort(threads)
                    raise failure(t)
                if t._greenlet.dead:
                    continue
            waiting.append(t)
        if waiting and all(t.syncthreads_blocked for t in waiting):  # every live thread is at a barrier
            for t in waiting:
                t.syncthreads_blocked = False
        live = waiting


def _abort(threads: list[Fiber]) -> None:
    """Stop the block's other threads: each one waiting raises at its barrier (or warp intrinsic) and ends."""
    for t in threads:
        t.abort = True
    for t in threads:
        g = t._greenlet
        if g is not None and g and not g.dead:  # started and suspended
            t.syncthreads_blocked = False
            g.switch()


class _Threading:
    """The ``threading`` module as the simulator's fake ``cuda`` module sees it: ``current_thread()`` is
    :func:`current_thread`, everything else the real module's."""

    current_thread = staticmethod(current_thread)

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


def install(kernelapi: Any) -> None:
    """Let the simulator's fake ``cuda`` module (its ``kernelapi`` module) find simulated threads. Idempotent."""
    if not isinstance(kernelapi.threading, _Threading):
        kernelapi.threading = _Threading()
