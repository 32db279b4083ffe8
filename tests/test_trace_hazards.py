"""What the tracer finds beyond races: reads of never-written shared memory, barriers not reached by the whole
block, and races described in program order (the same words in every run)."""

import inspect

import numpy as np
from numba import cuda, float32

from nbkit.tracer import trace


def _line(kernel, text: str) -> int:
    """The file line of the first source line of ``kernel`` that contains ``text``."""
    lines, first = inspect.getsourcelines(kernel.py_func)
    return first + next(k for k, line in enumerate(lines) if text in line)


# ---------------------------------------------------------------- uninitialised shared memory


@cuda.jit
def fixed_stride_tree(x, out):
    buf = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    buf[t] = x[t]
    cuda.syncthreads()
    stride = 32  # right for 64 threads only: with 16, threads read buf[16..47], which nobody wrote
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        out[cuda.blockIdx.x] = buf[0]


def test_a_read_of_never_written_shared_memory_is_named_and_reads_nan():
    out = np.zeros(2, np.float32)
    t = trace(fixed_stride_tree, 2, 16, np.ones(16, np.float32), out)
    assert np.isnan(out).all()  # the tracer's shared memory starts poisoned too, in every block
    reads = t.uninitialised_reads()
    assert len(reads) == 2 * 32  # buf[32..47] (stride 32), then buf[16..31] (stride 16), in both blocks
    first = reads[0]
    assert (first.array, first.element, first.block, first.thread) == ("buf", "buf[32]", (0,), (0,))
    assert first.site.line == _line(fixed_stride_tree, "buf[t] += buf[t + stride]")
    assert str(first).startswith(f"block (0): thread (0) reads buf[32] (line {first.site.line}) before any thread "
                                 "of the block wrote it")
    assert {r.block for r in reads} == {(0,), (1,)}
    # with 64 threads every element read was written first
    assert trace(fixed_stride_tree, 1, 64, np.ones(64, np.float32), np.zeros(1, np.float32)).uninitialised_reads() == []


@cuda.jit
def own_element(x, out):
    buf = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    if x[0] > 0:
        buf[t] = x[t]  # written first by the thread itself: fine
    buf[t] += float32(1)  # with x[0] <= 0, read before any write
    out[t] = buf[t]


def test_a_thread_may_read_what_it_wrote_itself_but_not_before():
    t = trace(own_element, 1, 32, np.ones(32, np.float32), np.zeros(32, np.float32))
    assert t.uninitialised_reads() == []
    x = -np.ones(32, np.float32)
    t = trace(own_element, 1, 32, x, np.zeros(32, np.float32))
    reads = t.uninitialised_reads()
    assert [r.element for r in reads] == [f"buf[{k}]" for k in range(32)]
    assert [r.thread for r in reads] == [(k,) for k in range(32)]


@cuda.jit
def reverse_no_sync(x, out):
    s = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    s[t] = x[t]
    out[t] = s[63 - t]


def test_a_read_racing_with_the_write_is_a_race_not_an_uninitialised_read():
    t = trace(reverse_no_sync, 1, 64, np.arange(64, dtype=np.float32), np.zeros(64, np.float32))
    assert t.races() and t.uninitialised_reads() == []


# ---------------------------------------------------------------- barriers not reached by the whole block


@cuda.jit
def barrier_in_if(x, out):
    buf = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    buf[t] = x[t]
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
            cuda.syncthreads()  # only the threads with t < stride reach it
        stride //= 2
    if t == 0:
        out[cuda.blockIdx.x] = buf[0]


def test_a_barrier_inside_an_if_is_reported_with_who_skipped_and_who_waited():
    out = np.zeros(2, np.float32)
    t = trace(barrier_in_if, 2, 32, np.ones(32, np.float32), out)
    assert out.tolist() == [32, 32] and t.races() == []  # right sums, no race seen: the bug hides
    found = t.divergent_barriers()
    assert [d.block for d in found] == [(0,), (1,)]
    line = _line(barrier_in_if, "cuda.syncthreads()  # only")
    assert str(found[0]) == (f"threads 16..31 of block (0) never reached the cuda.syncthreads() on line {line}; "
                             "threads 0..15 waited there (barrier number 2 of each thread), and likewise in 1 more "
                             "block(s)")
    assert found[0].skipped == tuple(range(16, 32)) and found[0].waited == {line: tuple(range(16))}


@cuda.jit
def two_barriers(out):
    t = cuda.threadIdx.x
    if t < 16:
        cuda.syncthreads()
    else:
        cuda.syncthreads()
    out[t] = t


