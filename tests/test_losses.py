"""Loss kernels against the NumPy reference (itself tested against PyTorch)."""

import numpy as np
import pytest
from numba import cuda

from nbkit.kernels.losses import mse_backward, mse_forward, softmax_xent_backward, softmax_xent_forward
from nbkit.nn import reference as ref


def test_mse_matches_the_reference():
    r = np.random.default_rng(2)
    p, t = r.standard_normal((2, 5, 7)).astype(np.float32)
    assert mse_forward(p, t) == pytest.approx(ref.mse_forward(p, t), rel=1e-5)
    np.testing.assert_allclose(mse_backward(p, t), ref.mse_backward(p, t), rtol=1e-6)
    np.testing.assert_allclose(mse_backward(p, t, scale=1.0), p - t, rtol=1e-6)


@pytest.mark.parametrize("method", ["row_per_thread", "row_per_block"])
@pytest.mark.parametrize("N, C", [(3, 10), (5, 37)])  # 37 classes: more than one pass of the 32 row threads
def test_softmax_cross_entropy_matches_the_reference(method, N, C):
    r = np.random.default_rng(N * C)
    logits = (r.standard_normal((N, C)) * 5).astype(np.float32)
    labels = r.integers(0, C, size=N)
    loss, probs = softmax_xent_forward(logits, labels, method)
    assert loss == pytest.approx(ref.softmax_cross_entropy_forward(logits.astype(np.float64), labels), rel=1e-5)
    np.testing.assert_allclose(probs, ref.softmax(logits.astype(np.float64)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(softmax_xent_backward(probs, labels),
                               ref.softmax_cross_entropy_backward(logits.astype(np.float64), labels), atol=1e-7)


def test_softmax_cross_entropy_is_stable_and_accepts_int32_on_the_device():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 1000.0]], dtype=np.float32)
    labels = np.array([0, 2], dtype=np.int32)
    loss, probs = softmax_xent_forward(cuda.to_device(logits), cuda.to_device(labels))
    assert loss == pytest.approx(np.log(2) / 2, rel=1e-6)
    assert np.isfinite(probs.copy_to_host()).all()


def test_bad_labels():
    logits = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        softmax_xent_forward(logits, np.array([0, 3]))
    with pytest.raises(TypeError, match="int32 or int64"):
        softmax_xent_forward(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        softmax_xent_forward(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="method must be"):
        softmax_xent_forward(logits, np.array([0, 1]), method="warp")
