"""The tracer's model of the memory system: its constants, and the one place sectors and bank ways are computed.

Why one place: a warp request's sectors (global memory) and n-way bank conflict (shared memory) are what the
tracer reports, per request and summed over a launch; both views must come from the same computation.
Each function works on many requests at once: ``group`` says which request each element access belongs to.
"""

from __future__ import annotations

import numpy as np

SECTOR_BYTES = 32
BANKS = 32
BANK_BYTES = 4
WARP_SIZE = 32
GLOBAL_ALIGNMENT = 256
DYNAMIC_SHARED_BASE = 1 << 24  # a model address: past any static shared array (banks do not depend on it)

SPACES = ("global", "shared")
OPS = ("read", "write", "atomic")
READ, WRITE, ATOMIC = 0, 1, 2  # codes of OPS in the records


def distinct_pairs(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The distinct (group, value) pairs, sorted by group then value: shape (n, 2)."""
    if group.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.stack([group.astype(np.int64), value.astype(np.int64)], axis=1), axis=0)


def sectors(group: np.ndarray, addr: np.ndarray, itemsize: np.ndarray) -> np.ndarray:
    """The distinct (group, 32-byte sector) pairs that element accesses at byte ``addr`` touch, sorted.

    An element covers the sectors from its first byte's to its last byte's (exactly one when it is aligned and
    at most 32 bytes).
    """
    first = addr // SECTOR_BYTES
    last = (addr + itemsize - 1) // SECTOR_BYTES
    span = int((last - first).max()) + 1 if addr.size else 1
    return distinct_pairs(np.concatenate([group] * span),
                          np.concatenate([np.minimum(first + k, last) for k in range(span)]))


def bank_ways(group: np.ndarray, addr: np.ndarray, itemsize: np.ndarray, ngroups: int) -> np.ndarray:
    """n-way bank conflict of each group: the most distinct 4-byte words it asks of one bank (0 for no access).

    A word asked by several lanes counts once (a broadcast); an 8-byte element asks for two words.
    """
    ways = np.zeros(ngroups, dtype=np.int64)
    if addr.size == 0:
        return ways
    words_per = np.maximum((itemsize + BANK_BYTES - 1) // BANK_BYTES, 1)
    wmax = int(words_per.max())
    words = distinct_pairs(np.concatenate([group] * wmax),
                           np.concatenate([addr // BANK_BYTES + np.minimum(k, words_per - 1) for k in range(wmax)]))
    per_bank, count = np.unique(np.stack([words[:, 0], words[:, 1] % BANKS], axis=1), axis=0, return_counts=True)
    np.maximum.at(ways, per_bank[:, 0], count)
    return ways
