"""The README and the instructors' guide list what the notebooks really contain."""

import re

import nbformat
from conftest import ROOT

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
