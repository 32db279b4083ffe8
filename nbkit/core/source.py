"""Show learners the exact code that nbkit runs, instead of a copy that could drift."""

from __future__ import annotations

import inspect
import textwrap


def python_function(obj: object) -> object:
    """The Python function behind a numba kernel (``py_func``; the built-in simulator's kernels keep ``fn``)."""
    return getattr(obj, "py_func", None) or getattr(obj, "fn", None) or obj


def source(obj: object) -> str:
    """The source text of a function, kernel (its Python function) or module."""
    return textwrap.dedent(inspect.getsource(python_function(obj)))


def show(*objs: object):
    """Display the source of nbkit kernels and functions with syntax highlighting in a notebook."""
    from IPython.display import Code

    return Code("\n\n".join(source(obj) for obj in objs), language="python")
