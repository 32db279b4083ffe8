"""What follows from the records of a traced launch: warp requests, sectors, bank conflicts, races, maps.

Why apart from recording: the records are turned into element numbers, access sites and requests once,
vectorised, after the launch; every question (sectors per request, who wrote what, races) is a NumPy query
on them. The memory model behind the numbers is :mod:`nbkit.tracer.memory`.
"""

from __future__ import annotations

import bisect
import dis
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

import numpy as np

from nbkit.tracer.memory import ATOMIC, OPS, READ, SECTOR_BYTES, SPACES, WARP_SIZE, WRITE
from nbkit.tracer.record import ArrayInfo, Recorder, Site, flat_indices
from nbkit.tracer.requests import Request, RequestTable

_REC_DTYPE = np.dtype([("block", np.int32), ("thread", np.int32), ("warp", np.int32), ("array", np.int16),
                       ("element", np.int64), ("op", np.int8), ("site", np.int32), ("epoch", np.int32),
                       ("wsync", np.int32), ("seq", np.int64)])


@dataclass(frozen=True)
class Race:
    """Two threads of one block touching the same shared element between the same pair of barriers.

    ``first`` and ``second`` are in *program order* (the order one thread executes the two accesses between those
    barriers), not in the order the simulator happened to run them, so the same kernel gives the same race, kind
    and advice in every run. ``later_iteration``: the second access comes in a later iteration of a loop than the
    first (e.g. ``buf[t] += buf[t + stride]`` read one step after another thread's write).
    """

    array: str
    element: str  # e.g. "sA[0, 6]"
    block: tuple[int, ...]
    kind: str  # "read-after-write", "write-after-read" or "write-after-write" (in program order)
    first_thread: tuple[int, ...]
    first_op: str
    first_site: Site
    second_thread: tuple[int, ...]
    second_op: str
    second_site: Site
    epoch: int
    later_iteration: bool = False

    def __str__(self) -> str:
        verb = {"read": "reads", "write": "writes", "atomic": "atomically updates"}
        return (f"block {_tup(self.block)}: thread {_tup(self.second_thread)} {verb[self.second_op]} {self.element} "
                f"(line {self.second_site.line}) that thread {_tup(self.first_thread)} {verb[self.first_op]} "
                f"(line {self.first_site.line}) with no syncthreads between ({self.kind} hazard, "
                f"after {self.epoch} barrier(s))")

    @property
    def missing_barrier(self) -> str:
        """Where a ``cuda.syncthreads()`` is missing, from the program order of the two accesses."""
        a, b = self.first_site.line, self.second_site.line
        if self.first_site == self.second_site and not self.later_iteration:
            return f"no barrier can order the two: both threads run line {a} between the same barriers"
        if self.later_iteration:
            return (f"a cuda.syncthreads() is missing inside the loop, after line {a} ({self.first_op}) and before "
                    f"line {b} ({self.second_op}) runs in the next iteration")
        return f"a cuda.syncthreads() is missing after line {a} ({self.first_op}) and before line {b} ({self.second_op})"


@dataclass(frozen=True)
class UninitialisedRead:
    """A thread read a shared-memory element that no thread of its block had written in this launch."""

    array: str
    element: str  # e.g. "buf[64]"
    block: tuple[int, ...]
    thread: tuple[int, ...]
    site: Site
    epoch: int

    def __str__(self) -> str:
        return (f"block {_tup(self.block)}: thread {_tup(self.thread)} reads {self.element} (line {self.site.line}) "
                f"before any thread of the block wrote it (uninitialised shared memory: on a GPU it holds whatever "
                f"was there; in nbkit's simulator NaN, or a sentinel for integers)")


