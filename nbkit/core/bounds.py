"""Which kernels may run without numba's bounds checks: a static proof that a launch's accesses are launch-determined.

The CPU executor (:mod:`nbkit.core.executor`) compiles kernels with ``boundscheck=True`` so that an index out of
bounds raises ``IndexError`` naming block and thread. The checks are its largest cost. They can be dropped for a
launch when two facts hold:

1. This module proves, on the kernel's source, that every index and every decision on which accesses run is
   *launch-determined* (or probed, below): computed only from thread and block indices and dimensions, scalar (non-array) kernel
   arguments, ``.shape``/``.size``/``.ndim``/``len()`` of array arguments and of shared and local arrays,
   constants and immutable module globals (numbers, tuples of them; numba freezes them), and local variables ALL
   of whose assignments are (a flow-insensitive fixpoint, tuple unpacking and ``+=`` included). A value read from
   any array (global, shared, local), an atomic's result, a device function's result and anything not recognised
   is *data*. Then the sequence of (access site, index) pairs a launch executes is a function of (grid, block,
   argument types, array shapes, scalar values) alone.
2. A launch with exactly that key already ran with the checks and returned without an error
   (:func:`nbkit.core.executor.run_on_cpu` records it). The same key then executes the same accesses, all
   proven in bounds.

A test on data may decide values (every variable assigned in the branch it guards counts as data: a max-pool's
``if v > best: best = v``), but no call other than pure math and no ``return``/``break``/``continue``. It may
decide an access only when the access is *probed*: an array parameter's, at an index built of launch-determined
names, integer constants, ``+``, ``-``, ``*`` and shapes (``dx[i] = dout[i] if x[i] > 0 else 0``, a max-pool
backward's ``if argmax[...] == k: dx[...] = dy[n, c, i, j]``). :func:`analyse` lists each with the statement
before which its index already has its value (the innermost one reached in a launch-determined way: whatever
is assigned between there and the access counts as data, so the index's names do not change) and the
launch-determined conjuncts of its ``if`` (``i < dy.shape[2] and argmax[...] == k``: the access can run only
where ``i < dy.shape[2]``). The
checked run evaluates the index there, under those conjuncts, whether the access then runs or not, and a key
is proven only if every probed index was in bounds: then the accesses that may run for the key, whatever the
data, are all in bounds. An index of any other form decided by data (``if x[i] > 0: out[k // 2] = ...``, where
``k`` could be 0) makes the kernel ineligible, as does whatever the analysis does not recognise: it then always
runs checked.
"""

from __future__ import annotations

import ast
import builtins
import math
import types as pytypes

import numba
import numpy as np

__all__ = ["analyse", "pure_callable", "unproven_reason"]

_INDEX_OBJECTS = {"threadIdx", "blockIdx", "blockDim", "gridDim"}
_SHAPE_ATTRS = {"shape", "size", "ndim"}
_PURE_BUILTINS = {min, max, abs, int, float, bool, round}
_CUDA_PURE = {"warpsize", "laneid"}
_CUDA_NONE = {"syncthreads", "threadfence", "threadfence_block", "threadfence_system"}


