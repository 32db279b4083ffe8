"""Mutation testing of the exercise checks: does every check reject the usual small mistakes?

    python -m nbkit.checks.mutate                          # every exercise; a table per exercise and totals
    python -m nbkit.checks.mutate --exercise 05.3          # one exercise (repeat --exercise for more)
    python -m nbkit.checks.mutate --write docs/mutation-table.md

For each exercise the reference solution (the notebook's solution cell, whose ``### BEGIN SOLUTION`` region is
the answer) is changed in one place by an AST transform (:data:`OPERATORS`: an index off by one, a swapped
index pair, ``<`` for ``<=``, a missing or moved ``cuda.syncthreads()``, a dropped bounds guard, ...). Each
mutant is run through the exercise's check exactly as its check cell calls it, and classified:

* ``rejected``: the check said ✗ (or the mutant raised);
* ``equivalent``: accepted, and equal to the reference solution on a broad differential test (:data:`BROAD`:
  shapes, launches and parameter values the check does not use), judged by running both, never assumed;
* ``WRONG``: accepted, and different from the reference on the broad test: a defect of the check;
* ``f32-broken``: a float32 constant mutant accepted although the statement asks for float32 and the PTX has
  float64 instructions (judged by :func:`nbkit.checks._core.float32_ptx` where the compiler is installed);
* ``hang``: the check did not finish in :data:`TIMEOUT_S` seconds (an endless loop, e.g. ``i = stride``);
* ``not judged``: accepted, and no broad test is declared for the exercise.

Each exercise runs in a worker process (a mutant may loop forever; a worker that hangs is killed and restarted
after that mutant). The notebooks are read as JSON (nbkit does not import coursekit, whose
``coursekit.learner`` makes the learner copies from the same nbgrader regions).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import dataclasses
import datetime
import difflib
import hashlib
import io
import json
import linecache
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
TIMEOUT_S = 240  # one mutant: the check (simulator launches, tracer proofs, a PTX compile) and the broad test
JSON_PREFIX = "MUTATE-JSON "
COMMAND = "python -m nbkit.checks.mutate --write docs/mutation-table.md"

# --------------------------------------------------------------------------------------------------
# the solutions and the check cells, from the notebooks


@dataclass(frozen=True)
class Solution:
    """One exercise's solution cell and the call its check cell makes."""

    number: str
    notebook: str
    cell: int
    source: str  # the whole solution cell
    region: tuple[int, int]  # first and last line (1-based, in the cell) strictly inside BEGIN ... END
    check: str  # the check function's name, e.g. "check_block_sum"
    answers: tuple[str, ...]  # the names the check cell passes, in order
    keywords: tuple[tuple[str, str], ...]  # keyword arguments of the check call, as source text
    preamble: str  # the notebook's imports and constants before the cell (what the solution cell needs)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _parse_cell(source: str) -> ast.Module | None:
    """A code cell's AST, IPython magics left out; None when it is not Python."""
    lines = [("" if line.lstrip().startswith(("%", "!")) else line) for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


_SKIPPED_IMPORTS = ("matplotlib", "PIL", "subprocess", "nbkit.plots", "nbkit.tracer.plots")


def _free_names(tree: ast.AST) -> set[str]:
    """Names a piece of code reads without defining them itself."""
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    defined |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in (*n.args, *n.kwonlyargs)}
    return loaded - defined


def _preamble(cells: list[dict], upto: int) -> str:
    """What the solution cell ``upto`` needs from the cells before it: their imports, and the last top-level
    assignment of each name it reads without defining (with what those read in turn: ``Z = f(X, W)``)."""
    imports, assigns = [], []
    for cell in cells[:upto]:
        tree = _parse_cell(_text(cell)) if cell.get("cell_type") == "code" else None
        for stmt in tree.body if tree else ():
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                names = [stmt.module or ""] if isinstance(stmt, ast.ImportFrom) else [a.name for a in stmt.names]
                if not any(n.startswith(_SKIPPED_IMPORTS) for n in names):
                    imports.append(ast.unparse(stmt))
            elif isinstance(stmt, ast.Assign):
                assigns.append(stmt)
    needed = _free_names(_parse_cell(_text(cells[upto])))
    chosen: dict[int, ast.Assign] = {}
    while True:
        more = {}
        for k, stmt in enumerate(assigns):
            targets = {n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if targets & needed and k not in chosen:
                later = [j for j, s in enumerate(assigns) if j > k and targets & {
                    n.id for t in s.targets for n in ast.walk(t) if isinstance(n, ast.Name)} & needed]
                if not later:
                    more[k] = stmt
        if not more:
            break
        chosen.update(more)
        for stmt in more.values():
            needed |= _free_names(stmt.value)
    return "\n".join(imports + [ast.unparse(chosen[k]) for k in sorted(chosen)])


def _check_number(name: str) -> str:
    """The exercise number a ``check_*`` function checks: its ``exercise`` mark (a procedure) or the number of the
    declared exercise whose ``.check`` it calls."""
    import inspect

    import nbkit.checks as checks

    fn = getattr(checks, name)
    if getattr(fn, "exercise", None):
        return fn.exercise
    module = sys.modules[fn.__module__]
    for node in ast.walk(ast.parse(inspect.getsource(fn))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "check"
                and isinstance(node.func.value, ast.Name)):
            return getattr(module, node.func.value.id).number
    raise LookupError(f"{name}: no exercise number found (neither an @exercise mark nor a call EXERCISE.check)")


def solutions(notebooks: Path = NOTEBOOKS) -> dict[str, Solution]:
    """Every exercise's solution, by number: solution cell i, checked by the next graded cell."""
    found: dict[str, Solution] = {}
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        cells = _cells(path)
        meta = [c.get("metadata", {}).get("nbgrader", {}) for c in cells]
        for i, cell in enumerate(cells):
            if not meta[i].get("solution") or cell.get("cell_type") != "code":
                continue
            graded = next(j for j in range(i + 1, len(cells)) if meta[j].get("grade"))
            calls = [n for n in ast.walk(_parse_cell(_text(cells[graded])))
                     if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith("check_")]
            call = calls[0]
            source = _text(cell)
            lines = source.splitlines()
            begins = [k for k, line in enumerate(lines, 1) if BEGIN in line]
            ends = [k for k, line in enumerate(lines, 1) if END in line]
            number = _check_number(call.func.id)
            found[number] = Solution(
                number=number, notebook=path.name, cell=i, source=source, region=(begins[0] + 1, ends[-1] - 1),
                check=call.func.id, answers=tuple(a.id for a in call.args),
                keywords=tuple((k.arg, ast.unparse(k.value)) for k in call.keywords),
                preamble=_preamble(cells, i))
    return found


def _regions(sol: Solution) -> list[tuple[int, int]]:
    """Every BEGIN ... END region of the cell (a cell may hold two kernels, each with its region)."""
    lines = sol.source.splitlines()
    begins = [k for k, line in enumerate(lines, 1) if BEGIN in line]
    ends = [k for k, line in enumerate(lines, 1) if END in line]
    return [(b + 1, e - 1) for b, e in zip(begins, ends)]


# --------------------------------------------------------------------------------------------------
# mutation operators: AST transforms of the solution cell, only inside its solution regions


@dataclass(frozen=True)
class Mutant:
    """One changed copy of a solution cell."""

    id: str
    operator: str
    line: int  # the line of the solution cell that changed (1-based)
    before: str  # that line, as written
    after: str  # the changed line(s), as the mutant's source has them
    source: str  # the whole mutated cell (ast.unparse: comments are gone)
    diff: str  # unified diff against the reference cell (both unparsed)


Edit = tuple[ast.AST, Callable[[ast.AST], list]]  # (node in the copy, how to replace it)


def _inside(node: ast.AST, regions: list[tuple[int, int]]) -> bool:
    line = getattr(node, "lineno", None)
    return line is not None and any(a <= line <= b for a, b in regions)


def _one(value: int) -> ast.Constant:
    return ast.Constant(value)


def _plus(e: ast.expr, k: int) -> ast.expr:
    """``e + k`` (``e - 1`` for k = -1); a constant index is shifted itself."""
    if isinstance(e, ast.Constant) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return ast.Constant(e.value + k)
    return ast.BinOp(copy.deepcopy(e), ast.Add() if k > 0 else ast.Sub(), _one(abs(k)))


def _is_call(node: ast.AST, dotted: str) -> bool:
    return isinstance(node, ast.Call) and _dotted(node.func) == dotted


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_shape(node: ast.AST) -> bool:
    """``a.shape[k]``: an axis, not an index (the other-axis operator changes those)."""
    return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape"


# Each operator maps a node of the tree to a list of variants: for an expression a new expression, for a
# statement a list of statements (empty: the statement is removed). ``parent`` is the node's parent.

def _op_index(node, parent):
    """Index arithmetic ±1 in a subscript (each index of a tuple separately)."""
    if not isinstance(node, ast.Subscript) or _is_shape(node):
        return []
    out = []
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    for k, e in enumerate(elts):
        bounds = [("lower", e.lower), ("upper", e.upper)] if isinstance(e, ast.Slice) else [(None, e)]
        for attr, target in bounds:
            if target is None:
                continue
            for d in (1, -1):
                if d < 0 and isinstance(target, ast.Constant) and target.value == 0:
                    continue  # x[-1] is a different element on purpose, not an off-by-one
                new = copy.deepcopy(node)
                nel = new.slice.elts if isinstance(new.slice, ast.Tuple) else None
                shifted = _plus(target, d)
                if attr:
                    setattr(nel[k] if nel else new.slice, attr, shifted)
                elif nel:
                    nel[k] = shifted
                else:
                    new.slice = shifted
                out.append(new)
    return out


def _op_range(node, parent):
    """A ``range`` bound ±1 (start and stop; the step is the stride operator's)."""
    if not _is_call(node, "range"):
        return []
    out = []
    args = node.args if len(node.args) > 1 else [node.args[0]]
    for k in range(min(len(args), 2)):
        for d in (1, -1):
            new = copy.deepcopy(node)
            new.args[k] = _plus(new.args[k], d)
            out.append(new)
    return out


def _op_stride(node, parent):
    """Off-by-one in a stride: a ``range`` step, ``cuda.gridsize(n)``."""
    if _is_call(node, "range") and len(node.args) == 3:
        return [ast.Call(node.func, node.args[:2] + [_plus(node.args[2], d)], []) for d in (1, -1)]
    if _is_call(node, "cuda.gridsize") and not isinstance(parent, ast.BinOp):
        return [_plus(node, d) for d in (1, -1)]
    return []


def _op_swap_index(node, parent):
    """Two indices swapped, ``M[i, j]`` -> ``M[j, i]`` (each neighbouring pair)."""
    if not isinstance(node, ast.Subscript) or not isinstance(node.slice, ast.Tuple) or _is_shape(node):
        return []
    out = []
    for k in range(len(node.slice.elts) - 1):
        new = copy.deepcopy(node)
        e = new.slice.elts
        e[k], e[k + 1] = e[k + 1], e[k]
        out.append(new)
    return out


_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}


