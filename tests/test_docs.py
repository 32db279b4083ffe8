"""The README and the instructors' guide list what the notebooks really contain, and name the torch that is installed."""

import re

import nbformat
import pytest
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
    mapped = set(re.findall(r"^\| `(\d\d_\w+)` \|", readme, re.M))
    assert mapped == {p.stem for p in NOTEBOOKS}, f"README's course map lists {sorted(mapped)}"


def test_welcome_notebook_maps_every_notebook():
    """00's table of notebooks has one row per notebook (its rows start with the number, e.g. '| 09 performance')."""
    table = nbformat.read(ROOT / "notebooks" / "00_welcome.ipynb", as_version=4).cells[0].source
    rows = set(re.findall(r"^\| \**(\d\d) ", table, re.M))
    assert rows == {p.stem[:2] for p in NOTEBOOKS}, f"00's table lists notebooks {sorted(rows)}"


def _exercises_before_a_section() -> set[str]:
    """Numbers of the notebooks where a section other than a summary or pointer onward follows an exercise."""
    found = set()
    for path in NOTEBOOKS:
        seen_exercise = False
        for cell in nbformat.read(path, as_version=4).cells:
            for heading in re.findall(r"^## (.*)$", cell.source, re.M) if cell.cell_type == "markdown" else ():
                if "Exercise" in heading:
                    seen_exercise = True
                elif seen_exercise and heading not in ("Summary", "Next") and not heading.startswith("Summary"):
                    found.add(path.stem[:2])
    return found


def test_readme_says_which_notebooks_have_exercises_mid_notebook():
    readme = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(r"while ([\d, and]+) put some or all of them right after the section they practise", readme)
    assert said, "README no longer says which notebooks put exercises right after their section"
    assert set(re.findall(r"\d\d", said.group(1))) == _exercises_before_a_section()
    ending = re.search(r"([\d, and]+) close with their exercises", readme)
    assert set(re.findall(r"\d\d", ending.group(1))) == {p.stem[:2] for p in NOTEBOOKS} - _exercises_before_a_section()


def test_every_torch_version_named_in_docs_and_set_up_files_is_the_pin():
    """The pin lives in pyproject.toml's [tool.nbkit]; text that repeats it (a command to copy) must follow it."""
    pinned = pinned_torch((ROOT / "pyproject.toml").read_text()).removeprefix("torch==")
    files = [ROOT / "README.md", ROOT / "course.sh", ROOT / "environment.yml", ROOT / "pyproject.toml",
             *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "coursekit").glob("*.py"))]
    named = {(path.name, version) for path in files
             for version in re.findall(r"\btorch(?:==|-| )(\d+\.\d+(?:\.\d+)?)", path.read_text())}
    assert ("README.md", pinned) in named and ("instructors.md", pinned) in named, named
    assert {version for _, version in named} == {pinned}, sorted(named)


# Since the greenlet scheduler (nbkit.core.fibers) the simulator no longer runs one Python (OS) thread per CUDA
# thread, nor costs ~150 µs a thread: no learner-facing text may say so again (notebook outputs are left to the
# next execution).
_STALE_SIMULATOR = re.compile(r"Python threads?\b|(?:CPU|OS) threads? per CUDA thread|\b1[56][05] µs", re.I)


def test_no_text_says_the_simulator_runs_a_python_thread_per_cuda_thread():
    texts = {path.name: path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
    for path in NOTEBOOKS:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            texts[f"{path.stem} cell {i}"] = cell.source
    stale = {where: m.group(0) for where, text in texts.items() if (m := _STALE_SIMULATOR.search(text))}
    assert not stale, f"stale descriptions of the simulator: {stale}"


def test_the_doctor_does_not_say_the_simulator_runs_python_threads():
    from nbkit.core import doctor
    from nbkit.core.mode import MODE

    if MODE.name != "sim":
        pytest.skip("the doctor's note on the simulator is printed in sim mode only")
    report = doctor.report()
    assert "NOTE: the CUDA simulator" in report and not _STALE_SIMULATOR.search(report), report
