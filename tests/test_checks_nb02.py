"""Exercises of notebook 02: each check passes right answers and names the mistake in wrong ones."""

import numpy as np
import pytest
import torch

from nbkit.checks import CheckFailed, check_gradient_descent_step, check_hidden_delta, check_sigmoid_example
from nbkit.checks.nb02 import GRADIENT_DESCENT_STEP, HIDDEN_DELTA, _sigmoid, sigmoid_example_tolerance


def passes(check, answer, capsys):
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("✓"), out
    return out


def fails(check, answer, message):
    with pytest.raises(CheckFailed, match=message) as info:
        check(answer)
    assert str(info.value).startswith("✗ ")


# ------------------------------------------------------------------ 02.1 one SGD step

def sgd_step(X, Y, W, b, lr):
    Z = X @ W.T + b
    delta = (np.maximum(Z, 0) - Y) * (Z > 0)
    return W - lr * delta.T @ X, b - lr * delta.sum(axis=0)


def sgd_step_torch(X, Y, W, b, lr):  # autograd and torch.optim.SGD: another correct answer
    Wt, bt = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    opt = torch.optim.SGD([Wt, bt], lr=lr)
    (0.5 * ((torch.relu(torch.tensor(X) @ Wt.T + bt) - torch.tensor(Y)) ** 2).sum()).backward()
    opt.step()
    return Wt.detach().numpy(), bt.detach().numpy()


def sgd_step_in_place(X, Y, W, b, lr):  # modifies its arguments and returns them: also fine
    Z = X @ W.T + b
    delta = np.where(Z > 0, np.maximum(Z, 0) - Y, 0.0)
    W -= lr * np.einsum("nj,nk->jk", delta, X)
    b -= lr * delta.sum(0)
    return W, b


def test_sgd_step_check(capsys):
    for right in (sgd_step, sgd_step_torch, sgd_step_in_place):
        out = passes(check_gradient_descent_step, right, capsys)
    assert "[[0.85, 1.7, 2.55]" in out
    fails(check_gradient_descent_step, lambda X, Y, W, b, lr: sgd_step(X, Y, W, b, -lr), "stepped uphill")
    fails(check_gradient_descent_step, lambda X, Y, W, b, lr: (W - lr * (np.maximum(X @ W.T + b, 0) - Y).T @ X,
                                                  b - lr * (np.maximum(X @ W.T + b, 0) - Y).sum(0)),
          r"W_new is wrong.*left out ReLU'\(z\)")
    fails(check_gradient_descent_step, lambda X, Y, W, b, lr: sgd_step(X, Y, W, b, lr / len(X)), "divided by N")
    fails(check_gradient_descent_step, lambda X, Y, W, b, lr: (sgd_step(X, Y, W, b, lr)[0], b), "b did not change")
    fails(check_gradient_descent_step, lambda X, Y, W, b, lr: (sgd_step(X, Y, W, b, lr)[0].T, b), r"W_new has shape \(3, 2\)")


# ------------------------------------------------------------------ 02.2 the article's chain-rule error

def test_hidden_delta_check(capsys):
    out = passes(check_hidden_delta, lambda d2, W2, Z1: (d2 @ W2) * (Z1 > 0), capsys)
    assert "[-0.02, 0.03]" in out
    passes(check_hidden_delta, lambda d2, W2, Z1: np.where(Z1 > 0, np.einsum("nj,jk->nk", d2, W2), 0.0), capsys)
    passes(check_hidden_delta, lambda d2, W2, Z1: (W2.T @ d2.T).T * np.heaviside(Z1, 0.0), capsys)  # columns
    fails(check_hidden_delta, lambda d2, W2, Z1: d2, "That is the article's error")
    fails(check_hidden_delta, lambda d2, W2, Z1: d2 @ W2, r"left out ReLU'\(Z₁\)")
    fails(check_hidden_delta, lambda d2, W2, Z1: (d2 @ W2) * (Z1 >= 0), r"δ₁\[1, 2\].*Z1 > 0, not Z1 >= 0")
    fails(check_hidden_delta, lambda d2, W2, Z1: (d2 @ W2.T) * (Z1 > 0), "raised ValueError.*delta2 @ W2")


# ------------------------------------------------------------------ 02.3 sigmoid example

X, W, b, Y = np.array([1.0, 2, 3]), np.array([[1.0, 2, 3], [4, 5, 6]]), np.array([1.0, 2]), np.array([0.0, 1])
Z = W @ X + b


def textbook():
    s = 1 / (1 + np.exp(-Z))
    delta = (s - Y) * s * (1 - s)
    return np.outer(delta, X), delta


def stable():  # 1 - σ(z) computed as σ(-z): the answer the old check rejected (issue 9)
    s, one_minus_s = 1 / (1 + np.exp(-Z)), 1 / (1 + np.exp(Z))
    delta = np.array([s[0], -one_minus_s[1]]) * s * one_minus_s
    return np.outer(delta, X), delta


def by_torch():
    Wt, bt = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    (0.5 * ((torch.sigmoid(Wt @ torch.tensor(X) + bt) - torch.tensor(Y)) ** 2).sum()).backward()
    return Wt.grad.numpy(), bt.grad.numpy()


