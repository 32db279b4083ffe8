"""The CPU executor (nbkit.core.executor) against the CUDA simulator: same launches, same results.

Every registered kernel is either in CASES (run in both, compared) or in UNSUPPORTED with the reason; a kernel
in neither fails the coverage test, so none can silently drop out. Comparisons:

* "exact": bitwise equal (most kernels: the same float32 operations in the same order per thread).
  This includes ``half_square_float64_literal``: numba computes ``0.5 * x * x`` in float64 and rounds once, the
  simulator (NumPy 2, weak Python floats) in float32, but the product of two float32 is exact in float64, so
  both round the same exact value.
* "math": within 4 ulp (2 seen when this was written: tanh). The simulator evaluates ``math.exp``/``math.tanh``/
  ``math.log`` of a float32 in float64 and rounds afterwards; the njit code calls the float32 functions (as the
  GPU does).
* "atomic": float additions in another order. For an output that receives m terms t_i, both results lie within
  (m - 1) eps32 sum|t_i| of the exact sum (first-order bound), so they differ by at most 2 (m - 1) eps32 sum|t_i|;
  sum|t_i| is computed by running the kernel on the absolute values of its inputs.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
from numba import cuda, float32

from nbkit.core.executor import BarrierDivergence, ExecutorUnsupported, compile_for_cpu, generated_source, run_on_cpu
from nbkit.kernels import all_kernels, conv, losses, matmul, pool, reduce, transpose

rng = np.random.default_rng(7)
EPS32 = float(np.finfo(np.float32).eps)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _1d(n: int, block: int = 32):
    return _cdiv(n, block), block


def _elementwise(nargs: int):
    def make(n):
        return (*_1d(n), *[f32(n) for _ in range(nargs)])
    return make


def _matmul(M, K, N, ta, tb, tile=None):
    A = f32(K, M) if ta else f32(M, K)
    B = f32(N, K) if tb else f32(K, N)
    block = (tile, tile) if tile else (8, 8)
    return (_cdiv(N, block[0]), _cdiv(M, block[1])), block, A, B, np.zeros((M, N), np.float32), ta, tb


def _conv_fwd(N, C, H, W, F, KH, KW):
    OH, OW = H - KH + 1, W - KW + 1
    grid = (_cdiv(OW, 8), _cdiv(OH, 8), N * F)
    return grid, conv.BLOCK, f32(N, C, H, W), f32(F, C, KH, KW), f32(F), np.zeros((N, F, OH, OW), np.float32)


def _conv_bin(N, C, H, W, F, KH, KW):
    OH, OW = H - KH + 1, W - KW + 1
    grid = (_cdiv(W, 8), _cdiv(H, 8), N * C)
    return grid, conv.BLOCK, f32(N, F, OH, OW), f32(F, C, KH, KW), np.zeros((N, C, H, W), np.float32)


def _conv_batomic(N, C, H, W, F, KH, KW):
    OH, OW = H - KH + 1, W - KW + 1
    grid = (_cdiv(OW, 8), _cdiv(OH, 8), N * F)
    return grid, conv.BLOCK, f32(N, F, OH, OW), f32(F, C, KH, KW), np.zeros((N, C, H, W), np.float32)


def _conv_bw(N, C, H, W, F, KH, KW):
    OH, OW = H - KH + 1, W - KW + 1
    return (*_1d(F * C * KH * KW), f32(N, F, OH, OW), f32(N, C, H, W), np.zeros((F, C, KH, KW), np.float32))


def _xent(N, C, lab, per_block):
    logits = f32(N, C) * 3
    labels = rng.integers(0, C, N).astype(lab)
    grid, block = (N, losses.ROW_THREADS) if per_block else _1d(N)
    return grid, block, logits, labels, np.zeros(N, np.float32), np.zeros((N, C), np.float32)


def _pool_fwd(N, C, H, W):
    y = np.zeros((N, C, H // 2, W // 2), np.float32)
    grid = (_cdiv(W // 2, 8), _cdiv(H // 2, 8), N * C)
    return grid, pool.BLOCK, f32(N, C, H, W), y, np.zeros(y.shape, np.int8)


def _pool_bwd(N, C, H, W):
    dy = f32(N, C, H // 2, W // 2)
    grid = (_cdiv(W, 8), _cdiv(H, 8), N * C)
    return grid, pool.BLOCK, dy, rng.integers(0, 4, dy.shape).astype(np.int8), np.zeros((N, C, H, W), np.float32)


def _transpose(M, N):
    grid, block = transpose.launch_config(M, N)
    return grid, block, f32(M, N), np.zeros((N, M), np.float32)


def _conv_reads(H, W, KH, KW):
    grid = (_cdiv(W - KW + 1, 8), _cdiv(H - KH + 1, 8), 1)
    return (grid, conv.BLOCK, np.zeros((H, W), np.int32), np.int32(KH), np.int32(KW),
            np.full((H - KH + 1, W - KW + 1), -1, np.int32))


def _sgd(n, blocks, nesterov, first):
    return (blocks, 32, f32(n), f32(n), f32(n), np.float32(0.1), np.float32(0.9), np.float32(0.1),
            np.float32(1e-3), nesterov, first)


# name -> (comparison, [argument builders, one per launch]); every launch has sizes that are not block multiples
CASES: dict[str, tuple[str, list]] = {
    "activations.relu_forward_kernel": ("exact", [lambda: _elementwise(2)(77), lambda: _elementwise(2)(300)]),
    "activations.relu_backward_kernel": ("exact", [lambda: _elementwise(3)(77), lambda: _elementwise(3)(300)]),
    "activations.sigmoid_forward_kernel": ("math", [lambda: _elementwise(2)(77), lambda: _elementwise(2)(300)]),
    "activations.sigmoid_backward_kernel": ("exact", [lambda: _elementwise(3)(77), lambda: _elementwise(3)(300)]),
    "activations.tanh_forward_kernel": ("math", [lambda: _elementwise(2)(77), lambda: _elementwise(2)(300)]),
    "activations.tanh_backward_kernel": ("exact", [lambda: _elementwise(3)(77), lambda: _elementwise(3)(300)]),
    "coalescing.gather_strided_kernel": ("exact", [lambda: (*_1d(70), f32(1 + 70 * 3), np.zeros(70, np.float32), 3, 1),
                                                   lambda: (*_1d(45), f32(45), np.zeros(45, np.float32), 1, 0)]),
    "coalescing.matmul_tiled_coalesced_kernel": ("exact", [lambda: _matmul(19, 37, 21, 0, 0, 16),
                                                           lambda: _matmul(17, 20, 18, 1, 1, 16)]),
    "coalescing.scale_add_strided_kernel": ("exact", [lambda: ((2, 2), (8, 4), f32(37, 45), f32(37, 45),
                                                               np.float32(1.5), np.zeros((37, 45), np.float32)),
                                                      lambda: ((1, 3), (4, 2), f32(9, 13), f32(9, 13),
                                                               np.float32(-2), np.zeros((9, 13), np.float32))]),
    "conv.conv2d_forward_kernel": ("exact", [lambda: _conv_fwd(2, 3, 11, 13, 4, 3, 3),
                                             lambda: _conv_fwd(1, 2, 9, 10, 3, 2, 3)]),
    "conv.conv2d_backward_input_kernel": ("exact", [lambda: _conv_bin(2, 3, 11, 13, 4, 3, 3),
                                                    lambda: _conv_bin(1, 2, 9, 10, 3, 2, 3)]),
    "conv.conv2d_backward_input_atomic_kernel": ("atomic", [lambda: _conv_batomic(2, 3, 11, 13, 4, 3, 3),
                                                            lambda: _conv_batomic(1, 2, 9, 10, 3, 2, 3)]),
    "conv.conv2d_backward_weight_kernel": ("exact", [lambda: _conv_bw(2, 3, 11, 13, 4, 3, 3),
                                                     lambda: _conv_bw(1, 2, 9, 10, 3, 2, 3)]),
    "conv.conv2d_backward_bias_kernel": ("exact", [lambda: (*_1d(5), f32(2, 5, 7, 9), np.zeros(5, np.float32)),
                                                   lambda: (*_1d(40), f32(1, 40, 3, 2), np.zeros(40, np.float32))]),
    "dense.add_bias_kernel": ("exact", [lambda: ((3, 2), (8, 8), f32(11, 19), f32(19)),
                                        lambda: ((1, 5), (16, 4), f32(17, 10), f32(10))]),
    "losses.scaled_difference_kernel": ("exact", [lambda: (*_1d(77), f32(77), f32(77), np.float32(0.3),
                                                           np.zeros(77, np.float32)),
                                                  lambda: (*_1d(5), f32(5), f32(5), np.float32(2), np.zeros(5, np.float32))]),
    "losses.squared_difference_kernel": ("exact", [lambda: _elementwise(3)(77), lambda: _elementwise(3)(300)]),
    "losses.softmax_xent_backward_kernel": ("exact", [
        lambda: ((2, 3), (8, 8), f32(19, 10), rng.integers(0, 10, 19).astype(np.int32), np.float32(1 / 19),
                 np.zeros((19, 10), np.float32)),
        lambda: ((1, 2), (16, 8), f32(9, 13), rng.integers(0, 13, 9).astype(np.int64), np.float32(1 / 9),
                 np.zeros((9, 13), np.float32))]),
    "losses.softmax_xent_row_per_block_kernel": ("math", [lambda: _xent(5, 10, np.int32, True),
                                                          lambda: _xent(3, 77, np.int64, True)]),
    "losses.softmax_xent_row_per_thread_kernel": ("math", [lambda: _xent(37, 10, np.int32, False),
                                                           lambda: _xent(9, 77, np.int64, False)]),
    "matmul.matmul_naive_kernel": ("exact", [lambda: _matmul(19, 37, 21, 0, 0), lambda: _matmul(17, 20, 18, 1, 1)]),
    "matmul.matmul_tiled_kernel": ("exact", [lambda: _matmul(19, 37, 21, 0, 0, 16),
                                             lambda: _matmul(17, 20, 18, 1, 1, 16)]),
    "optim.sgd_momentum_kernel": ("exact", [lambda: _sgd(300, 2, 0, 1), lambda: _sgd(77, 3, 1, 0)]),
    "pool.maxpool2x2_forward_kernel": ("exact", [lambda: _pool_fwd(2, 3, 9, 11), lambda: _pool_fwd(1, 2, 20, 6)]),
    "pool.maxpool2x2_backward_kernel": ("exact", [lambda: _pool_bwd(2, 3, 9, 11), lambda: _pool_bwd(1, 2, 20, 6)]),
    "precision.half_square_float32": ("exact", [lambda: _elementwise(2)(77), lambda: _elementwise(2)(300)]),
    "precision.half_square_float64_literal": ("exact", [lambda: _elementwise(2)(77), lambda: _elementwise(2)(300)]),
    "reduce.column_sum_kernel": ("exact", [lambda: (*_1d(45), f32(37, 45), np.zeros(45, np.float32)),
                                           lambda: (*_1d(3), f32(100, 3), np.zeros(3, np.float32))]),
    "reduce.sum_atomic_kernel": ("atomic", [lambda: (*_1d(300), f32(300), np.zeros(1, np.float32)),
                                            lambda: (*_1d(45), f32(45), np.zeros(1, np.float32))]),
    "reduce.sum_tree_kernel": ("exact", [lambda: (3, 128, f32(300), np.zeros(3, np.float32)),
                                         lambda: (1, 32, f32(20), np.zeros(1, np.float32))]),
    "threads.record_conv_reads": ("exact", [lambda: _conv_reads(11, 13, 3, 3), lambda: _conv_reads(7, 20, 2, 5)]),
    "threads.record_grid_stride": ("exact", [lambda: (3, 32, np.full(1000, -1, np.int32), np.full(1000, -1, np.int32)),
                                             lambda: (2, 64, np.full(77, -1, np.int32), np.full(77, -1, np.int32))]),
    "threads.record_thread_ids": ("exact", [lambda: (3, 32, *(np.full(77, -1, np.int32) for _ in range(3))),
                                            lambda: (1, 64, *(np.full(50, -1, np.int32) for _ in range(3)))]),
    "threads.record_thread_ids_2d": ("exact", [lambda: ((3, 2), (8, 8), np.full((11, 19), -1, np.int32),
                                                        np.full((11, 19), -1, np.int32)),
                                               lambda: ((1, 4), (16, 4), np.full((13, 9), -1, np.int32),
                                                        np.full((13, 9), -1, np.int32))]),
    "transpose.transpose_naive_kernel": ("exact", [lambda: _transpose(37, 45), lambda: _transpose(20, 9)]),
    "transpose.transpose_shared_kernel": ("exact", [lambda: _transpose(37, 45), lambda: _transpose(20, 9)]),
    "transpose.transpose_padded_kernel": ("exact", [lambda: _transpose(37, 45), lambda: _transpose(20, 9)]),
    "vector.vector_add": ("exact", [lambda: _elementwise(3)(77), lambda: _elementwise(3)(300)]),
}

# Registered kernels the executor does not run, with the reason (the coverage test keeps this list honest).
UNSUPPORTED: dict[str, str] = {}


def _specs() -> dict[str, object]:
    return {spec.name.removeprefix("nbkit.kernels."): spec for spec in all_kernels() if not spec.device}


def test_every_registered_kernel_is_covered_or_listed_as_unsupported():
    names = set(_specs())
    assert names - set(CASES) - set(UNSUPPORTED) == set(), "kernels neither tested nor listed as unsupported"
    assert set(CASES) | set(UNSUPPORTED) <= names, "stale names in CASES/UNSUPPORTED"


def _kernel(name: str):
    spec = _specs()[name]
    module = __import__(spec.name.rsplit(".", 1)[0], fromlist=["_"])
    return getattr(module, spec.name.rsplit(".", 1)[1])


def _copy(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


@pytest.mark.parametrize("name", sorted(CASES))
def test_executor_matches_simulator(name):
    kernel = _kernel(name)
    how, builders = CASES[name]
    for build in builders:
        grid, block, *args = build()
        sim, cpu = _copy(args), _copy(args)
        kernel[grid, block](*sim)
        run_on_cpu(kernel, grid, block, *cpu)
        outputs = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
        if how == "atomic":
            absolute = [np.abs(a) if isinstance(a, np.ndarray) and a.any() else _copy([a])[0] for a in args]
            run_on_cpu(kernel, grid, block, *absolute)
        for i in outputs:
            s, c = sim[i], cpu[i]
            if how == "exact":
                assert np.array_equal(s, c, equal_nan=True), f"{name} output {i} differs (launch {grid}, {block})"
            elif how == "math":
                np.testing.assert_array_max_ulp(s, c, maxulp=4)
            else:
                terms = _terms_per_output(name, args)
                bound = 2 * (terms - 1) * EPS32 * absolute[i].astype(np.float64)
                assert np.all(np.abs(s.astype(np.float64) - c) <= bound), f"{name}: beyond the summation bound"


def _terms_per_output(name: str, args) -> int:
    if name == "reduce.sum_atomic_kernel":
        return args[0].size
    if name == "conv.conv2d_backward_input_atomic_kernel":
        F, _, KH, KW = args[1].shape
        return F * KH * KW
    raise AssertionError(f"no summation bound for {name}")


# ---------------------------------------------------------------------------------------------- barrier cases

@cuda.jit
def early_return_reverse(x, out):
    """Threads past the end return before the barrier; the rest reverse their block's slice in shared memory."""
    buf = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    buf[t] = float32(0)
    if i >= x.size:
        return
    buf[t] = x[i]
    cuda.syncthreads()
    n = min(cuda.blockDim.x, x.size - cuda.blockIdx.x * cuda.blockDim.x)
    for k in range(3):
        if k == 1 and t == 0:
            out[i] = out[i]
    out[i] = buf[n - 1 - t] * float32(2)


