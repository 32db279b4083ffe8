"""The CPU executor drops numba's bounds checks only for launches proven in bounds (nbkit.core.bounds).

A launch runs without checks when the kernel's accesses are launch-determined (static analysis) and the same
launch key (argument types, grid, block, array shapes, scalar values) already ran checked without an error.
Everything else keeps the IndexError that names block and thread.
"""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import pytest
from numba import cuda, float32, int32

import nbkit.core.executor as ex
from nbkit.core.executor import last_launch_checked, last_launch_lanes, last_launch_unsigned, run_on_cpu, unchecked_reason
from nbkit.kernels import all_kernels, conv

rng = np.random.default_rng(11)

# Registered kernels that always run checked, and why (the rest are proven launch-determined). The heavy ones of a
# LeNet step (convolutions, their gradients, matmuls, SGD, max-pool, ReLU) must not be here.
ALWAYS_CHECKED = {
    "losses.softmax_xent_row_per_block_kernel": "an index computed from data",  # logits[n, labels[n]]
    "losses.softmax_xent_row_per_thread_kernel": "an index computed from data",
}
HEAVY = ["conv.conv2d_forward_kernel", "conv.conv2d_backward_input_kernel", "conv.conv2d_backward_weight_kernel",
         "conv.conv2d_backward_bias_kernel", "conv.conv2d_backward_input_atomic_kernel", "matmul.matmul_naive_kernel",
         "matmul.matmul_tiled_kernel", "coalescing.matmul_tiled_coalesced_kernel", "optim.sgd_momentum_kernel",
         "pool.maxpool2x2_forward_kernel", "reduce.column_sum_kernel", "dense.add_bias_kernel",
         "losses.softmax_xent_backward_kernel",
         # an access decided by data at a launch-determined index: proven, the checked run probes it
         "activations.relu_backward_kernel", "activations.sigmoid_forward_kernel", "pool.maxpool2x2_backward_kernel"]


@pytest.fixture(autouse=True)
def unchecked_at_once(monkeypatch):
    """Any proven launch runs unchecked (by default only one that took over 0.25 ms, worth the second compile)."""
    monkeypatch.setattr(ex, "_UNCHECKED_MIN_SECONDS", 0.0)


def _registered():
    import test_executor as te  # the differential test's launches for every registered kernel

    return te


def test_every_registered_kernel_is_classified_as_listed():
    te = _registered()
    names = {spec.name.removeprefix("nbkit.kernels.") for spec in all_kernels() if not spec.device}
    assert set(ALWAYS_CHECKED) <= names and set(HEAVY) <= names
    for name in sorted(names):
        grid, block, *args = te.CASES[name][1][0]()
        reason = unchecked_reason(te._kernel(name), *args)
        if name in ALWAYS_CHECKED:
            assert reason is not None and ALWAYS_CHECKED[name] in reason, (name, reason)
        else:
            assert reason is None, (name, reason)


@pytest.mark.parametrize("name", sorted(set(__import__("test_executor").CASES) - set(ALWAYS_CHECKED)))
def test_unchecked_launches_give_bit_identical_results(name):
    """Every proven registered kernel: the third identical launch runs unchecked, with the checked result."""
    te = _registered()
    kernel = te._kernel(name)
    for build in te.CASES[name][1]:
        grid, block, *args = build()
        results = []
        for _ in range(3):  # the first may compile; a checked run that did not compile proves the key
            out = te._copy(args)
            run_on_cpu(kernel, grid, block, *out)
            results.append(out)
        assert last_launch_checked() is False, name
        assert last_launch_unsigned() is True, name  # no registered kernel uses a negative index
        for checked, unchecked in zip(results[1], results[2]):
            if isinstance(checked, np.ndarray):
                assert np.array_equal(checked, unchecked, equal_nan=True), name


def _conv_weight_args(n):
    dy = rng.standard_normal((n, 6, 12, 12)).astype(np.float32)
    x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
    return dy, x, np.zeros((6, 3, 5, 5), np.float32)


def test_conv_weight_gradient_runs_unchecked_on_the_second_identical_launch():
    run_on_cpu(conv.conv2d_backward_weight_kernel, 4, 128, *_conv_weight_args(1))  # compiles the checked launcher
    dy, x, dw = _conv_weight_args(3)
    run_on_cpu(conv.conv2d_backward_weight_kernel, 4, 128, dy, x, dw)
    assert last_launch_checked() is True
    checked = dw.copy()
    dw[:] = 0
    run_on_cpu(conv.conv2d_backward_weight_kernel, 4, 128, dy, x, dw)
    assert last_launch_checked() is False
    assert np.array_equal(dw, checked)
    compiled = ex.compile_for_cpu(conv.conv2d_backward_weight_kernel, [dy, x, dw])
    assert compiled.unchecked() is not compiled.launcher
    assert compiled.unchecked().targetoptions["boundscheck"] is False
    assert compiled.launcher.targetoptions["boundscheck"] is True
    # another batch: a new key, checked again
    run_on_cpu(conv.conv2d_backward_weight_kernel, 4, 128, *_conv_weight_args(2))
    assert last_launch_checked() is True


