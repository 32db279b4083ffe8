"""Data-parallel training: ring all-reduce from scratch in NumPy, then the real engine, ``torch.distributed``.

Part 1 (NumPy, no processes): split a batch over ``p`` ranks, ring all-reduce over simulated ranks
(reduce-scatter, then all-gather), its traffic counted, and a cost model for real links (labelled MODEL).

Part 2 (real processes): the course's LeNet (CPU path; the kernels on GPUs) and PyTorch's LeNet under
``DistributedDataParallel``, trained by ``world`` processes that all-reduce their gradients through
``torch.distributed`` (gloo on CPUs, NCCL on GPUs). Launch, from Python (what notebook 10 and the tests do)::

    results = spawn([RunConfig(model="course", batch=8, steps=3)], world=2)   # results[run][rank]

or from a shell, one process per rank, with PyTorch's launcher (loopback only, on one CPU machine)::

    torchrun --nproc_per_node=2 --master_addr=127.0.0.1 --master_port=29533 -m nbkit.nn.dist --model course

and on a machine with several NVIDIA GPUs (one process per GPU, NCCL; not run for this course so far)::

    NBKIT_MODE=gpu torchrun --standalone --nproc_per_node=NUM_GPUS -m nbkit.nn.dist --backend nccl --model course

Data are SYNTHETIC (random images and labels): these runs prove equalities and measure speed, not accuracy.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np

# ---------------------------------------------------------------- part 1: the idea, in NumPy


class BatchSplitError(ValueError):
    """A global batch that does not split into equal shards, one per rank."""


class WorldSizeError(ValueError):
    """The number of processes is not the number the run was configured for."""


def shard(n: int, world: int, rank: int) -> slice:
    """The rows of a global batch of ``n`` that rank ``rank`` of ``world`` trains on.

    Equal shards are required: each rank's loss is a mean over its shard, and the mean of those means is the
    mean over the whole batch only when every shard has the same size.
    """
    if world < 1 or not 0 <= rank < world:
        raise WorldSizeError(f"rank {rank} is not in a world of {world} ranks (ranks are 0..{world - 1})")
    if n % world:
        lo, hi = n - n % world, n - n % world + world
        raise BatchSplitError(f"a global batch of {n} does not split over {world} ranks: use a multiple of {world} "
                              f"(e.g. {lo or hi} or {hi}); unequal shards would make the average of the ranks' "
                              "gradients differ from the gradient of the whole batch")
    b = n // world
    return slice(rank * b, (rank + 1) * b)


def reduce_scatter_step(bufs: np.ndarray, step: int) -> np.ndarray:
    """One step of the ring's reduce-scatter. ``bufs[r, c]`` is rank r's copy of chunk c, shape (p, p, m).

    At step ``s`` every rank r sends its chunk ``(r - s) mod p`` to rank ``(r + 1) mod p``, which adds it to its
    own copy. All sends of a step happen at once: each rank sends what it held *before* the step.
    """
    p = bufs.shape[0]
    out = bufs.copy()
    for r in range(p):
        c = (r - step) % p
        out[(r + 1) % p, c] += bufs[r, c]
    return out


def all_gather_step(bufs: np.ndarray, step: int) -> np.ndarray:
    """One step of the ring's all-gather: rank r sends chunk ``(r + 1 - s) mod p`` to rank r+1, which overwrites."""
    p = bufs.shape[0]
    out = bufs.copy()
    for r in range(p):
        c = (r + 1 - step) % p
        out[(r + 1) % p, c] = bufs[r, c]
    return out


@dataclass
class RingTrace:
    """What a simulated ring all-reduce did: the result on every rank, the traffic, and the states in between."""

    result: np.ndarray            # (p, n): every rank's copy of the sum
    sent_elements: np.ndarray     # (p,): elements each rank sent
    n_padded: int                 # gradient length after padding to a multiple of p
    states: list = field(default_factory=list)  # (phase, step, bufs) after each step, bufs shaped (p, p, m)
    reduce_step: Callable = reduce_scatter_step


