"""Mutation testing of the exercise checks (nbkit/checks/mutate.py): the operators, the committed table, a live run."""

import textwrap
from pathlib import Path

import pytest

from nbkit.checks import mutate
from nbkit.checks.mutate import Solution, mutants

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "mutation-table.md"
RERUN = (f"rerun `PYTHONPATH=$PWD NBKIT_MODE=sim nice -n 19 {mutate.COMMAND}` (about 30 min on 2 cores) and commit "
         "docs/mutation-table.md")


def solution(body: str, header: str = "@cuda.jit\ndef k(x, out, slope):", answers=("k",), tail: str = "") -> Solution:
    """A one-function solution cell whose solution region is ``body``."""
    inner = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    source = f"{header}\n    ### BEGIN SOLUTION\n{inner}\n    ### END SOLUTION\n{tail}"
    lines = source.splitlines()
    return Solution(number="99.9", notebook="x.ipynb", cell=0, source=source, region=(3, len(lines) - 1),
                    check="check_x", answers=answers, keywords=(), preamble="")


def changes(body: str, operator: str, **kw) -> list[str]:
    """The changed lines of the mutants that ``operator`` makes from ``body``."""
    return [m.after for m in mutants(solution(body, **kw)) if m.operator.startswith(operator)]


# ------------------------------------------------------------------ operators


def test_index_plus_minus_one_in_subscripts_and_each_index_of_a_pair():
    got = changes("out[i, j] = x[i]", "index±1")
    assert "out[i + 1, j] = x[i]" in got and "out[i, j - 1] = x[i]" in got and "out[i, j] = x[i + 1]" in got
    assert len(got) == 6


def test_index_zero_is_not_shifted_to_minus_one():
    assert changes("out[0] = x[1]", "index±1") == ["out[1] = x[1]", "out[0] = x[2]", "out[0] = x[0]"]


def test_range_bounds_plus_minus_one():
    got = changes("for j in range(1, n):\n    out[j] = 0", "range±1")
    assert got == ["for j in range(2, n):", "for j in range(0, n):", "for j in range(1, n + 1):",
                   "for j in range(1, n - 1):"]
    assert changes("for j in range(n):\n    out[j] = 0", "range±1") == ["for j in range(n + 1):",
                                                                          "for j in range(n - 1):"]


def test_stride_off_by_one():
    got = changes("for i in range(cuda.grid(1), n, cuda.gridsize(1)):\n    out[i] = 0", "stride±1")
    assert "for i in range(cuda.grid(1), n, cuda.gridsize(1) + 1):" in got
    assert "for i in range(cuda.grid(1), n, cuda.gridsize(1) - 1):" in got


def test_swapped_index_pair():
    assert changes("out[i, j] = M[i, j, k]", "swap-index") == ["out[j, i] = M[i, j, k]", "out[i, j] = M[j, i, k]",
                                                               "out[i, j] = M[i, k, j]"]


def test_compare_strict_and_not_strict():
    assert changes("if i < n and x[i] >= 0:\n    out[i] = 1", "compare") == [
        "if i <= n and x[i] >= 0:", "if i < n and x[i] > 0:"]


def test_removed_and_moved_syncthreads():
    body = "buf[t] = x[t]\ncuda.syncthreads()\nout[t] = buf[t + 1]"
    assert changes(body, "drop-sync") == ["(removed)"]
    moved = [m for m in mutants(solution(body)) if m.operator.startswith("move-sync")]
    assert [m.operator for m in moved] == ["move-sync↑", "move-sync↓"]
    assert "cuda.syncthreads()\n    buf[t] = x[t]" in moved[0].source
    assert "out[t] = buf[t + 1]\n    cuda.syncthreads()" in moved[1].source


def test_removed_bounds_guard():
    assert changes("if i < n:\n    out[i] = 1", "drop-guard") == ["out[i] = 1"]
    got = [m for m in mutants(solution("if i >= n:\n    return\nout[i] = 1")) if m.operator == "drop-guard"]
    assert len(got) == 1 and "return" not in got[0].source


def test_accumulator_initialised_outside_its_loop():
    body = "for r in range(n):\n    acc = float32(0)\n    for j in range(m):\n        acc += M[r, j]\n    out[r] = acc"
    hoisted = [m for m in mutants(solution(body)) if m.operator == "hoist-init"]
    assert len(hoisted) == 1
    assert "acc = float32(0)\n    for r in range(n):\n        for j in range(m):" in hoisted[0].source


def test_parameter_replaced_by_the_checks_value_or_its_default():
    import numpy as np

    sol = solution("out[0] = slope * x[0]")
    got = [m.after for m in mutants(sol, {"slope": np.float32(0.25)}) if m.operator == "param→const"]
    assert got == ["out[0] = np.float32(0.25) * x[0]"]  # keeps float32: one mutation at a time
    sol = solution("return x * steps", header="def k(x, steps=5):")
    assert [m.after for m in mutants(sol) if m.operator == "param→const"] == ["return x * 5"]


