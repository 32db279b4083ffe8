"""NBKIT_MODE=cpu: numba set up as the simulator, every launch run by the CPU executor, the simulator as fallback.

The mode is fixed per process, so the cpu-mode tests run in fresh interpreters (``sys.executable``: run this file
with ``.venv-numba``'s Python too, for numba's built-in simulator). The last tests run here, in simulator mode: the
router of ``nbkit.core.simulator`` and the executor's guarantees that cpu mode's fallback relies on.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from conftest import part_output, run_in_parts
from numba import cuda

from nbkit.core import simulator
from nbkit.core.executor import BarrierDivergence, ExecutorUnsupported, run_on_cpu
from nbkit.core.launch import launch
from nbkit.core.source import python_function

KERNELS = textwrap.dedent("""
    import time
    import numpy as np
    import nbkit
    from numba import cuda
    from nbkit.core import launch as L

    @cuda.jit
    def add(a, b, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = a[i] + b[i]

    @cuda.jit
    def barrier_in_branch(x):
        s = cuda.shared.array(32, np.float32)
        t = cuda.threadIdx.x
        if t < 64:  # every thread takes it, but the executor cannot split a body inside an if
            s[t] = t
            cuda.syncthreads()
        x[t] = s[31 - t]
""")


# The cpu-mode tests read one fresh interpreter's output (a module fixture): an interpreter per test only repeated
# the start-up (Python, numba, nbkit: about 0.7 s of CPU time each). Each part runs in its own namespace (runpy) with
# its stderr sent to stdout, and prints its lines after a marker; an exception in one part is printed after its
# marker, so that each test sees only its own part. Counts of executor launches are taken relative to the part's
# start; the parts that assert that nothing fell back to the simulator run before the two that make kernels fall
# back ("unsupported", "checks"), in this order.
PARTS = {
    "doctor": """
        from nbkit.core.hw import MAX_GRID_DIM
        from nbkit.kernels import optim
        print(nbkit.MODE.name, "|", nbkit.MODE.reason)
        assert optim.MAX_BLOCKS == MAX_GRID_DIM[0]  # no simulator-sized grid in cpu mode
        a = np.ones(1000, np.float32)
        t = nbkit.time_it(lambda: add[4, 256](a, a, np.zeros(1000, np.float32)), repeat=2)
        print(t)
        nbkit.doctor()
    """,
    "both_forms": """
        # 4 million threads: over a minute in the simulator (~20 µs a thread or more), well under a second compiled.
        n = 1 << 22
        a, b = np.ones(n, np.float32), np.arange(n, dtype=np.float32)
        out = np.zeros(n, np.float32)
        before = L.EXECUTOR_LAUNCHES
        add[64, 32](a, b, out)
        assert L.EXECUTOR_LAUNCHES == before + 1, (before, L.EXECUTOR_LAUNCHES)
        from nbkit.core import fibers

        def simulated(*args, **kwargs):
            raise AssertionError("a block ran in the simulator")

        run_block = fibers.run_block
        fibers.run_block = simulated  # every simulated block runs through it: none may run in this part
        try:
            add[n // 256, 256](a, b, out)
            d_out = cuda.device_array(n, np.float32)  # simulator device arrays pass as their memory
            nbkit.launch(add, n // 256, 256, cuda.to_device(a), b, d_out)
        finally:
            fibers.run_block = run_block
        assert L.EXECUTOR_LAUNCHES == before + 3 and not L.FALLBACKS, (before, L.EXECUTOR_LAUNCHES, L.FALLBACKS)
        assert np.array_equal(out, a + b) and np.array_equal(d_out.copy_to_host(), a + b)
        print("mode", nbkit.MODE.name, nbkit.MODE.is_simulator, nbkit.MODE.slow_launches)
    """,
    # the same kernels (barriers, shared memory) on the executor and, through simulated_kernel, on the simulator
    "results": """
        from nbkit.core.simulator import simulated_kernel
        from nbkit.kernels import matmul, reduce
        rng = np.random.default_rng(3)
        A, B = rng.standard_normal((37, 29), np.float32), rng.standard_normal((29, 41), np.float32)
        x = rng.standard_normal(1000, np.float32)
        cases = [(matmul.matmul_tiled_kernel, (3, 3), (16, 16), lambda: (A, B, np.zeros((37, 41), np.float32), 0, 0)),
                 (reduce.sum_tree_kernel, 8, 128, lambda: (x, np.zeros(8, np.float32)))]
        for kernel, grid, block, make in cases:
            cpu, sim = make(), make()
            before = L.EXECUTOR_LAUNCHES
            kernel[grid, block](*cpu)
            assert L.EXECUTOR_LAUNCHES == before + 1
            simulated_kernel(kernel.py_func)[grid, block](*sim)
            assert L.EXECUTOR_LAUNCHES == before + 1  # simulated_kernel is never routed
            for c, s in zip(cpu, sim):
                assert np.array_equal(c, s), kernel
        print("results equal")
    """,
    "out_of_bounds": """
        a = np.ones(10, np.float32)
        for launch in (lambda: add[2, 256](a, np.ones(512, np.float32), np.zeros(512, np.float32)),
                       lambda: nbkit.launch(add, 2, 256, a, np.ones(512, np.float32), np.zeros(512, np.float32))):
            try:
                launch()
            except IndexError as exc:
                print("IndexError:", exc, getattr(exc, "__notes__", []))
            else:
                raise AssertionError("no IndexError")
        assert not L.FALLBACKS
    """,
    "tracer": """
        from nbkit.checks._core import find_races
        from nbkit.tracer import trace

        @cuda.jit
        def racy_reverse(x):
            s = cuda.shared.array(64, np.float32)
            t = cuda.threadIdx.x
            s[t] = x[t]
            x[t] = s[63 - t]  # no barrier between the writes and the reads

        x = np.arange(64, dtype=np.float32)
        before = L.EXECUTOR_LAUNCHES
        tr = trace(racy_reverse, 1, 64, x.copy())
        races, shared = find_races(racy_reverse, 1, 64, x)
        assert tr.races() and races and shared, (tr.races(), races)
        assert L.EXECUTOR_LAUNCHES == before and not L.FALLBACKS  # traced on the simulator, not routed
        racy_reverse[1, 64](x)
        assert L.EXECUTOR_LAUNCHES == before + 1
        print("traced", len(tr.races()))
    """,
    "unsupported": """
        before = L.EXECUTOR_LAUNCHES
        x = np.zeros(32, np.float32)
        barrier_in_branch[1, 32](x)
        nbkit.launch(barrier_in_branch, 1, 32, x)
        assert np.array_equal(x, np.arange(31, -1, -1, dtype=np.float32)), x  # the simulator ran it
        assert L.EXECUTOR_LAUNCHES == before and len(L.FALLBACKS) == 1, (before, L.EXECUTOR_LAUNCHES, L.FALLBACKS)
        nbkit.doctor()
    """,
    # The executor runs the fixed-stride tree with shared memory starting as NaN (as the simulator does); the tree
    # with its barrier inside the if falls back to the simulator, which lets it through: the check's tracer does not.
    "checks": """
        from numba import float32
        from nbkit.checks.nb05 import BLOCK_SUM

        def tree(fixed, barrier_in_if):
            @cuda.jit
            def block_sum(x, partial):
                buf = cuda.shared.array(128, float32)
                t = cuda.threadIdx.x
                B = cuda.blockDim.x
                i = cuda.blockIdx.x * 2 * B + t
                buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
                cuda.syncthreads()
                stride = 64 if fixed else B // 2
                while stride > 0:
                    if t < stride:
                        buf[t] += buf[t + stride]
                        if barrier_in_if:
                            cuda.syncthreads()
                    if not barrier_in_if:
                        cuda.syncthreads()
                    stride //= 2
                if t == 0:
                    partial[cuda.blockIdx.x] = buf[0]
            return block_sum

        fixed = BLOCK_SUM.run(tree(True, False))
        assert fixed.status == "failed" and "before any thread of the block wrote it" in fixed.message, fixed.message
        skipped = BLOCK_SUM.run(tree(False, True))
        assert skipped.stage == "proof barriers" and "never reached the cuda.syncthreads()" in skipped.message
        assert BLOCK_SUM.run(tree(False, False)).passed
        print("rejected both")
    """,
}


@pytest.fixture(scope="module")
def cpu_mode_output(tmp_path_factory) -> dict[str, str]:
    """Each part's output, run in one cpu-mode interpreter (conftest.run_in_parts)."""
    return run_in_parts(tmp_path_factory.mktemp("cpu_mode"), KERNELS, PARTS, NBKIT_MODE="cpu")


@pytest.mark.subprocess
def test_both_launch_forms_run_on_the_executor(cpu_mode_output):
    assert "mode cpu True False" in part_output(cpu_mode_output, "both_forms")


@pytest.mark.subprocess
def test_results_equal_the_simulators(cpu_mode_output):
    assert "results equal" in part_output(cpu_mode_output, "results")


@pytest.mark.subprocess
def test_unsupported_kernel_falls_back_with_one_line(cpu_mode_output):
    out = part_output(cpu_mode_output, "unsupported")
    lines = [line for line in out.splitlines() if line.startswith("nbkit: kernel")]
    assert lines == [lines[0]] and "barrier_in_branch runs on the CUDA simulator" in lines[0], out
    assert "syncthreads() inside if" in lines[0]
    assert "CPU EXECUTOR" in out and "barrier_in_branch runs on the simulator: cuda.syncthreads() inside if" in out


@pytest.mark.subprocess
def test_out_of_bounds_raises_index_error_naming_the_launch(cpu_mode_output):
    out = part_output(cpu_mode_output, "out_of_bounds")
    assert out.count("IndexError: add[(2, 1, 1), (256, 1, 1)]") == 2 and "thread (10, 0, 0)" in out
    assert "while launching kernel add" in out  # nbkit.launch's note


@pytest.mark.subprocess
def test_mode_doctor_timing_and_work_sizes(cpu_mode_output):
    out = part_output(cpu_mode_output, "doctor")
    assert "cpu | forced by NBKIT_MODE=cpu" in out
    assert "[CPU executor wall-clock time: says nothing about GPU speed]" in out
    assert "mode               : CPU EXECUTOR" in out and "the CPU executor (" in out and "fell back so far   : none" in out


@pytest.mark.subprocess
def test_tracer_and_race_check_use_the_simulator(cpu_mode_output):
    assert "traced" in part_output(cpu_mode_output, "tracer")


@pytest.mark.subprocess
def test_checks_reject_skipped_barriers_and_unwritten_shared_memory_in_cpu_mode(cpu_mode_output):
    assert "rejected both" in part_output(cpu_mode_output, "checks")


@pytest.mark.subprocess
def test_cpu_mode_after_numba_was_imported_in_simulator_mode(python_in_fresh_process):
    r = python_in_fresh_process("import numba.cuda\nimport nbkit\nprint(nbkit.MODE.name)", NBKIT_MODE="cpu",
                                NUMBA_ENABLE_CUDASIM="1")
    assert r.returncode == 0 and r.stdout.strip() == "cpu", r.stderr


# ------------------------------------------------------------------------------- in this process (simulator mode)

@cuda.jit
def _fill(x):
    x[cuda.threadIdx.x] = cuda.threadIdx.x


def test_router_sees_launches_but_not_simulated_kernels_or_device_calls():
    seen = []

    def router(kernel, grid, block, dynamic_shared, args, simulate):
        seen.append((python_function(kernel).__name__, grid, block, dynamic_shared))
        simulate()

    x = np.zeros(8, np.int64)
    simulator.route_launches(router)
    try:
        _fill[1, 8](x)
        simulator.simulated_kernel(_fill.py_func)[1, 8](x)
    finally:
        simulator.route_launches(None)
    _fill[1, 8](x)
    assert seen == [("_fill", (1, 1, 1), (8, 1, 1), 0)] and list(x) == list(range(8))


def test_launch_hands_a_routed_launch_to_the_router_unconfigured(monkeypatch):
    # launch() has checked grid and block: a routed launch skips the simulator's __getitem__ and __call__ (which
    # checked them again: a third of a small launch's Python time); only a launch the router simulates configures
    events = []

    def router(kernel, grid, block, dynamic_shared, args, simulate):
        events.append(("router", python_function(kernel).__name__, grid, block, dynamic_shared))
        simulate()

    cls = simulator.internals().FakeCUDAKernel
    getitem = cls.__getitem__
    monkeypatch.setattr(cls, "__getitem__", lambda self, conf: events.append(("getitem", conf)) or getitem(self, conf))
    x = np.zeros(8, np.int64)
    simulator.route_launches(router)
    try:
        launch(_fill, 1, 8, x)
        launch(_fill, (1,), (8,), x, dynamic_shared_bytes=16)
    finally:
        simulator.route_launches(None)
    assert events == [("router", "_fill", (1, 1, 1), (8, 1, 1), 0), ("getitem", ((1,), (8,), 0, 0)),
                      ("router", "_fill", (1, 1, 1), (8, 1, 1), 16), ("getitem", ((1,), (8,), 0, 16))], events
    assert list(x) == list(range(8))
    events.clear()
    launch(_fill, 1, 8, x)  # not routed: the simulator's own path, as before
    assert events == [("getitem", ((1,), (8,)))]


@cuda.jit
def _writes_then_diverges(x):
    t = cuda.threadIdx.x
    x[t] = -1.0  # written before the divergent loop is reached
    n = t % 3
    k = 0
    while k < n:
        cuda.syncthreads()
        k += 1


def test_barrier_divergence_puts_the_arrays_back():
    # cpu mode reruns such a launch on the simulator: it must start from the arrays as they were
    x = np.arange(32, dtype=np.float32)
    with pytest.raises(BarrierDivergence):
        run_on_cpu(_writes_then_diverges, 1, 32, x)
    assert np.array_equal(x, np.arange(32, dtype=np.float32))


def test_only_checked_runs_keep_copies_to_put_back(monkeypatch):
    # a run without bounds checks has a proven key: its loops' trip counts are launch-determined and its checked run
    # did not diverge, so it cannot; it copies nothing (the tiled matmul copied A, B and C at every launch)
    import nbkit.core.executor as ex
    from nbkit.kernels.matmul import TILE, matmul_tiled_kernel

    monkeypatch.setattr(ex, "_UNCHECKED_MIN_SECONDS", 0.0)  # a proven launch runs unchecked at once
    saved, real = [], ex._saved_arrays
    monkeypatch.setattr(ex, "_saved_arrays", lambda host: saved.append(ex.last_launch_checked()) or real(host))
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((40, 24), np.float32), rng.standard_normal((24, 36), np.float32)
    C = np.zeros((40, 36), np.float32)
    for _ in range(3):  # (compiles if no test before did,) proves the key, then runs unchecked
        run_on_cpu(matmul_tiled_kernel, (3, 3), (TILE, TILE), A, B, C, 0, 0)
    assert not ex.last_launch_checked() and saved and all(saved), saved  # copies in checked runs only
    count = len(saved)
    run_on_cpu(matmul_tiled_kernel, (3, 3), (TILE, TILE), A, B, C, 0, 0)
    assert not ex.last_launch_checked() and len(saved) == count
    np.testing.assert_allclose(C, A @ B, rtol=1e-5, atol=1e-5)
    for _ in range(2):  # a launch that diverges is never proven: every run keeps its copies and puts them back
        x = np.arange(32, dtype=np.float32)
        with pytest.raises(BarrierDivergence):
            run_on_cpu(_writes_then_diverges, 1, 32, x)
        assert np.array_equal(x, np.arange(32, dtype=np.float32)) and ex.last_launch_checked()


def test_an_argument_numba_cannot_type_is_unsupported():
    with pytest.raises(ExecutorUnsupported, match="argument numba cannot compile"):
        run_on_cpu(_fill, 1, 8, object())


def test_compiled_launches_run_on_the_executor_in_sim_mode_and_stop_after():
    """Outside cpu mode, ``compiled_launches()`` sends the launches of one block (only) to the executor."""
    import nbkit
    from nbkit.core import launch as L
    from nbkit.kernels.vector import add

    a = np.arange(300, dtype=np.float32)
    before = L.EXECUTOR_LAUNCHES
    with L.compiled_launches():
        out = add(a, a)
    inside = L.EXECUTOR_LAUNCHES - before
    assert not L.launches_compiled()
    add(a, a)
    assert (nbkit.MODE.name, inside, L.EXECUTOR_LAUNCHES - before) == ("sim", 1, 1)
    assert np.array_equal(out, 2 * a)


def test_dense_layers_launch_the_tiled_matmul_from_one_tile_of_rows_when_compiled():
    """Simulated launches keep the naive kernel (the tiled one's barriers are slow there); compiled ones take the
    tiled kernel once the batch fills a tile, and the naive one below, where the executor measured it faster."""
    from nbkit.core.launch import compiled_launches
    from nbkit.core.mode import MODE
    from nbkit.kernels.matmul import TILE
    from nbkit.nn import kernel_backend

    if MODE.name != "sim":
        pytest.skip("the routing of compiled_launches() exists in sim mode")
    assert kernel_backend.matmul_method(64) == "naive"
    with compiled_launches():
        assert [kernel_backend.matmul_method(n) for n in (TILE - 1, TILE, 64)] == ["naive", "tiled", "tiled"]
    assert kernel_backend.matmul_method(64) == "naive"
