"""Dense-layer kernels against the NumPy reference, on shapes that are not multiples of the block."""

import numpy as np
import pytest
from numba import cuda

from nbkit.kernels.dense import dense_backward, dense_forward
from nbkit.nn import reference as ref

SHAPES = [(1, 3, 2), (5, 7, 3), (17, 20, 3)]  # (N, in, out); 17 and 33 straddle the 16x16 blocks


def data(N, fin, fout, seed=0):
    r = np.random.default_rng(seed)
    f32 = np.float32
    return (r.standard_normal((N, fin)).astype(f32), r.standard_normal((fout, fin)).astype(f32),
            r.standard_normal(fout).astype(f32), r.standard_normal((N, fout)).astype(f32))


@pytest.mark.parametrize("method", ["naive", "tiled"])
@pytest.mark.parametrize("N, fin, fout", SHAPES)
def test_forward_and_backward_match_the_reference(N, fin, fout, method):
    A, W, b, dZ = data(N, fin, fout)
    np.testing.assert_allclose(dense_forward(A, W, b, method), ref.dense_forward(A, W, b), rtol=1e-5, atol=1e-5)
    for got, want in zip(dense_backward(dZ, A, W, method), ref.dense_backward(dZ, A, W)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_device_arrays_stay_on_the_device():
    A, W, b, dZ = data(5, 7, 3)
    Z = dense_forward(cuda.to_device(A), cuda.to_device(W), cuda.to_device(b))
    assert not isinstance(Z, np.ndarray)
    np.testing.assert_allclose(Z.copy_to_host(), ref.dense_forward(A, W, b), rtol=1e-5, atol=1e-5)


def test_bad_input_is_refused():
    A, W, b, dZ = data(5, 7, 3)
    with pytest.raises(ValueError, match=r"W must have shape \(out, 7\)"):
        dense_forward(A, W.T.copy(), b)
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        dense_forward(A, W, b[:2].copy())
    with pytest.raises(TypeError, match="A must have dtype float32, got float64"):
        dense_forward(A.astype(np.float64), W, b)
    with pytest.raises(ValueError, match=r"dZ must have shape \(5, 3\)"):
        dense_backward(dZ.T.copy(), A, W)
    with pytest.raises(ValueError, match="C-contiguous"):
        dense_forward(np.asfortranarray(A), W, b)
