"""Realistic cases: each kernel exercise also runs at the size of a real layer where launches are compiled.

cpu mode is fixed per process, so those tests run in a fresh interpreter (``sys.executable``, one for both); the
last tests run here, in simulator mode, where the realistic cases must not run (tens of seconds or more per launch there) and
the ✓ must not claim they did.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from conftest import needs_compiler, part_output, run_in_parts
from numba import cuda

from nbkit.checks import exercises
from nbkit.checks.exercise import ExerciseGroup, KernelExercise, describe_case, realistic_sizes_run_here
from nbkit.checks.nb00 import SAXPY
from nbkit.checks.nb03 import AXPY_GRID_STRIDE, ROW_SUM

KERNELS = textwrap.dedent("""
    import nbkit
    from numba import cuda

    @cuda.jit
    def saxpy(alpha, x, y, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = alpha * x[i] + y[i]

    @cuda.jit
    def saxpy_first_65536(alpha, x, y, out):  # right on every small case
        i = cuda.grid(1)
        if i < out.size and i < 65536:
            out[i] = alpha * x[i] + y[i]

    @cuda.jit
    def saxpy_barrier_in_if(alpha, x, y, out):  # the CPU executor cannot split it: it runs on the simulator
        i = cuda.grid(1)
        if i >= 0:
            cuda.syncthreads()
        if i < out.size:
            out[i] = alpha * x[i] + y[i]

    @cuda.jit
    def row_sum_blocks_of_32(M, out):  # the small cases all use blocks of 32 threads
        r = cuda.blockIdx.x * 32 + cuda.threadIdx.x
        if r < M.shape[0]:
            acc = 0.0
            for c in range(M.shape[1]):
                acc += M[r, c]
            out[r] = acc

    @cuda.jit
    def axpy_16_per_thread(a, x, y):  # a grid-stride loop that stops after 16 elements per thread
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for k in range(16):
            i = start + k * stride
            if i < y.size:
                y[i] = a * x[i] + y[i]
""")


# Both cpu-mode tests read one fresh interpreter's output (a module fixture): a second interpreter would only repeat
# the start-up (numba, the compile worker, PyTorch). Each part runs in its own namespace and prints its lines after
# a marker, and an exception in one part is printed after its marker, so that each test still sees only its own.
PARTS = {
    "small": """
        from nbkit.checks.nb00 import SAXPY
        from nbkit.checks.nb03 import AXPY_GRID_STRIDE, ROW_SUM

        for name, ex, kernel in (("right", SAXPY, saxpy), ("capped", SAXPY, saxpy_first_65536),
                                 ("barrier", SAXPY, saxpy_barrier_in_if), ("rows", ROW_SUM, row_sum_blocks_of_32),
                                 ("stride", AXPY_GRID_STRIDE, axpy_16_per_thread)):
            v = ex.run(kernel)
            print(f"{name}|{v.status}|{v.stage}|{v.message}")
        explicit = SAXPY.run(saxpy_first_65536, SAXPY.cases)  # cases chosen by the caller: no realistic case
        print(f"explicit|{explicit.status}|{explicit.message}")
    """,
    # the notebooks' solution cells, checked as their check cells call them: each realistic case accepts them
    "solutions": """
        from nbkit.checks import exercises, mutate
        from nbkit.checks.exercise import ExerciseGroup

        declared = {n for n, ex in exercises().items()
                    if any(getattr(p, "realistic", ()) for p in (ex.parts if isinstance(ex, ExerciseGroup) else (ex,)))}
        for number, sol in sorted(mutate.solutions().items()):
            if number in declared:
                status, message = mutate.run_check(sol, mutate._namespace(sol, sol.source, number))
                said = "ran" if "Also right at the size of a real layer" in message else (
                    "not run" if "Not run at the size of a real layer" in message else "silent")
                print(f"{number}|{status}|{said}|{message[:300]}")
    """,
    # tests/test_checks_compile.py's question for cpu mode, asked in this interpreter: its own would start numba and a
    # compile worker once more (2 s of CPU) for one compile
    "compile": """
        import numpy as np
        from numba import float32
        from nbkit.checks.exercise import Case, KernelExercise

        COPY = KernelExercise(number="99.8", task="t", call="copy(x, out)", outputs=("out",),
                              inputs=lambda rng, c: {"x": rng.standard_normal(c.n).astype(np.float32)},
                              reference=lambda x: x, cases=(Case(grid=2, block=32, sizes={"n": 50}),), success="copied.")

        @cuda.jit
        def copy_shared_sized_at_launch(x, out):  # the simulator and the CPU executor run it; a GPU would not
            s = cuda.shared.array(cuda.blockDim.x, float32)
            i = cuda.grid(1)
            if i < x.size:
                s[cuda.threadIdx.x] = x[i]
                out[i] = s[cuda.threadIdx.x]

        print(f"stage|{COPY.run(copy_shared_sized_at_launch).stage}")
    """,
}


@pytest.fixture(scope="module")
def cpu_mode_output(tmp_path_factory) -> dict[str, str]:
    """Each part's output, run in one cpu-mode interpreter (conftest.run_in_parts)."""
    return run_in_parts(tmp_path_factory.mktemp("realistic"), KERNELS, PARTS, NBKIT_MODE="cpu")


@pytest.mark.subprocess
def test_cpu_mode_runs_the_realistic_case_and_names_size_and_index(cpu_mode_output):
    out = part_output(cpu_mode_output, "small")
    got = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if "|" in line}
    status, _, message = got["right"]
    assert status == "passed", message
    assert ("Also right at the size of a real layer: a vector of a million elements (n = 1,000,003, alpha = 0.5; "
            "3,907 blocks of 256 threads).") in message
    status, stage, message = got["capped"]
    assert status == "failed" and stage == "output out", message
    assert message.startswith("✗ right on the 4 small cases, wrong at the size of a real layer, a vector of a million "
                              "elements (n = 1,000,003"), message
    assert "the first is out[65536]" in message and "never written" in message
    status, _, message = got["barrier"]  # passes on the small cases in the simulator, and says what it did not run
    assert status == "passed" and "Also right" not in message, message
    assert "Not run at the size of a real layer, a vector of a million elements" in message
    assert "runs on the CUDA simulator here" in message
    status, _, message = got["rows"]
    assert status == "failed" and "wrong at the size of a real layer, a dense layer's inputs, 4,099 rows" in message
    assert "128 threads" in message and "the first is out[1152]" in message, message  # 33 blocks: rows < 32 * 32 + 128
    status, _, message = got["stride"]
    assert status == "failed" and "wrong at the size of a real layer, a vector of a million elements" in message
    assert "160 blocks of 256 threads" in message and "the first is y[655360]" in message, message
    assert got["explicit"][0] == "passed" and "real layer" not in got["explicit"][1]