def test_sigmoid_example_check(capsys):
    out = passes(check_sigmoid_example, textbook, capsys)
    assert out.startswith("✓ correct formula: δ = 3.059e-07, -3.155e-30. Note: the exact δ₂ is -2.937e-30; yours is 7% off")
    assert "σ(34) comes out as 1 - 16·2^-53, 16 float64 steps below 1" in out
    assert passes(check_sigmoid_example, stable, capsys).startswith("✓ correct: δ")
    passes(check_sigmoid_example, by_torch, capsys)
    s = 1 / (1 + np.exp(-Z))
    fails(check_sigmoid_example, lambda: (np.outer(s - Y, X), s - Y), "left out the sigmoid's derivative")
    fails(check_sigmoid_example, lambda: (textbook()[0].T, textbook()[1]), r"dW has shape \(3, 2\)")
    fails(check_sigmoid_example, lambda: (stable()[0], -stable()[1]), r"db is wrong.*db\[0\]")
    fails(check_sigmoid_example, lambda: (np.outer(Z - Y, X), Z - Y), "ReLU example's gradient")
    fails(check_sigmoid_example, lambda: textbook()[0], r"must return a tuple \(dW, db\)")


def test_unsolved_stubs_say_not_solved(capsys):
    def stub(*args):
        raise NotImplementedError()

    for check, number in ((check_gradient_descent_step, "02.1"), (check_hidden_delta, "02.2"), (check_sigmoid_example, "02.3")):
        check(stub)
        assert capsys.readouterr().out.startswith(f"◻ Exercise {number} not solved yet")


# ------------------------------------------------------------------ issue 16: 02.3 within float64's error; varied cases


def sigma_minus_z():  # the ✓ note's fix for 1 - σ(z) only: s - y still cancels at z = 34 (3.6 % off); rejected before
    s = 1 / (1 + np.exp(-Z))
    delta = (s - Y) * s * (1 / (1 + np.exp(Z)))
    return np.outer(delta, X), delta


def derivative_form():  # σ'(z) = e^-z / (1 + e^-z)², a - y as written
    s, e = 1 / (1 + np.exp(-Z)), np.exp(-Z)
    delta = (s - Y) * e / (1 + e) ** 2
    return np.outer(delta, X), delta


def tanh_form():  # σ(z) = (1 + tanh(z/2)) / 2: another rounding of σ(34)
    s = (1 + np.tanh(Z / 2)) / 2
    delta = (s - Y) * s * (1 - s)
    return np.outer(delta, X), delta


def test_sigmoid_example_accepts_every_correct_formula_and_says_the_tolerance(capsys):
    for answer in (sigma_minus_z, derivative_form, tanh_form, stable, textbook, by_torch):
        out = passes(check_sigmoid_example, answer, capsys)
        assert "ompared with the exact δ within 2u·(|σ(1-σ)| + |(σ-y)σ|) + 4u·|δ| (u = 2^-53" in out, out
    assert "yours is 4% off" in passes(check_sigmoid_example, sigma_minus_z, capsys)


def test_sigmoid_example_rejects_wrong_derivatives():
    s = 1 / (1 + np.exp(-Z))
    fails(check_sigmoid_example, lambda: (2 * textbook()[0], 2 * textbook()[1]), r"dW is wrong at 6 of 6")  # L without ½
    fails(check_sigmoid_example, lambda: (np.outer((s - Y) * s * (1 + s), X), (s - Y) * s * (1 + s)), "dW is wrong")
    fails(check_sigmoid_example, lambda: (np.outer((s - Y) * s * (1 - s) * 1.3, X), (s - Y) * s * (1 - s) * 1.3),
          "dW is wrong")
    fails(check_sigmoid_example, lambda: (np.outer((s - Y) * _sigmoid(s) * (1 - _sigmoid(s)), X),
                                          (s - Y) * _sigmoid(s) * (1 - _sigmoid(s))), "applied the sigmoid to s a second")


def test_sigmoid_example_exact_delta_agrees_with_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    exact, tol = sigmoid_example_tolerance(Z, Y)
    for z, y, e, t in zip(Z, Y, exact, tol):
        sig = 1 / (1 + mpmath.exp(-mpmath.mpf(z)))
        true = (sig - y) * sig * (1 - sig)
        assert abs(e - float(true)) <= 6 * 2.0**-53 * abs(float(true))
        # the tolerance covers the textbook formula's error, and is far below the size of δ₁
        assert t < abs(float(true))
    assert abs(textbook()[1][1] - exact[1]) < tol[1] and tol[0] < 1e-9 * abs(exact[0])


def test_sgd_step_rejects_a_learning_rate_copied_from_the_statement():
    verdict = GRADIENT_DESCENT_STEP.run(lambda X, Y, W, b, lr: sgd_step(X, Y, W, b, 0.01))
    assert not verdict.passed and verdict.case.lr == 0.1, verdict


def test_hidden_delta_runs_other_shapes(capsys):
    verdict = HIDDEN_DELTA.run(lambda d2, W2, Z1: (d2 @ W2) * (Z1 > 0) if Z1.shape[0] != 3 else d2[:, :2] * 0)
    assert not verdict.passed and verdict.case.sizes == {"N": 3, "hidden": 2, "out": 6}, verdict