def _op_compare(node, parent):
    """``<`` <-> ``<=``, ``>`` <-> ``>=`` (each comparison of a chain)."""
    if not isinstance(node, ast.Compare):
        return []
    out = []
    for k, op in enumerate(node.ops):
        if type(op) in _CMP:
            new = copy.deepcopy(node)
            new.ops[k] = _CMP[type(op)]()
            out.append(new)
    return out


def _is_sync(stmt: ast.AST) -> bool:
    return isinstance(stmt, ast.Expr) and _is_call(stmt.value, "cuda.syncthreads")


def _op_drop_sync(node, parent):
    """A ``cuda.syncthreads()`` removed."""
    return [[]] if _is_sync(node) else []


def _op_drop_guard(node, parent):
    """A bounds guard removed: ``if i < n: body`` -> body; ``if i >= n: return`` -> nothing."""
    if not isinstance(node, ast.If) or node.orelse:
        return []
    if all(isinstance(s, ast.Return) for s in node.body):
        return [[]]
    return [copy.deepcopy(node.body)]


def _op_aug(node, parent):
    """``+=`` -> ``=`` (also ``-=``, ``*=``)."""
    if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        return [[ast.Assign([copy.deepcopy(node.target)], copy.deepcopy(node.value))]]
    return []


def _op_drop_term(node, parent):
    """A term dropped from a sum or difference: ``a + b`` -> ``a``, ``b``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        return [copy.deepcopy(node.left), copy.deepcopy(node.right)]
    return []


def _op_div(node, parent):
    """``//`` <-> ``/``."""
    swap = {ast.FloorDiv: ast.Div, ast.Div: ast.FloorDiv}
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in swap:
        new = copy.deepcopy(node)
        new.op = swap[type(node.op)]()
        return [[new]] if isinstance(node, ast.AugAssign) else [new]
    return []


def _op_sign(node, parent):
    """``+`` <-> ``-`` in arithmetic."""
    swap = {ast.Add: ast.Sub, ast.Sub: ast.Add}
    if isinstance(node, ast.BinOp) and type(node.op) in swap:
        new = copy.deepcopy(node)
        new.op = swap[type(node.op)]()
        return [new]
    return []


def _op_other_axis(node, parent):
    """A bound from the other axis: ``a.shape[0]`` <-> ``a.shape[1]`` (and 2 <-> 3)."""
    if _is_shape(node) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int):
        new = copy.deepcopy(node)
        new.slice = ast.Constant(node.slice.value ^ 1)
        return [new]
    return []


def _op_grid_swap(node, parent):
    """``x, y = cuda.grid(2)`` unpacked swapped (the first two names)."""
    if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple) and len(node.targets[0].elts) >= 2
            and isinstance(node.value, ast.Call) and _dotted(node.value.func) in ("cuda.grid", "cuda.gridsize")):
        new = copy.deepcopy(node)
        e = new.targets[0].elts
        e[0], e[1] = e[1], e[0]
        return [[new]]
    return []


def _op_xy(node, parent):
    """``.x`` <-> ``.y`` of ``cuda.threadIdx`` / ``blockIdx`` / ``blockDim`` / ``gridDim``."""
    if (isinstance(node, ast.Attribute) and node.attr in ("x", "y")
            and _dotted(node.value) in ("cuda.threadIdx", "cuda.blockIdx", "cuda.blockDim", "cuda.gridDim")):
        new = copy.deepcopy(node)
        new.attr = "y" if node.attr == "x" else "x"
        return [new]
    return []


def _op_f32_literal(node, parent):
    """A float32 constant replaced by a Python literal: ``float32(0)`` -> ``0.0`` (a float64 operand)."""
    if (isinstance(node, ast.Call) and _dotted(node.func) in ("float32", "np.float32", "numba.float32")
            and len(node.args) == 1):
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, (int, float)):
            return [ast.Constant(float(arg.value))]
        if isinstance(arg, ast.UnaryOp) and isinstance(arg.operand, ast.Constant):
            return [ast.Constant(-float(arg.operand.value))]
        return [copy.deepcopy(arg)]  # float32(n) -> n: an int mixed with float32 computes in float64
    return []


def _op_minmax(node, parent):
    """``max`` <-> ``min``."""
    swap = {"max": "min", "min": "max", "np.maximum": "np.minimum", "np.minimum": "np.maximum"}
    if isinstance(node, ast.Call) and _dotted(node.func) in swap:
        new = copy.deepcopy(node)
        new.func = ast.parse(swap[_dotted(node.func)], mode="eval").body
        return [new]
    return []


def _op_swap_args(node, parent):
    """Two neighbouring arguments of a call swapped (not of ``range``, whose bounds have their own operators)."""
    if not isinstance(node, ast.Call) or _dotted(node.func) in ("range", "cuda.grid", "cuda.gridsize"):
        return []
    out = []
    for k in range(len(node.args) - 1):
        if ast.dump(node.args[k]) != ast.dump(node.args[k + 1]):
            new = copy.deepcopy(node)
            new.args[k], new.args[k + 1] = new.args[k + 1], new.args[k]
            out.append(new)
    return out


def _op_move_sync(stmts: list, i: int) -> list[list]:
    """A ``cuda.syncthreads()`` moved one statement earlier or later."""
    if not _is_sync(stmts[i]):
        return []
    out = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(stmts):
            new = list(stmts)
            new[i], new[j] = new[j], new[i]
            out.append(new)
    return out


