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


# ------------------------------------------------------------------ notebooks 06 and 07

from nbkit.activations import sigmoid_backward, sigmoid_forward  # noqa: E402
from nbkit.checks import check_sigmoid_layer  # noqa: E402


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
