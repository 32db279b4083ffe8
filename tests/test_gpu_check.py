"""``bash course.sh gpu-check``'s plumbing, without a GPU: a faked libcuda says what GPUs there are, and a fake
Python stands in for every command (pytest, nbval, the benchmark, torchrun), recording its calls and printing
canned output, so each test sees what the check runs, how it budgets time and what it writes, in seconds."""

import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_course_sh import PIN, PYPROJECT, _course_sh, _extra, _fake_venv

from coursekit import gpu_check
from coursekit import setup_plan as sp

pytestmark = pytest.mark.subprocess

# "$*" of each call, with the mode it ran in, goes to FAKE_LOG; FAKE_FAIL names a step (a word of its command line)
# that fails. (FAKE_SLOW=nvidia-smi makes the fake nvidia-smi of _gpu_check sleep past its time.)
FAKE_PYTHON = r"""#!/bin/sh
echo "NBKIT_MODE=${NBKIT_MODE:-} NUMBA_ENABLE_CUDASIM=${NUMBA_ENABLE_CUDASIM:-unset} $*" >> "$FAKE_LOG"
case "$*" in
    *nbkit.doctor*) echo "nbkit doctor"; echo "  GPU                : Fake GPU 0"; echo "  CUDA runtime       : 13.0" ;;
    *--nbval-lax*) echo "notebooks/08_cifar10_capstone.ipynb::Cell 3 FAILED"
                   echo "FAILED notebooks/08_cifar10_capstone.ipynb::Cell 3"; echo "1 failed, 40 passed in 50.0s"
                   exit 1 ;;
    *"-m pytest"*) echo "...."; echo "612 passed, 3 skipped in 120.5s" ;;
    *nbkit.perf.bench*) echo "GPU, batch 256: kernel LeNet 0.61x PyTorch"; echo "SGEMM 4096: 0.80x cuBLAS" ;;
    *torch.distributed.run*) echo "rank 0/2 course nccl: losses [2.3], sum|params| 1.0, 9000 samples/s (SYNTHETIC data)"
                             echo "some log line" ;;
esac
case " $* " in *" $FAKE_FAIL "*) echo "boom"; exit 3 ;; esac
exit 0
"""


def _fake_python(tmp_path: Path) -> Path:
    path = tmp_path / "fake-python"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    return path


def _gpu_check(tmp_path, driver, *args, **env):
    import os
    import subprocess

    full = {k: v for k, v in os.environ.items() if k not in ("NBKIT_MODE", "NUMBA_ENABLE_CUDASIM")}
    bin_dir = tmp_path / "bin"  # a fake nvidia-smi, first on PATH
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text('#!/bin/sh\n[ "${FAKE_SLOW:-}" = nvidia-smi ] && sleep 30\n'
                                        'echo "index, name, driver_version"; echo "0, Fake GPU 0, 580.65"\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    full.update(driver, FAKE_LOG=str(tmp_path / "calls.log"), PATH=f"{bin_dir}:/usr/bin:/bin", NUMBA_ENABLE_CUDASIM="1",
                **env)
    return subprocess.run([sys.executable, "-m", "coursekit.gpu_check", "--out", str(tmp_path / "results"),
                           "--python", str(_fake_python(tmp_path)), *args],
                          capture_output=True, text=True, env=full, cwd=ROOT, timeout=120)


def _calls(tmp_path):
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path, fake_driver):
    r = _gpu_check(tmp_path, fake_driver(13000, ""))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [r.stdout.strip()] and r.stdout.startswith("gpu-check: no NVIDIA GPU here ("), r.stdout
    assert _calls(tmp_path) == [] and not (tmp_path / "results").exists()