def dotted(node: ast.AST) -> list[str] | None:
    """``cuda.atomic.add`` -> ["cuda", "atomic", "add"]; None for anything that is not a dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _immutable(value: object) -> bool:
    """A global numba freezes as a constant that no later code can change: numbers, strings, tuples of them."""
    if value is None or isinstance(value, (bool, int, float, complex, str, np.generic)):
        return True
    return isinstance(value, tuple) and all(_immutable(v) for v in value)


def pure_callable(value: object) -> bool:
    """A function without side effects whose result depends only on its arguments."""
    if isinstance(value, pytypes.BuiltinFunctionType) and getattr(math, getattr(value, "__name__", ""), None) is value:
        return True  # math.exp, math.floor, ...
    if any(value is f for f in _PURE_BUILTINS):
        return True
    if isinstance(value, (numba.types.Number, numba.types.Boolean)):
        return True  # numba's float32(...), int32(...)
    if isinstance(value, type) and issubclass(value, np.generic):
        return True  # np.float32(...)
    return isinstance(value, np.ufunc)


class _Analysis:
    """One pass over the kernel body; :func:`unproven_reason` repeats it until the set of data locals is stable."""

    def __init__(self, fdef: ast.FunctionDef, env: dict, cuda_names: set[str], device_fns: dict,
                 kinds: dict[str, str], is_device: object):
        self.fdef, self.env, self.cuda_names, self.device_fns = fdef, env, cuda_names, device_fns
        self.is_device = is_device
        self.params = [a.arg for a in fdef.args.args]
        self.kinds = kinds
        self.stored = {n.id for n in ast.walk(fdef) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.locals = self.stored | set(self.params)
        # arrays the kernel indexes: array arguments it never reassigns, shared and local arrays assigned once
        counts: dict[str, int] = {}
        allocs: set[str] = set()
        for node in ast.walk(fdef):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                            counts[n.id] = counts.get(n.id, 0) + 1
                if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                        and self._cuda(node.value) in (["shared", "array"], ["local", "array"])):
                    allocs.add(node.targets[0].id)
        self.arrays = {p for p in self.params if kinds[p] == "array" and p not in self.stored}
        self.arrays |= {a for a in allocs if counts.get(a) == 1 and a not in self.params}
        self.data: set[str] = {p for p in self.params if kinds[p] == "array"} | allocs
        self.why: list[str] = []
        self.probes: list[tuple[ast.stmt, ast.Subscript, list[ast.expr]]] = []  # data-gated accesses (see analyse)
        self.anchor: ast.stmt | None = None  # the innermost statement reached in a launch-determined way
        self.guard: list[ast.expr] = []  # launch-determined conditions that hold where the current access runs

    # ------------------------------------------------------------------ helpers

    def _fail(self, node: ast.AST, what: str) -> None:
        self.why.append(f"{what} (line {getattr(node, 'lineno', '?')})")

    def _cuda(self, node: ast.AST) -> list[str] | None:
        """``cuda.threadIdx.x`` -> ["threadIdx", "x"] (for a Call, of its function); None if not ``cuda.*``."""
        parts = dotted(node.func if isinstance(node, ast.Call) else node)
        if parts and parts[0] in self.cuda_names and parts[0] not in self.locals:
            return parts[1:]
        return None

    def _global(self, node: ast.AST) -> tuple[bool, object]:
        """(found, value) of a global name or a dotted attribute of a global module (``math.pi``)."""
        parts = dotted(node)
        if not parts or parts[0] in self.locals:
            return False, None
        if parts[0] in self.env:
            value = self.env[parts[0]]
        elif hasattr(builtins, parts[0]):
            value = getattr(builtins, parts[0])
        else:
            return False, None
        for attr in parts[1:]:
            if not isinstance(value, pytypes.ModuleType) or not hasattr(value, attr):
                return False, None
            value = getattr(value, attr)
        return True, value

    def _array_base(self, node: ast.AST, gated: bool) -> bool:
        """Whether ``node`` is an array whose shape is launch-determined: an array argument, a shared or local
        array, or a subscript (a view) of one at launch-determined indices."""
        if isinstance(node, ast.Name):
            return node.id in self.arrays
        if isinstance(node, ast.Subscript) and self._array_base(node.value, gated):
            if not self._index(node.slice, gated):
                self._fail(node, "an index computed from data")
            return True
        return False

    def _index(self, node: ast.AST, gated: bool) -> bool:
        if isinstance(node, ast.Slice):
            return all(self.expr(part, gated) for part in (node.lower, node.upper, node.step) if part is not None)
        if isinstance(node, ast.Tuple):
            return all([self._index(e, gated) for e in node.elts])
        return self.expr(node, gated)

    def _probe_index(self, node: ast.AST, tests: bool = False) -> bool:
        """An index the checked run may evaluate before the test that decides whether it is used: launch-determined,
        and built only of names, integer constants, +, - and *, an array parameter's ``.shape[k]`` or ``.size``
        (nothing that can raise, such as // by zero); ``tests``: also comparisons, ``and``, ``or``, ``not``."""
        if isinstance(node, ast.Tuple) and not tests:
            return all(self._probe_index(e) for e in node.elts)
        if isinstance(node, ast.Constant):
            return type(node.value) is int
        if isinstance(node, ast.Name):
            return self.expr(node, False)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            return self._probe_index(node.left, tests) and self._probe_index(node.right, tests)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self._probe_index(node.operand, tests)
        if isinstance(node, ast.Attribute) and node.attr == "size":
            return isinstance(node.value, ast.Name) and node.value.id in self.arrays and node.value.id in self.params
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape"
                and isinstance(node.slice, ast.Constant) and type(node.slice.value) is int):
            base = node.value.value
            return isinstance(base, ast.Name) and base.id in self.arrays and base.id in self.params
        if tests and isinstance(node, ast.Compare):
            return all(self._probe_index(e, tests) for e in (node.left, *node.comparators))
        if tests and isinstance(node, ast.BoolOp):
            return all(self._probe_index(e, tests) for e in node.values)
        if tests and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self._probe_index(node.operand, tests)
        return False

    def _access(self, node: ast.Subscript, gated: bool) -> bool:
        """A subscript: a memory access whose index must be launch-determined; one decided by data must have an
        index the checked run can probe (see the module docstring). Returns whether the value read is
        launch-determined (only from a launch-determined tuple)."""
        if gated:
            if (isinstance(node.value, ast.Name) and node.value.id in self.params and node.value.id in self.arrays
                    and self.anchor is not None and self._probe_index(node.slice)):
                self.probes.append((self.anchor, node, list(self.guard)))
                return False
            self._fail(node, "an access that runs or not depending on data")
        if self._array_base(node.value, gated):
            if not self._index(node.slice, gated):
                self._fail(node, "an index computed from data")
            return False
        base = self.expr(node.value, gated)
        index = self._index(node.slice, gated)
        if not index:
            self._fail(node, "an index computed from data")
        if not base:
            self._fail(node, f"a subscript of {ast.unparse(node.value)!r}, not an array the analysis can bound")
        return base and index

    # ------------------------------------------------------------------ expressions

    def expr(self, node: ast.AST, gated: bool) -> bool:
        """Whether ``node``'s value is launch-determined; records what breaks the proof. ``gated``: whether the
        evaluation itself depends on data (then it must not access memory)."""
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Name):
            if node.id in self.locals:
                return node.id not in self.data
            found, value = self._global(node)
            return found and _immutable(value)
        if isinstance(node, ast.Attribute):
            parts = self._cuda(node)
            if parts is not None:
                if (len(parts) == 2 and parts[0] in _INDEX_OBJECTS and parts[1] in "xyz") or parts in (["warpsize"],
                                                                                                      ["laneid"]):
                    return True
                self._fail(node, f"cuda.{'.'.join(parts)}")
                return False
            if node.attr in _SHAPE_ATTRS and self._array_base(node.value, gated):
                return True
            found, value = self._global(node)
            if found:
                return _immutable(value)
            self.expr(node.value, gated)
            return False
        if isinstance(node, ast.Subscript):
            return self._access(node, gated)
        if isinstance(node, ast.BinOp):
            return all([self.expr(node.left, gated), self.expr(node.right, gated)])
        if isinstance(node, ast.UnaryOp):
            return self.expr(node.operand, gated)
        if isinstance(node, ast.BoolOp):  # a later operand runs or not depending on the earlier ones
            ok = True
            for value in node.values:
                ok_v = self.expr(value, gated)
                ok = ok and ok_v
                gated = gated or not ok_v
            return ok
        if isinstance(node, ast.Compare):  # a chain stops at the first false comparison
            prev = self.expr(node.left, gated)
            ok = prev
            for comparator in node.comparators:
                ok_c = self.expr(comparator, gated)
                gated = gated or not (prev and ok_c)
                ok, prev = ok and ok_c, ok_c
            return ok
        if isinstance(node, ast.IfExp):
            test = self.expr(node.test, gated)
            body = self.expr(node.body, gated or not test)
            orelse = self.expr(node.orelse, gated or not test)
            return test and body and orelse
        if isinstance(node, ast.Tuple):
            return all([self.expr(e, gated) for e in node.elts])
        if isinstance(node, ast.Call):
            return self.call(node, gated)
        self._fail(node, f"{type(node).__name__} (not analysed)")
        return False

    def call(self, node: ast.Call, gated: bool) -> bool:
        if node.keywords:
            self._fail(node, "a call with keyword arguments")
            return False
        parts = self._cuda(node)
        if parts is not None:
            name = ".".join(parts)
            if name in ("grid", "gridsize"):
                return True
            if name in _CUDA_NONE:
                return True
            if name in ("shared.array", "local.array"):
                if not node.args or not self.expr(node.args[0], gated):
                    self._fail(node, f"cuda.{name} with a shape computed from data")
                return False  # an array: as a value, data
            if name == "fma":
                return all([self.expr(a, gated) for a in node.args])
            if name == "selp" and len(node.args) == 3:
                test = self.expr(node.args[0], gated)
                return all([test, self.expr(node.args[1], gated or not test),
                            self.expr(node.args[2], gated or not test)])
            if parts[0] == "atomic" and len(node.args) == 3:
                if gated:
                    self._fail(node, "an atomic that runs or not depending on data")
                if not self._array_base(node.args[0], gated):
                    self._fail(node, f"an atomic on {ast.unparse(node.args[0])!r}, not an array the analysis "
                                     f"can bound")
                if not self._index(node.args[1], gated):
                    self._fail(node, "an atomic's index computed from data")
                self.expr(node.args[2], gated)
                return False  # the old value: data
            self._fail(node, f"cuda.{name}(...)")
            return False
        found, value = self._global(node.func)
        if found and value is len and len(node.args) == 1:
            if self._array_base(node.args[0], gated):
                return True
            return self.expr(node.args[0], gated)
        if found and pure_callable(value) and not (isinstance(value, np.ufunc) and len(node.args) > value.nin):
            return all([self.expr(a, gated) for a in node.args])  # (a ufunc's extra argument is an output array)
        if found and self.is_device(value):
            if gated:
                self._fail(node, "a device function called or not depending on data")
            if not all([self.expr(a, gated) for a in node.args]):  # an array argument is never launch-determined
                self._fail(node, "a device function called with an array or a value read from data")
            return False  # its result: data (conservative)
        self._fail(node, f"a call of {ast.unparse(node.func)!r}, not a known pure function")
        return False

    # ------------------------------------------------------------------ statements

    def _assign(self, target: ast.AST, ok: bool, value: ast.AST | None, gated: bool) -> None:
        if isinstance(target, ast.Name):
            if not ok or gated:
                self.data.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, ast.Tuple) and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    self._assign(t, self.expr(v, gated), v, gated)
            else:
                for t in target.elts:
                    self._assign(t, ok, None, gated)
        elif isinstance(target, ast.Subscript):
            self._access(target, gated)
        else:
            self._fail(target, f"assignment to {type(target).__name__}")

    def stmts(self, body: list[ast.stmt], gated: bool) -> None:
        for stmt in body:
            if not gated:
                self.anchor = stmt
            self.stmt(stmt, gated)

    def stmt(self, node: ast.stmt, gated: bool) -> None:
        if isinstance(node, ast.Assign):
            ok = self.expr(node.value, gated)
            for target in node.targets:
                self._assign(target, ok, node.value, gated)
        elif isinstance(node, ast.AugAssign):
            ok = self.expr(node.value, gated)
            if isinstance(node.target, ast.Subscript):
                self._access(node.target, gated)
            else:
                self._assign(node.target, ok and self.expr(node.target, gated), None, gated)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._assign(node.target, self.expr(node.value, gated), node.value, gated)
        elif isinstance(node, ast.Expr):
            self.expr(node.value, gated)
        elif isinstance(node, ast.If):
            test = self.expr(node.test, gated)
            guard = self.guard
            if not gated and not test and isinstance(node.test, ast.BoolOp) and isinstance(node.test.op, ast.And):
                # `if i < dy.shape[2] and argmax[i] == k:` the body's probes need only hold where i < dy.shape[2]
                for value in node.test.values:
                    if not self._probe_index(value, tests=True):
                        break
                    self.guard = [*self.guard, value]
            self.stmts(node.body, gated or not test)
            self.guard = guard
            self.stmts(node.orelse, gated or not test)
        elif isinstance(node, ast.While):
            test = self.expr(node.test, gated)
            if not test:
                self.expr(node.test, True)  # evaluated again after each pass: whether it runs depends on data
            if node.orelse:
                self._fail(node, "while ... else")
            self.stmts(node.body, gated or not test)
        elif isinstance(node, ast.For):
            it = node.iter
            found, value = self._global(it.func) if isinstance(it, ast.Call) else (False, None)
            if found and value is range and not it.keywords and 1 <= len(it.args) <= 3:
                ok = all([self.expr(a, gated) for a in it.args])
            elif isinstance(it, ast.Tuple):
                ok = self.expr(it, gated)
            else:
                self._fail(node, f"a for loop over {ast.unparse(it)!r}, not a range or a tuple")
                ok = False
            if node.orelse:
                self._fail(node, "for ... else")
            self._assign(node.target, ok, None, gated)
            self.stmts(node.body, gated or not ok)
        elif isinstance(node, (ast.Return, ast.Break, ast.Continue)):
            if gated:
                self._fail(node, f"{type(node).__name__.lower()} decided by data")
            if isinstance(node, ast.Return) and node.value is not None:
                self.expr(node.value, gated)
        elif not isinstance(node, ast.Pass):
            self._fail(node, f"{type(node).__name__} (not analysed)")


