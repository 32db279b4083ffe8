"""Learner copies of the notebooks, made by nbgrader's own preprocessors from the instructor's notebooks.

    python -m coursekit.learner                      # every notebook in notebooks/ -> learner/
    python -m coursekit.learner notebooks/04_dense_layer.ipynb --out /tmp/learner

The instructor's notebooks (``notebooks/``) are the one source. In each exercise's solution cell the region
between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is the answer; nbgrader's ``ClearSolutions`` replaces
it by ``raise NotImplementedError()`` and keeps the rest of the cell (the ``def`` line, signature and
docstring), and ``ClearOutput`` drops every output. In the learner's copy each check then prints "not solved
yet" in one line, so *Run All* runs to the end. The same notebooks work with nbgrader's
``generate_assignment`` / ``autograde`` for graded labs (see docs/instructors.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: nbformat's import (jsonschema) costs a second, and --help needs none of it
    import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


class LearnerCopyError(ValueError):
    """A notebook's exercise cells are not marked the way nbgrader (and this course) expects."""


def exercise_cells(nb: nbformat.NotebookNode) -> tuple[list[int], list[int]]:
    """Indices of the nbgrader solution cells and of the graded (check) cells."""
    solutions, graded = [], []
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            solutions.append(i)
        if meta.get("grade"):
            graded.append(i)
    return solutions, graded


def validate(nb: nbformat.NotebookNode, name: str = "notebook") -> None:
    """Refuse solution cells that nbgrader would blank out entirely, and solution regions outside them.

    A solution cell without BEGIN/END markers loses its ``def`` line in the learner's copy, so the check
    cell would stop with a NameError instead of "not solved yet".
    """
    solutions, _ = exercise_cells(nb)
    for i, cell in enumerate(nb.cells):
        has_region = BEGIN in cell.source
        if i in solutions and cell.cell_type == "code" and not (has_region and END in cell.source):
            raise LearnerCopyError(f"{name}, cell {i}: a solution cell needs a '{BEGIN}' ... '{END}' region inside "
                                   "its stub (def line, signature, docstring), or the learner's copy loses the stub.")
        if has_region and i not in solutions:
            raise LearnerCopyError(f"{name}, cell {i}: a solution region outside an nbgrader solution cell "
                                   "(metadata nbgrader.solution = true).")
        if "solution" in cell.get("metadata", {}).get("tags", []):
            raise LearnerCopyError(f"{name}, cell {i}: the old 'solution' cell tag is gone; use nbgrader metadata.")


def learner_copy(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's version of ``nb`` (a new notebook): solutions cleared, outputs cleared."""
    import nbformat
    from nbgrader.preprocessors import ClearOutput, ClearSolutions

    validate(nb, name)
    copy = nbformat.from_dict(nb)  # a deep copy: the preprocessors edit in place
    resources: dict = {}
    copy, resources = ClearSolutions(enforce_metadata=True).preprocess(copy, resources)
    copy, resources = ClearOutput().preprocess(copy, resources)
    return copy


def make_copies(sources: list[Path], out_dir: Path) -> list[Path]:
    """Write the learner copy of each source notebook into ``out_dir``; return the paths written."""
    import nbformat

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        nb = nbformat.read(source, as_version=4)
        target = out_dir / source.name
        nbformat.write(learner_copy(nb, source.name), target)
        solutions, graded = exercise_cells(nb)
        print(f"{target}: {len(solutions)} exercise(s), {len(graded)} check cell(s)")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the learner copies of the course notebooks (nbgrader).")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "learner", help="output folder (default: learner/)")
    args = parser.parse_args(argv)
    sources = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    try:
        make_copies(sources, args.out)
    except LearnerCopyError as exc:
        print(f"coursekit.learner: {exc}", file=sys.stderr)
        return 1
    print(f"Open the learner copies with: jupyter lab {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