def test_threads_at_different_barriers_are_reported_by_line():
    t = trace(two_barriers, 1, 32, np.zeros(32, np.int64))
    a, b = _line(two_barriers, "if t < 16") + 1, _line(two_barriers, "else:") + 1
    assert [str(d) for d in t.divergent_barriers()] == [
        f"in block (0), threads 0..15 waited at the cuda.syncthreads() on line {a}; threads 16..31 waited at the one "
        f"on line {b} instead (barrier number 1 of each thread)"]


@cuda.jit
def early_return(x, out):
    buf = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    if t >= x.size:
        return  # leaves the kernel: counts as arrived at every later barrier (PTX barrier.sync: non-exited threads)
    buf[t] = x[t]
    cuda.syncthreads()
    out[t] = buf[x.size - 1 - t]


@cuda.jit
def uniform_if(out):
    t = cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if cuda.blockIdx.x == 1:  # the same in the whole block
        cuda.syncthreads()
    cuda.syncthreads()
    out[cuda.blockIdx.x, t] = t


def test_a_return_before_the_barrier_and_a_block_uniform_if_are_no_divergence():
    x = np.arange(20, dtype=np.float32)
    out = np.zeros(32, np.float32)
    t = trace(early_return, 1, 32, x, out)
    assert t.divergent_barriers() == [] and out[:20].tolist() == x[::-1].tolist()
    t = trace(uniform_if, 2, (4, 2), np.zeros((2, 8), np.int64))
    assert t.divergent_barriers() == []


@cuda.jit
def barrier_in_if_2d(out):
    t = cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if cuda.threadIdx.y == 0:
        cuda.syncthreads()
    out[t] = t


def test_divergence_in_a_2d_block_names_linear_thread_indices():
    t = trace(barrier_in_if_2d, 1, (4, 2), np.zeros(8, np.int64))
    assert "threads with linear index 4..7 (x fastest) of block (0) never reached" in str(t.divergent_barriers()[0])


# ---------------------------------------------------------------- races in program order


@cuda.jit
def tile_loop_war(x, out):
    s = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    acc = float32(0)
    for k in range(4):
        s[t] = x[k * 32 + t]  # the next step's write ...
        cuda.syncthreads()
        acc += s[31 - t]  # ... races with this read: a barrier is missing after it
    out[t] = acc


@cuda.jit
def tile_loop_raw(x, out):
    s = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    acc = float32(0)
    for k in range(4):
        s[t] = x[k * 32 + t]
        acc += s[31 - t]  # read before the barrier that would order it after the write
        cuda.syncthreads()
    out[t] = acc


def _race_words(kernel):
    t = trace(kernel, 1, 32, np.arange(128, dtype=np.float32), np.zeros(32, np.float32))
    return sorted((r.element, r.kind, r.first_site.line, r.second_site.line, r.later_iteration, r.missing_barrier)
                  for r in t.races())


def test_race_kind_and_missing_barrier_follow_program_order_in_every_run():
    w, r = _line(tile_loop_war, "s[t] = x"), _line(tile_loop_war, "acc += s")
    war = _race_words(tile_loop_war)
    assert war and {x[1:5] for x in war} == {("write-after-read", r, w, True)}
    assert war[0][5] == (f"a cuda.syncthreads() is missing inside the loop, after line {r} (read) and before line {w} "
                         "(write) runs in the next iteration")
    w, r = _line(tile_loop_raw, "s[t] = x"), _line(tile_loop_raw, "acc += s")
    raw = _race_words(tile_loop_raw)
    assert raw and {x[1:5] for x in raw} == {("read-after-write", w, r, False)}
    assert raw[0][5] == f"a cuda.syncthreads() is missing after line {w} (write) and before line {r} (read)"
    for _ in range(3):  # the words name the pair in program order, not in the order the threads happened to run
        assert _race_words(tile_loop_war) == war and _race_words(tile_loop_raw) == raw


@cuda.jit
def tree_without_loop_barrier(x, out):
    buf = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    buf[t] = x[t]
    cuda.syncthreads()
    stride = 16
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        stride //= 2
    if t == 0:
        out[0] = buf[0]


