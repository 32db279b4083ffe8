"""Checks for notebook 01 (forward and backward math), all in NumPy float64.

Shapes are odd and all different (N=5 samples, 4 inputs, 3 outputs; a 3x2 convolution kernel over a
7x8 image), so a swapped index or a transposed result cannot pass by coincidence.
"""

from __future__ import annotations

import inspect
import re

import numpy as np

from nbkit.checks._answers import call_answer, shape_of, unpack
from nbkit.checks._core import compare, exercise, passed
from nbkit.nn import reference as ref

RTOL, ATOL = 1e-9, 1e-12  # float64 answers: any loop order or vectorised form agrees far closer than this


@exercise("01.1", "write tanh_backward(dout, y)")
def check_tanh_backward(fn) -> None:
    """Exercise 01.1: ``fn(dout, y)`` returns ∂L/∂x for ``y = tanh(x)``, given the upstream gradient."""
    r = np.random.default_rng(11)
    x = r.standard_normal((4, 5)) * 2
    y, dout = np.tanh(x), r.standard_normal((4, 5))
    got = call_answer(fn, dout, y, call="tanh_backward(dout, y)")
    compare("dx", got, ref.tanh_backward(dout, y), rtol=RTOL, atol=ATOL, causes=[
        (1 - y**2, "you returned tanh'(x) = 1 - y² but forgot to multiply by the upstream gradient dout."),
        (dout * (1 - np.tanh(y) ** 2), "fn receives y = tanh(x), not x: use 1 - y², not 1 - tanh(y)²."),
        (dout * (1 - y), "tanh'(x) is 1 - tanh(x)², so 1 - y², not 1 - y."),
        (dout * (1 + y * y), "tanh'(x) = 1 - y²: the sign of y² is wrong."),
    ])
    passed("tanh backward is dout * (1 - y²): correct.")


# ---------------------------------------------------------------------------------------------- 01.2


@exercise("01.2", "write dense_backward_loops(dZ, A, W) with explicit loops over the indices")
def check_dense_backward(fn) -> None:
    """Exercise 01.2: ``fn(dZ, A, W)`` returns ``(dA, dW, db)`` for ``Z = A Wᵀ + b`` (samples as rows).

    Written by index (loops) or vectorised, any order of summation passes.
    """
    r = np.random.default_rng(12)
    N, n_in, n_out = 5, 4, 3
    A, W, dZ = r.standard_normal((N, n_in)), r.standard_normal((n_out, n_in)), r.standard_normal((N, n_out))
    call = "dense_backward_loops(dZ, A, W)"
    dA, dW, db = unpack(call_answer(fn, dZ, A, W, call=call), ("dA", "dW", "db"), call)
    want_dA, want_dW, want_db = ref.dense_backward(dZ, A, W)
    shape_of("dA", dA, want_dA.shape, "a gradient has the shape of its variable, here A: (N, n_in) = "
             f"{want_dA.shape}. dA[n, k] = Σ_j dZ[n, j] W[j, k].")
    shape_of("dW", dW, want_dW.shape, "a gradient has the shape of its variable, here W: (n_out, n_in) = "
             f"{want_dW.shape}. dW[j, k] = Σ_n dZ[n, j] A[n, k]; A.T @ dZ (the colleague's first bug) is its "
             "transpose.")
    shape_of("db", db, want_db.shape, f"one entry per output feature, (n_out,) = {want_db.shape}: db[j] = Σ_n dZ[n, j] "
             "sums over the batch (axis 0); summing over the features (axis 1, the colleague's second bug) gives "
             "one entry per sample.")
    accumulate = ("you assigned (=) where the formula sums (+=): only the last term of the sum is left. Start from "
                  "zeros and add every term.")
    compare("dA", dA, want_dA, rtol=RTOL, atol=ATOL, causes=[
        (dZ[:, -1:] * W[-1], "dA[n, k] = Σ_j dZ[n, j] W[j, k] sums over every output j: " + accumulate),
        (dZ @ W / N, "dA is not averaged: each sample's dA[n] comes from its own dZ[n] (no 1/N)."),
    ])
    compare("dW", dW, want_dW, rtol=RTOL, atol=ATOL, causes=[
        (np.outer(dZ[-1], A[-1]), "dW[j, k] = Σ_n dZ[n, j] A[n, k] sums over the whole batch: " + accumulate),
        (want_dW / N, "you divided by N: dZ already carries the loss's 1/N (if it has one); dW just sums over samples."),
        (np.outer(dZ[0], A[0]), "only sample 0 contributed: dW[j, k] sums over all N samples."),
    ])
    compare("db", db, want_db, rtol=RTOL, atol=ATOL, causes=[
        (dZ[-1], "db[j] = Σ_n dZ[n, j] sums over the whole batch: " + accumulate),
        (want_db / N, "you divided by N: db sums dZ over the batch (any 1/N is already in dZ)."),
    ])
    passed(f"dA[n, k] = Σ_j dZ[n, j] W[j, k], dW[j, k] = Σ_n dZ[n, j] A[n, k], db[j] = Σ_n dZ[n, j]: all three "
           f"correct on N={N}, n_in={n_in}, n_out={n_out}. Vectorised: dA = dZ @ W, dW = dZ.T @ A, db = dZ.sum(0).")


