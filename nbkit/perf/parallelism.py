"""How much of a GPU a recorded training step's launches can fill: threads with work and each thread's loop.

A GPU hides the latency of one thread's loads and dependent additions only by having many other threads to
switch to: an SM holds at most ``max_warps_per_sm × 32`` resident threads (:mod:`nbkit.perf.occupancy`), so a
whole GPU holds ``SMs × that`` (:func:`resident_threads`). A launch with fewer threads that have work leaves
most of that capacity empty (fewer blocks than SMs leaves whole SMs idle), and a thread whose loop adds L
products into one accumulator performs L dependent additions one after the other, however large the GPU.

From a step recorded by :func:`nbkit.perf.steps.record`, :func:`launch_shapes` lists every launch with its
grid and block (facts: what the code launched) and, from one formula per kernel in :data:`WORK` written from
the kernel's source, the threads that pass the kernel's guard and the trip count of each such thread's loops
(a MODEL: no GPU is asked). :func:`table` prints them, for one step at two batch sizes side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from nbkit.core.hw import WARP_SIZE
from nbkit.core.launch import kernel_name
from nbkit.kernels.matmul import TILE
from nbkit.perf.occupancy import arch as arch_limits
from nbkit.perf.roofline import GPU, GPUS


@dataclass(frozen=True)
class Work:
    """Per launch (MODEL from the kernel's source): threads with work, and each one's loop trip count."""

    threads: int  # threads that pass the kernel's guard (or, in a grid-stride loop, get at least one element)
    loop: int  # iterations of that thread's loops (the longest thread's, for a grid-stride loop)
    what: str  # what one iteration is
    output: tuple[int, ...] = ()  # shape of the array the threads write (which layer it is)
    upper_bound: bool = False  # the loop skips some iterations at the edges: ``loop`` is the most any thread runs


def _size(a) -> int:
    return int(math.prod(a.shape))


def _shape(a) -> tuple[int, ...]:
    return tuple(int(d) for d in a.shape)


def _matmul(a, b, c, trans_a, trans_b, *_) -> Work:
    return Work(_size(c), int(a.shape[0] if trans_a else a.shape[1]), "multiply-add along K", _shape(c))


def _matmul_tiled(a, b, c, trans_a, trans_b, *_) -> Work:
    k = int(a.shape[0] if trans_a else a.shape[1])  # every thread runs whole tiles; past K it adds zeros
    return Work(_size(c), -(-k // TILE) * TILE, f"multiply-add along K, in tiles of {TILE}", _shape(c))


def _grid_stride(param, *_, launched: int) -> Work:
    return Work(min(_size(param), launched), -(-_size(param) // launched), "parameter updated (grid-stride)",
                _shape(param))


# kernel name -> Work of one launch from its arguments (in the kernel's parameter order) and threads launched
WORK: dict[str, Callable[..., Work]] = {
    "conv2d_forward_kernel": lambda x, w, b, y, **_: Work(
        _size(y), int(w.shape[1] * w.shape[2] * w.shape[3]), "multiply-add over c, p, q", _shape(y)),
    "conv2d_backward_input_kernel": lambda dy, w, dx, **_: Work(
        _size(dx), int(w.shape[0] * w.shape[2] * w.shape[3]), "multiply-add over f, p, q", _shape(dx), True),
    "conv2d_backward_weight_kernel": lambda dy, x, dw, **_: Work(
        _size(dw), int(dy.shape[0] * dy.shape[2] * dy.shape[3]), "multiply-add over n, i, j", _shape(dw)),
    "conv2d_backward_bias_kernel": lambda dy, db, **_: Work(
        _size(db), int(dy.shape[0] * dy.shape[2] * dy.shape[3]), "addition over n, i, j", _shape(db)),
    "matmul_naive_kernel": lambda *a, **_: _matmul(*a),
    "matmul_tiled_kernel": lambda *a, **_: _matmul_tiled(*a),
    "add_bias_kernel": lambda z, b, **_: Work(_size(z), 1, "addition", _shape(z)),
    "column_sum_kernel": lambda m, out, **_: Work(_size(out), int(m.shape[0]), "addition down a column", _shape(out)),
    "relu_forward_kernel": lambda x, y, **_: Work(_size(y), 1, "element", _shape(y)),
    "relu_backward_kernel": lambda dout, x, dx, **_: Work(_size(dx), 1, "element", _shape(dx)),
    "maxpool2x2_forward_kernel": lambda x, y, argmax, **_: Work(_size(y), 4, "window element", _shape(y)),
    "maxpool2x2_backward_kernel": lambda dy, argmax, dx, **_: Work(_size(dx), 1, "element", _shape(dx)),
    "softmax_xent_row_per_thread_kernel": lambda logits, labels, loss, probs, **_: Work(
        int(logits.shape[0]), 3 * int(logits.shape[1]) - 1, "class visited (max, exp-sum, divide passes)",
        _shape(probs)),
    "softmax_xent_backward_kernel": lambda probs, labels, scale, d, **_: Work(_size(d), 1, "element", _shape(d)),
    "sum_tree_kernel": lambda x, partial, *, block, **_: Work(
        _size(x), 1 + int(math.log2(block)), "load, then one halving step each", _shape(partial)),
    "sgd_momentum_kernel": lambda param, *rest, launched, **_: _grid_stride(param, launched=launched),
}


@dataclass(frozen=True)
class LaunchShape:
    """One launch: its configuration (what the code launched) and its Work (MODEL)."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    work: Work | None  # None: no formula for this kernel in WORK

    @property
    def blocks(self) -> int:
        return math.prod(self.grid)

    @property
    def threads_launched(self) -> int:
        return self.blocks * math.prod(self.block)


def _dims(d) -> tuple[int, int, int]:
    d = (d,) if isinstance(d, int) else tuple(int(v) for v in d)
    return (d + (1, 1))[:3]


def launch_shapes(rec) -> list[LaunchShape]:
    """Every launch of ``rec`` (a :class:`nbkit.perf.steps.StepRecord`) with its configuration and Work."""
    shapes = []
    for kernel, grid, block, args in rec.launches:
        name, grid, block = kernel_name(kernel), _dims(grid), _dims(block)
        shape = LaunchShape(name, grid, block, None)
        model = WORK.get(name)
        work = model(*args, launched=shape.threads_launched, block=math.prod(block)) if model else None
        shapes.append(LaunchShape(name, grid, block, work))
    return shapes


def resident_threads(gpu: str | GPU) -> int:
    """The most threads ``gpu`` holds at once: SMs × resident warps per SM × 32 (datasheet limits, MODEL)."""
    gpu = GPUS[gpu] if isinstance(gpu, str) else gpu
    if not gpu.sms or not gpu.arch:
        raise ValueError(f"{gpu.name}: no SM count or architecture recorded in nbkit.perf.roofline.GPUS")
    return gpu.sms * arch_limits(gpu.arch).max_warps_per_sm * WARP_SIZE


def _percent(part: int, whole: int) -> str:
    share = 100 * part / whole
    return "≥100%" if share >= 100 else f"{share:.2g}%"


def _role(kernel: str) -> str:
    """What a launch computes, whichever variant does it: the dense layers' matmul may be the naive kernel at one
    batch size and the tiled one at another where the CPU executor runs the launches (``nn.kernel_backend``)."""
    return "matmul" if kernel.startswith("matmul_") else kernel


def table(records: dict[str, object], gpus: tuple[str, ...] = ("A100 SXM 40GB", "H100 SXM"),
          rows: int | None = None) -> str:
    """Launches of the same step recorded at several batch sizes (``{"batch 4": rec, ...}``), side by side.

    Launches are matched by position (the same network makes the same launches in the same order at any
    batch; the dense layers' matmul may be another variant at another batch size, and then both names are shown);
    identical rows are merged and counted. Sorted by the loop length in the last record, longest
    first; ``rows`` keeps only the first ones (the rest are counted in a last line).
    """
    labels = list(records)
    columns = [launch_shapes(records[k]) for k in labels]
    names = [[s.kernel for s in col] for col in columns]
    if any(len(n) != len(names[0]) or any(_role(a) != _role(b) for a, b in zip(n, names[0])) for n in names[1:]):
        raise ValueError("the records do not make the same launches in the same order: record one network's step")
    merged: dict[tuple, int] = {}
    for shapes in zip(*columns):
        kernels = list(dict.fromkeys(s.kernel.removesuffix("_kernel") for s in shapes))   # one name, or the variants
        key = (" / ".join(kernels),) + tuple((s.blocks, s.threads_launched, s.work) for s in shapes)
        merged[key] = merged.get(key, 0) + 1
    ordered = sorted(merged.items(), key=lambda item: -1 if item[0][-1][2] is None else item[0][-1][2].loop,
                     reverse=True)
    capacity = {g: resident_threads(g) for g in gpus}
    head = f"{'kernel':<29} {'writes':<15} {'n':>2}"
    for label in labels:
        head += f" | {label + ': blocks':>15} {'threads':>8} {'with work':>9} {'loop':>7}"
    head += "".join(f" | {g.split()[0] + ' share':>10}" for g in gpus)
    lines = [head, "-" * len(head)]
    for key, count in ordered[:rows]:
        work = key[-1][2]
        output = "?" if work is None else "×".join(map(str, work.output))
        line = f"{key[0]:<29} {output:<15} {count:>2}"
        for blocks, launched, w in key[1:]:
            loop = "—" if w is None else ("≤" if w.upper_bound else "") + f"{w.loop:,}"
            line += f" | {blocks:>15,} {launched:>8,} {'—' if w is None else f'{w.threads:,}':>9} {loop:>7}"
        line += "".join(f" | {'—' if work is None else _percent(work.threads, capacity[g]):>10}" for g in gpus)
        lines.append(line)
    if rows is not None and len(ordered) > rows:
        rest = ordered[rows:]
        longest = max((k[-1][2].loop for k, _ in rest if k[-1][2] is not None), default=0)
        lines.append(f"... {sum(n for _, n in rest)} more launches, each thread's loop at most {longest:,} "
                     f"in the {labels[-1]} step")
    lines.append("blocks, threads: the launch configurations the code made (counted). with work (threads past the "
                 "kernel's guard), loop (iterations per thread): MODEL from each kernel's source "
                 "(nbkit.perf.parallelism.WORK).")
    lines.append(f"share: threads with work in the {labels[-1]} step / the threads the GPU holds at once, "
                 + "; ".join(f"{g}: {GPUS[g].sms} SMs × {capacity[g] // GPUS[g].sms:,} = {capacity[g]:,}" for g in gpus)
                 + " (MODEL from datasheet limits).")
    return "\n".join(lines)
