"""Activation and loss kernels against the NumPy reference."""

import numpy as np
import pytest

from nbkit import reference as ref
from nbkit.activations import relu_backward, relu_forward
from nbkit.losses import mse_backward


@pytest.mark.parametrize("shape", [(1,), (129,), (3, 7, 5)])
def test_relu_matches_the_reference(shape):
    r = np.random.default_rng(1)
    x = r.standard_normal(shape).astype(np.float32)
    x.flat[0] = 0.0  # ReLU'(0) = 0
    dout = r.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(relu_forward(x), ref.relu_forward(x))
    np.testing.assert_array_equal(relu_backward(dout, x), ref.relu_backward(dout, x))
    assert relu_backward(dout, x).flat[0] == 0


def test_mse_backward_matches_the_reference_and_the_half_convention():
    r = np.random.default_rng(2)
    p, t = r.standard_normal((2, (5 * 7))).astype(np.float32).reshape(2, 5, 7)
    np.testing.assert_allclose(mse_backward(p, t), ref.mse_backward(p, t), rtol=1e-6)
    np.testing.assert_allclose(mse_backward(p, t, scale=1.0), p - t, rtol=1e-6)


def test_shape_mismatch_is_refused():
    x = np.ones(5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"dout must have shape \(5,\)"):
        relu_backward(np.ones(4, dtype=np.float32), x)
    with pytest.raises(ValueError, match=r"target must have shape"):
        mse_backward(x, np.ones(6, dtype=np.float32))
