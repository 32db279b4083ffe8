"""Exercises 01.1-01.4 (NumPy backward passes): answers written from the learner notebook."""

import numpy as np

from ._answer import Answer

# ---- 01.1 tanh backward


def tanh_ok(dout, y):
    """Correct: dout * (1 - y^2)."""
    return dout * (1 - y**2)


def tanh_ok_mul(dout, y):
    """Correct: dout - dout * y * y (expanded)."""
    return dout - dout * y * y


def tanh_of_y(dout, y):
    """Wrong: treats y as x, 1 - tanh(y)^2."""
    return dout * (1 - np.tanh(y) ** 2)


def tanh_no_square(dout, y):
    """Wrong: 1 - y instead of 1 - y^2."""
    return dout * (1 - y)


def tanh_no_dout(dout, y):
    """Wrong: forgets the upstream gradient."""
    return 1 - y**2


def tanh_plus(dout, y):
    """Wrong: 1 + y^2 (sign)."""
    return dout * (1 + y**2)


def tanh_inplace(dout, y):
    """Correct: y * y first, then a float literal 1.0."""
    y2 = y * y
    return dout * (1.0 - y2)


# ---- 01.2 dense backward


def dense_loops(dZ, A, W):
    """Correct: explicit loops, zeros in the shape of each variable."""
    N, nout = dZ.shape
    nin = A.shape[1]
    dA = np.zeros_like(A, dtype=np.float64)
    dW = np.zeros_like(W, dtype=np.float64)
    db = np.zeros(nout)
    for n in range(N):
        for j in range(nout):
            db[j] += dZ[n, j]
            for k in range(nin):
                dW[j, k] += dZ[n, j] * A[n, k]
                dA[n, k] += dZ[n, j] * W[j, k]
    return dA, dW, db


def dense_vec(dZ, A, W):
    """Correct: vectorised, dA = dZ W, dW = dZ^T A, db = sum over axis 0."""
    return dZ @ W, dZ.T @ A, dZ.sum(axis=0)


def dense_einsum(dZ, A, W):
    """Correct: einsum."""
    return np.einsum("nj,jk->nk", dZ, W), np.einsum("nj,nk->jk", dZ, A), np.einsum("nj->j", dZ)


def dense_buggy(dZ, A, W):
    """Wrong: the colleague's version, dW = A^T dZ (transposed) and db summed over axis 1."""
    return dZ @ W, A.T @ dZ, dZ.sum(axis=1)


def dense_db_mean(dZ, A, W):
    """Wrong: db is the mean over the batch, not the sum."""
    return dZ @ W, dZ.T @ A, dZ.mean(axis=0)


def dense_dW_mean(dZ, A, W):
    """Wrong: dW divided by N."""
    return dZ @ W, dZ.T @ A / dZ.shape[0], dZ.sum(axis=0)


def dense_dA_WT(dZ, A, W):
    """Wrong: dA uses W where its loops index W[k, j]: dA = dZ (W^T)^T... computed as dZ @ W.T (shape error-free only
    when square); here written with loops that read W[k % nout, j % nin]."""
    N, nout = dZ.shape
    nin = A.shape[1]
    dA = np.zeros((N, nin))
    for n in range(N):
        for k in range(nin):
            for j in range(nout):
                dA[n, k] += dZ[n, j] * W[k % nout, j % nin]
    return dA, dZ.T @ A, dZ.sum(axis=0)


def dense_order(dZ, A, W):
    """Wrong: returns (dW, dA, db) in the wrong order."""
    return dZ.T @ A, dZ @ W, dZ.sum(axis=0)


def dense_loop_overwrite(dZ, A, W):
    """Wrong: `=` instead of `+=` in the loop for dW (keeps only the last sample)."""
    N, nout = dZ.shape
    nin = A.shape[1]
    dW = np.zeros_like(W)
    for n in range(N):
        for j in range(nout):
            for k in range(nin):
                dW[j, k] = dZ[n, j] * A[n, k]
    return dZ @ W, dW, dZ.sum(axis=0)


# ---- 01.3 softmax + cross-entropy backward


def xent_ok(logits, labels):
    """Correct: stable softmax, subtract 1 at the labels, divide by N."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_ok_eye(logits, labels):
    """Correct: log-sum-exp form with one-hot from np.eye."""
    m = logits.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    p = np.exp(logits - lse)
    Y = np.eye(logits.shape[1])[labels]
    return (p - Y) / logits.shape[0]


def xent_unstable(logits, labels):
    """Wrong: no max subtraction, overflows (NaN) at logits of 1000."""
    with np.errstate(all="ignore"):
        p = np.exp(logits)
        p = p / p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_no_mean(logits, labels):
    """Wrong: forgets 1/N."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p


def xent_global_max(logits, labels):
    """Correct: subtracts the global max (still stable for ±1000 rows? only if rows are within ~700 of it)."""
    z = logits - logits.max()
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_sum_axis0(logits, labels):
    """Wrong: normalises over the batch (axis=0) instead of the classes."""
    z = logits - logits.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def xent_divide_C(logits, labels):
    """Wrong: divides by the number of classes C instead of N."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / logits.shape[1]


def xent_label_slice(logits, labels):
    """Wrong: p[:, labels] -= 1 subtracts 1 in every row at every label's column."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[:, labels] -= 1
    return p / len(labels)


# ---- 01.4 conv2d weight gradient


def cwg_loops(dout, x, KH, KW):
    """Correct: seven loops."""
    N, F, OH, OW = dout.shape
    C = x.shape[1]
    dw = np.zeros((F, C, KH, KW))
    for f in range(F):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    s = 0.0
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                s += dout[n, f, i, j] * x[n, c, i + p, j + q]
                    dw[f, c, p, q] = s
    return dw


