"""pyproject.toml (pip) and environment.yml (conda) must name the same packages and versions."""

import re

import tomllib
from conftest import ROOT

# conda-forge names that differ from PyPI names; packages only one installer needs.
CONDA_TO_PIP = {"pytorch": "torch"}
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


def test_torch_is_never_an_unpinned_top_level_install():
    # course.sh pins torch (a bare `torch` may pull a multi-GB CUDA build); pyproject only states a range.
    text = (ROOT / "course.sh").read_text()
    assert 'TORCH_REQ="torch==2.13.0"' in text and 'pip install --quiet $torch_args "$TORCH_REQ"' in text
    assert pip_requirements()["torch"].startswith(">=")
