"""Every use of the CUDA simulator's internals, in one module that works with both simulators nbkit meets.

Why: the memory-access tracer runs a kernel on the simulator's own thread machinery, and a benchmark runs a
compiled kernel's Python function on it; both reach past numba's public API (thread and block classes, the fake
``cuda`` module, the kernel context, device arrays). Two simulators exist, with small differences inside:

* numba-cuda's, in the ``numba_cuda`` package: ``numba.cuda`` is redirected to it by numba-cuda's ``.pth`` file
  when the interpreter starts (Linux and Windows after ``course.sh``);
* numba's own, built into numba: numba without numba-cuda (macOS), or an interpreter that was already running
  when numba-cuda was installed (a Colab kernel), so the redirect never ran.

Nothing else in nbkit imports ``numba.cuda.simulator``; the rest of the code does not care which one is loaded.

Supported (tested): numba-cuda 0.30 on numba 0.68, and numba 0.68's built-in simulator. pyproject.toml allows
numba >= 0.60 and numba-cuda >= 0.21: their simulators have had the same internals, but where one is missing
:class:`SimulatorInternalsError` names it and the installed versions. Everything is loaded on first use, after
nbkit has chosen GPU or simulator mode (the tracer uses the simulator in GPU mode too).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator

import numpy as np

from nbkit.core import fibers

SUPPORTED = "numba-cuda 0.30 (on numba 0.68) or numba 0.68's built-in CUDA simulator"

__all__ = ["SUPPORTED", "SimulatorInternalsError", "Internals", "internals", "which", "numba_cuda_loaded", "as_dtype",
           "device_array_memory",
           "simulated_kernel", "is_simulated_kernel", "is_device_function", "launch_context", "Router", "route_launches",
           "routed", "routed_launch",
           "install_warp_intrinsics", "warp_sync", "poison_value", "poisoned", "DivergentBarrier", "harden",
           "SimThread", "current_thread"]


class SimulatorInternalsError(RuntimeError):
    """The loaded CUDA simulator lacks an internal that nbkit uses (an unsupported numba or numba-cuda)."""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def numba_cuda_loaded() -> bool:
    """Whether ``numba.cuda`` is numba-cuda's package (redirected at start-up) rather than numba's own."""
    from numba import cuda

    return "numba_cuda" in (getattr(cuda, "__file__", None) or "")


def which() -> str:
    """The simulator ``numba.cuda`` runs, with versions, e.g. ``numba-cuda 0.30.4 (numba 0.68.1)``."""
    if numba_cuda_loaded():
        return f"numba-cuda {_version('numba-cuda')} (numba {_version('numba')})"
    return f"numba {_version('numba')} built-in"


@dataclass(frozen=True)
class Internals:
    """The simulator's classes and functions that nbkit uses, from whichever simulator is loaded."""

    name: str  # which(): the simulator they come from
    Dim3: type  # threadIdx, blockIdx, blockDim, gridDim
    BlockManager: type  # runs one block's threads (its block_state backs syncthreads_count/and/or)
    FakeCUDAKernel: type  # a Python function launched (or called, device=True) like a kernel
    FakeCUDAModule: type  # the ``cuda`` module a simulated kernel sees
    FakeCUDAArray: type  # a simulator device array: a NumPy array inside
    push_kernel_context: Callable[[Any], Any]  # context manager: the running kernel's fake module, for device calls
    kernel_context: Callable[[], Any]  # the running kernel's fake module; None outside a simulated kernel
    swapped_cuda_module: Callable[[Callable, Any], Any]  # context manager: ``cuda`` in fn's globals -> fake module
    numba_type: type  # base class of numba types (``float32``), as the simulator's shared.array accepts them
    numba_as_dtype: Callable[[Any], np.dtype]  # the simulator's own numba type -> NumPy dtype conversion


