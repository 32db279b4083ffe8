"""Warp intrinsics in the simulator (nbkit.core.warp, installed by nbkit.core.simulator), against the CUDA C++
Programming Guide's definitions. Runs in both simulators: numba-cuda's here, numba's built-in one under
``course.sh test-numba-only``."""

import math

import numpy as np
import pytest
from numba import cuda, float32

from nbkit.core.executor import ExecutorUnsupported, run_on_cpu
from nbkit.core.warp import FULL_MASK, WarpError
from nbkit.tracer import TraceError, trace

FULL = 0xFFFFFFFF
KINDS = ("shfl_sync", "shfl_up_sync", "shfl_down_sync", "shfl_xor_sync")


def guide_source(kind: str, lane: int, arg: int) -> int:
    """The Programming Guide's "Warp Shuffle Functions" with width = warpSize = 32 (arg in 0-31)."""
    if kind == "shfl_sync":
        return arg % 32  # "srcLane outside [0:width-1]: the value of srcLane modulo width"
    if kind == "shfl_up_sync":
        return lane - arg if lane - arg >= 0 else lane  # "the lower delta lanes will remain unchanged"
    if kind == "shfl_down_sync":
        return lane + arg if lane + arg < 32 else lane  # "the upper delta lanes will remain unchanged"
    return lane ^ arg


def linear_ids(block: tuple[int, ...]) -> int:
    return int(np.prod(block))


@cuda.jit
def shuffle_kernel(kind, values, args, write, out):
    """out[t] = the shuffle of values[t] (t: linear thread id, x fastest), where write[t] says to store it."""
    t = cuda.threadIdx.x + cuda.blockDim.x * (cuda.threadIdx.y + cuda.blockDim.y * cuda.threadIdx.z)
    v = values[t]
    if kind == 0:
        r = cuda.shfl_sync(FULL, v, args[t])
    elif kind == 1:
        r = cuda.shfl_up_sync(FULL, v, args[t])
    elif kind == 2:
        r = cuda.shfl_down_sync(FULL, v, args[t])
    else:
        r = cuda.shfl_xor_sync(FULL, v, args[t])
    if write[t]:
        out[t] = r


def run_shuffle(kind: str, block, args: np.ndarray):
    n = linear_ids(block)
    values = (np.arange(n) * 10 + 7).astype(np.float32)
    expected, write = np.full(n, -1.0, np.float32), np.zeros(n, np.int32)
    for t in range(n):
        warp, lane = divmod(t, 32)
        j = warp * 32 + guide_source(kind, lane, int(args[t]))
        if j < n:  # a source past the end of the block is undefined: not stored
            expected[t], write[t] = values[j], 1
    out = np.full(n, -1.0, np.float32)
    shuffle_kernel[1, block](KINDS.index(kind), values, args.astype(np.int32), write, out)
    return out, expected, write


@pytest.mark.parametrize("block", [32, 64, 48, (8, 4), (16, 3), (4, 4, 4)])
@pytest.mark.parametrize("kind", KINDS)
def test_shuffles_follow_the_programming_guide(kind, block):
    n = linear_ids(block)
    rng = np.random.default_rng(7)
    for args in (np.full(n, 1), np.full(n, 5), np.full(n, 16), rng.integers(0, 32, n)):
        out, expected, write = run_shuffle(kind, block, args)
        np.testing.assert_array_equal(out, expected)
        if n % 32 == 0:
            assert write.all()


def test_up_and_down_lanes_out_of_range_keep_their_own_value():
    out, _, _ = run_shuffle("shfl_up_sync", 32, np.full(32, 5))
    values = np.arange(32) * 10 + 7
    assert out[:5].tolist() == values[:5].tolist() and out[5:].tolist() == values[:27].tolist()
    out, _, _ = run_shuffle("shfl_down_sync", 32, np.full(32, 5))
    assert out[27:].tolist() == values[27:].tolist() and out[:27].tolist() == values[5:].tolist()


def test_shfl_sync_takes_the_source_lane_modulo_32():
    out, _, _ = run_shuffle("shfl_sync", 64, np.full(64, 35))  # lane 35 % 32 = 3 of the caller's own warp
    assert out[:32].tolist() == [37.0] * 32 and out[32:].tolist() == [357.0] * 32


