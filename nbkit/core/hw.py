"""Hardware facts in one place: launch limits, warp size, the architectures the course checks, and their names.

Standard library only, so that any layer (and tooling run before numba exists) can import it.
Per-architecture limits that vary (warps and shared memory per SM) are a MODEL and live in
:mod:`nbkit.perf.occupancy`, keyed by the names :func:`sm_name` returns.
"""

from __future__ import annotations

import re

# Limits shared by every compute capability from 5.0 to 9.0 (CUDA C Programming Guide, table
# "Technical Specifications per Compute Capability").
WARP_SIZE = 32
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
MAX_STATIC_SHARED_BYTES = 48 * 1024  # per block; more needs dynamic shared memory and an opt-in

# The architectures every kernel is compiled and checked for: Turing (T4), Ampere (A100), Hopper (H100).
ARCHS: tuple[str, ...] = ("sm_75", "sm_80", "sm_90")

Arch = str | tuple[int, int]

_SM = re.compile(r"(?:sm_|compute_)?(\d+)(\d)")
_DOTTED = re.compile(r"(\d+)\.(\d)")


def compute_capability(cc: Arch) -> tuple[int, int]:
    """``(major, minor)`` of an architecture written ``"sm_80"``, ``"compute_80"``, ``"8.0"``, ``"80"`` or ``(8, 0)``.

    One parser, so that every tool accepts the same spellings and rejects the same typos.
    """
    if isinstance(cc, tuple):
        if len(cc) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in cc):
            return cc[0], cc[1]
    elif isinstance(cc, str):
        text = cc.strip().lower()
        m = _DOTTED.fullmatch(text) or _SM.fullmatch(text)
        if m:
            return int(m.group(1)), int(m.group(2))
    raise ValueError(f"not an architecture: {cc!r} (write it 'sm_80', '8.0', '80' or (8, 0))")


def sm_name(cc: Arch) -> str:
    """The ``sm_XY`` name of an architecture given in any form :func:`compute_capability` reads."""
    major, minor = compute_capability(cc)
    return f"sm_{major}{minor}"