def ring_allreduce(vectors: np.ndarray, reduce_step: Callable = reduce_scatter_step, keep_states: bool = False) -> RingTrace:
    """Sum ``vectors[r]`` (one gradient per simulated rank) so that every rank ends with the sum.

    The gradient is padded to a multiple of p and cut into p chunks; p-1 reduce-scatter steps leave rank r
    with the complete sum of chunk (r+1) mod p; p-1 all-gather steps pass the complete chunks around the ring.
    Every step, each rank sends one chunk of n/p elements: 2(p-1) n/p in all, whatever p is.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] < 1:
        raise ValueError(f"expected a (ranks, n) array of gradients, got shape {vectors.shape}")
    p, n = vectors.shape
    m = -(-n // p)
    padded = np.zeros((p, p * m), dtype=vectors.dtype)
    padded[:, :n] = vectors
    bufs = padded.reshape(p, p, m)
    sent = np.zeros(p, dtype=np.int64)
    states = [("start", 0, bufs.copy())] if keep_states else []
    for phase, fn in (("reduce-scatter", reduce_step), ("all-gather", all_gather_step)):
        for s in range(p - 1):
            bufs = fn(bufs, s)
            sent += m  # every rank sends exactly one chunk per step
            if keep_states:
                states.append((phase, s, bufs.copy()))
    return RingTrace(bufs.reshape(p, p * m)[:, :n].copy(), sent, p * m, states, reduce_step)


def ring_sent_fraction(p: int) -> float:
    """Fraction of the gradient each rank sends (and receives) in a ring all-reduce: 2(p-1)/p."""
    return 2 * (p - 1) / p


def ring_allreduce_time(nbytes: float, p: int, bandwidth: float, latency: float = 0.0) -> float:
    """MODEL: seconds for a ring all-reduce of ``nbytes`` over ``p`` ranks (alpha-beta model).

    2(p-1) steps, each paying the link latency ``latency`` (s) and moving nbytes/p at ``bandwidth`` (bytes/s,
    one direction: in a ring every rank sends and receives at the same time).
    """
    if p < 1 or nbytes < 0 or bandwidth <= 0 or latency < 0:
        raise ValueError(f"need p >= 1, nbytes >= 0, bandwidth > 0, latency >= 0; got {p}, {nbytes}, {bandwidth}, {latency}")
    return 2 * (p - 1) * latency + ring_sent_fraction(p) * nbytes / bandwidth


# Peak bandwidth per direction, bytes/s, from the specifications (MODEL inputs; real transfers reach less).
LINKS = {
    "PCIe 4.0 x16": (32e9, "16 GT/s x 16 lanes, 128b/130b: 31.5 GB/s per direction; NVIDIA A100 PCIe datasheet: "
                           "'PCIe Gen4: 64 GB/s' (both directions)"),
    "NVLink 3 (A100)": (300e9, "NVIDIA A100 datasheet: NVLink 600 GB/s per GPU, both directions (12 links)"),
    "NVLink 4 (H100 SXM)": (450e9, "NVIDIA H100 datasheet: NVLink 900 GB/s per GPU, both directions (18 links)"),
}


def scaling_model(nbytes: float, step_compute_s: float, ps, bandwidth: float, latency: float = 0.0,
                  overlap: bool = False) -> np.ndarray:
    """MODEL: speed-up over one GPU of p data-parallel GPUs, each with the same per-GPU batch (weak scaling).

    A step costs the compute time plus the all-reduce (``overlap=False``), or, at best, the larger of the two
    (``overlap=True``): DDP reduces the buckets of the *last* layers, whose gradients backward computes first, while
    backward still computes the earlier layers' gradients. Full overlap is a best case, so that curve is an upper
    bound on the speed-up (a model that fits in one bucket, like LeNet, overlaps nothing).
    """
    ps = np.asarray(ps)
    comm = np.array([ring_allreduce_time(nbytes, int(p), bandwidth, latency) for p in ps])
    step = np.maximum(step_compute_s, comm) if overlap else step_compute_s + comm
    return ps * step_compute_s / step


# ---------------------------------------------------------------- part 2: the real engine


@dataclass
class Net:
    """What data-parallel training needs from a network, and nothing more."""

    loss_and_grads: Callable  # (x, y) -> float: forward, loss, backward; leaves the gradients in grads()
    grads: Callable           # () -> list of gradient arrays, the network's own memory (NumPy or device arrays)
    step: Callable            # () -> None: the optimiser step
    state: Callable           # () -> list of host copies of the parameters


def lenet_pair(seed: int = 0, backend: str = "cpu"):
    """``(course_net, torch_model)``: the course's LeNet as a :class:`Net` and PyTorch's, same initial weights.

    The ONE place where this module touches the course's layers (``nbkit.nn.lenet``, ``nbkit.nn.cpu``,
    ``nbkit.nn.layers``): if their names change, only this function changes. ``backend``: ``"cpu"`` (the CPU
    path) or ``"kernels"`` (the CUDA kernels; on a GPU their gradients stay in device memory).
    """
    from nbkit.nn import lenet

    if backend == "cpu":
        from nbkit.nn.cpu import CPU as ops

        def labels(y):
            return y
    elif backend == "kernels":
        from numba import cuda

        from nbkit.nn.kernel_backend import KERNEL_BACKEND as ops
        labels = cuda.to_device
    else:
        raise ValueError(f"backend must be 'cpu' or 'kernels', got {backend!r}")
    model, torch_model = lenet.twin_models(ops, seed=seed)  # no PyTorch optimiser: a course rank trains only model
    opt = lenet.optimizer(model)

    def loss_and_grads(x, y):
        loss = model.loss(ops.asarray(x), labels(y))
        model.backward()
        return float(loss)

    return Net(loss_and_grads, lambda: [p.grad for p in model.params()], opt.step, model.state), torch_model


def as_torch(a):
    """A torch tensor on the SAME memory as ``a`` (no copy): NumPy via ``torch.from_numpy``; a CUDA device array
    (Numba's, CuPy's: anything with ``__cuda_array_interface__``) via ``torch.as_tensor``, which reads that
    interface and wraps the device pointer. An all-reduce on the result updates ``a`` in place."""
    import torch

    if hasattr(a, "__cuda_array_interface__"):
        t = torch.as_tensor(a, device="cuda")  # zero-copy on the GPU (DLPack: torch.utils.dlpack.from_dlpack)
    else:
        t = torch.from_numpy(a)
    if not t.is_contiguous():
        raise ValueError(f"gradient of shape {tuple(t.shape)} is not contiguous: collectives need one block of memory")
    return t


def allreduce_mean_(grads: list, world: int, bucket=None) -> None:
    """Average the gradients of all ranks, in place: sum with an all-reduce, then divide by the world size.

    ``bucket=None``: one all-reduce per gradient, straight on the gradients' memory (no copy). Each call pays
    the collective's fixed latency, so with many small tensors it is faster to copy them into one flat
    ``bucket`` tensor (see :func:`make_bucket`), all-reduce that once and copy back: what DDP does.
    (gloo has no AVG reduction; NCCL has, but SUM then divide works everywhere and is what DDP does.)
    """
    import torch.distributed as dist

    if bucket is None:
        for g in grads:
            t = as_torch(g)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(world)
        return
    views, start = [], 0
    for g in grads:
        t = as_torch(g)
        views.append((t, bucket[start:start + t.numel()].view(t.shape)))
        start += t.numel()
    if start != bucket.numel():
        raise ValueError(f"bucket holds {bucket.numel()} values but the gradients have {start}")
    for t, v in views:
        v.copy_(t)
    dist.all_reduce(bucket, op=dist.ReduceOp.SUM)
    bucket.div_(world)
    for t, v in views:
        t.copy_(v)


def make_bucket(grads: list):
    """One flat float32 tensor, on the gradients' device, big enough for all of ``grads``."""
    import torch

    first = as_torch(grads[0])
    return torch.empty(sum(as_torch(g).numel() for g in grads), dtype=first.dtype, device=first.device)


