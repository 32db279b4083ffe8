"""Every exercise check passes a correct answer and fails wrong ones with a useful message."""

import numpy as np
import pytest
from numba import cuda

from nbkit.checks import CheckFailed, check_saxpy


@cuda.jit
def saxpy_right(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_swapped(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + alpha * y[i]


@cuda.jit
def saxpy_unguarded(alpha, x, y, out):
    i = cuda.grid(1)
    out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_misses_elements(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size - 3:
        out[i] = alpha * x[i] + y[i]


def test_correct_answer_passes(capsys):
    check_saxpy(saxpy_right)
    assert capsys.readouterr().out.startswith("✓ saxpy is correct on 300 elements")


@pytest.mark.parametrize("wrong, message", [
    (saxpy_swapped, "alpha multiplies y instead of x"),
    (saxpy_unguarded, "bounds guard"),
    (saxpy_misses_elements, "never written"),
])
def test_wrong_answers_fail_with_a_reason(wrong, message):
    with pytest.raises(CheckFailed, match=message) as info:
        check_saxpy(wrong)
    assert str(info.value).startswith("✗ ")


# ------------------------------------------------------------------ notebooks 01 and 02

from nbkit import reference as ref  # noqa: E402
from nbkit.checks import check_dense_backward, check_sigmoid_example, check_tanh_backward  # noqa: E402


def test_tanh_backward_check(capsys):
    check_tanh_backward(lambda dout, y: dout * (1 - y * y))
    assert capsys.readouterr().out.startswith("✓")
    for wrong, message in [
        (lambda dout, y: 1 - y**2, "forgot to multiply by the upstream gradient"),
        (lambda dout, y: dout * (1 - np.tanh(y) ** 2), "fn receives y = tanh"),
        (lambda dout, y: dout * (1 - y), "not 1 - y"),
        (lambda dout, y: dout * y, "dx is wrong"),
    ]:
        with pytest.raises(CheckFailed, match=message):
            check_tanh_backward(wrong)


def test_dense_backward_check(capsys):
    check_dense_backward(ref.dense_backward)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match=r"dW has shape \(3, 2\) \(transposed\?\)"):
        check_dense_backward(lambda dZ, A, W: (dZ @ W, A.T @ dZ, dZ.sum(0)))
    with pytest.raises(CheckFailed, match=r"db has shape \(5,\)"):
        check_dense_backward(lambda dZ, A, W: (dZ @ W, dZ.T @ A, dZ.sum(1)))
    with pytest.raises(CheckFailed, match="dA is wrong"):
        check_dense_backward(lambda dZ, A, W: (dZ @ W * 2, dZ.T @ A, dZ.sum(0)))
    with pytest.raises(CheckFailed, match="must return a tuple"):
        check_dense_backward(lambda dZ, A, W: dZ @ W)


def test_sigmoid_example_check(capsys):
    X, W, b, Y = np.array([1.0, 2, 3]), np.array([[1.0, 2, 3], [4, 5, 6]]), np.array([1.0, 2]), np.array([0.0, 1])
    s = 1 / (1 + np.exp(-(W @ X + b)))
    delta = (s - Y) * s * (1 - s)
    check_sigmoid_example(np.outer(delta, X), delta)  # the textbook formula: accepted, with a note on cancellation
    out = capsys.readouterr().out
    assert out.startswith("✓") and "cancel" in out
    stable = (s - Y) * s / (1 + np.exp(W @ X + b))  # 1 - σ(z) computed as σ(-z)
    stable[1] = -(1 / (1 + np.exp(W @ X + b)))[1] * s[1] / (1 + np.exp((W @ X + b)[1]))
    check_sigmoid_example(np.outer(stable, X), stable)  # the rejected correct answer
    assert capsys.readouterr().out.startswith("✓ correct: δ")
    with pytest.raises(CheckFailed, match="left out the sigmoid's derivative"):
        check_sigmoid_example(np.outer(s - Y, X), s - Y)
    with pytest.raises(CheckFailed, match=r"dW has shape \(3, 2\)"):
        check_sigmoid_example(np.outer(X, delta), delta)
    with pytest.raises(CheckFailed, match="db is wrong"):
        check_sigmoid_example(np.outer(delta, X), -delta)


# ------------------------------------------------------------------ notebooks 03-05

from numba import float32  # noqa: E402

from nbkit.checks import check_leaky_relu  # noqa: E402


@cuda.jit
def leaky_forward(x, y, slope):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[i] if x[i] > 0 else slope * x[i]


@cuda.jit
def leaky_backward(dout, x, dx, slope):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > 0 else slope * dout[i]


@cuda.jit
def relu_as_leaky_forward(x, y, slope):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[i] if x[i] > 0 else float32(0)


@cuda.jit
def leaky_backward_no_slope(dout, x, dx, slope):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > 0 else float32(0)


@cuda.jit
def leaky_backward_wrong_at_zero(dout, x, dx, slope):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] >= 0 else slope * dout[i]


def test_leaky_relu_check(capsys):
    check_leaky_relu(leaky_forward, leaky_backward)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match="not 0"):
        check_leaky_relu(relu_as_leaky_forward, leaky_backward)
    with pytest.raises(CheckFailed, match="passes no gradient"):
        check_leaky_relu(leaky_forward, leaky_backward_no_slope)
    with pytest.raises(CheckFailed, match="at x = 0 is wrong"):
        check_leaky_relu(leaky_forward, leaky_backward_wrong_at_zero)


