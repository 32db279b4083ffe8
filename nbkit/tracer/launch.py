"""``trace()``: one kernel launch in the simulator with every memory access recorded.

Why its own module: this is the tracer's entry point, the one place that ties recording
(:mod:`~nbkit.tracer.record`), the fake ``cuda`` module (:mod:`~nbkit.tracer.fakecuda`), the block runner
(:mod:`~nbkit.tracer.runner`) and the analysis (:class:`~nbkit.tracer.analysis.Trace`) together. Its errors
name the block and thread that failed, and the learner's line.
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from typing import Callable

import numpy as np

from nbkit.core import simulator
from nbkit.core.launch import Dims, check_launch
from nbkit.core.source import python_function
from nbkit.tracer.analysis import Trace
from nbkit.tracer.record import ArrayInfo, Recorder, TracedArray, TraceError, TraceIndexError, fmt_dim

# Frames of these files are the tracer's own: an error names the first frame outside them (the kernel's line).
_OWN_FILES = frozenset(os.path.join(os.path.dirname(__file__), name)
                       for name in ("launch.py", "runner.py", "fakecuda.py", "record.py"))


def _device_functions(fn: Callable, seen: set | None = None) -> list[tuple[dict, str, object, Callable]]:
    """(globals, name, dispatcher, py_func) for every compiled device function reachable from fn's globals."""
    seen = set() if seen is None else seen
    found = []
    for name in fn.__code__.co_names:
        value = fn.__globals__.get(name)
        py = getattr(value, "py_func", None)
        if py is None or id(value) in seen or not getattr(value, "targetoptions", {}).get("device", False):
            continue
        seen.add(id(value))
        found.append((fn.__globals__, name, value, py))
        found.extend(_device_functions(py, seen))
    return found


def _python_function(kernel: object) -> Callable:
    fn = python_function(kernel)
    if not inspect.isfunction(fn):
        raise TypeError(f"trace() needs a @cuda.jit kernel or its Python function, got {type(kernel).__name__}.")
    return fn


def _to_host(arg: object) -> tuple[np.ndarray | None, Callable[[], None] | None]:
    """(array the trace runs on, write-back after a successful run) for one kernel argument."""
    memory = simulator.device_array_memory(arg)
    if memory is not None:  # simulator device array: its memory is the NumPy array inside
        return memory, None
    if isinstance(arg, np.ndarray) and arg.ndim > 0:
        work = np.array(arg, copy=True, order="K")  # like a launch: the kernel sees a device copy

        def back(arg=arg, work=work):
            arg[...] = work

        return work, back
    if hasattr(arg, "copy_to_host") and hasattr(arg, "__cuda_array_interface__"):  # real device array (GPU mode)
        work = arg.copy_to_host()

        def back(arg=arg, work=work):
            arg.copy_to_device(work)

        return work, back
    return None, None


def trace(kernel: object, griddim: Dims, blockdim: Dims, *args: object, names: list[str] | None = None,
          dynamic_shared_bytes: int = 0) -> "Trace":
    """Launch ``kernel[griddim, blockdim](*args)`` in the simulator, recording every memory access.

    The launch is first checked against real hardware limits (:func:`nbkit.core.launch.check_launch`); results
    are copied back into NumPy (and device) arguments as a normal launch would. ``names`` name the array
    arguments in reports (default: the kernel's parameter names). Works in simulator and GPU mode alike.
    Keep grids small: every simulated thread costs CPU time.
    """
    grid, block = check_launch(griddim, blockdim, kernel, dynamic_shared_bytes)
    fn = _python_function(kernel)
    params = list(inspect.signature(fn).parameters)
    if len(args) != len(params):
        raise TypeError(f"{fn.__name__} takes {len(params)} arguments ({', '.join(params)}), got {len(args)}.")
    if names is None:
        names = params
    elif len(names) != len(args):
        raise ValueError(f"names has {len(names)} entries for {len(args)} kernel arguments.")
    grid3 = tuple(grid) + (1,) * (3 - len(grid))
    block3 = tuple(block) + (1,) * (3 - len(block))

    # Loaded on the first trace only: they import the simulator's internals.
    from nbkit.tracer.fakecuda import TracingModule
    from nbkit.tracer.runner import ThreadFailed, run_launch

    rec = Recorder()
    rec.return_lines = _return_lines(fn)
    used_names: set = set()
    kernel_args, write_backs = [], []
    for name, arg in zip(names, args):
        work, back = _to_host(arg)
        if work is None:
            kernel_args.append(arg)
            continue
        used_names.add(name)
        info = ArrayInfo(name, "global", work.shape, work.dtype, work.strides, 0)
        kernel_args.append(TracedArray(work, rec.add_array(info), rec))
        if back is not None:
            write_backs.append(back)

    module = TracingModule(grid3, block3, dynamic_shared_bytes, rec, used_names)
    # In GPU mode device functions are compiled dispatchers: run their Python functions instead.
    swaps = [(g, name, old, simulator.simulated_kernel(py, device=True)) for g, name, old, py in _device_functions(fn)
             if not simulator.is_simulated_kernel(old)]
    for g, name, _old, new in swaps:
        g[name] = new
    ndim = (len(grid), len(block))
    try:
        run_launch(fn, kernel_args, grid3, block3, module, ndim)
    except ThreadFailed as failed:
        t, (exc, tb) = failed.thread, failed.thread.exception
        if rec.error is not None:
            raise TraceIndexError(rec.error) from None
        where = ""
        for frame, lineno in reversed(list(_walk_tb(tb))):
            if frame.f_code.co_filename not in _OWN_FILES:
                where = f" at {frame.f_code.co_filename}:{lineno} ({frame.f_code.co_name})"
                break
        raise TraceError(f"block {fmt_dim(t.blockIdx, ndim[0])}, thread {fmt_dim(t.threadIdx, ndim[1])} raised "
                         f"{type(exc).__name__}: {exc}{where}") from exc
    finally:
        for g, name, old, _new in swaps:
            g[name] = old
    for back in write_backs:
        back()
    return Trace(rec, grid3, block3, fn.__name__, ndim)


def _return_lines(fn: Callable) -> frozenset[int]:
    """Lines (in the file) of the kernel's own ``return`` statements: a thread that left there returned early."""
    try:
        lines, first = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    found, stack = set(), list(tree.body[0].body) if tree.body else []
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # another function's returns
        if isinstance(node, ast.Return):
            found.add(node.lineno + first - 1)
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(found)


def _walk_tb(tb):
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next
