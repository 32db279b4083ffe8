"""course.sh's set-up decisions (coursekit/setup_plan.py and the CUDA compatibility rules it loads,
nbkit/core/compat.py), with faked drivers, GPUs, indexes and environments.

No GPU is needed: the CUDA driver is faked twice, as numbers handed to the decision functions and as a small
C library named libcuda.so.1 that answers the driver calls nbkit.core.mode makes through ctypes.
"""

import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT

from coursekit import setup_plan as sp
from nbkit.core import compat
from nbkit.core.mode import GpuProbe

SCRIPT = str(ROOT / "coursekit" / "setup_plan.py")


# --- numba-cuda[cu12] or [cu13] --------------------------------------------------------------------------------------
@pytest.mark.parametrize("driver, ccs, extra, warns", [
    (None, [], "cu13", False),                # no GPU: CUDA 13 compiles PTX, the simulator runs kernels
    (13000, [(7, 5)], "cu13", False),         # T4 on a CUDA 13 driver (>= 580)
    (13020, [(9, 0)], "cu13", False),         # H100
    (13000, [(6, 0)], "cu12", False),         # Kaggle's P100: too old for CUDA 13, fine for CUDA 12 on any newer driver
    (13000, [(8, 0), (7, 0)], "cu12", False),  # mixed GPUs: the oldest decides
    (12080, [(8, 6)], "cu12", False),         # driver 570 (CUDA 12.8): CUDA 13 needs >= 580
    (12020, [(7, 5)], "cu12", False),         # driver 535 (CUDA 12.2): CUDA 12.9 wheels run through minor version compat.
    (12000, [(5, 0)], "cu12", False),         # the lowest CUDA 12 driver and GPU
    (12090, [(7, 5)], "cu12", False),
    (11080, [(7, 5)], "cu12", True),          # driver too old for both: update it
    (13000, [(3, 7)], "cu13", True),          # Kepler: no toolkit numba-cuda supports
])
def test_extra_follows_driver_and_compute_capability(driver, ccs, extra, warns):
    choice = compat.choose_extra(driver, ccs)
    assert choice.extra == extra, choice
    assert (choice.warning is not None) == warns, choice


def test_the_warnings_say_what_to_do():
    assert "driver >= 525" in compat.choose_extra(11080, [(7, 5)]).warning
    assert "NBKIT_MODE=sim" in compat.choose_extra(13000, [(3, 7)], ["Tesla K80"]).warning
    assert "Tesla K80 (compute capability 3.7)" in compat.choose_extra(13000, [(3, 7)], ["Tesla K80"]).warning
    reason = compat.choose_extra(13000, [(8, 0), (6, 0)], ["A100", "P100"]).reason
    assert "P100 (compute capability 6.0)" in reason and ">= 7.5" in reason


def test_extra_can_be_forced_and_a_bad_value_is_refused():
    assert compat.choose_extra(13000, [(9, 0)], forced="cu12").extra == "cu12"
    with pytest.raises(ValueError, match="NBKIT_CUDA='cu11' is not understood: expected one of cu12, cu13"):
        compat.choose_extra(13000, [(9, 0)], forced="cu11")


def _probe(driver, ccs, names=None):
    names = tuple(names) if names else tuple(f"GPU {i}" for i in range(len(ccs)))
    return GpuProbe(True, len(ccs), driver, "faked", tuple(ccs), names)


def test_extra_from_a_probe_ignores_a_driver_without_devices():
    assert compat.choose_for(GpuProbe(True, 0, 12020, "0 CUDA device(s) found")).extra == "cu13"
    assert compat.choose_for(_probe(12020, [(7, 5)])).extra == "cu12"


# --- nbkit.doctor(): mismatches and the command that fixes them -------------------------------------------------------
CU13_WHEELS = {"cuda-toolkit": "13.5.0", "nvidia-nvvm": "13.5.37", "nvidia-cuda-runtime": "13.5.37",
               "nvidia-cuda-cccl": None, "nvidia-cuda-nvrtc": "12.9.86", "nvidia-nvjitlink": "13.5.37"}


