"""nbkit.core.simulator, the one home of the CUDA simulator's internals, on whichever simulator is loaded here
(numba-cuda's in the main environment, numba's built-in one under ``course.sh test-numba-only``)."""

import re
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import cuda, float32, float64

from coursekit import numba_only
from nbkit.core import simulator

ROOT = Path(__file__).resolve().parent.parent


def test_which_names_the_loaded_simulator_and_its_versions():
    name = simulator.which()
    assert numba.__version__ in name
    redirected = "numba_cuda" in cuda.__file__
    assert name.startswith("numba-cuda " if redirected else "numba ") and name.endswith(")" if redirected else "built-in")
    assert simulator.internals().name == name


def test_numba_types_and_numpy_dtypes_become_numpy_dtypes():
    assert simulator.as_dtype(float32) == np.float32
    assert simulator.as_dtype(float64) == np.float64
    assert simulator.as_dtype(np.int32) == np.int32
    assert simulator.as_dtype("int16") == np.int16


def test_the_memory_of_a_simulator_device_array_is_its_numpy_array():
    d = cuda.to_device(np.zeros(4, dtype=np.float32))
    memory = simulator.device_array_memory(d)
    memory[2] = 7.0  # writing the memory is writing the device array
    assert d.copy_to_host().tolist() == [0.0, 0.0, 7.0, 0.0]
    assert simulator.device_array_memory(np.zeros(4)) is None


def _fill_with_thread_index(out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = i


def test_a_python_function_runs_as_a_simulator_kernel():
    kernel = simulator.simulated_kernel(_fill_with_thread_index)
    assert simulator.is_simulated_kernel(kernel) and not simulator.is_simulated_kernel(_fill_with_thread_index)
    out = np.zeros(40, dtype=np.int64)
    kernel[2, 32](out)
    assert out.tolist() == list(range(40))


def test_missing_internals_are_named_with_the_supported_versions(monkeypatch):
    from numba.cuda.simulator import kernel

    monkeypatch.delattr(kernel, "BlockManager")
    simulator.internals.cache_clear()
    try:
        with pytest.raises(simulator.SimulatorInternalsError) as info:
            simulator.internals()
    finally:
        monkeypatch.undo()
        simulator.internals.cache_clear()
    message = str(info.value)
    assert "numba.cuda.simulator.kernel.BlockManager" in message and simulator.which() in message
    assert simulator.SUPPORTED in message
    assert simulator.internals().BlockManager is kernel.BlockManager


def test_no_other_module_reaches_into_the_simulator():
    """One home: only nbkit/core/simulator.py may import numba.cuda.simulator or numba(-cuda)'s private modules."""
    internal = re.compile(r"numba\.cuda\.(simulator|np|types|core|cudadrv)\b|\._ary\b|numba_cuda\.numba")
    offenders = [str(path.relative_to(ROOT)) for folder in ("nbkit", "coursekit", "tests")
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 if path.name not in ("simulator.py", "test_simulator.py") and internal.search(path.read_text())]
    assert offenders == []


def test_the_numba_only_environment_is_the_main_one_less_numba_cuda():
    text = (ROOT / "pyproject.toml").read_text()
    reqs = numba_only.requirements(text)
    names = [numba_only._name(r) for r in reqs]
    assert "numba-cuda" not in names and "numba" in names
    assert {"pytest", "nbval", "ipykernel", "torch"} <= set(names)  # the test and lab extras are in
    fake = text.replace('"numba>=0.60",', '"numba>=0.60",\n    "Numba_CUDA[cu13]>=0.30",')
    assert numba_only.requirements(fake) == reqs  # any spelling of numba-cuda is left out