@cuda.jit(device=True)
def _scaled_square(v, s):
    return s * v * v + math.sqrt(abs(v))


@cuda.jit
def uses_device_function(x, out, s):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = _scaled_square(x[i], s)


@cuda.jit(device=True)
def _count_into(hist, v):
    cuda.atomic.add(hist, v % 4, 1)


@cuda.jit
def histogram_via_device_function(x, hist):
    i = cuda.grid(1)
    if i < x.size:
        _count_into(hist, x[i])


@cuda.jit
def first_negative_per_row(M, out):
    """A return from inside a loop (no barrier): the thread stops at its row's first negative value."""
    r = cuda.grid(1)
    if r >= M.shape[0]:
        return
    out[r] = -1
    for j in range(M.shape[1]):
        for _ in range(2):
            if M[r, j] < 0:
                out[r] = j
                return


@cuda.jit
def return_inside_loop_then_barrier(x, out):
    """Threads leave from inside a loop before a barrier; the others still meet at it."""
    buf = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    buf[t] = float32(t)
    for k in range(4):
        if t == 5 + k:
            return
    cuda.syncthreads()
    out[cuda.grid(1)] = buf[31 - t] + x[cuda.grid(1)]


def _same(kernel, grid, block, *args):
    sim, cpu = _copy(args), _copy(args)
    kernel[grid, block](*sim)
    run_on_cpu(kernel, grid, block, *cpu)
    for s, c in zip(sim, cpu):
        if isinstance(s, np.ndarray):
            assert np.array_equal(s, c), (s, c)
    return cpu


