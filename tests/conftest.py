"""Tests run in simulator mode unless NBKIT_MODE says otherwise (set before nbkit imports numba)."""

import functools
import os
import shutil
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
                else "float32 not checked: numba-cuda's compiler is not installed.")


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


FAKE_LIBCUDA = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* Answers the driver calls of nbkit/core/mode.py from FAKE_CUDA_DRIVER (e.g. 12040) and FAKE_CUDA_CC (e.g. "6.0,8.6"). */
static const char *ccs(void) { const char *s = getenv("FAKE_CUDA_CC"); return s ? s : ""; }
int cuInit(unsigned int flags) { return 0; }
int cuDriverGetVersion(int *v) { const char *s = getenv("FAKE_CUDA_DRIVER"); *v = s ? atoi(s) : 0; return 0; }
int cuDeviceGetCount(int *n) {
    const char *s = ccs(); *n = 0;
    if (*s) { *n = 1; for (; *s; s++) if (*s == ',') (*n)++; }
    return 0;
}
int cuDeviceGet(int *device, int ordinal) { *device = ordinal; return 0; }
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    const char *s = ccs(); int major = 0, minor = 0;
    for (int i = 0; i < device; i++) s = strchr(s, ',') + 1;
    sscanf(s, "%d.%d", &major, &minor);
    if (attribute == 75) { *value = major; return 0; }
    if (attribute == 76) { *value = minor; return 0; }
    return 1;
}
int cuDeviceGetName(char *name, int len, int device) { snprintf(name, len, "Fake GPU %d", device); return 0; }
"""


@functools.lru_cache(maxsize=1)
def _build_fake_libcuda(directory: str) -> Path:
    source = Path(directory) / "fake_libcuda.c"
    source.write_text(FAKE_LIBCUDA)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(Path(directory) / "libcuda.so.1"), str(source)], check=True)
    return Path(directory)


@pytest.fixture
def fake_driver(tmp_path_factory):
    if not sys.platform.startswith("linux") or shutil.which("gcc") is None:
        pytest.skip("needs Linux and gcc to build a fake libcuda.so.1")
    directory = _build_fake_libcuda(str(tmp_path_factory.mktemp("fake_libcuda")))
    return lambda version, ccs: {"LD_LIBRARY_PATH": str(directory), "FAKE_CUDA_DRIVER": str(version),
                                 "FAKE_CUDA_CC": ccs}
