"""Training throughput of the course's LeNet against PyTorch, measured in one run, printed as ratios.

    python -m nbkit.perf.bench            # CPU path vs PyTorch (CPU) at batch 4 and 64; on a GPU also the kernels
    python -m nbkit.perf.bench --quick    # fewer steps (a smoke test)

Goals (issue 11): CPU path >= 1.0x PyTorch CPU at batch 4 and >= 0.75x at batch 64. On a GPU: the kernel
model vs PyTorch CUDA at batch 64 and 256 (goal at 256: a step in at most 2x PyTorch's time, ratio >= 0.5x),
and the best of the course's SGEMM kernels vs ``torch.matmul``. The load average is printed: on a shared
machine other processes take cores from both sides, PyTorch's threads most. Both sides
are timed in the same process, in alternating passes over the same random batches (each side's figure is
the median of its passes; the spread of the ratio over the rounds is printed); only ratios of numbers
measured in this run are printed. This is a script, not a test: shared machines are too noisy for
timed assertions.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from nbkit.core.mode import MODE


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _time_steps(step, batches, warmup: int) -> float:
    """Seconds per step: the median of three timed passes over ``batches`` after ``warmup`` steps."""
    for x, y in batches[:warmup]:
        step(x, y)
    passes = []
    for _ in range(3):
        t0 = time.perf_counter()
        for x, y in batches:
            step(x, y)
        passes.append((time.perf_counter() - t0) / len(batches))
    return float(np.median(passes))


def pools_may_spin() -> bool:
    """Whether a thread pool of this process may keep spinning after a call: PyTorch's intra-op pool, or
    OpenBLAS's, with more than one thread.

    OpenBLAS takes its thread count at load from ``OPENBLAS_NUM_THREADS``, else ``GOTO_NUM_THREADS``, else
    ``OMP_NUM_THREADS``, else one per core. With one thread each (as in ``course.sh test``, whose workers share
    the cores) the calling thread does all the work and nothing spins, so :func:`_time_pair` need not wait.
    """
    import torch

    if torch.get_num_threads() > 1:
        return True
    for var in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip():
            return os.environ[var].strip() != "1"
    return (os.cpu_count() or 1) > 1


def _time_pair(ours, ours_batches, theirs, their_batches, warmup: int, rounds: int = 5,
               settle: float = 0.2) -> tuple[float, float, list]:
    """Seconds per step of both sides, each the median of ``rounds`` passes timed alternately (ours, theirs;
    theirs, ours; ...), and each round's ratio: a load change during the run reaches both sides alike, where
    timing one side after the other would hand it to one of them.

    Each pass starts after ``settle`` seconds idle: a side's thread pools (OpenBLAS, OpenMP) keep spinning for a
    while after its last call: measured here, PyTorch's batch-64 pass that started at once ran at 7,000-10,000
    img/s, one that started 0.2 s later at 10,000-14,000, beside 12,000-15,000 timed alone."""
    for step, batches in ((ours, ours_batches), (theirs, their_batches)):
        for x, y in batches[:warmup]:
            step(x, y)
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    sides = [("ours", ours, ours_batches), ("theirs", theirs, their_batches)]
    for r in range(rounds):
        for name, step, batches in (sides if r % 2 == 0 else sides[::-1]):
            time.sleep(settle)
            t0 = time.perf_counter()
            for x, y in batches:
                step(x, y)
            times[name].append((time.perf_counter() - t0) / len(batches))
    per_round = [t / o for o, t in zip(times["ours"], times["theirs"])]
    return float(np.median(times["ours"])), float(np.median(times["theirs"])), per_round


def _torch_step(model, opt):
    import torch

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _ours_step(model, opt):
    def step(x, y):
        model.loss(x, y)
        model.backward()
        opt.step()

    return step


def _batches(n_steps: int, batch: int, seed: int = 0):
    r = np.random.default_rng(seed)
    return [(r.uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32), r.integers(0, 10, batch))
            for _ in range(n_steps)]


def cpu_ratios(batch_sizes=(4, 64), steps: dict | None = None, backend: str = "cpu", rounds: int = 5,
               settle: float | None = None) -> list[dict]:
    """Images per second of a course LeNet and of PyTorch on the CPU, and their ratio, per batch size.

    ``backend="cpu"``: the CPU path (:mod:`nbkit.nn.cpu`, BLAS and compiled loops, the optimised yardstick);
    ``backend="kernels"``: the course's CUDA kernels, compiled for the CPU by the executor
    (:func:`nbkit.core.launch.compiled_launches`); its first steps (warm-up) pay the compilation.
    ``rounds`` and ``settle``: see :func:`_time_pair`; ``settle=None``: 0.2 s where a thread pool may spin
    (:func:`pools_may_spin`), else none (``course.sh test`` runs notebook 08 this way: 2.4 s less idle there).
    """
    import contextlib

    import torch

    from nbkit.core.launch import compiled_launches
    from nbkit.nn import lenet
    from nbkit.nn.cpu import CPU
    from nbkit.nn.kernel_backend import KERNEL_BACKEND

    if backend not in ("cpu", "kernels"):
        raise ValueError(f"backend must be 'cpu' or 'kernels', got {backend!r}")
    steps = steps or {4: 300, 64: 40}
    if settle is None:
        settle = 0.2 if pools_may_spin() else 0.0
    rows = []
    for batch in batch_sizes:
        data = _batches(steps.get(batch, 40), batch)
        model, opt, tmodel, topt = lenet.twins(CPU if backend == "cpu" else KERNEL_BACKEND)
        tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
        with compiled_launches() if backend == "kernels" else contextlib.nullcontext():
            ours, theirs, per_round = _time_pair(_ours_step(model, opt), data, _torch_step(tmodel, topt), tdata,
                                                 warmup=5, rounds=rounds, settle=settle)
        rows.append({"batch": batch, "ours_img_s": batch / ours, "torch_img_s": batch / theirs,
                     "ratio": theirs / ours, "round_ratios": per_round})
    return rows


def gpu_ratios(batch: int = 256, steps: int = 20, gemm: bool = True) -> dict:
    """Kernel LeNet vs PyTorch on the GPU at ``batch``, and (``gemm``) the best SGEMM kernel vs torch.matmul."""
    from nbkit.nn.torchdev import strict_float32

    with strict_float32():  # TF32 off in cuBLAS and cuDNN: float32 against float32
        return _gpu_ratios(batch, steps, gemm)


def _gpu_ratios(batch: int, steps: int, gemm: bool) -> dict:
    import torch
    from numba import cuda

    from nbkit.nn import lenet
    from nbkit.perf.gflops import matmul_gflops

    data = _batches(steps, batch)
    tmodel = lenet.build_torch().cuda()
    model = lenet.build()
    lenet.copy_from_torch(model, tmodel)
    ddata = [(cuda.to_device(x), cuda.to_device(y)) for x, y in data]
    step = _ours_step(model, lenet.optimizer(model))

    def synced(x, y):
        step(x, y)
        cuda.synchronize()

    ours = _time_steps(synced, ddata, warmup=3)
    tstep = _torch_step(tmodel, torch.optim.SGD(tmodel.parameters(), lr=lenet.LR, momentum=lenet.MOMENTUM))
    tdata = [(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()) for x, y in data]

    def tsynced(x, y):
        tstep(x, y)
        torch.cuda.synchronize()

    theirs = _time_steps(tsynced, tdata, warmup=3)
    row = {"batch": batch, "ours_img_s": batch / ours, "torch_img_s": batch / theirs, "ratio": theirs / ours,
           "gemm": None, "best_sgemm_ratio": None}
    if gemm:
        table = matmul_gflops(sizes=(1024, 2048))
        row["gemm"] = table
        if "torch" in table[0]:
            row["best_sgemm_ratio"] = max(max(r["naive"], r["tiled"]) / r["torch"] for r in table if "torch" in r)
    return row


def _spread(row: dict) -> str:
    """The lowest and highest ratio of the rounds: how much the machine moved the figure during this run."""
    r = row["round_ratios"]
    return f" (rounds {min(r):.2f}-{max(r):.2f}x)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps: checks the script, not the speed")
    args = parser.parse_args(argv)
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"hardware: {_cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; nbkit mode {MODE.name}; load average {load:.1f} at start"
          + ("  (busy machine: ratios are unreliable)" if load > (os.cpu_count() or 1) else ""))
    steps = {4: 20, 64: 4} if args.quick else None
    timing = {"rounds": 3, "settle": 0.0} if args.quick else {}  # --quick checks the script, not the speed
    print("LeNet training throughput (forward + backward + SGD step), random CIFAR-shaped batches:")
    goals = {4: 1.0, 64: 0.75}
    for row in cpu_ratios(steps=steps, **timing):
        goal = goals.get(row["batch"])
        verdict = "" if goal is None else f"  (goal >= {goal:.2f}x: {'met' if row['ratio'] >= goal else 'NOT met'})"
        print(f"  CPU, batch {row['batch']:3d}: CPU path {row['ours_img_s']:8.1f} img/s, PyTorch CPU "
              f"{row['torch_img_s']:8.1f} img/s, ratio {row['ratio']:.2f}x{_spread(row)}{verdict}")
    if MODE.name != "gpu":
        print("  The course's CUDA kernels, compiled for the CPU by nbkit's executor (MCUDA thread loops):")
        kernel_steps = {4: 10, 64: 3} if args.quick else {4: 100, 64: 10}
        for row in cpu_ratios(steps=kernel_steps, backend="kernels", **timing):
            verdict = (f"  (goal >= 0.25x: {'met' if row['ratio'] >= 0.25 else 'NOT met'})"
                       if row["batch"] == 64 else "")
            print(f"  CPU, batch {row['batch']:3d}: kernels {row['ours_img_s']:8.1f} img/s, PyTorch CPU "
                  f"{row['torch_img_s']:8.1f} img/s, ratio {row['ratio']:.2f}x{_spread(row)}{verdict}")
    from nbkit.nn.torchdev import torch_device

    torch_where, torch_why = torch_device()
    if MODE.name == "gpu" and MODE.probe.usable and torch_where != "cuda":
        print(f"  GPU comparisons with PyTorch: not measured ({torch_why}).")
    elif MODE.name == "gpu" and MODE.probe.usable:
        print("  GPU comparisons: float32 on both sides (TF32 off in cuBLAS matmuls and cuDNN convolutions).")
        for batch in (64, 256):
            g = gpu_ratios(batch, steps=5 if args.quick else 20, gemm=batch == 256)
            verdict = "  (goal >= 0.5x: " + ("met)" if g["ratio"] >= 0.5 else "NOT met)") if batch == 256 else ""
            print(f"  GPU, batch {batch:3d}: kernels {g['ours_img_s']:.1f} img/s, PyTorch CUDA {g['torch_img_s']:.1f} "
                  f"img/s, ratio {g['ratio']:.2f}x{verdict}")
        if g["best_sgemm_ratio"] is not None:
            print(f"  GPU SGEMM: best course kernel / torch.matmul (TF32 off) = {g['best_sgemm_ratio']:.2f}x")
        from nbkit.perf.gflops import matmul_gflops_transposed

        sizes = (1024,) if args.quick else (1024, 2048, 4096)
        print("  GPU SGEMM for the dense layer's transposes, GFLOP/s (course kernels vs torch.matmul, TF32 off):")
        for r in matmul_gflops_transposed(sizes=sizes, repeat=3 if args.quick else 10):
            best = max(r["naive"], r["tiled"], r["coalesced"])
            goal = f"  (goal at 4096: >= 0.30x: {'met' if best / r['torch'] >= 0.3 else 'NOT met'})" if r["n"] == 4096 else ""
            print(f"    n={r['n']:5d} {r['variant']:<26} naive {r['naive']:8.1f} tiled {r['tiled']:8.1f} coalesced "
                  f"{r['coalesced']:8.1f} torch {r['torch']:8.1f}  best/torch {best / r['torch']:.2f}x{goal}")
    else:
        print("  GPU, batch 64 and 256: not measured (no GPU in this run).")
        print("  GPU SGEMM (course kernels vs torch.matmul for the dense layer's transposes): not measured (no GPU).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
