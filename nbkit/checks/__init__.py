"""Self-checks for the exercises. Each says what is right, or what exactly is wrong.

Convention (fixed for the whole course): the learner's solution cell is an nbgrader solution cell whose
``### BEGIN SOLUTION`` / ``### END SOLUTION`` region nbgrader removes in the learner's copy; the cell right
after it calls one ``check_*`` function from here. A passing check prints a line starting with ✓, an
unsolved stub prints one line starting with ◻ ("not solved yet"), and a wrong answer raises
:class:`CheckFailed` whose message starts with ✗ and explains the mistake.

Checks live in one module per notebook (``nb00`` ... ``nb10``); every ``check_*`` function of those
modules is importable from here. An exercise is declared as an object (:mod:`nbkit.checks.exercise`,
how-to in ``nbkit/checks/README.md``) that one generic engine runs; the shared machinery is in
:mod:`nbkit.checks._core`.
"""

from __future__ import annotations

import importlib
import pkgutil

from nbkit.checks._core import CheckFailed, NotSolved, is_stub

__all__ = ["CheckFailed", "NotSolved", "exercises", "is_stub"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("nb"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in dir(_module):
            if _name.startswith("check_"):
                globals()[_name] = getattr(_module, _name)
                __all__.append(_name)


def exercises() -> dict[str, object]:
    """Every exercise declared as an object (:mod:`nbkit.checks.exercise`), by number: for programs that run
    them on many answers (mutation tests, varied inputs). An exercise in parts is listed as its group."""
    from nbkit.checks.exercise import Exercise, ExerciseGroup

    values = [value for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
              if module.name.startswith("nb")
              for value in vars(importlib.import_module(f"{__name__}.{module.name}")).values()]
    groups = [v for v in values if isinstance(v, ExerciseGroup)]
    parts = {id(part) for group in groups for part in group.parts}
    found = {v.number: v for v in values if isinstance(v, Exercise) and id(v) not in parts}
    found.update((group.number, group) for group in groups)
    return found
