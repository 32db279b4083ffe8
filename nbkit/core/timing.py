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

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def method(self) -> str:
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


def time_it(fn: Callable[[], object], repeat: int = 5, warmup: int = 1, rounds: int = 1) -> Timing:
    """Per-call time of ``fn()`` (which launches kernels): ``repeat`` calls timed together, ``rounds`` times.

    The warm-up calls trigger JIT compilation, which would otherwise be counted. On a GPU one pair of
    CUDA events on the default stream brackets all ``repeat`` calls of a round, so launches queue back
    to back and the per-call time (round time / ``repeat``) is the kernels' time rather than one
    launch's overhead plus an event pair. The simulator has no event timer (its elapsed time is -1):
    there the wall clock is used and the result is labelled as simulator time (CPU executor time in cpu mode).
    """
    if repeat < 1 or warmup < 0 or rounds < 1:
        raise ValueError(f"need repeat >= 1, warmup >= 0 and rounds >= 1, got repeat={repeat}, warmup={warmup}, "
                         f"rounds={rounds}")
    mode = _mode().name
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    times = []
    for _ in range(rounds):
        if mode == "gpu":
            start, end = cuda.event(timing=True), cuda.event(timing=True)
            start.record()
            for _ in range(repeat):
                fn()
            end.record()
            end.synchronize()
            times.append(cuda.event_elapsed_time(start, end) / 1e3 / repeat)
        else:
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            cuda.synchronize()
            times.append((time.perf_counter() - t0) / repeat)
    return Timing(tuple(times), mode, warmup, repeat)
