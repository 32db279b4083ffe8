"""A kernel and everything it refers to, as plain data that another process can turn back into functions.

Why: in simulator mode numba's real CUDA target (the compiler) is not available in this process, so a
learner's kernel is compiled in a GPU-mode process (:mod:`nbkit.perf.compiler`). Its source alone is not
enough: the kernel calls ``@cuda.jit(device=True)`` helpers (simulator objects here), reads module-level
constants (``EPS = np.float32(1e-5)``, with their dtype), numba types (``float32``), ``math``, ``cuda``, NumPy,
and a closure's free variables. :func:`kernel_closure` collects them all, recursively, by value;
:func:`rebuild` (run in the compiling process) makes the functions again, with the source's own file name and
line numbers, so the compiler's messages name the learner's lines. What cannot be sent raises
:class:`NotShippable` with the name and why.
"""

from __future__ import annotations

import ast
import builtins
import dis
import importlib
import inspect
import linecache
import textwrap
import types
from typing import Any

import numpy as np

from nbkit.core.simulator import is_device_function
from nbkit.core.source import python_function

# Modules a kernel may use by name; anything else a kernel refers to is sent by value or not at all.
MODULES = ("math", "cmath", "numpy", "numba", "numba.cuda")


class NotShippable(ValueError):
    """Something the kernel refers to cannot be sent to the compiling process; the message says what and why."""


def _module_name(module: types.ModuleType) -> str | None:
    name = module.__name__
    if name.endswith("numba.cuda"):
        return "numba.cuda"  # numba's, or numba-cuda's package under any name it is loaded as
    return name if name in MODULES else None


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    found, stack = [], [code]
    while stack:
        c = stack.pop()
        found.append(c)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return found


def _free_names(func: types.FunctionType, tree: ast.AST) -> list[str]:
    """Names the function reads from outside itself (globals, closure cells), in source order, no duplicates.

    A global is a name that the code loads as one, not every name of ``co_names``, which holds attribute names too:
    a kernel with a parameter ``x`` that reads ``cuda.threadIdx.x`` would otherwise be sent a notebook's global
    array ``x`` along, a value it never reads that makes the request (and its stored answer) differ by notebook."""
    outside = set(func.__code__.co_freevars)
    for code in _code_objects(func.__code__):
        outside.update(i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME"))
    seen: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in outside:
            seen.setdefault(node.id, None)
    return list(seen)


class _Collector:
    """Walks a kernel's references; ``functions`` ends up keyed by a stable name per function."""

    def __init__(self) -> None:
        self.functions: dict[str, dict[str, Any]] = {}
        self._keys: dict[int, str] = {}

    def function(self, obj: object, kind: str) -> str:
        func = python_function(obj)
        if not isinstance(func, types.FunctionType):
            raise NotShippable(f"{getattr(obj, '__name__', obj)!s} has no Python function to compile")
        if id(func) in self._keys:
            return self._keys[id(func)]
        key = f"{func.__qualname__}@{func.__code__.co_filename}:{func.__code__.co_firstlineno}"
        self._keys[id(func)] = key
        try:
            source = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError) as exc:
            raise NotShippable(f"the source code of {func.__name__} could not be read") from exc
        tree = ast.parse(source)
        entry: dict[str, Any] = {"name": func.__name__, "kind": kind, "source": source,
                                 "file": func.__code__.co_filename, "line": func.__code__.co_firstlineno,
                                 "globals": {}}
        self.functions[key] = entry
        cells = dict(zip(func.__code__.co_freevars, func.__closure__ or ()))
        for name in _free_names(func, tree):
            if name in cells:
                try:
                    value = cells[name].cell_contents
                except ValueError:
                    continue  # an empty cell: the compiler will say the name is not defined
            elif name in func.__globals__:
                value = func.__globals__[name]
            else:
                continue  # a builtin (range, min, ...) or undefined: the compiler resolves or refuses it
            try:
                entry["globals"][name] = self.value(value)
            except NotShippable as exc:
                raise NotShippable(f"`{name}` in {func.__name__}: {exc}") from None
        return key

    def value(self, value: object) -> dict[str, Any]:
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"py": value}
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            return {"np": value.dtype.str, "v": value.item()}
        if isinstance(value, types.ModuleType):
            name = _module_name(value)
            if name is None:
                raise NotShippable(f"the module {value.__name__} is not one a kernel can use")
            return {"module": name}
        if isinstance(value, tuple):
            return {"tuple": [self.value(v) for v in value]}
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            return {"array": value.tolist(), "dtype": value.dtype.str}
        numba_types = importlib.import_module("numba.core.types")
        if isinstance(value, numba_types.Type):
            if getattr(numba_types, str(value), None) != value:
                raise NotShippable(f"the numba type {value} cannot be sent by name")
            return {"nbtype": str(value)}
        if python_function(value) is not value:  # a jitted function: a device function (or a kernel)
            return {"fn": self.function(value, "device" if is_device_function(value) else "kernel")}
        if isinstance(value, types.FunctionType):
            return {"fn": self.function(value, "plain")}
        module, name = getattr(value, "__module__", None), getattr(value, "__name__", None)
        if module in MODULES and name and getattr(importlib.import_module(module), name, None) is value:
            return {"attr": [module, name]}  # math.exp, np.float32, ...
        raise NotShippable(f"a {type(value).__name__} cannot be sent to the compiler")