@dataclass(frozen=True)
class BarrierMismatch:
    """Threads of one block that did not all wait at the same ``cuda.syncthreads()`` (undefined behaviour).

    ``number`` counts barriers (1 = each thread's first); ``waited`` maps a barrier's line to the threads (linear
    ids) that waited there as their ``number``-th; ``skipped`` are the threads that left the kernel (at its end,
    not by a ``return``) without waiting there. ``threads`` formats linear ids as the launch writes them.
    """

    block: tuple[int, ...]
    number: int
    waited: dict[int, tuple[int, ...]]
    skipped: tuple[int, ...]
    block_dim: tuple[int, int, int]
    blocks: int = 1  # blocks of the launch where barriers diverged

    def threads(self, ids: Iterable[int]) -> str:
        """``threads 16..31`` (1-D blocks) or ``threads with linear index 16..31 (x fastest)``."""
        text = _ranges(sorted(ids))
        return f"threads {text}" if self.block_dim[1] * self.block_dim[2] == 1 else \
            f"threads with linear index {text} (x fastest)"

    def __str__(self) -> str:
        (line, first), *others = sorted(self.waited.items(), key=lambda kv: min(kv[1]))
        if self.skipped:
            text = (f"{self.threads(self.skipped)} of block {_tup(self.block)} never reached the cuda.syncthreads() "
                    f"on line {line}; {self.threads(first)} waited there")
        else:
            text = f"in block {_tup(self.block)}, {self.threads(first)} waited at the cuda.syncthreads() on line {line}"
        for other_line, ids in others:
            text += f"; {self.threads(ids)} waited at the one on line {other_line} instead"
        text += f" (barrier number {self.number} of each thread)"
        if self.blocks > 1:
            text += f", and likewise in {self.blocks - 1} more block(s)"
        return text


def _ranges(ids: list[int], most: int = 6) -> str:
    """0..15, 20, 22..31: consecutive ids as ranges (at most ``most`` pieces, then how many more)."""
    pieces, start = [], None
    for k, v in enumerate(ids):
        if start is None:
            start = v
        if k + 1 == len(ids) or ids[k + 1] != v + 1:
            pieces.append(str(start) if start == v else f"{start}..{v}")
            start = None
    if len(pieces) > most:
        return ", ".join(pieces[:most]) + f" and {len(pieces) - most} more ranges"
    return ", ".join(pieces)


def _tup(t: tuple[int, ...]) -> str:
    return f"({t[0]})" if len(t) == 1 else str(tuple(t))


@dataclass
class WriteMap:
    """Who wrote each element of one array (linear block and thread ids; -1 = never written)."""

    array: str
    block: np.ndarray  # linear block id of the first writer, -1 if never written
    thread: np.ndarray  # linear thread id (within its block) of the first writer, -1 if never written
    writers: np.ndarray  # number of distinct threads that wrote the element

    @property
    def never_written(self) -> np.ndarray:
        return self.writers == 0

    @property
    def written_by_several(self) -> np.ndarray:
        return self.writers > 1