def synthetic_batch(k: int, global_batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC data: batch number ``k``, random 3x32x32 float32 images with random labels 0..9.

    Each batch comes from its own seed ``(seed, k)``, so batch k is the same however many steps a run takes.
    """
    rng = np.random.default_rng([seed, k])
    x = rng.standard_normal((global_batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=global_batch).astype(np.int64)
    return x, y


@dataclass
class RunConfig:
    """One data-parallel run. ``batch`` is per rank; rank r trains on rows r*batch..(r+1)*batch of each batch."""

    model: str = "course"          # "course" (the course's LeNet) or "torch" (PyTorch's LeNet under DDP)
    bucket: bool = True            # course model: one all-reduce of a flat copy (True) or one per tensor, no copy
    batch: int = 8                 # per rank
    steps: int = 3                 # steps whose parameters are compared with one process
    timed_steps: int = 0           # further steps, timed (throughput)
    solo_baseline: bool = False    # rank 0 also times one process alone at the global batch, while the others wait
    seed: int = 0
    lr: float = 0.001
    momentum: float = 0.9
    backend: str = "gloo"          # "gloo" (CPUs) or "nccl" (GPUs)
    world_size: int | None = None  # expected number of ranks; None: whatever was launched
    global_batch: int | None = None  # default batch * world; set to check that it splits
    threads: int = 1               # torch intra-op threads per rank
    timeout_s: float = 60.0        # collectives and the whole launch give up after this long
    fault: str | None = None       # "raise" or "exit": injected at step 1 on ``fault_rank`` (for the tests)
    fault_rank: int = 1


def _train_torch(cfg: RunConfig, world: int, device: str, distributed: bool):
    import torch
    import torch.nn.functional as F

    _, model = lenet_pair(cfg.seed)  # PyTorch's LeNet, initialised under torch.manual_seed(cfg.seed)
    model = model.to(device)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)

    def step(xb, yb):
        opt.zero_grad()
        loss = F.cross_entropy(model(torch.from_numpy(xb).to(device)), torch.from_numpy(yb).to(device))
        loss.backward()  # DDP all-reduces (averages) the gradients here, bucket by bucket
        opt.step()
        return float(loss.detach())

    def state():
        return [p.detach().cpu().numpy().copy() for p in model.parameters()]

    return step, state


def _sync_numba() -> None:
    """Wait for every kernel Numba queued on this process's GPU."""
    from numba import cuda

    cuda.synchronize()


def _sync_torch() -> None:
    """Wait for every operation torch queued on this process's GPU (NCCL's collectives run on its stream)."""
    import torch

    torch.cuda.synchronize()


def _train_course(cfg: RunConfig, rank: int, world: int, distributed: bool, kernels: bool):
    net, _ = lenet_pair(cfg.seed, "kernels" if kernels else "cpu")
    comm = [0.0]
    bucket = []

    def step(xb, yb):
        loss = net.loss_and_grads(xb, yb)
        if distributed:
            if kernels:  # the gradient kernels must have finished before NCCL reads their output, and before
                _sync_numba()  # the clock starts: comm_s must not include the backward pass still running
            t0 = time.perf_counter()
            if cfg.bucket and not bucket:
                bucket.append(make_bucket(net.grads()))
            allreduce_mean_(net.grads(), world, bucket[0] if cfg.bucket else None)
            if kernels:  # NCCL only queues the all-reduce on torch's stream: wait for it before stopping the clock
                _sync_torch()
            comm[0] += time.perf_counter() - t0
        net.step()
        return loss

    return step, net.state, comm


def train(cfg: RunConfig, rank: int = 0, world: int = 1, distributed: bool = False, device: str = "cpu") -> dict:
    """Train ``cfg.steps`` steps (then ``cfg.timed_steps`` timed ones) as rank ``rank`` of ``world``.

    With ``world=1`` and ``distributed=False`` this is the single-process reference at the global batch.
    """
    global_batch = cfg.global_batch or cfg.batch * world
    rows = shard(global_batch, world, rank)
    if cfg.model == "course":
        step, state, comm = _train_course(cfg, rank, world, distributed, device.startswith("cuda"))
    elif cfg.model == "torch":
        step, state = _train_torch(cfg, world, device, distributed)
        comm = None  # DDP overlaps its all-reduce with backward: not separable by a timer here
    else:
        raise ValueError(f"model must be 'course' or 'torch', got {cfg.model!r}")
    losses = []
    for k in range(cfg.steps):
        if cfg.fault and rank == cfg.fault_rank and k == 1:
            if cfg.fault == "exit":
                os._exit(3)  # dies without a Python traceback, like a process killed by the OOM killer
            raise RuntimeError(f"injected fault on rank {rank} at step {k}")
        x, y = synthetic_batch(k, global_batch, cfg.seed)
        losses.append(step(x[rows], y[rows]))
    params = state()
    out = {"rank": rank, "world": world, "losses": np.array(losses), "params": params}
    if cfg.timed_steps:
        if comm:
            comm[0] = 0.0
        batches = [synthetic_batch(k, global_batch, cfg.seed) for k in range(cfg.steps, cfg.steps + cfg.timed_steps)]
        if distributed:
            _barrier()
        t0 = time.perf_counter()
        for x, y in batches:
            step(x[rows], y[rows])
        if distributed:
            _barrier()
        elapsed = time.perf_counter() - t0
        out.update(seconds=elapsed, samples_per_s=cfg.timed_steps * global_batch / elapsed)
        if comm:
            out["comm_s"] = comm[0]
    return out


def time_allreduce(world: int, repeats: int = 10) -> dict:
    """Seconds per all-reduce of LeNet's gradient (zeros of its 10 shapes): per tensor (no copy) and bucketed.

    Call on every rank of an initialised process group; the ranks start together after a barrier.
    """
    _, torch_model = lenet_pair()
    grads = [np.zeros(tuple(p.shape), dtype=np.float32) for p in torch_model.parameters()]
    out = {}
    for name, bucket in (("per_tensor", None), ("bucket", make_bucket(grads))):
        allreduce_mean_(grads, world, bucket)  # warm-up: gloo sets up its buffers on first use
        _barrier()
        t0 = time.perf_counter()
        for _ in range(repeats):
            allreduce_mean_(grads, world, bucket)
        out[f"allreduce_{name}_s"] = (time.perf_counter() - t0) / repeats
    return out


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def _check_runs(cfgs: list[RunConfig], world: int, rank: int | None = None) -> None:
    """Clear errors, before any collective, for a wrong world size or a batch that does not split."""
    who = "" if rank is None else f"rank {rank}: "
    if not cfgs:
        raise ValueError("no run configured")
    if len({(c.backend, c.timeout_s, c.threads) for c in cfgs}) > 1:
        raise ValueError("runs launched together must share backend, timeout_s and threads")
    for c in cfgs:
        if c.world_size is not None and c.world_size != world:
            raise WorldSizeError(f"{who}the run is configured for {c.world_size} ranks but {world} were launched")
        shard(c.global_batch or c.batch * world, world, rank or 0)


def rank_device(backend: str, local_rank: int) -> str:
    """The device of the rank with local index ``local_rank`` on its machine, made current for torch and Numba.

    gloo: ``"cpu"``. NCCL: ``"cuda:{local_rank}"``, one GPU per process (NCCL refuses two ranks on one GPU);
    ``local_rank`` is torchrun's LOCAL_RANK or :func:`spawn`'s process index.
    """
    if backend != "nccl":
        return "cpu"
    import torch

    count = torch.cuda.device_count()
    if not 0 <= local_rank < count:
        raise WorldSizeError(f"local rank {local_rank} has no GPU: this machine has {count} visible GPU(s) and NCCL "
                             "needs one GPU per process; launch at most that many processes per machine")
    torch.cuda.set_device(local_rank)
    from numba import cuda

    cuda.select_device(local_rank)
    return f"cuda:{local_rank}"


def run_rank(cfgs: list[RunConfig], rank: int, world: int, init_method: str, local_rank: int = 0) -> list[dict]:
    """Everything one rank does: check the runs, join the process group, train each run in turn, leave."""
    import torch
    import torch.distributed as dist

    _check_runs(cfgs, world, rank)
    first = cfgs[0]
    torch.set_num_threads(first.threads)
    device = rank_device(first.backend, local_rank)
    dist.init_process_group(first.backend, init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=first.timeout_s))
    try:
        results = []
        for cfg in cfgs:
            out = {}
            if cfg.solo_baseline:
                wait_cpu0 = time.process_time()
                if rank == 0:
                    solo = train(RunConfig(**{**asdict(cfg), "batch": cfg.batch * world, "fault": None}), device=device)
                    out["solo_samples_per_s"] = solo["samples_per_s"]
                dist.barrier()  # the other ranks wait here, blocked in a socket read (see cpu_while_waiting_s)
                out["cpu_while_waiting_s"] = time.process_time() - wait_cpu0
            out.update(train(cfg, rank, world, distributed=True, device=device))
            if cfg.timed_steps and cfg.model == "course" and device == "cpu":
                out.update(time_allreduce(world))
            results.append(out)
        dist.barrier()  # every rank done before any leaves: gloo aborted a rank leaving while another still ran
        return results
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now (chosen by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world: int, port: int, cfgs: list[RunConfig], outdir: str) -> None:
    """Entry point of each spawned process; writes its results for :func:`spawn` to collect."""
    for i, out in enumerate(run_rank(cfgs, rank, world, f"tcp://127.0.0.1:{port}", local_rank=rank)):  # one machine
        params = out.pop("params")
        np.savez(Path(outdir) / f"run{i}_rank{rank}.npz", **{f"param{j}": p for j, p in enumerate(params)},
                 **{k: np.asarray(v) for k, v in out.items()})


