"""Checks for notebook 01 (forward and backward math), all in NumPy float64.

Shapes are odd and all different (N=5 samples, 4 inputs, 3 outputs; a 3x2 convolution kernel over a
7x8 image), so a swapped index or a transposed result cannot pass by coincidence.
"""

from __future__ import annotations

import inspect
import re

import numpy as np

from nbkit.checks.exercise import Attempt, Case, Cause, FunctionExercise, equals
from nbkit.nn import reference as ref

RTOL, ATOL = 1e-9, 1e-12  # float64 answers: any loop order or vectorised form agrees far closer than this


def _tanh_inputs(rng: np.random.Generator, case: Case) -> dict[str, np.ndarray]:
    x = rng.standard_normal((case.rows, case.cols)) * 2
    return {"y": np.tanh(x), "dout": rng.standard_normal((case.rows, case.cols))}


TANH_BACKWARD = FunctionExercise(
    number="01.1", task="write tanh_backward(dout, y)", call="tanh_backward(dout, y)", outputs=("dx",),
    inputs=_tanh_inputs, reference=ref.tanh_backward,
    cases=tuple(Case(sizes={"rows": r, "cols": c}) for r, c in [(4, 5), (1, 1), (7, 2), (3, 11)]), seed=11,
    causes=(
        equals(lambda a: 1 - a.y**2, "you returned tanh'(x) = 1 - y² but forgot to multiply by the upstream "
                                     "gradient dout."),
        equals(lambda a: a.dout * (1 - np.tanh(a.y) ** 2), "fn receives y = tanh(x), not x: use 1 - y², not "
                                                           "1 - tanh(y)²."),
        equals(lambda a: a.dout * (1 - a.y), "tanh'(x) is 1 - tanh(x)², so 1 - y², not 1 - y."),
        equals(lambda a: a.dout * (1 + a.y * a.y), "tanh'(x) = 1 - y²: the sign of y² is wrong."),
    ),
    success="tanh backward is dout * (1 - y²): correct.",
)


def check_tanh_backward(fn) -> None:
    """Exercise 01.1: ``fn(dout, y)`` returns ∂L/∂x for ``y = tanh(x)``, given the upstream gradient."""
    TANH_BACKWARD.check(fn)


# ---------------------------------------------------------------------------------------------- 01.2

_ACCUMULATE = ("you assigned (=) where the formula sums (+=): only the last term of the sum is left. Start from "
               "zeros and add every term.")

DENSE_BACKWARD = FunctionExercise(
    number="01.2", task="write dense_backward_loops(dZ, A, W) with explicit loops over the indices",
    call="dense_backward_loops(dZ, A, W)", outputs=("dA", "dW", "db"),
    inputs=lambda rng, c: {"A": rng.standard_normal((c.N, c.n_in)), "W": rng.standard_normal((c.n_out, c.n_in)),
                           "dZ": rng.standard_normal((c.N, c.n_out))},
    reference=lambda dZ, A, W: ref.dense_backward(dZ, A, W),
    # the statement's shapes first (all different, so a transposed result cannot pass), then one sample, one input,
    # one output: a size hard-coded from the statement fails there
    cases=tuple(Case(sizes={"N": N, "n_in": i, "n_out": o}) for N, i, o in [(5, 4, 3), (1, 3, 2), (6, 1, 5), (3, 7, 1)]),
    seed=12,
    shapes={
        "dA": lambda a: f"a gradient has the shape of its variable, here A: (N, n_in) = {a.want.shape}. dA[n, k] = "
                        "Σ_j dZ[n, j] W[j, k].",
        "dW": lambda a: f"a gradient has the shape of its variable, here W: (n_out, n_in) = {a.want.shape}. dW[j, k] = "
                        "Σ_n dZ[n, j] A[n, k]; A.T @ dZ (the colleague's first bug) is its transpose.",
        "db": lambda a: f"one entry per output feature, (n_out,) = {a.want.shape}: db[j] = Σ_n dZ[n, j] sums over the "
                        "batch (axis 0); summing over the features (axis 1, the colleague's second bug) gives one "
                        "entry per sample.",
    },
    causes=(
        equals(lambda a: a.dZ[:, -1:] * a.W[-1], "dA[n, k] = Σ_j dZ[n, j] W[j, k] sums over every output j: "
               + _ACCUMULATE, output="dA"),
        equals(lambda a: a.dZ @ a.W / a.N, "dA is not averaged: each sample's dA[n] comes from its own dZ[n] (no 1/N).",
               output="dA"),
        equals(lambda a: np.outer(a.dZ[-1], a.A[-1]), "dW[j, k] = Σ_n dZ[n, j] A[n, k] sums over the whole batch: "
               + _ACCUMULATE, output="dW"),
        equals(lambda a: a.want / a.N, "you divided by N: dZ already carries the loss's 1/N (if it has one); dW just "
                                       "sums over samples.", output="dW"),
        equals(lambda a: np.outer(a.dZ[0], a.A[0]), "only sample 0 contributed: dW[j, k] sums over all N samples.",
               output="dW"),
        equals(lambda a: a.dZ[-1], "db[j] = Σ_n dZ[n, j] sums over the whole batch: " + _ACCUMULATE, output="db"),
        equals(lambda a: a.want / a.N, "you divided by N: db sums dZ over the batch (any 1/N is already in dZ).",
               output="db"),
    ),
    success="dA[n, k] = Σ_j dZ[n, j] W[j, k], dW[j, k] = Σ_n dZ[n, j] A[n, k], db[j] = Σ_n dZ[n, j]: all three "
            "correct on N={cases[0].N}, n_in={cases[0].n_in}, n_out={cases[0].n_out} and three other shapes. "
            "Vectorised: dA = dZ @ W, dW = dZ.T @ A, db = dZ.sum(0).",
)


