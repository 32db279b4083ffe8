"""Notebook 08's exercise checks: each accepts a correct answer and a correct alternative, rejects wrong ones."""

import numpy as np
import pytest
from conftest import needs_compiler
from numba import cuda, float32

from nbkit.checks.nb08 import CheckFailed, check_accuracy, check_feature_shapes, check_relu_in_lenet


@cuda.jit
def relu_fwd_plain(x, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = max(x[i], float32(0))


@cuda.jit
def relu_bwd(dout, x, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > float32(0) else float32(0)


@cuda.jit
def relu_fwd_grid_stride(x, y):  # another valid thread mapping
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = x[i] if x[i] > float32(0) else float32(0)


@cuda.jit
def relu_bwd_grid_stride(dout, x, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = dout[i] * (x[i] > float32(0))


@cuda.jit
def relu_bwd_at_zero(dout, x, dx):  # wrong: ReLU'(0) = 1
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] >= float32(0) else float32(0)


@cuda.jit
def leaky_fwd(x, y):  # wrong: leaky ReLU
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[i] if x[i] > 0 else x[i] * float32(0.01)


@cuda.jit
def relu_fwd_first_thousand(x, y):  # wrong: elements past 1000 are never written (LeNet's activations are larger)
    i = cuda.grid(1)
    if i < y.size and i < 1000:
        y[i] = max(x[i], float32(0))


@cuda.jit
def relu_fwd_reads_past_end_when_large(x, y):  # wrong: reads one element too far once x is large
    i = cuda.grid(1)
    if i < y.size:
        y[i] = max(x[i + (1 if x.size > 1000 else 0)], float32(0))


def test_relu_check_accepts_a_kernel_per_element(capsys):
    check_relu_in_lenet(relu_fwd_plain, relu_bwd)
    assert "✓" in capsys.readouterr().out


def test_relu_check_accepts_grid_stride_kernels(capsys):
    check_relu_in_lenet(relu_fwd_grid_stride, relu_bwd_grid_stride)
    assert "✓" in capsys.readouterr().out


def test_relu_check_rejects_relu_prime_of_zero_one():
    with pytest.raises(CheckFailed, match="x > 0, not x >= 0"):
        check_relu_in_lenet(relu_fwd_plain, relu_bwd_at_zero)


def test_relu_check_rejects_leaky_relu():
    with pytest.raises(CheckFailed, match=r"relu_forward\(x\) is wrong at .*the first is relu_forward\(x\)\[0\]"):
        check_relu_in_lenet(leaky_fwd, relu_bwd)


def test_relu_unwritten_elements_spoil_the_lenet_loss():
    """Outputs start as NaN in LeNet: elements never written cannot keep a right value by chance."""
    with pytest.raises(CheckFailed, match="loss nan.*never written"):
        check_relu_in_lenet(relu_fwd_first_thousand, relu_bwd)


def test_relu_out_of_bounds_inside_lenet_is_a_verdict():
    with pytest.raises(CheckFailed, match="inside LeNet a thread of your ReLU kernel accessed an element outside"):
        check_relu_in_lenet(relu_fwd_reads_past_end_when_large, relu_bwd)


@cuda.jit
def relu_fwd_int_zero(x, y):  # right values, but max(float32, int) is computed in float64
    i = cuda.grid(1)
    if i < y.size:
        y[i] = max(x[i], 0)


@needs_compiler
def test_relu_check_rejects_float64_arithmetic():
    with pytest.raises(CheckFailed, match=r"the PTX of your kernel contains \d+ float64 instruction"):
        check_relu_in_lenet(relu_fwd_int_zero, relu_bwd)


def shapes_formula(h, w):
    conv = lambda c, h, w: (c, h - 4, w - 4)  # noqa: E731
    pool = lambda c, h, w: (c, h // 2, w // 2)  # noqa: E731
    a = conv(6, h, w)
    b = pool(*a)
    c = conv(16, b[1], b[2])
    d = pool(*c)
    return [a, a, b, c, c, d, (d[0] * d[1] * d[2],)]


def shapes_loop(h, w):  # an alternative: lists instead of tuples, computed in a loop
    out, c = [], 3
    for kind, arg in (("conv", 6), ("relu", None), ("pool", None), ("conv", 16), ("relu", None), ("pool", None)):
        if kind == "conv":
            c, h, w = arg, h - 5 + 1, w - 5 + 1
        elif kind == "pool":
            h, w = int(np.floor(h / 2)), int(np.floor(w / 2))
        out.append([c, h, w])
    return out + [[c * h * w]]


def shapes_off_by_one(h, w):
    return [(s[0], s[1] - 1, s[2] - 1) if i == 0 else s for i, s in enumerate(shapes_formula(h, w))]


def shapes_ceil_pool(h, w):
    out, c = [], 3
    for kind, arg in (("conv", 6), ("relu", None), ("pool", None), ("conv", 16), ("relu", None), ("pool", None)):
        if kind == "conv":
            c, h, w = arg, h - 4, w - 4
        elif kind == "pool":
            h, w = -(-h // 2), -(-w // 2)
        out.append((c, h, w))
    return out + [(c * h * w,)]


def shapes_round_pool(h, w):  # wrong: round(h / 2) equals h // 2 whenever h / 2 = x.5 with x even
    out, c = [], 3
    for kind in ("conv6", "relu", "pool", "conv16", "relu", "pool"):
        if kind.startswith("conv"):
            c, h, w = int(kind[4:]), h - 4, w - 4
        elif kind == "pool":
            h, w = round(h / 2), round(w / 2)
        out.append((c, h, w))
    return out + [(c * h * w,)]


@pytest.mark.parametrize("answer", [shapes_formula, shapes_loop])
def test_shapes_check_accepts(answer, capsys):
    check_feature_shapes(answer)
    assert "✓" in capsys.readouterr().out


def test_shapes_check_rejects_an_off_by_one_conv():
    with pytest.raises(CheckFailed, match=r"layer 0 \(conv 3->6 5x5\): you have shape \(6, 27, 27\).*H - 5 \+ 1"):
        check_feature_shapes(shapes_off_by_one)


def test_shapes_check_rejects_ceil_pooling():
    with pytest.raises(CheckFailed, match=r"37x30 image, layer 2 \(max-pool 2x2\).*33x26 halved and rounded "
                                          r"as math.ceil rounds them.*H // 2"):
        check_feature_shapes(shapes_ceil_pool)


def test_shapes_check_flatten_as_an_int_is_a_verdict():
    """Probe 08.2 E: a bare int for flatten crashed the check with a TypeError."""
    with pytest.raises(CheckFailed, match=r"layer 6 \(flatten\): you have 400 \(type int\); every shape is a tuple"):
        check_feature_shapes(lambda h, w: shapes_formula(h, w)[:-1] + [shapes_formula(h, w)[-1][0]])


def test_shapes_check_rejects_round():
    with pytest.raises(CheckFailed, match=r"35x27 image, layer 2 \(max-pool 2x2\).*31x23 halved and rounded "
                                          r"as math.ceil and round\(\) round them"):
        check_feature_shapes(shapes_round_pool)


def accuracy_counts(logits_of, x, y, batch):
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((logits_of(x[i:i + batch]).argmax(axis=1) == y[i:i + batch]).sum())
    return correct / len(x)


def accuracy_concat(logits_of, x, y, batch):
    preds = np.concatenate([np.argmax(logits_of(x[i:i + batch]), axis=1) for i in range(0, len(x), batch)])
    return float(np.mean(preds == y))


def accuracy_batch_means(logits_of, x, y, batch):
    return float(np.mean([(logits_of(x[i:i + batch]).argmax(1) == y[i:i + batch]).mean()
                          for i in range(0, len(x), batch)]))


def accuracy_reversed(logits_of, x, y, batch):  # correct too: batches from the end, each slice reversed
    correct = 0
    for i in reversed(range(0, len(x), batch)):
        correct += int((logits_of(x[i:i + batch][::-1]).argmax(axis=1) == y[i:i + batch][::-1]).sum())
    return correct / len(x)


def accuracy_full_batches_denominator(logits_of, x, y, batch):  # wrong: divides by batch x number of batches
    correct, batches = 0, 0
    for i in range(0, len(x), batch):
        correct += int((logits_of(x[i:i + batch]).argmax(axis=1) == y[i:i + batch]).sum())
        batches += 1
    return correct / (batch * batches)


def accuracy_skips_last_image(logits_of, x, y, batch):  # wrong: range(0, len(x) - 1, batch) (mutant 08.3-m12)
    correct = 0
    for i in range(0, len(x) - 1, batch):
        correct += int((logits_of(x[i:i + batch]).argmax(axis=1) == y[i:i + batch]).sum())
    return correct / len(x)


def accuracy_full_batches_only(logits_of, x, y, batch):  # wrong: divides by the images in full batches
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((logits_of(x[i:i + batch]).argmax(axis=1) == y[i:i + batch]).sum())
    return correct / (len(x) // batch * batch)


def test_accuracy_full_batches_denominator_is_named():
    with pytest.raises(CheckFailed, match="divided the number of correct predictions by the images in full batches, "
                                          "100, not by 103") as e:
        check_accuracy(accuracy_full_batches_only)
    assert "averaged" not in str(e.value)


def test_accuracy_check_rejects_a_range_one_short():
    with pytest.raises(CheckFailed, match="logits_of never saw image"):
        check_accuracy(accuracy_skips_last_image)


def accuracy_drops_last(logits_of, x, y, batch):
    n = len(x) // batch * batch
    return accuracy_counts(logits_of, x[:n], y[:n], batch)


@pytest.mark.parametrize("answer", [accuracy_counts, accuracy_concat, accuracy_reversed])
def test_accuracy_check_accepts(answer, capsys):
    check_accuracy(answer)
    assert "✓" in capsys.readouterr().out


def test_accuracy_check_rejects_the_mean_of_batch_accuracies():
    with pytest.raises(CheckFailed, match="averaged the 5 batch accuracies"):
        check_accuracy(accuracy_batch_means)


def test_accuracy_wrong_denominator_is_not_called_batch_means():
    with pytest.raises(CheckFailed, match=r"divided the number of correct predictions by batch × number of batches = "
                                          r"125") as e:
        check_accuracy(accuracy_full_batches_denominator)
    assert "averaged" not in str(e.value)


def test_accuracy_check_rejects_a_dropped_last_batch():
    with pytest.raises(CheckFailed, match="the last, shorter batch was dropped"):
        check_accuracy(accuracy_drops_last)


def test_unsolved_stubs_say_not_solved(capsys):
    def stub(*args):
        raise NotImplementedError()

    check_feature_shapes(stub)
    check_accuracy(stub)
    assert capsys.readouterr().out.count("not solved yet") == 2
