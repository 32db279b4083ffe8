"""Warp-level intrinsics (shuffles, votes, ``syncwarp``, ``activemask``) for the CUDA simulator, with CUDA's rules.

Why: neither CUDA simulator (numba-cuda's nor numba's built-in one) has them, so a correct kernel with a warp-shuffle
tail failed there with AttributeError. nbkit's simulator runs the CUDA threads of a block as greenlets
(:mod:`nbkit.core.fibers`); here the lanes of a warp meet like at a barrier: each lane that calls an intrinsic
waits until every lane its mask names has called it too (or has exited), then all of them get their results at
once. Nothing here touches the simulator's internals: :func:`nbkit.core.simulator.install_warp_intrinsics` creates
one :class:`BlockWarps` per simulated block and calls it from the fake ``cuda`` module.

The rules, from the CUDA C++ Programming Guide ("Warp Shuffle Functions", "Warp Vote Functions", ``__syncwarp``)
and PTX's ``shfl.sync`` and ``vote.sync``:

* A warp is 32 consecutive linear thread ids of a block (``x`` fastest); the last warp of a block whose size is not
  a multiple of 32 has fewer lanes. Lanes that do not exist, or have returned, are inactive.
* Each lane that calls an intrinsic must name itself in ``mask``, and every active lane the mask names must call
  the same intrinsic with the same mask; otherwise CUDA leaves the result undefined, and here it is an error
  (:class:`WarpError`) naming the kernel, block, thread, lane and mask. A shuffle that reads a lane that is not
  taking part (not in the mask, returned, or past the end of the block) gets an :class:`Undefined` value: CUDA
  leaves it undefined, and it raises :class:`WarpError` naming the read as soon as it is stored to memory or
  decides anything (reading it and never using it is correct CUDA, and works here).
* Shuffles follow PTX ``shfl.sync`` with numba-cuda's width of 32: only the low 5 bits of ``src_lane``, ``delta``
  and ``lane_mask`` count; ``shfl_sync`` reads lane ``src_lane % 32``, ``shfl_up_sync`` lane ``lane - delta`` and
  ``shfl_down_sync`` lane ``lane + delta`` (a lane whose source is outside 0-31 gets its own value back),
  ``shfl_xor_sync`` lane ``lane ^ lane_mask``. Values must be 32- or 64-bit ints or floats, as numba-cuda compiles.
* Return types are numba-cuda's: ``all_sync``, ``any_sync`` and ``eq_sync`` a bool, ``ballot_sync`` and
  ``match_any_sync`` an int32 (lane 31's bit makes it negative), ``activemask`` and ``lanemask_lt`` a uint32.
* ``activemask()`` waits until every other lane of the warp is waiting somewhere (an intrinsic, a barrier) or has
  returned, then names the lanes that have not returned, the same for every lane that called it meanwhile (lanes
  that run together on a GPU): after ``if i >= n: return`` it is the same on every run.

A kernel whose lanes never meet (a lane in the mask waits at ``cuda.syncthreads()`` while the others wait at a
shuffle) would hang on a GPU; here every thread of the block is then waiting, and the waiting lane raises
:class:`WarpError` saying who waits where.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from nbkit.core.hw import WARP_SIZE

FULL_MASK = 0xFFFFFFFF
_POLL_S = 0.02  # how often a waiting lane looks for an abort or a deadlock

SHUFFLES = ("shfl_sync", "shfl_up_sync", "shfl_down_sync", "shfl_xor_sync")
VOTES = ("all_sync", "any_sync", "eq_sync", "ballot_sync")
MATCHES = ("match_any_sync", "match_all_sync")
_ARG_NAME = {"shfl_sync": "src_lane", "shfl_up_sync": "delta", "shfl_down_sync": "delta",
             "shfl_xor_sync": "lane_mask"}


class WarpError(RuntimeError):
    """A warp intrinsic used in a way CUDA leaves undefined (or that would hang on a GPU)."""


def _is_shuffle_value(value: object) -> bool:
    """What numba-cuda's shuffles compile: int32, int64, float32, float64 (a Python int or float is 64-bit)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, np.generic) and value.dtype in (np.int32, np.int64, np.float32, np.float64)


