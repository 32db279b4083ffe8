"""What one training step does on the device: every kernel launch, every host↔device copy, and (on a GPU) time.

:func:`record` runs a function once and lists the launches (through :func:`nbkit.core.launch.launch`) and the
copies (``cuda.to_device``, ``copy_to_host``, and the implicit copies of a NumPy array passed to a kernel).
It works in both modes: the simulator makes the same number of launches and copies, so the counts are facts
about the code. Two simulator-only choices change what is launched, not how often: the naive matmul kernel
instead of the tiled one (``nn.kernel_backend.MATMUL_METHOD``) and the SGD update's grid cap
(``kernels.optim.MAX_BLOCKS``).
:func:`time_kernels` then times each kernel on a GPU by replaying its launches many times
between one pair of CUDA events (one launch alone would mostly time the launch overhead); in the simulator
it refuses, and :func:`kernel_table` prints "not measured" in the time columns.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from nbkit.core import launch as launch_module
from nbkit.core.launch import kernel_name
from nbkit.core.mode import MODE
from nbkit.core.timing import dispatch_bound, gpu_round


@dataclass
class Copy:
    direction: str  # "host->device" or "device->host"
    nbytes: int
    how: str  # "cuda.to_device", "copy_to_host" or "implicit (NumPy array passed to <kernel>)"


@dataclass
class StepRecord:
    launches: list[tuple] = field(default_factory=list)  # (kernel, grid, block, args)
    copies: list[Copy] = field(default_factory=list)
    seconds_per_kernel: dict[str, float] | None = None  # filled by time_kernels on a GPU
    seconds_per_step: float | None = None
    dispatch_bound: set[str] = field(default_factory=set)  # kernels whose time is Python's launch rate (upper bound)
    result: object = None  # what the recorded step returned (e.g. the loss)

    def launch_counts(self) -> Counter:
        return Counter(kernel_name(k) for k, *_ in self.launches)

    def copies_except(self, max_bytes: int = 8) -> list[Copy]:
        """Copies larger than ``max_bytes``: everything but a scalar such as the loss."""
        return [c for c in self.copies if c.nbytes > max_bytes]


@contextlib.contextmanager
def _watching(record: StepRecord):
    """Count launches and copies while the block runs.

    A NumPy array passed to a kernel is counted when the launch starts (one copy each way). How numba writes it
    back afterwards depends on the version: numba-cuda 0.21 to 0.24 and the CUDA simulators call the device
    array's ``copy_to_host(host_array)`` (numba_cuda/numba/cuda/args.py: ``devary.copy_to_host(self.value)``),
    which is hooked here too; numba-cuda 0.25 and later call the driver's ``cuMemcpyDtoH`` directly. So a
    ``copy_to_host`` into a host array of the latest launch is that write-back, already counted, and is skipped.
    """
    written_back: list[np.ndarray] = []  # host arrays of the latest launch whose write-back is already counted

    def observer(kernel, grid, block, args):
        record.launches.append((kernel, grid, block, args))
        written_back.clear()
        for a in args:
            if isinstance(a, np.ndarray) and a.ndim > 0:
                how = f"implicit (NumPy array passed to {kernel_name(kernel)})"
                record.copies.append(Copy("host->device", a.nbytes, how))
                record.copies.append(Copy("device->host", a.nbytes, how))
                written_back.append(a)

    original_to_device = cuda.to_device
    array_class = type(cuda.device_array(1, dtype=np.float32))
    original_copy_to_host = array_class.copy_to_host

    def to_device(obj, *args, **kwargs):
        record.copies.append(Copy("host->device", int(np.asarray(obj).nbytes), "cuda.to_device"))
        return original_to_device(obj, *args, **kwargs)

    def copy_to_host(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("ary")
        same = [i for i, a in enumerate(written_back) if a is target]
        if same:  # the write-back of an implicit copy (numba-cuda < 0.25, the simulators): counted at the launch
            del written_back[same[0]]
        else:
            record.copies.append(Copy("device->host", int(self.nbytes), "copy_to_host"))
        return original_copy_to_host(self, *args, **kwargs)

    launch_module._OBSERVERS.append(observer)
    cuda.to_device = to_device
    array_class.copy_to_host = copy_to_host
    try:
        yield record
    finally:
        launch_module._OBSERVERS.remove(observer)
        cuda.to_device = original_to_device
        array_class.copy_to_host = original_copy_to_host


def record(step, *args) -> StepRecord:
    """Run ``step(*args)`` once and return what it launched and copied."""
    rec = StepRecord()
    with _watching(rec):
        rec.result = step(*args)
    return rec


def time_kernels(rec: StepRecord, step, *args, repeats: int = 50) -> StepRecord:
    """GPU only: seconds per launch of each kernel in ``rec``, and seconds per whole ``step(*args)``.

    Each kernel's launches from the recorded step are replayed ``repeats`` times between one pair of CUDA
    events. A kernel whose GPU time is no longer than Python's time to issue its launches is listed in
    ``rec.dispatch_bound``: its time is the launch rate, an upper bound (:func:`nbkit.core.timing.dispatch_bound`).
    Replaying writes into the recorded arrays again (a weight update is applied again, an atomic
    sum grows): time a model you then throw away.
    """
    if MODE.is_simulator or not MODE.probe.usable:
        raise RuntimeError(f"kernel times need a real GPU; this process runs in {MODE.name} mode ({MODE.reason}). "
                           "Simulator timings say nothing about GPU speed.")
    by_kernel: dict[str, list[tuple]] = {}
    for kernel, grid, block, kargs in rec.launches:
        by_kernel.setdefault(kernel_name(kernel), []).append((kernel, grid, block, kargs))
    times = {}
    rec.dispatch_bound = set()
    for name, launches in by_kernel.items():
        for kernel, grid, block, kargs in launches:  # warm-up: compiled and cached
            kernel[grid, block](*kargs)

        def replay(launches=launches):
            for kernel, grid, block, kargs in launches:
                kernel[grid, block](*kargs)

        gpu_seconds, issue_seconds = gpu_round(replay, repeats)
        times[name] = gpu_seconds / len(launches)
        if dispatch_bound(gpu_seconds, issue_seconds):
            rec.dispatch_bound.add(name)
    step(*args)
    cuda.synchronize()
    rec.seconds_per_kernel = times
    rec.seconds_per_step = gpu_round(lambda: step(*args), repeats)[0]
    return rec


def kernel_table(rec: StepRecord) -> str:
    """The launches, times and copies of one recorded step as a text table."""
    counts = rec.launch_counts()
    timed = rec.seconds_per_kernel is not None
    lines = [f"{'kernel':<40} {'launches':>8} {'µs per launch':>14} {'µs per step':>12}"]
    total = 0.0
    for name, n in counts.most_common():
        if timed:
            t = rec.seconds_per_kernel[name] * 1e6
            total += t * n
            bound = "≤" if name in rec.dispatch_bound else " "
            lines.append(f"{name:<40} {n:>8} {bound}{t:>13.1f} {bound}{t * n:>11.1f}")
        else:
            lines.append(f"{name:<40} {n:>8} {'not measured':>14} {'not measured':>12}")
    lines.append(f"{'all kernels':<40} {sum(counts.values()):>8} {'':>14} "
                 + (f"{total:>12.1f}" if timed else f"{'not measured':>12}"))
    if rec.dispatch_bound:
        lines.append("≤: DISPATCH-BOUND, the GPU waited for Python's launches: the time shown is the launch rate, "
                     "an upper bound on the kernel's own time")
    if rec.seconds_per_step is not None:
        lines.append(f"whole step between one pair of events: {rec.seconds_per_step * 1e6:.1f} µs "
                     f"(launch gaps and the loss copy included)")
    elif not timed:
        lines.append(f"times: not measured ({MODE.name} mode: simulator timings say nothing about GPU speed)")
    h2d = [c for c in rec.copies if c.direction == "host->device"]
    d2h = [c for c in rec.copies if c.direction == "device->host"]
    lines.append(f"host->device copies: {len(h2d)} ({sum(c.nbytes for c in h2d)} bytes); "
                 f"device->host copies: {len(d2h)} ({sum(c.nbytes for c in d2h)} bytes)")
    for c in rec.copies:
        lines.append(f"  {c.direction}: {c.nbytes} bytes by {c.how}")
    return "\n".join(lines)
