"""Exercises of notebook 01: each check passes right answers (loops or vectorised) and names wrong ones' mistakes."""

import numpy as np
import pytest
import torch

from nbkit.checks import (
    CheckFailed,
    check_conv2d_weight_grad,
    check_dense_backward,
    check_softmax_xent_backward,
    check_tanh_backward,
)
from nbkit.checks.nb01 import CONV2D_WEIGHT_GRAD, DENSE_BACKWARD, SOFTMAX_XENT_BACKWARD, TANH_BACKWARD
from nbkit.nn import reference as ref


def passes(check, answer, capsys):
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("✓"), out


def fails(check, answer, message):
    with pytest.raises(CheckFailed, match=message) as info:
        check(answer)
    assert str(info.value).startswith("✗ ")
    return str(info.value)


# ------------------------------------------------------------------ 01.1 tanh backward

def test_tanh_backward_check(capsys):
    passes(check_tanh_backward, lambda dout, y: dout * (1 - y * y), capsys)
    passes(check_tanh_backward, lambda dout, y: dout - dout * y**2, capsys)  # another arrangement
    for wrong, message in [
        (lambda dout, y: 1 - y**2, "forgot to multiply by the upstream gradient"),
        (lambda dout, y: dout * (1 - np.tanh(y) ** 2), "fn receives y = tanh"),
        (lambda dout, y: dout * (1 - y), "not 1 - y"),
        (lambda dout, y: dout * y, r"dx is wrong at \d+ of 20 elements; the first is dx\[0, 0\]"),
    ]:
        fails(check_tanh_backward, wrong, message)


# ------------------------------------------------------------------ 01.2 dense backward by index

def dense_loops(dZ, A, W):
    N, n_in = A.shape
    n_out = W.shape[0]
    dA, dW, db = np.zeros((N, n_in)), np.zeros((n_out, n_in)), np.zeros(n_out)
    for n in range(N):
        for j in range(n_out):
            db[j] += dZ[n, j]
            for k in range(n_in):
                dA[n, k] += dZ[n, j] * W[j, k]
                dW[j, k] += dZ[n, j] * A[n, k]
    return dA, dW, db


def dense_loops_other_order(dZ, A, W):  # one output element at a time, sums innermost
    dA = np.array([[sum(dZ[n, j] * W[j, k] for j in range(W.shape[0])) for k in range(A.shape[1])]
                   for n in range(A.shape[0])])
    dW = np.array([[sum(dZ[n, j] * A[n, k] for n in range(A.shape[0])) for k in range(A.shape[1])]
                   for j in range(W.shape[0])])
    db = np.array([sum(dZ[n, j] for n in range(A.shape[0])) for j in range(W.shape[0])])
    return dA, dW, db


def dense_assigns(dZ, A, W):  # "=" instead of "+=": only the last term survives
    N, n_in = A.shape
    dA, dW, db = np.zeros((N, n_in)), np.zeros((W.shape[0], n_in)), np.zeros(W.shape[0])
    for n in range(N):
        for j in range(W.shape[0]):
            db[j] += dZ[n, j]
            for k in range(n_in):
                dA[n, k] += dZ[n, j] * W[j, k]
                dW[j, k] = dZ[n, j] * A[n, k]
    return dA, dW, db


def test_dense_backward_check(capsys):
    passes(check_dense_backward, dense_loops, capsys)
    passes(check_dense_backward, dense_loops_other_order, capsys)
    passes(check_dense_backward, ref.dense_backward, capsys)  # vectorised
    fails(check_dense_backward, lambda dZ, A, W: (dZ @ W, A.T @ dZ, dZ.sum(0)),
          r"dW has shape \(4, 3\) \(transposed\?\).*colleague's first bug")
    fails(check_dense_backward, lambda dZ, A, W: (dZ @ W, dZ.T @ A, dZ.sum(1)),
          r"db has shape \(5,\).*colleague's second bug")
    fails(check_dense_backward, dense_assigns, r"dW is wrong.*the first is dW\[0, 0\].*assigned \(=\)")
    fails(check_dense_backward, lambda dZ, A, W: (dZ @ W, dZ.T @ A / len(A), dZ.sum(0)), "divided by N")
    fails(check_dense_backward, lambda dZ, A, W: (dZ @ W, dZ.T @ A), r"must return a tuple \(dA, dW, db\)")
    fails(check_dense_backward, lambda dZ, A, W: (dZ @ W.T, dZ.T @ A, dZ.sum(0)), "raised ValueError")


