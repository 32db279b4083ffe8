"""Learner copies: made by nbgrader's preprocessors, they run top to bottom and every check says "not solved yet"."""

import os
import re
from pathlib import Path

import nbformat
import pytest

from coursekit import learner

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _solution_cell(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": "ex_solution", "locked": False, "schema_version": 3,
                                 "solution": True, "task": False}
    cell.outputs = [nbformat.v4.new_output("stream", text="old output\n")]
    return cell


STUB = '''@cuda.jit
def saxpy(alpha, x, y, out):
    """out[i] = alpha * x[i] + y[i]."""
    ### BEGIN SOLUTION
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]
    ### END SOLUTION
'''


def test_learner_copy_keeps_the_stub_and_drops_the_answer_and_outputs():
    nb = nbformat.v4.new_notebook(cells=[_solution_cell(STUB)])
    copy = learner.learner_copy(nb)
    source = copy.cells[0].source
    assert source.startswith("@cuda.jit\ndef saxpy(alpha, x, y, out):\n    \"\"\"out[i]")
    assert "    raise NotImplementedError()" in source and "cuda.grid" not in source
    assert copy.cells[0].outputs == []
    assert "cuda.grid" in nb.cells[0].source, "the instructor's notebook must not change"


def test_solution_cell_without_region_is_refused():
    nb = nbformat.v4.new_notebook(cells=[_solution_cell("def f():\n    return 1\n")])
    with pytest.raises(learner.LearnerCopyError, match="BEGIN SOLUTION"):
        learner.learner_copy(nb, "x.ipynb")


def test_region_outside_a_solution_cell_and_old_tag_are_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(STUB)])
    with pytest.raises(learner.LearnerCopyError, match="outside an nbgrader solution cell"):
        learner.learner_copy(nb)
    tagged = nbformat.v4.new_code_cell("x = 1")
    tagged.metadata["tags"] = ["solution"]
    with pytest.raises(learner.LearnerCopyError, match="old 'solution' cell tag"):
        learner.learner_copy(nbformat.v4.new_notebook(cells=[tagged]))


def test_help_answers_without_importing_nbformat(monkeypatch, capsys):
    """`bash course.sh learner --help` answers at once: nbformat (with jsonschema, a second to import) is imported
    only where a notebook is read or copied."""
    import importlib.util
    import sys

    monkeypatch.setitem(sys.modules, "nbformat", None)  # from here on, `import nbformat` raises ImportError
    spec = importlib.util.spec_from_file_location("learner_without_nbformat", ROOT / "coursekit" / "learner.py")
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    with pytest.raises(SystemExit) as stop:
        fresh.main(["--help"])
    assert stop.value.code == 0 and "Make the learner copies" in capsys.readouterr().out


def test_every_notebook_has_its_exercises_marked():
    counts = {}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        learner.validate(nb, path.name)
        solutions, graded = learner.exercise_cells(nb)
        assert len(graded) >= len(solutions), f"{path.name}: an exercise without a check cell"
        counts[path.name] = len(solutions)
    assert counts.get("00_welcome.ipynb", 0) >= 1
    for name, n in counts.items():
        if name[:2] in {f"{k:02d}" for k in range(1, 9)}:
            assert n >= 3, f"{name} has {n} exercises; the course promises at least 3"
    assert sum(counts.values()) >= 28


def _solution_regions(source: str) -> list[str]:
    return [part.split(learner.END)[0] for part in source.split(learner.BEGIN)[1:]]


def test_no_answer_imports_anything():
    # So a learner copy imports exactly what its instructor notebook imports, and sharing one kernel between
    # learner copies (below) cannot hide a missing import.
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for i in learner.exercise_cells(nb)[0]:
            for region in _solution_regions(nb.cells[i].source):
                assert not re.search(r"^\s*(import|from)\s", region, re.M), f"{path.name} cell {i} imports in its answer"


# The kernel's namespace as it started, kept on the shell; before each notebook the namespace becomes that again.
SNAPSHOT = "get_ipython()._nbkit_fresh = dict(get_ipython().user_ns)"
RESET = f"""import matplotlib.pyplot, os
matplotlib.pyplot.close("all")
os.chdir({str(ROOT / "notebooks")!r})
get_ipython().user_ns.clear()
get_ipython().user_ns.update(get_ipython()._nbkit_fresh)
"""


def _run(km, *sources: str) -> None:
    from nbclient import NotebookClient

    cells = [nbformat.v4.new_code_cell(src) for src in sources]
    NotebookClient(nbformat.v4.new_notebook(cells=cells), km=km, timeout=60).execute()


_KERNELS_STARTED: list = []  # each kernel (its manager) the fixture below started in this test process


@pytest.fixture(scope="session")
def kernel():
    """One Python kernel for the learner copies this test process runs, its namespace as new between notebooks.

    Why: a fresh kernel costs about 3 s of start-up and imports (numba, torch, matplotlib) per notebook. What is
    shared: imported modules (a learner copy imports what its instructor notebook imports, and nbval runs every
    instructor notebook in a fresh kernel) and the kernel's process. `course.sh test` sends all learner copies to
    one pytest-xdist worker as one unit (tests/conftest.py, `work_unit`), so one kernel runs them all; session
    scope, not module scope, so that a run that interleaves other files' tests still starts one kernel.

    Figures: matplotlib's Agg backend (``MPLBACKEND=agg``), so every figure is built but ``plt.show()`` does not
    render it into a PNG, an output this test never reads; nbval runs and renders the same figure code in the
    instructor notebooks. The 11 copies in one kernel, warm compile cache, 2026-11-30, CPU: 44.5 and 42.9 s with
    IPython's inline backend, 36.4 and 37.2 s with Agg (alternating, load average about 4; 28.4 -> 26.4 s at 2).
    """
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT / "notebooks"),
                    env={**{k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}, "MPLBACKEND": "agg"})
    _run(km, SNAPSHOT)
    _KERNELS_STARTED.append(km)
    yield km
    km.shutdown_kernel(now=True)


@pytest.mark.subprocess
def test_learner_kernel_builds_figures_without_drawing_pngs(kernel):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import matplotlib, matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nprint(matplotlib.get_backend())")])
    NotebookClient(nb, km=kernel, timeout=60).execute()
    outputs = nb.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "display_data"], "the figure was drawn into an image"
    assert "agg" in "".join(o.get("text", "") for o in outputs if o.output_type == "stream").lower()


@pytest.mark.subprocess
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_learner_copy_runs_top_to_bottom_and_every_check_says_not_solved(path, kernel):
    from nbclient import NotebookClient

    if not kernel.is_alive():  # an earlier notebook killed it
        kernel.restart_kernel(now=True)
        _run(kernel, SNAPSHOT)
    nb = learner.learner_copy(nbformat.read(path, as_version=4), path.name)
    _, graded = learner.exercise_cells(nb)
    _run(kernel, RESET)
    NotebookClient(nb, km=kernel, timeout=300).execute()
    for i, cell in enumerate(nb.cells):
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"{path.name} cell {i} raised {errors[0].ename}: {errors[0].evalue}"
    for i in graded:
        text = "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")
        assert "not solved yet" in text, f"{path.name} cell {i}: the check printed {text!r}, not 'not solved yet'"
        assert "✓" not in text
    assert len(_KERNELS_STARTED) == 1, (f"this test process started {len(_KERNELS_STARTED)} kernels for learner copies, "
                                        "not one: the kernel must outlive the tests of other files run between them")