def test_early_return_before_a_barrier():
    out = _same(early_return_reverse, 3, 64, f32(150), np.zeros(150, np.float32))[1]
    assert out[149] != 0 and "_done" in generated_source(early_return_reverse, f32(150), np.zeros(150, np.float32))
    # a second specialization (float64 arguments) of the same plan: the transform must not have been consumed
    _same(early_return_reverse, 2, 64, f32(100).astype(np.float64), np.zeros(100, np.float64))


@cuda.jit
def divergent_loop_barrier(x):
    n = cuda.threadIdx.x % 3  # not block-uniform: threads disagree on how often they reach the barrier
    k = 0
    while k < n:
        cuda.syncthreads()
        k += 1
    x[cuda.threadIdx.x] = k


def test_barrier_in_a_divergent_loop_is_refused_at_run_time():
    with pytest.raises(BarrierDivergence, match="disagree"):
        run_on_cpu(divergent_loop_barrier, 1, 32, np.zeros(32, np.int64))


@cuda.jit
def live_across_barrier(x, out):
    t = cuda.threadIdx.x
    v = x[t] * float32(2)  # float32
    k = t + 1  # int64
    k += 1  # assigned twice: kept per thread (t itself is computed again after the barrier)
    cuda.syncthreads()
    out[t] = v + k


