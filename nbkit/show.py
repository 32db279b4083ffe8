"""Show learners the exact code that nbkit runs, instead of a copy that could drift."""

from __future__ import annotations

import inspect
import textwrap


def source(obj: object) -> str:
    """The source text of a function, kernel (its Python function) or module."""
    target = getattr(obj, "py_func", obj)  # numba dispatchers and simulator kernels keep py_func
    return textwrap.dedent(inspect.getsource(target))


def show(*objs: object):
    """Display the source of nbkit kernels and functions with syntax highlighting in a notebook."""
    from IPython.display import Code

    return Code("\n\n".join(source(obj) for obj in objs), language="python")