def _is_init(stmt: ast.AST) -> bool:
    """``name = 0``, ``name = float32(0)``, ``name = -inf``: a value that does not depend on the loop."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
        return False
    v = stmt.value
    if isinstance(v, ast.UnaryOp):
        v = v.operand
    if isinstance(v, ast.Call) and len(v.args) == 1 and not v.keywords:
        v = v.args[0]
        if isinstance(v, ast.UnaryOp):
            v = v.operand
    return isinstance(v, (ast.Constant, ast.Attribute)) and not isinstance(v, ast.Name)


def _op_hoist(stmts: list, i: int) -> list[list]:
    """An accumulator initialised outside its loop: ``for ...: acc = 0; ...`` -> ``acc = 0; for ...: ...``."""
    loop = stmts[i]
    if not isinstance(loop, (ast.For, ast.While)):
        return []
    out = []
    for k, inner in enumerate(loop.body):
        if _is_init(inner):
            new_loop = copy.deepcopy(loop)
            init = new_loop.body.pop(k)
            if not new_loop.body:
                new_loop.body = [ast.Pass()]
            out.append(stmts[:i] + [init, new_loop] + stmts[i + 1:])
    return out


def _op_thread_index(node, parent):
    """The global index replaced by the block-local one: ``cuda.grid(1)`` -> ``cuda.threadIdx.x`` (every block then
    works on the first elements), ``cuda.grid(2)`` -> ``(cuda.threadIdx.x, cuda.threadIdx.y)``."""
    if _is_call(node, "cuda.grid") and node.args and isinstance(node.args[0], ast.Constant):
        axes = "xyz"[:int(node.args[0].value)]
        parts = [ast.parse(f"cuda.threadIdx.{a}", mode="eval").body for a in axes]
        return [parts[0] if len(parts) == 1 else ast.Tuple(parts, ast.Load())]
    return []


def _op_array_swap(node, parent):
    """An array read from another array of the same subscript shape: ``x[i]`` -> ``y[i]`` (a wrong operand)."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and isinstance(node.ctx, ast.Load)):
        return []
    names = getattr(node, "nbkit_arrays", ())
    return [ast.Subscript(ast.Name(other, ast.Load()), copy.deepcopy(node.slice), ast.Load())
            for other in names if other != node.value.id]


EXPRESSION_OPERATORS: dict[str, Callable] = {
    "index±1": _op_index, "range±1": _op_range, "stride±1": _op_stride, "swap-index": _op_swap_index,
    "compare": _op_compare, "drop-sync": _op_drop_sync, "drop-guard": _op_drop_guard, "+=→=": _op_aug,
    "drop-term": _op_drop_term, "div": _op_div, "sign": _op_sign, "other-axis": _op_other_axis,
    "grid-swap": _op_grid_swap, "x↔y": _op_xy, "f32-literal": _op_f32_literal, "min↔max": _op_minmax,
    "swap-args": _op_swap_args, "thread-index": _op_thread_index, "array-swap": _op_array_swap,
}
LIST_OPERATORS: dict[str, Callable] = {"move-sync": _op_move_sync, "hoist-init": _op_hoist}
FLOAT32_OPERATORS = ("f32-literal",)


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _copy_path(tree: ast.AST, node: ast.AST, parents: dict[int, ast.AST]) -> tuple[ast.AST, dict[int, ast.AST]]:
    """A copy of ``tree`` for one mutant: the nodes from the root down to ``node`` are new (their fields, lists
    included, and attributes such as ``nbkit_arrays``), every other subtree is shared with ``tree``. Returns the
    copy and ``memo``, mapping ``id`` of each copied original to its copy. A mutant changes only ``node`` or a
    field of its parent, so the original is left as it was; copying the path instead of the whole tree made
    generating the mutants several times faster."""
    path = [node]
    while id(path[-1]) in parents:
        path.append(parents[id(path[-1])])
    if path[-1] is not tree:
        raise LookupError("node not found")
    memo: dict[int, ast.AST] = {}
    child_copy = None
    for original in path:  # from node up to the root, so that each copy points to its copied child
        new = original.__class__.__new__(original.__class__)
        new.__dict__.update({key: list(value) if isinstance(value, list) else value
                             for key, value in original.__dict__.items()})
        if child_copy is not None:
            child, copied = child_copy
            for key, value in new.__dict__.items():
                if value is child:
                    setattr(new, key, copied)
                elif isinstance(value, list):
                    value[:] = [copied if v is child else v for v in value]
        memo[id(original)] = new
        child_copy = (original, new)
    return memo[id(tree)], memo


def _replace(tree: ast.AST, old: ast.AST, new: object) -> None:
    """Put ``new`` (a node, or a list of statements spliced in) where ``old`` is."""
    for node in ast.walk(tree):
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and any(v is old for v in value):
                k = next(k for k, v in enumerate(value) if v is old)
                value[k:k + 1] = new if isinstance(new, list) else [new]
                if not value and name in ("body", "orelse", "finalbody") and name == "body":
                    value.append(ast.Pass())
                return
            if value is old:
                setattr(node, name, new[0] if isinstance(new, list) and len(new) == 1 else new)
                return
    raise LookupError("node not found")


def _index_array_names(tree: ast.AST) -> None:
    """Annotate each subscript ``a[...]`` with the names subscripted with as many indices in its function (the
    array-swap operator's candidates); the annotation survives ``copy.deepcopy`` of the tree."""
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        subs = [n for n in ast.walk(fn) if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
                and not _is_shape(n)]
        rank = {}
        for n in subs:
            rank.setdefault(n.value.id, len(n.slice.elts) if isinstance(n.slice, ast.Tuple) else 1)
        for n in subs:
            k = len(n.slice.elts) if isinstance(n.slice, ast.Tuple) else 1
            n.nbkit_arrays = tuple(sorted(name for name, r in rank.items() if r == k))


def _variants(tree: ast.Module, regions: list[tuple[int, int]]) -> Iterator[tuple[str, int, ast.Module]]:
    """(operator, line, mutated tree) for every place and variant of every operator, in a fixed order."""
    _index_array_names(tree)
    nodes = list(ast.walk(tree))
    parents = _parents(tree)  # the operators build new nodes and leave the tree as it is
    for name, op in EXPRESSION_OPERATORS.items():
        for node in nodes:
            if not _inside(node, regions):
                continue
            parent = parents.get(id(node))
            for v, _ in enumerate(op(node, parent)):
                mutated, memo = _copy_path(tree, node, parents)
                target, target_parent = memo[id(node)], memo.get(id(parent)) if parent is not None else None
                replacement = op(target, target_parent)[v]
                _replace(mutated if target_parent is None else target_parent, target, replacement)
                yield name, node.lineno, mutated
    for name, op in LIST_OPERATORS.items():
        for node in nodes:
            for fname, value in ast.iter_fields(node):
                if not (isinstance(value, list) and value and isinstance(value[0], ast.stmt)):
                    continue
                for i, stmt in enumerate(value):
                    if not _inside(stmt, regions):
                        continue
                    for v, _ in enumerate(op(value, i)):
                        mutated, memo = _copy_path(tree, node, parents)
                        lst = getattr(memo[id(node)], fname)
                        lst[:] = op(lst, i)[v]
                        label = name + ("↑" if v == 0 and i > 0 else "↓") if name == "move-sync" else name
                        yield label, stmt.lineno, mutated


def _param_constants(tree: ast.Module, answers: tuple[str, ...], values: dict[str, object],
                     regions: list[tuple[int, int]]) -> Iterator[tuple[str, int, ast.Module]]:
    """A parameter replaced, everywhere in its function's solution region, by its default or by the constant
    the check passes for it (``slope`` -> 0.01): a check that never varies it cannot tell the difference."""
    for k, fn in enumerate(ast.walk(tree)):
        if not isinstance(fn, ast.FunctionDef) or fn.name not in answers:
            continue
        args = fn.args.args
        defaults = dict(zip([a.arg for a in args[len(args) - len(fn.args.defaults):]], fn.args.defaults))
        for a in args:
            const = defaults.get(a.arg)
            if const is None and a.arg in values and np.ndim(values[a.arg]) == 0:
                raw = values[a.arg]
                const = ast.Constant(raw.item() if isinstance(raw, np.generic) else raw)
                if isinstance(raw, np.floating):  # keep its type: a float64 literal would be a second mutation
                    const = ast.Call(ast.Attribute(ast.Name("np", ast.Load()), type(raw).__name__, ast.Load()),
                                     [const], [])
            if const is None or (isinstance(const, ast.Constant) and isinstance(const.value, str)):
                continue
            mutated = copy.deepcopy(tree)
            target = list(ast.walk(mutated))[k]
            uses = [n for n in ast.walk(target) if isinstance(n, ast.Name) and n.id == a.arg
                    and isinstance(n.ctx, ast.Load) and _inside(n, regions)]
            if not uses:
                continue
            for n in uses:
                _replace(target, n, copy.deepcopy(const))
            yield "param→const", uses[0].lineno, mutated


