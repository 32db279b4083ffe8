"""Activation and loss kernels against the NumPy reference."""

import numpy as np
import pytest

from nbkit.kernels.activations import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, tanh_backward, tanh_forward
from nbkit.kernels.losses import mse_backward
from nbkit.nn import reference as ref


@pytest.mark.parametrize("shape", [(1,), (129,), (3, 7, 5)])
def test_relu_matches_the_reference(shape):
    r = np.random.default_rng(1)
    x = r.standard_normal(shape).astype(np.float32)
    x.flat[0] = 0.0  # ReLU'(0) = 0
    dout = r.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(relu_forward(x), ref.relu_forward(x))
    np.testing.assert_array_equal(relu_backward(dout, x), ref.relu_backward(dout, x))
    assert relu_backward(dout, x).flat[0] == 0


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_smooth_activations_match_the_reference(name):
    forward, backward = {"sigmoid": (sigmoid_forward, sigmoid_backward), "tanh": (tanh_forward, tanh_backward)}[name]
    r = np.random.default_rng(3)
    x = (r.standard_normal((3, 43)) * 4).astype(np.float32)
    x[0, :3] = [-100.0, 0.0, 100.0]  # far into saturation: no overflow, no nan
    dout = r.standard_normal(x.shape).astype(np.float32)
    y = forward(x)
    np.testing.assert_allclose(y, getattr(ref, f"{name}_forward")(x.astype(np.float64)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(backward(dout, y), getattr(ref, f"{name}_backward")(dout, y), rtol=1e-6, atol=1e-7)


def test_shape_mismatch_is_refused():
    x = np.ones(5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"dout must have shape \(5,\)"):
        relu_backward(np.ones(4, dtype=np.float32), x)
    with pytest.raises(ValueError, match=r"target must have shape"):
        mse_backward(x, np.ones(6, dtype=np.float32))
