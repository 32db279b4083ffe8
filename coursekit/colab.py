"""Set-up inside a running Colab or Kaggle kernel, leaving a session where ``numba.cuda`` is numba-cuda's.

numba-cuda takes over ``numba.cuda`` through a ``.pth`` file (``_numba_cuda_redirector.pth``) that Python runs only
at start-up. Installed into a running kernel, it has not run: ``numba.cuda`` would be numba's own built-in target
(another simulator, lacking modules the tracer needs). :func:`activate_numba_cuda` does what that file does, in this process,
which works as long as nothing has imported ``numba.cuda`` yet; otherwise only a restart can switch it, and
:func:`setup` restarts the kernel (the README's cell is then run once more). Standard library only.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys


class RestartNeeded(RuntimeError):
    """``numba.cuda`` was imported before numba-cuda was installed: only a new interpreter can switch it."""


def redirected() -> bool:
    """Whether numba-cuda's import redirection is active in this interpreter."""
    return any(type(f).__name__ == "NumbaCudaFinder" for f in sys.meta_path)


def activate_numba_cuda() -> str:
    """Make ``numba.cuda`` numba-cuda's in this running interpreter; return what was done (one line).

    Raises :class:`RestartNeeded` where ``numba.cuda`` is already loaded from numba, and ``ImportError`` where
    numba-cuda is not installed.
    """
    importlib.invalidate_caches()  # see packages pip installed while this interpreter ran
    if redirected():
        return "numba-cuda's redirection was already active (installed before this interpreter started)"
    if "numba.cuda" in sys.modules:
        raise RestartNeeded("numba.cuda was imported before numba-cuda was installed: restart the kernel")
    try:
        import _numba_cuda_redirector  # noqa: F401  what numba-cuda's .pth file runs at interpreter start
    except ImportError as exc:
        raise ImportError("numba-cuda is not installed in this environment (no _numba_cuda_redirector)") from exc
    from numba import cuda

    where = getattr(cuda, "__file__", "") or ""
    if "numba_cuda" not in where:
        raise RestartNeeded(f"numba.cuda still comes from {where}: restart the kernel")
    return "numba-cuda's redirection activated in this running kernel (what its .pth file does at start-up)"


def setup(course: str, extra: str) -> None:
    """Install the course (editable, with ``extra``) into this kernel and leave ``import nbkit`` working."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{course}[test,{extra}]"], check=True)
    if course not in sys.path:
        sys.path.insert(0, course)  # a fresh editable install is not on this interpreter's path otherwise
    try:
        print(activate_numba_cuda())
    except RestartNeeded as exc:
        print(f"{exc}. Restarting now: run this cell once more when the kernel is back.", flush=True)
        os.kill(os.getpid(), 9)  # Colab and Kaggle restart a kernel that exits