def test_doctor_names_a_driver_too_old_for_cuda_13_with_the_fix():
    [problem] = compat.diagnose(_probe(12040, [(7, 5)], ["Tesla T4"]), 13, "/venv/bin/python", installed=CU13_WHEELS)
    assert "set up for CUDA 13, which needs driver >= 580" in problem and "supports CUDA 12.4" in problem
    # Only the CUDA 13 wheels that are installed are removed (not the 12.x nvrtc, not the missing cccl).
    assert problem.endswith("Fix: /venv/bin/python -m pip uninstall -y cuda-toolkit nvidia-nvvm nvidia-cuda-runtime "
                            'nvidia-nvjitlink && /venv/bin/python -m pip install "numba-cuda[cu12]>=0.21"'), problem


def test_doctor_names_a_gpu_too_old_for_cuda_13():
    [problem] = compat.diagnose(_probe(13000, [(6, 0)], ["Tesla P100-PCIE-16GB"]), 13, "python", installed={})
    assert "Tesla P100-PCIE-16GB has compute capability 6.0; CUDA 13 supports >= 7.5" in problem
    assert problem.endswith('Fix: python -m pip install "numba-cuda[cu12]>=0.21"')


def test_doctor_in_a_course_venv_points_to_course_sh():
    [problem] = compat.diagnose(_probe(12040, [(7, 5)]), 13, "python", in_course_venv=True)
    assert "Fix: bash course.sh setup" in problem


@pytest.mark.parametrize("driver, ccs, toolkit", [
    (12020, [(6, 0)], 12), (13000, [(9, 0)], 12), (13000, [(9, 0)], 13), (13000, [(7, 5), (8, 6)], 13),
])
def test_doctor_finds_nothing_wrong_in_working_set_ups(driver, ccs, toolkit):
    assert compat.diagnose(_probe(driver, ccs), toolkit) == []


def test_doctor_names_old_drivers_kepler_gpus_and_missing_bindings():
    assert "update the NVIDIA driver" in compat.diagnose(_probe(11080, [(7, 5)]), 12)[0]
    assert "NBKIT_MODE=sim" in compat.diagnose(_probe(13000, [(3, 7)]), 13)[0]
    if sys.platform.startswith("linux"):
        assert 'pip install "numba-cuda[cu12]>=0.21"' in compat.diagnose(_probe(12020, [(7, 5)]), None, "python")[0]
    assert compat.diagnose(GpuProbe(False, 0, None, "no driver"), 13) == []


# --- PyTorch: CPU-only index on a GPU-less Linux, with a fast fallback -----------------------------------------------
def test_torch_index_only_for_linux_without_gpu():
    assert sp.torch_index("Linux", gpu_usable=False) == "https://download.pytorch.org/whl/cpu"
    assert sp.torch_index("Linux", gpu_usable=True) is None
    assert sp.torch_index("Darwin", gpu_usable=False) is None
    assert sp.torch_index("Windows", gpu_usable=False) is None


def test_pip_index_output_is_read_exactly():
    out = "torch (2.13.0+cpu)\nAvailable versions: 2.13.0+cpu, 2.12.0+cpu, 2.1.0+cpu\n"
    assert sp.index_serves(out, "2.13.0") and sp.index_serves(out, "2.1.0")
    assert not sp.index_serves(out, "2.13") and not sp.index_serves(out, "2.11.0") and not sp.index_serves("", "2.13.0")