def test_a_cheap_launch_stays_checked(monkeypatch):
    """Below the threshold the second variant is not worth compiling."""
    monkeypatch.setattr(ex, "_UNCHECKED_MIN_SECONDS", 1e9)
    for _ in range(3):
        run_on_cpu(conv.conv2d_backward_weight_kernel, 4, 128, *_conv_weight_args(1))
    assert last_launch_checked() is True


def test_the_unchecked_variant_has_its_own_disk_cache_entry():
    code = "def _launch_k(a):\n    return a[0]\n"
    checked = ex._njit(code, "_launch_k", "k", {"np": np})
    unchecked = ex._njit(code, "_launch_k", "k", {"np": np}, boundscheck=False)
    assert checked is not unchecked
    assert checked.targetoptions["boundscheck"] is True and unchecked.targetoptions["boundscheck"] is False
    if ex.diskcache.cache_dir("cpu") is not None:
        assert ex._KEYS[id(checked)][1] != ex._KEYS[id(unchecked)][1]


# ---------------------------------------------------------------------------------------------- new keys


@cuda.jit
def off_by_one(x, out):
    i = cuda.grid(1)
    if i <= x.size:  # the bug: thread x.size reads past the end, if the grid has such a thread
        out[i] = x[i]


@cuda.jit
def shifted(x, out, k):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i + k]


@cuda.jit
def signed_zero(x, out, s):
    i = cuda.grid(1)
    if i < x.size:
        out[i + (1 if math.copysign(1.0, s) < 0 else 0)] = x[i]


def _twice(kernel, grid, block, *args):
    for _ in range(3):
        run_on_cpu(kernel, grid, block, *args)
    assert last_launch_checked() is False, "the in-bounds launch should have been proven"


def test_another_shape_runs_checked_and_names_block_and_thread():
    _twice(off_by_one, 2, 32, np.ones(64, np.float32), np.zeros(65, np.float32))
    with pytest.raises(IndexError, match=r"block \(1, 0, 0\), thread \(18, 0, 0\)"):
        run_on_cpu(off_by_one, 2, 32, np.ones(50, np.float32), np.zeros(65, np.float32))
    assert last_launch_checked() is True


def test_another_grid_runs_checked():
    x, out = np.ones(64, np.float32), np.zeros(65, np.float32)
    _twice(off_by_one, 2, 32, x, out)
    with pytest.raises(IndexError, match=r"block \(2, 0, 0\), thread \(0, 0, 0\)"):
        run_on_cpu(off_by_one, 3, 32, x, out)


def test_another_scalar_runs_checked():
    x, out = np.ones(64, np.float32), np.zeros(64, np.float32)
    _twice(shifted, 2, 32, x, out, 0)
    with pytest.raises(IndexError, match=r"block \(1, 0, 0\), thread \(31, 0, 0\)"):
        run_on_cpu(shifted, 2, 32, x, out, 1)


def test_scalars_are_keyed_to_the_bit():
    """0.0 == -0.0, but the index differs: the launch key tells them apart."""
    x, out = np.ones(64, np.float32), np.zeros(64, np.float32)
    _twice(signed_zero, 2, 32, x, out, np.float64(0.0))
    with pytest.raises(IndexError, match=r"block \(1, 0, 0\), thread \(31, 0, 0\)"):
        run_on_cpu(signed_zero, 2, 32, x, out, np.float64(-0.0))
    _twice(signed_zero, 2, 32, x, out, 0.0)
    with pytest.raises(IndexError, match=r"thread \(31, 0, 0\)"):
        run_on_cpu(signed_zero, 2, 32, x, out, -0.0)


# ---------------------------------------------------------------------------------------------- negative indices


def test_a_negative_index_wraps_in_every_variant():
    """x[i - 1] at thread 0 is x[-1], the last element (Python semantics, as in the simulator): the checked run
    records it, so the unchecked launches of that key keep signed indices (unsigned, -1 would read far outside x)."""
    x = np.arange(64, dtype=np.float32)
    for _ in range(3):
        out = np.zeros(64, np.float32)
        run_on_cpu(shifted, 2, 32, x, out, -1)
        assert np.array_equal(out, np.roll(x, 1))
    assert last_launch_checked() is False and last_launch_unsigned() is False
    for _ in range(3):  # another key, every index non-negative: unsigned
        out = np.zeros(64, np.float32)
        run_on_cpu(shifted, 2, 32, x, out, 0)
        assert np.array_equal(out, x)
    assert last_launch_checked() is False and last_launch_unsigned() is True
    with pytest.raises(IndexError, match=r"block \(0, 0, 0\), thread \(0, 0, 0\)"):  # -65 stays out of bounds
        run_on_cpu(shifted, 2, 32, x, np.zeros(64, np.float32), -65)


def test_launches_on_a_thread_reuse_its_zeroed_where_records():
    """A launch's where-records (block, thread, flags per worker) are its thread's, reused and zeroed, not a new array
    and address per launch (about 2 µs of a launch's ~25 in cpu mode); zeroed, as the test above shows: the first
    key's negative index left in them would keep the second key signed."""
    x = np.arange(64, dtype=np.float32)
    run_on_cpu(shifted, 2, 32, x, np.zeros(64, np.float32), 0)
    wheres = ex._where_records(1)[0]
    assert not wheres.any()
    run_on_cpu(shifted, 2, 32, x, np.zeros(64, np.float32), 0)
    assert ex._where_records(1)[0] is wheres


