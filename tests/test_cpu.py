"""The CPU path gives the same numbers as the kernels (and so as the references and PyTorch)."""

import numpy as np
import pytest
import torch

from nbkit.kernels import conv, pool
from nbkit.nn import lenet
from nbkit.nn import reference as ref
from nbkit.nn.cpu import CPU
from nbkit.nn.kernel_backend import KERNEL_BACKEND


def test_conv_matches_the_kernels():
    r = np.random.default_rng(0)
    x = r.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = r.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = r.standard_normal(4).astype(np.float32)
    y, saved = CPU.conv2d_forward(x, w, b)
    np.testing.assert_allclose(y, conv.conv2d_forward(x, w, b), rtol=1e-5, atol=1e-5)
    dy = r.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(CPU.conv2d_backward(dy, saved, w), conv.conv2d_backward(dy, x, w)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, c, h, w, f, kh, kw", [
    (64, 3, 32, 32, 6, 5, 5),  # LeNet's conv1 at batch 64
    (5, 6, 14, 14, 16, 5, 5),  # LeNet's conv2
    (3, 2, 11, 7, 7, 3, 5),    # odd sizes: taps (30) and filters (7) not multiples of the 4 done per pass
    (2, 5, 6, 9, 3, 1, 1),     # 1x1 kernel: the runs cover the whole image
    (2, 1, 4, 5, 2, 4, 5),     # kernel as large as the image: a single output pixel
])
def test_direct_conv_matches_the_float64_reference(n, c, h, w, f, kh, kw):
    """Every shape the loops special-case: remainders of the 4-way blocking, full-width runs, 1x1 outputs."""
    r = np.random.default_rng(n * 100 + c)
    x = r.standard_normal((n, c, h, w)).astype(np.float32)
    wt = r.standard_normal((f, c, kh, kw)).astype(np.float32)
    b = r.standard_normal(f).astype(np.float32)
    y, saved = CPU.conv2d_forward(x, wt, b)
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref.conv2d_forward(x64, w64, b.astype(np.float64)), rtol=1e-4, atol=1e-4)
    dy = r.standard_normal(y.shape).astype(np.float32)
    x[...] = 0  # the input buffer refilled between forward and backward: saved is forward's own copy
    for got, want in zip(CPU.conv2d_backward(dy, saved, wt), ref.conv2d_backward(dy.astype(np.float64), x64, w64)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
    dx, dw, db = CPU.conv2d_backward(dy, saved, wt, need_dx=False)
    assert dx is None and dw.shape == wt.shape and db.shape == (f,)


def test_conv_rejects_shapes_that_do_not_fit():
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="same C"):
        CPU.conv2d_forward(x, np.zeros((4, 2, 3, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="KH <= H"):
        CPU.conv2d_forward(x, np.zeros((4, 3, 9, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="expected \\(4,\\)"):
        CPU.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), np.zeros(5, np.float32))
    _, saved = CPU.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="expected \\(2, 4, 6, 6\\)"):
        CPU.conv2d_backward(np.zeros((2, 4, 5, 6), np.float32), saved, np.zeros((4, 3, 3, 3), np.float32))


def test_other_ops_match_the_kernels():
    r = np.random.default_rng(1)
    x = r.standard_normal((3, 2, 6, 5)).astype(np.float32)
    (yc, ac), (yk, ak) = CPU.maxpool2x2_forward(x), pool.maxpool2x2_forward(x)
    np.testing.assert_array_equal(yc, yk)
    np.testing.assert_array_equal(ac, ak)
    A, W, b = (r.standard_normal(s).astype(np.float32) for s in ((5, 7), (3, 7), (3,)))
    np.testing.assert_allclose(CPU.dense_forward(A, W, b), KERNEL_BACKEND.dense_forward(A, W, b), rtol=1e-5, atol=1e-5)
    logits, labels = r.standard_normal((5, 10)).astype(np.float32), r.integers(0, 10, 5)
    (lc, pc), (lk, pk) = CPU.softmax_xent_forward(logits, labels), KERNEL_BACKEND.softmax_xent_forward(logits, labels)
    assert lc == pytest.approx(lk, rel=1e-6)
    np.testing.assert_allclose(CPU.softmax_xent_backward(pc, labels), KERNEL_BACKEND.softmax_xent_backward(pk, labels),
                               rtol=1e-5, atol=1e-7)


def test_cpu_lenet_trains_like_torch():
    model, opt, tmodel, topt = lenet.twins(CPU, seed=1)
    r = np.random.default_rng(2)
    for _ in range(5):
        x = r.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
        y = r.integers(0, 10, 4)
        loss = model.loss(x, y)
        model.backward()
        opt.step()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=1e-5)
    for p, t in zip(model.state(), tmodel.parameters()):
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_conv_layer_refilled_in_place_uses_the_new_batch():
    """A caller that refills its input buffer in place must get gradients of the new batch, not the old."""
    r = np.random.default_rng(3)
    x = r.standard_normal((2, 3, 8, 8)).astype(np.float32)
    model = lenet.build(CPU)
    conv_layer = model.layers[0]
    w = model.state()[0]
    for _ in range(2):
        y = conv_layer.forward(x)
        dy = r.standard_normal(y.shape).astype(np.float32)
        conv_layer.backward(dy)
        _, want_dw, _ = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64))
        np.testing.assert_allclose(conv_layer.W.grad, want_dw, rtol=1e-4, atol=1e-4)
        x[...] = r.standard_normal(x.shape)  # the same buffer, a new batch


@pytest.mark.parametrize("ops", [CPU, KERNEL_BACKEND], ids=["cpu", "kernels"])
def test_cross_entropy_is_stable_for_large_logits(ops):
    """logits [0, 120] with label 0: the loss is 120 (from the log-softmax), not inf (from -log(softmax))."""
    logits = np.array([[0.0, 120.0]], dtype=np.float32)
    labels = np.array([0])
    loss, probs = ops.softmax_xent_forward(logits, labels)
    assert loss == pytest.approx(120.0, rel=1e-6)
    assert ref.softmax_cross_entropy_forward(logits.astype(np.float64), labels) == pytest.approx(120.0)
    probs = probs if isinstance(probs, np.ndarray) else probs.copy_to_host()
    np.testing.assert_allclose(probs, [[0.0, 1.0]], atol=1e-30)


def test_relu_backward_matches_the_reference_on_special_values():
    """The compiled loop multiplies, as the reference does: inf * 0 is NaN, a NaN input passes no gradient."""
    x = np.array([1.0, 0.0, -1.0, np.nan, 2.0, -3.0], dtype=np.float32)
    d = np.array([2.0, 3.0, 4.0, 5.0, np.inf, np.inf], dtype=np.float32)
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference
        want = ref.relu_backward(d, x)
    np.testing.assert_array_equal(CPU.relu_backward(d, x), want)
    with pytest.raises(ValueError, match="expected the same shape"):
        CPU.relu_backward(d, x[:5])
