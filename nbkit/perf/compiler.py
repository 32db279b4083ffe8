"""numba-cuda's CUDA compiler, used without a GPU: is it installed, compile to PTX, run in GPU mode.

``numba.cuda.compile_ptx`` runs the whole CUDA compiler (NVVM) on the CPU, but only in numba's real CUDA
target, and numba fixes its target (GPU or simulator) once per process. Code running in the simulator
therefore compiles in a fresh process started by :func:`run_in_gpu_mode`. :mod:`nbkit.perf.ptx` (rules
about the PTX) and :mod:`nbkit.perf.cubin` (PTX to machine code) both build on this module.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from nbkit.core.hw import Arch, compute_capability
from nbkit.core.mode import MODE

_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the directory that holds the nbkit package


def compiler_missing() -> str | None:
    """Why numba-cuda's CUDA compiler cannot be used here, or None when it is installed."""
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda (with its CUDA compiler) is not installed here, e.g. on macOS"
    return None


def run_in_gpu_mode(args: Sequence[str], *, input: str | None = None, capture: bool = True,  # noqa: A002 - as in subprocess.run
                    timeout: float | None = None, path: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a fresh process with ``NBKIT_MODE=gpu``, where numba's real CUDA target (and its
    compiler) is active; no GPU is needed to compile.

    The child finds the same modules as this process (nbkit's directory, then ``path``, then this
    ``sys.path``), so kernels from a notebook's own modules can be compiled too. ``capture=False``
    lets its output through to this process's terminal. Raises ``subprocess.TimeoutExpired`` after ``timeout``.
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NBKIT_MODE"] = "gpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, *path, *sys.path, env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, *args], input=input, capture_output=capture, text=True, env=env,
                          timeout=timeout)


@functools.lru_cache(maxsize=None)
def compile_ptx(py_func: Callable, signature: str, cc: Arch, device: bool = False) -> str:
    """PTX text for one kernel and one signature, compiled for ``cc`` (e.g. ``"sm_80"``; cached per process)."""
    from numba import cuda

    if MODE.is_simulator:
        raise RuntimeError("PTX needs the real CUDA target; the simulator is active. "
                           "Run in a fresh process with NBKIT_MODE=gpu (no GPU is needed to compile): "
                           "nbkit.perf.compiler.run_in_gpu_mode does that.")
    ptx, _ = cuda.compile_ptx(py_func, signature, device=device, cc=compute_capability(cc))
    return ptx