@lru_cache(maxsize=None)
def internals() -> Internals:
    """Load the internals from the simulator in use; :class:`SimulatorInternalsError` names what is missing."""
    wanted = {
        "Dim3": ("kernelapi", "Dim3"), "BlockManager": ("kernel", "BlockManager"),
        "FakeCUDAKernel": ("kernel", "FakeCUDAKernel"), "push_kernel_context": ("kernel", "_push_kernel_context"),
        "kernel_context": ("kernel", "_get_kernel_context"),
        "FakeCUDAModule": ("kernelapi", "FakeCUDAModule"), "swapped_cuda_module": ("kernelapi", "swapped_cuda_module"),
        "FakeCUDAArray": ("cudadrv.devicearray", "FakeCUDAArray"),
    }
    name = which()
    found: dict[str, Any] = {}
    missing = []
    for field, (module, attr) in wanted.items():
        try:
            mod = importlib.import_module(f"numba.cuda.simulator.{module}")
            found[field] = getattr(mod, attr)
        except (ImportError, AttributeError):
            missing.append(f"numba.cuda.simulator.{module}.{attr}")
    # The dtype conversion lives in numba.np (numba's simulator) or numba.cuda.np (numba-cuda's): take the one the
    # simulator's own shared.array uses, so numba types are understood exactly as the simulator understands them.
    kernelapi = sys.modules.get("numba.cuda.simulator.kernelapi")
    numba_type = getattr(getattr(kernelapi, "types", None), "Type", None)
    as_dtype_fn = getattr(getattr(kernelapi, "numpy_support", None), "as_dtype", None)
    if numba_type is None or as_dtype_fn is None:
        missing.append("numba.cuda.simulator.kernelapi's types.Type and numpy_support.as_dtype")
    if missing:
        raise SimulatorInternalsError(
            f"nbkit needs internals of the CUDA simulator that {name} does not have: {', '.join(missing)}. "
            f"Supported: {SUPPORTED}. Install a supported version (bash course.sh setup does).")
    return Internals(name=name, numba_type=numba_type, numba_as_dtype=as_dtype_fn, **found)


def as_dtype(dtype: object) -> np.dtype:
    """NumPy dtype of a numba type (``float32`` from numba) or of anything NumPy understands."""
    sim = internals()
    return sim.numba_as_dtype(dtype) if isinstance(dtype, sim.numba_type) else np.dtype(dtype)


def device_array_memory(array: object) -> np.ndarray | None:
    """The NumPy array that is the memory of a simulator device array (writes go to the device); None otherwise."""
    return array._ary if isinstance(array, internals().FakeCUDAArray) else None


_SIMULATOR_ONLY = "_nbkit_simulator_only"  # set on kernels made by simulated_kernel(): never routed


def simulated_kernel(py_func: Callable, device: bool = False) -> object:
    """``py_func`` as a simulator kernel (``kernel[grid, block](...)``) or device function, in every mode.

    Its launches always run on the simulator's threads, also in cpu mode (:func:`route_launches` leaves them
    alone): whoever asks for it wants the simulator itself, e.g. a benchmark's plain simulator run.
    """
    kernel = internals().FakeCUDAKernel(py_func, device=device)
    setattr(kernel, _SIMULATOR_ONLY, True)
    return kernel


def is_simulated_kernel(obj: object) -> bool:
    """Whether ``obj`` is a simulator kernel or device function (not a compiled dispatcher)."""
    return isinstance(obj, internals().FakeCUDAKernel)


def is_device_function(obj: object) -> bool:
    """Whether ``obj`` is a ``cuda.jit(device=True)`` function: a simulator one, or a compiled dispatcher."""
    if isinstance(obj, internals().FakeCUDAKernel):
        return bool(obj._device)
    return bool(getattr(obj, "targetoptions", {}).get("device"))


@contextlib.contextmanager
def launch_context(fn: Callable, module: object) -> Iterator[None]:
    """While a kernel ``fn`` runs: ``module`` is the ``cuda`` of fn's globals and of the device functions it calls."""
    sim = internals()
    with sim.push_kernel_context(module), sim.swapped_cuda_module(fn, module):
        yield


# run(kernel, grid, block, dynamic_shared_bytes, args, simulate): runs one launch; simulate() runs it on the simulator.
Router = Callable[[Any, tuple, tuple, int, tuple, Callable[[], None]], None]
_ROUTER: list[Router] = []  # the router of route_launches, at most one


