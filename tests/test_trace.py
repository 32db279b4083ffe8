"""The memory-access tracer on patterns whose answers are known by hand (sectors, bank conflicts, races, maps)."""

from collections import Counter

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numba import cuda, float32, float64

from nbkit.core.launch import LaunchConfigError
from nbkit.tracer import TraceError, TraceIndexError, trace
from nbkit.tracer.plots import plot_reads, plot_warp_request, plot_write_map

# ---------------------------------------------------------------- global memory: sectors per warp request


@cuda.jit
def copy_strided(x, out, stride, offset):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i * stride + offset]


@cuda.jit
def copy_column(M, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = M[i, 0]  # a column of a row-major matrix: neighbouring lanes are a whole row apart


def test_unit_stride_float32_is_4_sectors_per_request():
    x = np.arange(64, dtype=np.float32)
    out = np.zeros(64, dtype=np.float32)
    t = trace(copy_strided, 1, 64, x, out, 1, 0)
    np.testing.assert_array_equal(out, x)  # results come back like a normal launch
    assert t.sectors_per_request("x").tolist() == [4, 4]
    assert t.sectors_per_request("out", op="write").tolist() == [4, 4]
    assert t.efficiency("x") == 1.0
    assert t.bytes_used(array="x") == t.bytes_moved("x") == 64 * 4


def test_stride_2_is_8_sectors_and_half_the_bytes_wasted():
    x = np.arange(128, dtype=np.float32)
    out = np.zeros(64, dtype=np.float32)
    t = trace(copy_strided, 1, 64, x, out, 2, 0)
    np.testing.assert_array_equal(out, x[::2])
    assert t.sectors_per_request("x").tolist() == [8, 8]
    assert t.efficiency("x") == pytest.approx(0.5)


def test_column_of_row_major_matrix_is_32_sectors():
    M = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    out = np.zeros(32, dtype=np.float32)
    t = trace(copy_column, 1, 32, M, out)
    np.testing.assert_array_equal(out, M[:, 0])
    assert t.sectors_per_request("M").tolist() == [32]
    assert t.bytes_moved("M") == 32 * 32 and t.bytes_used(array="M") == 32 * 4


def test_misaligned_by_one_element_is_5_sectors():
    x = np.arange(33, dtype=np.float32)
    out = np.zeros(32, dtype=np.float32)
    t = trace(copy_strided, 1, 32, x, out, 1, 1)
    assert t.sectors_per_request("x").tolist() == [5]
    (req,) = t.requests(array="x")
    assert req.lanes.tolist() == list(range(32))
    assert req.elements.tolist() == list(range(1, 33))
    assert req.sectors.tolist() == [0, 1, 2, 3, 4]


def test_float64_elements_are_8_bytes():
    x = np.arange(32, dtype=np.float64)
    out = np.zeros(32, dtype=np.float64)
    t = trace(copy_strided, 1, 32, x, out, 1, 0)
    assert t.sectors_per_request("x").tolist() == [8]  # 256 bytes
    assert t.array_info("x").itemsize == 8


def test_partial_warp_counts_only_active_lanes():
    x = np.arange(40, dtype=np.float32)
    out = np.zeros(40, dtype=np.float32)
    t = trace(copy_strided, 1, 64, x, out, 1, 0)  # lanes 8-31 of warp 1 are stopped by the guard
    reqs = t.requests(array="x")
    assert [len(r.lanes) for r in reqs] == [32, 8]
    assert t.sectors_per_request("x").tolist() == [4, 1]


# ---------------------------------------------------------------- shared memory: bank conflicts


def _shared_stride_kernel(stride):
    @cuda.jit
    def kernel(out):
        s = cuda.shared.array(1024, float32)
        i = cuda.threadIdx.x
        s[(i * stride) % 1024] = i
        cuda.syncthreads()
        out[i] = s[(i * stride) % 1024]

    return kernel


@pytest.mark.parametrize("stride, ways", [(1, 1), (2, 2), (32, 32), (0, 1)])
def test_shared_bank_conflicts(stride, ways):
    """stride 0 = every lane on one word: a broadcast, not a conflict."""
    out = np.zeros(32, dtype=np.float32)
    t = trace(_shared_stride_kernel(stride), 1, 32, out)
    assert t.bank_conflicts("s", op="read").tolist() == [ways]
    assert t.bank_conflicts("s", op="write").tolist() == [ways]


@cuda.jit
def shared_float64(out):
    s = cuda.shared.array(32, float64)
    i = cuda.threadIdx.x
    s[i] = i
    cuda.syncthreads()
    out[i] = s[i]


def test_shared_float64_needs_two_words_per_lane():
    out = np.zeros(32, dtype=np.float64)
    t = trace(shared_float64, 1, 32, out)
    np.testing.assert_array_equal(out, np.arange(32))
    assert t.bank_conflicts("s", op="read").tolist() == [2]  # 64 words over 32 banks


TILE = 32
ROWS = 8  # each thread copies TILE // ROWS elements, so a 32x32 tile needs only 256 threads


def _transpose_kernel(pad):
    @cuda.jit
    def transpose(a, out):
        tile = cuda.shared.array((TILE, TILE + pad), float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for r in range(ty, TILE, ROWS):
            tile[r, tx] = a[r, tx]
        cuda.syncthreads()
        for r in range(ty, TILE, ROWS):
            out[r, tx] = tile[tx, r]

    return transpose


@pytest.mark.parametrize("pad, ways", [(0, 32), (1, 1)])
def test_transposed_tile_conflicts_and_padding_removes_them(pad, ways):
    a = np.arange(TILE * TILE, dtype=np.float32).reshape(TILE, TILE)
    out = np.zeros_like(a)
    t = trace(_transpose_kernel(pad), 1, (TILE, ROWS), a, out)
    np.testing.assert_array_equal(out, a.T)
    assert set(t.bank_conflicts("tile", op="read").tolist()) == {ways}
    assert set(t.bank_conflicts("tile", op="write").tolist()) == {1}
    assert set(t.sectors_per_request("a").tolist()) == {4}  # both global sides stay coalesced
    assert set(t.sectors_per_request("out").tolist()) == {4}
    assert "tile" in t.summary() and f"{ways}-way" in t.summary()


# ---------------------------------------------------------------- one request table, viewed by Request


def _sectors_by_hand(addresses: list[int], itemsize: int) -> list[int]:
    """Every 32-byte sector from each element's first byte to its last, each once."""
    return sorted({s for a in addresses for s in range(a // 32, (a + itemsize - 1) // 32 + 1)})


def _ways_by_hand(addresses: list[int], itemsize: int) -> int:
    """Most distinct 4-byte words in one of the 32 banks (a word asked by several lanes counts once)."""
    words = {a // 4 + k for a in addresses for k in range(max(1, -(-itemsize // 4)))}
    return max(Counter(w % 32 for w in words).values(), default=0)


@pytest.mark.parametrize("case", ["float32 misaligned", "float64 strided", "shared stride 2", "shared float64",
                                  "transposed tile"])
def test_request_views_and_totals_come_from_one_table_and_match_a_count_by_hand(case):
    if case == "float32 misaligned":
        t = trace(copy_strided, 2, 48, np.arange(200, dtype=np.float32), np.zeros(80, np.float32), 1, 3)
    elif case == "float64 strided":
        t = trace(copy_strided, 1, 40, np.arange(200, dtype=np.float64), np.zeros(40), 3, 1)
    elif case == "shared stride 2":
        t = trace(_shared_stride_kernel(2), 1, 32, np.zeros(32, np.float32))
    elif case == "shared float64":
        t = trace(shared_float64, 1, 32, np.zeros(32))
    else:
        a = np.arange(TILE * TILE, dtype=np.float32).reshape(TILE, TILE)
        t = trace(_transpose_kernel(0), 1, (TILE, ROWS), a, np.zeros_like(a))
    everything = t.requests()
    assert sum(len(r.lanes) for r in everything) == len(t.records)  # every record in exactly one request
    for r in everything:
        addresses = r.addresses.tolist()
        assert r.sectors.tolist() == _sectors_by_hand(addresses, r.itemsize), r
        assert r.bank_ways == _ways_by_hand(addresses, r.itemsize), r
    glob, shared = t.requests(space="global"), t.requests(space="shared")
    assert [len(r.sectors) for r in glob] == t.sectors_per_request().tolist()
    assert [r.bank_ways for r in shared] == t.bank_conflicts().tolist()
    assert t.bytes_moved() == 32 * sum(len(r.sectors) for r in glob)
    assert t.bytes_used() == sum(len(set(r.addresses.tolist())) * r.itemsize for r in glob)


# ---------------------------------------------------------------- races


def _reverse_kernel(sync):
    @cuda.jit
    def reverse(x, out):
        s = cuda.shared.array(64, float32)
        t = cuda.threadIdx.x
        s[t] = x[t]
        if sync:
            cuda.syncthreads()
        out[t] = s[cuda.blockDim.x - 1 - t]

    return reverse


def test_missing_syncthreads_is_a_race_and_syncthreads_removes_it():
    x = np.arange(64, dtype=np.float32)
    out = np.zeros(64, dtype=np.float32)
    racy = trace(_reverse_kernel(False), 1, 64, x, out)
    races = racy.races()
    assert len(races) == 64  # every element is written by one thread and read by another, unordered
    by_element = {r.element: r for r in races}
    r = by_element["s[6]"]
    assert {r.first_thread, r.second_thread} == {(6,), (57,)}
    assert r.kind in ("read-after-write", "write-after-read")
    assert r.array == "s" and r.epoch == 0 and "no syncthreads between" in str(r)
    out2 = np.zeros(64, dtype=np.float32)
    safe = trace(_reverse_kernel(True), 1, 64, x, out2)
    assert safe.races() == []
    np.testing.assert_array_equal(out2, x[::-1])


def test_same_thread_rewriting_its_own_element_is_no_race():
    out = np.zeros(32, dtype=np.float32)
    t = trace(_shared_stride_kernel(1), 1, 32, out)
    assert t.races() == []


@cuda.jit
def tree_sum(x, out):
    buf = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    buf[t] = x[t]
    cuda.syncthreads()
    stride = 32
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        out[0] = buf[0]


def test_tree_reduction_with_barriers_has_no_race():
    x = np.arange(64, dtype=np.float32)
    out = np.zeros(1, dtype=np.float32)
    t = trace(tree_sum, 1, 64, x, out)
    assert out[0] == x.sum()
    assert t.races() == []
    assert t.records["epoch"].max() == 7  # 1 + 6 halving steps


# ---------------------------------------------------------------- maps


@cuda.jit
def fill_2d(out):
    col, row = cuda.grid(2)
    if row < out.shape[0] and col < out.shape[1]:
        out[row, col] = row * 100 + col


@cuda.jit
def all_write_first(out):
    i = cuda.grid(1)
    if i < 5:
        out[0] = i  # five threads write element 0; elements 1.. are never written


def test_write_map_of_correct_2d_kernel_covers_every_element_once():
    out = np.zeros((13, 19), dtype=np.float32)
    t = trace(fill_2d, (3, 2), (8, 8), out)
    wm = t.write_map("out")
    assert (wm.writers == 1).all() and not wm.never_written.any() and not wm.written_by_several.any()
    # element (row 9, col 17) belongs to block (2, 1), thread (1, 1)
    assert t.block_index(int(wm.block[9, 17])) == (2, 1)
    assert t.thread_index(int(wm.thread[9, 17])) == (1, 1)
    np.testing.assert_array_equal(out, np.add.outer(np.arange(13) * 100, np.arange(19)))
    assert t.reads_per_element("out").sum() == 0


def test_write_map_marks_duplicate_and_missing_writes():
    out = np.zeros(8, dtype=np.float32)
    t = trace(all_write_first, 1, 32, out)
    wm = t.write_map("out")
    assert wm.writers.tolist() == [5, 0, 0, 0, 0, 0, 0, 0]
    assert wm.written_by_several.tolist() == [True] + [False] * 7
    assert wm.never_written.sum() == 7


def test_naive_matmul_trace_equals_plain_launch_and_reads_one_row_and_column():
    from nbkit.core.launch import block_2d, grid_2d, launch
    from nbkit.kernels.matmul import matmul_naive_kernel

    rng = np.random.default_rng(0)
    M, K, N = 19, 7, 17
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    block = block_2d(M, N)
    C_plain, C_traced = np.zeros((M, N), np.float32), np.zeros((M, N), np.float32)
    launch(matmul_naive_kernel, grid_2d(M, N, block), block, A, B, C_plain, 0, 0)
    t = trace(matmul_naive_kernel, grid_2d(M, N, block), block, A, B, C_traced, 0, 0)
    np.testing.assert_array_equal(C_traced, C_plain)
    assert (t.write_map("C").writers == 1).all()
    assert (t.reads_per_element("A") == N).all() and (t.reads_per_element("B") == M).all()
    reads = t.read_map("A", ((0, 0), (3, 2)))  # block (0, 0), thread x=3 (col 3), y=2 (row 2)
    assert reads[2].tolist() == [1] * K and reads.sum() == K
    assert t.read_map("B", ((0, 0), (3, 2)))[:, 3].tolist() == [1] * K


# ---------------------------------------------------------------- errors, limits, modes


@cuda.jit
def unguarded_fill(out):
    i = cuda.grid(1)
    out[i] = 1.0


def test_out_of_bounds_names_thread_array_index_and_shape():
    out = np.zeros(37, dtype=np.float32)
    with pytest.raises(TraceIndexError) as info:
        trace(unguarded_fill, 2, 32, out)
    msg = str(info.value)
    assert "block (1), thread (5)" in msg and "out[37]" in msg and "(37,)" in msg
    assert isinstance(info.value, IndexError)
    assert (out == 0).all()  # a failed launch copies nothing back


@cuda.jit
def divides(x, out):
    i = cuda.grid(1)
    out[i] = 1 // int(x[i])


def test_other_kernel_errors_name_the_thread():
    x = np.array([1, 1, 0, 1], dtype=np.float32)
    with pytest.raises(TraceError, match=r"block \(0\), thread \(2\) raised ZeroDivisionError"):
        trace(divides, 1, 4, x, np.zeros(4, np.float32))


def test_launch_limits_are_checked():
    with pytest.raises(LaunchConfigError):
        trace(unguarded_fill, 1, 2048, np.zeros(2048, np.float32))


def test_names_and_argument_count():
    out = np.zeros(4, dtype=np.float32)
    t = trace(fill_2d, 1, (2, 2), out.reshape(2, 2), names=["result"])
    assert [a.name for a in t.arrays] == ["result"]
    with pytest.raises(TypeError, match="takes 1 arguments"):
        trace(fill_2d, 1, 4)


@cuda.jit(device=True)
def load_twice(a, i):
    return a[i] + a[i]


@cuda.jit
def uses_device_function(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = load_twice(x, i)
        cuda.atomic.add(out, 0, 1.0)


def test_device_functions_and_atomics_are_traced():
    x = np.arange(32, dtype=np.float32)
    out = np.zeros(32, dtype=np.float32)
    t = trace(uses_device_function, 1, 32, x, out)
    assert out[5] == 10 and out[0] == 32
    assert t.reads_per_element("x").tolist() == [2] * 32
    assert {s.function for s in t.sites} == {"load_twice", "uses_device_function"}
    atomics = t.requests(array="out", op="atomic")
    assert len(atomics) == 1 and len(atomics[0].lanes) == 32 and t.sectors_per_request("out", "atomic").tolist() == [1]


@pytest.mark.subprocess
def test_trace_in_gpu_mode(python_in_fresh_process):
    """GPU mode (real numba-cuda target, no device needed): the kernel's py_func runs on the simulator."""
    code = (
        "import numpy as np, nbkit\n"
        "assert not nbkit.MODE.is_simulator\n"
        "from nbkit.kernels.reduce import sum_tree_kernel\n"
        "from nbkit.tracer import trace\n"
        "x = np.arange(100, dtype=np.float32); p = np.zeros(1, np.float32)\n"
        "t = trace(sum_tree_kernel, 1, 128, x, p)\n"
        "assert p[0] == x.sum(), p\n"
        "assert t.races() == [] and set(t.bank_conflicts('buf').tolist()) == {1}\n"
        "from numba import cuda\n"
        "@cuda.jit(device=True)\n"
        "def twice(a, i):\n"
        "    return a[i] + a[i]\n"
        "@cuda.jit\n"
        "def k(x, out):\n"
        "    i = cuda.grid(1)\n"
        "    if i < x.size:\n"
        "        out[i] = twice(x, i)\n"
        "o = np.zeros(100, np.float32)\n"
        "t = trace(k, 4, 32, x, o)\n"
        "assert (o == 2 * x).all() and (t.reads_per_element('x') == 2).all()\n"
        "assert type(twice).__name__ == 'CUDADispatcher'  # put back after tracing\n"
        "print('ok')\n"
    )
    result = python_in_fresh_process(code, NBKIT_MODE="gpu")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


# ---------------------------------------------------------------- pictures


def test_plots_draw_titled_pictures():
    out = np.zeros(40, dtype=np.float32)
    t = trace(all_write_first, 2, 32, out)
    fig = plot_write_map(t, "out")
    assert "never written" in fig.axes[0].get_title()
    plt.close(fig)
    x = np.arange(33, dtype=np.float32)
    t2 = trace(copy_strided, 1, 32, x, np.zeros(32, np.float32), 1, 1)
    fig = plot_reads(t2, "x", (0, 3))
    assert "read by block 0, thread 3" in fig.axes[0].get_title()
    plt.close(fig)
    fig = plot_warp_request(t2, t2.requests(array="x")[0])
    assert "5 sector(s)" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="shared"):
        plot_warp_request(t, _shared_request())


def _shared_request():
    t = trace(_shared_stride_kernel(1), 1, 32, np.zeros(32, np.float32))
    return t.requests(space="shared")[0]


@cuda.jit
def row_views(M, out):
    i = cuda.grid(1)
    if i < out.size:
        row = M[i]  # a view: no access until an element is read
        out[i] = row[0] + row[-1] + M[i, -1]


def test_views_and_negative_indices_map_to_the_right_elements():
    M = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = np.zeros(4, dtype=np.float32)
    t = trace(row_views, 1, 4, M, out)
    np.testing.assert_array_equal(out, M[:, 0] + 2 * M[:, -1])
    reads = t.reads_per_element("M")
    assert reads[:, 0].tolist() == [1] * 4 and reads[:, 1].tolist() == [0] * 4 and reads[:, 2].tolist() == [2] * 4


@cuda.jit
def fill_rows(out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i, :] = i  # one slice assignment writes a whole row


def test_slice_assignment_records_every_element():
    out = np.zeros((5, 3), dtype=np.float32)
    t = trace(fill_rows, 1, 8, out)
    wm = t.write_map("out")
    assert (wm.writers == 1).all()
    assert [t.thread_index(int(v)) for v in wm.thread[:, 0]] == [(i,) for i in range(5)]
    np.testing.assert_array_equal(out, np.repeat(np.arange(5, dtype=np.float32)[:, None], 3, axis=1))


@cuda.jit
def does_nothing(x):
    pass


@cuda.jit
def dynamic_shared(x, out):
    s = cuda.shared.array(0, float32)
    i = cuda.threadIdx.x
    s[i] = x[i]
    cuda.syncthreads()
    out[i] = s[31 - i]


def test_empty_trace_and_dynamic_shared_memory():
    t = trace(does_nothing, 1, 32, np.zeros(4, np.float32))
    assert len(t.records) == 0 and t.requests() == [] and t.races() == []
    assert t.sectors_per_request().size == 0 and "array" in t.summary()
    x = np.arange(32, dtype=np.float32)
    out = np.zeros(32, np.float32)
    t = trace(dynamic_shared, 1, 32, x, out, dynamic_shared_bytes=32 * 4)
    np.testing.assert_array_equal(out, x[::-1])
    assert t.bank_conflicts("s").tolist() == [1, 1] and t.races() == []


def test_a_wide_strided_request_collapses_the_untouched_sectors():
    """32 lanes 32 floats apart span 32 x 4 sectors: only the 32 touched ones are drawn, gaps marked, boxes visible."""
    x = np.arange(32 * 32, dtype=np.float32)
    t = trace(copy_strided, 1, 32, x, np.zeros(32, np.float32), 32, 0)
    request = t.requests(array="x")[0]
    fig = plot_warp_request(t, request)
    ax = fig.axes[0]
    boxes = [p for p in ax.patches]
    assert len(boxes) == len(request.sectors) == 32  # untouched sectors are not drawn as boxes
    assert "untouched sectors not drawn" in ax.get_xlabel()
    assert any(text.get_text().startswith("⋯") for text in ax.texts)
    plt.close(fig)