def test_per_thread_dtypes_come_from_numbas_type_inference_alone(monkeypatch):
    """The values live across a barrier get the dtypes numba infers for the body; the probe that asks stops after
    type inference (lowering and LLVM were half its compile time), so nothing of it is lowered."""
    import numba.core.typed_passes

    import nbkit.core.executor as ex
    from nbkit.core.source import python_function

    def lowered(self, state):
        raise AssertionError("the probe was lowered")

    monkeypatch.setattr(numba.core.typed_passes.NativeLowering, "run_pass", lowered)
    monkeypatch.setattr(ex, "_cached_probe", lambda *args: None)  # compute it here, whatever the disk cache holds
    monkeypatch.setattr(ex, "_store_probe", lambda *args: None)
    plan = ex._plan(python_function(live_across_barrier))
    dtypes = ex._probe_types(plan, ex._argtypes([f32(32), np.zeros(32, np.float64)]))
    assert dtypes == {"v": np.dtype(np.float32), "k": np.dtype(np.int64)}


def test_simulator_device_arrays():
    from nbkit.kernels.vector import vector_add
    a, b = f32(70), f32(70)
    d_out = cuda.device_array(70, np.float32)
    run_on_cpu(vector_add, 3, 32, cuda.to_device(a), cuda.to_device(b), d_out)
    assert np.array_equal(d_out.copy_to_host(), a + b)


def test_device_function():
    _same(uses_device_function, 3, 32, f32(70), np.zeros(70, np.float32), np.float32(0.5))


def test_device_function_with_atomics_runs_blocks_serially():
    x = rng.integers(0, 100, 500).astype(np.int32)
    hist = _same(histogram_via_device_function, 16, 32, x, np.zeros(4, np.int32))[1]
    assert hist.sum() == 500 and compile_for_cpu(histogram_via_device_function, [x, hist]).serial


def test_return_from_inside_loops():
    _same(first_negative_per_row, 2, 32, f32(40, 7), np.zeros(40, np.int32))
    _same(return_inside_loop_then_barrier, 2, 32, f32(64), np.zeros(64, np.float32))


def test_tiled_matmul_keeps_barrier_phases_and_per_thread_values():
    src = generated_source(matmul.matmul_tiled_kernel, *_matmul(5, 5, 5, 0, 0, 16)[2:])
    assert "acc__a[_t]" in src and src.count("_where[1] = _t") == 4  # phases: before, two in the loop, after


@cuda.jit
def recompute_or_keep(x, out):
    """Values a later phase needs: recomputed where launch-determined (tx, i, n, half), kept in per-thread arrays
    where not: v reads an element this kernel then changes, s is assigned twice."""
    buf = cuda.shared.array(64, float32)
    tx = cuda.threadIdx.x
    i = cuda.grid(1)
    n = x.size
    half = float32(n) * float32(0.5) + float32(tx)
    v = x[min(i, n - 1)]
    s = tx * 2
    buf[tx] = v
    cuda.syncthreads()
    if i < n:
        x[i] = float32(-1)  # v keeps the value read before
    s += 1
    cuda.syncthreads()
    if i < n:
        out[i] = buf[(tx + 1) % cuda.blockDim.x] + v * half + float32(s)


def test_launch_determined_values_are_recomputed_in_later_phases_not_kept():
    src = generated_source(recompute_or_keep, f32(70), np.zeros(70, np.float32))
    kept = {name for name in ("tx", "i", "n", "half", "v", "s") if f"{name}__a = np.empty" in src}
    assert kept == {"v", "s"}, src
    for block in (24, 32, 13):  # rows of threads that four does not divide, and a block over the end of x
        _same(recompute_or_keep, _cdiv(70, block), block, f32(70), np.zeros(70, np.float32))


def test_tree_reduction_in_shared_memory_sums_right():
    x = f32(1000)
    partial = np.zeros(8, np.float32)
    run_on_cpu(reduce.sum_tree_kernel, 8, 128, x, partial)
    assert math.isclose(partial.sum(), x.sum(dtype=np.float64), rel_tol=1e-5, abs_tol=1e-4)


