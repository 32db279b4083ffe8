"""Roofline MODEL of the course kernels: FLOPs and bytes as formulas of the sizes, on three named GPUs.

Every figure here is a MODEL, not a measurement. For each kernel two byte counts are given:

- ``bytes_issued``: every global load and store the code executes, 4 bytes each (float32), as the code's
  loops issue them. This is what the memory tracer (:mod:`nbkit.tracer`) records as bytes *used* by the
  requests, so the formula can be checked against a trace at two sizes. Hardware moves whole 32-byte
  sectors, so the tracer's bytes *moved* (sectors x 32) are at least this.
- ``bytes_min``: compulsory traffic, every input read once and every output written once (perfect
  caching). The true DRAM traffic lies between the two, depending on the caches (not modelled).

The attainable rate is ``min(peak FLOP/s, intensity x bandwidth)`` with intensity = FLOPs / bytes.
A FLOP is one float32 add or multiply (an FMA is two); exp, log and divisions are counted as one each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nbkit.core.mode import MODE

F32 = 4  # bytes


@dataclass(frozen=True)
class GPU:
    """Datasheet peak float32 rate (non-tensor-core) and memory bandwidth."""

    name: str
    peak_gflops: float  # FP32, GFLOP/s
    bandwidth_gbs: float  # GB/s (1e9 bytes/s)
    source: str
    sms: int = 0  # streaming multiprocessors (the architecture whitepaper); 0: not given
    arch: str = ""  # compute capability as nbkit.core.hw.sm_name writes it, for the per-SM limits of perf.occupancy

    @property
    def ridge(self) -> float:
        """FLOPs per byte above which a kernel is compute-bound on this GPU (MODEL)."""
        return self.peak_gflops / self.bandwidth_gbs


GPUS: dict[str, GPU] = {g.name: g for g in (
    GPU("T4", 8_100, 320, "NVIDIA T4 datasheet: 8.1 TFLOPS FP32, 320 GB/s GDDR6 "
        "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf); "
        "40 SMs (NVIDIA Turing GPU Architecture whitepaper, Tesla T4)", sms=40, arch="sm_75"),
    GPU("A100 SXM 40GB", 19_500, 1_555, "NVIDIA A100 datasheet: 19.5 TFLOPS FP32, 1,555 GB/s HBM2 for the 40GB SXM "
        "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)"
        "; 108 SMs (NVIDIA A100 Tensor Core GPU Architecture whitepaper)", sms=108, arch="sm_80"),
    GPU("H100 SXM", 67_000, 3_350, "NVIDIA H100 datasheet: 67 TFLOPS FP32, 3.35 TB/s HBM3 for the H100 SXM "
        "(https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet); "
        "132 SMs (NVIDIA H100 Tensor Core GPU Architecture whitepaper, H100 SXM5)", sms=132, arch="sm_90"),
)}


@dataclass(frozen=True)
class Work:
    """FLOPs and bytes of one kernel launch at given sizes (MODEL)."""

    kernel: str
    sizes: dict
    flops: int
    bytes_issued: int
    bytes_min: int

    def intensity(self, traffic: str = "min") -> float:
        """FLOPs per byte, with ``bytes_min`` (``"min"``) or ``bytes_issued`` (``"issued"``)."""
        return self.flops / (self.bytes_min if traffic == "min" else self.bytes_issued)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def matmul_naive(M: int, N: int, K: int) -> Work:
    """One thread per output: K loads of op(A) and K of op(B), K FMAs, one store (any transposes)."""
    return Work("matmul_naive", dict(M=M, N=N, K=K), 2 * M * N * K, F32 * (2 * M * N * K + M * N),
                F32 * (M * K + K * N + M * N))


def matmul_tiled(M: int, N: int, K: int, tile: int = 16) -> Work:
    """Each A element is loaded once per block column, each B element once per block row (in-range only)."""
    return Work("matmul_tiled", dict(M=M, N=N, K=K, tile=tile), 2 * M * N * K,
                F32 * (M * K * _ceil(N, tile) + K * N * _ceil(M, tile) + M * N), F32 * (M * K + K * N + M * N))


def dense_forward(batch: int, n_in: int, n_out: int, tile: int = 16) -> Work:
    """``Z = A Wᵀ`` by the tiled matmul, then the bias kernel (reads Z and b[j], writes Z)."""
    mm = matmul_tiled(batch, n_out, n_in, tile)
    bias = batch * n_out
    return Work("dense_forward", dict(batch=batch, n_in=n_in, n_out=n_out), mm.flops + bias,
                mm.bytes_issued + F32 * 3 * bias, mm.bytes_min + F32 * (2 * bias + n_out))


def elementwise(name: str, n: int) -> Work:
    """Activations: forward reads x, writes y; backward reads dout and x (or y), writes dx."""
    flops_per = {"relu_forward": 1, "relu_backward": 1, "sigmoid_forward": 4, "sigmoid_backward": 3,
                 "tanh_forward": 1, "tanh_backward": 3}
    if name not in flops_per:
        raise ValueError(f"unknown elementwise kernel {name!r}; known: {', '.join(flops_per)}")
    arrays = 2 if name.endswith("forward") else 3
    return Work(name, dict(n=n), flops_per[name] * n, F32 * arrays * n, F32 * arrays * n)


def softmax_xent_row_per_thread(rows: int, classes: int) -> Work:
    """Max pass (C reads), exp pass (C reads, C writes), normalise pass (C reads, C writes), label, loss."""
    flops = rows * (classes + 3 * classes + classes + 3)  # max, (sub, exp, add), divide, log/sub/sub
    issued = F32 * rows * (5 * classes + 1 + 1) + 4 * rows  # logits 2C + logits[label], probs 3C, loss; label
    return Work("softmax_xent_row_per_thread", dict(rows=rows, classes=classes), flops, issued,
                F32 * rows * (2 * classes + 1) + 4 * rows)


def conv2d_forward(n: int, c: int, h: int, w: int, f: int, kh: int, kw: int) -> Work:
    """Valid convolution, one thread per output: c*kh*kw loads of x and of w per output, one FMA each."""
    oh, ow = h - kh + 1, w - kw + 1
    outputs = n * f * oh * ow
    taps = c * kh * kw
    return Work("conv2d_forward", dict(n=n, c=c, h=h, w=w, f=f, kh=kh, kw=kw), 2 * outputs * taps,
                F32 * (outputs * (2 * taps + 2)), F32 * (n * c * h * w + f * taps + f + outputs))


def maxpool2x2_forward(n: int, c: int, h: int, w: int) -> Work:
    """One thread per output: 4 loads, 3 compares, one value and one int8 index stored."""
    outputs = n * c * (h // 2) * (w // 2)
    return Work("maxpool2x2_forward", dict(n=n, c=c, h=h, w=w), 3 * outputs, outputs * (4 * F32 + F32 + 1),
                F32 * n * c * h * w + outputs * (F32 + 1))


def sgd_momentum(n: int) -> Work:
    """Momentum step after the first: the source reads param twice, grad, buf; writes buf and param; 8 FLOPs."""
    return Work("sgd_momentum", dict(n=n), 8 * n, F32 * 5 * n + F32 * n, F32 * 5 * n)


KERNEL_MODELS: dict[str, Callable[..., Work]] = {
    "matmul_naive": matmul_naive, "matmul_tiled": matmul_tiled, "dense_forward": dense_forward,
    "softmax_xent_row_per_thread": softmax_xent_row_per_thread, "conv2d_forward": conv2d_forward,
    "maxpool2x2_forward": maxpool2x2_forward, "sgd_momentum": sgd_momentum,
}


@dataclass(frozen=True)
class Placement:
    """A kernel on one GPU's roofline (MODEL), optionally beside a measured time."""

    work: Work
    gpu: GPU
    traffic: str
    measured_seconds: float | None = None

    @property
    def intensity(self) -> float:
        return self.work.intensity(self.traffic)

    @property
    def attainable_gflops(self) -> float:
        return min(self.gpu.peak_gflops, self.intensity * self.gpu.bandwidth_gbs)

    @property
    def bound(self) -> str:
        return "compute-bound" if self.intensity >= self.gpu.ridge else "memory-bound"

    @property
    def model_seconds(self) -> float:
        return self.work.flops / (self.attainable_gflops * 1e9)

    def __str__(self) -> str:
        text = (f"MODEL {self.work.kernel} {self.work.sizes} on {self.gpu.name}: {self.intensity:.2f} FLOP/B "
                f"({self.traffic} traffic), attainable {self.attainable_gflops:,.0f} GFLOP/s, {self.bound}, "
                f">= {self.model_seconds * 1e6:.1f} µs")
        if self.measured_seconds is not None:
            text += (f"; MEASURED on the GPU: {self.measured_seconds * 1e6:.1f} µs = "
                     f"{self.work.flops / self.measured_seconds / 1e9:,.0f} GFLOP/s")
        return text


