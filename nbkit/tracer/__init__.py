"""Run a kernel in the CUDA simulator with every global- and shared-memory access recorded.

Why: the simulator runs every CUDA thread, so it can say which thread touched which element, and
group those accesses the way a GPU serves them: one *warp request* is the n-th execution of one access
site (a subscript in the source) by the active lanes of one warp. From the requests follow the units
hardware moves: 32-byte sectors per global request (coalescing), n-way shared-memory bank conflicts, and
from the barrier counts, shared-memory races that the simulator's lucky scheduling may have hidden; also reads
of shared memory that no thread of the block had written (:meth:`Trace.uninitialised_reads`; shared memory
starts as NaN here, afresh for every block) and barriers not reached by the whole block
(:meth:`Trace.divergent_barriers`; the rule is written there).
The same records draw the learner's pictures (who wrote what, what one thread read).

How: the kernel's Python function runs on the simulator's own thread machinery, but each array argument
and each ``cuda.shared.array`` is a proxy that records (block, thread, array, element, read/write, source
site, barrier epoch) and forwards to a NumPy array; ``cuda.syncthreads`` counts epochs. This works in
both nbkit modes: in GPU mode the kernel's ``py_func`` runs on the simulator just the same.

What the model leaves out (say so when you show its numbers):
- caches (L1, L2, texture, constant): every request is counted as if it went to DRAM, so "bytes moved"
  is the traffic *requested* from the memory system, not what DRAM served;
- timing, latency hiding, occupancy, instruction issue: nothing here is a speed;
- the real warp scheduling order and divergence details beyond which lanes were active: lanes of a warp are
  grouped by how often each executed an access site, which matches SIMT execution for the usual loops and
  branches but not for every data-dependent divergence;
- atomics contention (an atomic request is counted like any other request), ``cuda.local`` and
  ``cuda.const`` arrays, NumPy arrays captured as globals or closures (not traced), and global-memory races
  (only shared-memory hazards within a block are reported);
- addresses: each global array is assumed to start 256-byte aligned (as cudaMalloc guarantees); shared
  arrays are laid out one after another (bank conflicts do not depend on where an array starts).

The package, one job per module: :mod:`~nbkit.tracer.launch` (``trace()``, the entry point),
:mod:`~nbkit.tracer.record` (the recording proxies), :mod:`~nbkit.tracer.fakecuda` (the traced ``cuda``
module), :mod:`~nbkit.tracer.runner` (blocks on the simulator's threads), :mod:`~nbkit.tracer.analysis`
(:class:`Trace`, races, maps), :mod:`~nbkit.tracer.requests` (the request table and :class:`Request`),
:mod:`~nbkit.tracer.memory` (the memory model: sectors, banks) and :mod:`~nbkit.tracer.plots` (pictures).
The simulator's internals are reached only through :mod:`nbkit.core.simulator`.
"""

from nbkit.tracer.analysis import BarrierMismatch, Race, Trace, UninitialisedRead, WriteMap
from nbkit.tracer.launch import trace
from nbkit.tracer.memory import (
    BANK_BYTES,
    BANKS,
    DYNAMIC_SHARED_BASE,
    GLOBAL_ALIGNMENT,
    OPS,
    SECTOR_BYTES,
    SPACES,
    WARP_SIZE,
)
from nbkit.tracer.record import ArrayInfo, Site, TraceError, TraceIndexError
from nbkit.tracer.requests import Request

__all__ = ["Trace", "TraceError", "TraceIndexError", "Request", "Race", "UninitialisedRead", "BarrierMismatch",
           "WriteMap", "Site", "ArrayInfo", "trace",
           "SECTOR_BYTES", "BANKS", "BANK_BYTES", "WARP_SIZE", "GLOBAL_ALIGNMENT", "DYNAMIC_SHARED_BASE", "SPACES", "OPS"]
