"""nbkit's layers, read from the source (every import statement, also those inside functions).

core <- kernels <- nn <- (tracer, perf) <- checks: a module imports only from its own layer or lower ones;
nbkit/__init__.py and nbkit/plots.py import only core; nbkit never imports coursekit (coursekit may import
nbkit); no import circles, not even through imports inside functions; no package's __init__ binds a name that
hides one of the package's own modules (``pkg.name`` would then not be the module ``import pkg.name`` loads).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

LAYERS = {"core": 0, "kernels": 1, "nn": 2, "tracer": 3, "perf": 3, "checks": 4}
CORE_ONLY = {"nbkit", "nbkit.plots"}  # the package's front door and the shared plot style: core only


def _modules(packages: tuple[str, ...] = ("nbkit", "coursekit")) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (a package is named by its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a.b.c) is or lies in; None outside nbkit and coursekit."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every nbkit/coursekit module that ``module`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import mod` imports pkg.mod
        else:
            continue
        out |= {t for t in (_resolve(name, known) for name in targets) if t is not None and t != module}
    return out


def import_graph(packages: tuple[str, ...] = ("nbkit", "coursekit")) -> dict[str, set[str]]:
    known = _modules(packages)
    return {module: _imports(module, path, known) for module, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a list of modules, first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "nbkit" else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        if not module.startswith("nbkit"):
            continue
        for target in sorted(targets):
            if target.startswith("coursekit"):
                bad.append(f"{module} imports {target}: nbkit must not import the course tooling")
            elif module in CORE_ONLY and _layer(target) != LAYERS["core"]:
                bad.append(f"{module} imports {target}: it may import nbkit.core only")
            elif _layer(module) is not None and (_layer(target) is None or _layer(target) > _layer(module)):
                bad.append(f"{module} imports {target}, a higher layer (core <- kernels <- nn <- tracer, perf <- checks)")
    return bad


def shadowed_modules(packages: tuple[str, ...] = ("nbkit",)) -> list[str]:
    """Names an __init__ binds at top level that equal one of its package's modules, other than that module."""
    known = _modules(packages)
    bad = []
    for package, path in known.items():
        if path.name != "__init__.py":
            continue
        children = {m.rsplit(".", 1)[1] for m in known if m.rsplit(".", 1)[0] == package and m != package}
        for node in ast.parse(path.read_text()).body:
            bound: list[tuple[str, str | None]] = []  # (name, module it is, when it is one)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound = [(node.name, None)]
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound = [(n.id, None) for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            elif isinstance(node, ast.Import):
                bound = [(a.asname or a.name.split(".")[0], a.name if a.asname else None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package if node.level == 1 else node.module or ""
                if node.level == 1 and node.module:
                    base = f"{package}.{node.module}"
                bound = [(a.asname or a.name, f"{base}.{a.name}") for a in node.names]
            for name, module in bound:
                if name in children and module != f"{package}.{name}":
                    bad.append(f"{package}/__init__.py binds {name!r}, hiding the module {package}.{name}")
    return bad


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_layers_import_only_downwards():
    bad = layer_violations(import_graph())
    assert not bad, "\n".join(bad)


def test_no_package_init_hides_a_module():
    bad = shadowed_modules()
    assert not bad, "\n".join(bad)


def test_every_nbkit_module_belongs_to_a_layer():
    graph = import_graph(("nbkit",))
    assert not [m for m in graph if m not in CORE_ONLY and _layer(m) is None]


# ---- the rules above can fail: each one on a small made-up case

def test_a_circle_through_an_import_inside_a_function_is_found(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text("def f():\n    from pkg import a\n    return a\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert find_cycle(import_graph(("pkg",))) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


def test_upward_and_tooling_imports_are_found():
    graph = {"nbkit.core.launch": {"nbkit.perf.ptx"}, "nbkit.perf.ptx": {"nbkit.core.launch"},
             "nbkit.nn.layers": {"coursekit.setup_plan"}, "nbkit": {"nbkit.kernels.vector"},
             "coursekit.learner": {"nbkit.checks"}}
    bad = layer_violations(graph)
    assert [b.split(" imports ")[0] for b in bad] == ["nbkit", "nbkit.core.launch", "nbkit.nn.layers"], bad


@pytest.mark.parametrize("init, hides", [("def cubin():\n    pass\n", True), ("cubin = 3\n", True),
                                         ("from pkg.other import cubin\n", True), ("from pkg import cubin\n", False),
                                         ("from . import cubin\n", False), ("from .cubin import build\n", False)])
def test_a_name_hiding_a_module_is_found(tmp_path, monkeypatch, init, hides):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text(init)
    (package / "cubin.py").write_text("def build():\n    pass\n")
    (package / "other.py").write_text("cubin = 1\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert bool(shadowed_modules(("pkg",))) is hides