def test_second_launch_is_cached(monkeypatch):
    from nbkit.core import executor as ex

    args = _elementwise(3)(77)[2:]
    assert compile_for_cpu(matmul.matmul_naive_kernel, _matmul(5, 5, 5, 0, 0)[2:]) is \
        compile_for_cpu(matmul.matmul_naive_kernel, _matmul(9, 3, 7, 1, 0)[2:])
    from nbkit.kernels.vector import vector_add
    for _ in range(3):  # checked, then proven: every variant the key needs is compiled by now
        run_on_cpu(vector_add, 3, 32, *args)

    def no_compile(*_a, **_k):
        raise AssertionError("a launch compiled again")

    monkeypatch.setattr(ex, "_njit", no_compile)
    run_on_cpu(vector_add, 3, 32, *args)


# ---------------------------------------------------------------------------------------------- errors

@cuda.jit
def barrier_in_branch(x):
    if cuda.threadIdx.x < 16:
        cuda.syncthreads()
    x[0] = 1


@cuda.jit
def warp_shuffle(x):
    x[cuda.threadIdx.x] = cuda.shfl_down_sync(0xFFFFFFFF, x[cuda.threadIdx.x], 1)


@cuda.jit
def off_by_one(x, out):
    i = cuda.grid(1)
    if i <= x.size:  # the bug: <= lets thread x.size read past the end
        out[i] = x[i]


@cuda.jit
def reserved_name(x):
    _t = cuda.threadIdx.x
    x[_t] = 0


@pytest.mark.parametrize("kernel, words", [(barrier_in_branch, "syncthreads() inside if"),
                                           (warp_shuffle, "cuda.shfl_down_sync"),
                                           (reserved_name, "reserves")])
def test_unsupported_constructs_say_why(kernel, words):
    with pytest.raises(ExecutorUnsupported, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        run_on_cpu(kernel, 1, 32, np.zeros(32, np.float32))
    assert "line" in info.value.reason or "_t" in info.value.reason


@pytest.mark.parametrize("blocks", [2, 600])  # run on the calling thread, and on the pool's workers
def test_out_of_bounds_names_block_and_thread(blocks):
    n = 32 * blocks - 14
    with pytest.raises(IndexError, match=rf"block \({blocks - 1}, 0, 0\), thread \(18, 0, 0\)"):
        run_on_cpu(off_by_one, blocks, 32, f32(n), np.zeros(n + 1, np.float32))


@cuda.jit
def barrier_loop_bounded_by_thread(x):
    for k in range(cuda.threadIdx.x):
        cuda.syncthreads()
    x[0] = 1


def test_loop_with_barrier_bounded_by_thread_index_is_refused():
    with pytest.raises(ExecutorUnsupported, match="depend on the thread index"):
        run_on_cpu(barrier_loop_bounded_by_thread, 1, 32, np.zeros(32, np.float32))


@cuda.jit
def not_typeable_on_cpu(x):
    x[0] = "text"  # numba refuses a string in a float array


def test_what_numba_cannot_compile_is_unsupported_not_a_numba_error():
    with pytest.raises(ExecutorUnsupported, match="numba cannot compile not_typeable_on_cpu"):
        run_on_cpu(not_typeable_on_cpu, 1, 1, np.zeros(1, np.float32))


@cuda.jit
def _reads_unwritten_shared(x, out):
    buf = cuda.shared.array(64, float32)
    counts = cuda.shared.array(64, np.int32)
    t = cuda.threadIdx.x
    if cuda.blockIdx.x == 0:
        buf[t] = x[t]
        counts[t] = 1
    cuda.syncthreads()
    out[cuda.blockIdx.x, t] = buf[t] + counts[t]


def test_shared_memory_starts_poisoned_in_every_block_as_in_the_simulator():
    x = np.ones(32, np.float32)
    out = np.zeros((2, 32), np.float32)
    run_on_cpu(_reads_unwritten_shared, 2, 32, x, out)
    assert (out[0] == 2).all() and np.isnan(out[1]).all()  # block 1 wrote nothing: NaN + a large negative int
    assert "np.full(64, _poison_buf, float32)" in generated_source(_reads_unwritten_shared, x, out)



@cuda.jit(device=True)
def _unwritten_local_int():
    t = cuda.local.array((2, 3), np.int32)
    return t[1, 2]


@cuda.jit
def _reads_unwritten_local(x, out, iout):
    i = cuda.grid(1)
    if i < x.size:
        tmp = cuda.local.array(4, float32)
        tmp[0] = x[i]
        acc = float32(0)
        for k in range(4):  # tmp[1..3] were never written
            acc += tmp[k]
        out[i] = acc
        iout[i] = _unwritten_local_int()


def test_local_arrays_start_poisoned_as_in_the_simulator():
    """A kernel that reads local memory it never wrote must not get zeros (a right answer by luck) in cpu mode."""
    x = np.ones(5, np.float32)
    results = []
    for run in (lambda *a: run_on_cpu(_reads_unwritten_local, 1, 8, *a), _reads_unwritten_local[1, 8]):
        out, iout = np.zeros(5, np.float32), np.zeros(5, np.int32)
        run(x, out, iout)
        results.append((out, iout))
    (cpu_out, cpu_i), (sim_out, sim_i) = results
    assert np.isnan(sim_out).all() and np.isnan(cpu_out).all()
    assert (cpu_i == np.iinfo(np.int32).min).all() and (cpu_i == sim_i).all()


# ---------------------------------------------------------------------------------------------- speed decisions

@cuda.jit
def _long_sum_per_thread(x, out):
    t = cuda.grid(1)  # few threads, each with a long loop: the shape of a weight gradient
    if t < out.size:
        acc = float32(0)
        for k in range(x.size):
            acc += x[k] * float32(t)
        out[t] = acc


def test_pool_use_follows_measured_work_not_thread_count(monkeypatch):
    import nbkit.core.executor as ex

    submits = []
    pool = ex._pool()

    class Counting:
        def submit(self, fn, *args):
            submits.append(args)
            return pool.submit(fn, *args)

    monkeypatch.setattr(ex, "_pool", lambda: Counting())
    # every launch here stays checked: the pool follows the measured work whatever the variant, and the third launch
    # would otherwise compile the unchecked launcher (about 0.7 s of CPU) for nothing this test looks at
    monkeypatch.setattr(ex, "_UNCHECKED_MIN_SECONDS", math.inf)
    x, out = f32(2_000_000), np.zeros(64, np.float32)
    for _ in range(3):  # compile; a measured serial run (64 threads); then the pool, since it took > 1 ms
        run_on_cpu(_long_sum_per_thread, 2, 32, x, out)
    assert len(submits) == 1
    a, b = f32(40_000), np.zeros(40_000, np.float32)
    from nbkit.kernels.activations import relu_forward_kernel
    for _ in range(2):  # many cheap threads: shared out while not measured (the first call also compiles) ...
        run_on_cpu(relu_forward_kernel, 313, 128, a, b)
    submits.clear()
    for _ in range(2):  # ... then, measured cheap, run on the calling thread
        run_on_cpu(relu_forward_kernel, 313, 128, a, b)
    assert submits == []
    assert np.array_equal(b, np.maximum(a, 0))


@pytest.mark.parametrize("array", [np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float64, order="F"),
                                   np.zeros((5, 6), np.int8)[:, ::2], np.zeros(7, np.int32)[::3],
                                   np.zeros((2, 2), np.float32)[:1], np.frombuffer(b"\0" * 16, np.float32)])