@cuda.jit
def butterfly_sum(x, out):
    """Every lane ends with its warp's sum (xor butterfly); lanes < 16 and >= 16 use half-warp masks first."""
    t = cuda.threadIdx.x
    v = x[t]
    half = 0x0000FFFF if cuda.laneid < 16 else 0xFFFF0000
    d = 8
    while d > 0:
        v += cuda.shfl_xor_sync(half, v, d)
        d //= 2
    out[t, 0] = v  # the half-warp's sum
    v += cuda.shfl_xor_sync(FULL, v, 16)
    out[t, 1] = v  # the warp's sum


@pytest.mark.parametrize("block", [32, 64, 96])
def test_xor_butterfly_with_half_warp_masks_then_the_full_mask(block):
    x = (np.arange(block) % 13 - 4).astype(np.float32)
    out = np.zeros((block, 2), np.float32)
    butterfly_sum[1, block](x, out)
    halves = x.reshape(-1, 16).sum(axis=1)
    np.testing.assert_array_equal(out[:, 0], np.repeat(halves, 16))
    np.testing.assert_array_equal(out[:, 1], np.repeat(x.reshape(-1, 32).sum(axis=1), 32))


@cuda.jit
def votes(pred, out, counts):
    t = cuda.threadIdx.x
    p = pred[t]
    out[t, 0] = cuda.ballot_sync(FULL, p)
    out[t, 1] = cuda.all_sync(FULL, p)
    out[t, 2] = cuda.any_sync(FULL, p)
    out[t, 3] = cuda.eq_sync(FULL, p)
    counts[t] = cuda.popc(cuda.ballot_sync(FULL, p))


def test_ballot_bit_k_is_lane_k_and_is_an_int32_like_numba_cudas():
    pred = np.zeros(48, np.int32)
    pred[[0, 3, 31, 32 + 2, 32 + 15]] = 1
    out = np.zeros((48, 4), np.int64)
    counts = np.zeros(48, np.int64)
    votes[1, 48](pred, out, counts)
    first = np.int64(np.uint32(1 | 1 << 3 | 1 << 31).view(np.int32))  # lane 31's bit: negative, as an int32 is
    assert first < 0 and set(out[:32, 0]) == {first}
    assert set(out[32:, 0]) == {1 << 2 | 1 << 15}  # warp 1 has lanes 0-15 only
    assert set(counts[:32]) == {3} and set(counts[32:]) == {2}  # popc counts the int32's 32 bits
    assert set(out[:, 1]) == {0} and set(out[:, 2]) == {1} and set(out[:, 3]) == {0}


def test_votes_of_a_warp_that_agrees():
    pred = np.ones(64, np.int32)
    pred[32:] = 0
    out = np.zeros((64, 4), np.int64)
    votes[1, 64](pred, out, np.zeros(64, np.int64))
    assert out[:32].tolist() == [[-1, 1, 1, 1]] * 32  # all 32 bits: int32 -1
    assert out[32:].tolist() == [[0, 0, 0, 1]] * 32


@cuda.jit
def ballot_half(pred, out):
    t = cuda.threadIdx.x
    if cuda.laneid < 16:
        out[t] = cuda.ballot_sync(0x0000FFFF, pred[t])
    else:
        out[t] = cuda.any_sync(0xFFFF0000, pred[t])


def test_votes_with_masks_that_are_not_full():
    pred = np.zeros(32, np.int32)
    pred[[1, 5, 20]] = 1
    out = np.zeros(32, np.int64)
    ballot_half[1, 32](pred, out)
    assert set(out[:16]) == {1 << 1 | 1 << 5} and set(out[16:]) == {1}


@cuda.jit
def active_after_return(n, out):
    t = cuda.threadIdx.x
    if t >= n:
        return
    out[t, 0] = cuda.activemask()
    out[t, 1] = cuda.laneid
    out[t, 2] = cuda.lanemask_lt()


def test_activemask_leaves_out_lanes_that_returned():
    out = np.full((64, 3), -1, np.int64)
    active_after_return[1, 64](40, out)
    assert set(out[:32, 0]) == {FULL_MASK} and set(out[32:40, 0]) == {0xFF}
    assert out[:40, 1].tolist() == list(range(32)) + list(range(8))
    assert out[:40, 2].tolist() == [(1 << (t % 32)) - 1 for t in range(40)]


