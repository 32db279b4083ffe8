"""Warp requests: one table per trace, built once and vectorised, and :class:`Request`, a view of one of its rows.

Why a table: a trace has up to millions of records; the totals (sectors per request, bytes moved, bank
conflicts) are columns of one table, and a :class:`Request` reads its row of the same table, so the
per-request view and the totals cannot disagree.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from nbkit.tracer import memory
from nbkit.tracer.memory import OPS, SPACES, WARP_SIZE
from nbkit.tracer.record import ArrayInfo, Site


class RequestTable:
    """The warp requests of one trace. A request is the n-th execution of one access site (of one array, one op)
    by the active lanes of one warp: lanes are grouped by how often each executed the site.

    Built from a trace's ``records``, ``arrays``, ``sites`` and ``block_index``, which it keeps for the views.
    Per record: ``rid`` (its request) and ``addr`` (byte address). Per request (``count`` of them): ``block``,
    ``warp``, ``site``, ``array``, ``op``, ``n``, ``space`` (index into SPACES), ``nlanes`` (active lanes),
    ``sectors`` (distinct 32-byte sectors), ``bytes_used`` (distinct elements x itemsize) and ``ways`` (n-way
    bank conflict). ``members[bounds[i]:bounds[i + 1]]`` are request i's records in lane order, and
    ``sector_ids[sector_bounds[i]:sector_bounds[i + 1]]`` its sectors.
    """

    def __init__(self, records: np.ndarray, arrays: list[ArrayInfo], sites: list[Site],
                 block_index: Callable[[int], tuple[int, ...]]):
        self.records, self.arrays, self.sites, self.block_index = records, arrays, sites, block_index
        r = records
        nrec = len(r)
        # n-th execution of (site, array, op) by each thread
        order = np.lexsort((r["seq"], r["op"], r["array"], r["site"], r["thread"], r["block"]))
        keys = np.stack([r["block"], r["thread"], r["site"], r["array"], r["op"]], axis=1)[order]
        new = np.ones(nrec, dtype=bool)
        if nrec:
            new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
        start = np.maximum.accumulate(np.where(new, np.arange(nrec), 0))
        nth = np.empty(nrec, dtype=np.int64)
        nth[order] = np.arange(nrec) - start
        # request = (block, warp, site, array, op, n)
        rkeys = np.stack([r["block"], r["warp"], r["site"], r["array"], r["op"], nth], axis=1)
        order2 = np.lexsort(rkeys.T[::-1])
        sk = rkeys[order2]
        new2 = np.ones(nrec, dtype=bool)
        if nrec:
            new2[1:] = np.any(sk[1:] != sk[:-1], axis=1)
        rid_sorted = np.cumsum(new2) - 1
        self.rid = np.empty(nrec, dtype=np.int64)
        self.rid[order2] = rid_sorted
        self.count = int(rid_sorted[-1] + 1) if nrec else 0
        first = order2[new2]  # one record per request (its smallest key)
        # addresses
        self.addr = np.zeros(nrec, dtype=np.int64)
        itemsize = np.zeros(nrec, dtype=np.int64)
        for aid, info in enumerate(arrays):
            sel = r["array"] == aid
            if sel.any():
                self.addr[sel] = info.addresses(r["element"][sel])
                itemsize[sel] = info.itemsize
        # each request's records, in lane order (lexsort is stable: a lane's records stay in simulator order)
        self.members = np.lexsort((r["thread"] % WARP_SIZE, self.rid))
        bins = np.arange(self.count + 1)
        self.bounds = np.searchsorted(self.rid[self.members], bins)
        self.nlanes = np.diff(self.bounds)
        sectors = memory.sectors(self.rid, self.addr, itemsize)
        self.sector_ids = sectors[:, 1]
        self.sector_bounds = np.searchsorted(sectors[:, 0], bins)
        self.sectors = np.diff(self.sector_bounds)
        distinct_elements = np.bincount(memory.distinct_pairs(self.rid, self.addr)[:, 0], minlength=self.count)
        self.bytes_used = distinct_elements * itemsize[first]  # one array, so one itemsize, per request
        self.ways = memory.bank_ways(self.rid, self.addr, itemsize, self.count)
        self.block = r["block"][first]
        self.warp = r["warp"][first]
        self.site = r["site"][first]
        self.array = r["array"][first]
        self.op = r["op"][first]
        self.n = nth[first]
        spaces = np.array([SPACES.index(a.space) for a in arrays] + [0])
        self.space = spaces[self.array] if nrec else np.zeros(0, dtype=np.int64)


class Request:
    """One warp-wide request: the n-th execution of one access site by the active lanes of one warp.

    A view of row ``index`` of its trace's :class:`RequestTable`: every field is read from there.
    """

    __slots__ = ("_table", "index")

    def __init__(self, table: RequestTable, index: int):
        self._table = table
        self.index = index

    def _info(self) -> ArrayInfo:
        return self._table.arrays[int(self._table.array[self.index])]

    def _rows(self) -> np.ndarray:
        q = self._table
        return q.members[q.bounds[self.index]:q.bounds[self.index + 1]]

    @property
    def space(self) -> str:
        return self._info().space

    @property
    def array(self) -> str:
        return self._info().name

    @property
    def op(self) -> str:
        return OPS[int(self._table.op[self.index])]

    @property
    def site(self) -> Site:
        return self._table.sites[int(self._table.site[self.index])]

    @property
    def block(self) -> tuple[int, ...]:
        return self._table.block_index(int(self._table.block[self.index]))

    @property
    def warp(self) -> int:
        return int(self._table.warp[self.index])

    @property
    def n(self) -> int:
        return int(self._table.n[self.index])

    @property
    def lanes(self) -> np.ndarray:
        """Active lane ids (0-31), one per record, in lane order."""
        return self._table.records["thread"][self._rows()] % WARP_SIZE

    @property
    def elements(self) -> np.ndarray:
        """C-order flat element index accessed by each lane."""
        return self._table.records["element"][self._rows()]

    @property
    def addresses(self) -> np.ndarray:
        """Byte address of each lane's element."""
        return self._table.addr[self._rows()]

    @property
    def itemsize(self) -> int:
        return self._info().itemsize

    @property
    def sectors(self) -> np.ndarray:
        """The distinct 32-byte sectors this request touches (global memory model), ascending."""
        q = self._table
        return q.sector_ids[q.sector_bounds[self.index]:q.sector_bounds[self.index + 1]]

    @property
    def bank_ways(self) -> int:
        """n-way bank conflict (shared memory model): most distinct 4-byte words asked of one bank."""
        return int(self._table.ways[self.index])

    def __repr__(self) -> str:
        elements = self.elements
        return (f"Request({self.op} {self.array} at {self.site}, block {self.block}, warp {self.warp}, "
                f"execution {self.n}, {len(elements)} lanes, elements {elements.min()}..{elements.max()})")
