"""Memory traffic of one traced launch, in the units of the roofline MODEL (:mod:`nbkit.perf.roofline`).

:mod:`nbkit.tracer` records every access of a simulated launch; this module adds them up the way the
roofline formulas count them, so a formula can be checked against a real run at small sizes:
``bytes_issued`` is every global load and store executed (itemsize each, as the code's loops issue
them), ``bytes_moved`` the 32-byte sectors of the warp requests (no caches: a MODEL), and ``flops``
what the caller derives from the access counts (e.g. one FMA per element of A read by a matmul).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TracedTraffic:
    """Global-memory traffic of one traced launch."""

    kernel: str
    accesses: dict  # global array name -> (loads, stores) executed, atomics counted as both
    bytes_issued: int
    bytes_moved: int  # sectors x 32 over all global warp requests
    requests: int  # global warp requests

    @property
    def sectors_per_request(self) -> float:
        return self.bytes_moved / 32 / self.requests if self.requests else float("nan")

    def loads(self, array: str) -> int:
        return self.accesses[array][0]

    def __str__(self) -> str:
        per = ", ".join(f"{a}: {ld} loads, {st} stores" for a, (ld, st) in self.accesses.items())
        return (f"{self.kernel} (traced): {per}; {self.bytes_issued} B issued, {self.bytes_moved} B moved in "
                f"{self.requests} warp requests ({self.sectors_per_request:.2f} sectors/request; MODEL, no caches)")


def traffic(t) -> TracedTraffic:
    """Add up the global accesses of a :class:`nbkit.tracer.Trace` (loads, stores, bytes issued and moved)."""
    from nbkit.tracer import OPS

    r = t.records
    read, write, atomic = (OPS.index(o) for o in ("read", "write", "atomic"))
    accesses, issued = {}, 0
    for aid, info in enumerate(t.arrays):
        if info.space != "global":
            continue
        mine = r["array"] == aid
        loads = int(np.sum(mine & ((r["op"] == read) | (r["op"] == atomic))))
        stores = int(np.sum(mine & ((r["op"] == write) | (r["op"] == atomic))))
        if loads or stores:
            accesses[info.name] = (loads, stores)
            issued += (loads + stores) * info.itemsize
    spr = t.sectors_per_request()
    return TracedTraffic(t.kernel_name, accesses, issued, t.bytes_moved(), int(spr.size))
