"""nbgrader's real round trip on a course notebook: generate_assignment, then autograde two submissions.

alice hands in the instructor's notebook (every exercise solved): full marks. bob hands in the released
student copy with exercise 03.1 answered wrongly, 03.2 answered rightly and 03.3, 03.4 untouched: under the
autograder an untouched stub raises (NotSolved) instead of printing "not solved yet", so bob gets 1 of 4.

The assignment is the notebook's exercises: its markdown, its first code cell (the imports every exercise uses)
and every cell nbgrader marks (solutions and checks), in order. Its other code cells are demonstrations (a PTX
compile in a GPU-mode process, plots, the CPU executor's compile): autograde ran them once per submission (the
test took 15 s of CPU with them, 9 s without), and no mark depends on them (nbval runs them, and
tests/test_learner.py runs the learner copy).
"""

import importlib.util

import nbformat
import pytest
from conftest import ROOT

# find_spec, not pytest.importorskip: importing nbgrader costs 1.2 s of CPU, and every pytest-xdist worker imports
# this file to collect it while only one of them runs the test (which imports nbgrader itself).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("nbgrader") is None, reason="nbgrader is not installed")

NOTEBOOK = "03_cuda_model"
WRONG_ROW_SUM = '''@cuda.jit
def row_sum(M, out):
    r = cuda.grid(1)
    if r < out.size:
        out[r] = M[r, 0]  # only the first column: wrong
'''


def _alembic_head() -> str:
    """What `nbgrader.api.get_alembic_version` reads from `alembic heads`: the head revision of nbgrader's migrations."""
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    (head,) = ScriptDirectory(ALEMBIC_DIR).get_heads()
    return head


def _exercises(nb):
    """The notebook without its demonstration cells: markdown, the first code cell (imports) and nbgrader's cells."""
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    kept = nbformat.from_dict(nb)
    kept.cells = [c for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" or i == first_code or c.metadata.get("nbgrader")]
    return kept


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.mark.subprocess
def test_generate_assignment_and_autograde_full_and_partial_marks(tmp_path, monkeypatch):
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("NBKIT_MODE", "sim")
    # A new gradebook is stamped with the newest revision of nbgrader's database migrations, which nbgrader asks of
    # the `alembic heads` command: a Python process that costs 2 s of CPU. The same answer, from the same scripts,
    # comes from alembic in this process.
    monkeypatch.setattr("nbgrader.api.get_alembic_version", _alembic_head)
    course = nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)
    source = tmp_path / "source" / "lab" / f"{NOTEBOOK}.ipynb"
    source.parent.mkdir(parents=True)
    nbformat.write(_exercises(course), source)

    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    config.Execute.timeout = 300
    api = NbGraderAPI(config=config)
    generated = api.generate_assignment("lab")
    assert generated["success"], generated.get("error") or generated.get("log")

    released = nbformat.read(tmp_path / "release" / "lab" / source.name, as_version=4)
    assert "raise NotImplementedError()" in _cell(released, "ex03_1_solution").source
    assert "def row_sum(M, out):" in _cell(released, "ex03_1_solution").source  # the stub stays

    instructor = nbformat.read(source, as_version=4)
    bob = nbformat.from_dict(released)
    _cell(bob, "ex03_1_solution").source = WRONG_ROW_SUM
    _cell(bob, "ex03_2_solution").source = _cell(instructor, "ex03_2_solution").source
    for student, nb in (("alice", instructor), ("bob", bob)):
        folder = tmp_path / "submitted" / student / "lab"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / source.name)
        graded = api.autograde("lab", student, force=True, create=True)
        assert graded["success"], graded.get("error") or graded.get("log")

    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        alice = gradebook.find_submission("lab", "alice")
        bob_sub = gradebook.find_submission("lab", "bob")
        assert alice.max_score == 4
        assert alice.score == 4, "the instructor's own solutions must earn full marks"
        assert bob_sub.score == 1, "one right answer of four: 03.1 wrong, 03.3 and 03.4 not solved"
        grades = {g.name: g.score for g in gradebook.find_submission_notebook(NOTEBOOK, "lab", "bob").grades}
    assert grades == {"ex03_1_check": 0, "ex03_2_check": 1, "ex03_3_check": 0, "ex03_4_check": 0}
    autograded = nbformat.read(tmp_path / "autograded" / "bob" / "lab" / source.name, as_version=4)
    outputs = _cell(autograded, "ex03_1_check").outputs
    assert any(o.output_type == "error" and o.ename == "CheckFailed" for o in outputs)
    assert any(o.output_type == "error" and o.ename == "NotSolved" for o in _cell(autograded, "ex03_3_check").outputs)