class Trace:
    """The recorded accesses of one launch and what follows from them (sectors, conflicts, races, maps).

    ``records`` is a NumPy structured array, one row per element access in the simulator's order: ``block``
    and ``thread`` (linear ids; :meth:`block_index` / :meth:`thread_index` give (x, y, z)), ``warp``
    (thread // 32), ``array`` (index into ``arrays``), ``element`` (C-order flat index), ``op`` (0 read,
    1 write, 2 atomic), ``site`` (index into ``sites``: one subscript in the source), ``epoch`` (barriers
    this thread had passed), ``wsync`` (``cuda.syncwarp()`` calls this thread had passed) and ``seq``.
    """

    def __init__(self, rec: Recorder, grid: tuple[int, int, int], block: tuple[int, int, int], kernel_name: str,
                 launch_ndim: tuple[int, int]):
        self.arrays: list[ArrayInfo] = rec.arrays
        self.grid = grid
        self.block = block
        self.kernel_name = kernel_name
        self._ndim = launch_ndim
        self.sites: list[Site] = []
        self._syncwarps = rec.syncwarps
        self.records = self._build(rec)
        self._req: RequestTable | None = None
        self._barrier_log = rec.barriers
        self._return_lines = rec.return_lines
        self._occurrence: np.ndarray | None = None

    # ---- construction
    def _build(self, rec: Recorder) -> np.ndarray:
        log = rec.log
        if not log:
            return np.zeros(0, dtype=_REC_DTYPE)
        blk, tid, aid, idx, op, code, lasti, epoch, wsync = zip(*log)
        logged_aid = np.array(aid, dtype=np.int64)
        aid = logged_aid.copy()
        # element numbers, per traced array (views map through their flat-index table to their array)
        flat = np.zeros(len(log), dtype=np.int64)
        owner_rows = []
        flats = []
        for a in np.unique(logged_aid):
            rows = np.flatnonzero(logged_aid == a)
            if a >= 0:
                f, own = flat_indices([idx[r] for r in rows], self.arrays[a].shape)
            else:
                base, fm = rec.views[int(a)]
                f, own = flat_indices([idx[r] for r in rows], fm.shape)
                f = fm.ravel()[f]
                aid[rows] = base
            owner_rows.append(rows[own])
            flats.append(f)
        rows = np.concatenate(owner_rows)
        flat = np.concatenate(flats)
        order = np.argsort(rows, kind="stable")  # back to the order of the log (slice writes expand in place)
        rows, flat = rows[order], flat[order]
        out = np.zeros(len(rows), dtype=_REC_DTYPE)
        out["block"] = np.array(blk, dtype=np.int32)[rows]
        out["thread"] = np.array(tid, dtype=np.int32)[rows]
        out["warp"] = out["thread"] // WARP_SIZE
        out["array"] = aid[rows]
        out["element"] = flat
        out["op"] = np.array(op, dtype=np.int8)[rows]
        out["epoch"] = np.array(epoch, dtype=np.int32)[rows]
        out["wsync"] = np.array(wsync, dtype=np.int32)[rows]
        out["seq"] = np.arange(len(rows))
        # Sites on one line are separate instructions (e.g. `A[k, r] if t else A[r, k]`): keep them apart.
        # A specialised instruction reports an offset inside its inline cache: map it to the instruction.
        keys = list(zip(code, lasti))
        site_of: dict = {}
        by_instruction: dict = {}
        starts: list[int] = []
        for c, off in set(keys):
            start = _instruction_start(c, off)
            sid = by_instruction.get((c, start))
            if sid is None:
                sid = by_instruction[(c, start)] = len(self.sites)
                self.sites.append(Site(c.co_filename, _line_of(c, start), c.co_name))
                starts.append(start)
            site_of[(c, off)] = sid
        # number sites in source order (on one line: in instruction order), so ids are stable from run to run
        order_sites = sorted(range(len(self.sites)),
                             key=lambda k: (self.sites[k].file, self.sites[k].line, starts[k], self.sites[k].function, k))
        renumber = {old: new for new, old in enumerate(order_sites)}
        self.sites = [self.sites[k] for k in order_sites]
        site_ids = np.fromiter(map(site_of.__getitem__, keys), dtype=np.int64, count=len(keys))
        out["site"] = np.array([renumber[k] for k in range(len(renumber))], dtype=np.int64)[site_ids][rows]
        return out

    # ---- names and ids
    def array_id(self, array: str) -> int:
        for i, info in enumerate(self.arrays):
            if info.name == array:
                return i
        raise KeyError(f"no traced array named {array!r}; traced arrays: {', '.join(a.name for a in self.arrays)}")

    def array_info(self, array: str) -> ArrayInfo:
        return self.arrays[self.array_id(array)]

    def block_index(self, blin: int) -> tuple[int, ...]:
        """Linear block id -> (x, y, z) trimmed to the launch's grid dimensions."""
        x = blin % self.grid[0]
        y = (blin // self.grid[0]) % self.grid[1]
        z = blin // (self.grid[0] * self.grid[1])
        return (x, y, z)[:self._ndim[0]]

    def thread_index(self, tlin: int) -> tuple[int, ...]:
        """Linear thread id within a block -> (x, y, z) trimmed to the launch's block dimensions."""
        x = tlin % self.block[0]
        y = (tlin // self.block[0]) % self.block[1]
        z = tlin // (self.block[0] * self.block[1])
        return (x, y, z)[:self._ndim[1]]

    def _block_lin(self, b: int | Iterable[int]) -> int:
        if isinstance(b, (int, np.integer)):
            return int(b)
        b = tuple(b) + (0,) * (3 - len(tuple(b)))
        return b[0] + self.grid[0] * (b[1] + self.grid[1] * b[2])

    def _thread_lin(self, t: int | Iterable[int]) -> int:
        if isinstance(t, (int, np.integer)):
            return int(t)
        t = tuple(t) + (0,) * (3 - len(tuple(t)))
        return t[0] + self.block[0] * (t[1] + self.block[1] * t[2])

    def _mask(self, space: str | None = None, array: str | None = None, op: str | None = None) -> np.ndarray:
        r = self.records
        m = np.ones(len(r), dtype=bool)
        if space is not None:
            if space not in SPACES:
                raise ValueError(f"space must be one of {SPACES}, got {space!r}")
            in_space = np.array([a.space == space for a in self.arrays] + [False], dtype=bool)
            m &= in_space[r["array"]]
        if array is not None:
            m &= r["array"] == self.array_id(array)
        if op is not None:
            if op not in OPS:
                raise ValueError(f"op must be one of {OPS}, got {op!r}")
            m &= r["op"] == OPS.index(op)
        return m

    # ---- warp requests
    def _requests_table(self) -> RequestTable:
        """The one table of warp requests, built on first use."""
        if self._req is None:
            self._req = RequestTable(self.records, self.arrays, self.sites, self.block_index)
        return self._req

    def _req_mask(self, space: str | None, array: str | None, op: str | None) -> np.ndarray:
        q = self._requests_table()
        m = np.ones(q.count, dtype=bool)
        if space is not None:
            if space not in SPACES:
                raise ValueError(f"space must be one of {SPACES}, got {space!r}")
            m &= q.space == SPACES.index(space)
        if array is not None:
            m &= q.array == self.array_id(array)
        if op is not None:
            if op not in OPS:
                raise ValueError(f"op must be one of {OPS}, got {op!r}")
            m &= q.op == OPS.index(op)
        return m

    def requests(self, space: str | None = None, array: str | None = None, op: str | None = None) -> list[Request]:
        """The warp-wide requests, optionally only of one space ('global'/'shared'), array or op."""
        q = self._requests_table()
        return [Request(q, int(i)) for i in np.flatnonzero(self._req_mask(space, array, op))]

    def sectors_per_request(self, array: str | None = None, op: str | None = None) -> np.ndarray:
        """32-byte sectors touched by each global-memory warp request (4 for 32 consecutive float32)."""
        return self._requests_table().sectors[self._req_mask("global", array, op)]

    def bytes_used(self, space: str = "global", array: str | None = None, op: str | None = None) -> int:
        """Bytes the lanes asked for (each distinct element of a request counted once)."""
        return int(self._requests_table().bytes_used[self._req_mask(space, array, op)].sum())

    def bytes_moved(self, array: str | None = None, op: str | None = None) -> int:
        """Bytes of global memory moved: 32 per sector per request (caches not modelled)."""
        return int(self.sectors_per_request(array, op).sum()) * SECTOR_BYTES

    def efficiency(self, array: str | None = None, op: str | None = None) -> float:
        """bytes_used / bytes_moved of global requests: 1.0 when every byte moved was wanted."""
        moved = self.bytes_moved(array, op)
        return self.bytes_used("global", array, op) / moved if moved else float("nan")

    def bank_conflicts(self, array: str | None = None, op: str | None = None) -> np.ndarray:
        """n-way conflict of each shared-memory warp request (1 = conflict-free; a broadcast counts once)."""
        return self._requests_table().ways[self._req_mask("shared", array, op)]

    # ---- maps
    def reads_per_element(self, array: str, block: int | tuple | None = None) -> np.ndarray:
        """How many times each element was read (atomics count as reads too), shaped like the array."""
        info = self.array_info(array)
        m = self._mask(array=array) & (self.records["op"] != WRITE)
        if block is not None:
            m &= self.records["block"] == self._block_lin(block)
        return np.bincount(self.records["element"][m], minlength=info.size).reshape(info.shape)

    def write_map(self, array: str, block: int | tuple | None = None) -> WriteMap:
        """Which thread wrote each element; elements never written or written by several threads are marked."""
        info = self.array_info(array)
        r = self.records
        m = self._mask(array=array) & (r["op"] != READ)
        if block is not None:
            m &= r["block"] == self._block_lin(block)
        el, blk, th = r["element"][m], r["block"][m], r["thread"][m]
        first_block = np.full(info.size, -1, dtype=np.int64)
        first_thread = np.full(info.size, -1, dtype=np.int64)
        rev = slice(None, None, -1)  # assign in reverse order so the first writer wins
        first_block[el[rev]] = blk[rev]
        first_thread[el[rev]] = th[rev]
        writers = np.zeros(info.size, dtype=np.int64)
        if el.size:
            uniq = np.unique(np.stack([el, blk.astype(np.int64), th.astype(np.int64)], axis=1), axis=0)
            writers = np.bincount(uniq[:, 0], minlength=info.size)
        return WriteMap(array, first_block.reshape(info.shape), first_thread.reshape(info.shape),
                        writers.reshape(info.shape))

    def read_map(self, array: str, thread: tuple) -> np.ndarray:
        """How many times one thread read each element; ``thread`` = (block, thread), each an int or (x, y, z)."""
        info = self.array_info(array)
        b, t = thread
        r = self.records
        m = (self._mask(array=array) & (r["op"] != WRITE) & (r["block"] == self._block_lin(b))
             & (r["thread"] == self._thread_lin(t)))
        return np.bincount(r["element"][m], minlength=info.size).reshape(info.shape)

    # ---- races, reads of uninitialised memory, barriers
    def races(self) -> list[Race]:
        """Shared-memory hazards: two threads of a block on one element between the same barriers, one writing.

        One entry per (block, element, barrier epoch). The simulator runs a block's threads one after another in a
        fixed order (switching only at barriers), so a kernel can give the right answer there and still race on a
        GPU; this is what compute-sanitizer racecheck reports there. The pair named is chosen and ordered
        independently of that order (see :class:`Race`).

        ``cuda.syncwarp()`` orders memory among the lanes that meet there (CUDA's memory-ordering guarantee of
        ``__syncwarp``): two accesses of lanes of one warp are no race when one lane passed a syncwarp after its
        access and the other passed the same syncwarp (the same meeting) before its own. Ordering through chains
        of such meetings with a third lane is not followed, and shuffles order nothing (registers, not memory).
        """
        r = self.records
        shared = self._mask(space="shared")
        if not shared.any():
            return []
        q = self._requests_table()
        addr = q.addr
        idx = np.flatnonzero(shared)
        keys = np.stack([r["block"][idx], r["epoch"][idx], addr[idx]], axis=1)
        # within a group: by thread, then each thread's own (program) order: the same pair in every run
        order = np.lexsort((r["seq"][idx], r["thread"][idx], keys[:, 2], keys[:, 1], keys[:, 0]))
        idx, keys = idx[order], keys[order]
        new = np.ones(len(idx), dtype=bool)
        new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], len(idx))
        # groups worth a look: a plain write, or an atomic and a plain read; and at least two threads
        gid = np.cumsum(new) - 1
        ops = r["op"][idx]
        has = {}
        for code in (READ, WRITE, ATOMIC):
            has[code] = np.zeros(len(starts), dtype=bool)
            np.logical_or.at(has[code], gid, ops == code)
        has_write = has[WRITE] | (has[ATOMIC] & has[READ])
        tmin = np.full(len(starts), np.iinfo(np.int32).max)
        tmax = np.full(len(starts), -1)
        np.minimum.at(tmin, gid, r["thread"][idx])
        np.maximum.at(tmax, gid, r["thread"][idx])
        out = []
        orders: dict = {}
        for g in np.flatnonzero(has_write & (tmin != tmax)):
            group = idx[starts[g]:ends[g]]
            pair = _first_hazard(r["thread"][group], r["op"][group], self._warp_ordered(group))
            if pair is None:
                continue
            a, b = group[pair[0]], group[pair[1]]
            a, b, later_iteration = self._program_order(int(a), int(b), orders)
            info = self.arrays[int(r["array"][b])]
            oa, ob = OPS[int(r["op"][a])], OPS[int(r["op"][b])]
            kind = ("write-after-write" if oa != "read" and ob != "read"
                    else "read-after-write" if oa != "read" else "write-after-read")
            out.append(Race(info.name, info.label(int(r["element"][b])), self.block_index(int(r["block"][b])), kind,
                            self.thread_index(int(r["thread"][a])), oa, self.sites[int(r["site"][a])],
                            self.thread_index(int(r["thread"][b])), ob, self.sites[int(r["site"][b])],
                            int(r["epoch"][b]), later_iteration))
        return out

    def _occurrences(self) -> np.ndarray:
        """Per record: how many times its thread had executed the same site before, since its last barrier."""
        if self._occurrence is None:
            r = self.records
            order = np.lexsort((r["seq"], r["site"], r["epoch"], r["thread"], r["block"]))
            k = np.stack([r["block"], r["thread"], r["epoch"], r["site"]], axis=1)[order]
            new = np.ones(len(order), dtype=bool)
            new[1:] = np.any(k[1:] != k[:-1], axis=1)
            start_of = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
            occ = np.empty(len(order), dtype=np.int64)
            occ[order] = np.arange(len(order)) - start_of
            self._occurrence = occ
        return self._occurrence

    def _program_order(self, a: int, b: int, cache: dict) -> tuple[int, int, bool]:
        """Records a and b (two threads, one block and epoch) as (earlier, later, later comes in a later iteration).

        Program order is read off a thread that executes both accesses (the same site and the same number of times
        since the barrier): the lowest such thread of the block. Without one, source order decides: an access
        executed more often since the barrier comes later, then the one further down the source.

        ``cache`` (one per :meth:`races` call) keeps, per block and epoch, each access key's threads with the position
        of their first execution of it, and each pair's answer: a kernel's races repeat the same few pairs of sites
        on many elements (measured: 2.4 s of a run of the probe answers' checks went here when each race scanned its
        block and epoch again).
        """
        r = self.records
        occ = self._occurrences()
        ka, kb = (int(r["site"][a]), int(occ[a])), (int(r["site"][b]), int(occ[b]))
        blk, ep = int(r["block"][a]), int(r["epoch"][a])
        if ka == kb:
            a_first = True  # one access site: the pair's order does not matter for the advice
        else:
            a_first = cache.get((blk, ep, ka, kb))
            if a_first is None:
                (ta, sa), (tb, sb) = self._first_executions(blk, ep, ka, cache), self._first_executions(blk, ep, kb, cache)
                _, ia, ib = np.intersect1d(ta, tb, assume_unique=True, return_indices=True)
                if len(ia):  # the lowest thread that executes both
                    a_first = bool(sa[ia[0]] < sb[ib[0]])
                else:
                    a_first = (ka[1], ka[0]) < (kb[1], kb[0])
                cache[(blk, ep, ka, kb)] = a_first
        first, second = (a, b) if a_first else (b, a)
        k1, k2 = (ka, kb) if a_first else (kb, ka)
        return first, second, ka != kb and (k2[1] > k1[1] or k2[0] <= k1[0])

    def _first_executions(self, blk: int, ep: int, key: tuple[int, int], cache: dict) -> tuple[np.ndarray, np.ndarray]:
        """(threads, seq) of block ``blk`` in epoch ``ep`` that execute access ``key`` (site, occurrence), sorted by
        thread, each with the ``seq`` of its first record of it."""
        found = cache.get((blk, ep, key))
        if found is None:
            r = self.records
            rows = cache.get((blk, ep))
            if rows is None:
                rows = cache[(blk, ep)] = np.flatnonzero((r["block"] == blk) & (r["epoch"] == ep))
            rows = rows[(r["site"][rows] == key[0]) & (self._occurrences()[rows] == key[1])]
            threads, first = np.unique(r["thread"][rows], return_index=True)
            found = cache[(blk, ep, key)] = (threads, r["seq"][rows][first])
        return found

    def uninitialised_reads(self) -> list[UninitialisedRead]:
        """Reads of shared memory (atomics too) before any thread of the block wrote the element in this launch.

        Order-independent: a read is reported when no thread wrote the element before an earlier barrier and the
        reading thread had not written it itself; a write by another thread between the same barriers is a race
        (:meth:`races`), not reported here. Only plain writes initialise (an atomic adds to what was there). One
        entry per (block, element): the first read by barrier epoch, thread and program order.
        """
        r = self.records
        shared = self._mask(space="shared")
        if not shared.any():
            return []
        idx = np.flatnonzero(shared)
        addr = self._requests_table().addr[idx]
        blk = r["block"][idx].astype(np.int64)
        key = blk * (int(addr.max()) + 1) + addr
        uniq, inv = np.unique(key, return_inverse=True)
        ops, ep, th, seq = r["op"][idx], r["epoch"][idx].astype(np.int64), r["thread"][idx], r["seq"][idx]
        writes = ops == WRITE
        big = np.iinfo(np.int64).max
        first_epoch = np.full(len(uniq), big)
        np.minimum.at(first_epoch, inv[writes], ep[writes])
        # the writes of that first epoch: by which threads, and the first one's position
        at_first = writes & (ep == first_epoch[inv])
        wmin = np.full(len(uniq), big)
        wmax = np.full(len(uniq), -1)
        wseq = np.full(len(uniq), big)
        np.minimum.at(wmin, inv[at_first], th[at_first].astype(np.int64))
        np.maximum.at(wmax, inv[at_first], th[at_first].astype(np.int64))
        np.minimum.at(wseq, inv[at_first], seq[at_first])
        reads = ops != WRITE
        e0 = first_epoch[inv]
        alone = (wmin[inv] == wmax[inv]) & (wmin[inv] == th)  # only this thread wrote it, between those barriers
        before_own = np.where(ops == ATOMIC, seq <= wseq[inv], seq < wseq[inv])
        bad = reads & ((ep < e0) | ((ep == e0) & alone & before_own))
        if not bad.any():
            return []
        rows = np.flatnonzero(bad)
        rows = rows[np.lexsort((seq[rows], th[rows], ep[rows], key[rows]))]
        first = rows[np.unique(key[rows], return_index=True)[1]]
        first = first[np.lexsort((addr[first], ep[first], blk[first]))]
        out = []
        for k in first:
            row = idx[k]
            info = self.arrays[int(r["array"][row])]
            out.append(UninitialisedRead(info.name, info.label(int(r["element"][row])),
                                         self.block_index(int(r["block"][row])), self.thread_index(int(r["thread"][row])),
                                         self.sites[int(r["site"][row])], int(r["epoch"][row])))
        return out

    def divergent_barriers(self) -> list[BarrierMismatch]:
        """Blocks whose threads did not all wait at the same ``cuda.syncthreads()``: the first divergence of each.

        The rule (CUDA C++ Programming Guide, ``__syncthreads()``: allowed in conditional code "but only if the
        conditional evaluates identically across the entire thread block"): the n-th barrier of every thread of a
        block must be the same call site. A thread that left the kernel by a ``return`` (the bounds guard
        ``if i >= n: return``) counts as arrived at every later barrier: the PTX ISA's ``barrier.sync`` (what
        ``cuda.syncthreads()`` compiles to) waits for the *non-exited* threads of the block. A thread that reaches
        the end of the kernel having skipped a barrier others waited at (a barrier inside ``if t < stride:``) is
        divergence, whether or not the hardware would happen to let it through. Known limit: a thread that skips a
        barrier and then leaves by a ``return`` statement counts as having returned before it.
        """
        blocks: dict[int, list] = {}
        for blin, tid, sites, line in self._barrier_log:
            blocks.setdefault(blin, []).append((tid, sites, line))
        found = []
        for blin in sorted(blocks):
            d = _divergence(blocks[blin], self._return_lines)
            if d is not None:
                found.append(BarrierMismatch(self.block_index(blin), d[0], d[1], d[2], self.block))
        if found:
            found[0] = BarrierMismatch(found[0].block, found[0].number, found[0].waited, found[0].skipped,
                                         self.block, len(found))
        return found

    def _warp_ordered(self, group: np.ndarray) -> Callable[[int, int], bool] | None:
        """For the records ``group`` (one block, barrier epoch and element): whether records i and j of it are
        ordered by one cuda.syncwarp() meeting of their warp; None when the kernel never calls syncwarp."""
        if not self._syncwarps:
            return None
        r = self.records

        def passed(k: int) -> tuple[list[int], int]:
            row = group[k]
            serials = self._syncwarps.get((int(r["block"][row]), int(r["thread"][row])), [])
            return serials, int(r["wsync"][row])

        def ordered(i: int, j: int) -> bool:
            if r["warp"][group[i]] != r["warp"][group[j]]:
                return False
            (si, ci), (sj, cj) = passed(i), passed(j)
            return bool(set(si[ci:]) & set(sj[:cj]) or set(sj[cj:]) & set(si[:ci]))

        return ordered

    # ---- report
    def summary(self) -> str:
        """One line per access site: requests, sectors/request, bytes used/moved, bank conflicts."""
        q = self._requests_table()
        rows = []
        groups: dict = {}
        for i in range(q.count):
            groups.setdefault((int(q.site[i]), int(q.array[i]), int(q.op[i])), []).append(i)
        header = (f"{'array':<10} {'space':<6} {'op':<6} {'site':<28} {'requests':>8} {'lanes/req':>9} "
                  f"{'sectors/req':>11} {'bytes used':>10} {'bytes moved':>11} {'ways':>6}")
        rows.append(header)
        rows.append("-" * len(header))
        for (site, aid, op), ids in sorted(groups.items(), key=lambda kv: (self.sites[kv[0][0]].line, kv[0][1])):
            ids = np.array(ids)
            info = self.arrays[aid]
            lanes = q.nlanes[ids].mean()
            used = int(q.bytes_used[ids].sum())
            if info.space == "global":
                spr = f"{q.sectors[ids].mean():.2f}"
                moved = str(int(q.sectors[ids].sum()) * SECTOR_BYTES)
                ways = "-"
            else:
                spr, moved = "-", "-"
                ways = f"{q.ways[ids].max()}-way"
            rows.append(f"{info.name:<10} {info.space:<6} {OPS[op]:<6} {str(self.sites[site]):<28} {len(ids):>8} "
                        f"{lanes:>9.1f} {spr:>11} {used:>10} {moved:>11} {ways:>6}")
        g = self._req_mask("global", None, None)
        if g.any():
            moved = int(q.sectors[g].sum()) * SECTOR_BYTES
            rows.append(f"global memory: {int(q.bytes_used[g].sum())} bytes used of {moved} moved "
                        f"({int(q.bytes_used[g].sum()) / moved:.0%} efficiency; MODEL: no caches)")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"<Trace of {self.kernel_name}: grid {self.grid}, block {self.block}, {len(self.records)} accesses, "
                f"arrays {', '.join(a.name for a in self.arrays)}>")