MAX_MUTANTS = 40  # per exercise, picked round-robin over the operators (``--all-mutants``: no limit)


def _pick(found: list[Mutant], limit: int | None) -> list[Mutant]:
    """At most ``limit`` mutants, taken in turn from each operator (so every operator is represented), kept in
    generation order; ids stay those of the full list."""
    if limit is None or len(found) <= limit:
        return found
    by_op: dict[str, list[Mutant]] = {}
    for m in found:
        by_op.setdefault(m.operator.rstrip("↑↓"), []).append(m)
    chosen: list[Mutant] = []
    while len(chosen) < limit:
        for ms in by_op.values():
            if ms and len(chosen) < limit:
                chosen.append(ms.pop(0))
    order = {m.id: k for k, m in enumerate(found)}
    return sorted(chosen, key=lambda m: order[m.id])


def mutants(sol: Solution, values: dict[str, object] | None = None, limit: int | None = None) -> list[Mutant]:
    """The distinct valid mutants of a solution (identical sources are kept once, in generation order), at most
    ``limit`` of them (see :func:`_pick`).

    ``values``: what the check passes for the answer's scalar parameters (for ``param→const``)."""
    tree = ast.parse(sol.source)
    regions = _regions(sol)
    reference = ast.unparse(tree)
    seen = {reference}
    found = []
    lines = sol.source.splitlines()
    generated = [*_variants(tree, regions), *_param_constants(tree, sol.answers, values or {}, regions)]
    for name, line, mutated in generated:
        ast.fix_missing_locations(mutated)
        try:
            text = ast.unparse(mutated)
            compile(text, "<mutant>", "exec")
        except (SyntaxError, ValueError, TypeError, AttributeError):
            continue
        if text in seen:
            continue
        seen.add(text)
        changed = [d[1:] for d in difflib.unified_diff(reference.splitlines(), text.splitlines(), lineterm="", n=0)
                   if d.startswith("+") and not d.startswith("+++")]
        diff = "\n".join(difflib.unified_diff(reference.splitlines(), text.splitlines(), "reference", "mutant",
                                              lineterm="", n=1))
        found.append(Mutant(id=f"{sol.number}-m{len(found) + 1:02d}", operator=name, line=line,
                            before=lines[line - 1].strip(), after=" / ".join(c.strip() for c in changed) or "(removed)",
                            source=text, diff=diff))
    return _pick(found, limit)


# --------------------------------------------------------------------------------------------------
# the broad differential test, declared per exercise


@dataclass(frozen=True)
class Trial:
    """One run of the broad test: a launch (kernels), the sizes for the exercise's own ``inputs``, and values
    that replace some inputs (a parameter the check keeps fixed, e.g. ``slope``)."""

    sizes: dict = field(default_factory=dict)
    grid: object = None
    block: object = None
    set: dict = field(default_factory=dict)
    seed: int = 0
    part: int | None = None  # for an exercise in parts: the part this trial runs (None: every part)


def _t(grid, block, **sizes) -> Trial:
    return Trial(sizes=sizes, grid=grid, block=block)


def _with(trials: list[Trial], **values) -> list[Trial]:
    return [dataclasses.replace(t, set={**t.set, **values}) for t in trials]


