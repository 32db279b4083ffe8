"""How long each exercise check of notebooks 00-04 takes on a correct answer (not a test: a measurement).

Run: ``NBKIT_MODE=sim PYTHONPATH=. python tests/time_checks.py``. Each check runs twice in one process: the
first run includes compiling the kernel (and the float32 proof from its PTX) in the session's compile
worker, cached per kernel, and the tracer's first import; the second is what a learner's re-run costs. The table goes into
docs/instructors.md ("How long each check takes").
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("NBKIT_MODE", "sim")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_checks_nb00 as t00
import test_checks_nb01 as t01
import test_checks_nb02 as t02
import test_checks_nb03 as t03
import test_checks_nb04 as t04

import nbkit  # noqa: F401 - before numba
from nbkit.checks import nb00, nb01, nb02, nb03, nb04


def _quiet(check):
    """A check that prints (a procedure) as a function returning something with ``passed``."""
    def run(answer):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            check(answer)
        return types.SimpleNamespace(passed=out.getvalue().startswith("✓"), message=out.getvalue())

    return run


CHECKS = [
    ("00.1", nb00.SAXPY.run, (t00.saxpy_right,)),
    ("01.1", nb01.TANH_BACKWARD.run, (lambda dout, y: dout * (1 - y * y),)),
    ("01.2", nb01.DENSE_BACKWARD.run, (t01.dense_loops,)),
    ("01.3", nb01.SOFTMAX_XENT_BACKWARD.run, (t01.xent_stable,)),
    ("01.4", nb01.CONV2D_WEIGHT_GRAD.run, (t01.conv_dw_loops,)),
    ("02.1", nb02.GRADIENT_DESCENT_STEP.run, (t02.sgd_step,)),
    ("02.2", nb02.HIDDEN_DELTA.run, (lambda d2, W2, Z1: (d2 @ W2) * (Z1 > 0),)),
    ("02.3", _quiet(nb02.check_sigmoid_example), (t02.textbook,)),
    ("03.1", nb03.ROW_SUM.run, (t03.row_sum_right,)),
    ("03.2", nb03.TRANSPOSE.run, (t03.transpose_x_along_columns,)),
    ("03.3", nb03.AXPY_GRID_STRIDE.run, (t03.axpy_grid_stride,)),
    ("03.4", nb03.BLUR3.run, (t03.blur3_right,)),
    ("04.1", nb04.TRANSPOSED_MATMUL.run, (t04.at_b_right,)),
    ("04.2", nb04.BIAS_GRAD.run, (t04.bias_grad_right,)),
    ("04.3", nb04.MATMUL_A_BT_TILED.run, (t04.a_bt_fixed,)),
    ("04.4", nb04.MATMUL_AT_B_TILED.run, (t04.at_b_tiled_right,)),
]


def _cpu() -> float:
    """CPU seconds of this process and its children, living (the session's compile worker) or finished: what a
    loaded machine stretches in wall time, but not in CPU time."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + child.ru_utime + child.ru_stime
    try:
        import psutil
    except ImportError:  # then a living compile worker's CPU is not counted
        return total
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| exercise | first run: wall (s) | first run: CPU (s) | second run: wall (s) | second run: CPU (s) |\n"
          "|---|---|---|---|---|")
    for number, run, args in CHECKS:
        times = []
        for _ in range(2):
            start, cpu = time.perf_counter(), _cpu()
            verdict = run(*args)
            times += [time.perf_counter() - start, _cpu() - cpu]
            if not verdict.passed:
                raise SystemExit(f"{number}: the correct answer did not pass: {verdict.message}")
        print(f"| {number} | " + " | ".join(f"{t:.1f}" for t in times) + " |", flush=True)


if __name__ == "__main__":
    main()