# ---------------------------------------------------------------------------------------------- 01.3


def _softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_causes(logits: np.ndarray, labels: np.ndarray, want: np.ndarray) -> list:
    N, C = logits.shape
    P = _softmax(logits)
    Y = np.eye(C)[labels]
    columns = P.copy()
    columns[:, labels] -= 1  # p[:, labels] -= 1: every row loses 1 at *every* label of the batch
    rows = P.copy()
    if labels.max() < N:
        rows[labels] -= 1  # p[labels] -= 1: labels used as row numbers
    else:
        rows[:] = np.nan  # that mistake would raise IndexError here, reported as such
    return [
        (lambda got: np.isnan(got[0]).any() or np.isinf(got[0]).any(),
         "your softmax overflowed: row 0 has logits up to 1000 and exp(1000) is inf (float64 overflows above 709), "
         "so p = inf / inf = nan. Subtract each row's maximum before exp: p does not change, and the largest "
         "exponent is exp(0) = 1."),
        (lambda got: not np.isfinite(got).all(),
         "some rows came out nan or inf: subtract each row's *own* maximum (z.max(axis=1, keepdims=True)). With "
         "one maximum for the whole batch, a row far below it underflows to exp(...) = 0 everywhere, and 0 / 0 = nan."),
        (want * N, f"you forgot to divide by the batch size N = {N}: the loss is the mean over the batch, so "
                   "δ = (p - y) / N."),
        (-want, "the sign is flipped: ∂ℓ/∂z = p - y, not y - p."),
        (P / N, "you forgot to subtract the one-hot label y: δ = (p - y) / N."),
        (columns / N,
         "p[:, labels] -= 1 subtracts 1 in every row at *all* the batch's labels. Row n must lose 1 only at its own "
         "label: p[np.arange(N), labels] -= 1, or subtract the one-hot y = np.eye(C)[labels]."),
        (rows / N,
         "p[labels] -= 1 uses the labels as row numbers. Row n must lose 1 at column labels[n]: "
         "p[np.arange(N), labels] -= 1, or subtract the one-hot y = np.eye(C)[labels]."),
        ((_softmax(logits, axis=0) - Y) / N,
         "your softmax normalises over the batch (axis 0). Each sample's probabilities sum to 1 over its classes: "
         "axis=1, keepdims=True."),
    ]


_LABELS_HINT = ("labels holds class indices, shape (N,), not one-hot vectors: build y = np.eye(C)[labels], or "
                "subtract 1 at p[np.arange(N), labels].")


def _softmax_error_hint(exc: BaseException, line: str, labels_name: str = "labels") -> str:
    """The hint for an exception raised by a 01.3 answer: about labels only where labels can be the cause.

    ``line`` is the learner's line that raised, ``labels_name`` what the answer calls its second parameter.
    """
    if isinstance(exc, IndexError):  # labels[:, j], labels.argmax(axis=1): labels treated as one-hot
        return _LABELS_HINT
    if isinstance(exc, ValueError) and "broadcast" in str(exc):
        code = line.split("#")[0]
        reduces = re.search(r"\b(sum|max|amax|logsumexp)\b", code)
        if re.search(rf"\b{re.escape(labels_name)}\b", code) and not reduces:
            return ("shapes do not broadcast: " + _LABELS_HINT)
        return ("shapes do not broadcast: keep the summed axis (keepdims=True), so that a row's sum or maximum has "
                "shape (N, 1) and is taken from every element of its own row: e.sum(axis=1, keepdims=True).")
    return ""


@exercise("01.3", "write softmax_xent_backward(logits, labels)")
def check_softmax_xent_backward(fn) -> None:
    """Exercise 01.3: ``fn(logits, labels)`` returns ∂L/∂logits for the mean softmax cross-entropy.

    ``labels`` are class indices (not one-hot). Two cases: ordinary logits (N=5, C=7), then logits as
    large as ±1000, where a softmax without max-subtraction overflows. Any stable float64 form passes
    (max-subtraction, exp of log-softmax via log-sum-exp, loops).
    """
    r = np.random.default_rng(13)
    cases = [
        ("ordinary logits", r.standard_normal((5, 7)) * 3, np.array([3, 0, 6, 3, 1])),
        ("large logits", np.array([[1000.0, 0, -1000, 3, 999, -5, 2],
                                   [2.0, 1, 0.1, -1, 0.5, 0, -2],
                                   [-800.0, -805, -790, -801, -799, -850, -795]]), np.array([4, 0, 2])),
    ]
    try:
        labels_name = list(inspect.signature(fn).parameters)[1]
    except (TypeError, ValueError, IndexError):
        labels_name = "labels"
    for _, logits, labels in cases:
        got = call_answer(fn, logits, labels, call="softmax_xent_backward(logits, labels)",
                          hint=lambda exc, line: _softmax_error_hint(exc, line, labels_name))
        want = ref.softmax_cross_entropy_backward(logits, labels)
        causes = _softmax_causes(logits, labels, want)
        causes.append((lambda g, want=want: np.allclose(g, want, rtol=1e-5, atol=1e-8),
                       "agrees to about 1e-6 only: you computed in float32; this exercise is in float64, where any "
                       "correct form agrees to 1e-9 (look for logits.astype(np.float32) or a float32 array)."))
        compare("dlogits", got, want, rtol=RTOL, atol=ATOL, causes=causes)
    passed("δ = (softmax(z) - y) / N is correct, and stays finite for logits of ±1000 (the max-subtraction works).")