def _error_file(outdir: str | Path, rank: int) -> Path:
    """Where a spawned rank that raised leaves its traceback for :func:`_watch` (see :func:`_spawned_then_exit`)."""
    return Path(outdir) / f"error_rank{rank}.txt"


def _spawned_then_exit(rank: int, world: int, port: int, cfgs: list[RunConfig], outdir: str) -> None:
    """:func:`_spawned`, then the end of the process without the interpreter's teardown: ``os._exit(0)``, or,
    after an exception, its traceback written to :func:`_error_file` and ``os._exit(1)``.

    Why: a rank has imported torch (with torch._dynamo, which ``torch.optim`` and DDP load) and numba, about 2,500
    modules, and tearing them down at a normal exit cost 1.2-1.4 s of CPU per rank on a 2-core machine, after
    the results (or the error) were written. A failure pays it as a success does: a rank that raised, and its
    peers, which raise a moment later in a collective. (torch.multiprocessing would record the traceback in its
    own error file, then end with ``sys.exit(1)`` and the teardown.) KeyboardInterrupt (the parent stopping the
    ranks) still propagates.
    """
    try:
        _spawned(rank, world, port, cfgs, outdir)
        code = 0
    except Exception:  # noqa: BLE001 - any failure of this rank: its traceback goes to spawn, which names the rank
        _error_file(outdir, rank).write_text(traceback.format_exc(), encoding="utf-8")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _load(path: Path) -> dict:
    with np.load(path) as z:
        n = sum(k.startswith("param") for k in z.files)
        d = {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files if not k.startswith("param")}
        d["params"] = [z[f"param{i}"] for i in range(n)]
    return d


