"""The garbage collector, set for what nbkit's processes do (notebook kernels, test children, the compile worker).

Compiling a kernel with numba makes many short-lived objects, and with Python's default (a collection every 700
allocations) the collector took 2.4-3.0 s of the 22-26 s of CPU that three LeNet training steps cost when they
compile every launcher (NBKIT_MODE=cpu, empty compile cache, 2-core machine, 2026-11-30), and 0.5 s with the
youngest generation at :data:`GC_YOUNG` allocations and everything imported with nbkit frozen (``gc.freeze()``:
later collections skip numba's modules, which live as long as the process). Memory: about 20 MB more.

Importing this module (``nbkit/__init__.py`` does so first) turns the collector off while nbkit imports numba
(about 190 collections otherwise, each walking more of what has been imported); :func:`resume` freezes and turns it
on again. Left alone where the process chose its own settings: other thresholds, or the collector off (as pytest has
it while it collects tests, ``tests/startup_plugin.py``).
"""

from __future__ import annotations

import gc

GC_YOUNG = 10_000  # allocations between collections of the youngest generation (Python's default: 700)
PYTHON_DEFAULT = (700, 10, 10)

_paused = gc.isenabled() and gc.get_threshold() == PYTHON_DEFAULT
if _paused:
    gc.disable()


def resume() -> None:
    """After nbkit's imports: freeze what they made, collect the youngest generation every GC_YOUNG allocations."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.set_threshold(GC_YOUNG, *PYTHON_DEFAULT[1:])
        gc.enable()
