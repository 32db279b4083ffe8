"""Time kernels honestly in every mode, and say which clock was used."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from numba import cuda

from nbkit.core.mode import MODE, Mode


@dataclass(frozen=True)
class Timing:
    """Per-call times of one timed function, with the clock that measured them."""

    seconds: tuple[float, ...]  # per-call time of each round (round time / calls per round), warm-up excluded
    mode: str  # "gpu", "sim" or "cpu"
    warmup: int
    calls_per_round: int = 1
    issue_seconds: tuple[float, ...] | None = None  # GPU only: per-call host time to issue the calls from Python

    @property
    def dispatch_bound(self) -> bool:
        """GPU only: the events measured Python's launch rate, not the kernels (see :func:`dispatch_bound`)."""
        return self.issue_seconds is not None and dispatch_bound(self.median, statistics.median(self.issue_seconds))

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def method(self) -> str:
        if self.mode == "gpu" and self.dispatch_bound:
            return (f"DISPATCH-BOUND: Python issued the calls at {statistics.median(self.issue_seconds) * 1e3:.3f} ms "
                    "each and the GPU time between the CUDA events is no longer, so the GPU waited for Python: "
                    "this is the launch rate, an upper bound on the kernels' own time")
        if self.mode == "gpu":
            return "GPU time from one pair of CUDA events around each round"
        if self.mode == "cpu":
            return "CPU executor wall-clock time: says nothing about GPU speed"
        return "SIMULATOR wall-clock time: it checks correctness only and says nothing about GPU speed"

    def __str__(self) -> str:
        rounds = f", median of {len(self.seconds)} rounds" if len(self.seconds) > 1 else ""
        return (f"{self.median * 1e3:.3f} ms per call ({self.calls_per_round} back-to-back call"
                f"{'s' if self.calls_per_round != 1 else ''} timed together{rounds}, after {self.warmup} "
                f"warm-up call{'s' if self.warmup != 1 else ''}) [{self.method}]")

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython display
        printer.text(str(self))


def _mode() -> Mode:
    return MODE


# The GPU time of back-to-back launches is the kernels' time only while the GPU is the slower side; numba's host-side
# launch costs about 6.6 µs plus about 3.5 µs per array argument (numba-cuda's launch benchmark), so a shorter kernel
# leaves the GPU waiting and the events measure Python. 10 % margin: event and clock resolution.
DISPATCH_MARGIN = 1.10


def dispatch_bound(gpu_seconds: float, issue_seconds: float) -> bool:
    """True when the GPU time per call is not longer than the time Python took to issue one call (plus margin)."""
    return gpu_seconds <= DISPATCH_MARGIN * issue_seconds


def gpu_round(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """GPU only: per-call (GPU seconds between one pair of CUDA events, host seconds to issue the calls)."""
    start, end = cuda.event(timing=True), cuda.event(timing=True)
    start.record()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    issued = time.perf_counter() - t0
    end.record()
    end.synchronize()
    return cuda.event_elapsed_time(start, end) / 1e3 / repeat, issued / repeat


def time_it(fn: Callable[[], object], repeat: int = 5, warmup: int = 1, rounds: int = 1) -> Timing:
    """Per-call time of ``fn()`` (which launches kernels): ``repeat`` calls timed together, ``rounds`` times.

    The warm-up calls trigger JIT compilation, which would otherwise be counted. On a GPU one pair of
    CUDA events on the default stream brackets all ``repeat`` calls of a round, so launches queue back
    to back and the per-call time (round time / ``repeat``) is the kernels' time rather than one
    launch's overhead plus an event pair. The simulator has no event timer (its elapsed time is -1):
    there the wall clock is used and the result is labelled as simulator time (CPU executor time in cpu mode).
    On a GPU the host time to issue the calls is measured too: when the GPU time is no longer, the GPU waited
    for Python and the result is labelled DISPATCH-BOUND (an upper bound on the kernel time, not the kernel time).
    """
    if repeat < 1 or warmup < 0 or rounds < 1:
        raise ValueError(f"need repeat >= 1, warmup >= 0 and rounds >= 1, got repeat={repeat}, warmup={warmup}, "
                         f"rounds={rounds}")
    mode = _mode().name
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    times, issued = [], []
    for _ in range(rounds):
        if mode == "gpu":
            gpu_seconds, issue_seconds = gpu_round(fn, repeat)
            times.append(gpu_seconds)
            issued.append(issue_seconds)
        else:
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            cuda.synchronize()
            times.append((time.perf_counter() - t0) / repeat)
    return Timing(tuple(times), mode, warmup, repeat, tuple(issued) if mode == "gpu" else None)
