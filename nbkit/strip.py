"""Make the learner's copy of a notebook: solution cells (cell tag ``solution``) are emptied.

    python -m nbkit.strip notebooks/00_welcome.ipynb learner/00_welcome.ipynb
"""

from __future__ import annotations

import argparse
import sys

import nbformat

SOLUTION_TAG = "solution"
PLACEHOLDER = "# YOUR CODE HERE: write the solution, then run the check in the next cell.\nraise NotImplementedError"


def strip_solutions(nb: nbformat.NotebookNode) -> int:
    """Replace every solution cell's code by a placeholder and clear all outputs; return the count."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            # Keep the leading comment lines: they state the task.
            kept = []
            for line in cell.source.splitlines():
                if not line.startswith("#"):
                    break
                kept.append(line)
            cell.source = "\n".join(kept + [PLACEHOLDER])
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Strip solution cells from a course notebook.")
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    nb = nbformat.read(args.source, as_version=4)
    count = strip_solutions(nb)
    nbformat.write(nb, args.target)
    print(f"{args.target}: {count} solution cell(s) stripped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
