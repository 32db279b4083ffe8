"""pyproject.toml (pip) and environment.yml (conda) must name the same packages and versions, and admit the torch pin."""

import re
import subprocess
import sys

import pytest
from conftest import ROOT

from coursekit import setup_plan

tomllib = pytest.importorskip("tomllib", reason="tomllib (Python >= 3.11) reads pyproject.toml in these tests")

# conda-forge names that differ from PyPI names; packages only one installer needs.
CONDA_TO_PIP = {"pytorch": "torch", "cuda-nvdisasm": "nvidia-cuda-nvdisasm"}
CONDA_ONLY = {"python", "pip", "cuda-version"}  # cuda-version plays the role of the pip extra [cu13]


def _split(requirement: str) -> tuple[str, str]:
    requirement = requirement.split(";")[0].split("#")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$", requirement)
    assert m, requirement
    return m.group(1).lower(), m.group(3).replace(" ", "")


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(extra)
    return dict(_split(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    deps = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        m = re.match(r"^\s+-\s+([^#]+)", line)
        if m and ":" not in m.group(1):
            name, spec = _split(m.group(1))
            if name not in CONDA_ONLY:
                deps[CONDA_TO_PIP.get(name, name)] = spec
    return deps


def test_pip_and_conda_name_the_same_packages_and_versions():
    assert pip_requirements() == conda_requirements()


def test_the_comparison_can_fail():
    assert _split("numba-cuda[cu13]>=0.21; sys_platform != 'darwin'") == ("numba-cuda", ">=0.21")
    assert {**pip_requirements(), "numpy": ">=2"} != conda_requirements()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_torch_pin_is_read_exactly_as_toml_reads_it():
    text = (ROOT / "pyproject.toml").read_text()
    assert setup_plan.pinned_torch(text) == "torch==" + tomllib.loads(text)["tool"]["nbkit"]["torch"]
    # Only the [tool.nbkit] table counts, wherever it is and whatever else names torch.
    other = '[tool.other]\ntorch = "1.0"\n\n[tool.nbkit]\nfoo = 1\ntorch = "2.14.1"\n\n[tool.more]\ntorch = "3.0"\n'
    assert setup_plan.pinned_torch(other) == "torch==2.14.1"
    with pytest.raises(ValueError, match=r"no \[tool.nbkit\] table with torch"):
        setup_plan.pinned_torch('[tool.other]\ntorch = "1.0"\n')


def test_the_ranges_admit_the_pinned_torch():
    # pyproject and environment.yml state ranges only: a bare `pip install torch` may pull a multi-GB CUDA build.
    pinned = setup_plan.pinned_torch((ROOT / "pyproject.toml").read_text()).removeprefix("torch==")
    for spec in (pip_requirements()["torch"], conda_requirements()["torch"]):
        assert spec.startswith(">=") and _version(pinned) >= _version(spec[2:]), (spec, pinned)


@pytest.mark.subprocess
def test_setup_plan_prints_the_pin_for_course_sh():
    r = subprocess.run([sys.executable, str(ROOT / "coursekit" / "setup_plan.py"), "torch-req"], capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, setup_plan.pinned_torch((ROOT / "pyproject.toml").read_text())
                                                  + "\n", "")