def kernel_closure(kernel: object) -> dict[str, Any]:
    """The kernel and everything it refers to, recursively, as JSON-able data (see :func:`rebuild`)."""
    collector = _Collector()
    root = collector.function(kernel, "kernel")
    return {"root": root, "functions": collector.functions}


def rebuild(closure: dict[str, Any]) -> types.FunctionType:
    """The kernel's Python function, made again from :func:`kernel_closure`'s data (in a GPU-mode process).

    Device functions become ``cuda.jit(device=True)`` dispatchers; each function is compiled under its own
    file name and line numbers, and that source is put into :mod:`linecache`, so error messages quote it.
    """
    from numba import cuda

    numba_types = importlib.import_module("numba.core.types")
    built: dict[str, object] = {}
    spaces: dict[str, dict[str, Any]] = {}
    files: dict[str, list[str]] = {}
    for key, info in closure["functions"].items():
        tree = ast.parse(info["source"])
        tree.body[0].decorator_list = []  # type: ignore[attr-defined]
        ast.increment_lineno(tree, info["line"] - 1)
        lines = files.setdefault(info["file"], [])
        src = info["source"].splitlines(keepends=True)
        lines.extend(["\n"] * (info["line"] - 1 + len(src) - len(lines)))
        lines[info["line"] - 1:info["line"] - 1 + len(src)] = src
        space = spaces[key] = {"__builtins__": builtins}
        exec(compile(tree, info["file"], "exec"), space)  # noqa: S102 - the learner's own code, to compile it
        func = space[info["name"]]
        built[key] = cuda.jit(device=True)(func) if info["kind"] == "device" else func
    for name, lines in files.items():
        linecache.cache[name] = (sum(map(len, lines)), None, lines, name)

    def value(spec: dict[str, Any]) -> object:
        if "py" in spec:
            return spec["py"]
        if "np" in spec:
            return np.dtype(spec["np"]).type(spec["v"])
        if "module" in spec:
            return importlib.import_module(spec["module"])
        if "tuple" in spec:
            return tuple(value(v) for v in spec["tuple"])
        if "array" in spec:
            return np.array(spec["array"], dtype=spec["dtype"])
        if "nbtype" in spec:
            return getattr(numba_types, spec["nbtype"])
        if "fn" in spec:
            return built[spec["fn"]]
        module, name = spec["attr"]
        return getattr(importlib.import_module(module), name)

    for key, info in closure["functions"].items():
        spaces[key].update({name: value(spec) for name, spec in info["globals"].items()})
    return built[closure["root"]]  # type: ignore[return-value]