def test_float32_constant_to_python_literal():
    assert changes("acc = float32(0)\nout[0] = float32(n) * acc", "f32-literal") == ["acc = 0.0", "out[0] = n * acc"]


def test_loop_bound_from_the_other_axis():
    assert changes("for j in range(M.shape[1]):\n    out[j] = M.shape[2]", "other-axis") == [
        "for j in range(M.shape[0]):", "out[j] = M.shape[3]"]


def test_grid_unpacked_swapped():
    assert changes("col, row = cuda.grid(2)\nout[row, col] = 1", "grid-swap") == ["row, col = cuda.grid(2)"]


def test_augmented_assignment_to_plain_assignment():
    assert changes("acc += x[i]", "+=→=") == ["acc = x[i]"]


def test_dropped_term():
    assert changes("out[0] = a + b * c", "drop-term") == ["out[0] = a", "out[0] = b * c"]


def test_floor_division_and_true_division():
    assert sorted(changes("s = B // 2\ns /= 2", "div")) == ["s //= 2", "s = B / 2"]


def test_sign_xy_minmax_and_swapped_arguments():
    assert changes("out[0] = a - b", "sign") == ["out[0] = a + b"]
    assert changes("t = cuda.threadIdx.x", "x↔y") == ["t = cuda.threadIdx.y"]
    assert changes("m = max(a, b)", "min↔max") == ["m = min(a, b)"]
    assert changes("out[0] = f(a, b)", "swap-args") == ["out[0] = f(b, a)"]


def test_only_the_solution_region_is_mutated_and_identical_sources_are_kept_once():
    sol = solution("out[i] = x[i] + x[i]", header="@cuda.jit\ndef k(x, out):\n    i = cuda.grid(1) + 1")
    got = mutants(sol)
    assert all(m.line >= 4 for m in got)  # never line 3, outside the region
    sources = [m.source for m in got]
    assert len(sources) == len(set(sources))
    assert sum(m.operator == "drop-term" for m in got) == 1  # x[i] + x[i] -> x[i], once
    assert [m.id for m in got][:2] == ["99.9-m01", "99.9-m02"]


def test_a_limit_keeps_every_operator_and_the_ids():
    body = "for i in range(n):\n    out[i, j] = x[i, j] + y[i] - z[i] // 2"
    every = mutants(solution(body))
    some = mutants(solution(body), limit=8)
    assert len(some) == 8 and {m.id for m in some} <= {m.id for m in every}
    assert {m.operator for m in some} == {m.operator for m in every}  # 6 operators apply: all are kept


def test_every_exercise_cell_is_found_with_its_check_and_kernel_exercises_have_15_mutants():
    sols = mutate.solutions()
    assert {"00.1", "03.2", "05.3", "06.4", "09.2", "02.3", "10.1"} <= set(sols)
    assert sols["04.3"].keywords == (("tile", "TILE_W"),) and "TILE_W = 8" in sols["04.3"].preamble
    assert sols["05.1"].answers == ("leaky_relu_forward", "leaky_relu_backward")
    small = {n: len(mutants(s, mutate._scalar_values(n), None)) for n, s in sols.items() if mutate._is_kernel(s)}
    # the one-line kernels give fewer than 15 distinct mutants; the table says so in their row
    assert {n for n, count in small.items() if count < mutate.KERNEL_MINIMUM} <= {"00.1", "03.1", "04.2"}, small


# ------------------------------------------------------------------ the committed table


def test_the_committed_table_is_not_stale():
    assert TABLE.exists(), f"docs/mutation-table.md is missing: {RERUN}"
    written = mutate.read_table_hash(TABLE)
    assert written == mutate.inputs_hash(), (
        f"docs/mutation-table.md was made from other sources (inputs hash {written}, now {mutate.inputs_hash()}: "
        f"a check module, a solution or check cell, or the tool changed): {RERUN}")


def test_the_committed_table_has_no_check_that_accepts_a_wrong_mutant():
    assert TABLE.exists(), f"docs/mutation-table.md is missing: {RERUN}"
    rows = mutate.wrong_rows(TABLE)
    assert not rows, ("these mutants are accepted by their check but differ from the reference solution on the broad "
                      "test (a defect of the check; fix the check, then " + RERUN + "):\n" + "\n".join(rows))


# ------------------------------------------------------------------ live: mutants through their checks


def test_live_mutants_of_03_3_through_the_check_and_the_broad_test():
    from nbkit.checks import exercises

    sol = mutate.solutions()["03.3"]
    reference_ns = mutate._namespace(sol, sol.source, "03.3-reference")
    assert mutate.run_check(sol, reference_ns)[0] == "passed"
    found = {m.operator: m for m in mutants(sol, mutate._scalar_values("03.3"))}
    status, message = mutate.run_check(sol, mutate._namespace(sol, found["stride±1"].source, "t1"))
    assert status == "failed" and message.startswith("✗")
    reference = (reference_ns["axpy"],)
    ex = exercises()["03.3"]
    assert mutate.broad_test("03.3", ex, reference, reference) is None  # the reference equals itself
    constant = mutate._namespace(sol, found["param→const"].source, "t2")  # a -> the check's a
    assert "a=-2.0" in mutate.broad_test("03.3", ex, reference, (constant["axpy"],))


