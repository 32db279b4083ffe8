"""The exercise convention: solution cells are tagged, followed by a check, and can be stripped."""

import nbformat
import pytest
from conftest import ROOT

from nbkit.strip import PLACEHOLDER, SOLUTION_TAG, main, strip_solutions

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_solution_cell_is_followed_by_a_check(path):
    cells = nbformat.read(path, as_version=4).cells
    for i, cell in enumerate(cells):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            assert cell.cell_type == "code"
            follower = cells[i + 1]
            assert follower.cell_type == "code" and "check_" in follower.source, (
                f"{path.name}: the cell after solution cell {i} must call a check_* function")


def test_strip_removes_solutions_and_outputs(tmp_path):
    source = ROOT / "notebooks" / "00_welcome.ipynb"
    target = tmp_path / "00_learner.ipynb"
    assert main([str(source), str(target)]) == 0
    stripped = nbformat.read(target, as_version=4)
    solutions = [c for c in stripped.cells if SOLUTION_TAG in c.get("metadata", {}).get("tags", [])]
    assert solutions, "notebook 00 has an exercise"
    for cell in solutions:
        assert cell.source.endswith(PLACEHOLDER)
        assert "def saxpy" not in cell.source
        assert cell.source.startswith("# Exercise 00.1")  # the task statement stays
    assert all(not c.get("outputs") for c in stripped.cells if c.cell_type == "code")


def test_strip_counts():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("# task\nx = 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("check_x(x)"),
    ])
    assert strip_solutions(nb) == 1
    assert nb.cells[0].source == "# task\n" + PLACEHOLDER and nb.cells[1].source == "check_x(x)"