def check_dense_backward(fn) -> None:
    """Exercise 01.2: ``fn(dZ, A, W)`` returns ``(dA, dW, db)`` for ``Z = A Wᵀ + b`` (samples as rows).

    Written by index (loops) or vectorised, any order of summation passes.
    """
    DENSE_BACKWARD.check(fn)


# ---------------------------------------------------------------------------------------------- 01.3


def _softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _one_per_row(a: Attempt, rows: bool) -> np.ndarray:
    """What subtracting 1 with the labels as columns of every row (``p[:, labels] -= 1``) or as row numbers
    (``p[labels] -= 1``) gives, divided by N."""
    N = a.logits.shape[0]
    p = _softmax(a.logits)
    if rows:
        if a.labels.max() >= N:
            return np.full_like(p, np.nan)  # that mistake would raise IndexError here, reported as such
        p[a.labels] -= 1
    else:
        p[:, a.labels] -= 1  # every row loses 1 at *every* label of the batch
    return p / N


SOFTMAX_CAUSES = (
    Cause(lambda a: np.abs(a.logits[0]).max() > 709 and not np.isfinite(a.got[0]).all(),
          "your softmax overflowed: row 0 has logits up to 1000 and exp(1000) is inf (float64 overflows above 709), "
          "so p = inf / inf = nan. Subtract each row's maximum before exp: p does not change, and the largest "
          "exponent is exp(0) = 1."),
    Cause(lambda a: not np.isfinite(a.got).all(),
          "some rows came out nan or inf: subtract each row's *own* maximum (z.max(axis=1, keepdims=True)). With "
          "one maximum for the whole batch, a row far below it underflows to exp(...) = 0 everywhere, and 0 / 0 = nan."),
    equals(lambda a: a.want * a.logits.shape[0],
           lambda a: f"you forgot to divide by the batch size N = {a.logits.shape[0]}: the loss is the mean over the "
                     "batch, so δ = (p - y) / N."),
    equals(lambda a: -a.want, "the sign is flipped: ∂ℓ/∂z = p - y, not y - p."),
    equals(lambda a: _softmax(a.logits) / a.logits.shape[0], "you forgot to subtract the one-hot label y: δ = (p - y) / N."),
    equals(lambda a: _one_per_row(a, rows=False),
           "p[:, labels] -= 1 subtracts 1 in every row at *all* the batch's labels. Row n must lose 1 only at its own "
           "label: p[np.arange(N), labels] -= 1, or subtract the one-hot y = np.eye(C)[labels]."),
    equals(lambda a: _one_per_row(a, rows=True),
           "p[labels] -= 1 uses the labels as row numbers. Row n must lose 1 at column labels[n]: "
           "p[np.arange(N), labels] -= 1, or subtract the one-hot y = np.eye(C)[labels]."),
    equals(lambda a: (_softmax(a.logits, axis=0) - np.eye(a.logits.shape[1])[a.labels]) / a.logits.shape[0],
           "your softmax normalises over the batch (axis 0). Each sample's probabilities sum to 1 over its classes: "
           "axis=1, keepdims=True."),
    Cause(lambda a: np.array_equal(a.got.astype(np.float32).astype(np.float64), a.got)
          and np.allclose(a.got, a.want, rtol=1e-5, atol=1e-8),
          "agrees to about 1e-6 only: you computed in float32; this exercise is in float64, where any correct form "
          "agrees to 1e-9 (look for logits.astype(np.float32) or a float32 array)."),
)


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