def test_a_tree_without_its_loop_barrier_is_told_to_put_one_in_the_loop():
    t = trace(tree_without_loop_barrier, 1, 32, np.ones(32, np.float32), np.zeros(1, np.float32))
    line = _line(tree_without_loop_barrier, "buf[t] += buf[t + stride]")
    by_element = {r.element: r for r in t.races()}
    r = by_element["buf[8]"]  # thread 8 writes it in step 2 (stride 8) and thread 0 reads it in step 3
    assert r.kind == "read-after-write" and r.later_iteration and r.first_thread == (8,) and r.second_thread == (0,)
    assert r.missing_barrier == (f"a cuda.syncthreads() is missing inside the loop, after line {line} (write) and "
                                 f"before line {line} (read) runs in the next iteration")


@cuda.jit
def sites_by_thread(x, out):
    s = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    for rep in range(2):  # the same accesses between two pairs of barriers, in another order in each
        for k in range(2):
            if (t < 3 or t > 60) and k == 1:
                break  # these threads run one of the two sites only
            if (k == 0) == ((t + rep) % 2 == 1):
                s[t] = x[t]  # first time: odd threads write, then read; even ones read, then write
            else:
                out[t] = s[(t + 5) % 64]
        for k in range(t % 3 if t < 62 else 0):
            s[(t + 1) % 64] = x[k]  # run 0 to 2 times: later occurrences too
        if t >= 62:
            s[t - 62] = x[t]  # run by threads that never run the loop's second step
        cuda.syncthreads()


def _program_order_by_scan(t, a: int, b: int) -> tuple[int, int, bool]:
    """The program order of records a and b as first written: every pair scans its block and epoch afresh."""
    r, occ = t.records, t._occurrences()
    ka, kb = (int(r["site"][a]), int(occ[a])), (int(r["site"][b]), int(occ[b]))
    rows = np.flatnonzero((r["block"] == r["block"][a]) & (r["epoch"] == r["epoch"][a]))
    pos: dict = {}
    for row in rows[((r["site"][rows] == ka[0]) & (occ[rows] == ka[1]))
                    | ((r["site"][rows] == kb[0]) & (occ[rows] == kb[1]))]:
        pos.setdefault(int(r["thread"][row]), {}).setdefault((int(r["site"][row]), int(occ[row])), int(r["seq"][row]))
    both = [th for th in sorted(pos) if ka in pos[th] and kb in pos[th]]
    a_first = True if ka == kb else pos[both[0]][ka] < pos[both[0]][kb] if both else (ka[1], ka[0]) < (kb[1], kb[0])
    first, second = (a, b) if a_first else (b, a)
    k1, k2 = (ka, kb) if a_first else (kb, ka)
    return first, second, ka != kb and (k2[1] > k1[1] or k2[0] <= k1[0])


def test_program_order_with_its_cache_is_the_order_a_scan_of_the_block_gives():
    """races() keeps, per block and epoch, each access's threads and each pair's answer (one scan per access, not
    per race): every pair of accesses (site, occurrence) of a block and epoch, in both orders, and random pairs of
    records get the order that a scan made for that pair gives."""
    x = np.arange(128, dtype=np.float32)
    traces = [trace(k, 1, 32, x, np.zeros(32, np.float32)) for k in (tile_loop_war, tile_loop_raw)]
    traces += [trace(tree_without_loop_barrier, 1, 32, np.ones(32, np.float32), np.zeros(1, np.float32)),
               trace(sites_by_thread, 2, 64, x, np.zeros(64, np.float32))]
    kinds = set()
    for t in traces:
        r, occ = t.records, t._occurrences()
        shared = np.flatnonzero(t._mask(space="shared"))
        cache: dict = {}  # one cache for every pair of the trace, as in races()
        by_key: dict = {}  # (block, epoch, site, occurrence) -> its records
        for row in shared:
            by_key.setdefault((int(r["block"][row]), int(r["epoch"][row]), int(r["site"][row]), int(occ[row])),
                              []).append(int(row))
        pairs = [(ra[0], next(b for b in rb if r["thread"][b] != r["thread"][ra[0]]))
                 for ka, ra in by_key.items() for kb, rb in by_key.items()
                 if ka[:2] == kb[:2] and any(r["thread"][b] != r["thread"][ra[0]] for b in rb)]
        pairs += [(int(a), int(b)) for a, b in np.random.default_rng(5).choice(shared, (400, 2))
                  if r["block"][a] == r["block"][b] and r["epoch"][a] == r["epoch"][b] and r["thread"][a] != r["thread"][b]]
        for a, b in pairs:
            want = _program_order_by_scan(t, a, b)
            assert t._program_order(a, b, cache) == want, (t.kernel_name, a, b)
            kinds.add(want[0] == a)
        assert t.races()  # each kernel races
    assert kinds == {True, False}
