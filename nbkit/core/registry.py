"""One registry of every kernel in nbkit, so the PTX test finds new kernels by itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from numba import cuda

_FLOAT64_WORDS = ("float64", "f8", "double", "complex128")


@dataclass(frozen=True)
class KernelSpec:
    """A registered kernel: its Python source function and the signatures to prove on real hardware."""

    name: str  # module-qualified, e.g. "nbkit.kernels.vector.vector_add"
    py_func: Callable
    signatures: tuple[str, ...]
    device: bool = False
    expect_f64: bool = False  # a teaching demo that must show float64 promotion
    block: tuple[int, ...] | None = None  # the launch block size the course uses, if fixed
    min_occupancy: float | None = None  # the occupancy (0..1) that block must reach on every checked GPU
    max_registers: int | None = None  # cuda.jit(max_registers=...), passed on to ptxas
    allow_spills: bool = False  # a kernel that may spill registers to local memory without failing the test

    @property
    def threads_per_block(self) -> int | None:
        if self.block is None:
            return None
        n = 1
        for d in self.block:
            n *= d
        return n

    @property
    def float32_only(self) -> bool:
        """True when no signature mentions float64: then its PTX must contain no `.f64` at all."""
        return not any(word in sig for sig in self.signatures for word in _FLOAT64_WORDS)


_REGISTRY: dict[str, KernelSpec] = {}


def kernel(*signatures: str, device: bool = False, expect_f64: bool = False, name: str | None = None,
           block: int | tuple[int, ...] | None = None, min_occupancy: float | None = None,
           allow_spills: bool = False, **jit_options) -> Callable[[Callable], object]:
    """Decorator: ``cuda.jit`` the function and record it with the signatures the PTX test compiles.

    The kernel itself stays lazily compiled, so it accepts any arguments numba can type; the
    signatures name the argument types the course supports (e.g. ``"void(float32[::1], int32)"``).
    ``expect_f64=True`` marks a demonstration of float64 promotion: its PTX must contain ``.f64``.
    ``name`` overrides the registry name (default: module and qualified name of the function).

    Optional resource promises, checked by ``python -m nbkit.perf.ptx`` from ptxas's report: ``block`` is the
    launch block size the course uses (an int or a tuple); with ``min_occupancy`` (0..1) that block must
    reach this occupancy on every checked architecture (see :mod:`nbkit.perf.occupancy`). A kernel that spills
    registers fails unless ``allow_spills=True``.
    """
    if not signatures:
        raise TypeError("nbkit.kernel needs at least one signature, e.g. 'void(float32[::1], float32[::1])'")
    if isinstance(block, int):
        block = (block,)
    if block is not None and (not 1 <= len(block) <= 3 or any(int(d) != d or d < 1 for d in block)):
        raise ValueError(f"block must be a positive int or a tuple of 1 to 3 positive ints, got {block!r}")
    if min_occupancy is not None:
        if block is None:
            raise ValueError("min_occupancy needs the launch block size: pass block=... too")
        if not 0 < min_occupancy <= 1:
            raise ValueError(f"min_occupancy is a fraction in (0, 1], got {min_occupancy!r}")
    if device and (block is not None or min_occupancy is not None):
        raise ValueError("a device function has no launch configuration: block and min_occupancy are for kernels")

    def register(fn: Callable) -> object:
        key = name or f"{fn.__module__}.{fn.__qualname__}"
        _REGISTRY[key] = KernelSpec(key, fn, tuple(signatures), device, expect_f64,
                                    tuple(int(d) for d in block) if block is not None else None, min_occupancy,
                                    jit_options.get("max_registers"), allow_spills)
        return cuda.jit(device=device, **jit_options)(fn)

    return register


def registered_kernels() -> list[KernelSpec]:
    """Every kernel registered so far, by name: those of the modules imported until now.

    :func:`nbkit.kernels.all_kernels` first imports every kernel module, so that none is missed (this layer
    does not know the kernels above it).
    """
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)