def cwg_einsum(dout, x, KH, KW):
    """Correct: slices of x and einsum per kernel offset."""
    N, F, OH, OW = dout.shape
    dw = np.zeros((F, x.shape[1], KH, KW))
    for p in range(KH):
        for q in range(KW):
            dw[:, :, p, q] = np.einsum("nfij,ncij->fc", dout, x[:, :, p:p + OH, q:q + OW])
    return dw


def cwg_flipped(dout, x, KH, KW):
    """Wrong: flipped kernel (x[i + KH-1-p, j + KW-1-q])."""
    dw = cwg_einsum(dout, x, KH, KW)
    return dw[:, :, ::-1, ::-1].copy()


def cwg_swapped_pq(dout, x, KH, KW):
    """Wrong: p runs over KW and q over KH, output reshaped to (F, C, KH, KW)."""
    N, F, OH, OW = dout.shape
    dw = np.zeros((F, x.shape[1], KW, KH))
    for p in range(KW):
        for q in range(KH):
            for i in range(OH):
                for j in range(OW):
                    if i + q < x.shape[2] and j + p < x.shape[3]:
                        dw[:, :, p, q] += np.einsum("nf,nc->fc", dout[:, :, i, j], x[:, :, i + q, j + p])
    return dw.transpose(0, 1, 2, 3).reshape(F, x.shape[1], KH, KW)


def cwg_off_by_one(dout, x, KH, KW):
    """Wrong: the sums over i, j stop one short (range(OH - 1), range(OW - 1))."""
    N, F, OH, OW = dout.shape
    dw = np.zeros((F, x.shape[1], KH, KW))
    for p in range(KH):
        for q in range(KW):
            dw[:, :, p, q] = np.einsum("nfij,ncij->fc", dout[:, :, :OH - 1, :OW - 1],
                                       x[:, :, p:p + OH - 1, q:q + OW - 1])
    return dw


def cwg_mean(dout, x, KH, KW):
    """Wrong: averages over the batch (divides by N)."""
    return cwg_einsum(dout, x, KH, KW) / dout.shape[0]


def cwg_transposed_x(dout, x, KH, KW):
    """Wrong: swaps the spatial indices of x (x[n, c, j + q, i + p]) - guarded by a modulo to avoid an IndexError."""
    N, F, OH, OW = dout.shape
    C, H, W = x.shape[1:]
    dw = np.zeros((F, C, KH, KW))
    for p in range(KH):
        for q in range(KW):
            for i in range(OH):
                for j in range(OW):
                    dw[:, :, p, q] += dout[:, :, i, j].T @ x[:, :, (j + q) % H, (i + p) % W]
    return dw


ANSWERS = [
    Answer("01.1", "ok", "check_tanh_backward", (tanh_ok,), True),
    Answer("01.1", "ok-expanded", "check_tanh_backward", (tanh_ok_mul,), True),
    Answer("01.1", "ok-y-times-y", "check_tanh_backward", (tanh_inplace,), True),
    Answer("01.1", "tanh-of-y", "check_tanh_backward", (tanh_of_y,), False),
    Answer("01.1", "no-square", "check_tanh_backward", (tanh_no_square,), False),
    Answer("01.1", "no-dout", "check_tanh_backward", (tanh_no_dout,), False),
    Answer("01.1", "plus-sign", "check_tanh_backward", (tanh_plus,), False),
    Answer("01.2", "loops", "check_dense_backward", (dense_loops,), True),
    Answer("01.2", "vectorised", "check_dense_backward", (dense_vec,), True),
    Answer("01.2", "einsum", "check_dense_backward", (dense_einsum,), True),
    Answer("01.2", "colleague-buggy", "check_dense_backward", (dense_buggy,), False),
    Answer("01.2", "db-mean", "check_dense_backward", (dense_db_mean,), False),
    Answer("01.2", "dW-over-N", "check_dense_backward", (dense_dW_mean,), False),
    Answer("01.2", "dA-wrong-W-index", "check_dense_backward", (dense_dA_WT,), False),
    Answer("01.2", "order-swapped", "check_dense_backward", (dense_order,), False),
    Answer("01.2", "assign-not-add", "check_dense_backward", (dense_loop_overwrite,), False),
    Answer("01.3", "stable", "check_softmax_xent_backward", (xent_ok,), True),
    Answer("01.3", "logsumexp-eye", "check_softmax_xent_backward", (xent_ok_eye,), True),
    Answer("01.3", "unstable", "check_softmax_xent_backward", (xent_unstable,), False),
    Answer("01.3", "no-mean", "check_softmax_xent_backward", (xent_no_mean,), False),
    Answer("01.3", "global-max", "check_softmax_xent_backward", (xent_global_max,), False),
    Answer("01.3", "axis0", "check_softmax_xent_backward", (xent_sum_axis0,), False),
    Answer("01.3", "divide-by-C", "check_softmax_xent_backward", (xent_divide_C,), False),
    Answer("01.3", "labels-column-slice", "check_softmax_xent_backward", (xent_label_slice,), False),
    Answer("01.4", "loops", "check_conv2d_weight_grad", (cwg_loops,), True),
    Answer("01.4", "einsum", "check_conv2d_weight_grad", (cwg_einsum,), True),
    Answer("01.4", "flipped", "check_conv2d_weight_grad", (cwg_flipped,), False),
    Answer("01.4", "swapped-pq", "check_conv2d_weight_grad", (cwg_swapped_pq,), False),
    Answer("01.4", "off-by-one", "check_conv2d_weight_grad", (cwg_off_by_one,), False),
    Answer("01.4", "batch-mean", "check_conv2d_weight_grad", (cwg_mean,), False),
    Answer("01.4", "transposed-x", "check_conv2d_weight_grad", (cwg_transposed_x,), False),
]