class RankFailed(RuntimeError):
    """A rank raised, died or hung; the run was stopped. ``rank`` names it (None when several hung)."""

    def __init__(self, rank: int | None, message: str, details: str = ""):
        super().__init__(message)
        self.rank = rank
        self.details = details


_PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout",
              "dist_backend_error", "distbackenderror", "gloo")


def _watch(ctx, world: int, limit: float, outdir: str | Path, grace: float = 3.0) -> None:
    """Wait for the spawned ranks; on a failure, stop them all and raise :class:`RankFailed` naming the culprit.

    When one rank fails, its peers usually fail a moment later inside a collective ("connection closed by
    peer"). The culprit is the rank whose own error is not such a communication error, or that died without a
    Python error (no traceback in ``outdir``); ranks still running after ``grace`` seconds are killed.
    """
    import multiprocessing.connection

    procs = ctx.processes
    deadline = time.monotonic() + limit
    while any(p.exitcode is None for p in procs) and all(p.exitcode in (None, 0) for p in procs):
        if time.monotonic() > deadline:
            alive = [r for r, p in enumerate(procs) if p.is_alive()]
            for p in procs:
                p.kill()
            raise RankFailed(alive[0] if len(alive) == 1 else None,
                             f"rank(s) {alive} of {world} were still running {limit:.0f} s after the launch: all "
                             "ranks were stopped")
        multiprocessing.connection.wait([p.sentinel for p in procs if p.exitcode is None], timeout=0.5)
    if all(p.exitcode == 0 for p in procs):
        return
    end = time.monotonic() + grace
    while any(p.exitcode is None for p in procs) and time.monotonic() < end:
        multiprocessing.connection.wait([p.sentinel for p in procs if p.exitcode is None], timeout=0.2)
    stopped = [r for r, p in enumerate(procs) if p.is_alive()]
    for r in stopped:
        procs[r].kill()
        procs[r].join(5)
    errors = {}
    for r, p in enumerate(procs):
        if r in stopped or p.exitcode == 0:
            continue
        error_file = _error_file(outdir, r)
        if error_file.is_file():  # written by the rank (_spawned_then_exit): a traceback
            trace = error_file.read_text(encoding="utf-8")
            last = [line for line in trace.strip().splitlines() if line.strip()][-1].strip()
            last = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\] ", "", last)  # gloo's source location
            cut = last.find(". ", 40)
            errors[r] = ("raised", last if cut < 0 else last[:cut + 1], trace)
        else:
            code = p.exitcode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            errors[r] = ("died", how, "")

    def peer_lost(r):
        return errors[r][0] == "raised" and any(k in errors[r][2].lower() for k in _PEER_LOST)

    order = sorted(errors, key=lambda r: (peer_lost(r), errors[r][0] == "died", r))
    root = order[0]
    kind, what, trace = errors[root]
    if kind == "raised":
        msg = f"rank {root} of {world} failed: {what}"
    else:
        msg = (f"rank {root} of {world} died: it {what} without raising a Python error (a crash, os._exit, the "
               "out-of-memory killer, or a failure while starting: see its output above)")
    others = [f"rank {r} then {'failed: ' if errors[r][0] == 'raised' else ''}{errors[r][1]}" for r in order[1:]]
    if stopped:
        others.append(f"rank(s) {stopped} were stopped")
    raise RankFailed(root, msg + (". " + "; ".join(others) if others else ""), trace)


