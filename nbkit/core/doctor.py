"""One report of the set-up that a learner can paste into a forum post."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

from nbkit.core import compat, simulator
from nbkit.core.hw import sm_name
from nbkit.core.mode import MODE


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _numba_cuda_lines() -> list[str]:
    """Which implementation ``numba.cuda`` really is, read from the loaded module, not from installed versions.

    numba-cuda replaces numba's built-in CUDA target only through its ``.pth`` file, which runs when the interpreter
    starts: installed into a running interpreter (a Colab kernel), numba-cuda is on disk but ``numba.cuda`` is
    still numba's own.
    """
    loaded = simulator.which()
    if simulator.numba_cuda_loaded():
        return [f"  numba.cuda is      : {loaded} (numba-cuda's, redirected at interpreter start)"]
    lines = [f"  numba.cuda is      : {loaded} (numba's own CUDA target, not numba-cuda's)"]
    if _version("numba-cuda") != "not installed":
        lines.append("    - numba-cuda is installed, but its start-up redirect (a .pth file) did not run in this "
                     "interpreter, e.g. it was installed into a running Colab kernel. Fix: restart the Python "
                     "kernel (Colab: Runtime > Restart session), then import nbkit first.")
    return lines


_MODE_NAMES = {"gpu": "GPU (real CUDA target)", "sim": "CUDA SIMULATOR (CPU)",
               "cpu": "CPU EXECUTOR (kernels as compiled CPU loops; numba set up as the CUDA simulator)"}


def _cpu_mode_lines() -> list[str]:
    """What runs kernels in cpu mode: the executor, and the kernels that fell back to the simulator, with why."""
    from nbkit.core import launch

    lines = [f"  kernels run on     : the CPU executor ({launch.EXECUTOR_LAUNCHES} launches so far); a kernel it "
             "cannot run falls back to the CUDA simulator"]
    if not launch.FALLBACKS:
        lines.append("  fell back so far   : none")
    for fn, reason in launch.FALLBACKS.items():
        lines.append(f"    - {getattr(fn, '__qualname__', fn)} runs on the simulator: {reason}")
    return lines


def report() -> str:
    """The doctor's report as text."""
    mode = MODE
    lines = [
        "nbkit doctor",
        f"  mode               : {_MODE_NAMES[mode.name]}",
        f"  why                : {mode.reason}",
        f"  CUDA driver        : {'found' if mode.probe.driver_found else 'not found'}"
        f" ({mode.probe.detail})"
        + (f"; driver supports CUDA {compat.cuda_version(mode.probe.driver_version)}" if mode.probe.driver_version else ""),
    ]
    if mode.name == "gpu" and mode.probe.usable:
        try:
            from numba import cuda

            device = cuda.get_current_device()
            name = device.name.decode() if isinstance(device.name, bytes) else device.name
            cc = device.compute_capability
        except Exception as exc:  # noqa: BLE001 - a broken set-up is what the doctor is for: report it
            # The driver answered through ctypes even if numba-cuda cannot: show what it said.
            name = ", ".join(mode.probe.device_names) or "unknown"
            cc = mode.probe.compute_capabilities[0] if mode.probe.compute_capabilities else (0, 0)
            lines.append(f"  numba-cuda error   : {type(exc).__name__}: {exc}")
        try:
            runtime = ".".join(map(str, cuda.runtime.get_version()))
        except Exception as exc:  # noqa: BLE001 - report rather than fail
            runtime = f"unknown ({type(exc).__name__})"
        lines += [
            f"  GPU                : {name}",
            f"  compute capability : {cc[0]}.{cc[1]} ({sm_name(tuple(cc))})",
            f"  CUDA runtime       : {runtime}",
        ]
    elif mode.name == "gpu":
        lines.append("  GPU                : none found; kernels can be compiled (e.g. to PTX) but not launched")
    else:
        lines.append(f"  GPU                : not used ({'CPU executor' if mode.name == 'cpu' else 'simulator'})")
    if mode.name == "cpu":
        lines += _cpu_mode_lines()
    problems = compat.diagnose(mode.probe, compat.installed_toolkit_major(), sys.executable,
                               in_course_venv=(Path(sys.prefix) / compat.STAMP).exists())
    verdict = ("PROBLEM" if problems else "OK (driver, GPU and installed CUDA toolkit agree)" if mode.probe.usable
               else "no GPU, nothing to check")
    lines.append(f"  set-up check       : {verdict}")
    lines += [f"    - {problem}" for problem in problems]
    lines += _numba_cuda_lines()
    lines += [
        f"  numba              : {_version('numba')}",
        f"  numba-cuda         : {_version('numba-cuda')}",
        f"  cuda-bindings      : {_version('cuda-bindings')}",
        f"  numpy              : {_version('numpy')}",
        f"  torch              : {_version('torch')}",
        f"  Python             : {sys.version.split()[0]} ({platform.python_implementation()})",
        f"  platform           : {platform.platform()} ({platform.machine()})",
    ]
    if mode.name == "sim":
        lines += [
            "",
            "  NOTE: the CUDA simulator runs each CUDA thread as Python code on the CPU, one thread after",
            "  another. Use it to check that kernels are CORRECT. Its timings say nothing about GPU speed:",
            "  only a run on a GPU measures that.",
        ]
    elif mode.name == "cpu":
        lines += [
            "",
            "  NOTE: the CPU executor runs each kernel as compiled loops over its threads on the CPU. Use it to",
            "  check that kernels are CORRECT. Its timings say nothing about GPU speed: only a run on a GPU",
            "  measures that.",
        ]
    return "\n".join(lines)


def doctor() -> None:
    """Print the doctor's report: mode, GPU, driver and library versions, platform."""
    print(report())