def shuffle_source(kind: str, lane: int, arg: int) -> int:
    """The lane that ``lane`` reads in a shuffle (PTX ``shfl.sync`` with numba-cuda's clamp values, width 32);
    ``lane`` itself when the source is out of range (up and down)."""
    b = int(arg) & 0x1F  # PTX: bval[4:0] = b[4:0]
    if kind == "shfl_sync":
        return b
    if kind == "shfl_up_sync":
        j = lane - b
        return j if j >= 0 else lane
    if kind == "shfl_down_sync":
        j = lane + b
        return j if j < WARP_SIZE else lane
    if kind == "shfl_xor_sync":
        return lane ^ b
    raise ValueError(f"not a shuffle: {kind}")


def _int32(bits: int) -> np.int32:
    return np.int32(np.uint32(bits & FULL_MASK).view(np.int32))


def _lanes(mask: int) -> list[int]:
    return [k for k in range(WARP_SIZE) if mask >> k & 1]


def _lane_list(lanes) -> str:
    lanes = sorted(lanes)
    if len(lanes) > 2 and lanes == list(range(lanes[0], lanes[-1] + 1)):
        return f"{lanes[0]}-{lanes[-1]}"
    return ", ".join(str(k) for k in lanes)


@dataclass(eq=False)
class _Meeting:
    """One call of an intrinsic by the lanes of one mask: who has arrived with what, then everyone's result."""

    kind: str
    mask: int
    warp: int
    serial: int  # per warp, in the order meetings opened (syncwarp's serial orders memory in the tracer)
    arrived: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # lane -> (value, argument)
    results: dict[int, Any] | None = None  # set when complete