# ------------------------------------------------------------------ 01.3 softmax + cross-entropy backward

def xent_stable(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_log_softmax(logits, labels):  # another stable form: exp(log-softmax), one-hot y
    return (np.exp(torch.log_softmax(torch.tensor(logits), dim=1).numpy()) - np.eye(logits.shape[1])[labels]) / len(labels)


def xent_torch(logits, labels):
    z = torch.tensor(logits, requires_grad=True)
    torch.nn.functional.cross_entropy(z, torch.tensor(labels)).backward()
    return z.grad.numpy()


def xent_naive(logits, labels):  # no max-subtraction: overflows at logits of 1000
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_global_max(logits, labels):
    z = logits - logits.max()
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_columns(logits, labels):  # index confusion: p[:, labels]
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p[:, labels] -= 1
    return p / len(labels)


def test_softmax_xent_backward_check(capsys):
    for right in (xent_stable, xent_log_softmax, xent_torch):
        passes(check_softmax_xent_backward, right, capsys)
    fails(check_softmax_xent_backward, lambda z, y: xent_stable(z, y) * len(y), "forgot to divide by the batch size")
    fails(check_softmax_xent_backward, xent_naive, "overflowed.*Subtract each row's maximum")
    fails(check_softmax_xent_backward, xent_global_max, "each row's \\*own\\* maximum")
    fails(check_softmax_xent_backward, xent_columns, r"p\[:, labels\] -= 1 subtracts 1 in every row")
    fails(check_softmax_xent_backward, lambda z, y: -xent_stable(z, y), "sign is flipped")
    fails(check_softmax_xent_backward, lambda z, y: (xent_stable(z, y) * len(y) - y) / len(y),  # p - labels
          "raised ValueError.*class indices, shape \\(N,\\), not one-hot")


def xent_sum_without_keepdims(logits, labels):  # e.sum(axis=1) has shape (N,): does not broadcast against (N, C)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_labels_as_one_hot(logits, labels):  # treats labels as an (N, C) one-hot array
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True) - labels[:, :]) / len(labels)


def xent_float32(logits, labels):  # the right formula, computed in float32
    z = logits.astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_loops(logits, labels):  # another correct form: loops, a maximum per row
    N, C = logits.shape
    out = np.zeros((N, C))
    for n in range(N):
        m = max(logits[n])
        e = [np.exp(v - m) for v in logits[n]]
        for j in range(C):
            out[n, j] = (e[j] / sum(e) - (1.0 if j == labels[n] else 0.0)) / N
    return out


def test_softmax_xent_backward_errors_get_the_hint_that_fits(capsys):
    passes(check_softmax_xent_backward, xent_loops, capsys)
    message = fails(check_softmax_xent_backward, xent_sum_without_keepdims,
                    r"raised ValueError.*shapes do not broadcast: keep the summed axis \(keepdims=True\)")
    assert "one-hot" not in message  # labels were used correctly: their hint would mislead
    fails(check_softmax_xent_backward, xent_labels_as_one_hot, "raised IndexError.*class indices.*not one-hot")


def test_softmax_xent_backward_in_float32_is_named():
    message = fails(check_softmax_xent_backward, xent_float32,
                    "agrees to about 1e-6 only: you computed in float32; this exercise is in float64")
    assert "Likely cause" in message


def test_softmax_check_claims_no_scipy():
    assert "scipy" not in (check_softmax_xent_backward.__doc__ or "")


# ------------------------------------------------------------------ 01.4 conv2d weight gradient

def conv_dw_loops(dout, x, KH, KW):
    N, C, H, W = x.shape
    F, OH, OW = dout.shape[1], H - KH + 1, W - KW + 1
    dw = np.zeros((F, C, KH, KW))
    for f in range(F):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                dw[f, c, p, q] += dout[n, f, i, j] * x[n, c, i + p, j + q]
    return dw


def conv_dw_vectorised(dout, x, KH, KW):  # sum over windows, other loop order
    OH, OW = dout.shape[2:]
    return np.stack([np.stack([np.einsum("nfij,ncij->fc", dout, x[:, :, p:p + OH, q:q + OW]) for q in range(KW)], -1)
                     for p in range(KH)], -2)