# What every rank imports: the fork server (see _start_method) imports it once, instead of each rank; then the
# module that lets the server itself end without tearing all that down (1.2-1.4 s of CPU, as for a rank).
_PRELOAD = ["torch", "torch.distributed", "torch._dynamo", "nbkit.nn.dist", "nbkit.nn.cpu", "nbkit.nn.lenet",
            "nbkit.nn._forkserver_exit"]
_forkserver_env: dict | None = None  # the rank environment of the fork server this process started, if any


def _start_method(backend: str, env: dict) -> str:
    """``"forkserver"`` for gloo ranks in simulator mode on Linux, else ``"spawn"``.

    Why: a spawned rank is a fresh interpreter that spends about 2 s of CPU importing torch (with torch._dynamo,
    which ``torch.optim`` loads), numba and nbkit before its first step (measured here: 3.9 s for 2 ranks that
    train nothing; notebook 10's run 7.0-7.5 s, then 3.8-4.0 s from a fork server and 1.5 s for a second run).
    A fork server imports them once (``_PRELOAD``) and forks every rank from that state, in this launch and in
    every later one of this process. It starts at the first such launch, in that launch's rank environment
    (threads); a launch that asks for another environment, or finds a fork server something else started,
    spawns. Spawned always: NCCL ranks, every rank where a GPU is in use (importing nbkit initialises the CUDA
    driver, whose state a forked process must not inherit; not tried on a GPU so far), and every rank outside
    Linux (macOS's system libraries are not safe to fork once loaded: Python spawns there by default).
    """
    global _forkserver_env
    import multiprocessing.forkserver as forkserver

    from nbkit.core.mode import MODE

    if backend != "gloo" or not MODE.is_simulator or sys.platform != "linux":
        return "spawn"
    if _forkserver_env is None:
        if getattr(forkserver._forkserver, "_forkserver_pid", None) is not None:
            return "spawn"  # not ours: what it imported and its environment are unknown
        forkserver.set_forkserver_preload(_PRELOAD)
        _forkserver_env = dict(env)
    return "forkserver" if _forkserver_env == env else "spawn"