class BlockWarps:
    """The warps of one simulated block: where each lane waits, which lanes have returned, the open meetings.

    ``at_barrier(handle)`` and ``aborted(handle)`` ask the simulator about one of its threads (the handle given to
    :meth:`register`): waiting at ``cuda.syncthreads()``, told to stop because another thread raised. ``pause()``
    lets the block's other threads run while a lane waits, where they are greenlets on one OS thread
    (:mod:`nbkit.core.fibers`); without it a lane waits on a condition, for threads that run on OS threads.
    """

    def __init__(self, kernel: str, block_idx: tuple[int, int, int], block_dim: tuple[int, int, int],
                 grid_dim: tuple[int, int, int], at_barrier: Callable[[Any], bool],
                 aborted: Callable[[Any], bool], pause: Callable[[], None] | None = None) -> None:
        self.kernel = kernel
        self.block_idx = tuple(int(v) for v in block_idx)
        self.block_dim = tuple(int(v) for v in block_dim)
        self.grid_dim = tuple(int(v) for v in grid_dim)
        self.threads = int(np.prod(self.block_dim))
        self._at_barrier = at_barrier
        self._aborted = aborted
        self._pause = pause
        self._cond = threading.Condition()
        self._handles: dict[int, Any] = {}
        self._exited: set[int] = set()
        self._open: dict[tuple[int, int], _Meeting] = {}  # (warp, mask) -> the meeting still gathering lanes
        self._waiting: dict[int, _Meeting] = {}  # thread id -> the meeting it waits in
        self._in_activemask: set[int] = set()
        self._active: dict[int, _Meeting] = {}  # warp -> the lanes calling cuda.activemask() together
        self._serial = [0] * (-(-self.threads // WARP_SIZE))
        self._deadlock: str | None = None  # the report, once a lane found that no lane can come

    def _wait(self) -> None:
        """Let the other lanes run: ``pause()`` when the simulator runs the block's threads as greenlets, else
        wait for a notification (or the next poll) with the lock released."""
        if self._pause is not None:
            self._pause()
        else:
            self._cond.wait(_POLL_S)

    # ---- what the simulator tells us
    def register(self, tid: int, handle: Any) -> None:
        """Thread ``tid`` (linear id in the block) exists; ``handle`` is what at_barrier/aborted are asked about."""
        with self._cond:
            self._handles[tid] = handle

    def exited(self, tid: int) -> None:
        """Thread ``tid`` returned (or raised): it is inactive from now on; meetings no longer wait for it."""
        with self._cond:
            self._exited.add(tid)
            if self._open:  # (most kernels open none: every thread of every block ends here)
                warp = tid // WARP_SIZE
                for (w, _mask), meeting in list(self._open.items()):
                    if w == warp:
                        self._try_complete(meeting)
            if self._pause is None:  # lanes on OS threads wait on the condition; greenlets pause instead
                self._cond.notify_all()

    # ---- names in messages
    def _dims(self, v: tuple[int, ...], dims: tuple[int, ...]) -> str:
        n = 3 if dims[2] > 1 else 2 if dims[1] > 1 else 1
        return f"({v[0]})" if n == 1 else str(tuple(v[:n]))

    def thread_index(self, tid: int) -> tuple[int, int, int]:
        bx, by, _ = self.block_dim
        return tid % bx, tid // bx % by, tid // (bx * by)

    def who(self, tid: int) -> str:
        warp, lane = divmod(tid, WARP_SIZE)
        return (f"kernel {self.kernel}, block {self._dims(self.block_idx, self.grid_dim)}, thread "
                f"{self._dims(self.thread_index(tid), self.block_dim)} (warp {warp}, lane {lane})")

    def lanes_in_warp(self, warp: int) -> int:
        return max(0, min(WARP_SIZE, self.threads - warp * WARP_SIZE))

    def _absent(self, warp: int, lane: int, mask: int) -> str | None:
        """Why ``lane`` of ``warp`` does not take part in a meeting of ``mask``; None if it does (or will)."""
        n = self.lanes_in_warp(warp)
        if lane >= n:
            return (f"lane {lane} does not exist: the block has {self.threads} threads, so warp {warp} has lanes "
                    f"0-{n - 1}")
        if not mask >> lane & 1:
            return f"lane {lane} is not in the mask {mask:#010x}"
        if warp * WARP_SIZE + lane in self._exited:
            return f"lane {lane} has returned from the kernel"
        return None

    def _state(self, tid: int) -> str:
        meeting = self._waiting.get(tid)
        if meeting is not None:
            return f"waits in cuda.{meeting.kind}(mask={meeting.mask:#010x})"
        if tid in self._in_activemask:
            return "waits in cuda.activemask()"
        handle = self._handles.get(tid)
        if handle is not None and self._at_barrier(handle):
            return "waits at cuda.syncthreads()"
        return "runs"

    # ---- meetings
    def meet(self, tid: int, kind: str, mask: Any, value: Any = None, arg: Any = None) -> tuple[Any, int]:
        """Lane ``tid`` calls ``cuda.<kind>(mask, ...)``: wait for the mask's other active lanes, then return
        (this lane's result, the meeting's serial number in its warp)."""
        warp, lane = divmod(tid, WARP_SIZE)
        mask = int(mask) & FULL_MASK
        if not mask >> lane & 1:
            raise WarpError(f"cuda.{kind}: {self.who(tid)} called it with mask {mask:#010x}, which does not name "
                            f"lane {lane} itself. CUDA leaves this undefined: every calling lane must have its own "
                            f"bit set (0xFFFFFFFF names all 32 lanes).")
        handle = self._handles.get(tid)
        with self._cond:
            meeting = self._open.get((warp, mask))
            if meeting is None:
                meeting = _Meeting(kind, mask, warp, self._serial[warp])
                self._serial[warp] += 1
                self._open[(warp, mask)] = meeting
            elif meeting.kind != kind:
                raise WarpError(f"cuda.{kind}: {self.who(tid)} called it with mask {mask:#010x} while lanes "
                                f"{_lane_list(meeting.arrived)} of that mask wait in cuda.{meeting.kind}. CUDA leaves "
                                f"this undefined: every lane the mask names must call the same intrinsic.")
            meeting.arrived[lane] = (value, arg)
            self._waiting[tid] = meeting
            try:
                self._try_complete(meeting)
                while meeting.results is None:
                    self._wait()
                    if handle is not None and self._aborted(handle):
                        raise RuntimeError("abort flag set while waiting in a warp intrinsic")
                    if meeting.results is None:
                        self._check_deadlock(tid, meeting)
            finally:
                self._waiting.pop(tid, None)
        return meeting.results[lane], meeting.serial

    def _try_complete(self, meeting: _Meeting) -> None:
        """Complete the meeting if every active lane its mask names has arrived (called with the lock held)."""
        if meeting.results is not None:
            return
        expected = [k for k in _lanes(meeting.mask) if self._absent(meeting.warp, k, meeting.mask) is None]
        if any(k not in meeting.arrived for k in expected):
            return
        meeting.results = self._results(meeting)
        del self._open[(meeting.warp, meeting.mask)]
        self._cond.notify_all()

    def _results(self, m: _Meeting) -> dict[int, Any]:
        lanes = sorted(m.arrived)
        if m.kind == "syncwarp":
            return dict.fromkeys(lanes)
        if m.kind in SHUFFLES:
            out = {}
            for k in lanes:
                value, arg = m.arrived[k]
                j = shuffle_source(m.kind, k, arg)
                if j in m.arrived:
                    out[k] = m.arrived[j][0]
                else:
                    tid = m.warp * WARP_SIZE + k
                    why = self._absent(m.warp, j, m.mask) or f"lane {j} has not called it"
                    out[k] = Undefined(f"cuda.{m.kind}(mask={m.mask:#010x}, value, {_ARG_NAME[m.kind]}={arg}) in "
                                       f"{self.who(tid)} read lane {j}, but {why}: CUDA leaves that value undefined "
                                       f"(any value is possible on a GPU)")
            return out
        if m.kind in VOTES:
            votes = {k: bool(m.arrived[k][0]) for k in lanes}
            if m.kind == "ballot_sync":
                result = _int32(sum(1 << k for k, v in votes.items() if v))
            elif m.kind == "all_sync":
                result = all(votes.values())
            elif m.kind == "any_sync":
                result = any(votes.values())
            else:
                result = len(set(votes.values())) == 1
            return dict.fromkeys(lanes, result)
        if m.kind == "match_any_sync":
            return {k: _int32(sum(1 << j for j in lanes if m.arrived[j][0] == m.arrived[k][0])) for k in lanes}
        if m.kind == "match_all_sync":
            same = all(m.arrived[j][0] == m.arrived[lanes[0]][0] for j in lanes)
            bits = _int32(sum(1 << j for j in lanes)) if same else np.int32(0)
            return dict.fromkeys(lanes, (bits, same))
        raise ValueError(f"unknown warp intrinsic {m.kind}")

    def _check_deadlock(self, tid: int, meeting: _Meeting) -> None:
        """Raise if no lane can ever come: every live thread of the block waits and no meeting is complete.

        Every lane waiting in a meeting then raises the same report: the simulator may miss the exception of a
        thread that ends quickly, and a lane left waiting would hang the launch.
        """
        if self._deadlock is not None:
            raise WarpError(self._deadlock)
        if len(self._handles) < self.threads or self._in_activemask:
            return
        for other in range(self.threads):
            if other in self._exited:
                continue
            waiting_in = self._waiting.get(other)
            if waiting_in is not None:
                if waiting_in.results is not None:
                    return  # about to wake up
                continue
            handle = self._handles.get(other)
            if handle is None or not self._at_barrier(handle):
                return  # still running: it may yet come
        missing = [k for k in _lanes(meeting.mask)
                   if self._absent(meeting.warp, k, meeting.mask) is None and k not in meeting.arrived]
        base = meeting.warp * WARP_SIZE
        states = "; ".join(f"lane {k} {self._state(base + k)}" for k in missing)
        self._deadlock = (f"cuda.{meeting.kind}(mask={meeting.mask:#010x}): {self.who(tid)} waits for lanes "
                          f"{_lane_list(missing)}, which never come: {states}. Every thread of the block is waiting, "
                          f"so on a GPU this kernel would hang (or give undefined results): every active lane named "
                          f"in the mask must reach the same warp intrinsic.")
        self._cond.notify_all()
        raise WarpError(self._deadlock)

    def activemask(self, tid: int) -> np.uint32:
        """``cuda.activemask()``: the lanes of this warp that have not returned. The lanes that call it together
        (like converged lanes on a GPU) get one answer, once every other lane of the warp waits or has returned."""
        warp = tid // WARP_SIZE
        handle = self._handles.get(tid)
        base, n = warp * WARP_SIZE, self.lanes_in_warp(warp)
        with self._cond:
            meeting = self._active.get(warp)
            if meeting is None:
                meeting = self._active[warp] = _Meeting("activemask", FULL_MASK, warp, -1)
            meeting.arrived[tid - base] = (None, None)
            self._in_activemask.add(tid)
            try:
                while meeting.results is None:
                    if all(t - base in meeting.arrived or t in self._exited or t in self._waiting
                           or (t in self._handles and self._at_barrier(self._handles[t]))
                           for t in range(base, base + n)):
                        bits = np.uint32(sum(1 << (t - base) for t in range(base, base + n) if t not in self._exited))
                        meeting.results = dict.fromkeys(meeting.arrived, bits)
                        del self._active[warp]
                        self._cond.notify_all()
                        break
                    self._wait()
                    if handle is not None and self._aborted(handle):
                        raise RuntimeError("abort flag set while waiting in cuda.activemask()")
            finally:
                self._in_activemask.discard(tid)
            return meeting.results[tid - base]


def check_shuffle_value(kind: str, value: object) -> None:
    """What numba-cuda refuses to compile is refused here too (a bool, a uint32, an array, ...)."""
    if not isinstance(value, Undefined) and not _is_shuffle_value(value):
        raise TypeError(f"cuda.{kind} only supports 32- and 64-bit ints and floats (int32, int64, float32, "
                        f"float64), as numba-cuda compiles it; got {type(value).__name__} {value!r}.")


class Undefined:
    """The value a shuffle read from a lane that does not take part: CUDA leaves it undefined.

    Why not an error at once: a correct kernel may read such a value and never use it (lanes 8-15 of a half-warp
    reduction with mask 0xFFFF read lanes 16-23; only lane 0's sum is kept). So, like a NaN, it spreads through
    arithmetic and further shuffles, and raises :class:`WarpError`, naming the read, where it would matter: stored
    to memory, converted to a number (``math.*``, an index), or deciding a branch.
    """

    __slots__ = ("why",)
    __array_ufunc__ = None  # NumPy scalars hand arithmetic with it back to Python, and so to the methods below

    def __init__(self, why: str) -> None:
        self.why = why

    def _used(self, *_args: object) -> Any:
        raise WarpError(f"an undefined value was used: {self.why}. Use only results of lanes whose source lane took "
                        f"part in the shuffle, or name every lane you read in the mask.")

    def _spread(self, *_args: object) -> "Undefined":
        return self

    __bool__ = __float__ = __int__ = __index__ = __complex__ = __array__ = __len__ = __iter__ = _used
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _spread
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = _spread
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = __lshift__ = __rlshift__ = _spread
    __rshift__ = __rrshift__ = __invert__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _spread
    __hash__ = None

    def __repr__(self) -> str:
        return f"<undefined: {self.why}>"


def lanemask_lt(lane: int) -> np.uint32:
    """``cuda.lanemask_lt()``: the lanes below this one, active or not."""
    return np.uint32((1 << lane) - 1)


def popc(value: object) -> int:
    """``cuda.popc`` of the value's bit pattern (the simulators' own miscounts negative ints, e.g. a ballot with
    lane 31's bit): an int32/uint32 has 32 bits, a Python int is numba's int64."""
    if isinstance(value, np.integer):
        bits = value.dtype.itemsize * 8
    else:
        bits = 64
    return bin(int(value) & ((1 << bits) - 1)).count("1")
