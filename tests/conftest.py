"""Tests run in simulator mode unless NBKIT_MODE says otherwise (set before nbkit imports numba)."""

import functools
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("NBKIT_MODE", "sim")
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Several test workers (`course.sh test`: one per core) each with PyTorch's full OpenMP team oversubscribe the cores,
# and OpenMP's waiting threads spin: measured here, notebook 08 and its learner copy side by side took 80 s with the
# default team and 28 s with one thread each. So each worker (and the notebook kernels and subprocesses it starts,
# which inherit the environment) gets its share of the cores, unless the caller chose a number. (Set here, before
# any test imports torch; importing nbkit does not.)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))


def pytest_configure(config: pytest.Config) -> None:
    """Import nbkit first, so that test modules may import numba.cuda freely (nbkit sets numba's mode).

    Not in pytest-xdist's controller, which runs no test: importing numba there (0.4 s) only delays starting the
    workers. (Hooks, not this module's top: the controller imports this file too, for the scheduler hook.)
    """
    if config.pluginmanager.hasplugin("xdist") and LoadScopeScheduling is not None:
        config.pluginmanager.register(HeaviestFirstHook(), "nbkit-heaviest-first")
    if not is_xdist_controller(config):
        import nbkit  # noqa: F401


def is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands the tests out to pytest-xdist's workers (`-n 2`) instead of collecting and running
    them: xdist's own test (its pytest_configure), which runs after this module's."""
    return (config.pluginmanager.hasplugin("xdist") and not config.getoption("collectonly")
            and config.getoption("dist") != "no" and bool(config.getoption("tx")))


def __getattr__(name: str) -> str:
    """FLOAT32_NOTE, how a passing exercise check ends: the PTX proves float32, or, without numba-cuda's compiler, it
    says it could not. Computed when a test module imports it (after pytest_configure), as it needs nbkit."""
    if name != "FLOAT32_NOTE":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from nbkit.perf.compiler import compiler_missing

    return ("float32 throughout (checked in the PTX: no .f64 instruction)." if compiler_missing() is None
            else "float32 not checked: numba-cuda's compiler is not installed.")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (numba's target is fixed per process) with extra env vars."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("NBKIT_MODE", "NUMBA_ENABLE_CUDASIM")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          cwd=ROOT, timeout=300)


PART_MARK = "=== part "


def run_in_parts(folder: Path, prelude: str, parts: dict[str, str], **env: str) -> dict[str, str]:
    """Each part (``prelude`` + its code, from a file in ``folder``: the executor reads a kernel's source) run in ONE
    fresh interpreter, in order, each in its own namespace: a second interpreter would only repeat the start-up
    (numba, the compile worker, PyTorch). A part's output is what it printed, its stderr and an exception it raised
    (printed after its marker), so that each test sees only its own. Read it with :func:`part_output`."""
    runner = ["import contextlib, runpy, sys, traceback"]
    for name, body in parts.items():
        script = folder / f"{name}.py"
        script.write_text(prelude + textwrap.dedent(body))
        runner += [f"print({PART_MARK + name!r}, flush=True)", "try:",
                   "    with contextlib.redirect_stderr(sys.stdout):",
                   f"        runpy.run_path({str(script)!r})",
                   "except BaseException:", "    traceback.print_exc(file=sys.stdout)", "sys.stdout.flush()"]
    r = run_python("\n".join(runner), **env)
    assert r.returncode == 0, r.stdout + r.stderr
    chunks = r.stdout.split(PART_MARK)[1:]
    return {chunk.split("\n", 1)[0]: chunk.split("\n", 1)[1] + r.stderr for chunk in chunks}


def part_output(output: dict[str, str], name: str) -> str:
    """One part's output from :func:`run_in_parts`; the test fails if that part raised."""
    out = output[name]
    assert "Traceback (most recent call last)" not in out, out
    return out


# The compiler tier: tests that compile kernels with numba-cuda's compiler (to PTX, cubins); skipped where it is
# missing (pytest_collection_modifyitems below).
needs_compiler = pytest.mark.compiler


@pytest.fixture
def python_in_fresh_process():
    return run_python


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the `compiler` tier where numba-cuda (the compiler) is absent, e.g. on macOS: one rule, not one per file."""
    from nbkit.perf.compiler import compiler_missing

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


# Scheduling over pytest-xdist workers (`course.sh test` runs `-n auto --dist loadfile`). Only the ORDER and grouping
# of work changes, never what runs. Each exercise of tests/test_probe_answers.py becomes its own unit instead of one
# file-sized unit, and the heaviest units start first, so no worker is left with a long tail. The learner copies
# (tests/test_learner.py) stay one unit: one worker runs them all in one kernel, which imports torch, numba and
# matplotlib once and compiles or loads each executor launcher once (as units of their own they were spread over
# both workers, two kernels: 37.8 and 39.4 s of CPU for the 11 copies, against 32.7 and 36.6 s in one kernel, warm
# compile cache, 2026-11-30). Weights: seconds per unit in a profile of the whole run
# (`pytest --durations=0`, 2026-11-30 07:08 UTC, 2 workers, empty cache of compiled code as in CI; test_executor*,
# test_nbgrader_roundtrip and test_hints from the 11:55 UTC run, test_executor as run after its partner), every unit of
# 1 s or more. A unit not listed weighs 0.05 s per
# test: the 70 unlisted ones averaged 0.023 s (660 tests, 15 s). An unlisted unit of seconds comes late and can
# leave one worker running alone at the end (test_bench, 4.8 s at 0.5 s per test, ran last), so list it.
UNIT_SECONDS = {"08": 12, "09": 9.6, "07": 9.0, "10": 8.2, "06": 6.2, "05": 4.6, "01": 4.5, "04": 4.3, "03": 3.9,
                "00": 3.7, "02": 2.4}   # a notebook under nbval, by its number (2026-11-30 10:40 UTC cold run)
FILE_SECONDS = {"tests/test_learner.py": 38, "tests/test_executor.py": 29, "tests/test_executor_bounds.py": 42,
                "tests/test_realistic_cases.py": 25,
                "tests/test_dist.py": 21, "tests/test_nbgrader_roundtrip.py": 13, "tests/test_ptx.py": 12,
                "tests/test_diskcache.py": 9.2, "tests/test_data.py": 6.6, "tests/test_hints.py": 4.0,
                "tests/test_bench.py": 5.7, "tests/test_checks_nb04.py": 5.6, "tests/test_setup_plan.py": 5.3,
                "tests/test_course_sh.py": 5.3, "tests/test_mode.py": 5.2, "tests/test_mutation.py": 5.0,
                "tests/test_cpu_mode.py": 4.8, "tests/test_checks_nb09.py": 4.6, "tests/test_checks_nb05.py": 3.9,
                "tests/test_checks_compile.py": 1.2, "tests/test_probe_answers.py::09.2": 3.7,
                "tests/test_checks_nb06.py": 2.6, "tests/test_transpose_coalescing.py": 2.4,
                "tests/test_probe_answers.py::04.3": 2.4, "tests/test_probe_answers.py::04.4": 2.3,
                "tests/test_gpu_check.py": 2.3, "tests/test_checks_nb08.py": 2.0, "tests/test_checks_nb03.py": 1.9,
                "tests/test_probe_answers.py::08.1": 1.9, "tests/test_probe_answers.py::09.1": 1.8,
                "tests/test_warp.py": 1.6, "tests/test_architecture.py": 1.5, "tests/test_checks_nb02.py": 1.4,
                "tests/test_startup.py": 1.4, "tests/test_colab.py": 1.4, "tests/test_matmul.py": 1.3,
                "tests/test_trace.py": 1.2, "tests/test_plots.py": 1.1, "tests/test_probe_answers.py::05.4": 1.1,
                "tests/test_checks_core.py": 1.0, "tests/test_probe_answers.py::06.1": 1.0}


# A unit that reads from the disk cache what another compiles, and so should not start beside it: test_executor
# compiles the same kernels' launchers as test_executor_bounds. Started together on the two workers (the two
# heaviest units) they compiled the same code twice: 34 s each in the 07:08 profile, against 21 s for
# test_executor when it started 17 s after test_executor_bounds (04:58 profile). The learner copies (the heaviest
# unit, by weight the first) run what the instructor notebooks run: started where nbval's run of notebook 08 should
# have ended, its learner copy loads LeNet's executor launchers instead of compiling them, possibly beside another
# unit compiling the same (the learner copy of notebook 08 alone in a fresh kernel: 34.3 s of CPU on an empty
# cache, 11.5 s on a warm one, 2026-11-30).
AFTER = {"tests/test_executor.py": "tests/test_executor_bounds.py",
         "tests/test_learner.py": "notebooks/08_cifar10_capstone.ipynb"}


def unit_order(tests_per_unit: dict[str, int], workers: int = 2) -> list[str]:
    """Heaviest unit first; a unit of AFTER where its partner should have finished. xdist hands the next unit to
    whichever worker runs low, so a unit starts when the first of `workers` workers, given the units before it in
    turn, becomes free (`_next_start`). Every unit of AFTER leaves the order before any is put back: placed one by
    one, taking a later one out moved the units after it forward, past where an earlier one was placed to wait
    (test_executor then started beside test_executor_bounds and compiled the same launchers)."""
    weight = {u: unit_seconds(u, n) for u, n in tests_per_unit.items()}
    order = sorted(tests_per_unit, key=lambda u: -weight[u])
    pairs = [(u, p) for u, p in AFTER.items() if u in order and p in order]
    for unit, _ in pairs:
        order.remove(unit)
    for unit, partner in pairs:
        at = order.index(partner)
        end = _next_start(order[:at], weight, workers) + weight[partner]
        at += 1  # not before its partner starts, and not before it should have ended
        while at < len(order) and _next_start(order[:at], weight, workers) < end:
            at += 1
        order.insert(at, unit)
    return order


def _next_start(units: list[str], weight: dict[str, float], workers: int) -> float:
    """When the next unit starts, the given units handed in turn to whichever worker is free first."""
    free = [0.0] * workers
    for u in units:
        free[free.index(min(free))] += weight[u]
    return min(free)


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or a probe exercise on its own."""
    path, _, rest = nodeid.partition("::")
    if path.endswith("test_probe_answers.py") and "[" in rest:
        return f"{path}::{rest.split('[', 1)[1].split('-', 1)[0]}"   # test_verdict[04.4-hint] -> exercise 04.4
    return path


def unit_seconds(unit: str, tests: int) -> float:
    """The expected cost of a unit, for ordering only."""
    name = unit.rsplit("/", 1)[-1]
    if unit.startswith("notebooks/"):
        return UNIT_SECONDS.get(name[:2], 10)
    return FILE_SECONDS.get(unit, 0.05 * tests)


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pragma: no cover - xdist is a test dependency; without it there is nothing to schedule
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:

    class HeaviestFirst(LoadScopeScheduling):
        """xdist's scope scheduling with `work_unit` as the scope and units sorted by `unit_seconds`, heaviest first."""

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not getattr(self, "_sorted", False):   # the queue is complete before the first unit goes out
                self._sorted = True
                units = dict(self.workqueue)
                self.workqueue.clear()
                self.workqueue.update((u, units[u]) for u in unit_order({u: len(t) for u, t in units.items()},
                                                                        len(self.nodes)))
            super()._assign_work_unit(node)


class HeaviestFirstHook:
    """xdist's scheduler hook, registered in pytest_configure only where xdist is loaded: a conftest that defined the
    hook itself would make `pytest -p no:xdist` refuse to start ("unknown hook")."""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log):
        """Use `HeaviestFirst` where `--dist loadfile` was asked for (course.sh test)."""
        if config.getoption("dist", None) != "loadfile":
            return None
        return HeaviestFirst(config, log)


@pytest.fixture
def traced_launches(monkeypatch) -> list:
    """Every launch the memory-access tracer runs in the test: (kernel, grid, block, the arguments' bytes before it),
    so that a test can say no launch was traced twice."""
    import numpy as np

    import nbkit.tracer

    real, seen = nbkit.tracer.trace, []

    def counting(kernel, grid, block, *args, **kwargs):
        seen.append((getattr(kernel, "__name__", kernel), grid, block,
                     tuple(a.tobytes() if isinstance(a, np.ndarray) else repr(a) for a in args)))
        return real(kernel, grid, block, *args, **kwargs)

    monkeypatch.setattr(nbkit.tracer, "trace", counting)
    return seen