def test_cached_array_types_are_numbas(array):
    import numba

    from nbkit.core.executor import _typeof

    _typeof(array)
    assert _typeof(array) == numba.typeof(array)


def test_cached_scalar_types_are_numbas(monkeypatch):
    # scalars are typed by their Python type from a cache (about 1 µs each saved), except where the value decides:
    # an int past int64's range is uint64, a timedelta's unit is part of its type
    import numba

    from nbkit.core.executor import _typeof

    values = [1, -5, 2**63 - 1, -2**63, 2**63, 2**64 - 1, 7, 1.5, True, 1j, np.float32(1), np.int8(3), np.bool_(1),
              np.uint64(2**64 - 1), np.timedelta64(1, "s"), np.timedelta64(1, "D"), np.datetime64("2020-01-01")]
    for v in values + values:
        assert _typeof(v) == numba.typeof(v), v
    typeof, asked = numba.typeof, []
    monkeypatch.setattr(numba, "typeof", lambda v: asked.append(v) or typeof(v))
    for v in (3, 2.5, np.float32(2), True):
        _typeof(v)
    assert asked == []


def test_the_work_of_a_launch_is_measured_with_its_shapes():
    """A dense layer's forward and backward matmuls share kernel, grid and block, not their work: each keeps its
    own measure (with one measure, a 1.4 ms forward ran on one thread after the backward's 0.6 ms)."""
    import nbkit.core.executor as ex

    grid, block = (2, 2), (16, 16)
    for k in (400, 4):
        A, B, C = f32(32, k), f32(k, 32), np.zeros((32, 32), np.float32)
        for _ in range(2):
            run_on_cpu(matmul.matmul_naive_kernel, grid, block, A, B, C, 0, 0)  # ints, as in CASES: no new types
    launcher = compile_for_cpu(matmul.matmul_naive_kernel, (A, B, C, 0, 0)).launcher
    assert len([key for key in ex._WORK_SECONDS if key[0] is launcher and key[1:3] == ((2, 2, 1), (16, 16, 1))]) == 2


def test_a_measured_launch_is_not_timed_again(monkeypatch):
    """time.thread_time costs ~13 µs a call on a VM, a third of a small launch's overhead: once a launch's work
    is known (it decides only whether the pool is used), later launches do not call it."""
    import nbkit.core.executor as ex

    x, out = f32(64), np.zeros(64, np.float32)
    for _ in range(3):
        run_on_cpu(reduce.column_sum_kernel, 1, 64, x.reshape(8, 8), out[:8])
    calls = []
    real = time.thread_time
    monkeypatch.setattr(ex.time, "thread_time", lambda: calls.append(1) or real())
    run_on_cpu(reduce.column_sum_kernel, 1, 64, x.reshape(8, 8), out[:8])
    assert calls == []


@cuda.jit
def guarded_windows(x, out):
    """Range loops whose body is guarded by a test affine in the loop variable (the executor runs only the
    iterations where it can hold), with negative offsets, windows that miss x entirely and a chained test."""
    i, r = cuda.grid(2)
    if r < out.shape[0] and i < out.shape[1]:
        K = x.shape[1]
        acc = float32(0)
        for p in range(-3, 7):  # e - v, negative start; i >= K + 9: no iteration is left
            j = i - p - 2
            if 0 <= j < K:
                acc += x[r, j] * float32(p + 5)
        for q in range(K + 3):  # e + v, split over an `and`, and a conjunct (q != 2) that bounds nothing
            if 0 <= i + q - 4 and i + q - 4 < K and q != 2:
                acc += x[r, i + q - 4] * float32(2)
        for q in range(7, 2):  # empty as written
            if q < K:
                acc += float32(1)
        for p in range(5):
            u = -p + i
            w = u - 1
            if w >= -1 and 1 - K < -w and p <= K:  # 1 - K < -w: w + 1 < K
                acc += x[r, w + 1] * float32(3)
        out[r, i] = acc


