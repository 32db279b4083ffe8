"""nbkit picks the target before numba loads, and explains a numba imported the wrong way round."""

import pytest
from conftest import run_python

from nbkit.core.mode import probe_gpu

pytestmark = pytest.mark.subprocess  # each test starts a fresh interpreter: numba's target is fixed per process


@pytest.fixture(scope="module")
def forced_simulator_with_doctor():
    """One fresh interpreter under NBKIT_MODE=sim: its target (first line), then the doctor's report.

    Four tests read different lines of this one run (a process start with numba costs about a second).
    """
    return run_python("import gc; gc.set_threshold(800, 10, 10)\n"  # the process's own setting (test_gc_...)
                      "import nbkit, numba.cuda as c; print(nbkit.MODE.name, c.jit.__module__); nbkit.doctor()\n"
                      "print('gc', gc.get_threshold(), gc.get_freeze_count(), gc.isenabled())", NBKIT_MODE="sim")


@pytest.fixture(scope="module")
def auto_mode():
    """One fresh interpreter in auto mode: the mode and its reason, then the garbage collector's state."""
    return run_python("import gc, nbkit; print(nbkit.MODE.name); print(nbkit.MODE.reason)\n"
                      "print('gc', gc.get_threshold(), gc.get_freeze_count() > 0, gc.isenabled())")


def test_forced_simulator(forced_simulator_with_doctor):
    r = forced_simulator_with_doctor
    assert r.returncode == 0, r.stderr
    name, module = r.stdout.splitlines()[0].split()
    assert name == "sim" and "simulator" in module


def test_auto_without_gpu_is_simulator(auto_mode):
    expected = "gpu" if probe_gpu().usable else "sim"
    r = auto_mode
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == expected
    assert r.stdout.splitlines()[1].startswith("auto:")


def test_numba_cudasim_variable_is_honoured(python_in_fresh_process):
    r = python_in_fresh_process("import nbkit; print(nbkit.MODE.name, nbkit.MODE.reason)", NUMBA_ENABLE_CUDASIM="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sim forced by NUMBA_ENABLE_CUDASIM")


def test_unknown_mode_is_refused(python_in_fresh_process):
    r = python_in_fresh_process("import nbkit", NBKIT_MODE="tpu")
    assert r.returncode != 0
    assert "NBKIT_MODE='tpu' is not understood: expected one of auto, gpu, sim, cpu" in r.stderr


def test_numba_cuda_imported_first_in_the_wrong_mode_is_explained(python_in_fresh_process):
    # numba.cuda loaded for the real target, then nbkit is told to use the simulator: too late to switch.
    r = python_in_fresh_process("import gc, numba.cuda\ntry:\n    import nbkit\nfinally:\n    print('gc on:', gc.isenabled())",
                                NBKIT_MODE="sim", NUMBA_ENABLE_CUDASIM="0")
    assert r.returncode != 0
    assert "ModeError" in r.stderr
    assert "numba.cuda was imported before nbkit" in r.stderr
    assert "make `import nbkit` the first import" in r.stderr
    assert r.stdout.strip() == "gc on: True"  # the failed import turned the garbage collector on again


def test_numba_imported_first_without_cuda_is_switched(python_in_fresh_process):
    # Plain `import numba` does not fix the CUDA target yet: nbkit can still choose.
    r = python_in_fresh_process("import numba\nimport nbkit\nfrom numba import cuda\nprint(nbkit.MODE.name, cuda.jit.__module__)",
                                NBKIT_MODE="sim")
    assert r.returncode == 0, r.stderr
    name, module = r.stdout.split()
    assert name == "sim" and "simulator" in module