def _square(rows: int, cols: int, block: tuple[int, int]) -> tuple[int, int]:
    """A square grid with at least max(rows, cols) threads along x and along y, whatever the block's shape: every
    2-D mapping of threads to a (rows, cols) output is covered (the statement leaves the mapping free)."""
    side = max(-(-max(rows, cols) // block[0]), -(-max(rows, cols) // block[1]))
    return side, side


def _pool_trials() -> list[Trial]:
    out = []
    for (n, c, h, w), block in (((1, 1, 2, 2), (8, 8, 1)), ((2, 3, 7, 9), (4, 4, 1)), ((1, 2, 5, 4), (8, 8, 1)),
                                ((3, 1, 11, 6), (2, 8, 1)), ((2, 2, 1, 1), (8, 8, 1)), ((1, 1, 3, 13), (16, 2, 1))):
        for part, (hh, ww) in ((0, (h // 2, w // 2)), (1, (h, w))):
            side = max(-(-max(ww, hh, 1) // block[0]), -(-max(ww, hh, 1) // block[1]))
            grid = (side, side, n * c)  # square in x, y: j, i = grid(3) or i, j = grid(3), both mappings covered
            out.append(Trial(sizes={"N": n, "C": c, "H": h, "W": w}, grid=grid, block=block, part=part))
    return out


def _broad_kernel_1d(name: str = "n", *extra: dict) -> list[Trial]:
    """1-D launches: one element, primes, fewer threads than elements, one block larger than all."""
    shapes = [(1, 32, 1), (1, 64, 7), (3, 32, 97), (4, 128, 301), (1, 1024, 1000), (2, 96, 191), (5, 32, 150)]
    return [Trial(sizes={name: n, **(extra[0] if extra else {})}, grid=g, block=b) for g, b, n in shapes]


def _matmul_trials(tile: int | None = None) -> list[Trial]:
    out = []
    for m, k, n in ((1, 1, 1), (19, 21, 13), (7, 3, 29), (32, 17, 5), (13, 40, 1), (16, 16, 16), (5, 33, 8)):
        if tile:
            out.append(Trial(sizes={"M": m, "K": k, "N": n, "tile": tile}, grid=(-(-n // tile), -(-m // tile)),
                             block=(tile, tile)))
        else:
            for block in ((8, 8), (4, 16)):
                out.append(Trial(sizes={"M": m, "K": k, "N": n}, grid=_square(m, n, block), block=block))
    return out


def _sgd_trials() -> list[Trial]:
    out = []
    for k, (lr, mom, damp, wd, first) in enumerate(((0.1, 0.9, 0.0, 0.0, 1), (0.05, 0.5, 0.1, 0.01, 0),
                                                     (0.3, 0.0, 0.0, 0.2, 0), (0.01, 0.99, 0.5, 0.0, 0),
                                                     (0.2, 0.7, 0.3, 0.05, 1))):
        for grid, block, n in ((1, 32, 1), (4, 32, 101), (2, 64, 257)):
            out.append(Trial(sizes={"n": n, "run": 0, "step": 1}, grid=grid, block=block, seed=k,
                             set={"lr": np.float32(lr), "momentum": np.float32(mom), "dampening": np.float32(damp),
                                  "weight_decay": np.float32(wd), "first_step": np.int32(first)}))
    return out


def _seed_conv_trials() -> list[Trial]:
    out = []
    for h, w, d in ((9, 11, 3), (1, 1, 1), (5, 17, 2), (16, 8, 4), (3, 2, 5)):
        for block in ((8, 8), (4, 16)):
            out.append(Trial(sizes={"height": h, "width": w, "depth": d}, block=block,
                             grid=(-(-w // block[0]), -(-h // block[1]))))
    return out


def _conv_wgrad_trials() -> list[Trial]:
    out = []
    for n, c, h, w, f, kh, kw in ((2, 3, 9, 13, 4, 3, 5), (1, 1, 3, 3, 1, 3, 3), (3, 2, 6, 5, 3, 2, 4),
                                  (1, 4, 8, 7, 2, 5, 1), (2, 1, 5, 9, 5, 1, 2)):
        for block in ((8, 4, 1), (2, 2, 1)):
            out.append(Trial(sizes={"N": n, "C": c, "H": h, "W": w, "F": f, "KH": kh, "KW": kw}, block=block,
                             grid=(-(-kw // block[0]), -(-kh // block[1]), f * c)))
    return out


def _scale_add_trials() -> list[Trial]:
    out = []
    for m, n in ((40, 96), (1, 1), (7, 33), (65, 32), (3, 200)):
        for grid in ((2, 2), (1, 1), (3, 5)):
            out.append(Trial(sizes={"M": m, "N": n, "alpha": 2.0}, grid=grid, block=(32, 8)))
    return [dataclasses.replace(t, sizes={**t.sizes, "alpha": -1.5}) for t in out[:8]] + out


def _transpose_trials(block=(8, 8)) -> list[Trial]:
    out = []
    for r, c in ((13, 29), (1, 1), (1, 17), (31, 2), (16, 16), (5, 40)):
        for b in (block, (4, 16)):
            out.append(Trial(sizes={"rows": r, "cols": c}, grid=_square(r, c, b), block=b))
    return out


def _padded_transpose_trials() -> list[Trial]:
    return [Trial(sizes={"M": m, "N": n}, grid=(-(-n // 32), -(-m // 32)), block=(32, 8))
            for m, n in ((33, 45), (1, 1), (32, 32), (64, 7), (5, 70), (100, 33))]


def _function_trials(*sizes: dict) -> list[Trial]:
    return [Trial(sizes=s, seed=k) for k, s in enumerate(sizes)]


BROAD: dict[str, Callable[[], list[Trial]]] = {
    "00.1": lambda: _broad_kernel_1d() + _with(_broad_kernel_1d()[:4], alpha=np.float32(-0.75)),
    "01.1": lambda: _function_trials({"rows": 1, "cols": 1}, {"rows": 3, "cols": 7}, {"rows": 6, "cols": 2}),
    "01.2": lambda: _function_trials({"N": 1, "n_in": 1, "n_out": 1}, {"N": 3, "n_in": 6, "n_out": 2},
                                     {"N": 7, "n_in": 2, "n_out": 5}),
    "01.3": lambda: _function_trials({"N": 1, "C": 2}, {"N": 4, "C": 11}, {"N": 9, "C": 3}),
    "01.4": lambda: _function_trials({"N": 1, "C": 1, "H": 3, "W": 3, "F": 1, "KH": 3, "KW": 3},
                                     {"N": 3, "C": 2, "H": 6, "W": 5, "F": 3, "KH": 2, "KW": 4},
                                     {"N": 2, "C": 4, "H": 8, "W": 7, "F": 2, "KH": 5, "KW": 1}),
    "02.1": lambda: _function_trials({"N": 1, "n_in": 1, "n_out": 1, "lr": 0.3}, {"N": 6, "n_in": 2, "n_out": 5,
                                                                                    "lr": 0.05},
                                     {"N": 3, "n_in": 7, "n_out": 2, "lr": 1.0}),
    "02.2": lambda: _function_trials({"N": 1, "hidden": 1, "out": 1}, {"N": 6, "hidden": 3, "out": 7},
                                     {"N": 2, "hidden": 9, "out": 2}),
    "03.1": lambda: [_t(g, b, rows=r, cols=c) for g, b, r, c in ((1, 32, 1, 1), (2, 32, 37, 13), (1, 64, 5, 40),
                                                                 (3, 16, 41, 1), (1, 128, 100, 3))],
    "03.2": _transpose_trials,
    "03.3": lambda: _broad_kernel_1d() + _with(_broad_kernel_1d()[:3], a=np.float32(-2.0)),
    "03.4": lambda: [_t(g, b, n=n) for g, b, n in ((1, 32, 3), (1, 32, 4), (5, 64, 300), (2, 16, 35), (1, 128, 97))],
    "04.1": _matmul_trials,
    "04.2": lambda: [_t(g, b, batch=m, n_out=n) for g, b, m, n in ((1, 32, 1, 1), (2, 32, 37, 45), (1, 64, 3, 60),
                                                                   (4, 16, 11, 50), (1, 128, 100, 7))],
    "04.3": lambda: _matmul_trials(8) + _matmul_trials(4),
    "04.4": lambda: _matmul_trials(8) + _matmul_trials(4),
    "05.1": lambda: _broad_kernel_1d("n", {"slope": 0.01}) + _broad_kernel_1d("n", {"slope": 0.3})[1:4],
    "05.2": lambda: [_t(g, b, N=n, C=c) for g, b, n, c in ((1, 32, 5, 8), (2, 32, 37, 13), (1, 64, 64, 8),
                                                           (3, 16, 41, 30), (1, 8, 20, 17), (4, 2, 7, 9))],
    "05.3": lambda: [_t(g, b, n=n) for g, b, n in ((1, 32, 1), (2, 128, 300), (2, 32, 100), (4, 64, 500),
                                                   (1, 2, 4), (3, 16, 90), (1, 128, 256))],
    "05.4": lambda: [_t(g, b, n=n) for g, b, n in ((1, 32, 1), (2, 128, 300), (2, 32, 100), (4, 64, 500),
                                                   (3, 64, 90), (1, 128, 256), (2, 128, 513))],
    "06.1": _pool_trials,
    "06.2": _pool_trials,
    "06.3": _conv_wgrad_trials,
    "06.4": _seed_conv_trials,
    "07.1": _sgd_trials,
    "08.1": lambda: _broad_kernel_1d(),
    "09.1": _scale_add_trials,
    "09.2": _padded_transpose_trials,
    # gradients of 10^5 values and more: rounding a chunk to whole bytes or values (a modelling choice the check
    # accepts) stays below the check's 1e-4 tolerance there; a mutant that changes the formula does not
    "10.2": lambda: _function_trials(
        {"n_params": 100_003, "bytes_per_param": 8, "p": 5, "bandwidth_GBps": 1.0, "latency_us": 2.0},
        {"n_params": 1_234_567, "bytes_per_param": 2, "p": 16, "bandwidth_GBps": 100.0, "latency_us": 0.5},
        {"n_params": 10 ** 9, "bytes_per_param": 4, "p": 2, "bandwidth_GBps": 900.0, "latency_us": 30.0},
        {"n_params": 25_557_032, "bytes_per_param": 4, "p": 7, "bandwidth_GBps": 32.0, "latency_us": 5.0}),
}
"""The broad differential test of each exercise: trials beyond the check's own cases (other shapes, launches and
parameter values), run on the reference solution and on the mutant. Procedures have their test in
:data:`PROCEDURES`."""

# float32 signatures for exercises whose statement asks for float32 but whose check does not prove it
# (03.1: "out[r] = sum of M[r, :] in float32")
FLOAT32_STATEMENT: dict[str, str] = {
    "03.1": "void(float32[:, ::1], float32[::1])",
}


def _launch(kernel, grid, block, args) -> None:
    """Run a kernel on the CPU executor, or on the simulator where the executor cannot transform it."""
    from nbkit.core.executor import ExecutorUnsupported, run_on_cpu

    try:
        run_on_cpu(kernel, grid, block, *args)
    except ExecutorUnsupported:
        kernel[grid, block](*args)


def _kernel_outputs(part, kernel, trial: Trial) -> dict[str, np.ndarray]:
    """The outputs of one trial of a kernel exercise (outputs start as the check's sentinel or initial value)."""
    from nbkit.checks._core import SENTINEL
    from nbkit.checks.exercise import Case

    rng = np.random.default_rng(1000 + trial.seed)
    make = BROAD_INPUTS.get(part.call.split("(")[0], part.inputs)
    inputs = dict(make(rng, Case(grid=trial.grid, block=trial.block, sizes=trial.sizes)))
    inputs.update(trial.set)
    wants = part.expected(inputs)
    before, after = part._split()
    dtypes = part.out_dtypes or (np.float32,) * len(part.outputs)
    outs = []
    for name, dtype in zip(part.outputs, dtypes):
        start = inputs.get(name)
        outs.append(np.array(start, dtype=dtype, copy=True) if start is not None
                    else np.full(wants[name].shape, SENTINEL, dtype=dtype))
    args = [np.array(inputs[p], copy=True) if isinstance(inputs[p], np.ndarray) else inputs[p] for p in before]
    _launch(kernel, trial.grid, trial.block, [*args, *outs, *[inputs[p] for p in after]])
    return dict(zip(part.outputs, outs))


def _covers(outputs: dict[str, np.ndarray]) -> bool:
    """Whether the reference wrote every output element (no sentinel left): a trial whose launch or inputs do not
    fit its sizes tests nothing and is skipped."""
    from nbkit.checks._core import SENTINEL

    return not any(np.any(np.asarray(o) == SENTINEL) for o in outputs.values())


def _maxpool_inputs(rng: np.random.Generator, case) -> dict[str, object]:
    """06.2's inputs at any size (the check's own are one fixed array): small integers, so ties are common."""
    n, c, h, w = case.N, case.C, case.H, case.W
    return {"x": rng.integers(-3, 3, size=(n, c, h, w)).astype(np.float32),
            "dy": rng.standard_normal((n, c, h // 2, w // 2)).astype(np.float32)}


BROAD_INPUTS: dict[str, Callable] = {"maxpool_forward": _maxpool_inputs, "maxpool_backward": _maxpool_inputs}
"""Input builders of the broad test for answers whose exercise's ``inputs`` ignore the sizes, by answer name."""


def _function_outputs(part, fn, trial: Trial) -> dict[str, np.ndarray]:
    from nbkit.checks.exercise import Case

    rng = np.random.default_rng(1000 + trial.seed)
    inputs = dict(part.inputs(rng, Case(sizes=trial.sizes)))
    inputs.update(trial.set)
    result = fn(*[copy.deepcopy(inputs[p]) for p in part.parameters])
    got = result if len(part.outputs) > 1 else (result,)
    return {name: np.asarray(g, dtype=np.float64) for name, g in zip(part.outputs, got)}


def _trial_text(trial: Trial) -> str:
    launch = f", grid {trial.grid} x block {trial.block}" if trial.grid is not None else ""
    values = f", {', '.join(f'{k}={v}' for k, v in trial.set.items())}" if trial.set else ""
    return f"{', '.join(f'{k}={v}' for k, v in trial.sizes.items())}{launch}{values}"


def _differs(ref: dict, mut: dict, tolerance) -> str | None:
    for name in ref:
        a, b = np.asarray(ref[name], dtype=np.float64), np.asarray(mut[name], dtype=np.float64)
        if a.shape != b.shape:
            return f"{name}: shape {b.shape}, reference {a.shape}"
        rtol, atol = tolerance(name)
        bad = ~np.isclose(b, a, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"{name}{list(idx)} = {b[idx]:.6g}, reference {a[idx]:.6g}"
    return None


def broad_test(number: str, exercise, reference: tuple, mutant: tuple) -> str | None:
    """None when the mutant equals the reference solution on every trial of the broad test, else the first
    difference in words. Raises LookupError when no broad test is declared for the exercise."""
    if number in PROCEDURES:
        return PROCEDURES[number](reference, mutant)
    if number not in BROAD:
        raise LookupError(number)
    from nbkit.checks.exercise import ExerciseGroup, KernelExercise

    parts = exercise.parts if isinstance(exercise, ExerciseGroup) else (exercise,)
    ran = 0
    for trial in BROAD[number]():
        for k, part in enumerate(parts):
            if trial.part is not None and trial.part != k:
                continue
            run = _kernel_outputs if isinstance(part, KernelExercise) else _function_outputs
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    want = run(part, reference[k], trial)
                except Exception:  # noqa: BLE001 - a trial the reference itself cannot run says nothing
                    want = None
                if want is None or (run is _kernel_outputs and not _covers(want)):
                    continue
                try:
                    got = run(part, mutant[k], trial)
                except Exception as exc:  # noqa: BLE001 - the mutant raising where the reference does not is a difference
                    first = str(exc).splitlines()[0][:120] if str(exc) else ""
                    return f"{_trial_text(trial)}: raised {type(exc).__name__}: {first}"
            ran += 1
            difference = _differs(want, got, part.tolerance)
            if difference:
                return f"{part.call.split('(')[0]}, {_trial_text(trial)}: {difference}"
    if not ran:
        raise LookupError(f"{number}: the reference solution ran none of the broad test's trials")
    return None


# ---- procedures: their own broad tests


def _compare_values(label: str, want, got) -> str | None:
    try:
        if isinstance(want, tuple):
            for k, (w, g) in enumerate(zip(want, got, strict=True)):
                out = _compare_values(f"{label}[{k}]", w, g)
                if out:
                    return out
            return None
        w, g = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
        if w.shape != g.shape or not np.allclose(g, w, rtol=1e-9, atol=1e-12, equal_nan=True):
            return (f"{label}: {np.array2string(g.ravel()[:4], precision=4)}..., "
                    f"reference {np.array2string(w.ravel()[:4], precision=4)}...")
    except (TypeError, ValueError) as exc:
        return f"{label}: {exc}"
    return None


def _broad_02_3(ref, mut) -> str | None:
    return _compare_values("sigmoid_example_gradients()", tuple(ref[0]()), tuple(mut[0]()))


def _broad_07_2(ref, mut) -> str | None:
    from numba import cuda

    r = np.random.default_rng(7)
    for shape in ((1, 1), (5, 7), (3, 40), (64,)):
        x = (r.standard_normal(shape) * 4).astype(np.float32)
        d = r.standard_normal(shape).astype(np.float32)
        outs = []
        for cls in (ref[0], mut[0]):
            layer = cls()
            y = np.asarray(layer.forward(cuda.to_device(x)).copy_to_host())
            dx = np.asarray(layer.backward(cuda.to_device(d)).copy_to_host())
            outs.append((y, dx))
        out = _compare_values(f"Sigmoid on shape {shape}", outs[0], outs[1])
        if out:
            return out
    return None


def _broad_07_3(ref, mut) -> str | None:
    import torch

    for seed, steps, lr, mom in ((1, 4, 0.1, 0.9), (2, 1, 0.5, 0.0), (3, 6, 0.05, 0.5)):
        runs = []
        for fn in (ref[0], mut[0]):
            torch.manual_seed(seed)
            model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom)
            g = torch.Generator().manual_seed(seed)
            batches = [(torch.randn(6, 3, generator=g), torch.randint(0, 4, (6,), generator=g)) for _ in range(steps)]
            losses = fn(model, opt, batches)
            runs.append((np.asarray(losses, dtype=np.float64),
                         np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])))
        out = _compare_values(f"seed {seed}, {steps} steps, lr={lr}, momentum={mom}", runs[0], runs[1])
        if out:
            return out
    return None


def _broad_08_2(ref, mut) -> str | None:
    for h, w in ((32, 32), (28, 28), (17, 17), (16, 100), (64, 29), (18, 19)):
        want = [tuple(int(v) for v in s) for s in ref[0](h, w)]
        got = [tuple(int(v) for v in s) for s in mut[0](h, w)]
        if want != got:
            return f"feature_shapes({h}, {w}) = {got}, reference {want}"
    return None


def _broad_08_3(ref, mut) -> str | None:
    r = np.random.default_rng(8)
    for n, batch in ((1, 1), (10, 3), (50, 50), (64, 7), (33, 100), (12, 4), (13, 4)):
        x = r.standard_normal((n, 4)).astype(np.float32)
        y = r.integers(0, 5, n)
        table = r.standard_normal((n, 5)).astype(np.float32)
        table[np.arange(n), y] += 10 * (np.arange(n) % 3 != 1)  # 2 of 3 right, so a dropped image changes the count

        def logits_of(xb, x=x, table=table):
            idx = np.flatnonzero((x[:, None, :] == xb[None, :, :]).all(axis=2).any(axis=1))
            return table[idx]

        want, got = ref[0](logits_of, x, y, batch), mut[0](logits_of, x, y, batch)
        out = _compare_values(f"accuracy with n={n}, batch={batch}", want, got)
        if out:
            return out
    return None


def _broad_09_3(ref, mut) -> str | None:
    """Every block size reaching the highest occupancy is right: the check itself, on more cases."""
    from nbkit.checks import CheckFailed, check_block_size

    cases = tuple((cc, regs, shared) for cc in ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
                  for regs, shared in ((16, 0), (32, 0), (40, 1024), (64, 8192), (128, 0), (255, 48 * 1024)))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check_block_size(mut[0], cases=cases)
    except CheckFailed as exc:
        return str(exc).splitlines()[0][:200]
    return None


def _broad_10_1(ref, mut) -> str | None:
    r = np.random.default_rng(11)
    for p, m in ((1, 1), (2, 1), (3, 4), (6, 2), (7, 3)):
        bufs = r.integers(-9, 9, size=(p, p, m)).astype(np.float64)
        for step in range(max(p - 1, 1)):
            out = _compare_values(f"p={p}, m={m}, step {step}", ref[0](bufs.copy(), step), mut[0](bufs.copy(), step))
            if out:
                return out
    return None


PROCEDURES: dict[str, Callable[[tuple, tuple], str | None]] = {
    "02.3": _broad_02_3, "07.2": _broad_07_2, "07.3": _broad_07_3, "08.2": _broad_08_2, "08.3": _broad_08_3,
    "09.3": _broad_09_3, "10.1": _broad_10_1,
}
"""Broad tests of the exercises whose checks are procedures: (reference answers, mutant answers) -> difference."""

# Exercises whose check cell's procedure is replaced by its declared exercise (what the procedure runs first):
# 08.1 trains LeNet beside PyTorch after the declared kernel check, minutes per mutant on the simulator.
DECLARED_ONLY = {"08.1": "the LeNet training part of check_relu_in_lenet is not run (minutes per mutant)"}


# --------------------------------------------------------------------------------------------------
# running one answer through its check


@dataclass
class Outcome:
    """A mutant's verdict and classification."""

    id: str
    operator: str
    line: int
    before: str
    after: str
    status: str  # "passed", "failed", "raised", "not solved", "hang"
    message: str
    klass: str = ""  # rejected, equivalent, WRONG, f32-broken, hang, not judged
    note: str = ""  # the broad test's first difference, the PTX verdict
    seconds: float = 0.0
    diff: str = ""


def _namespace(sol: Solution, source: str, label: str) -> dict:
    """Run the preamble and ``source`` (registered with linecache so that inspect and the executor read it)."""
    ns: dict = {"__name__": f"nbkit_mutant_{label.replace('.', '_').replace('-', '_')}"}
    for stmt in sol.preamble.splitlines():
        try:
            exec(stmt, ns)  # noqa: S102 - the notebook's own import and constant lines
        except Exception:  # noqa: BLE001, S112 - an import the solution does not need
            continue
    filename = f"<mutant {label}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - the solution cell, or one mutant of it
    return ns


@contextlib.contextmanager
def _capturing(verdicts: list) -> Iterator[None]:
    """Inside: ``Exercise.check`` and ``ExerciseGroup.check`` keep their verdict instead of printing or raising."""
    from nbkit.checks.exercise import Exercise, ExerciseGroup

    saved = Exercise.check, ExerciseGroup.check

    def exercise_check(self, answer, cases=None, realistic=None):
        verdicts.append(self.run(answer, cases, realistic=realistic))

    def group_check(self, *answers):
        verdicts.append(self.run(*answers))

    Exercise.check, ExerciseGroup.check = exercise_check, group_check
    try:
        yield
    finally:
        Exercise.check, ExerciseGroup.check = saved


def run_check(sol: Solution, ns: dict) -> tuple[str, str]:
    """(status, message) of the check cell's call on the answers in ``ns``, printing nothing."""
    import nbkit.checks as checks
    from nbkit.checks import CheckFailed

    answers = [ns[a] for a in sol.answers]
    keywords = {k: eval(v, ns) for k, v in sol.keywords}  # noqa: S307 - the check cell's own argument, e.g. TILE_W
    verdicts: list = []
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), _capturing(verdicts):
            if sol.number in DECLARED_ONLY:
                verdicts.append(checks.exercises()[sol.number].run(*answers))
            else:
                getattr(checks, sol.check)(*answers, **keywords)
    except CheckFailed as exc:
        return "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - a mutant that crashes the check is rejected too
        return "raised", f"{type(exc).__name__}: {exc}"
    if verdicts:
        v = verdicts[-1]
        return ("failed" if v.status == "failed" else v.status), v.message
    text = out.getvalue().strip()
    return ("passed" if text.startswith("✓") else "not solved" if text.startswith("◻") else "passed"), text


def _scalar_values(number: str) -> dict[str, object]:
    """The scalar values the check passes for the answer's parameters (first case of each part)."""
    from nbkit.checks import exercises
    from nbkit.checks.exercise import ExerciseGroup

    ex = exercises().get(number)
    if ex is None:
        return {}
    values: dict[str, object] = {}
    for part in ex.parts if isinstance(ex, ExerciseGroup) else (ex,):
        case = part.cases[0]
        inputs = part.case_inputs(case, np.random.default_rng(part.seed))
        values.update({k: v for k, v in inputs.items() if np.ndim(v) == 0 and not isinstance(v, str)})
    return values


def _float32_note(sol: Solution, ns: dict) -> tuple[bool | None, str]:
    """Whether an accepted float32-constant mutant keeps float32 in its PTX: (False, why) when it does not."""
    from nbkit.checks import exercises
    from nbkit.checks._core import float32_ptx
    from nbkit.checks.exercise import ExerciseGroup

    ex = exercises().get(sol.number)
    parts = (ex.parts if isinstance(ex, ExerciseGroup) else (ex,)) if ex is not None else ()
    for k, part in enumerate(parts):
        signature = getattr(part, "float32", None) or FLOAT32_STATEMENT.get(sol.number)
        if signature:
            ok, text = float32_ptx(ns[sol.answers[k]], signature)
            if ok is not True:
                return ok, text.split(":")[0] if ok is None else text[:160]
    return True, ""


def _worker(number: str, skip: int, limit: int | None) -> int:
    """Run the reference and mutants ``skip``, ``skip+1``, ... of one exercise; one JSON line per result."""
    from nbkit.checks import exercises

    sol = solutions()[number]
    exercise = exercises().get(number)
    found = mutants(sol, _scalar_values(number), limit)

    def emit(obj: dict) -> None:
        print(JSON_PREFIX + json.dumps(obj), flush=True)

    ref_ns = _namespace(sol, sol.source, f"{number}-reference")
    reference = tuple(ref_ns[a] for a in sol.answers)
    if skip == 0:
        start = time.perf_counter()
        status, message = run_check(sol, ref_ns)
        emit({"reference": status, "message": message, "mutants": len(found),
              "seconds": round(time.perf_counter() - start, 1)})
    for m in found[skip:]:
        start = time.perf_counter()
        outcome = Outcome(m.id, m.operator, m.line, m.before, m.after, "", "", diff=m.diff)
        try:
            ns = _namespace(sol, m.source, m.id)
        except Exception as exc:  # noqa: BLE001 - a mutant that cannot even be defined is rejected
            outcome.status, outcome.message = "raised", f"{type(exc).__name__}: {exc}"
        else:
            outcome.status, outcome.message = run_check(sol, ns)
        if outcome.status in ("failed", "raised"):
            outcome.klass = "rejected"
        elif outcome.status == "not solved":
            outcome.klass = "rejected"
        else:
            try:
                difference = broad_test(number, exercise, reference, tuple(ns[a] for a in sol.answers))
            except LookupError as exc:
                outcome.klass, outcome.note = "not judged", f"no broad test: {exc}"
            else:
                outcome.klass = "WRONG" if difference else "equivalent"
                outcome.note = difference or ""
            if outcome.klass == "equivalent" and m.operator in FLOAT32_OPERATORS:
                ok, note = _float32_note(sol, ns)
                if ok is False:
                    outcome.klass, outcome.note = "f32-broken", note
                elif ok is None:
                    outcome.note = note
        outcome.seconds = round(time.perf_counter() - start, 1)
        emit(dataclasses.asdict(outcome))
    emit({"done": True})
    return 0


# --------------------------------------------------------------------------------------------------
# the orchestrator: one worker process per exercise, killed and restarted after a mutant that hangs


def run_exercise(number: str, log: Callable[[str], None] = print, limit: int | None = MAX_MUTANTS) -> dict:
    """Every mutant of one exercise, classified: {"reference": ..., "outcomes": [Outcome, ...], "seconds": ...}."""
    start = time.perf_counter()
    result: dict = {"number": number, "reference": None, "message": "", "outcomes": [], "mutants": None}
    skip = 0
    while True:
        proc = subprocess.Popen([sys.executable, "-m", "nbkit.checks.mutate", "--worker", number, "--skip", str(skip),
                                 "--limit", str(limit or 0)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
                                start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep
                                                             + os.environ.get("PYTHONPATH", "")})
        deadline = time.monotonic() + TIMEOUT_S + 120  # the first result also waits for the reference's check
        finished = False
        pending = b""  # read with os.read, not a buffered readline: select must see every line as it comes
        lines: list[str] = []
        while True:
            if not lines:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    finished = True  # the worker ended (after "done", or crashed)
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                lines = [c.decode("utf-8", "replace") for c in complete]
                continue
            line = lines.pop(0)
            if not line.startswith(JSON_PREFIX):
                continue
            obj = json.loads(line[len(JSON_PREFIX):])
            deadline = time.monotonic() + TIMEOUT_S
            if "reference" in obj:
                result.update(reference=obj["reference"], message=obj["message"], mutants=obj["mutants"])
                log(f"{number}: reference {obj['reference']} ({obj['seconds']} s), {obj['mutants']} mutants")
            elif obj.get("done"):
                finished = True
                break
            else:
                outcome = Outcome(**obj)
                result["outcomes"].append(outcome)
                skip += 1
                log(f"{number}: {outcome.id} {outcome.operator:12} {outcome.klass:11} {outcome.seconds:6.1f} s  "
                    f"{_first_line(outcome.message)[:90]}")
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)  # this worker's own process group (started by this function)
        proc.wait()
        if finished:
            if result["mutants"] is not None and skip < result["mutants"]:
                # the worker died on a mutant without answering: record it, go on after it
                found = mutants(solutions()[number], _scalar_values(number), limit)
                m = found[skip]
                result["outcomes"].append(Outcome(m.id, m.operator, m.line, m.before, m.after, "raised",
                                                  "the worker process died on this mutant", "rejected", diff=m.diff))
                skip += 1
                continue
            break
        found = mutants(solutions()[number], _scalar_values(number), limit)
        if skip >= len(found):
            break
        m = found[skip]
        result["outcomes"].append(Outcome(m.id, m.operator, m.line, m.before, m.after, "hang",
                                          f"no verdict within {TIMEOUT_S} s", "hang", diff=m.diff))
        log(f"{number}: {m.id} {m.operator:12} hang (killed after {TIMEOUT_S} s)")
        skip += 1
        if skip >= len(found):
            break
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _first_line(message: str) -> str:
    return (message or "").strip().splitlines()[0] if (message or "").strip() else ""


# --------------------------------------------------------------------------------------------------
# the table


CLASSES = ("rejected", "equivalent", "WRONG", "f32-broken", "hang", "not judged")
KERNEL_MINIMUM = 15


def inputs_hash() -> str:
    """A hash of what the table depends on: the check modules, this tool and every solution and check cell."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "nbkit" / "checks").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = _cells(path)
        for cell in cells:  # keyed by grade id, not position: a prose cell added above an exercise changes nothing
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("solution") or meta.get("grade"):
                h.update(f"{path.name}:{meta.get('grade_id', '')}:".encode())
                h.update(_text(cell).encode())
    return h.hexdigest()[:16]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _is_kernel(sol: Solution) -> bool:
    return "@cuda.jit" in sol.source


def markdown(results: list[dict], command: str, seconds: float) -> str:
    """The table as markdown: a header (date, command, inputs hash), totals, then one table per exercise."""
    out = ["# Mutation table of the exercise checks", "",
           f"Generated {datetime.date.today().isoformat()} by `{command}` (NBKIT_MODE="
           f"{os.environ.get('NBKIT_MODE', 'auto')}); the exercises' runs took {seconds / 60:.1f} min in all. "
           "Stale when the inputs hash below differs from `nbkit.checks.mutate.inputs_hash()` (the check modules, "
           "this tool, the solution and check cells): tests/test_mutation.py says so.", "",
           f"inputs-hash: `{inputs_hash()}`", "",
           "Each mutant is the exercise's reference solution changed in one place (`nbkit/checks/mutate.py`), run "
           "through the exercise's check as its check cell calls it. Classes: **rejected** (✗ or raised); "
           "**equivalent** (accepted, and equal to the reference solution on the broad differential test of other "
           "shapes, launches and parameter values); **WRONG** (accepted, different on the broad test: a defect of "
           "the check); **f32-broken** (a float32 constant mutant accepted with float64 in its PTX); **hang** (no "
           f"verdict in {TIMEOUT_S} s); **not judged** (accepted, no broad test declared).", "",
           "## Totals", "", "| exercise | mutants | " + " | ".join(CLASSES) + " | note |",
           "|---|---|" + "---|" * len(CLASSES) + "---|"]
    sols = solutions()
    for r in results:
        counts = {c: sum(o.klass == c for o in r["outcomes"]) for c in CLASSES}
        note = []
        if r["reference"] != "passed":
            note.append(f"reference solution: {r['reference']}")
        sol = sols.get(r["number"])
        if sol is not None and _is_kernel(sol) and len(r["outcomes"]) < KERNEL_MINIMUM:
            note.append(f"fewer than {KERNEL_MINIMUM} distinct valid mutants: the solution is too small")
        if r["number"] in DECLARED_ONLY:
            note.append(DECLARED_ONLY[r["number"]])
        out.append(f"| {r['number']} | {len(r['outcomes'])} | " + " | ".join(str(counts[c]) for c in CLASSES)
                   + f" | {'; '.join(note)} |")
    totals = {c: sum(o.klass == c for r in results for o in r["outcomes"]) for c in CLASSES}
    out.append(f"| **all** | {sum(len(r['outcomes']) for r in results)} | "
               + " | ".join(str(totals[c]) for c in CLASSES) + " | |")
    for r in results:
        out += ["", f"## {r['number']}", "", f"Reference solution: {r['reference']}. {r.get('seconds', 0)} s.", "",
                "| mutant | operator | line changed | class | check's message (first line) / broad-test difference |",
                "|---|---|---|---|---|"]
        for o in r["outcomes"]:
            text = _first_line(o.message)[:140]
            if o.note:
                text += f" — broad test: {o.note[:200]}"
            out.append(f"| {o.id} | {o.operator} | L{o.line}: `{_cell(o.after)[:90]}` | {o.klass} | {_cell(text)} |")
    return "\n".join(out) + "\n"


def read_table_hash(path: Path) -> str | None:
    """The inputs hash written in a table (None if there is none)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("inputs-hash:"):
            return line.split("`")[1]
    return None


def wrong_rows(path: Path) -> list[str]:
    """The rows of a written table whose class is WRONG (accepted and wrong) or f32-broken."""
    rows = [line.split("|") for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    return ["|".join(r) for r in rows if len(r) > 5 and "-m" in r[1] and r[4].strip() in ("WRONG", "f32-broken")]


def _print_table(r: dict) -> None:
    print(f"\n{r['number']}: reference {r['reference']}, {len(r['outcomes'])} mutants, {r.get('seconds', 0)} s")
    for o in r["outcomes"]:
        print(f"  {o.id:10} {o.operator:12} L{o.line:<3} {o.klass:11} {_first_line(o.message)[:80]}"
              + (f"  [{o.note[:80]}]" if o.note else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mutation testing of the exercise checks.")
    parser.add_argument("--exercise", action="append", help="an exercise number, e.g. 05.3 (default: all)")
    parser.add_argument("--write", type=Path, help="write the table as markdown to this file")
    parser.add_argument("--json", type=Path, help="also write the outcomes as JSON (for other tools)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--skip", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=MAX_MUTANTS,
                        help=f"at most this many mutants per exercise (default {MAX_MUTANTS}; 0: all)")
    parser.add_argument("--list", action="store_true", help="only list the mutants (no checks run)")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="no run: make the table from these --json files (a later file's exercises replace an "
                             "earlier one's, e.g. a rerun of a few exercises)")
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.skip, args.limit or None)
    if args.merge:
        merged: dict[str, dict] = {}
        for path in args.merge:
            for r in json.loads(path.read_text(encoding="utf-8")):
                merged[r["number"]] = {**r, "outcomes": [Outcome(**o) for o in r["outcomes"]]}
        results = [merged[n] for n in sorted(merged)]
        for r in results:
            _print_table(r)
        if args.write:
            command = (f"python -m nbkit.checks.mutate --json ... (all exercises; some rerun after a fix of the broad "
                       f"test), then --merge {' '.join(p.name for p in args.merge)} --write {args.write}")
            args.write.write_text(markdown(results, command, sum(r.get("seconds", 0) for r in results)),
                                  encoding="utf-8")
            print(f"written: {args.write}")
        return 0
    sols = solutions()
    numbers = args.exercise or sorted(sols)
    if args.list:
        for n in numbers:
            for m in mutants(sols[n], _scalar_values(n), args.limit or None):
                print(f"{m.id:10} {m.operator:12} L{m.line:<3} {m.before}  ->  {m.after}")
        return 0
    start = time.perf_counter()
    results = []
    for n in numbers:
        r = run_exercise(n, log=lambda s: print(s, file=sys.stderr, flush=True), limit=args.limit or None)
        results.append(r)
        _print_table(r)
        if args.json:
            args.json.write_text(json.dumps([{**x, "outcomes": [dataclasses.asdict(o) for o in x["outcomes"]]}
                                             for x in results], indent=1), encoding="utf-8")
    seconds = time.perf_counter() - start
    print("\ntotals:", {c: sum(o.klass == c for r in results for o in r["outcomes"]) for c in CLASSES},
          f"in {seconds:.0f} s")
    if args.write:
        limit = f" --limit {args.limit}" if args.limit != MAX_MUTANTS else ""
        chosen = "".join(f" --exercise {n}" for n in (args.exercise or ()))
        command = f"python -m nbkit.checks.mutate{limit}{chosen} --write {args.write}"
        args.write.write_text(markdown(results, command, seconds), encoding="utf-8")
        print(f"written: {args.write}")
    return 1 if any(o.klass in ("WRONG", "f32-broken") for r in results for o in r["outcomes"]) else 0


if __name__ == "__main__":
    sys.exit(main())
