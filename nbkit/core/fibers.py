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
        self._greenlet: greenlet | None = None  # the runner it runs on, from its start to its end
        self._done: bool | None = None  # None: not in a block run yet; False: scheduled, not ended; True: ended

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
        return self._done is False and (self._greenlet is None or not self._greenlet.dead)

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
        t._done = False
    live = threads
    while live:
        waiting = []
        for t in live:
            if not t.syncthreads_blocked:
                try:
                    ended = (_start(t) if t._greenlet is None else t._greenlet.switch()) is _DONE
                except BaseException:  # not an error of the kernel's (those are kept): Ctrl-C, for one
                    _abort(threads)
                    raise
                if ended:
                    _release(t)
                if t.exception is not None:
                    _abort(threads)
                    raise failure(t)
                if ended:
                    continue
            waiting.append(t)
        if waiting and all(t.syncthreads_blocked for t in waiting):  # every live thread is at a barrier
            for t in waiting:
                t.syncthreads_blocked = False
        live = waiting


# Each thread runs on a *runner*, a greenlet that runs threads one after another: when its thread ends, it waits
# for the next one. Why: creating a greenlet and running it to its end cost 6.4-6.7 µs on the 2-core VM
# (2026-11-30), handing a waiting runner the next thread 0.55 µs, and the simulator makes a thread for every CUDA
# thread of every block (a trivial kernel took about 20 µs per thread in all). Runners whose thread ended wait in
# a pool of this OS thread (a greenlet cannot move to another), kept across blocks and launches. A thread sees what
# it saw on a greenlet of its own: the scheduler as parent, a fresh context (numpy's error state, context
# variables), ``getcurrent().sim_thread`` itself; an idle runner refers to no thread.
_DONE = object()  # what a runner hands back when its thread has ended (a thread that waits hands back ())
_POOL_MAX = 1024  # idle runners kept: a block's threads at most, every one of which may wait at a barrier at once
_pool = threading.local()


def _runner() -> None:
    t = getcurrent().parent.switch()  # the first thread comes by a switch: a start's arguments live as long as it
    while t is not None:
        t.run()
        t = None  # an idle runner keeps no thread alive
        t = getcurrent().parent.switch(_DONE)


def _idle() -> list[greenlet]:
    idle = getattr(_pool, "idle", None)
    if idle is None:
        idle = _pool.idle = []
    return idle


def _start(t: Fiber) -> object:
    """Run thread ``t`` from its start on a runner until it waits (returns ``()``) or ends (returns ``_DONE``)."""
    idle = _idle()
    if idle:
        g = idle.pop()
    else:
        g = greenlet(_runner)
        g.switch()
    g.parent = getcurrent()
    g.gr_context = None  # a new greenlet's context: empty
    g.sim_thread = t
    t._greenlet = g
    return g.switch(t)


def _release(t: Fiber) -> None:
    """Thread ``t`` has ended: its runner waits for another thread."""
    g, t._greenlet, t._done = t._greenlet, None, True
    g.sim_thread = None
    idle = _idle()
    if len(idle) < _POOL_MAX:
        idle.append(g)


def _abort(threads: list[Fiber]) -> None:
    """Stop the block's other threads: each one waiting raises at its barrier (or warp intrinsic) and ends."""
    for t in threads:
        t.abort = True
    for t in threads:
        g = t._greenlet
        if g is not None and not g.dead:  # started and suspended (an ended thread has no runner)
            t.syncthreads_blocked = False
            if g.switch() is _DONE:
                _release(t)


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