def spawn(cfgs: RunConfig | list[RunConfig], world: int = 2) -> list[list[dict]]:
    """Run each config in turn on ``world`` spawned processes (127.0.0.1, a free port), one process group.

    With ``backend="nccl"`` process r uses GPU r (``cuda:r``), so ``world`` is at most the number of GPUs.

    Returns ``results[run][rank]``. Several runs share one start-up: each spawned process spends seconds
    importing torch and numba (gloo ranks in simulator mode fork from a server that imported them once, in this
    launch and later ones: :func:`_start_method`). Bounded: a rank that raises or dies stops all the others at
    once and raises :class:`RankFailed` naming it; a rank stuck in a collective gives up after ``timeout_s`` (gloo's timeout),
    and if the processes have not finished ``timeout_s`` + 60 s (start-up) after the launch, all are stopped.
    """
    import torch.multiprocessing as mp

    cfgs = [cfgs] if isinstance(cfgs, RunConfig) else list(cfgs)
    _check_runs(cfgs, world)
    threads = str(cfgs[0].threads)
    env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    saved = {k: os.environ.get(k) for k in env}
    limit = cfgs[0].timeout_s + 60.0
    with tempfile.TemporaryDirectory(prefix="nbkit-dist-") as outdir:
        os.environ.update(env)  # inherited by the children (their BLAS reads it at import), restored below
        try:
            ctx = mp.start_processes(_spawned_then_exit, args=(world, free_port(), cfgs, outdir), nprocs=world, join=False,
                                     start_method=_start_method(cfgs[0].backend, env))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            _watch(ctx, world, limit, outdir)
        finally:  # also on KeyboardInterrupt: never leave ranks behind
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                    p.join(5)
        return [[_load(Path(outdir) / f"run{i}_rank{r}.npz") for r in range(world)] for i in range(len(cfgs))]


