"""Tests run in simulator mode unless NBKIT_MODE says otherwise (set before nbkit imports numba)."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NBKIT_MODE", "sim")

import pytest  # noqa: E402

import nbkit  # noqa: E402,F401  - first, so test modules may import numba.cuda freely
from nbkit.perf.compiler import compiler_missing  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (numba's target is fixed per process) with extra env vars."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("NBKIT_MODE", "NUMBA_ENABLE_CUDASIM")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          cwd=ROOT, timeout=300)


# Tests that compile kernels with numba-cuda's compiler (to PTX, cubins) are skipped where it is missing.
needs_compiler = pytest.mark.skipif(compiler_missing() is not None, reason=compiler_missing() or "")


@pytest.fixture
def python_in_fresh_process():
    return run_python
