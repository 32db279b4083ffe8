"""Exercises 08.1-08.3 (CIFAR-10 capstone): answers written from the learner notebook."""

import numpy as np
from numba import cuda, float32

from ._answer import Answer

# ---- 08.1 ReLU in LeNet


@cuda.jit
def rf_ok(x, y):
    """Correct forward."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] if x[i] > float32(0) else float32(0)


@cuda.jit
def rb_ok(dout, x, dx):
    """Correct backward (ReLU'(0) = 0)."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dout[i] if x[i] > float32(0) else float32(0)


@cuda.jit
def rf_stride(x, y):
    """Correct forward: grid-stride, max()."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = max(x[i], float32(0))


@cuda.jit
def rb_stride(dout, x, dx):
    """Correct backward: grid-stride, multiply by a float32 mask."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        m = float32(1) if x[i] > float32(0) else float32(0)
        dx[i] = dout[i] * m


@cuda.jit
def rb_ge(dout, x, dx):
    """Wrong: ReLU'(0) = 1 (x >= 0)."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dout[i] if x[i] >= float32(0) else float32(0)


@cuda.jit
def rb_dout_sign(dout, x, dx):
    """Wrong: masks by the sign of dout instead of x."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dout[i] if dout[i] > float32(0) else float32(0)


@cuda.jit
def rf_no_guard(x, y):
    """Wrong: forward without a bounds guard."""
    i = cuda.grid(1)
    y[i] = x[i] if x[i] > float32(0) else float32(0)


@cuda.jit
def rb_times_x(dout, x, dx):
    """Wrong: dx = dout * x for x > 0 (multiplies by the input)."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dout[i] * x[i] if x[i] > float32(0) else float32(0)


@cuda.jit
def rf_int_zero(x, y):
    """Correct in effect: a bare 0 next to a float32 (the hint's trap), but the compiler keeps this one in float32
    (checked: no .f64 in its PTX), so the values and the arithmetic are float32."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] if x[i] > 0 else 0


@cuda.jit
def rf_leaky(x, y):
    """Wrong: forward is a leaky ReLU (0.01 x for negatives)."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] if x[i] > float32(0) else float32(0.01) * x[i]


# ---- 08.2 feature shapes


def fs_ok(h, w):
    """Correct: the formulas."""
    h1, w1 = h - 4, w - 4
    h2, w2 = h1 // 2, w1 // 2
    h3, w3 = h2 - 4, w2 - 4
    h4, w4 = h3 // 2, w3 // 2
    return [(6, h1, w1), (6, h1, w1), (6, h2, w2), (16, h3, w3), (16, h3, w3), (16, h4, w4), (16 * h4 * w4,)]


def fs_loop(h, w):
    """Correct: a loop over layer descriptions."""
    shapes = []
    c = 3
    for kind, arg in [("conv", 6), ("relu", None), ("pool", None), ("conv", 16), ("relu", None), ("pool", None)]:
        if kind == "conv":
            c, h, w = arg, h - 5 + 1, w - 5 + 1
        elif kind == "pool":
            h, w = int(np.floor(h / 2)), int(np.floor(w / 2))
        shapes.append((c, h, w))
    shapes.append((c * h * w,))
    return shapes


def fs_hardcoded(h, w):
    """Wrong: LeNet's 32x32 shapes hard-coded."""
    return [(6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10), (16, 5, 5), (400,)]


def fs_ceil_pool(h, w):
    """Wrong: pooling rounds up."""
    h1, w1 = h - 4, w - 4
    h2, w2 = (h1 + 1) // 2, (w1 + 1) // 2
    h3, w3 = h2 - 4, w2 - 4
    h4, w4 = (h3 + 1) // 2, (w3 + 1) // 2
    return [(6, h1, w1), (6, h1, w1), (6, h2, w2), (16, h3, w3), (16, h3, w3), (16, h4, w4), (16 * h4 * w4,)]


def fs_conv_minus5(h, w):
    """Wrong: conv output H - k instead of H - k + 1."""
    h1, w1 = h - 5, w - 5
    h2, w2 = h1 // 2, w1 // 2
    h3, w3 = h2 - 5, w2 - 5
    h4, w4 = h3 // 2, w3 // 2
    return [(6, h1, w1), (6, h1, w1), (6, h2, w2), (16, h3, w3), (16, h3, w3), (16, h4, w4), (16 * h4 * w4,)]


def fs_swapped(h, w):
    """Wrong: height and width swapped."""
    return fs_ok(w, h)


def fs_flatten_no_channels(h, w):
    """Wrong: flatten forgets the channels (h4 * w4)."""
    s = fs_ok(h, w)
    return s[:-1] + [(s[5][1] * s[5][2],)]


def fs_flatten_int(h, w):
    """Wrong: flatten as a bare int instead of a 1-tuple."""
    s = fs_ok(h, w)
    return s[:-1] + [s[-1][0]]


# ---- 08.3 accuracy over batches


def acc_ok(logits_of, x, y, batch):
    """Correct: count, divide once."""
    correct = 0
    for s in range(0, len(x), batch):
        pred = np.argmax(logits_of(x[s:s + batch]), axis=1)
        correct += int((pred == y[s:s + batch]).sum())
    return correct / len(x)


def acc_concat(logits_of, x, y, batch):
    """Correct: collect predictions, mean at the end (np.array_split into ceil(n / batch) chunks)."""
    chunks = np.array_split(np.arange(len(x)), int(np.ceil(len(x) / batch)))
    preds = np.concatenate([np.asarray(logits_of(x[c[0]:c[-1] + 1])).argmax(axis=1) for c in chunks])
    return float(np.mean(preds == y))


def acc_mean_of_batches(logits_of, x, y, batch):
    """Wrong: mean of per-batch accuracies."""
    accs = []
    for s in range(0, len(x), batch):
        pred = np.argmax(logits_of(x[s:s + batch]), axis=1)
        accs.append((pred == y[s:s + batch]).mean())
    return float(np.mean(accs))


def acc_drop_last(logits_of, x, y, batch):
    """Wrong: drops the last partial batch."""
    correct = 0
    n = (len(x) // batch) * batch
    for s in range(0, n, batch):
        pred = np.argmax(logits_of(x[s:s + batch]), axis=1)
        correct += int((pred == y[s:s + batch]).sum())
    return correct / len(x)


def acc_all_at_once(logits_of, x, y, batch):
    """Wrong: ignores batch and calls logits_of on all images at once."""
    return float(np.mean(np.argmax(logits_of(x), axis=1) == y))


def acc_count(logits_of, x, y, batch):
    """Wrong: returns the count, not the fraction."""
    correct = 0
    for s in range(0, len(x), batch):
        correct += int((np.argmax(logits_of(x[s:s + batch]), axis=1) == y[s:s + batch]).sum())
    return correct


def acc_argmax_axis0(logits_of, x, y, batch):
    """Wrong: argmax over the batch axis."""
    correct = 0
    for s in range(0, len(x), batch):
        lo = logits_of(x[s:s + batch])
        pred = np.argmax(lo, axis=0)
        yy = y[s:s + batch]
        m = min(len(pred), len(yy))
        correct += int((pred[:m] == yy[:m]).sum())
    return correct / len(x)


def acc_divide_batches(logits_of, x, y, batch):
    """Wrong: divides by batch * number of batches (the last batch counted as full)."""
    correct, nb = 0, 0
    for s in range(0, len(x), batch):
        correct += int((np.argmax(logits_of(x[s:s + batch]), axis=1) == y[s:s + batch]).sum())
        nb += 1
    return correct / (nb * batch)


def acc_cached(logits_of, x, y, batch, _cache={}):
    """Wrong: caches the result per len(x) (a second, different test set of the same size gets the old answer)."""
    key = (len(x), batch)
    if key not in _cache:
        _cache[key] = acc_ok(logits_of, x, y, batch)
    return _cache[key]


ANSWERS = [
    Answer("08.1", "guard", "check_relu_in_lenet", (rf_ok, rb_ok), True),
    Answer("08.1", "grid-stride", "check_relu_in_lenet", (rf_stride, rb_stride), True),
    Answer("08.1", "derivative-1-at-0", "check_relu_in_lenet", (rf_ok, rb_ge), False),
    Answer("08.1", "sign-of-dout", "check_relu_in_lenet", (rf_ok, rb_dout_sign), False),
    Answer("08.1", "forward-no-guard", "check_relu_in_lenet", (rf_no_guard, rb_ok), False),
    Answer("08.1", "backward-times-x", "check_relu_in_lenet", (rf_ok, rb_times_x), False),
    Answer("08.1", "int-zero-literal", "check_relu_in_lenet", (rf_int_zero, rb_ok), True),
    Answer("08.1", "leaky-forward", "check_relu_in_lenet", (rf_leaky, rb_ok), False),
    Answer("08.2", "formulas", "check_feature_shapes", (fs_ok,), True),
    Answer("08.2", "loop", "check_feature_shapes", (fs_loop,), True),
    Answer("08.2", "hard-coded-32", "check_feature_shapes", (fs_hardcoded,), False),
    Answer("08.2", "ceil-pool", "check_feature_shapes", (fs_ceil_pool,), False),
    Answer("08.2", "conv-minus-k", "check_feature_shapes", (fs_conv_minus5,), False),
    Answer("08.2", "h-w-swapped", "check_feature_shapes", (fs_swapped,), False),
    Answer("08.2", "flatten-no-channels", "check_feature_shapes", (fs_flatten_no_channels,), False),
    Answer("08.2", "flatten-int", "check_feature_shapes", (fs_flatten_int,), False),
    Answer("08.3", "count", "check_accuracy", (acc_ok,), True),
    Answer("08.3", "concat-array-split", "check_accuracy", (acc_concat,), True),
    Answer("08.3", "mean-of-batches", "check_accuracy", (acc_mean_of_batches,), False),
    Answer("08.3", "drop-last", "check_accuracy", (acc_drop_last,), False),
    Answer("08.3", "all-at-once", "check_accuracy", (acc_all_at_once,), False),
    Answer("08.3", "count-not-fraction", "check_accuracy", (acc_count,), False),
    Answer("08.3", "argmax-axis0", "check_accuracy", (acc_argmax_axis0,), False),
    Answer("08.3", "divide-by-full-batches", "check_accuracy", (acc_divide_batches,), False),
]


ANSWERS.append(Answer("08.3", "cached-per-size", "check_accuracy", (acc_cached,), False))