@cuda.jit
def guards_not_to_use(x, idx, out, c):
    """Guarded loops that must run every iteration: a test on a value the loop changes, a test reading an array,
    an assignment before the test that carries a value between iterations, a loop variable read after the loop,
    a test with a division (it could raise where the loop now skips), and a test on a parameter that the kernel
    assigns (not known to be an integer: here a float)."""
    i = cuda.grid(1)
    if i < out.size:
        K = x.size
        acc = float32(0)
        k = i
        for v1 in range(K):  # k changes in the loop
            if 0 <= k - v1 < 3:
                acc += x[v1]
                k += 1
        for v2 in range(K):  # reads an array element
            if 0 <= v2 - idx[0] < 2:
                acc += x[v2] * float32(2)
        s = 0
        for v3 in range(K):  # s carries from one iteration to the next
            s = s + 1
            if 0 <= i - v3 < 2:
                acc += float32(s)
        for v4 in range(K):  # v4 is read after the loop
            if v4 < i:
                acc += x[v4]
        acc += float32(v4)
        for v5 in range(K):  # // could raise
            if v5 < i and 5 // (K - v5) >= 0:
                acc += x[v5] * float32(3)
        c = c + 1
        for v6 in range(K):
            if v6 < c:
                acc += x[v6] * float32(4)
        out[i] = acc


def test_guarded_loops_run_only_where_their_test_can_hold(monkeypatch):
    from nbkit.core import executor

    monkeypatch.setattr(executor, "_UNCHECKED_MIN_SECONDS", 0.0)  # a proven launch runs unchecked at once
    src = generated_source(guarded_windows, f32(3, 11), np.zeros((3, 23), np.float32))
    assert "for p in range(max(-3, i - 2 - K + 1), min(7, i - 2 + 1)):" in src, src
    assert "for q in range(max(0, -(i - 4)), min(K + 3, K - (i - 4))):" in src, src
    assert "and (q != 2)" in src  # the test is kept where one of its conjuncts bounds nothing
    assert "if 0 <= j < K" not in src and "if w >= -1" not in src  # implied by the range: dropped
    for rows, n, k in ((3, 23, 11), (2, 7, 1), (1, 13, 5)):  # odd sizes; windows beyond x on both sides
        for _ in range(3):  # checked (compiling), checked (proving), then unchecked with lanes
            _same(guarded_windows, (_cdiv(n, 8), rows), (8, 1), f32(rows, k), np.zeros((rows, n), np.float32))
        assert executor.last_launch_lanes()


