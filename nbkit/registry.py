"""One registry of every kernel in nbkit, so the PTX test finds new kernels by itself."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from numba import cuda

_FLOAT64_WORDS = ("float64", "f8", "double", "complex128")


@dataclass(frozen=True)
class KernelSpec:
    """A registered kernel: its Python source function and the signatures to prove on real hardware."""

    name: str  # module-qualified, e.g. "nbkit.vector.vector_add"
    py_func: Callable
    signatures: tuple[str, ...]
    device: bool = False
    expect_f64: bool = False  # a teaching demo that must show float64 promotion

    @property
    def float32_only(self) -> bool:
        """True when no signature mentions float64: then its PTX must contain no `.f64` at all."""
        return not any(word in sig for sig in self.signatures for word in _FLOAT64_WORDS)


_REGISTRY: dict[str, KernelSpec] = {}


def kernel(*signatures: str, device: bool = False, expect_f64: bool = False, name: str | None = None,
           **jit_options) -> Callable[[Callable], object]:
    """Decorator: ``cuda.jit`` the function and record it with the signatures the PTX test compiles.

    The kernel itself stays lazily compiled, so it accepts any arguments numba can type; the
    signatures name the argument types the course supports (e.g. ``"void(float32[::1], int32)"``).
    ``expect_f64=True`` marks a demonstration of float64 promotion: its PTX must contain ``.f64``.
    ``name`` overrides the registry name (default: module and qualified name of the function).
    """
    if not signatures:
        raise TypeError("nbkit.kernel needs at least one signature, e.g. 'void(float32[::1], float32[::1])'")

    def register(fn: Callable) -> object:
        key = name or f"{fn.__module__}.{fn.__qualname__}"
        _REGISTRY[key] = KernelSpec(key, fn, tuple(signatures), device, expect_f64)
        return cuda.jit(device=device, **jit_options)(fn)

    return register


def registered_kernels(load_all: bool = True) -> list[KernelSpec]:
    """Every registered kernel; with ``load_all`` first import every nbkit module so none is missed."""
    if load_all:
        import nbkit

        for info in pkgutil.iter_modules(nbkit.__path__, prefix="nbkit."):
            if info.name not in ("nbkit.__main__",):
                importlib.import_module(info.name)
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)
