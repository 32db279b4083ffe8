"""Sums: tree and atomic reductions, and column sums, on sizes that are not multiples of the block."""

import numpy as np
import pytest

from nbkit.kernels.reduce import TREE_MAX as THREADS
from nbkit.kernels.reduce import column_sum, sum_atomic, sum_tree


@pytest.mark.parametrize("n", [1, THREADS - 1, THREADS * 2 + 1])
def test_sums_match_float64(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    exact = x.sum(dtype=np.float64)
    assert sum_tree(x)[0] == pytest.approx(exact, rel=1e-5, abs=1e-5)
    assert sum_atomic(x)[0] == pytest.approx(exact, rel=1e-5, abs=1e-5)


def test_tree_is_deterministic():
    x = np.random.default_rng(3).standard_normal(300).astype(np.float32)
    assert len({sum_tree(x)[0].tobytes() for _ in range(3)}) == 1


def test_column_sum():
    M = np.random.default_rng(4).standard_normal((7, 130)).astype(np.float32)
    np.testing.assert_allclose(column_sum(M), M.sum(axis=0), rtol=1e-5, atol=1e-5)
