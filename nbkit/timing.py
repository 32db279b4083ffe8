"""Time kernels honestly in both modes, and say which clock was used."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from numba import cuda

from .mode import Mode


@dataclass(frozen=True)
class Timing:
    """Per-call times of one timed function, with the clock that measured them."""

    seconds: tuple[float, ...]  # one entry per timed call, warm-up excluded
    mode: str  # "gpu" or "sim"
    warmup: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def method(self) -> str:
        if self.mode == "gpu":
            return "GPU time from CUDA events"
        return "SIMULATOR wall-clock time: it checks correctness only and says nothing about GPU speed"

    def __str__(self) -> str:
        return (f"{self.median * 1e3:.3f} ms per call (median of {len(self.seconds)}, after {self.warmup} "
                f"warm-up call{'s' if self.warmup != 1 else ''}) [{self.method}]")

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython display
        printer.text(str(self))


def _mode() -> Mode:
    import nbkit

    return nbkit.MODE


def time_it(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> Timing:
    """Time ``fn()`` (which launches kernels) ``repeat`` times after ``warmup`` untimed calls.

    The warm-up call triggers JIT compilation, which would otherwise be counted. On a GPU each call is
    bracketed by CUDA events recorded on the default stream; the simulator has no event timer (its
    elapsed time is -1), so there the wall clock is used and the result is labelled as simulator time.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    mode = _mode().name
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        if mode == "gpu":
            start, end = cuda.event(timing=True), cuda.event(timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cuda.event_elapsed_time(start, end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return Timing(tuple(times), mode, warmup)