def route_launches(run: Router | None) -> None:
    """Hand every kernel launch of the simulator to ``run`` (None: back to the simulator). Used by cpu mode.

    Why here: a learner writes ``kernel[grid, block](*args)``, which calls the simulator's kernel object directly,
    so the only place to catch every launch (``nbkit.launch`` too) is that class's ``__call__``. Patched on the
    class, so kernels made before and after apply alike. Left to the simulator: device-function calls, calls made
    inside a running simulated kernel (the tracer's runs), kernels made by :func:`simulated_kernel`, and a kernel
    called without ``[grid, block]`` (the simulator's own error). ``grid`` and ``block`` arrive as 3-tuples, the
    arguments as passed (simulator device arrays included: :func:`device_array_memory` reads them).
    """
    sim = internals()
    cls = sim.FakeCUDAKernel
    if not getattr(cls.__call__, "_nbkit_routed", False):
        original = cls.__call__

        def __call__(self, *args):  # the simulator's own, with launches handed to the router
            router = _ROUTER[0] if _ROUTER else None
            if router is None or not _routable(sim, self) or self.grid_dim is None or self.block_dim is None:
                return original(self, *args)
            return router(self, tuple(self.grid_dim), tuple(self.block_dim), int(self.dynshared_size or 0), args,
                          lambda: original(self, *args))

        __call__._nbkit_routed = True
        functools.update_wrapper(__call__, original, assigned=("__doc__", "__name__", "__qualname__"))
        cls.__call__ = __call__
    _ROUTER.clear()
    if run is not None:
        _ROUTER.append(run)


def _routable(sim: Internals, kernel: object) -> bool:
    """Whether a launch of the simulator's ``kernel`` goes to the router: not a device function, not a call made
    inside a running simulated kernel (the tracer's runs), not a kernel of :func:`simulated_kernel`."""
    return not (kernel._device or sim.kernel_context() is not None or getattr(kernel, _SIMULATOR_ONLY, False))


def routed() -> bool:
    """Whether the simulator's launches are handed to a router now (:func:`route_launches`)."""
    return bool(_ROUTER)


def routed_launch(kernel: object, grid: tuple, block: tuple, dynamic_shared_bytes: int, args: tuple) -> bool:
    """Hand a launch to the router as ``kernel[grid, block](*args)`` would, and say whether it did (False:
    nothing ran; that call would not be routed, so the caller makes it).

    Why: :func:`nbkit.core.launch.launch` has already checked ``grid`` and ``block``; going through the
    simulator's ``__getitem__`` and ``__call__`` checked them again and cost a third of a small launch's
    Python time in cpu mode. ``grid`` and ``block``: tuples of 1 to 3 ints, as ``check_launch`` returns them.
    """
    if not _ROUTER:
        return False
    sim = internals()
    if not isinstance(kernel, sim.FakeCUDAKernel) or not _routable(sim, kernel):
        return False
    call = sim.FakeCUDAKernel.__call__
    original = getattr(call, "__wrapped__", call)  # the simulator's own (route_launches wraps it)

    def simulate() -> None:
        original(kernel[grid, block, 0, dynamic_shared_bytes], *args)

    _ROUTER[0](kernel, grid + (1,) * (3 - len(grid)), block + (1,) * (3 - len(block)), dynamic_shared_bytes,
               args, simulate)
    return True


# ---------------------------------------------------------------------------------------------- hardening
# Uninitialised memory and barriers: the simulator's own behaviour hides two kernel bugs that a GPU punishes.


def poison_value(dtype: object) -> object:
    """What uninitialised shared and local memory holds in nbkit's simulator: NaN for floats, a sentinel otherwise.

    Why: the simulator's ``np.empty`` often gives zeros, and a kernel that reads an element nobody wrote (a tree
    that starts at a stride larger than the block) then computes the right sum by luck. On a GPU that memory holds
    whatever was there. NaN spreads through float arithmetic, so such a read shows in the output. Integers get
    the most negative value (unsigned: the largest): an index read from there is out of bounds. Bools: True.
    """
    dt = np.dtype(dtype)
    if dt.kind in "fc":
        return np.nan
    if dt.kind == "i":
        return np.iinfo(dt).min
    if dt.kind == "u":
        return np.iinfo(dt).max
    if dt.kind == "b":
        return True
    return None


