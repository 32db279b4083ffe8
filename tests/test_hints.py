"""A hint followed literally passes its check.

Every exercise of notebooks 00-10 gives its hints in tiers, collapsed: ``<details><summary>Hint 1 (idea)</summary>``,
then a nudge, and last ``<summary>Hint N (the code)</summary>`` with one fenced ``python`` block, a complete answer
(the convention this test relies on). Each complete answer runs here, in the simulator, through the notebook's own
check cell (the code cell after the solution cell), with the names the notebook defined before the solution cell
(its imports and the assignments the answer uses, e.g. ``TILE_W`` or the worked example's ``X``), and must get ✓
with the kernel's source read, so that the PTX float32 proof runs where numba-cuda is installed (kernel answers
are in the compiler tier for that reason).
"""

from __future__ import annotations

import ast
import contextlib
import io
import linecache
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[01][0-9]_*.ipynb"))
_TIER = re.compile(r"<details><summary>Hint (\d+) \(([^)]*)\)</summary>(.*?)</details>", re.S)
_CODE = re.compile(r"```python\n(.*?)```", re.S)


def _exercises() -> list[tuple[str, str, str, str, list[str]]]:
    """(notebook, exercise number, hint tiers, check cell, earlier code cells) for every exercise; the tiers are
    read from the markdown cells between the exercise's title and its solution cell."""
    found = []
    for path in NOTEBOOKS:
        cells = nbformat.read(path, 4).cells
        for i, cell in enumerate(cells):
            title = re.search(r"^## Exercise (\d\d\.\d)", cell.source, re.M) if cell.cell_type == "markdown" else None
            if not title:
                continue
            sol = next(j for j in range(i + 1, len(cells)) if "### BEGIN SOLUTION" in cells[j].source)
            tiers = [t for c in cells[i:sol] if c.cell_type == "markdown" for t in _TIER.findall(c.source)]
            check = next(j for j in range(sol + 1, len(cells)) if cells[j].cell_type == "code")
            earlier = [c.source for c in cells[:sol] if c.cell_type == "code"]
            found.append((path.name, title.group(1), tiers, cells[check].source, earlier))
    return found


EXERCISES = _exercises()


def test_every_exercise_has_tiered_hints_ending_in_the_code():
    assert len(EXERCISES) >= 35
    for name, number, tiers, _, _ in EXERCISES:
        assert tiers, f"{name} {number}: no hint"
        assert [int(n) for n, _, _ in tiers] == list(range(1, len(tiers) + 1)), f"{name} {number}: tiers out of order"
        assert tiers[0][1] == "idea", f"{name} {number}: the first hint is not the idea"
        assert len(tiers) >= 3, f"{name} {number}: no nudge between the idea and the code"
        assert tiers[-1][1] == "the code" and len(_CODE.findall(tiers[-1][2])) == 1, \
            f"{name} {number}: the last hint is not one complete answer"
        assert all(not _CODE.search(body) for _, _, body in tiers[:-1]), f"{name} {number}: code before the last tier"


def _names_defined(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _names_used(code: str | ast.AST) -> set[str]:
    tree = ast.parse(code) if isinstance(code, str) else code
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _prelude(earlier: list[str], needed: set[str]) -> str:
    """The statements of the earlier cells that define what ``needed`` uses, in notebook order (transitively)."""
    statements = [s for src in earlier for s in ast.parse(src).body
                  if isinstance(s, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.FunctionDef))]
    chosen: list[ast.stmt] = []
    for stmt in reversed(statements):
        defined = _names_defined(stmt) & needed
        if defined:
            chosen.append(stmt)
            needed = (needed - defined) | _names_used(stmt)
    return "import nbkit\n" + "\n".join(ast.unparse(s) for s in reversed(chosen))


def _marked(exercise: tuple) -> object:
    """A kernel answer's check proves float32 by compiling it in a helper process: the compiler tier."""
    tiers = exercise[2]
    kernel = bool(tiers) and "@cuda.jit" in tiers[-1][2]
    return pytest.param(*exercise, id=exercise[1], marks=[pytest.mark.compiler] if kernel else [])


@pytest.mark.parametrize("name,number,tiers,check,earlier", [_marked(e) for e in EXERCISES])
def test_the_complete_answer_in_the_last_hint_passes_its_check(name, number, tiers, check, earlier):
    import matplotlib

    matplotlib.use("Agg")
    answer = _CODE.findall(tiers[-1][2])[0]
    needed = (_names_used(answer) | _names_used(check)) - {n for s in ast.parse(answer).body for n in _names_defined(s)}
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code, what in ((_prelude(earlier, needed), "before"), (answer, "hint of"), (check, "check of")):
            filename = f"<{name}: {what} {number}>"
            # as IPython does for a cell: the check reads the kernel's source (the PTX float32 proof needs it)
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            exec(compile(code, filename, "exec"), namespace)  # noqa: S102 - the course's own cells
    verdict = out.getvalue()
    assert "✓" in verdict, f"{name} {number}: the hint's answer did not get ✓:\n{verdict}"
    assert "source code could not be read" not in verdict, verdict
