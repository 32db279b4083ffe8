"""``bash course.sh gpu-check``: the GPU path end to end, on a machine with an NVIDIA GPU, in at most 10 minutes.

What the simulator cannot show: the test suite in GPU mode (``NBKIT_MODE=gpu``), notebooks 00, 03, 04, 08 and 09
under nbval, ``python -m nbkit.perf.bench`` (the kernel LeNet against PyTorch at batch 64 and 256, the SGEMMs
against cuBLAS) and ``torchrun`` with NCCL on every GPU present, for the course's model and for DDP. Everything
goes into one dated file, ``results/gpu-check-YYYY-MM-DD.md`` (a second run the same day replaces it): the
machine (GPU, driver, CUDA, library versions, from ``nbkit.doctor()`` and ``nvidia-smi``), every figure the
steps printed, and what failed. Each step has its share of the time budget; one that overruns is stopped and
recorded as timed out, and later steps still run.

Exit status: 0 when every step passed, 1 when one failed or timed out, and 0 with one line saying so where no
NVIDIA GPU is found (nothing to check). Standard library only: ``nbkit/core/mode.py`` is loaded by its path to
ask the driver, so this process imports neither nbkit nor numba; every step runs in its own process.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 600.0
NOTEBOOKS = ("00_welcome", "03_cuda_model", "04_dense_layer", "08_cifar10_capstone", "09_performance_lab")


@dataclass(frozen=True)
class Step:
    """One command of the check, with its share of the time budget (seconds out of :data:`BUDGET_S`)."""

    name: str
    argv: tuple[str, ...]
    share_s: float
    figures: str  # "all" (every line is a figure), "summary" (pytest's summary and failures), "ranks" (torchrun)


@dataclass(frozen=True)
class Outcome:
    step: Step
    status: str  # "passed", "FAILED (exit N)", "TIMED OUT after N s", "NOT RUN (...)"
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        return self.status == "passed"


def probe():
    """The CUDA driver's answer (``nbkit.core.mode.GpuProbe``), asked through ctypes without importing nbkit.

    Loading mode.py runs its mode choice, which sets ``NUMBA_ENABLE_CUDASIM`` here: the steps get their own
    environment (:func:`step_env`), never this process's.
    """
    spec = importlib.util.spec_from_file_location("_nbkit_mode", ROOT / "nbkit" / "core" / "mode.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module.probe_gpu()


def step_env(base: dict[str, str]) -> dict[str, str]:
    """The environment of every step: GPU mode, whatever the caller's environment said about the simulator."""
    env = {k: v for k, v in base.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NBKIT_MODE"] = "gpu"
    return env


def plan(python: str, gpus: int) -> list[Step]:
    """The steps, in order. Shares add up to :data:`BUDGET_S`; time a step leaves unused goes to later ones."""
    workers = os.environ.get("NBKIT_TEST_WORKERS", "auto")
    xdist = ("-n", workers, "--dist", "loadfile")
    dist = (python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m", "nbkit.nn.dist",
            "--backend", "nccl", "--timeout", "60")
    steps = [
        Step("doctor (GPU, driver, CUDA, library versions)", (python, "-c", "import nbkit; nbkit.doctor()"), 45, "all"),
        Step("test suite in GPU mode", (python, "-m", "pytest", "-q", *xdist, "tests"), 210, "summary"),
        Step("notebooks " + ", ".join(n[:2] for n in NOTEBOOKS) + " under nbval",
             (python, "-m", "pytest", "-q", *xdist, "--nbval-lax", "--nbval-current-env",
              *(f"notebooks/{n}.ipynb" for n in NOTEBOOKS)), 150, "summary"),
        Step("benchmark: kernel LeNet vs PyTorch, SGEMMs vs cuBLAS", (python, "-m", "nbkit.perf.bench"), 110, "all"),
        Step(f"torchrun, NCCL, {gpus} GPU(s): course model", (*dist, "--model", "course"), 35, "ranks"),
        Step(f"torchrun, NCCL, {gpus} GPU(s): PyTorch DDP", (*dist, "--model", "torch"), 35, "ranks"),
    ]
    smi = shutil.which("nvidia-smi")
    if smi:
        steps.insert(1, Step("nvidia-smi", (smi, "--query-gpu=index,name,driver_version,memory.total,compute_cap",
                                            "--format=csv"), 15, "all"))
    return steps


def run(steps: list[Step], env: dict[str, str], budget_s: float = BUDGET_S) -> list[Outcome]:
    """Run the steps in order, each within its share of ``budget_s`` plus what earlier steps left unused."""
    scale = budget_s / sum(s.share_s for s in steps)
    deadline = time.monotonic() + budget_s
    outcomes = []
    for i, step in enumerate(steps):
        later = sum(s.share_s for s in steps[i + 1:]) * scale
        limit = deadline - time.monotonic() - later
        if limit <= 0.5:
            outcomes.append(Outcome(step, "NOT RUN (out of time)", 0.0, ""))
            continue
        print(f"gpu-check: {step.name} (at most {limit:.0f} s)", flush=True)
        t0 = time.monotonic()
        try:
            r = subprocess.run(step.argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=limit)
            status = "passed" if r.returncode == 0 else f"FAILED (exit {r.returncode})"
            output = r.stdout + r.stderr
        except subprocess.TimeoutExpired as exc:
            status = f"TIMED OUT after {limit:.0f} s"
            output = "".join(x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                             for x in (exc.stdout, exc.stderr))
        except OSError as exc:
            status, output = f"FAILED ({type(exc).__name__}: {exc})", ""
        outcomes.append(Outcome(step, status, time.monotonic() - t0, output))
        print(f"gpu-check:   {status} ({outcomes[-1].seconds:.0f} s)", flush=True)
    return outcomes


_PYTEST_SUMMARY = re.compile(r"\b\d+ (passed|failed|error|errors|skipped)\b")


def figures(outcome: Outcome) -> list[str]:
    """The lines of a step's output that are results: all of them, pytest's summary and failures, or the ranks'."""
    lines = [line.rstrip() for line in outcome.output.splitlines() if line.strip()]
    kind = outcome.step.figures
    if kind == "all":
        return lines
    if kind == "ranks":
        return [line for line in lines if "sum|params|" in line]
    summary = [line for line in lines if _PYTEST_SUMMARY.search(line) and " in " in line]
    return [line for line in lines if line.startswith(("FAILED ", "ERROR "))] + summary[-1:]


def report(probe_result, outcomes: list[Outcome], when: datetime.datetime) -> str:
    """The results file: machine, one table of steps, then every step's figures (and the tail of a failure)."""
    gpus = ", ".join(f"{name} (compute capability {cc[0]}.{cc[1]})"
                     for name, cc in zip(probe_result.device_names, probe_result.compute_capabilities)) or "?"
    report_version = probe_result.driver_version
    cuda = f"{report_version // 1000}.{(report_version % 1000) // 10}" if report_version else "unknown"
    failed = [o for o in outcomes if not o.ok]
    lines = [
        f"# GPU check, {when:%Y-%m-%d %H:%M} UTC",
        "",
        f"Made by `bash course.sh gpu-check` (coursekit/gpu_check.py). GPUs: {probe_result.device_count}: {gpus}. "
        f"The driver supports CUDA {cuda}. Versions of the CUDA runtime and the libraries: the doctor's report below.",
        "",
        "Result: " + ("every step passed." if not failed else
                      "FAILED: " + "; ".join(f"{o.step.name}: {o.status}" for o in failed) + "."),
        "",
        "| step | result | seconds |",
        "|---|---|---|",
        *(f"| {o.step.name} | {o.status} | {o.seconds:.0f} |" for o in outcomes),
    ]
    for o in outcomes:
        lines += ["", f"## {o.step.name}: {o.status}", "", "`" + " ".join(o.step.argv) + "`", ""]
        shown = figures(o)
        if shown:
            lines += ["```", *shown, "```"]
        if not o.ok and o.output.strip():
            lines += ["", "Last lines of its output:", "", "```", *o.output.rstrip().splitlines()[-40:], "```"]
        if not shown and o.ok:
            lines.append("(no figures printed)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder of the results file (default results/)")
    parser.add_argument("--python", default=sys.executable, help="the course environment's Python")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all steps (default 600)")
    args = parser.parse_args(argv)
    env = step_env(dict(os.environ))  # before probe() changes this process's environment
    found = probe()
    if not found.usable:
        print(f"gpu-check: no NVIDIA GPU here ({found.detail}): nothing to check; run it on a machine with one.")
        return 0
    when = datetime.datetime.now(datetime.timezone.utc)
    outcomes = run(plan(args.python, found.device_count), env, args.budget)
    out = Path(args.out) / f"gpu-check-{when:%Y-%m-%d}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(found, outcomes, when))
    failed = [o for o in outcomes if not o.ok]
    print(f"gpu-check: {len(outcomes) - len(failed)} of {len(outcomes)} steps passed; results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