def place(work: Work, gpu: str | GPU, traffic: str = "min", measured_seconds: float | None = None) -> Placement:
    """Put ``work`` on the roofline of ``gpu`` (a name in :data:`GPUS`); ``measured_seconds`` from a GPU run."""
    if traffic not in ("min", "issued"):
        raise ValueError(f"traffic must be 'min' or 'issued', got {traffic!r}")
    if isinstance(gpu, str):
        if gpu not in GPUS:
            raise ValueError(f"unknown GPU {gpu!r}; known: {', '.join(GPUS)}")
        gpu = GPUS[gpu]
    return Placement(work, gpu, traffic, measured_seconds)


def measure_beside_model(work: Work, gpu: str | GPU, fn: Callable[[], object], repeat: int = 20) -> Placement:
    """On a GPU: time ``fn`` (which launches the kernel for ``work``) and place it beside the MODEL."""
    if MODE.is_simulator:
        raise RuntimeError("a measured time needs a real GPU; in the simulator only the MODEL exists")
    from nbkit.core.timing import time_it

    return place(work, gpu, measured_seconds=time_it(fn, repeat=repeat).median)


def _label_layout(works: list[Work], intensities: list[float]) -> tuple[list[tuple[str, float, int]], list[int]]:
    """One label per kernel name and (nearly) equal intensity, with vertical offsets so close labels do not overlap."""
    import math

    labels: list[list] = []  # [name, intensity, count]
    for w, xi in zip(works, intensities):
        same = next((lab for lab in labels if lab[0] == w.kernel and abs(math.log10(lab[1] / xi)) < 0.02), None)
        if same:
            same[2] += 1
        else:
            labels.append([w.kernel, xi, 1])
    labels.sort(key=lambda lab: lab[1])
    offsets, stack = [], 0
    for i, lab in enumerate(labels):
        near = i > 0 and math.log10(lab[1] / labels[i - 1][1]) < 0.25  # less than a quarter decade apart
        stack = stack + 1 if near else 0
        offsets.append(-10 - 9 * stack)
    return [tuple(lab) for lab in labels], offsets


