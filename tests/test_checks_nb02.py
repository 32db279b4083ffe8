"""Exercises of notebook 02: each check passes right answers and names the mistake in wrong ones."""

import numpy as np
import pytest
import torch

from nbkit.checks import CheckFailed, check_gradient_descent_step, check_hidden_delta, check_sigmoid_example


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
