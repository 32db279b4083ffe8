"""nbkit: the helper package of the course "Neural networks from the math to the GPU kernel".

``import nbkit`` must come first in every notebook: it decides between the real GPU and the CUDA
simulator *before* numba is imported (see :mod:`nbkit.core.mode`).
"""

from __future__ import annotations

from nbkit.core import collector as _collector  # first: the garbage collector stays off while numba is imported

try:
    from nbkit.core.mode import MODE, Mode, ModeError, select_mode  # noqa: F401 - importing nbkit.core.mode decides MODE, first

    # isort: split
    from nbkit.core.doctor import doctor
    from nbkit.core.launch import LaunchConfigError, blocks_for, check_launch, launch
    from nbkit.core.registry import kernel, registered_kernels
    from nbkit.core.source import show
    from nbkit.core.timing import Timing, time_it
finally:  # also where the import fails (a ModeError): the process goes on, and needs its collector
    _collector.resume()

__all__ = [
    "MODE",
    "Mode",
    "ModeError",
    "LaunchConfigError",
    "Timing",
    "blocks_for",
    "check_launch",
    "doctor",
    "kernel",
    "launch",
    "registered_kernels",
    "show",
    "time_it",
]
