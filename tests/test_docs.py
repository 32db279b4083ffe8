"""The README and the instructors' guide list what the notebooks really contain, and name the torch that is installed."""

import re

import nbformat
from conftest import ROOT

from coursekit.setup_plan import pinned_torch

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def exercises() -> dict[str, str]:
    """Exercise number -> notebook name, from the notebooks' '## Exercise NN.k' headings."""
    found = {}
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                for number in re.findall(r"^#+ Exercise (\d\d\.\d+)", cell.source, re.M):
                    found[number] = path.stem
    return found


def test_instructors_guide_lists_every_exercise_and_no_other():
    guide = (ROOT / "docs" / "instructors.md").read_text()
    listed = set(re.findall(r"^\| (\d\d\.\d+) ", guide, re.M))
    assert listed == set(exercises()), f"missing from the guide: {set(exercises()) - listed}; gone: {listed - set(exercises())}"
    assert "RUN_TIMES_TABLE" not in guide
    for path in NOTEBOOKS:
        assert f"| {path.stem} |" in guide, f"{path.stem} has no measured run time in the guide"


def test_readme_maps_every_notebook_and_links_the_guide():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"`{path.stem}`" in readme, f"{path.stem} is missing from the README's course map"
    assert "docs/instructors.md" in readme


def test_every_torch_version_named_in_docs_and_set_up_files_is_the_pin():
    """The pin lives in pyproject.toml's [tool.nbkit]; text that repeats it (a command to copy) must follow it."""
    pinned = pinned_torch((ROOT / "pyproject.toml").read_text()).removeprefix("torch==")
    files = [ROOT / "README.md", ROOT / "course.sh", ROOT / "environment.yml", ROOT / "pyproject.toml",
             *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "coursekit").glob("*.py"))]
    named = {(path.name, version) for path in files
             for version in re.findall(r"\btorch(?:==|-| )(\d+\.\d+(?:\.\d+)?)", path.read_text())}
    assert ("README.md", pinned) in named and ("instructors.md", pinned) in named, named
    assert {version for _, version in named} == {pinned}, sorted(named)