def test_guarded_loops_that_must_run_every_iteration_are_left_alone(monkeypatch):
    from nbkit.core import executor

    monkeypatch.setattr(executor, "_UNCHECKED_MIN_SECONDS", 0.0)
    src = generated_source(guards_not_to_use, f32(9), np.array([3], np.int64), np.zeros(9, np.float32), 2.5)
    assert src.count(" in range(K):") == 6 and "max(" not in src and "min(" not in src, src
    for n in (9, 4):
        for _ in range(3):
            _same(guards_not_to_use, _cdiv(n, 4), 4, f32(n), np.array([n // 3], np.int64), np.zeros(n, np.float32), 1.5)


@cuda.jit
def guarded_off_by_one(x, out):
    i = cuda.grid(1)
    if i < out.size:
        acc = float32(0)
        for p in range(8):
            j = i + p - 2
            if 0 <= j <= x.size:  # <=: x[x.size] for p = x.size + 2 - i
                acc += x[j]
        out[i] = acc


def test_out_of_bounds_in_a_shrunk_guarded_loop_names_the_first_thread_as_before():
    assert "for p in range(max(0, -(i - 2)), min(8, x.size - (i - 2) + 1)):" in generated_source(
        guarded_off_by_one, f32(45), np.zeros(45, np.float32))
    with pytest.raises(IndexError, match=r"block \(1, 0, 0\), thread \(8, 0, 0\)"):  # i = 40: j = 45, p = 7
        run_on_cpu(guarded_off_by_one, 2, 32, f32(45), np.zeros(45, np.float32))


@pytest.mark.parametrize("seed", range(3))
def test_shrunk_range_is_exactly_the_iterations_whose_test_holds(seed):
    """The range computed from an affine test, against the test itself, over random offsets (negative ones
    too), bounds, operators and starts (run as Python: numba's int64 arithmetic agrees for these values)."""
    import ast

    from nbkit.core.executor import _shrink_guarded

    r = np.random.default_rng(seed)
    ops = ["<", "<=", ">", ">="]
    for _ in range(300):
        e, k, a, b = (int(t) for t in r.integers(-9, 10, 4))
        sign = r.choice(["-", "+"])
        o1, o2 = r.choice(ops, 2)
        code = (f"for v in range({a}, {b}):\n    j = e {sign} v\n"
                f"    if {int(r.integers(-4, 5))} {o1} j and j {o2} k:\n        hits.append(v)\n")
        tree = ast.parse(code).body
        shrunk = _shrink_guarded(ast.parse(code).body, {"e", "k"}, tree, set())
        assert "max(" in ast.unparse(shrunk[0]) or "min(" in ast.unparse(shrunk[0]), code
        want, got = [], []
        exec(code, {"hits": want, "e": e, "k": k})  # noqa: S102 - the loop as written, on plain ints
        exec(ast.unparse(ast.Module(shrunk, [])), {"hits": got, "e": e, "k": k})  # noqa: S102
        assert got == want, (code, ast.unparse(shrunk[0]), e, k)


@cuda.jit
def guarded_between_barriers(x, out):
    """A guarded loop in a phase of a loop with barriers (``t`` is kept per thread across the barriers)."""
    buf = cuda.shared.array(16, float32)
    for step in range(2):
        t = cuda.threadIdx.x
        buf[t] = x[t] + float32(step)
        cuda.syncthreads()
        acc = float32(0)
        for p in range(5):
            if 0 <= t - p < 16:
                acc += buf[t - p] * float32(p + 1)
        out[step, t] = acc
        cuda.syncthreads()


def test_guarded_loop_between_barriers_is_shrunk():
    src = generated_source(guarded_between_barriers, f32(16), np.zeros((2, 16), np.float32))
    assert "for p in range(max(0, t - 16 + 1), min(5, t + 1)):" in src, src
    _same(guarded_between_barriers, 1, 16, f32(16), np.zeros((2, 16), np.float32))


def test_tree_copy_copies_like_deepcopy():
    """Code generation copies syntax trees with ex._tree_copy (faster than copy.deepcopy): the same tree, no node or
    list shared with the original, and a node met twice copied once."""
    import ast
    import copy
    import inspect
    import textwrap

    import nbkit.core.executor as ex

    tree = ast.parse(textwrap.dedent(inspect.getsource(ex._tree_copy)))
    twice = ast.Name("x", ast.Load())
    tree.body.append(ast.Expr(ast.Tuple([twice, twice], ast.Load())))
    tree.body[-1].value.extra = {"kept": [1, 2]}  # a value no tree node holds: deepcopy's result
    new = ex._tree_copy(tree)
    assert ast.dump(new, include_attributes=True) == ast.dump(copy.deepcopy(tree), include_attributes=True)
    originals = {id(n) for n in ast.walk(tree)} | {id(v) for n in ast.walk(tree) for v in vars(n).values()
                                                   if isinstance(v, list)}
    assert not any(id(n) in originals for n in ast.walk(new))
    assert not any(id(v) in originals for n in ast.walk(new) for v in vars(n).values() if isinstance(v, list))
    pair = new.body[-1].value
    assert pair.elts[0] is pair.elts[1] and pair.elts[0] is not twice
    assert pair.extra == {"kept": [1, 2]} and pair.extra is not tree.body[-1].value.extra


def test_launchers_compile_to_the_ir_of_numbas_own_pipeline():
    """The executor's pipeline skips two of numba's passes where they cannot change a launcher (compile time):
    the launcher's LLVM IR is exactly what numba's default pipeline makes of the same function and flags. A
    shared-memory tree reduction (barriers, per-thread arrays) and a convolution gradient (deep loops)."""
    import numba
    import numba.core.compiler

    from nbkit.core import executor as ex

    for kernel, (grid, block, *args) in [(reduce.sum_tree_kernel, (3, 128, f32(300), np.zeros(3, np.float32))),
                                         (conv.conv2d_backward_input_kernel, _conv_bin(2, 3, 11, 13, 4, 3, 3))]:
        run_on_cpu(kernel, grid, block, *args)  # compiles the (checked) launcher
        launcher = compile_for_cpu(kernel, args).launcher
        (sig,) = launcher.signatures
        flags = {k: v for k, v in launcher.targetoptions.items() if k not in ("nopython", "cache")}
        assert launcher._compiler.pipeline_class is ex._LauncherCompiler
        fresh = launcher
        if "pipeline_times" not in (launcher.overloads[sig].metadata or {}):
            # loaded from the disk cache, which keeps no pipeline record: compiled again here (the same pipeline)
            fresh = numba.njit(**flags, pipeline_class=launcher._compiler.pipeline_class)(launcher.py_func)
            fresh.compile(sig)
        assert list(fresh.overloads[sig].metadata["pipeline_times"]) == ["nbkit launcher"]
        reference = numba.njit(**dict(flags, pipeline_class=numba.core.compiler.Compiler))(launcher.py_func)
        reference.compile(sig)
        # the same text but for the dispatcher's serial number in mangled names (B<digits>v<n>), and so in the
        # lengths of the byte strings that quote them
        ours, numbas = (re.sub(r"\[\d+ x i8\]", "[n x i8]", re.sub(r"B\d+v\d+B", "BvB", d.inspect_llvm(sig)))
                        for d in (fresh, reference))
        assert ours == numbas, kernel
        assert "cfunc." not in fresh.inspect_llvm(sig)  # no C-callable wrapper: never called from C
        assert ex._JIT["no_cfunc_wrapper"]


def _closure(x):
    return sum([v * 2 for v in x])


def _loop(x, out):
    for i in range(x.size):
        out[i] = x[i] * 2.0


def _array_expression(x):
    return x * 2.0 + 1.0  # (not ``out[:] = ...``: numba's broadcast error message would compile its string formatting)


def test_passes_are_skipped_only_where_they_cannot_change_anything():
    """What decides whether numba's closure inliner and its rewrites after type inference run: a comprehension or a
    list (closure inliner), an operator on whole arrays (array expressions) run them; a loop over elements does not."""
    import types

    import numba
    from numba.core import compiler, registry, typed_passes

    from nbkit.core import executor as ex

    assert ex._may_inline_closures(compiler.run_frontend(_closure))
    assert not ex._may_inline_closures(compiler.run_frontend(_loop))
    target = registry.cpu_target
    target.typing_context.refresh()  # as numba's dispatcher does before typing (run alone, nothing compiled yet)
    arr = numba.float64[::1]
    for fn, want, args in [(_loop, False, (arr, arr)), (_array_expression, True, (arr,))]:
        func_ir = compiler.run_frontend(fn)
        typemap = typed_passes.type_inference_stage(target.typing_context, target.target_context, func_ir,
                                                    args, None).typemap
        assert ex._may_rewrite(types.SimpleNamespace(func_ir=func_ir, typemap=typemap)) is want, fn
    out = numba.njit(**ex._JIT)(_array_expression)(np.arange(5.0))  # the rewrite ran: numba's fused array expression
    assert out.tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
