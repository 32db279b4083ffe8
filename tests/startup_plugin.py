"""Loaded by pytest before its other plugins (``-p startup_plugin`` in pyproject.toml's addopts), in every pytest
process: the controller and each xdist worker.

nbval imports nbformat, which imports jsonschema, which imports ``rfc3987_syntax`` for its "iri" format check:
that module builds about 38 Lark parsers when imported, 1.1 s of CPU in every pytest process, for a check that
neither nbformat nor any test uses. Here it becomes a stand-in that imports the real module on first use, so the
check still works where something asks for it.

Python's cyclic garbage collector is the other start-up cost: collecting imports every test module and with them
numba, PyTorch and matplotlib, half a million objects, and each full collection walks all of them again (2.4 s of
CPU in 1,830 collections per worker, a third of collecting). So it is off until collection ends; then what was
imported is frozen (``gc.freeze()``: later collections skip it, as these modules live as long as the process) and it
runs again, with nbkit's setting for compiling (``nbkit.core.collector.GC_YOUNG``, where the process imported nbkit,
which leaves the collector alone when it is imported while the collector is off).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
import types

import pytest

gc.disable()


def lazy_module(name: str, *functions: str) -> None:
    """Put a stand-in for module ``name`` into ``sys.modules`` whose ``functions`` import the real module when first
    called (``from name import f`` binds them without importing); any other attribute imports it at once.

    Nothing happens where ``name`` is already imported or not installed.
    """
    spec = None if name in sys.modules else importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = types.ModuleType(name, f"stand-in for {name}: imports it on first use (tests/startup_plugin.py)")
    stand_in.__spec__ = spec  # what importlib.util.find_spec(name) answers while the stand-in is in place

    def real() -> types.ModuleType:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return importlib.import_module(name)

    def forwarding(function: str):
        def call(*args, **kwargs):
            return getattr(real(), function)(*args, **kwargs)

        call.__name__ = call.__qualname__ = function
        return call

    for function in functions:
        setattr(stand_in, function, forwarding(function))

    def attribute_of_the_real_module(attribute: str):
        if attribute.startswith("__"):  # __file__, __path__...: asked by tools that walk sys.modules, not by users
            raise AttributeError(attribute)
        return getattr(real(), attribute)

    stand_in.__getattr__ = attribute_of_the_real_module
    sys.modules[name] = stand_in


lazy_module("rfc3987_syntax", "is_valid_syntax")

# Whether these were imported when collection ended, before any test ran (tests/test_startup.py): collecting
# imports every test file in every xdist worker, so what only some tests need is imported in those tests.
SLOW_AT_COLLECTION = ("lark", "nbgrader")  # lark: rfc3987_syntax's parsers
at_collection_end: dict[str, bool] | None = None


def pytest_collection_finish(session) -> None:
    global at_collection_end
    at_collection_end = {name: name in sys.modules for name in SLOW_AT_COLLECTION}


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """The garbage collector runs again once collection has ended, or failed, in every pytest process (xdist's
    controller collects nothing and ends its collection at once)."""
    try:
        return (yield)
    finally:
        gc.freeze()
        young = getattr(sys.modules.get("nbkit.core.collector"), "GC_YOUNG", None)  # not in xdist's controller
        if young is not None:
            gc.set_threshold(young, *gc.get_threshold()[1:])
        gc.enable()