def test_the_checked_launchers_record_is_emitted_in_place():
    """The record of negative indices (and the other launchers' empty probe) is code numba emits at each index,
    not a call to a function it compiles apart: as a call, the checked conv forward at LeNet conv1, batch 64 took
    41-43 instead of 25 ms, and every index cost compile time."""
    import numba.core.extending

    assert isinstance(ex._ix_record, numba.core.extending._Intrinsic)
    assert isinstance(ex._spec_none, numba.core.extending._Intrinsic)


def test_the_launchers_share_one_source_and_the_shown_source_has_no_index_wrappers():
    args = (np.ones(64, np.float32), np.zeros(64, np.float32), 0)
    compiled = ex.compile_for_cpu(shifted, args)
    assert "x[_ix(i + k, _negp)]" in compiled.source
    shown = ex.generated_source(shifted, *args)
    assert "_ix" not in shown and "x[i + k]" in shown
    assert compiled.unchecked(nonnegative=True) is not compiled.unchecked(nonnegative=False)
    assert compiled.unchecked(nonnegative=True).py_func.__globals__["_ix"] is ex._ix_unsigned


def test_a_kernel_never_proven_runs_checked_without_recording_negative_indices():
    """Recording costs a third of a convolution's checked time: a launch that can never be proven skips it."""
    args = (ONES, np.arange(64, dtype=np.int64), np.zeros(64, np.float32))
    assert unchecked_reason(gather, *args) is not None
    for _ in range(2):
        run_on_cpu(gather, 2, 32, *args)
        assert last_launch_checked() is True
    compiled = ex.compile_for_cpu(gather, args)
    assert compiled.checked_only().signatures and not compiled.launcher.signatures


# ---------------------------------------------------------------------------------------------- lanes

# Proven kernels of a LeNet step whose unchecked launches interleave LANES threads (no barriers, a loop to overlap):
# the differential test above compares their unchecked results with the checked ones bit for bit.
WITH_LANES = ["conv.conv2d_forward_kernel", "conv.conv2d_backward_input_kernel", "conv.conv2d_backward_weight_kernel",
              "conv.conv2d_backward_bias_kernel", "matmul.matmul_naive_kernel", "reduce.column_sum_kernel"]
# Lanes would only add tests: no loop (element-wise), or a test on data inside the loop (lanes disagree: a max-pool
# forward took 0.94 instead of 0.23 ms with them)
WITHOUT_LANES = ["pool.maxpool2x2_forward_kernel", "pool.maxpool2x2_backward_kernel", "optim.sgd_momentum_kernel",
                 "activations.relu_backward_kernel", "dense.add_bias_kernel"]


@pytest.mark.parametrize("name, lanes", [(n, True) for n in WITH_LANES] + [(n, False) for n in WITHOUT_LANES])
def test_proven_kernels_run_with_lanes_only_where_they_pay(name, lanes):
    te = _registered()
    grid, block, *args = te.CASES[name][1][0]()
    for _ in range(3):
        run_on_cpu(te._kernel(name), grid, block, *te._copy(args))
    assert last_launch_checked() is False and last_launch_lanes() is lanes, name


@cuda.jit
def uneven(x, out):
    i = cuda.grid(1)  # lanes disagree on the loop's length and on the if: each runs its own copy in turn
    if i < out.size:
        acc = float32(0)
        for k in range(i % 5):
            if (i + k) % 3 == 0:
                acc += x[k] * float32(0.5)
            else:
                acc -= x[k + 1]
        out[i] = acc


@cuda.jit
def push_right(x, y):
    i = cuda.grid(1)  # y[i + 1] from x[i]: with y and x one array, thread i reads what thread i - 1 wrote
    if i < y.size - 1:
        v = float32(0)
        for _ in range(2):
            v += x[i]  # lanes read this before any of them writes
        y[i + 1] = v


@pytest.fixture(scope="module")
def uneven_launches():
    """Four launches of ``uneven`` (checked and compiling, checked and proving, unchecked with lanes and compiling,
    unchecked with lanes), with a spy on the SLP vectorizer's setting: what the lanes test and the SLP test check,
    from one compile of each launcher (a lanes launcher compiles in 1.5-2 s of CPU time). Module-scoped, so it sets
    what the autouse fixture sets itself."""
    import numba.core.config

    seen: list = []
    real = ex._slp_vectorize

    @contextlib.contextmanager
    def spy():
        with real():
            seen.append(numba.core.config.SLP_VECTORIZE)
            yield

    x = rng.standard_normal(64).astype(np.float32)
    results, lanes = [], []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex, "_UNCHECKED_MIN_SECONDS", 0.0)
        mp.setattr(ex, "_slp_vectorize", spy)
        for _ in range(4):
            results.append(np.zeros(69, np.float32))  # (not the 67 of the fallback test below: another key)
            run_on_cpu(uneven, 3, 32, x, results[-1])
            lanes.append(last_launch_lanes())
        after = numba.core.config.SLP_VECTORIZE
    return {"results": results, "lanes": lanes, "seen": seen, "slp_after": after,
            "source": ex.compile_for_cpu(uneven, (x, results[-1])).lanes_source}