# ---------------------------------------------------------------------------------------------- 01.4


def _conv_dw(dout: np.ndarray, x: np.ndarray, KH: int, KW: int, OH: int, OW: int) -> np.ndarray:
    """dw[f, c, p, q] = Σ_{n, i<OH, j<OW} dout[n, f, i, j] x[n, c, i+p, j+q] (OH, OW may be cut short)."""
    dw = np.zeros((dout.shape[1], x.shape[1], KH, KW))
    for p in range(KH):
        for q in range(KW):
            dw[:, :, p, q] = np.einsum("nfhw,nchw->fc", dout[:, :, :OH, :OW], x[:, :, p:p + OH, q:q + OW])
    return dw


@exercise("01.4", "write conv2d_weight_grad(dout, x, KH, KW) with explicit loops")
def check_conv2d_weight_grad(fn) -> None:
    """Exercise 01.4: ``fn(dout, x, KH, KW)`` returns ∂L/∂w, shape (F, C, KH, KW), for a stride-1 conv2d.

    x is (N, C, H, W) = (2, 3, 7, 8), the kernel 3 x 2 (not square), so the output is 5 x 7 and every
    swapped index, flipped kernel or loop bound off by one gives different numbers.
    """
    r = np.random.default_rng(14)
    N, C, H, W, F, KH, KW = 2, 3, 7, 8, 4, 3, 2
    OH, OW = H - KH + 1, W - KW + 1
    x, dout = r.standard_normal((N, C, H, W)), r.standard_normal((N, F, OH, OW))
    got = call_answer(fn, dout, x, KH, KW, call="conv2d_weight_grad(dout, x, KH, KW)",
                      hint=f"Here x is (N, C, H, W) = {x.shape}, dout is (N, F, H-KH+1, W-KW+1) = {dout.shape}.")
    want = ref.conv2d_backward(dout, x, np.zeros((F, C, KH, KW)))[1]
    shape = np.shape(got)
    if shape == (C, F, KH, KW):
        shape_of("dw", got, want.shape, "w is (F, C, KH, KW): output channels first, as in PyTorch.")
    if shape == (F, C, KW, KH):
        shape_of("dw", got, want.shape, "the kernel's height KH comes before its width KW.")
    shape_of("dw", got, want.shape, "a gradient has the shape of its variable, here w: (F, C, KH, KW).")
    # what "dw[f, c, p, q] = ..." inside the loops leaves: the last term, at n = N-1, i = OH-1, j = OW-1
    last = dout[-1, :, -1, -1][:, None, None, None] * x[-1, :, OH - 1:OH - 1 + KH, OW - 1:OW - 1 + KW][None]
    compare("dw", got, want, rtol=RTOL, atol=ATOL, causes=[
        (want[:, :, ::-1, ::-1], "your dw is the true one flipped in both directions: you computed a convolution. Deep-learning "
                                 "'convolution' is a cross-correlation, y[n, f, i, j] = Σ x[n, c, i+p, j+q] w[f, c, p, q], "
                                 "so dw[f, c, p, q] = Σ_{n, i, j} dout[n, f, i, j] x[n, c, i+p, j+q]."),
        (_conv_dw(dout, x, KH, KW, OH - 1, OW - 1), f"your loops over the output stop one short: the output has "
                                                    f"H - KH + 1 = {OH} rows and W - KW + 1 = {OW} columns."),
        (_conv_dw(dout, x, KH, KW, OH - 1, OW), f"your loop over output rows stops one short: there are "
                                                f"H - KH + 1 = {OH}."),
        (_conv_dw(dout, x, KH, KW, OH, OW - 1), f"your loop over output columns stops one short: there are "
                                                f"W - KW + 1 = {OW}."),
        (want / N, "you divided by N: dw sums over the batch (any 1/N of the loss is already in dout)."),
        (_conv_dw(dout[:1], x[:1], KH, KW, OH, OW), "only sample 0 contributed: dw sums over all N samples."),
        (last, "you assigned (=) where the formula sums (+=): only the last term (n, i, j) is left."),
    ])
    passed(f"dw[f, c, p, q] = Σ_(n, i, j) dout[n, f, i, j] x[n, c, i+p, j+q] is correct for x {x.shape} and a "
           f"{KH}x{KW} kernel: the weight gradient correlates the input with the output gradient.")