def max_param_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest absolute difference between two parameter lists of the same shapes."""
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise ValueError("parameter lists differ in length or shapes")
    return max(float(np.abs(x.astype(np.float64) - y).max()) for x, y in zip(a, b))


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m nbkit.nn.dist``: one rank, configured by torchrun's RANK, WORLD_SIZE, LOCAL_RANK."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=("course", "torch"), default="course")
    ap.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    ap.add_argument("--batch", type=int, default=8, help="per rank")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--timed-steps", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except KeyError:
        print("nbkit.nn.dist: RANK and WORLD_SIZE are not set: start it with torchrun (see the module docstring)",
              file=sys.stderr)
        return 2
    cfg = RunConfig(model=args.model, backend=args.backend, batch=args.batch, steps=args.steps,
                    timed_steps=args.timed_steps, timeout_s=args.timeout)
    try:
        out = run_rank([cfg], rank, world, "env://", int(os.environ.get("LOCAL_RANK", 0)))[0]
    except Exception:  # noqa: BLE001 - any failure of this rank: print it, exit 1, and torchrun names the rank
        traceback.print_exc()
        return 1
    digest = sum(float(np.abs(p).sum()) for p in out["params"])
    line = (f"rank {rank}/{world} {cfg.model} {cfg.backend}: losses {np.round(out['losses'], 4).tolist()}, "
            f"sum|params| {digest:.6f}, {out.get('samples_per_s', float('nan')):.0f} samples/s (SYNTHETIC data)\n")
    # One write per line: all ranks share torchrun's stdout, and print() writes the text and the newline
    # separately, so two ranks' lines could interleave (seen here). A short write to a pipe is atomic.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), line.encode())
    return 0


def _main_then_exit(argv: list[str] | None = None) -> None:
    """:func:`main`, then the end of the process with its exit code and without the interpreter's teardown of
    torch and numba (1.2-1.4 s of CPU per rank, see :func:`_spawned_then_exit`); torchrun reads the code."""
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _main_then_exit()