@pytest.mark.subprocess
def test_unreachable_cpu_index_falls_back_to_the_default_index(monkeypatch):
    monkeypatch.setattr(sp, "TORCH_CPU_INDEX", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    args, message = sp.torch_pip_args(sys.executable, "torch==2.13.0", "Linux", gpu_usable=False)
    assert args == []
    assert "did not offer torch==2.13.0" in message and "falling back to the default index" in message


@pytest.fixture
def local_index(tmp_path):
    """A PEP 503 index on localhost that lists exactly the torch wheel files named in ``files``."""
    files: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.rstrip("/").endswith("/torch"):
                body = "".join(f'<a href="/files/{f}">{f}</a><br>' for f in files).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
            else:
                body = b""
                self.send_response(404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple", files
    server.shutdown()


@pytest.mark.subprocess
def test_reachable_cpu_index_is_used(local_index, monkeypatch):
    url, files = local_index
    files.append("torch-2.13.0+cpu-py3-none-any.whl")
    monkeypatch.setattr(sp, "TORCH_CPU_INDEX", url)
    args, message = sp.torch_pip_args(sys.executable, "torch==2.13.0", "Linux", gpu_usable=False)
    assert args == ["--index-url", url], message
    assert "CPU-only build" in message


@pytest.mark.subprocess
def test_probe_asks_only_the_cpu_index(local_index, monkeypatch, tmp_path):
    # A find-links directory (as pip.conf or PIP_FIND_LINKS may name) holds 2.13.0; the index only 2.12.0.
    url, files = local_index
    files.append("torch-2.12.0+cpu-py3-none-any.whl")
    (tmp_path / "torch-2.13.0+cpu-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    ok, detail = sp.probe_index(sys.executable, url, "2.13.0")
    assert not ok, detail
    assert sp.probe_index(sys.executable, url, "2.12.0") == (True, "")


# --- Re-install only when pyproject.toml or the choices changed ------------------------------------------------------
def test_install_state_follows_pyproject_and_choices(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    assert sp.install_state(tmp_path, text, "cu13", "torch==2.13.0") == "new"
    sp.mark_installed(tmp_path, text, "cu13", "torch==2.13.0")
    assert sp.install_state(tmp_path, text, "cu13", "torch==2.13.0") == "current"
    assert sp.install_state(tmp_path, text + "\n# edited\n", "cu13", "torch==2.13.0") == "changed"
    assert sp.install_state(tmp_path, text, "cu13", "torch==2.14.0") == "changed"
    assert sp.install_state(tmp_path, text, "cu12", "torch==2.13.0") == "switch"
    (tmp_path / compat.STAMP).write_text("{not json")
    assert sp.install_state(tmp_path, text, "cu13", "torch==2.13.0") == "new"


def test_an_environment_from_before_the_stamp_with_cuda_13_is_rebuilt_for_cu12(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "lib" / "python3.11" / "site-packages" / "cuda_bindings-13.5.0.dist-info").mkdir(parents=True)
    assert sp.install_state(tmp_path, text, "cu12", "torch==2.13.0") == "switch"
    assert sp.install_state(tmp_path, text, "cu13", "torch==2.13.0") == "new"


# --- The file runs before numba exists, and reads a faked driver ------------------------------------------------------
def _run_script(*args, env=None, tmp_path):
    blocker = tmp_path / "blocked" / "numba"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text("raise ImportError('coursekit/setup_plan.py must not import numba')\n")
    full_env = {k: v for k, v in os.environ.items() if k not in ("NBKIT_CUDA", "PYTHONPATH")}
    full_env.update(env or {}, PYTHONPATH=str(blocker.parent))
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=full_env, timeout=120)


@pytest.mark.subprocess
def test_script_runs_without_numba(tmp_path):
    r = _run_script("extra", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("cu12", "cu13") and "course.sh: numba-cuda[" in r.stderr
    r = _run_script("extra", env={"NBKIT_CUDA": "cu12"}, tmp_path=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, "cu12"), r.stderr
    r = _run_script("extra", env={"NBKIT_CUDA": "cu11"}, tmp_path=tmp_path)
    assert r.returncode == 2 and "expected one of cu12, cu13" in r.stderr
    assert _run_script("frobnicate", tmp_path=tmp_path).returncode == 2


@pytest.mark.subprocess
def test_script_state_and_mark(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    assert _run_script("state", str(venv), "cu13", "torch==2.13.0", tmp_path=tmp_path).stdout.strip() == "new"
    assert _run_script("mark", str(venv), "cu13", "torch==2.13.0", tmp_path=tmp_path).returncode == 0
    assert json.loads((venv / compat.STAMP).read_text())["extra"] == "cu13"
    assert _run_script("state", str(venv), "cu13", "torch==2.13.0", tmp_path=tmp_path).stdout.strip() == "current"


@pytest.mark.subprocess
@pytest.mark.parametrize("driver, ccs, extra, says", [
    (13000, "6.0", "cu12", "Fake GPU 0 (compute capability 6.0): CUDA 13 supports compute capability >= 7.5"),
    (12040, "7.5", "cu12", "driver supports CUDA 12.4 (CUDA 13 needs driver >= 580)"),
    (13000, "9.0,7.5", "cu13", "Fake GPU 1 (compute capability 7.5), driver supports CUDA 13.0"),
    (13000, "9.0,7.0", "cu12", "Fake GPU 1 (compute capability 7.0)"),
])
def test_script_reads_the_faked_driver(fake_driver, tmp_path, driver, ccs, extra, says):
    r = _run_script("extra", env=fake_driver(driver, ccs), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == extra and says in r.stderr, r.stderr


@pytest.mark.subprocess
def test_probe_reads_compute_capabilities_and_names(fake_driver, python_in_fresh_process):
    # nbkit/core/mode.py loaded by its path (standard library only): `from nbkit.core.mode import probe_gpu` would
    # import nbkit, hence numba, half a second of CPU that the probe does not use
    mode = ROOT / "nbkit" / "core" / "mode.py"
    r = python_in_fresh_process("import importlib.util, sys\n"
                                f"spec = importlib.util.spec_from_file_location('mode', {str(mode)!r})\n"
                                "mode = sys.modules['mode'] = importlib.util.module_from_spec(spec)\n"
                                "spec.loader.exec_module(mode)\n"
                                "p = mode.probe_gpu()\n"
                                "print(p.driver_version, p.device_count, p.compute_capabilities, p.device_names)",
                                NBKIT_MODE="sim", **fake_driver(12020, "6.1,8.6"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "12020 2 ((6, 1), (8, 6)) ('Fake GPU 0', 'Fake GPU 1')"


@pytest.mark.subprocess
def test_doctor_reports_the_mismatch_it_finds(fake_driver, python_in_fresh_process):
    toolkit = compat.installed_toolkit_major()
    r = python_in_fresh_process("import nbkit; nbkit.doctor()", NBKIT_MODE="sim", **fake_driver(13000, "6.0"))
    assert r.returncode == 0, r.stderr
    if toolkit is not None and toolkit >= 13:
        assert "set-up check       : PROBLEM" in r.stdout, r.stdout
        assert "Fake GPU 0 has compute capability 6.0; CUDA 13 supports >= 7.5. Fix: " in r.stdout
        # nbkit.core.doctor names course.sh's set-up where this environment was made by course.sh (it has the stamp).
        fix = "bash course.sh setup" if (Path(sys.prefix) / compat.STAMP).exists() else 'pip install "numba-cuda[cu12]>=0.21"'
        assert fix in r.stdout, r.stdout
    elif importlib.util.find_spec("numba_cuda") is None:  # numba's own simulator (course.sh test-numba-only)
        assert "set-up check       : PROBLEM" in r.stdout, r.stdout
        assert "numba-cuda's CUDA libraries (cuda-bindings) are not installed" in r.stdout, r.stdout
    else:
        assert "set-up check       : OK" in r.stdout, r.stdout
