"""The Colab/Kaggle cell leaves a working session: numba-cuda installed into a running kernel takes over numba.cuda.

The fresh-install state is simulated with ``python -S``: site-packages is put on the path by hand, so numba-cuda's
``.pth`` file has not run, exactly as in a kernel that pip-installed numba-cuda while running.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]
PURELIB = sysconfig.get_paths()["purelib"]


def _fresh(code: str) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.append({PURELIB!r}); sys.path.insert(0, {str(ROOT)!r})\n"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], capture_output=True, text=True, env=env,
                          timeout=300)


needs_numba_cuda = pytest.mark.skipif(not Path(PURELIB, "_numba_cuda_redirector.py").exists(),
                                      reason="numba-cuda is not installed here")


@pytest.fixture(scope="module")
def imported_too_early() -> subprocess.CompletedProcess:
    """One fresh interpreter for two tests: numba.cuda imported before activation (first line: its file), then
    the activation asked for (a process start with numba costs about 0.4 s of CPU)."""
    return _fresh("from numba import cuda\nprint(cuda.__file__)\nfrom coursekit import colab\n"
                  "try:\n    colab.activate_numba_cuda()\nexcept colab.RestartNeeded as e:\n    print('RESTART', e)")


@needs_numba_cuda
def test_without_activation_numba_cuda_is_numbas_builtin_target(imported_too_early):
    r = imported_too_early
    assert r.returncode == 0, r.stderr
    assert "numba_cuda" not in r.stdout.splitlines()[0]  # the premise: the .pth has not run


@needs_numba_cuda
def test_activation_in_a_running_interpreter_gives_numba_cudas_package():
    r = _fresh("from coursekit import colab; print(colab.activate_numba_cuda())\n"
               "from numba import cuda; print(cuda.__file__)")
    assert r.returncode == 0, r.stderr
    assert "activated in this running kernel" in r.stdout and "numba_cuda" in r.stdout.splitlines()[-1]


@needs_numba_cuda
def test_numba_cuda_imported_too_early_asks_for_a_restart(imported_too_early):
    r = imported_too_early
    assert r.returncode == 0, r.stderr
    assert "RESTART" in r.stdout


def test_already_redirected_interpreter_is_left_alone():
    from coursekit import colab

    if colab.redirected():
        assert "already active" in colab.activate_numba_cuda()
    else:
        pytest.skip("numba-cuda's redirection is not active in this interpreter")
