"""Both matmul kernels, with and without transposes, against NumPy on shapes that straddle the tiles."""

import numpy as np
import pytest
from numba import cuda

from nbkit.kernels.matmul import TILE, matmul


def mats(M, K, N, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((M, K)).astype(np.float32), r.standard_normal((K, N)).astype(np.float32)


@pytest.mark.parametrize("method", ["naive", "tiled"])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_matches_numpy_on_odd_shapes(method, trans_a, trans_b):
    M, K, N = TILE + 1, 2 * TILE + 1, TILE + 3  # every dimension leaves a partial tile
    A, B = mats(M, K, N)
    a = np.ascontiguousarray(A.T) if trans_a else A
    b = np.ascontiguousarray(B.T) if trans_b else B
    np.testing.assert_allclose(matmul(a, b, trans_a, trans_b, method), A @ B, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["naive", "tiled"])
def test_tiny_and_thin(method):
    for M, K, N in [(1, 1, 1), (1, 5, 3), (3, 1, 2)]:
        A, B = mats(M, K, N, seed=M * 10 + K)
        np.testing.assert_allclose(matmul(A, B, method=method), A @ B, rtol=1e-5, atol=1e-6)


def test_device_arrays_stay_on_the_device():
    A, B = mats(3, 4, 5)
    C = matmul(cuda.to_device(A), cuda.to_device(B))
    assert not isinstance(C, np.ndarray)
    np.testing.assert_allclose(C.copy_to_host(), A @ B, rtol=1e-5, atol=1e-6)


def test_bad_input():
    A, B = mats(3, 4, 5)
    with pytest.raises(ValueError, match=r"inner dimensions differ: op\(A\) is 3x4, op\(B\) is 5x4"):
        matmul(A, B.T.copy())
    with pytest.raises(ValueError, match="method must be one of"):
        matmul(A, B, method="fast")
    with pytest.raises(TypeError, match="float32"):
        matmul(A.astype(np.float64), B)


def test_the_gpu_benchmark_refuses_to_time_the_simulator():
    from nbkit.perf.gflops import matmul_gflops

    with pytest.raises(RuntimeError, match="needs a real GPU.*Simulator timings say nothing about GPU speed"):
        matmul_gflops(sizes=(16,))


def test_transposed_gflops_plumbing_in_the_simulator():
    # The GPU benchmark of the dense layer's transposes, run on a tiny odd size only to test its plumbing:
    # every result is checked against NumPy inside; the rates are labelled SIMULATOR.
    from nbkit.perf.gflops import DENSE_VARIANTS, matmul_gflops_transposed

    with pytest.raises(RuntimeError, match="needs a real GPU"):
        matmul_gflops_transposed(sizes=(17,))
    rows = matmul_gflops_transposed(sizes=(17,), repeat=1, allow_simulator=True)
    assert [r["variant"] for r in rows] == list(DENSE_VARIANTS)
    assert {(r["trans_a"], r["trans_b"]) for r in rows} == {(0, 1), (0, 0), (1, 0)}
    assert all(r["naive"] > 0 and r["tiled"] > 0 and r["coalesced"] > 0 and r["clock"].startswith("SIMULATOR") for r in rows)
    assert all("torch" not in r for r in rows)  # no CUDA torch in the simulator: no made-up column