def poisoned(shape: object, dtype: object) -> np.ndarray:
    """A new array filled with :func:`poison_value` (records and other dtypes: left as ``np.empty`` made them)."""
    a = np.empty(shape, as_dtype(dtype))
    value = poison_value(a.dtype)
    if value is not None:
        a[...] = value
    return a


DYNAMIC_POISON_BYTE = -1  # int8 0xFF: every byte of dynamic shared memory; NaN in every float dtype, -1 in an int


class DivergentBarrier(RuntimeError):
    """Threads of one block wait at different ``cuda.syncthreads()`` calls: undefined behaviour on a GPU.

    The CUDA C++ Programming Guide (``__syncthreads()``): allowed in conditional code "but only if the conditional
    evaluates identically across the entire thread block, otherwise the code execution is likely to hang or
    produce unintended side effects".
    """


_ALLOC_LOCK = threading.Lock()  # one per process: shared arrays are created once per block and declaring line
_HARDENED: list[bool] = []


current_thread = fibers.current_thread  # the simulated thread running now


def _current_block() -> tuple:
    return tuple(getattr(current_thread(), "blockIdx", ()))


def _shared_array(original: Callable) -> Callable:
    def array(self, shape, dtype, alignment=None):
        """The simulator's ``cuda.shared.array``, poisoned, one per block and declaring line, under a lock."""
        if alignment is not None:  # the simulator's own error (numba's built-in one has no such parameter)
            return original(self, shape, dtype, alignment)
        if shape == 0 or shape == (0,):  # dynamic shared memory: one buffer, viewed with this dtype
            block = _current_block()
            with _ALLOC_LOCK:  # the first call of a new block poisons the buffer (blocks run one at a time)
                if getattr(self, "_nbkit_dynamic_block", None) != block:
                    self._dynshared[...] = DYNAMIC_POISON_BYTE
                    self._nbkit_dynamic_block = block
            return original(self, 0, dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)  # as the simulator: one array per declaring line
        block = _current_block()
        with _ALLOC_LOCK:  # the simulator's own has no lock: two threads could each create their own array
            table = self.__dict__.setdefault("_nbkit_allocations", {})
            entry = table.get(key)
            if entry is None or entry[0] != block:  # a new block starts with fresh (poisoned) shared memory
                entry = table[key] = (block, poisoned(shape, dtype))
        return entry[1]

    return array


def _local_array(original: Callable) -> Callable:
    def array(self, shape, dtype, *rest, **kw):
        """The simulator's ``cuda.local.array``, poisoned."""
        a = original(self, shape, dtype, *rest, **kw)
        value = poison_value(a.dtype)
        if value is not None:
            a[...] = value
        return a

    return array


def barrier_arrival(frame: Any) -> None:
    """Count one barrier of the calling thread; raise :class:`DivergentBarrier` when another thread of its block
    had its barrier of the same number at another ``cuda.syncthreads()`` call (``frame``: the caller's frame).

    Cheap and order-independent: the first thread to reach its k-th barrier records the call site for the block,
    every later one compares. Threads that skip a barrier and leave the kernel are not seen here (the tracer
    reports them).
    """
    t = current_thread()
    manager = getattr(t, "_manager", None)
    if manager is None:
        return
    k = t.__dict__.get("_nbkit_barriers", 0)
    t._nbkit_barriers = k + 1
    site = (frame.f_code, frame.f_lineno)  # a line, not an instruction offset: specialised code may move those
    first = manager.__dict__.setdefault("_nbkit_barrier_sites", {}).setdefault(k, (site, frame.f_lineno, t))
    if first[0] != site:
        other = first[2]
        raise DivergentBarrier(
            f"threads of block {tuple(t.blockIdx)} wait at different cuda.syncthreads() calls: thread "
            f"{tuple(other.threadIdx)} at line {first[1]}, thread {tuple(t.threadIdx)} at line {frame.f_lineno} "
            f"(barrier number {k + 1} of each). Every thread of a block must reach the same barrier; a barrier in "
            "an if is allowed only when the condition is the same for the whole block (CUDA Programming Guide, "
            "__syncthreads()).")