def _divergence(threads: list, return_lines: frozenset) -> tuple[int, dict, tuple] | None:
    """(barrier number, line -> threads that waited there, threads that skipped it) of a block's first divergent
    barrier, or None. ``threads``: (linear id, ((site, line), ...) of its barriers, line it left the kernel on)."""
    longest = max((len(sites) for _, sites, _ in threads), default=0)
    for k in range(longest):
        waited: dict = {}
        lines: dict = {}
        skipped = []
        for tid, sites, left in threads:
            if k < len(sites):
                site, line = sites[k]
                waited.setdefault(site, []).append(tid)
                lines[site] = line
            elif left not in return_lines:  # reached the end of the kernel without waiting here
                skipped.append(tid)
        if len(waited) > 1 or (waited and skipped):
            return k + 1, {lines[s]: tuple(sorted(ids)) for s, ids in waited.items()}, tuple(sorted(skipped))
    return None


def _first_hazard(threads: np.ndarray, ops: np.ndarray,
                  ordered: Callable[[int, int], bool] | None = None) -> tuple[int, int] | None:
    """First pair of accesses by different threads with a write, not both atomic, and not ``ordered(i, j)`` (a
    syncwarp between them)."""
    n = len(threads)
    for j in range(1, n):
        for i in range(j):
            if threads[i] == threads[j]:
                continue
            if ops[i] == READ and ops[j] == READ:
                continue
            if ops[i] == ATOMIC and ops[j] == ATOMIC:
                continue
            if ordered is not None and ordered(i, j):
                continue
            return i, j
    return None


@lru_cache(maxsize=256)
def _instruction_offsets(code) -> tuple[int, ...]:
    return tuple(ins.offset for ins in dis.get_instructions(code))


def _instruction_start(code, offset: int) -> int:
    offsets = _instruction_offsets(code)
    i = bisect.bisect_right(offsets, offset) - 1
    return offsets[i] if i >= 0 else offset


def _line_of(code, offset: int) -> int:
    for start, end, line in code.co_lines():
        if start <= offset < end and line is not None:
            return line
    return code.co_firstlineno
