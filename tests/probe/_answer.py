"""One probe answer, and how to run it through its check and read the verdict."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    """An answer to exercise ``number``: ``args`` go to ``check`` (a name in nbkit.checks).

    ``ok``: the answer is right (✓ expected) or wrong (CheckFailed expected). Known false verdicts and the
    phrases a message must not contain live in tests/test_probe_answers.py, where the lead sees them.
    """

    number: str
    name: str
    check: str
    args: tuple
    ok: bool
    kwargs: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.number}-{self.name}"


def run_check(answer: Answer) -> tuple[str, str]:
    """("passed" | "failed" | "not solved" | "error", message) of ``answer`` through its check."""
    import nbkit.checks as checks

    fn: Any = getattr(checks, answer.check)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            fn(*answer.args, **answer.kwargs)
    except checks.CheckFailed as exc:
        return "failed", str(exc) + out.getvalue()
    except Exception as exc:  # noqa: BLE001 - a check that crashes is a verdict too (a false one)
        return "error", f"{type(exc).__name__}: {exc}\n{out.getvalue()}"
    text = out.getvalue()
    if "✓" in text:
        return "passed", text
    if "✗" in text:
        return "failed", text
    return "not solved", text
