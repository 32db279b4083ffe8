"""Tests run in simulator mode unless NBKIT_MODE says otherwise (set before nbkit imports numba)."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NBKIT_MODE", "sim")

import pytest

import nbkit  # noqa: F401  - first, so test modules may import numba.cuda freely
from nbkit.perf.compiler import compiler_missing

ROOT = Path(__file__).resolve().parent.parent
# How a passing exercise check ends: the PTX proves float32, or, without numba-cuda's compiler, it says it could not.
FLOAT32_NOTE = ("float32 throughout (checked in the PTX: no .f64 instruction)." if compiler_missing() is None
                else "float32 was not checked: numba-cuda's compiler is not installed here (e.g. macOS).")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (numba's target is fixed per process) with extra env vars."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("NBKIT_MODE", "NUMBA_ENABLE_CUDASIM")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          cwd=ROOT, timeout=300)


# The compiler tier: tests that compile kernels with numba-cuda's compiler (to PTX, cubins); skipped where it is
# missing (pytest_collection_modifyitems below).
needs_compiler = pytest.mark.compiler


@pytest.fixture
def python_in_fresh_process():
    return run_python


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the `compiler` tier where numba-cuda (the compiler) is absent, e.g. on macOS: one rule, not one per file."""
    reason = compiler_missing()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("compiler"):
            item.add_marker(pytest.mark.skip(reason=reason))