def _barrier(original: Callable) -> Callable:
    def barrier(self, *args):
        barrier_arrival(sys._getframe(1))
        return original(self, *args)

    functools.update_wrapper(barrier, original)
    return barrier


class SimThread(fibers.Fiber):
    """One CUDA thread of a simulated launch, run on a greenlet by :func:`nbkit.core.fibers.run_block` (not on an
    OS thread as in the simulator's own ``BlockThread``): registered with its block's warps, and an error carries
    the simulator's prefix (``tid=[x, y, z] ctaid=[x, y, z]: ...``)."""

    def __init__(self, target: Callable[[], None], manager: Any, grid_point: tuple, block_point: tuple,
                 debug: bool = False) -> None:
        super().__init__(manager, grid_point, block_point, internals().Dim3)
        self._target = target
        self.debug = debug
        block = manager.__dict__.get(_WARP_STATE)  # made by the block's first thread
        if block is None:
            block = _block_warps(self)
        setattr(self, _WARP_STATE, block)
        block.register(self.thread_id, self)

    def body(self) -> None:
        if self.debug:  # the simulator's debug mode: a division by zero raises
            np.seterr(divide="raise")
        try:
            self._target()
        finally:
            getattr(self, _WARP_STATE).exited(self.thread_id)

    def run(self) -> None:  # the simulator's BlockThread.run: the exception again, with the thread in its message
        try:
            self.body()
        except Exception as e:  # noqa: BLE001 - handed to the scheduler
            where = f"tid={list(self.threadIdx)} ctaid={list(self.blockIdx)}"
            self.exception = (type(e)(f"{where}: {e}" if str(e) else where), e.__traceback__)


def _block_run(self: Any, grid_point: tuple, *args: Any) -> None:
    """``BlockManager.run``: the block's threads on greenlets (:mod:`nbkit.core.fibers`), same errors."""

    def target():
        self._f(*args)

    threads = [SimThread(target, self, grid_point, block_point[::-1], self._debug)
               for block_point in np.ndindex(*self._block_dim[::-1])]  # in thread-id order: x fastest
    fibers.run_block(threads, lambda t: t.exception[0].with_traceback(t.exception[1]))


def harden() -> None:
    """Make the loaded simulator closer to a GPU; idempotent. Called at start-up in sim and cpu mode, and by the
    tracer (which runs on the simulator in GPU mode too).

    * ``cuda.shared.array`` and ``cuda.local.array`` start poisoned (:func:`poison_value`), shared memory afresh
      for every block (the simulator keeps one array per launch); dynamic shared memory has every byte 0xFF;
    * a block's shared array is created under a lock, so every thread of the block gets the same one;
    * ``cuda.syncthreads()`` (and its _count/_and/_or forms) raises :class:`DivergentBarrier` when threads of a
      block wait at different call sites (:func:`barrier_arrival`);
    * a block's threads run on greenlets (:mod:`nbkit.core.fibers`), not OS threads: in the same order on every
      run, and faster (measured 2026-11-30 on a 2-core VM: a trivial kernel 88-165 -> 19 µs per thread, one with a
      barrier 503 -> 21 µs; 11 µs since the greenlets are reused, :mod:`nbkit.core.fibers`).
    """
    if _HARDENED:
        return
    from numba.cuda.simulator import kernelapi

    shared, local, module = kernelapi.FakeCUDAShared, kernelapi.FakeCUDALocal, internals().FakeCUDAModule
    shared.array = _shared_array(shared.array)
    local.array = _local_array(local.array)
    original_init = shared.__init__

    def __init__(self, dynshared_size):
        original_init(self, dynshared_size)
        self._dynshared[...] = DYNAMIC_POISON_BYTE

    shared.__init__ = __init__
    for name in ("syncthreads", "syncthreads_count", "syncthreads_and", "syncthreads_or"):
        setattr(module, name, _barrier(getattr(module, name)))
    internals().BlockManager.run = _block_run
    fibers.install(kernelapi)
    _HARDENED.append(True)