def plot_roofline(works: list[Work], gpus=tuple(GPUS), traffic: str = "min", ax=None, measured: dict | None = None):
    """Log-log roofline of ``gpus`` with each kernel at its attainable rate (MODEL); returns the axes.

    ``measured`` may map a kernel name to measured GFLOP/s on the first GPU (drawn as crosses).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    intensities = [w.intensity(traffic) for w in works]
    lo = min([*intensities, 0.05]) / 2
    hi = max([*intensities, *(GPUS[g].ridge if isinstance(g, str) else g.ridge for g in gpus)]) * 4
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    for g in gpus:
        gpu = GPUS[g] if isinstance(g, str) else g
        line, = ax.plot(x, np.minimum(gpu.peak_gflops, x * gpu.bandwidth_gbs), label=f"{gpu.name} (datasheet)")
        for w in works:
            p = place(w, gpu, traffic)
            ax.plot(p.intensity, p.attainable_gflops, "o", color=line.get_color(), ms=4)
    first = GPUS[gpus[0]] if isinstance(gpus[0], str) else gpus[0]
    for (name, xi, count), dy in zip(*_label_layout(works, intensities)):
        label = name + (f" ×{count}" if count > 1 else "")
        ax.annotate(label, (xi, min(first.peak_gflops, xi * first.bandwidth_gbs)), fontsize=7,
                    xytext=(4, dy), textcoords="offset points")
    for w, xi in zip(works, intensities):
        if measured and w.kernel in measured:
            ax.plot(xi, measured[w.kernel], "x", color="black", ms=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"arithmetic intensity (FLOP/byte, {traffic} traffic)")
    ax.set_ylabel("attainable float32 rate (GFLOP/s)")
    ax.set_title("Roofline MODEL of the course kernels (datasheet peaks, not measured)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def model_for(device_name: str) -> GPU | None:
    """The roofline MODEL of the GPU called ``device_name`` (as CUDA names it), None where no model fits.

    Matching is strict: a variant with other peaks (an H100 PCIe, an A100 80GB, an H200) gets None rather than
    a neighbour's datasheet figures.
    """
    name = device_name.upper()
    if "T4" in name.split() or name.endswith("T4"):
        return GPUS["T4"]
    if "A100" in name and "40GB" in name:
        return GPUS["A100 SXM 40GB"]  # the 40GB PCIe card has the same FP32 peak and 1,555 GB/s
    if "H100" in name and ("SXM" in name or "HBM3" in name) and "PCIE" not in name and "NVL" not in name:
        return GPUS["H100 SXM"]
    return None


def present_model() -> tuple[GPU | None, str]:
    """The model for the GPU this process runs on, and the device's name ('' in the simulator)."""
    if MODE.is_simulator:
        return None, ""
    from numba import cuda

    name = cuda.get_current_device().name
    name = name.decode() if isinstance(name, bytes) else str(name)
    return model_for(name), name
