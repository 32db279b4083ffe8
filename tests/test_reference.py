"""The NumPy reference layers against PyTorch autograd (float64) and central finite differences.

Shapes are odd on purpose (5, 7, 3, ...): nothing lines up with a block or tile size.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nbkit.nn import reference as ref
from nbkit.nn.gradcheck import numerical_gradient, relative_error

RTOL = 1e-9  # float64 vs float64: only summation order differs
FD_TOL = 1e-6  # finite differences with eps=1e-6 in float64


def rng(seed=0):
    return np.random.default_rng(seed)


def t(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def loss_weights(shape, seed=99):
    """A fixed random upstream gradient, so ∂(sum(out * G))/∂x tests every entry of the backward."""
    return rng(seed).standard_normal(shape)


def assert_close(a, b, tol=RTOL):
    assert relative_error(a, b) < tol, f"relative error {relative_error(a, b):.3e}"


# ------------------------------------------------------------------ dense


def test_dense_against_torch_and_finite_differences():
    r = rng(1)
    A, W, b = r.standard_normal((5, 7)), r.standard_normal((3, 7)), r.standard_normal(3)
    G = loss_weights((5, 3))
    Z = ref.dense_forward(A, W, b)
    At, Wt, bt = t(A), t(W), t(b)
    Zt = F.linear(At, Wt, bt)
    assert_close(Z, Zt.detach().numpy())
    (Zt * torch.tensor(G)).sum().backward()
    dA, dW, db = ref.dense_backward(G, A, W)
    assert_close(dA, At.grad.numpy())
    assert_close(dW, Wt.grad.numpy())
    assert_close(db, bt.grad.numpy())

    def f():
        return float((ref.dense_forward(A, W, b) * G).sum())

    for x, g in ((A, dA), (W, dW), (b, db)):
        assert_close(numerical_gradient(f, x), g, FD_TOL)


# ------------------------------------------------------------------ activations


ACTIVATIONS = [
    ("relu", ref.relu_forward, lambda dy, x, y: ref.relu_backward(dy, x), torch.relu),
    ("sigmoid", ref.sigmoid_forward, lambda dy, x, y: ref.sigmoid_backward(dy, y), torch.sigmoid),
    ("tanh", ref.tanh_forward, lambda dy, x, y: ref.tanh_backward(dy, y), torch.tanh),
]


@pytest.mark.parametrize("name, forward, backward, torch_fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_against_torch_and_finite_differences(name, forward, backward, torch_fn):
    x = rng(2).standard_normal((3, 5)) * 3
    x[0, 0] = 0.0  # the kink of ReLU: both sides must use the convention ReLU'(0) = 0
    G = loss_weights(x.shape)
    y = forward(x)
    xt = t(x)
    yt = torch_fn(xt)
    assert_close(y, yt.detach().numpy())
    (yt * torch.tensor(G)).sum().backward()
    dx = backward(G, x, y)
    assert_close(dx, xt.grad.numpy())
    if name == "relu":
        assert dx[0, 0] == 0.0
        x[0, 0] = 0.1  # finite differences are meaningless at the kink itself
        dx = backward(G, x, forward(x))

    def f():
        return float((forward(x) * G).sum())

    assert_close(numerical_gradient(f, x), dx, FD_TOL)


def test_sigmoid_is_stable_for_large_inputs():
    with np.errstate(over="raise"):
        y = ref.sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


# ------------------------------------------------------------------ losses


def test_mse_against_torch_and_finite_differences():
    r = rng(3)
    pred, target = r.standard_normal((5, 3)), r.standard_normal((5, 3))
    pt = t(pred)
    lt = F.mse_loss(pt, torch.tensor(target))
    lt.backward()
    assert ref.mse_forward(pred, target) == pytest.approx(lt.item(), rel=RTOL)
    grad = ref.mse_backward(pred, target)
    assert_close(grad, pt.grad.numpy())
    assert_close(numerical_gradient(lambda: ref.mse_forward(pred, target), pred), grad, FD_TOL)


def test_softmax_cross_entropy_against_torch_and_finite_differences():
    r = rng(4)
    logits, labels = r.standard_normal((5, 7)) * 4, r.integers(0, 7, size=5)
    lt_in = t(logits)
    lt = F.cross_entropy(lt_in, torch.tensor(labels))
    lt.backward()
    assert ref.softmax_cross_entropy_forward(logits, labels) == pytest.approx(lt.item(), rel=RTOL)
    grad = ref.softmax_cross_entropy_backward(logits, labels)
    assert_close(grad, lt_in.grad.numpy())
    fd = numerical_gradient(lambda: ref.softmax_cross_entropy_forward(logits, labels), logits)
    assert_close(fd, grad, FD_TOL)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 1000.0]])
    labels = np.array([0, 2])
    with np.errstate(over="raise", invalid="raise"):
        loss = ref.softmax_cross_entropy_forward(logits, labels)
        grad = ref.softmax_cross_entropy_backward(logits, labels)
    expected = F.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item()
    assert loss == pytest.approx(expected) and loss == pytest.approx(np.log(2) / 2)
    assert np.isfinite(grad).all()


def test_cross_entropy_refuses_bad_labels():
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\)"):
        ref.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="expected logits"):
        ref.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 1, 2]))


# ------------------------------------------------------------------ conv2d


def test_conv2d_against_torch_and_finite_differences():
    r = rng(5)
    x, w, b = r.standard_normal((2, 3, 7, 6)), r.standard_normal((4, 3, 3, 2)), r.standard_normal(4)
    y = ref.conv2d_forward(x, w, b)
    assert y.shape == (2, 4, 5, 5)
    G = loss_weights(y.shape)
    xt, wt, bt = t(x), t(w), t(b)
    yt = F.conv2d(xt, wt, bt)
    assert_close(y, yt.detach().numpy())
    (yt * torch.tensor(G)).sum().backward()
    dx, dw, db = ref.conv2d_backward(G, x, w)
    assert_close(dx, xt.grad.numpy())
    assert_close(dw, wt.grad.numpy())
    assert_close(db, bt.grad.numpy())

    def f():
        return float((ref.conv2d_forward(x, w, b) * G).sum())

    for arr, g in ((x, dx), (w, dw), (b, db)):
        assert_close(numerical_gradient(f, arr), g, FD_TOL)


def test_conv2d_refuses_mismatched_channels():
    with pytest.raises(ValueError, match="channels must match"):
        ref.conv2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((2, 4, 3, 3)), np.zeros(2))


# ------------------------------------------------------------------ max-pool


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 2, 7, 5)], ids=["even", "odd-dropped"])
def test_maxpool_against_torch_and_finite_differences(shape):
    x = rng(6).standard_normal(shape)
    out, argmax = ref.maxpool2x2_forward(x)
    G = loss_weights(out.shape)
    xt = t(x)
    ot = F.max_pool2d(xt, 2)
    assert_close(out, ot.detach().numpy())
    (ot * torch.tensor(G)).sum().backward()
    dx = ref.maxpool2x2_backward(G, argmax, x.shape)
    assert_close(dx, xt.grad.numpy())
    assert_close(numerical_gradient(lambda: float((ref.maxpool2x2_forward(x)[0] * G).sum()), x), dx, FD_TOL)


def test_maxpool_ties_go_where_torch_sends_them():
    x = np.array([[[[1.0, 1.0, 2.0, 0.0], [1.0, 0.0, 2.0, 2.0]]]])  # ties in both windows
    out, argmax = ref.maxpool2x2_forward(x)
    xt = t(x)
    F.max_pool2d(xt, 2).sum().backward()
    np.testing.assert_array_equal(ref.maxpool2x2_backward(np.ones_like(out), argmax, x.shape), xt.grad.numpy())
    np.testing.assert_array_equal(argmax, [[[[0, 0]]]])  # the first maximum in row-major order


# ------------------------------------------------------------------ flatten


def test_flatten_matches_torch():
    x = rng(7).standard_normal((2, 3, 5, 5))
    y = ref.flatten_forward(x)
    np.testing.assert_array_equal(y, torch.flatten(torch.tensor(x), 1).numpy())
    G = loss_weights(y.shape)
    np.testing.assert_array_equal(ref.flatten_backward(G, x.shape), G.reshape(x.shape))


# ------------------------------------------------------------------ SGD with momentum


@pytest.mark.parametrize("options", [
    dict(momentum=0.0),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(momentum=0.8, nesterov=True, weight_decay=0.05),
])
def test_sgd_matches_torch_step_for_step(options):
    r = rng(8)
    p = r.standard_normal((3, 5))
    grads = r.standard_normal((6, 3, 5))
    pt = torch.tensor(p.copy(), requires_grad=True)
    opt = torch.optim.SGD([pt], lr=0.1, **options)
    buf = None
    for g in grads:
        pt.grad = torch.tensor(g)
        opt.step()
        p, buf = ref.sgd_momentum_step(p, g, buf, lr=0.1, **options)
        assert_close(p, pt.detach().numpy(), 1e-12)