# ------------------------------------------------------------------ notebooks 06 and 07

from nbkit.activations import sigmoid_backward, sigmoid_forward  # noqa: E402
from nbkit.checks import check_avgpool, check_sigmoid_layer  # noqa: E402


@cuda.jit
def avg_forward(x, y):
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


@cuda.jit
def avg_forward_sum(x, y):
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        y[n, c, i, j] = (x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1]
                         + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1])


@cuda.jit
def avg_backward(dy, dx):
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        if h // 2 < dy.shape[2] and w // 2 < dy.shape[3]:
            dx[n, c, h, w] = dy[n, c, h // 2, w // 2] * float32(0.25)
        else:
            dx[n, c, h, w] = float32(0)


@cuda.jit
def avg_backward_full(dy, dx):
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        if h // 2 < dy.shape[2] and w // 2 < dy.shape[3]:
            dx[n, c, h, w] = dy[n, c, h // 2, w // 2]
        else:
            dx[n, c, h, w] = float32(0)


@cuda.jit
def avg_backward_skips_edges(dy, dx):
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        if h // 2 < dy.shape[2] and w // 2 < dy.shape[3]:
            dx[n, c, h, w] = dy[n, c, h // 2, w // 2] * float32(0.25)


def test_avgpool_check(capsys):
    check_avgpool(avg_forward, avg_backward)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match="sum of each window"):
        check_avgpool(avg_forward_sum, avg_backward)
    with pytest.raises(CheckFailed, match="dy / 4"):
        check_avgpool(avg_forward, avg_backward_full)
    with pytest.raises(CheckFailed, match="dropped last row/column must get gradient 0"):
        check_avgpool(avg_forward, avg_backward_skips_edges)


class SigmoidRight:
    def forward(self, x):
        self.y = sigmoid_forward(x)
        return self.y

    def backward(self, dout):
        return sigmoid_backward(dout, self.y)


class SigmoidUsesInput(SigmoidRight):
    def forward(self, x):
        self.x = x
        return sigmoid_forward(x)

    def backward(self, dout):
        return sigmoid_backward(dout, self.x)


class SigmoidTwice(SigmoidRight):
    def backward(self, dout):
        return sigmoid_backward(dout, sigmoid_forward(self.y))


def test_sigmoid_layer_check(capsys):
    check_sigmoid_layer(SigmoidRight)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match="passed the input x"):
        check_sigmoid_layer(SigmoidUsesInput)
    with pytest.raises(CheckFailed, match="applied the sigmoid to its output again"):
        check_sigmoid_layer(SigmoidTwice)