@pytest.mark.subprocess
def test_live_run_of_a_few_mutants_in_worker_processes():
    result = mutate.run_exercise("03.1", log=lambda s: None, limit=3)
    assert result["reference"] == "passed"
    assert len(result["outcomes"]) == 3
    assert all(o.klass in mutate.CLASSES for o in result["outcomes"])
    assert result["outcomes"][0].klass == "rejected"  # 03.1-m01, an index off by one


def test_wrong_rows_are_the_mutant_rows_of_class_wrong_or_f32_broken_not_the_totals_header(tmp_path):
    table = tmp_path / "t.md"
    table.write_text("| exercise | mutants | rejected | equivalent | WRONG | f32-broken | hang | not judged | note |\n"
                     "| 05.1 | 24 | 21 | 1 | 2 | 0 | 0 | 0 |  |\n"
                     "| 05.1-m01 | index±1 | L7: `y[i + 1] = x[i]` | rejected | ✗ ... |\n"
                     "| 05.1-m23 | param→const | L7: `y = 0.01` | WRONG | ✓ ... |\n"
                     "| 03.1-m14 | f32-literal | L7: `acc = 0.0` | f32-broken | ✓ ... |\n", encoding="utf-8")
    assert [r.split("|")[1].strip() for r in mutate.wrong_rows(table)] == ["05.1-m23", "03.1-m14"]


def test_thread_index_and_array_swap_operators():
    import ast

    from nbkit.checks import mutate

    src = "def k(x, y, out):\n    i = cuda.grid(1)\n    if i < out.size:\n        out[i] = x[i] + y[i]\n"
    tree = ast.parse(src)
    mutate._index_array_names(tree)
    grid = next(n for n in ast.walk(tree) if mutate._is_call(n, "cuda.grid"))
    assert [ast.unparse(v) for v in mutate._op_thread_index(grid, None)] == ["cuda.threadIdx.x"]
    read_x = next(n for n in ast.walk(tree) if isinstance(n, ast.Subscript) and n.value.id == "x")
    assert sorted(ast.unparse(v) for v in mutate._op_array_swap(read_x, None)) == ["out[i]", "y[i]"]


def test_inputs_hash_ignores_prose_cells_moved_above_an_exercise_but_not_a_changed_solution(tmp_path, monkeypatch):
    import json
    import shutil

    for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(mutate, "NOTEBOOKS", tmp_path)
    before = mutate.inputs_hash()
    target = tmp_path / "04_dense_layer.ipynb"
    nb = json.loads(target.read_text(encoding="utf-8"))
    nb["cells"].insert(1, {"cell_type": "markdown", "id": "added", "metadata": {}, "source": "A new paragraph."})
    target.write_text(json.dumps(nb), encoding="utf-8")
    assert mutate.inputs_hash() == before
    solution_cell = next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    solution_cell["source"] = "".join(solution_cell["source"]) + "\n# changed\n"
    target.write_text(json.dumps(nb), encoding="utf-8")
    assert mutate.inputs_hash() != before


def test_a_mutant_copies_the_path_to_its_node_shares_the_rest_and_leaves_the_reference_unchanged():
    import ast

    sol = mutate.solutions()["04.3"]
    tree = ast.parse(sol.source)
    mutate._index_array_names(tree)  # an annotation the array-swap operator reads on the copies
    parents = mutate._parents(tree)
    before = ast.dump(tree, include_attributes=True)
    for node in [n for n in ast.walk(tree) if isinstance(n, (ast.Subscript, ast.stmt)) and n is not tree]:
        copied, memo = mutate._copy_path(tree, node, parents)
        assert ast.dump(copied, include_attributes=True) == before
        path, n = [], node
        while n is not tree:
            path.append(n)
            n = parents[id(n)]
        assert set(memo) == {id(tree), *map(id, path)} and all(memo[id(o)] is not o for o in (tree, *path))
        kept = {id(n) for n in ast.walk(tree)} & {id(n) for n in ast.walk(copied)}  # the rest is shared
        assert kept == {id(n) for n in ast.walk(tree)} - set(memo)
        assert getattr(memo[id(node)], "nbkit_arrays", None) == getattr(node, "nbkit_arrays", None)
        target, parent = memo[id(node)], memo[id(parents[id(node)])]
        mutate._replace(parent, target, ast.Pass() if isinstance(node, ast.stmt) else ast.Constant(0))
        assert ast.dump(copied, include_attributes=True) != before
        assert ast.dump(tree, include_attributes=True) == before  # the reference is as it was
