"""Running one block of a traced launch on simulated threads, scheduled the way nbkit's simulator does it.

Why not the simulator's own ``BlockManager.run``: each thread must carry what a record needs (linear block id,
barrier epoch), a failing thread's exception must come back unchanged (the simulator re-creates it with a
prefix), and aborted threads must finish before the real ``cuda`` module is put back. The scheduling itself is
the simulator's (:func:`nbkit.core.fibers.run_block`): every thread runs until it waits or ends, a barrier opens
when every live thread waits at it. Whether they wait at the *same* barrier is not the scheduler's business: each thread keeps the
call sites of its barriers and how it left the kernel, and after the block :func:`barrier_summary` hands them to
the recorder, where :class:`~nbkit.tracer.analysis.Trace` judges them. Importing this module loads the simulator
(through :mod:`nbkit.core.simulator`).
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from nbkit.core import fibers, simulator

_sim = simulator.internals()


class TracedThread(simulator.SimThread):
    """A simulated thread plus what each record needs (linear block id, barrier epoch, syncwarp count) and
    what the barrier check needs (the call site of each barrier it waited at, the kernel's frame to see where it
    left)."""

    def __init__(self, target, manager, grid_point, block_point, blin, launch_ndim):
        super().__init__(target, manager, grid_point, block_point)
        self.blin = blin
        self.epoch = 0
        self.wsync = 0  # cuda.syncwarp() calls passed (records carry it: the race finder orders a warp's lanes by it)
        self.launch_ndim = launch_ndim
        self.barriers: list[tuple[tuple, int]] = []  # ((code, line), line) per barrier, in order
        self.kernel_frame = None

    run = fibers.Fiber.run  # keep the original exception (SimThread re-creates it with a thread prefix)


class ThreadFailed(Exception):
    """A simulated thread raised: ``thread.exception`` is (the original exception, its traceback)."""

    def __init__(self, thread: TracedThread):
        super().__init__()
        self.thread = thread


def run_launch(fn: Callable, args: list, grid_dim: tuple, block_dim: tuple, module: object,
               launch_ndim: tuple[int, int]) -> None:
    """Every block of the launch, one after another in the simulator's order (x fastest), with ``module`` as
    the ``cuda`` that ``fn`` and its device functions see. Raises :class:`ThreadFailed`."""
    with simulator.launch_context(fn, module):
        for blin, grid_point in enumerate(np.ndindex(*grid_dim[::-1])):
            run_block(fn, args, grid_dim, block_dim, grid_point[::-1], blin, launch_ndim,
                      getattr(module, "barrier_log", None))


def run_block(fn: Callable, args: list, grid_dim: tuple, block_dim: tuple, grid_point: tuple, blin: int,
              launch_ndim: tuple[int, int], barrier_log: list | None = None) -> None:
    """One block, scheduled exactly like the simulator's BlockManager, on threads that carry trace state."""
    manager = _sim.BlockManager(fn, grid_dim, block_dim, False)
    threads = []

    def target():
        # The kernel's frame, to see after the run on which line the thread left it (an explicit return or the end).
        # One trace event per thread: the hook removes itself at the first call (the kernel) and puts back any
        # tracer that was there (a debugger, coverage).
        old = sys.gettrace()
        me = simulator.current_thread()

        def hook(frame, event, arg):
            me.kernel_frame = frame
            sys.settrace(old)
            return old(frame, event, arg) if old is not None else None

        sys.settrace(hook)
        try:
            fn(*args)
        finally:
            sys.settrace(old)

    threads = [TracedThread(target, manager, grid_point, block_point[::-1], blin, launch_ndim)
               for block_point in np.ndindex(*block_dim[::-1])]  # in thread-id order: x fastest
    fibers.run_block(threads, ThreadFailed)  # the simulator's scheduling (aborted threads have ended when it raises)
    if barrier_log is not None:
        barrier_log.extend(barrier_summary(t, fn) for t in threads)


def barrier_summary(t: TracedThread, fn: Callable) -> tuple:
    """(linear block, linear thread, call sites of its barriers in order, line it left the kernel on or None)."""
    frame = t.kernel_frame
    line = frame.f_lineno if frame is not None and frame.f_code is fn.__code__ else None
    return (t.blin, t.thread_id, tuple(t.barriers), line)
