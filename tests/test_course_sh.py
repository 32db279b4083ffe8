"""course.sh's behaviour, run for real against a fake virtual environment.

The fake environment's python records the pip and pytest calls course.sh makes instead of running them, answers
course.sh's "which torch is installed?" from a site folder that holds only a fake torch's metadata (or none), and
runs everything else (setup_plan.py, the learner tool) in this interpreter; its jupyter prints its arguments. So
each test sees what course.sh decides and calls, offline, in a second.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from coursekit import numba_only
from coursekit import setup_plan as sp
from nbkit.core import compat

pytestmark = pytest.mark.subprocess

PYPROJECT = (ROOT / "pyproject.toml").read_text()
PIN = sp.pinned_torch(PYPROJECT)
USAGE = "usage: bash course.sh lab|test|learner|execute|setup|test-numba-only|gpu-check [extra arguments]\n"

FAKE_PYTHON = """#!/bin/sh
case "$1 $2" in
    "-m pip"|"-m pytest") echo "NBKIT_MODE=${{NBKIT_MODE:-}} $*" >> "$FAKE_LOG"; exit 0 ;;
esac
case "$1 $2" in
    "-c "*'version("torch")'*) PYTHONPATH={site} exec {python} -S "$@" ;;  # -S: no site-packages, no real torch