def unproven_reason(fdef: ast.FunctionDef, env: dict, cuda_names: set[str], device_fns: dict,
                    kinds: dict[str, str], is_device: object) -> str | None:
    """None if every access of the kernel ``fdef`` is launch-determined (see the module docstring), else why not.

    ``kinds`` maps each parameter to "array" or "scalar" (as launched); ``env`` is the kernel's globals,
    ``cuda_names`` the names bound to the cuda module, ``is_device(value)`` says whether a global is a
    ``cuda.jit(device=True)`` function. The tree is only read.
    """
    return analyse(fdef, env, cuda_names, device_fns, kinds, is_device)[0]


def analyse(fdef: ast.FunctionDef, env: dict, cuda_names: set[str], device_fns: dict, kinds: dict[str, str],
            is_device: object) -> tuple[str | None, list[tuple[ast.stmt, ast.Subscript, list[ast.expr]]]]:
    """:func:`unproven_reason`'s answer, and the accesses decided by data that the checked run must probe: for
    each, the statement of ``fdef`` before which to probe it (one reached in a launch-determined way, whose
    index names keep their values up to the access), the subscript (an array parameter's, at a simple index),
    and the launch-determined conditions (safe to evaluate there) under which alone the access can run."""
    others = sorted(p for p, k in kinds.items() if k not in ("array", "scalar"))
    if others:
        return f"arguments that are neither arrays nor numbers: {others}", []
    analysis = _Analysis(fdef, env, cuda_names, device_fns, kinds, is_device)
    while True:  # the data locals only grow: at most one pass more than there are locals
        before = set(analysis.data)
        analysis.why = []
        analysis.probes = []
        analysis.anchor = None
        analysis.guard = []
        analysis.stmts(fdef.body, False)
        if analysis.data == before:
            break
    return "; ".join(dict.fromkeys(analysis.why)) or None, analysis.probes