def conv_dw_torch(dout, x, KH, KW):
    w = torch.zeros((dout.shape[1], x.shape[1], KH, KW), dtype=torch.float64, requires_grad=True)
    (torch.nn.functional.conv2d(torch.tensor(x), w) * torch.tensor(dout)).sum().backward()
    return w.grad.numpy()


def test_conv2d_weight_grad_check(capsys):
    for right in (conv_dw_loops, conv_dw_vectorised, conv_dw_torch):
        passes(check_conv2d_weight_grad, right, capsys)
    fails(check_conv2d_weight_grad, lambda d, x, KH, KW: conv_dw_loops(d, x, KH, KW)[:, :, ::-1, ::-1],
          r"dw is wrong.*the first is dw\[0, 0, 0, 0\].*flipped.*cross-correlation")
    fails(check_conv2d_weight_grad, lambda d, x, KH, KW: conv_dw_loops(d[:, :, :-1, :-1], x[:, :, :-1, :-1], KH, KW),
          "stop one short")
    fails(check_conv2d_weight_grad, lambda d, x, KH, KW: conv_dw_loops(d, x, KH, KW).transpose(1, 0, 2, 3),
          r"dw has shape \(3, 4, 3, 2\).*output channels first")
    fails(check_conv2d_weight_grad, lambda d, x, KH, KW: conv_dw_loops(d, x, KH, KW) / len(x), "divided by N")
    fails(check_conv2d_weight_grad, lambda d, x, KH, KW: conv_dw_loops(d[:1], x[:1], KH, KW), "only sample 0")


def test_unsolved_stubs_say_not_solved(capsys):
    def stub(*args):
        raise NotImplementedError()

    for check, number in ((check_tanh_backward, "01.1"), (check_dense_backward, "01.2"),
                          (check_softmax_xent_backward, "01.3"), (check_conv2d_weight_grad, "01.4")):
        check(stub)
        assert capsys.readouterr().out.startswith(f"◻ Exercise {number} not solved yet")


# ------------------------------------------------------------------ issue 16: varied cases, verified causes


def test_conv2d_weight_grad_rejects_a_kernel_size_copied_from_the_statement():
    def kh_three(dout, x, KH, KW):  # the statement's KH = 3 in place of the parameter
        return conv_dw_loops(dout, x, 3, KW)

    def kw_two(dout, x, KH, KW):  # the statement's KW = 2
        return conv_dw_loops(dout, x, KH, 2)

    for answer in (kh_three, kw_two):
        verdict = CONV2D_WEIGHT_GRAD.run(answer)
        assert not verdict.passed and verdict.case.KH == 2 and verdict.case.KW == 4, verdict


def test_dense_backward_and_tanh_reject_shapes_copied_from_the_statement():
    def dense_fixed(dZ, A, W):
        return dense_loops(dZ[:5, :3], A[:5, :4], W[:3, :4])

    verdict = DENSE_BACKWARD.run(dense_fixed)
    assert not verdict.passed and verdict.case.sizes == {"N": 6, "n_in": 1, "n_out": 5}, verdict
    verdict = TANH_BACKWARD.run(lambda dout, y: (dout * (1 - y * y)).reshape(4, 5))
    assert not verdict.passed and verdict.case.rows == 1, verdict


def test_softmax_runs_other_shapes_and_labels():
    def xent_seven_classes(logits, labels):  # the statement's C = 7 copied into the one-hot labels
        z = logits - logits.max(axis=1, keepdims=True)
        return (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True) - np.eye(7)[labels]) / len(labels)

    assert SOFTMAX_XENT_BACKWARD.run(xent_seven_classes, SOFTMAX_XENT_BACKWARD.cases[:2]).passed
    verdict = SOFTMAX_XENT_BACKWARD.run(xent_seven_classes)
    assert not verdict.passed and verdict.case.sizes == {"N": 1, "C": 2}, verdict


def test_softmax_overflow_cause_only_where_the_logits_overflow():
    def nan_in_row_zero(logits, labels):  # a nan that has nothing to do with overflow, on ordinary logits
        out = xent_stable(logits, labels)
        out[0, 0] = np.nan
        return out

    message = fails(check_softmax_xent_backward, nan_in_row_zero, r"dlogits\[0, 0\]")
    assert "logits up to 1000" not in message


def test_softmax_float32_cause_only_for_float32_values():
    message = fails(check_softmax_xent_backward, lambda z, labels: xent_stable(z, labels) * (1 + 3e-7),
                    r"dlogits is wrong")
    assert "float32" not in message