def _labels_name(fn: object) -> str:
    """What the answer calls its second parameter (the labels), for the hints."""
    try:
        return list(inspect.signature(fn).parameters)[1]
    except (TypeError, ValueError, IndexError):
        return "labels"


SOFTMAX_XENT_BACKWARD = FunctionExercise(
    number="01.3", task="write softmax_xent_backward(logits, labels)", call="softmax_xent_backward(logits, labels)",
    outputs=("dlogits",),
    inputs=lambda rng, c: {"logits": rng.standard_normal((c.N, c.C)) * 3,
                           # the statement's case keeps its labels (3 twice); the others draw theirs
                           "labels": np.array([3, 0, 6, 3, 1]) if (c.N, c.C) == (5, 7) else rng.integers(0, c.C, c.N)},
    reference=ref.softmax_cross_entropy_backward,
    cases=(
        Case(sizes={"N": 5, "C": 7}),  # ordinary logits
        Case(data={"logits": np.array([[1000.0, 0, -1000, 3, 999, -5, 2],  # a softmax without max-subtraction overflows
                                       [2.0, 1, 0.1, -1, 0.5, 0, -2],
                                       [-800.0, -805, -790, -801, -799, -850, -795]]),
                   "labels": np.array([4, 0, 2])}),
        Case(sizes={"N": 1, "C": 2}), Case(sizes={"N": 9, "C": 3}), Case(sizes={"N": 4, "C": 10}),  # other shapes
    ),
    seed=13,
    hint=lambda exc, line, inputs, fn: _softmax_error_hint(exc, line, _labels_name(fn)),
    causes=SOFTMAX_CAUSES,
    success="δ = (softmax(z) - y) / N is correct, and stays finite for logits of ±1000 (the max-subtraction works).",
)


def check_softmax_xent_backward(fn) -> None:
    """Exercise 01.3: ``fn(logits, labels)`` returns ∂L/∂logits for the mean softmax cross-entropy.

    ``labels`` are class indices (not one-hot). Two cases: ordinary logits (N=5, C=7), then logits as
    large as ±1000, where a softmax without max-subtraction overflows. Any stable float64 form passes
    (max-subtraction, exp of log-softmax via log-sum-exp, loops).
    """
    SOFTMAX_XENT_BACKWARD.check(fn)


# ---------------------------------------------------------------------------------------------- 01.4


def _conv_dw(dout: np.ndarray, x: np.ndarray, KH: int, KW: int, OH: int, OW: int) -> np.ndarray:
    """dw[f, c, p, q] = Σ_{n, i<OH, j<OW} dout[n, f, i, j] x[n, c, i+p, j+q] (OH, OW may be cut short)."""
    dw = np.zeros((dout.shape[1], x.shape[1], KH, KW))
    for p in range(KH):
        for q in range(KW):
            dw[:, :, p, q] = np.einsum("nfhw,nchw->fc", dout[:, :, :OH, :OW], x[:, :, p:p + OH, q:q + OW])
    return dw


def _dw_shape_meaning(a: Attempt) -> str:
    shape = np.shape(a.got)
    if shape == (a.C, a.F, a.KH, a.KW):
        return "w is (F, C, KH, KW): output channels first, as in PyTorch."
    if shape == (a.F, a.C, a.KW, a.KH):
        return "the kernel's height KH comes before its width KW."
    return "a gradient has the shape of its variable, here w: (F, C, KH, KW)."


def _last_term(a: Attempt) -> np.ndarray:
    """What "dw[f, c, p, q] = ..." inside the loops leaves: the last term, at n = N-1, i = OH-1, j = OW-1."""
    OH, OW = a.H - a.KH + 1, a.W - a.KW + 1
    return a.dout[-1, :, -1, -1][:, None, None, None] * a.x[-1, :, OH - 1:OH - 1 + a.KH, OW - 1:OW - 1 + a.KW][None]