def test_lanes_give_the_plain_loops_results(uneven_launches):
    results = uneven_launches["results"]
    assert uneven_launches["lanes"] == [False, False, True, True]
    assert all(np.array_equal(results[0], r) for r in results)  # checked, checked, lanes, lanes: the same bits
    assert "_jam_" in uneven_launches["source"]


@cuda.jit
def uniform_and_not(x, out):
    i = cuda.grid(1)
    row, step = cuda.blockIdx.x, i % 2 + 1  # row: the same in every lane of a block, step: not
    n = x.size
    start = row % 3
    s = 0
    if i % 4 == 1:
        s = 2  # assigned twice: each lane its own
    v = x[row % n]  # an array element: each lane its own (the analysis reads no memory)
    acc = float32(0)
    if i < out.size:
        for k in range(start, n, 7):  # one loop for the four lanes
            h = k // 2
            if h % 3 == 0:  # one test
                acc += x[k] * float32(step)
            for m in range(step):  # lanes disagree on its length: each runs its own
                acc -= x[(k + m + s) % n] * v
        out[i] = acc


def test_lanes_share_uniform_values_and_keep_their_own_results():
    """Names every lane computes alike (row, n, start, k, h) are one copy, one loop, one test; names that differ
    or may differ (step, s, v, m, acc) stay per lane. Odd sizes: a row of 13 threads ends inside a group of four,
    and the last block runs past the end of out. Every launch gives the simulator's bits."""
    x = rng.standard_normal(50).astype(np.float32)
    expected = np.zeros(45, np.float32)
    uniform_and_not[4, 13](x, expected)
    for _ in range(3):  # checked, then unchecked with lanes
        out = np.zeros(45, np.float32)
        run_on_cpu(uniform_and_not, 4, 13, x, out)
        assert np.array_equal(out, expected)
    assert last_launch_checked() is False and last_launch_lanes() is True
    src = ex.compile_for_cpu(uniform_and_not, (x, out)).lanes_source
    shared = {name for name in ("row", "n", "start", "k", "h", "step", "s", "v", "m", "acc") if f"{name}__l1" not in src}
    assert shared == {"row", "n", "start", "k", "h"}, src


def _lanes_match_simulator(kernel, grid, block, *args):
    """Three launches (checked and compiling, checked and proving, unchecked with lanes), each giving the
    simulator's bits; the lanes launcher's source."""
    expected = [a.copy() for a in args]
    kernel[grid, block](*expected)
    for _ in range(3):
        out = [a.copy() for a in args]
        run_on_cpu(kernel, grid, block, *out)
        assert all(np.array_equal(o, e) for o, e in zip(out, expected)), (kernel, grid, block)
    assert last_launch_checked() is False and last_launch_lanes() is True
    return ex.compile_for_cpu(kernel, args).lanes_source