def test_simulator_imported_first_is_kept_in_auto_mode(python_in_fresh_process):
    r = python_in_fresh_process("import numba.cuda\nimport nbkit\nprint(nbkit.MODE.name)", NUMBA_ENABLE_CUDASIM="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "sim"


def test_gc_is_set_for_compiling_unless_the_process_chose_its_own(auto_mode, forced_simulator_with_doctor):
    """nbkit.core.collector: off while numba is imported, then what was imported is frozen and the youngest
    generation is collected every GC_YOUNG allocations; a process's own thresholds are kept."""
    from nbkit.core.collector import GC_YOUNG

    assert auto_mode.stdout.splitlines()[-1] == f"gc ({GC_YOUNG}, 10, 10) True True", auto_mode.stdout
    assert forced_simulator_with_doctor.stdout.splitlines()[-1] == "gc (800, 10, 10) 0 True"


def test_doctor_reports_the_simulator(forced_simulator_with_doctor):
    r = forced_simulator_with_doctor
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for needle in ("mode               : CUDA SIMULATOR (CPU)", "numba              : ", "numba-cuda         : ",
                   "Python             : ", "platform           : ", "that kernels are CORRECT",
                   "Its timings say nothing about GPU speed"):
        assert needle in out, (needle, out)


def test_doctor_in_gpu_mode_without_a_device_says_so(python_in_fresh_process):
    if probe_gpu().usable:
        pytest.skip("a GPU is present here")
    r = python_in_fresh_process("import nbkit; nbkit.doctor()", NBKIT_MODE="gpu")
    assert r.returncode == 0, r.stderr
    assert "GPU (real CUDA target)" in r.stdout
    assert "kernels can be compiled (e.g. to PTX) but not launched" in r.stdout


# --- auto mode on a GPU that cannot work: the simulator, and one line saying why (compat's rules) ----------------------
def _probe(driver, ccs):
    from nbkit.core.mode import GpuProbe

    return GpuProbe(True, len(ccs), driver, f"{len(ccs)} CUDA device(s) found", tuple(ccs), ("Fake GPU",) * len(ccs))


@pytest.mark.parametrize("driver, ccs, toolkit, name, why", [
    (13000, [(8, 6)], 13, "gpu", None),
    (12040, [(8, 6)], 12, "gpu", None),
    (12040, [(6, 1)], 12, "gpu", None),
    (13000, [(9, 0), (7, 5)], 13, "gpu", None),
    (13000, [(3, 7)], 12, "sim", "compute capability 3.7 is older than any CUDA toolkit numba-cuda supports (>= 5.0)"),
    (11040, [(8, 6)], 12, "sim", "the NVIDIA driver supports only CUDA 11.4; numba-cuda needs driver >= 525"),
    (12040, [(8, 6)], 13, "sim", "installed for CUDA 13, which needs driver >= 580; this driver supports CUDA 12.4"),
    (13000, [(9, 0), (7, 0)], 13, "sim", "supports compute capability >= 7.5; this GPU has 7.0"),
    (12040, [(8, 6)], None, "gpu", None),  # toolkit unknown (no cuda-bindings): nothing known against the GPU
])
def test_auto_mode_falls_back_to_the_simulator_where_the_gpu_cannot_work(driver, ccs, toolkit, name, why):
    from nbkit.core.mode import auto_choice

    chosen, reason = auto_choice(_probe(driver, ccs), toolkit)
    assert chosen == name, reason
    assert reason.startswith("auto: ")
    if why:
        assert why in reason and "using the simulator" in reason and "NBKIT_MODE=gpu forces the GPU" in reason


def test_auto_mode_without_a_device_is_the_simulator_whatever_the_toolkit():
    from nbkit.core.mode import GpuProbe, auto_choice

    assert auto_choice(GpuProbe(False, 0, None, "CUDA driver library (libcuda) not found"), 13) == (
        "sim", "auto: CUDA driver library (libcuda) not found")


@pytest.mark.parametrize("driver, ccs, why", [
    (13000, "3.7", "compute capability 3.7 is older than any CUDA toolkit"),
    (11080, "8.6", "the NVIDIA driver supports only CUDA 11.8"),
])
def test_import_on_a_faked_unusable_gpu_runs_the_simulator_and_says_why(fake_driver, python_in_fresh_process,
                                                                         driver, ccs, why):
    r = python_in_fresh_process("import nbkit, numba.cuda as c; print(nbkit.MODE.name, c.jit.__module__)",
                                **fake_driver(driver, ccs))
    assert r.returncode == 0, r.stderr
    name, module = r.stdout.split()
    assert name == "sim" and "simulator" in module
    lines = [line for line in r.stderr.splitlines() if line.startswith("nbkit: ")]
    assert len(lines) == 1 and why in lines[0] and "using the simulator" in lines[0], r.stderr


# --- the doctor names the numba.cuda that is really loaded ------------------------------------------------------------
_WITHOUT_REDIRECT = ("import sys\n"
                     "sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != 'NumbaCudaFinder']\n")


@pytest.mark.parametrize("redirect", [True, False], ids=["numba-cuda's", "built-in (the .pth redirect did not run)"])
def test_doctor_names_the_numba_cuda_implementation_that_is_loaded(request, python_in_fresh_process, redirect):
    import importlib.util

    if importlib.util.find_spec("_numba_cuda_redirector") is None:
        pytest.skip("numba-cuda (and its redirect) is not installed here")
    if redirect:  # the ordinary start-up: the shared run of the doctor under NBKIT_MODE=sim
        r = request.getfixturevalue("forced_simulator_with_doctor")
    else:
        r = python_in_fresh_process(_WITHOUT_REDIRECT + "import nbkit; nbkit.doctor()", NBKIT_MODE="sim")
    assert r.returncode == 0, r.stderr
    line = next(line for line in r.stdout.splitlines() if "numba.cuda is" in line)
    if redirect:
        assert "numba-cuda 0." in line and "numba-cuda's, redirected" in line, line
        assert "redirect (a .pth file) did not run" not in r.stdout
    else:
        assert "built-in" in line and "numba's own CUDA target, not numba-cuda's" in line, line
        assert "numba-cuda is installed, but its start-up redirect (a .pth file) did not run" in r.stdout
        assert "restart the Python kernel" in r.stdout