def _cut(a: Attempt, rows: int, cols: int, samples: int | None = None) -> np.ndarray:
    """dw with the loops over the output stopping ``rows``/``cols`` short, over the first ``samples`` samples."""
    return _conv_dw(a.dout[:samples], a.x[:samples], a.KH, a.KW, a.H - a.KH + 1 - rows, a.W - a.KW + 1 - cols)


CONV2D_WEIGHT_GRAD = FunctionExercise(
    number="01.4", task="write conv2d_weight_grad(dout, x, KH, KW) with explicit loops",
    call="conv2d_weight_grad(dout, x, KH, KW)", outputs=("dw",),
    inputs=lambda rng, c: {"x": rng.standard_normal((c.N, c.C, c.H, c.W)),
                           "dout": rng.standard_normal((c.N, c.F, c.H - c.KH + 1, c.W - c.KW + 1)),
                           "KH": c.KH, "KW": c.KW},
    reference=lambda dout, x, KH, KW: ref.conv2d_backward(dout, x, np.zeros((dout.shape[1], x.shape[1], KH, KW)))[1],
    # a 3 x 2 kernel (not square) over 7 x 8: every swapped index, flipped kernel or loop bound off by one differs;
    # then other kernel sizes (a 3 or a 2 hard-coded from the statement fails), a kernel as large as the image, and
    # one sample, one channel
    cases=tuple(Case(sizes=dict(zip(("N", "C", "H", "W", "F", "KH", "KW"), v)))
                for v in [(2, 3, 7, 8, 4, 3, 2), (3, 2, 6, 5, 3, 2, 4), (1, 1, 3, 3, 1, 3, 3), (2, 1, 4, 9, 2, 1, 4)]),
    seed=14,
    hint=lambda exc, line, inputs, fn: (f"Here x is (N, C, H, W) = {inputs['x'].shape}, dout is (N, F, H-KH+1, "
                                        f"W-KW+1) = {inputs['dout'].shape}."),
    shapes={"dw": _dw_shape_meaning},
    causes=(
        equals(lambda a: a.want[:, :, ::-1, ::-1],
               "your dw is the true one flipped in both directions: you computed a convolution. Deep-learning "
               "'convolution' is a cross-correlation, y[n, f, i, j] = Σ x[n, c, i+p, j+q] w[f, c, p, q], "
               "so dw[f, c, p, q] = Σ_{n, i, j} dout[n, f, i, j] x[n, c, i+p, j+q]."),
        equals(lambda a: _cut(a, 1, 1), lambda a: f"your loops over the output stop one short: the output has "
                                                  f"H - KH + 1 = {a.H - a.KH + 1} rows and W - KW + 1 = "
                                                  f"{a.W - a.KW + 1} columns."),
        equals(lambda a: _cut(a, 1, 0), lambda a: f"your loop over output rows stops one short: there are "
                                                  f"H - KH + 1 = {a.H - a.KH + 1}."),
        equals(lambda a: _cut(a, 0, 1), lambda a: f"your loop over output columns stops one short: there are "
                                                  f"W - KW + 1 = {a.W - a.KW + 1}."),
        equals(lambda a: a.want / a.N, "you divided by N: dw sums over the batch (any 1/N of the loss is already in "
                                       "dout)."),
        equals(lambda a: _cut(a, 0, 0, samples=1), "only sample 0 contributed: dw sums over all N samples."),
        equals(_last_term, "you assigned (=) where the formula sums (+=): only the last term (n, i, j) is left."),
    ),
    success=lambda f: ("dw[f, c, p, q] = Σ_(n, i, j) dout[n, f, i, j] x[n, c, i+p, j+q] is correct for x "
                       f"{f.cases[0].x.shape} and a {f.cases[0].KH}x{f.cases[0].KW} kernel, and for "
                       + ", ".join(f"x {c.x.shape} with a {c.KH}x{c.KW} kernel" for c in f.cases[1:])
                       + ": the weight gradient correlates the input with the output gradient."),
)


def check_conv2d_weight_grad(fn) -> None:
    """Exercise 01.4: ``fn(dout, x, KH, KW)`` returns ∂L/∂w, shape (F, C, KH, KW), for a stride-1 conv2d.

    x is (N, C, H, W) = (2, 3, 7, 8), the kernel 3 x 2 (not square), so the output is 5 x 7 and every
    swapped index, flipped kernel or loop bound off by one gives different numbers.
    """
    CONV2D_WEIGHT_GRAD.check(fn)