@pytest.mark.subprocess
def test_every_course_solution_passes_its_realistic_cases_in_cpu_mode(cpu_mode_output):
    out = part_output(cpu_mode_output, "solutions")
    rows = [line.split("|") for line in out.splitlines() if line.count("|") >= 3]
    assert len(rows) >= 20, out
    for number, status, said, message in rows:
        assert status == "passed", (number, message)
        # 05.4's shuffles run on the simulator in cpu mode, so its million-element case is not run (and says so)
        assert said == ("not run" if number == "05.4" else "ran"), (number, message)


@pytest.mark.subprocess
@needs_compiler
def test_cpu_mode_compiles_too(cpu_mode_output):
    """A check in cpu mode compiles the learner's kernel as a GPU would, as in the simulator (see
    tests/test_checks_compile.py): a shared array sized at launch, which the executor runs, is refused."""
    out = part_output(cpu_mode_output, "compile")
    assert "stage|compile" in out.splitlines(), out


# ------------------------------------------------------------------------------- in this process (simulator mode)

@cuda.jit
def _saxpy_first_65536(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size and i < 65536:
        out[i] = alpha * x[i] + y[i]


def test_sim_mode_skips_the_realistic_case_and_says_nothing_of_it():
    assert not realistic_sizes_run_here()  # tests run in sim mode (conftest)
    verdict = SAXPY.run(_saxpy_first_65536)  # wrong only past 65,536 elements: the realistic case would reject it
    assert verdict.passed and "real layer" not in verdict.message and "1,000,003" not in verdict.message


SKIPPED = {}  # exercise number -> why it has no realistic case (none: every kernel exercise has one)


def test_every_kernel_exercise_declares_a_labelled_realistic_case():
    for number, ex in exercises().items():
        parts = ex.parts if isinstance(ex, ExerciseGroup) else (ex,)
        for part in parts:
            if not isinstance(part, KernelExercise) or number in SKIPPED:
                continue
            assert part.realistic, f"{number} ({part.call}) has no realistic case"
            for case in part.realistic:
                assert case.label and case.threads > max(c.threads for c in part.cases), (number, case)


def test_realistic_inputs_and_references_are_vectorised():
    # made in this process without launching anything: the shapes of the references and the sizes are what the
    # messages say; a Python loop over a million elements would take seconds here
    for number, ex in exercises().items():
        for part in ex.parts if isinstance(ex, ExerciseGroup) else (ex,):
            for case in getattr(part, "realistic", ()):
                inputs = part.case_inputs(case, np.random.default_rng(0))
                wants = part.expected(inputs)
                assert all(np.isfinite(w).all() for w in wants.values()), number
                assert describe_case(case).startswith(case.label + " ("), number


def test_describe_case_words_sizes_and_launch():
    case = ROW_SUM.realistic[0]
    assert describe_case(case) == ("a dense layer's inputs, 4,099 rows of 400 (rows = 4,099, cols = 400; 33 blocks of "
                                   "128 threads)")
    assert describe_case(AXPY_GRID_STRIDE.realistic[0]).endswith("(n = 1,000,003, a = 0.75; 160 blocks of 256 threads)")