@cuda.jit
def neighbour_via_shared(out):
    buf = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    buf[t] = t * 2
    cuda.syncwarp()
    out[t] = buf[(t // 32) * 32 + (t + 1) % 32]  # the next lane of the same warp


def test_syncwarp_lets_lanes_read_what_their_warp_wrote():
    out = np.zeros(64, np.float32)
    neighbour_via_shared[1, 64](out)
    t = np.arange(64)
    np.testing.assert_array_equal(out, 2 * ((t // 32) * 32 + (t + 1) % 32))


@cuda.jit(device=True)
def warp_sum(v):
    for d in (16, 8, 4, 2, 1):
        v += cuda.shfl_down_sync(FULL, v, d)
    return v


@cuda.jit
def block_sum_with_shuffles(x, partial):
    """Each warp sums its values with shuffles, warp sums meet in shared memory, warp 0 sums those."""
    sums = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    i = cuda.blockIdx.x * cuda.blockDim.x + t
    v = x[i] if i < x.size else float32(0)
    v = warp_sum(v)
    if cuda.laneid == 0:
        sums[t // 32] = v
    cuda.syncthreads()
    if t < 32:
        v = sums[t] if t < cuda.blockDim.x // 32 else float32(0)
        v = warp_sum(v)
        if t == 0:
            partial[cuda.blockIdx.x] = v


@pytest.mark.parametrize("block", [32, 128])
def test_a_warp_shuffle_block_sum_equals_numpy(block):
    rng = np.random.default_rng(3)
    x = (rng.integers(-400, 400, 1000) / 4).astype(np.float32)  # multiples of 1/4: every order sums exactly
    blocks = math.ceil(x.size / block)
    partial = np.zeros(blocks, np.float32)
    block_sum_with_shuffles[blocks, block](x, partial)
    assert partial.sum() == x.astype(np.float64).sum()
    np.testing.assert_array_equal(partial, np.add.reduceat(x.astype(np.float64), np.arange(0, x.size, block)))


@cuda.jit
def matches(values, out):
    t = cuda.threadIdx.x
    out[t, 0] = cuda.match_any_sync(FULL, values[t])
    m, same = cuda.match_all_sync(FULL, values[t])
    out[t, 1] = m
    out[t, 2] = same


def test_match_any_and_match_all():
    values = (np.arange(32) % 3).astype(np.int32)
    out = np.zeros((32, 3), np.int64)
    matches[1, 32](values, out)
    for t in range(32):
        bits = np.uint32(sum(1 << k for k in range(32) if k % 3 == t % 3))
        assert out[t, 0] == bits.view(np.int32)  # an int32, as numba-cuda types it
    assert set(out[:, 1]) == {0} and set(out[:, 2]) == {0}
    matches[1, 32](np.full(32, 4, np.int32), out)
    assert set(out[:, 1]) == {-1} and set(out[:, 2]) == {1}


# ---------------------------------------------------------------- what CUDA leaves undefined is an error here


@cuda.jit
def not_in_own_mask(x):
    t = cuda.threadIdx.x
    x[t] = cuda.shfl_xor_sync(0x0000FFFF, x[t], 1)  # lanes 16-31 call it with a mask that does not name them


def test_a_lane_outside_its_own_mask_is_a_clear_error():
    with pytest.raises(WarpError) as info:
        not_in_own_mask[1, 32](np.zeros(32, np.float32))
    message = str(info.value)
    assert "kernel not_in_own_mask" in message and "block (0)" in message and "mask 0x0000ffff" in message
    assert "does not name lane" in message and "thread (" in message and "undefined" in message


@cuda.jit
def half_warp_sum(x, out):
    t = cuda.threadIdx.x
    if t < 16:
        v = x[t]
        for d in (8, 4, 2, 1):
            v += cuda.shfl_down_sync(0x0000FFFF, v, d)  # lanes 8-15 read lanes 16-23, outside the mask
        if t == 0:
            out[0] = v


def test_reading_a_lane_outside_the_mask_is_fine_until_the_value_is_used():
    out = np.zeros(1, np.float32)
    half_warp_sum[1, 32](np.arange(32, dtype=np.float32), out)
    assert out[0] == sum(range(16))  # lane 0 never reads outside the mask: a correct kernel


@cuda.jit
def partial_warp_sum(x, out):
    t = cuda.threadIdx.x
    v = x[t]
    for d in (16, 8, 4, 2, 1):
        v += cuda.shfl_down_sync(FULL, v, d)
    if cuda.laneid == 0:
        out[t // 32] = v


def test_a_read_past_the_end_of_the_block_raises_when_its_value_is_stored():
    with pytest.raises(WarpError) as info:
        partial_warp_sum[1, 48](np.ones(48, np.float32), np.zeros(2, np.float32))
    message = str(info.value)
    assert "undefined value was used" in message and "lane 16 does not exist" in message
    assert "the block has 48 threads, so warp 1 has lanes 0-15" in message and "kernel partial_warp_sum" in message


@cuda.jit
def mismatched(x):
    t = cuda.threadIdx.x
    if t < 4:
        x[t] = cuda.shfl_sync(FULL, x[t], 0)
    else:
        x[t] = cuda.ballot_sync(FULL, x[t] > 0)


def test_lanes_of_one_mask_at_different_intrinsics_is_an_error():
    with pytest.raises(WarpError, match="must call the same intrinsic"):
        mismatched[1, 32](np.ones(32, np.float32))


@cuda.jit
def shuffle_against_barrier(x):
    t = cuda.threadIdx.x
    if t < 16:
        x[t] = cuda.shfl_xor_sync(FULL, x[t], 1)  # waits for lanes 16-31 ...
    cuda.syncthreads()  # ... which wait here: on a GPU, a hang


def test_lanes_that_never_meet_are_reported_instead_of_hanging():
    with pytest.raises(WarpError) as info:
        shuffle_against_barrier[1, 32](np.ones(32, np.float32))
    message = str(info.value)
    assert "lanes 16-31, which never come" in message and "waits at cuda.syncthreads()" in message
    assert "hang" in message


def test_after_a_deadlock_every_waiting_lane_raises_the_same_report():
    """The simulator can miss the exception of a thread that ends at once; a lane left waiting would hang it."""
    import threading
    from types import SimpleNamespace

    from nbkit.core.warp import BlockWarps

    block = BlockWarps("k", (0, 0, 0), (4, 1, 1), (1, 1, 1), at_barrier=lambda h: h.at_barrier,
                       aborted=lambda h: False)
    for tid in range(4):  # lanes 2 and 3 wait at a barrier; lanes 0 and 1 shuffle with the full mask
        block.register(tid, SimpleNamespace(at_barrier=tid >= 2))
    raised = {}

    def lane(tid):
        try:
            block.meet(tid, "shfl_xor_sync", FULL, 1.0, 1)
        except WarpError as exc:
            raised[tid] = str(exc)

    threads = [threading.Thread(target=lane, args=(tid,), daemon=True) for tid in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(raised) == [0, 1] and raised[0] == raised[1]
    assert "lanes 2, 3, which never come: lane 2 waits at cuda.syncthreads(); lane 3 waits" in raised[0]


@cuda.jit
def shuffle_a_bool(x):
    t = cuda.threadIdx.x
    x[t] = cuda.shfl_sync(FULL, x[t] > 0, 0)


def test_a_value_numba_cuda_cannot_shuffle_is_refused_as_the_compiler_would():
    with pytest.raises(TypeError, match="only supports 32- and 64-bit ints and floats"):
        shuffle_a_bool[1, 32](np.ones(32, np.float32))


# ---------------------------------------------------------------- the memory-access tracer


def test_a_shuffle_reduction_traces_without_races_and_shuffles_are_not_memory_accesses():
    x = np.arange(200, dtype=np.float32)
    partial = np.zeros(2, np.float32)
    t = trace(block_sum_with_shuffles, 2, 128, x, partial)
    np.testing.assert_array_equal(partial, [x[:128].sum(), x[128:].sum()])
    assert t.races() == []
    counts = {a.name: int((t.records["array"] == k).sum()) for k, a in enumerate(t.arrays)}
    assert counts == {"x": 200, "partial": 2, "sums": 2 * (4 + 4)}  # 4 warp sums written, then read, per block
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nbkit.tracer.plots import plot_write_map

    plt.close(plot_write_map(t, "partial"))  # the pictures work on a traced shuffle kernel


@cuda.jit
def neighbour(out, sync, other_warp):
    buf = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    buf[t] = t * 2
    if sync:
        cuda.syncwarp()
    src = (t + 32) % 64 if other_warp else (t // 32) * 32 + (t + 1) % 32
    out[t] = buf[src]


@pytest.mark.parametrize("sync, other_warp, race", [(1, 0, False), (0, 0, True), (1, 1, True)])
def test_syncwarp_orders_shared_memory_among_the_lanes_of_a_warp_only(sync, other_warp, race):
    out = np.zeros(64, np.float32)
    races = trace(neighbour, 1, 64, out, sync, other_warp).races()
    assert bool(races) == race
    if race:
        assert races[0].array == "buf" and races[0].kind == "read-after-write"


@cuda.jit
def half_syncwarp(out):
    buf = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    buf[t] = t
    cuda.syncwarp(0x0000FFFF if t < 16 else 0xFFFF0000)  # two meetings: each half orders only itself
    out[t] = buf[t ^ 1] + buf[t ^ 16]


def test_a_syncwarp_of_half_a_warp_orders_only_that_half():
    races = trace(half_syncwarp, 1, 32, np.zeros(32, np.float32)).races()
    assert races and {r.element for r in races} <= {f"buf[{k}]" for k in range(32)}
    pairs = {(r.first_thread[0] // 16, r.second_thread[0] // 16) for r in races}
    assert pairs <= {(0, 1), (1, 0)}  # only across the halves


def test_an_undefined_use_under_the_tracer_names_the_thread():
    with pytest.raises(TraceError, match="lane 16 does not exist"):
        trace(partial_warp_sum, 1, 48, np.ones(48, np.float32), np.zeros(2, np.float32))


# ---------------------------------------------------------------- the CPU executor leaves them to the simulator


@pytest.mark.parametrize("kernel", [partial_warp_sum, neighbour_via_shared, votes, active_after_return])
def test_the_cpu_executor_refuses_warp_intrinsics(kernel):
    args = {partial_warp_sum: (np.ones(64, np.float32), np.zeros(2, np.float32)),
            neighbour_via_shared: (np.zeros(64, np.float32),),
            votes: (np.ones(64, np.int32), np.zeros((64, 4), np.int64), np.zeros(64, np.int64)),
            active_after_return: (40, np.zeros((64, 3), np.int64))}[kernel]
    with pytest.raises(ExecutorUnsupported) as info:
        run_on_cpu(kernel, 1, 64, *args)
    assert "has no CPU translation" in info.value.reason


@pytest.mark.subprocess
def test_in_cpu_mode_a_shuffle_kernel_falls_back_to_the_simulator(python_in_fresh_process, tmp_path):
    script = tmp_path / "script.py"  # from a file: the executor reads the kernel's source
    script.write_text(
        "import numpy as np\n"
        "import nbkit\n"
        "from numba import cuda\n"
        "from nbkit.core import launch as L\n"
        "\n"
        "@cuda.jit\n"
        "def warp_sums(x, out):\n"
        "    t = cuda.threadIdx.x\n"
        "    v = x[t]\n"
        "    for d in (16, 8, 4, 2, 1):\n"
        "        v += cuda.shfl_down_sync(0xFFFFFFFF, v, d)\n"
        "    if cuda.laneid == 0:\n"
        "        out[t // 32] = v\n"
        "\n"
        "x = np.arange(64, dtype=np.float32)\n"
        "out = np.zeros(2, np.float32)\n"
        "warp_sums[1, 64](x, out)\n"
        "assert out.tolist() == [x[:32].sum(), x[32:].sum()], out\n"
        "assert L.EXECUTOR_LAUNCHES == 0 and 'shfl_down_sync' in next(iter(L.FALLBACKS.values()))\n"
        "print('mode', nbkit.MODE.name)\n")
    r = python_in_fresh_process(f"import runpy; runpy.run_path({str(script)!r})", NBKIT_MODE="cpu")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mode cpu" in r.stdout and "runs on the CUDA simulator" in r.stderr and "shfl_down_sync" in r.stderr