esac
exec {python} "$@"
"""


def _fake_venv(tmp_path: Path, torch: str | None = PIN.removeprefix("torch==")) -> Path:
    """A fake environment in tmp_path/venv whose torch has version ``torch`` (None: no torch)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = fake\n")
    site = tmp_path / "site"
    site.mkdir()
    if torch is not None:
        (site / f"torch-{torch}.dist-info").mkdir()
        (site / f"torch-{torch}.dist-info" / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {torch}\n")
    for name, text in (("python", FAKE_PYTHON.format(python=shlex.quote(sys.executable), site=shlex.quote(str(site)))),
                       ("jupyter", '#!/bin/sh\necho "jupyter $*"\n')):
        (venv / "bin" / name).write_text(text)
        (venv / "bin" / name).chmod(0o755)
    return venv


def _extra() -> str:
    """The numba-cuda extra setup_plan.py picks on this machine, as course.sh asks for it."""
    env = {k: v for k, v in os.environ.items() if k != "NBKIT_CUDA"}
    return subprocess.run([sys.executable, str(ROOT / "coursekit" / "setup_plan.py"), "extra"], capture_output=True,
                          text=True, env=env, timeout=120, check=True).stdout.strip()


def _course_sh(*args, venv, offline=True, timeout=120, command=("course.sh",), **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("NBKIT_CUDA", "NBKIT_MODE", "NBKIT_TEST_WORKERS")}
    # The numba-only environment is faked beside the main one (never the repository's real .venv-numba).
    full_env.update(NBKIT_VENV=str(venv), NBKIT_NUMBA_VENV=str(venv.parent / "venv-numba"),
                    FAKE_LOG=str(venv.parent / "calls.log"), **env)
    if offline:  # an unreachable index and no pip.conf (no find-links): a pip call that needs packages fails at once
        full_env = {k: v for k, v in full_env.items() if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL")}
        full_env.update(PIP_INDEX_URL="http://127.0.0.1:9/", PIP_CONFIG_FILE=os.devnull)
    return subprocess.run(["bash", str(ROOT / command[0]), *command[1:], *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def _calls(venv: Path, kind: str) -> list[str]:
    """The `python -m pip install` (kind "pip install") or `python -m pytest` calls course.sh made."""
    log = venv.parent / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.split(" ", 1)[1].startswith(f"-m {kind}")]


@pytest.mark.parametrize("args", [(), ("nonsense",), ("Setup",)])
def test_unknown_or_missing_command_prints_usage_and_sets_up_nothing(tmp_path, args):
    r = _course_sh(*args, venv=tmp_path / "venv")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", USAGE)
    assert not (tmp_path / "venv").exists()


def test_unchanged_environment_is_not_reinstalled(tmp_path):
    venv = _fake_venv(tmp_path)
    sp.mark_installed(venv, PYPROJECT, _extra(), PIN)
    r = _course_sh("setup", venv=venv)
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    assert _calls(venv, "pip") == []


def test_changed_pyproject_installs_again_without_build_isolation_and_records_it(tmp_path):
    venv = _fake_venv(tmp_path)
    extra = _extra()
    sp.mark_installed(venv, PYPROJECT + "\n# an older pyproject.toml\n", extra, PIN)
    r = _course_sh("setup", venv=venv)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("course.sh: pyproject.toml changed since the last set-up: installing again\n"), r.stdout
    assert [c.split(" ", 1)[1] for c in _calls(venv, "pip install")] == [
        "-m pip install --quiet setuptools>=77", f"-m pip install --quiet --no-build-isolation -e .[test,lab,{extra}]"]
    assert sp.install_state(venv, PYPROJECT, extra, PIN) == "current"
    assert json.loads((venv / compat.STAMP).read_text())["torch"] == PIN


@pytest.mark.parametrize("installed, installs_torch", [
    (None, True),                                       # no torch yet
    ("2.1.0", True),                                    # another version: replaced by the pin
    (PIN.removeprefix("torch==") + "+cpu", False),      # the pin, CPU-only build: kept
])
def test_torch_is_installed_at_the_pin_unless_it_is_there(tmp_path, installed, installs_torch):
    venv = _fake_venv(tmp_path, torch=installed)
    r = _course_sh("setup", venv=venv)
    assert r.returncode == 0, r.stderr
    torch_calls = [c for c in _calls(venv, "pip install") if "torch" in c]
    assert torch_calls == ([f"NBKIT_MODE= -m pip install --quiet {PIN}"] if installs_torch else []), torch_calls
    assert (f"course.sh: installing {PIN}\n" in r.stdout) == installs_torch, r.stdout


def test_switching_cuda_extra_refuses_to_delete_a_folder_that_is_not_a_venv(tmp_path):
    venv = _fake_venv(tmp_path)
    extra = _extra()
    sp.mark_installed(venv, PYPROJECT, "cu12" if extra == "cu13" else "cu13", PIN)
    (venv / "pyvenv.cfg").unlink()
    r = _course_sh("setup", venv=venv)
    assert r.returncode == 1
    assert r.stderr.endswith(f"course.sh: {venv} does not look like a virtual environment\n"), r.stderr
    assert (venv / "bin" / "python").exists() and _calls(venv, "pip") == []


def test_lab_as_root_adds_allow_root(tmp_path):
    venv = _fake_venv(tmp_path)
    sp.mark_installed(venv, PYPROJECT, _extra(), PIN)
    r = _course_sh("lab", "--no-browser", venv=venv)
    assert r.returncode == 0, r.stderr
    if os.geteuid() == 0:
        assert r.stdout.strip().endswith("jupyter lab --allow-root --no-browser"), r.stdout
        assert "NOTE: running as root" in r.stdout
    else:
        assert r.stdout == "jupyter lab --no-browser\n", r.stdout


def test_learner_runs_the_learner_tool_with_its_arguments(tmp_path):
    venv = _fake_venv(tmp_path)
    sp.mark_installed(venv, PYPROJECT, _extra(), PIN)
    r = _course_sh("learner", "--help", venv=venv)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: learner.py [-h] [--out OUT] [notebooks ...]\n\n"
                               "Make the learner copies of the course notebooks (nbgrader).\n"), r.stdout


def _installed_fake_venvs(tmp_path: Path) -> Path:
    """The main fake environment and the numba-only one beside it, both stamped as installed."""
    venv = _fake_venv(tmp_path)
    sp.mark_installed(venv, PYPROJECT, _extra(), PIN)
    (tmp_path / "numba").mkdir()
    numba_venv = _fake_venv(tmp_path / "numba").rename(tmp_path / "venv-numba")  # where _course_sh points course.sh
    sp.mark_installed(numba_venv, PYPROJECT, numba_only.STAMP_EXTRA, PIN)
    return venv


PYTEST = "-m pytest -n {n} --dist loadfile --nbval-lax --nbval-current-env tests notebooks"


@pytest.mark.parametrize("workers, n", [(None, "auto"), ("0", "0")])
def test_test_runs_pytest_and_nbval_in_the_simulator_then_again_without_numba_cuda(tmp_path, workers, n):
    venv = _installed_fake_venvs(tmp_path)
    r = _course_sh("test", "-k", "saxpy", venv=venv, **({"NBKIT_TEST_WORKERS": workers} if workers else {}))
    assert r.returncode == 0, r.stderr
    assert _calls(venv, "pytest") == [f"NBKIT_MODE=sim {PYTEST.format(n=n)} -k saxpy"] * 2
    assert "the suite again without numba-cuda" in r.stdout and _calls(venv, "pip") == []


def test_test_numba_only_runs_only_the_second_suite_and_always_in_the_simulator(tmp_path):
    venv = _installed_fake_venvs(tmp_path)
    r = _course_sh("test-numba-only", "-x", venv=venv, NBKIT_MODE="gpu")
    assert r.returncode == 0, r.stderr
    assert _calls(venv, "pytest") == [f"NBKIT_MODE=sim {PYTEST.format(n='auto')} -x"]


def test_ci_runs_exactly_the_test_command(tmp_path):
    venv = _installed_fake_venvs(tmp_path)
    r = _course_sh(venv=venv, command=(".ci/run",))
    assert r.returncode == 0, r.stderr
    assert _calls(venv, "pytest") == [f"NBKIT_MODE=sim {PYTEST.format(n='auto')}"] * 2


def test_learner_copies_are_not_committed():
    # Text on purpose: .gitignore is read as text by git, and a clone without git history has no git to ask.
    assert "learner/" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.skipif(not os.environ.get("NBKIT_SLOW_SETUP_TEST"), reason="opt-in (NBKIT_SLOW_SETUP_TEST=1): minutes")
def test_setup_twice_second_time_offline(tmp_path):
    venv = tmp_path / "venv"  # a real environment: real pip, real network the first time
    first = _course_sh("setup", venv=venv, offline=False, timeout=1200)
    assert first.returncode == 0, first.stderr
    second = _course_sh("setup", venv=venv)
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stdout + second.stderr
    # A changed pyproject.toml installs again, still offline: no build isolation, dependencies already there.
    stamp = json.loads((venv / compat.STAMP).read_text())
    (venv / compat.STAMP).write_text(json.dumps({**stamp, "fingerprint": "old"}))
    third = _course_sh("setup", venv=venv)
    assert third.returncode == 0, third.stderr
    assert "pyproject.toml changed since the last set-up: installing again" in third.stdout
