"""Notebook 09's kernels against NumPy (odd sizes), and their memory traffic as the tracer measures it."""

import numpy as np
import pytest

from nbkit import tracer
from nbkit.core.launch import blocks_for
from nbkit.kernels import coalescing, transpose


@pytest.mark.parametrize("method", sorted(transpose.KERNELS))
@pytest.mark.parametrize("shape", [(1, 1), (33, 45), (45, 7)])
def test_transpose_matches_numpy(method, shape):
    A = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert np.array_equal(transpose.transpose(A, method), A.T)


def test_transpose_rejects_bad_input():
    with pytest.raises(ValueError, match="method must be one of"):
        transpose.transpose(np.zeros((2, 2), np.float32), "fast")
    with pytest.raises(TypeError, match="float32"):
        transpose.transpose(np.zeros((2, 2)))


def test_transpose_traffic_naive_shared_padded():
    A = np.random.default_rng(1).standard_normal((32, 64)).astype(np.float32)
    grid, block = transpose.launch_config(*A.shape)
    spr, ways = {}, {}
    for name, kern in transpose.KERNELS.items():
        B = np.zeros((64, 32), np.float32)
        t = tracer.trace(kern, grid, block, A, B)
        assert np.array_equal(B, A.T)
        spr[name] = (t.sectors_per_request("A").mean(), t.sectors_per_request("B").mean())
        ways[name] = t.bank_conflicts()
        assert not t.races()
    assert spr["naive"] == (4, 32)  # rows of A read whole, columns of B written one sector per lane
    assert spr["shared"] == spr["padded"] == (4, 4)
    assert ways["naive"].size == 0
    assert ways["shared"].max() == 32 and ways["padded"].max() == 1


@pytest.mark.parametrize("stride, offset, sectors", [(1, 0, 4), (2, 0, 8), (32, 0, 32), (1, 1, 5)])
def test_gather_strided_sectors(stride, offset, sectors):
    n = 64
    x = np.arange(offset + n * stride, dtype=np.float32)
    out = np.zeros(n, np.float32)
    t = tracer.trace(coalescing.gather_strided_kernel, 2, 32, x, out, np.int32(stride), np.int32(offset))
    assert np.array_equal(out, x[offset::stride][:n])
    assert set(t.sectors_per_request("x")) == {sectors}


@pytest.mark.parametrize("ta, tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_coalesced_tiled_matmul_matches_numpy(ta, tb):
    r = np.random.default_rng(2)
    M, K, N = 19, 23, 21
    A = r.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = r.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    want = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B)
    np.testing.assert_allclose(coalescing.matmul_coalesced(A, B, ta, tb), want, rtol=1e-4, atol=1e-4)


def test_coalesced_tiled_matmul_reads_transposed_operands_in_rows():
    from nbkit.kernels.matmul import matmul_tiled_kernel

    r = np.random.default_rng(3)
    M = N = 16  # one block of 16 x 16 threads (every block makes the same requests), two steps along K
    K = 32
    A = r.standard_normal((M, K)).astype(np.float32)
    W = r.standard_normal((N, K)).astype(np.float32)
    grid = (blocks_for(N, 16), blocks_for(M, 16))
    C0, C1 = np.zeros((M, N), np.float32), np.zeros((M, N), np.float32)
    old = tracer.trace(matmul_tiled_kernel, grid, (16, 16), A, W, C0, np.int32(0), np.int32(1))
    new = tracer.trace(coalescing.matmul_tiled_coalesced_kernel, grid, (16, 16), A, W, C1, np.int32(0), np.int32(1))
    np.testing.assert_allclose(C0, C1, rtol=1e-5, atol=1e-5)
    assert old.sectors_per_request("B").mean() == 16  # B[col, kb]: 16 lanes in 16 rows of W
    assert new.sectors_per_request("B").mean() == 4  # two rows of 16 consecutive floats
    assert old.sectors_per_request("A").mean() == new.sectors_per_request("A").mean() == 4
    assert new.bank_conflicts().max() <= 2


def test_scale_add_strided_is_correct_and_strided():
    r = np.random.default_rng(4)
    A, B = r.standard_normal((40, 96)).astype(np.float32), r.standard_normal((40, 96)).astype(np.float32)
    np.testing.assert_allclose(coalescing.scale_add_strided(A, B, 1.5), 1.5 * A + B, rtol=1e-6)
    out = np.zeros_like(A)
    t = tracer.trace(coalescing.scale_add_strided_kernel, (2, 2), (32, 8), A, B, np.float32(1.5), out)
    assert t.sectors_per_request("A").max() == 32