def test_on_two_gpus_it_runs_every_step_in_gpu_mode_and_writes_one_dated_results_file(tmp_path, fake_driver):
    r = _gpu_check(tmp_path, fake_driver(13000, "8.6,8.6"))
    assert r.returncode == 1, r.stderr  # the fake nbval run fails
    calls = _calls(tmp_path)
    assert all(c.startswith("NBKIT_MODE=gpu NUMBA_ENABLE_CUDASIM=unset ") for c in calls), calls
    commands = [c.split(" ", 2)[2] for c in calls]
    assert commands[0] == "-c import nbkit; nbkit.doctor()"
    assert commands[1].startswith("-m pytest -q -n ") and commands[1].endswith(" --dist loadfile tests")
    assert commands[2].endswith("--nbval-lax --nbval-current-env " + " ".join(
        f"notebooks/{n}.ipynb" for n in ("00_welcome", "03_cuda_model", "04_dense_layer", "08_cifar10_capstone",
                                         "09_performance_lab")))
    assert commands[3] == "-m nbkit.perf.bench"
    torchrun = "-m torch.distributed.run --standalone --nproc_per_node=2 -m nbkit.nn.dist --backend nccl --timeout 60"
    assert commands[4:] == [f"{torchrun} --model course", f"{torchrun} --model torch"]
    files = list((tmp_path / "results").iterdir())
    assert len(files) == 1 and files[0].name.startswith("gpu-check-20") and files[0].suffix == ".md"
    text = files[0].read_text()
    for needle in ("GPUs: 2: Fake GPU 0 (compute capability 8.6), Fake GPU 1 (compute capability 8.6)",
                   "The driver supports CUDA 13.0",
                   "Result: FAILED: notebooks 00, 03, 04, 08, 09 under nbval: FAILED (exit 1).",
                   "| test suite in GPU mode | passed |", "612 passed, 3 skipped in 120.5s",
                   "FAILED notebooks/08_cifar10_capstone.ipynb::Cell 3", "1 failed, 40 passed in 50.0s",
                   "CUDA runtime       : 13.0", "0, Fake GPU 0, 580.65", "GPU, batch 256: kernel LeNet 0.61x PyTorch",
                   "SGEMM 4096: 0.80x cuBLAS",
                   "rank 0/2 course nccl: losses [2.3], sum|params| 1.0, 9000 samples/s (SYNTHETIC data)"):
        assert needle in text, (needle, text)
    assert "some log line" not in text and "...." not in text  # figures only, and the tail of failures
    assert r.stdout.strip().endswith(f"gpu-check: 6 of 7 steps passed; results in {files[0]}"), r.stdout


def test_a_step_past_its_time_is_stopped_and_recorded_and_the_rest_still_run(tmp_path, fake_driver):
    # The slow step is nvidia-smi, the second: with 12 s for all steps its limit is the doctor's 0.9 s (the doctor
    # takes next to nothing) plus its own 0.3 s, so the test waits about 1.2 s for the timeout, not the ~10 s a later
    # step would have (time a step leaves unused goes to the later ones).
    r = _gpu_check(tmp_path, fake_driver(13000, "9.0"), "--budget", "12", FAKE_SLOW="nvidia-smi", FAKE_FAIL="course")
    assert r.returncode == 1, r.stderr
    text = next((tmp_path / "results").iterdir()).read_text()
    assert "| nvidia-smi | TIMED OUT after " in text, text
    assert "| benchmark: kernel LeNet vs PyTorch, SGEMMs vs cuBLAS | passed |" in text, text
    assert "| torchrun, NCCL, 1 GPU(s): course model | FAILED (exit 3) |" in text
    assert "| torchrun, NCCL, 1 GPU(s): PyTorch DDP | passed |" in text
    assert "boom" in text  # the tail of a failed step's output


def test_budget_shares_add_up_to_ten_minutes():
    steps = gpu_check.plan("python", 4)
    assert sum(s.share_s for s in steps if s.name != "nvidia-smi") <= gpu_check.BUDGET_S
    assert gpu_check.BUDGET_S <= 600


def test_course_sh_gpu_check_sets_up_and_runs_the_check_with_the_course_python(tmp_path, fake_driver):
    venv = _fake_venv(tmp_path)
    sp.mark_installed(venv, PYPROJECT, _extra(), PIN)
    r = _course_sh("gpu-check", venv=venv, **fake_driver(13000, ""))
    assert (r.returncode, r.stdout.count("\n")) == (0, 1), r.stderr
    assert r.stdout.startswith("gpu-check: no NVIDIA GPU here ("), r.stdout
    # With a GPU and no time at all, no step runs, but the results file names the commands it would have run.
    r = _course_sh("gpu-check", "--budget", "0.1", "--out", str(tmp_path / "out"), venv=venv,
                   **fake_driver(13000, "8.0"))
    assert r.returncode == 1, r.stderr
    text = next((tmp_path / "out").iterdir()).read_text()
    assert text.count("| NOT RUN (out of time) |") == len(gpu_check.plan("python", 1)), text
    assert f"`{venv}/bin/python -m nbkit.perf.bench`" in text, text