def _f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_wide_lanes_where_their_reads_pack_into_vectors():
    """WIDE lanes where every read is at the lane's x index plus a value every lane shares and every loop has the
    same bounds in all lanes (conv forward); LANES elsewhere (the weight gradient indexes by f computed per lane,
    the input gradient's shrunk loops have bounds per lane). Where wide lanes disagree on the body's last if, each
    half of their group runs as LANES lanes, and where those disagree, speculatively (below) or as the
    plain loop. Odd sizes: rows of 13
    threads (one wide group, then 5 threads alone) and of 16 (groups past the end of the output's 18 columns)."""
    x, w, b = _f32(1, 2, 6, 20), _f32(3, 2, 3, 3), _f32(3)
    for bx in (13, 16):
        src = _lanes_match_simulator(conv.conv2d_forward_kernel, ((18 + bx - 1) // bx, 2, 3), (bx, 2, 1), x, w, b,
                                     np.zeros((1, 3, 4, 18), np.float32))
    assert f"acc__l{ex.WIDE - 1} " in src and f"for _jam_h in range(0, {ex.WIDE}, {ex.LANES}):" in src, src
    y = np.zeros((1, 2, 4, 4), np.float32)
    sources = {k.__name__: ex.compile_for_cpu(k, a).lanes_source for k, a in (
        (conv.conv2d_backward_input_kernel, (y, _f32(2, 3, 3, 3), _f32(1, 3, 6, 6))),
        (conv.conv2d_backward_weight_kernel, (y, _f32(1, 3, 6, 6), _f32(2, 3, 3, 3))))}
    assert not [name for name, s in sources.items() if f"acc__l{ex.LANES} " in s], sources


def test_lanes_that_agree_at_run_time_share_their_loads():
    """Where f, the one name that makes the weight gradient's lanes read different elements of dy, is the same in
    every lane of a group, a copy of the loop reads lane 0's (one load); elsewhere (f = t // 27 changes inside the
    group) the lanes' own. Not for the conv forward's j (never the same in two lanes) nor the input gradient's
    (computed inside the loop). Every launch gives the simulator's bits."""
    src = _lanes_match_simulator(conv.conv2d_backward_weight_kernel, 1, 128, _f32(2, 4, 5, 7), _f32(2, 3, 7, 9),
                                 np.zeros((4, 3, 3, 3), np.float32))
    assert "if f__l0 == f__l1 and f__l0 == f__l2 and (f__l0 == f__l3):" in src, src
    y = np.zeros((1, 2, 4, 4), np.float32)
    for k, a in ((conv.conv2d_forward_kernel, (_f32(1, 3, 6, 6), _f32(2, 3, 3, 3), _f32(2), y)),
                 (conv.conv2d_backward_input_kernel, (y, _f32(2, 3, 3, 3), _f32(1, 3, 6, 6)))):
        assert not re.search(r"if (?!_jam_)(\w+)__l0 == \1__l1 and", ex.compile_for_cpu(k, a).lanes_source), k


def test_lanes_whose_loop_bounds_differ_run_the_union_of_their_ranges():
    """A loop whose bounds differ per lane and whose body only adds into sums runs once over the union of the
    lanes' ranges, each lane keeping its sum only at its own iterations (a select, not + 0.0), reads indexed by the
    loop variable alone once for the four lanes: the conv input gradient's shrunk loop over q at a map's edges.
    Where the ranges share no point (dy one column wide: lane k's q is k alone), each lane runs its own loop.
    Odd sizes (rows of 13 and 8 threads, maps of 10 and 5 columns): every launch gives the simulator's bits."""
    for bx, ow, kw in ((13, 7, 4), (8, 7, 4), (8, 1, 5)):
        src = _lanes_match_simulator(conv.conv2d_backward_input_kernel, ((ow + kw - 1 + bx - 1) // bx, 7, 4),
                                     (bx, 1, 1), _f32(2, 3, 5, ow), _f32(3, 2, 3, kw),
                                     np.zeros((2, 2, 7, ow + kw - 1), np.float32))
    assert re.search(r"acc__l0 = (_jam_\d+)_v__l0 if q__l0 == \1 else acc__l0", src), src
    assert re.search(r"\* w\[_ix\(f, _negp\), _ix\(c, _negp\), _ix\(p, _negp\), _ix\(_jam_\d+, _negp\)\]", src), src
    assert re.search(r"elif max\((_jam_\d+)_0__l0, \1_0__l1, \1_0__l2, \1_0__l3\) < min\(", src), src
    # dy too at the loop's value in every lane (consecutive elements: one vector load), where dy is C-contiguous and
    # the part that n and f (the loops around it do not change them) select has 3 elements before and after it
    assert re.search(r"j__l3 = col__l3 - _jam_\d+\n", src), src
    assert ("and (dy.flags.c_contiguous and dy.strides[3] == dy.itemsize and (n >= 0) and (f >= 0) and "
            "(3 <= (n * dy.shape[1] + f) * (dy.shape[2] * dy.shape[3])) and "
            "((n * dy.shape[1] + f + 1) * (dy.shape[2] * dy.shape[3]) + 3 <= dy.size)):") in src, src


# dy between two pages no access may touch: a read before its first element or after its last ends the process
GUARDED = """
import ctypes, mmap, sys
import numpy as np
import nbkit.core.executor as ex
from nbkit.kernels import conv

page = mmap.PAGESIZE
memory = mmap.mmap(-1, 3 * page)
start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
mprotect = ctypes.CDLL(None).mprotect
mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
assert mprotect(start, page, 0) == 0 and mprotect(start + 2 * page, page, 0) == 0  # PROT_NONE
dy = np.frombuffer(memory, np.float32, page // 4, page).reshape(2, 2, 16, page // 256)
dy[...] = np.random.default_rng(0).standard_normal(dy.shape)
w = np.random.default_rng(1).standard_normal((2, 1, 3, 5)).astype(np.float32)
ex._UNCHECKED_MIN_SECONDS = 0.0
out = []
for _ in range(3):  # checked and compiling, checked and proving, unchecked with lanes
    out.append(np.zeros((2, 1, 18, dy.shape[3] + 4), np.float32))
    ex.run_on_cpu(conv.conv2d_backward_input_kernel, (3, 9, 2), (8, 2, 1), dy, w, out[-1])
assert ex.last_launch_lanes() and ex.last_launch_unsigned(), "not the lanes launcher"
assert all(np.array_equal(o.view(np.int32), out[0].view(np.int32)) for o in out), "not the plain loops' bits"
print("inside")
"""


# x between two pages likewise: the conv forward's lanes past the output's edge (columns 14 and 15 of 14) read up
# to 2 elements past a row's end where their group runs speculatively (see SPECULATIVE LANES in the executor)
GUARDED_FORWARD = """
memory = mmap.mmap(-1, 3 * page)
start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
assert mprotect(start, page, 0) == 0 and mprotect(start + 2 * page, page, 0) == 0  # PROT_NONE
x = np.frombuffer(memory, np.float32, page // 4, page).reshape(page // 1024, 1, 16, 16)
x[...] = np.random.default_rng(2).standard_normal(x.shape)
w = np.random.default_rng(3).standard_normal((2, 1, 3, 3)).astype(np.float32)
b = np.random.default_rng(4).standard_normal(2).astype(np.float32)
out = []
for _ in range(3):  # checked and compiling, checked and proving, unchecked with lanes
    out.append(np.zeros((x.shape[0], 2, 14, 14), np.float32))
    ex.run_on_cpu(conv.conv2d_forward_kernel, (2, 14, x.shape[0] * 2), (8, 1, 1), x, w, b, out[-1])
assert ex.last_launch_lanes() and ex.last_launch_unsigned(), "not the lanes launcher"
assert all(np.array_equal(o.view(np.int32), out[0].view(np.int32)) for o in out), "not the plain loops' bits"
print("forward inside")
"""


@pytest.fixture(scope="module")
def guarded_runs():
    """One fresh interpreter (a read outside the arrays would end it) for both tests below."""
    from conftest import run_python

    return run_python(GUARDED + GUARDED_FORWARD)


def test_lanes_reading_at_the_union_loops_value_stay_inside_the_array(guarded_runs):
    """The union loop's reads of dy at the loop's value in every lane go up to 3 elements past a row's ends: inside
    dy except in its first and last rows, where the test before the loop sends the lanes each to its own loop. dy
    between two pages that no access may touch (a fresh interpreter: a read there would end the process), its
    first and last rows read by lanes whose ranges differ (rows of 16 columns, kernels 5 wide): the lanes launcher
    runs and gives the plain loops' bits."""
    r = guarded_runs
    assert r.returncode == 0 and "inside" in r.stdout.splitlines(), (r.returncode, r.stdout, r.stderr)


def test_speculative_lanes_stay_inside_the_array(guarded_runs):
    """A group of lanes that disagree on the conv forward's last if runs its branch in every lane (writing only
    the live lanes' outputs) where a test shows the dead lanes' reads inside the array: not in x's first and last
    images, whose rows next to the array's ends they would read past. x between two pages no access may touch,
    output rows of 14 columns in blocks of 8 (columns 12-15: two live lanes, two dead): the lanes launcher runs
    and gives the plain loops' bits."""
    r = guarded_runs
    assert r.returncode == 0 and "forward inside" in r.stdout.splitlines(), (r.returncode, r.stdout, r.stderr)


def test_lanes_that_disagree_on_the_last_if_run_it_in_every_lane():
    """SPECULATIVE LANES: where four lanes disagree on the conv forward's last if (the output's right edge), all four
    run its branch interleaved and each writes only where its test held, instead of the plain loop (LeNet conv2,
    10 columns in blocks of 8: a fifth of its threads). Only where the dead lanes' reads stay inside x (its middle
    images here; the first and last run the plain loop) and never in the other conv kernels (their branches have
    tests or reads per lane that are not consecutive). Odd sizes: every launch gives the simulator's bits."""
    x, w, b = _f32(3, 2, 7, 12), _f32(3, 2, 3, 3), _f32(3)
    src = _lanes_match_simulator(conv.conv2d_forward_kernel, (2, 5, 9), (8, 1, 1), x, w, b,
                                 np.zeros((3, 3, 5, 10), np.float32))
    flag = re.search(r"\n +if (_jam_\d+)__l0:\n +y\[", src)
    assert flag and f"if {flag[1]}__l3:" in src, src
    # one copy of the branch for the group whose lanes all hold and for the speculative one
    assert (f"elif {flag[1]}__l0 and {flag[1]}__l1 and {flag[1]}__l2 and {flag[1]}__l3 or (x.flags.c_contiguous and "
            "x.strides[3] == x.itemsize and (n >= 0) and (3 <= n * (x.shape[1] * x.shape[2] * x.shape[3])) and "
            "((n + 1) * (x.shape[1] * x.shape[2] * x.shape[3]) + 3 <= x.size)):") in src, src
    y = np.zeros((1, 2, 4, 4), np.float32)
    for k, a in ((conv.conv2d_backward_input_kernel, (y, _f32(2, 3, 3, 3), _f32(1, 3, 6, 6))),
                 (conv.conv2d_backward_weight_kernel, (y, _f32(1, 3, 6, 6), _f32(2, 3, 3, 3)))):
        assert not re.search(r"\n +if _jam_\d+__l0:\n +\w+\[", ex.compile_for_cpu(k, a).lanes_source), k


def test_lanes_keep_the_plain_order_when_arrays_share_memory():
    """In place, thread i reads what thread i - 1 wrote just before (a race on a GPU, an order here): lanes would
    read first and write after, so a launch whose written array shares memory with a read one keeps the plain
    loop, and gives what the checked launch gave."""
    results = []
    for _ in range(3):
        a = np.ones(64, np.float32)
        run_on_cpu(push_right, 2, 32, a, a)
        results.append(a)
        assert last_launch_lanes() is False
    assert last_launch_checked() is False
    assert np.array_equal(results[2], 2.0 ** np.arange(64, dtype=np.float32))
    for _ in range(3):  # apart: lanes
        run_on_cpu(push_right, 2, 32, np.ones(64, np.float32), np.ones(64, np.float32))
    assert last_launch_lanes() is True


# ---------------------------------------------------------------------------------------------- data decides


@cuda.jit
def gather(x, idx, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[idx[i]]


@cuda.jit
def scatter_at_argmax(dy, am, dx):
    i = cuda.grid(1)  # max-pool backward in 1-D: write at the window position the forward pass chose
    if i < dy.size:
        dx[2 * i + am[i]] = dy[i]


@cuda.jit
def index_from_float(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[int(x[i])] += float32(1)


@cuda.jit
def gather_through_shared(x, idx, out):
    buf = cuda.shared.array(32, int32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    buf[t] = idx[i]
    cuda.syncthreads()
    out[i] = x[buf[31 - t]]


@cuda.jit
def write_if_positive(x, out):
    i = cuda.grid(1)
    if i < x.size:
        if x[i] > 0:
            out[i + 1] = x[i]


@cuda.jit
def shift_if_positive(x, out):
    i = cuda.grid(1)
    if i < x.size:
        k = 0  # every assignment of k is a constant, but which one runs depends on data
        if x[i] > 0:
            k = 1
        out[i + k] = x[i]


@cuda.jit
def walk_while_positive(x, out):
    i = cuda.grid(1)
    if i < out.size:
        j = i
        while x[j] > 0:
            j += 1
        out[i] = j


@cuda.jit
def stop_at_negative(x, out):
    i = cuda.grid(1)
    j = 0
    for j in range(x.size - 1):
        if x[j] < 0:
            break
    out[i + j] = x[j]


@cuda.jit
def slot_from_atomic(counter, out):
    i = cuda.grid(1)
    slot = cuda.atomic.add(counter, 0, 1)  # the old value: data
    out[slot] = i


def _ok_then_bad(kernel, grid, block, good: tuple, bad: tuple, probed: bool = False):
    """``probed``: proven (an access decided by data at a launch-determined index), but the checked run's probe
    finds that index out of bounds (the access did not run): the key stays checked all the same."""
    assert (unchecked_reason(kernel, *good) is None) is probed
    for _ in range(3):
        run_on_cpu(kernel, grid, block, *[a.copy() if isinstance(a, np.ndarray) else a for a in good])
        assert last_launch_checked() is True
    with pytest.raises(IndexError, match=r"in block \(\d+, 0, 0\), thread \(\d+, 0, 0\)"):
        run_on_cpu(kernel, grid, block, *bad)
    assert last_launch_checked() is True


ONES = np.ones(64, np.float32)


DATA_DECIDES = [
    (gather, 2, 32, (ONES, np.arange(64, dtype=np.int64), np.zeros(64, np.float32)),
     (ONES, np.full(64, 64, np.int64), np.zeros(64, np.float32))),
    (scatter_at_argmax, 2, 32, (ONES, np.ones(64, np.int64), np.zeros(128, np.float32)),
     (ONES, np.full(64, 2, np.int64), np.zeros(128, np.float32))),
    (index_from_float, 2, 32, (np.arange(64, dtype=np.float32), np.zeros(64, np.float32)),
     (np.full(64, 64.5, np.float32), np.zeros(64, np.float32))),
    (gather_through_shared, 2, 32, (ONES, np.zeros(64, np.int32), np.zeros(64, np.float32)),
     (ONES, np.full(64, 99, np.int32), np.zeros(64, np.float32))),
    (write_if_positive, 2, 32, (-ONES, np.zeros(64, np.float32)), (ONES, np.zeros(64, np.float32)), True),
    (shift_if_positive, 2, 32, (-ONES, np.zeros(64, np.float32)), (ONES, np.zeros(64, np.float32))),
    (walk_while_positive, 2, 32, (np.r_[ONES, -1].astype(np.float32), np.zeros(64, np.int64)),
     (np.r_[ONES, 1].astype(np.float32), np.zeros(64, np.int64))),
    (stop_at_negative, 1, 32, (np.r_[1, -1, ONES[:7]].astype(np.float32), np.zeros(33, np.float32)),
     (ONES[:9], np.zeros(33, np.float32))),
    (slot_from_atomic, 2, 32, (np.zeros(1, np.int64), np.zeros(64, np.int64)),
     (np.ones(1, np.int64), np.zeros(64, np.int64))),
]


@pytest.mark.parametrize("case", DATA_DECIDES, ids=[c[0].__name__ for c in DATA_DECIDES])
def test_data_dependent_indexing_or_control_stays_checked(case):
    _ok_then_bad(*case)


@cuda.jit(device=True)
def _first(a):
    return a[0]


@cuda.jit
def through_device_function(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = _first(x)


@cuda.jit
def max_pool_like(x, y, k_out):
    i = cuda.grid(1)  # a data test that decides only values, never an access: proven (as the max-pool forward)
    if i < y.size:
        best = x[2 * i]
        k = 0
        v = x[2 * i + 1]
        if v > best:
            best = v
            k = 1
        y[i] = best
        k_out[i] = k


@cuda.jit
def max_pool_reading_in_the_branch(x, y):
    i = cuda.grid(1)
    if i < y.size:
        best = x[2 * i]
        if x[2 * i + 1] > best:
            best = x[2 * i + 1]  # an access decided by data
        y[i] = best


def test_what_is_proven_and_what_is_not():
    assert "device function called with an array" in unchecked_reason(through_device_function, ONES,
                                                                       np.zeros(4, np.float32))
    assert unchecked_reason(max_pool_like, ONES, np.zeros(32, np.float32), np.zeros(32, np.int32)) is None
    assert unchecked_reason(max_pool_reading_in_the_branch, ONES, np.zeros(32, np.float32)) is None  # probed
    assert unchecked_reason(off_by_one, ONES, ONES) is None
    assert unchecked_reason(shifted, ONES, ONES, 1) is None
    assert "neither arrays nor numbers" in unchecked_reason(shifted, ONES, ONES, (1, 2))


@cuda.jit
def ufunc_with_output(x, out):
    i = cuda.grid(1)
    if i < x.size:
        np.add(x, x, out)  # writes a whole array: not a pure call


def test_a_ufunc_writing_an_output_array_is_not_pure():
    assert "np.add" in unchecked_reason(ufunc_with_output, ONES, ONES)


@cuda.jit
def loop_carried(x, out):
    k = 0
    for j in range(x.size):
        out[k] = float32(1)
        k = int(x[j])  # data, but only from the next iteration on: the fixpoint finds it


@cuda.jit
def swapped(x, out):
    a = 0
    b = 0
    for j in range(3):
        a, b = b, int(x[j])  # a gets data through b, one iteration later
    out[a] = float32(1)


@cuda.jit
def data_bound_loop(x, out):
    for j in range(int(x[0])):
        out[j] = float32(1)


@cuda.jit
def returns_on_data(x, out):
    i = cuda.grid(1)
    if x[i] < 0:
        return
    out[i + 5] = float32(1)


@cuda.jit
def data_in_index_choice(x, out):
    i = cuda.grid(1)
    out[i if x[i] > 0 else i + 1] = float32(1)


@cuda.jit
def histogram(x, hist):
    cuda.atomic.add(hist, int(x[cuda.grid(1)]) % 4, 1)


@cuda.jit
def short_circuit(x, out):
    i = cuda.grid(1)
    if x[i] > 0 and out[i + 1] > 0:  # out[i + 1] is read only when x[i] > 0
        out[i] = float32(1)


def test_an_access_decided_by_data_is_probed_by_the_checked_run():
    """out[i + 1] is read only where x[i] > 0: the checked run probes its index whatever x holds, so the key whose
    thread 63 would read out[64] stays checked even while no x is positive, and raises once one is."""
    _ok_then_bad(short_circuit, 2, 32, (-ONES, np.zeros(64, np.float32)), (ONES, np.ones(64, np.float32)),
                 probed=True)
    for _ in range(3):  # every probed index in bounds: proven
        run_on_cpu(short_circuit, 2, 32, -ONES, np.zeros(65, np.float32))
    assert last_launch_checked() is False
    out = np.ones(65, np.float32)
    run_on_cpu(short_circuit, 2, 32, ONES, out)  # the same key with other data: the probed accesses now run
    assert last_launch_checked() is False and out[:64].sum() == 64


@cuda.jit
def copy_if_positive(x, out):
    i = cuda.grid(1)
    if i < out.size and x[i] > 0:  # out[i] runs only where i < out.size: its probe too
        out[i] = x[i]


def test_a_probe_runs_only_under_the_launch_determined_part_of_its_test():
    x = np.r_[-ONES[:16], ONES[16:]].astype(np.float32)
    for _ in range(3):
        out = np.zeros(32, np.float32)
        run_on_cpu(copy_if_positive, 2, 32, x, out)
    assert last_launch_checked() is False
    assert np.array_equal(out, np.r_[np.zeros(16), np.ones(16)])


@pytest.mark.parametrize("kernel, words", [
    (loop_carried, "an index computed from data"), (swapped, "an index computed from data"),
    (data_bound_loop, "an access that runs or not depending on data"),
    (returns_on_data, "return decided by data"), (data_in_index_choice, "an index computed from data"),
    (histogram, "an atomic's index computed from data"),
], ids=lambda v: getattr(v, "__name__", "-"))
def test_data_reaching_an_index_or_an_access_decision_is_found(kernel, words):
    assert words in unchecked_reason(kernel, ONES, np.zeros(64, np.float32))


def test_a_lanes_source_numba_refuses_falls_back_to_the_plain_loops():
    """Nothing runs before numba compiles a launcher: a variant it refuses (here made so on purpose) is dropped,
    and the launch runs as before, with the same results."""
    x = rng.standard_normal(64).astype(np.float32)
    args = (x, np.zeros(67, np.float32))
    compiled = ex.compile_for_cpu(uneven, args)
    saved = compiled.lanes_source, dict(compiled._variants)
    try:
        compiled.lanes_source = compiled.lanes_source.replace("_jam_tx + 0", "_not_a_name + 0")
        compiled._variants = {k: v for k, v in compiled._variants.items() if not k[2]}
        results = []
        for _ in range(3):
            out = np.zeros(67, np.float32)
            run_on_cpu(uneven, 3, 32, x, out)
            results.append(out)
        assert last_launch_checked() is False and last_launch_lanes() is False
        assert compiled.lanes_source is None and np.array_equal(results[0], results[2])
    finally:
        compiled.lanes_source, compiled._variants = saved


def test_a_lanes_launcher_compiles_with_llvms_slp_vectorizer(uneven_launches):
    """numba turns LLVM's SLP vectorizer off; a lanes launcher compiles with it on (its lanes' operations become
    vector instructions), and only that compile: the setting is back afterwards (the launches of ``uneven``, whose
    lanes launcher compiles there)."""
    assert uneven_launches["lanes"][-1] is True and uneven_launches["seen"] == [1]
    assert uneven_launches["slp_after"] == 0
