"""The roofline MODEL's formulas (nbkit.perf.roofline) against what the tracer counts, each at two sizes."""

import numpy as np
import pytest

from nbkit.core.launch import blocks_for, grid_3d
from nbkit.kernels.conv import BLOCK, conv2d_forward_kernel
from nbkit.kernels.matmul import matmul_naive_kernel, matmul_tiled_kernel
from nbkit.kernels.pool import maxpool2x2_forward_kernel
from nbkit.perf import roofline as rl
from nbkit.perf.traffic import traffic
from nbkit.tracer import trace

rng = np.random.default_rng(5)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("M, N, K", [(5, 7, 9), (17, 3, 12)])
def test_naive_matmul_formula_matches_trace(M, N, K):
    C = np.zeros((M, N), np.float32)
    block = (8, 8)
    t = traffic(trace(matmul_naive_kernel, (blocks_for(N, 8), blocks_for(M, 8)), block, f32(M, K), f32(K, N), C,
                      np.int32(0), np.int32(0)))
    model = rl.matmul_naive(M, N, K)
    assert t.bytes_issued == model.bytes_issued
    assert 2 * t.loads("A") == model.flops  # one FMA per element of A loaded (SASS: LDG, LDG, FFMA)


@pytest.mark.parametrize("M, N, K", [(20, 18, 23), (16, 32, 16)])
def test_tiled_matmul_formula_matches_trace(M, N, K):
    C = np.zeros((M, N), np.float32)
    t = traffic(trace(matmul_tiled_kernel, (blocks_for(N, 16), blocks_for(M, 16)), (16, 16), f32(M, K), f32(K, N), C,
                      np.int32(0), np.int32(0)))
    assert t.bytes_issued == rl.matmul_tiled(M, N, K).bytes_issued


@pytest.mark.parametrize("n, c, h, w, f, k", [(1, 2, 6, 7, 3, 3), (2, 1, 9, 5, 2, 2)])
def test_conv2d_forward_formula_matches_trace(n, c, h, w, f, k):
    oh, ow = h - k + 1, w - k + 1
    y = np.zeros((n, f, oh, ow), np.float32)
    t = traffic(trace(conv2d_forward_kernel, grid_3d(oh, ow, n * f, BLOCK), BLOCK, f32(n, c, h, w), f32(f, c, k, k), f32(f), y))
    model = rl.conv2d_forward(n, c, h, w, f, k, k)
    assert t.bytes_issued == model.bytes_issued
    assert 2 * t.loads("w") == model.flops


@pytest.mark.parametrize("n, c, h, w", [(1, 2, 6, 7), (2, 3, 4, 4)])
def test_maxpool_formula_matches_trace(n, c, h, w):
    y = np.zeros((n, c, h // 2, w // 2), np.float32)
    idx = np.zeros(y.shape, np.int8)
    t = traffic(trace(maxpool2x2_forward_kernel, grid_3d(h // 2, w // 2, n * c, BLOCK), BLOCK, f32(n, c, h, w), y, idx))
    assert t.bytes_issued == rl.maxpool2x2_forward(n, c, h, w).bytes_issued
