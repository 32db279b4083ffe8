"""Every CUDA kernel of the course, once, with the wrapper that checks its inputs and launches it."""

from __future__ import annotations

import importlib
import pkgutil

from nbkit.core.registry import KernelSpec, registered_kernels


def all_kernels() -> list[KernelSpec]:
    """Every registered kernel, after importing each module of this package so that none is missed.

    Only the kernels are scanned: listing them must not import plotting, notebooks or torch.
    """
    for info in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)
    return registered_kernels()