# ---------------------------------------------------------------------------------------------- warp intrinsics

_WARP_STATE = "_nbkit_warps"  # on a BlockManager: the BlockWarps of the block it runs
_WARP_LOCK = threading.Lock()


def _block_warps(thread: Any) -> Any:
    """The :class:`~nbkit.core.warp.BlockWarps` of a simulator thread's block, made by its first thread."""
    from nbkit.core.warp import BlockWarps

    manager = thread._manager
    with _WARP_LOCK:
        block = manager.__dict__.get(_WARP_STATE)
        if block is None:
            block = BlockWarps(getattr(manager._f, "__name__", "?"), tuple(thread.blockIdx),
                               tuple(manager._block_dim), tuple(manager._grid_dim),
                               at_barrier=lambda t: bool(t.syncthreads_blocked), aborted=lambda t: bool(t.abort),
                               pause=fibers.pause)
            setattr(manager, _WARP_STATE, block)
    return block


def _current_lane() -> tuple[Any, int]:
    t = current_thread()
    block = getattr(t, _WARP_STATE, None)
    if block is None:
        raise RuntimeError("a warp intrinsic was called outside a simulated kernel")
    return block, t.thread_id


def warp_sync(mask: Any = 0xFFFFFFFF) -> int:
    """``cuda.syncwarp(mask)`` for the calling simulator thread; returns the meeting's serial number in its warp
    (the tracer orders memory with it)."""
    block, tid = _current_lane()
    return block.meet(tid, "syncwarp", mask)[1]


def install_warp_intrinsics() -> None:
    """Give the simulator's fake ``cuda`` module the warp intrinsics of :mod:`nbkit.core.warp` (both simulators).

    Why here: it patches the simulator's fake ``cuda`` module (each :class:`SimThread` registers with its block's
    :class:`~nbkit.core.warp.BlockWarps`, and counts as inactive once it has returned). ``FakeCUDAModule`` gets
    ``shfl_sync``, ``shfl_up_sync``, ``shfl_down_sync``, ``shfl_xor_sync``, ``syncwarp``, ``all_sync``, ``any_sync``,
    ``eq_sync``, ``ballot_sync``, ``match_any_sync``, ``match_all_sync``,
    ``activemask``, ``lanemask_lt``, and a ``popc`` that counts a negative int32 (a ballot naming lane 31) as
    the GPU does. ``laneid`` and ``warpsize`` are the simulators' own. Idempotent.
    """
    from nbkit.core import warp

    module_cls = internals().FakeCUDAModule

    def shuffle(kind: str) -> Callable:
        def intrinsic(self, mask, value, arg):
            warp.check_shuffle_value(kind, value)
            block, tid = _current_lane()
            return block.meet(tid, kind, mask, value, int(arg))[0]

        intrinsic.__name__ = kind
        return intrinsic

    def meeting(kind: str) -> Callable:
        def intrinsic(self, mask, value):
            if kind in warp.MATCHES:
                warp.check_shuffle_value(kind, value)
                if isinstance(value, warp.Undefined):
                    value._used()
            else:  # a predicate: its truth, decided by the calling lane (an undefined one raises here)
                value = bool(value)
            block, tid = _current_lane()
            return block.meet(tid, kind, mask, value)[0]

        intrinsic.__name__ = kind
        return intrinsic

    def syncwarp(self, mask=0xFFFFFFFF):
        warp_sync(mask)

    def activemask(self):
        block, tid = _current_lane()
        return block.activemask(tid)

    def lanemask_lt(self):
        return warp.lanemask_lt(current_thread().thread_id % 32)

    def popc(self, val):
        return warp.popc(val)

    for kind in warp.SHUFFLES:
        setattr(module_cls, kind, shuffle(kind))
    for kind in warp.VOTES + warp.MATCHES:
        setattr(module_cls, kind, meeting(kind))
    for fn in (syncwarp, activemask, lanemask_lt, popc):
        setattr(module_cls, fn.__name__, fn)
