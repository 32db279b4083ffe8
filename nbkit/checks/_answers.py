"""Calling a learner's Python function inside a check: its errors become verdicts, not tracebacks."""

from __future__ import annotations

import traceback
import warnings
from typing import Callable

import numpy as np

from nbkit.checks._core import fail


def failing_line(exc: BaseException, fn: Callable) -> str:
    """The source line (stripped) of ``fn``'s file where ``exc`` was raised, the deepest one; '' if unknown."""
    filename = getattr(getattr(fn, "__code__", None), "co_filename", None)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename and frame.line:
            return frame.line.strip()
    return ""


def call_answer(fn: Callable, *args, call: str, hint: str | Callable[[BaseException, str], str] = "") -> object:
    """``fn(*copies of args)``; an exception it raises becomes a ✗ verdict that quotes ``call``.

    ``hint`` is added to that verdict: a string, or a function ``hint(exc, line)`` of the exception and of
    the learner's line that raised it (:func:`failing_line`), returning the hint that fits this error ('' for
    none), so that a hint is only given where it applies.

    Arrays are passed as copies, so an answer that modifies its inputs in place cannot corrupt the
    check's own data. ``NotImplementedError`` (an unsolved stub) passes through to the ``@exercise``
    decorator, which prints "not solved yet". NumPy's overflow warnings are silenced: the check judges
    the numbers (a nan or inf is diagnosed), and the learner should not see a warning from inside it.
    """
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*copies)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the learner's code is the verdict
        text = hint(exc, failing_line(exc, fn)) if callable(hint) else hint
        fail(f"your function raised {type(exc).__name__}: {exc} (the check calls {call})." + (f" {text}" if text else ""))


def unpack(result: object, names: tuple[str, ...], call: str) -> tuple:
    """``result`` as a tuple of ``len(names)`` items, or a ✗ verdict saying what to return."""
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = f"a {type(result).__name__}" if not isinstance(result, (tuple, list)) else f"{len(result)} values"
        fail(f"{call} must return a tuple ({', '.join(names)}); it returned {got}.")
    return tuple(result)


def shape_of(name: str, got: object, want_shape: tuple[int, ...], meaning: str = "") -> None:
    """Fail with a helpful message when ``got`` does not have ``want_shape``."""
    shape = np.shape(got)
    if shape == want_shape:
        return
    hint = " (transposed?)" if len(shape) == 2 and shape == want_shape[::-1] else ""
    fail(f"{name} has shape {shape}{hint}, expected {want_shape}" + (f": {meaning}" if meaning else "."))
