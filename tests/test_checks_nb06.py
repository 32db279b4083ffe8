"""Exercise checks of notebook 06: each passes correct answers (also written another way) and names wrong ones."""

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, needs_compiler
from numba import cuda, float32

from nbkit.checks import CheckFailed, check_avgpool, check_conv_weight_grad, check_maxpool, check_seed_conv_fixed
from nbkit.checks.nb06 import _maxpool_data, conv_weight_grad_reference, maxpool_first_max_reference, seed_conv_reference

# ------------------------------------------------------------------ 06.1 average pooling


@cuda.jit
def avg_forward(x, y):
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


@cuda.jit
def avg_forward_loops(x, y):  # alternative: loops over the window, divide at the end
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        s = float32(0)
        for p in range(2):
            for q in range(2):
                s += x[n, c, 2 * i + p, 2 * j + q]
        y[n, c, i, j] = s / float32(4)


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


@cuda.jit
def avg_forward_three_channels(x, y):  # wrong: C = 3 hard-coded (the statement's first shape)
    j, i, z = cuda.grid(3)
    n, c = z // 3, z % 3
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


@cuda.jit
def avg_forward_float64(x, y):  # wrong: bare 0.1 and 2.5 are float64 (the hint says float32 literals)
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = (s * 0.1) * 2.5  # (s * 0.25 alone is shrunk to a float32 multiply by LLVM: exact)


@cuda.jit
def avg_forward_n_below_C(x, y):  # wrong: the batch guard against y.shape[1] (mutant 06.1-m128)
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[1] and i < y.shape[2] and j < y.shape[3]:
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


@cuda.jit
def avg_forward_x_down_rows(x, y):  # wrong: i, j swapped; the statement fixes j, i, z (mutant 06.1-m136)
    i, j, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


def test_avgpool_mutants_fail():
    with pytest.raises(CheckFailed, match="forward y is wrong.*never written"):
        check_avgpool(avg_forward_n_below_C, avg_backward)
    with pytest.raises(CheckFailed, match="forward y is wrong.*never written"):
        check_avgpool(avg_forward_x_down_rows, avg_backward)


def test_avgpool_runs_other_shapes():
    with pytest.raises(CheckFailed, match="outside an array.*axis 1 with size 1"):
        check_avgpool(avg_forward_three_channels, avg_backward)


@needs_compiler
def test_avgpool_float64_literal_fails_the_ptx_proof():
    with pytest.raises(CheckFailed, match="float64 instruction"):
        check_avgpool(avg_forward_float64, avg_backward)


def test_avgpool_check(capsys):
    check_avgpool(avg_forward, avg_backward)
    check_avgpool(avg_forward_loops, avg_backward)
    assert capsys.readouterr().out.count("✓ average pooling") == 2
    with pytest.raises(CheckFailed, match="sum of each window"):
        check_avgpool(avg_forward_sum, avg_backward)
    with pytest.raises(CheckFailed, match="dy / 4"):
        check_avgpool(avg_forward, avg_backward_full)
    with pytest.raises(CheckFailed, match="dropped last row/column must get gradient 0"):
        check_avgpool(avg_forward, avg_backward_skips_edges)


# ------------------------------------------------------------------ 06.2 max-pool


def test_maxpool_reference_is_pytorchs_tie_rule():
    x = _maxpool_data()
    dy = np.random.default_rng(0).standard_normal((2, 3, 3, 4)).astype(np.float32)
    y, dx = maxpool_first_max_reference(x, dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.max_pool2d(xt, 2)
    (yt * torch.from_numpy(dy)).sum().backward()
    assert np.array_equal(y, yt.detach().numpy()) and np.array_equal(dx, xt.grad.numpy())


@cuda.jit
def mp_forward(x, y):
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        best = x[n, c, 2 * i, 2 * j]
        for t in range(1, 4):
            best = max(best, x[n, c, 2 * i + t // 2, 2 * j + t % 2])
        y[n, c, i, j] = best


@cuda.jit
def mp_forward_from_zero(x, y):
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        best = float32(0)
        for t in range(4):
            best = max(best, x[n, c, 2 * i + t // 2, 2 * j + t % 2])
        y[n, c, i, j] = best


@cuda.jit
def mp_backward(x, dy, dx):
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            best = x[n, c, 2 * i, 2 * j]
            k = 0
            for t in range(1, 4):
                v = x[n, c, 2 * i + t // 2, 2 * j + t % 2]
                if v > best:
                    best = v
                    k = t
            if k == (h % 2) * 2 + w % 2:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_backward_no_earlier_tie(x, dy, dx):  # alternative: "I am the max, and no earlier element equals me"
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        i, j = h // 2, w // 2
        dx[n, c, h, w] = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            me = (h % 2) * 2 + w % 2
            v = x[n, c, h, w]
            wins = True
            for t in range(4):
                u = x[n, c, 2 * i + t // 2, 2 * j + t % 2]
                if (t < me and u >= v) or (t > me and u > v):
                    wins = False
            if wins:
                dx[n, c, h, w] = dy[n, c, i, j]


@cuda.jit
def mp_backward_every_tie(x, dy, dx):
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            best = x[n, c, 2 * i, 2 * j]
            for t in range(1, 4):
                best = max(best, x[n, c, 2 * i + t // 2, 2 * j + t % 2])
            if x[n, c, h, w] == best:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_backward_last_tie(x, dy, dx):
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            best = x[n, c, 2 * i, 2 * j]
            k = 0
            for t in range(1, 4):
                v = x[n, c, 2 * i + t // 2, 2 * j + t % 2]
                if v >= best:
                    best = v
                    k = t
            if k == (h % 2) * 2 + w % 2:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_backward_wrong_element(x, dy, dx):  # the winner's position decoded as (t % 2, t // 2): transposed
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            best = x[n, c, 2 * i, 2 * j]
            k = 0
            for t in range(1, 4):
                v = x[n, c, 2 * i + t // 2, 2 * j + t % 2]
                if v > best:
                    best = v
                    k = t
            if k == (w % 2) * 2 + h % 2:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_forward_fixed_size(x, y):  # wrong: the first shape's output size (3 x 4) hard-coded
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < 3 and j < 4:
        best = x[n, c, 2 * i, 2 * j]
        for t in range(1, 4):
            best = max(best, x[n, c, 2 * i + t // 2, 2 * j + t % 2])
        y[n, c, i, j] = best


def test_maxpool_runs_other_shapes():
    with pytest.raises(CheckFailed, match="outside an array"):
        check_maxpool(mp_forward_fixed_size, mp_backward)


def test_maxpool_check(capsys):
    check_maxpool(mp_forward, mp_backward)
    check_maxpool(mp_forward, mp_backward_no_earlier_tie)
    assert capsys.readouterr().out.count("✓ max-pool forward and backward are correct") == 2
    with pytest.raises(CheckFailed, match="maximum starts at 0"):
        check_maxpool(mp_forward_from_zero, mp_backward)
    with pytest.raises(CheckFailed, match="every maximum gets the gradient"):
        check_maxpool(mp_forward, mp_backward_every_tie)
    with pytest.raises(CheckFailed, match="the LAST maximum gets the gradient"):
        check_maxpool(mp_forward, mp_backward_last_tie)
    with pytest.raises(CheckFailed, match="not the maximum of its window"):
        check_maxpool(mp_forward, mp_backward_wrong_element)


# ------------------------------------------------------------------ 06.3 conv2d weight gradient


def test_weight_grad_reference_matches_torch():
    r = np.random.default_rng(1)
    x = r.standard_normal((2, 3, 9, 13))
    w = r.standard_normal((4, 3, 3, 5))
    dy = r.standard_normal((2, 4, 7, 9))
    wt = torch.tensor(w, requires_grad=True)
    (F.conv2d(torch.from_numpy(x), wt) * torch.from_numpy(dy)).sum().backward()
    assert np.allclose(conv_weight_grad_reference(dy, x, 3, 5), wt.grad.numpy(), rtol=1e-12, atol=1e-12)


@cuda.jit
def wgrad(dy, x, dw):
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for n in range(x.shape[0]):
            for y in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, y, xx] * x[n, c, y + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_other_order(dy, x, dw):  # alternative: other loop order, other split of z, bounds from x
    j, i, z = cuda.grid(3)
    F = dw.shape[0]
    c, f = z // F, z % F
    if c < dw.shape[1] and i < dw.shape[2] and j < dw.shape[3]:
        OH = x.shape[2] - dw.shape[2] + 1
        OW = x.shape[3] - dw.shape[3] + 1
        acc = float32(0)
        for xx in range(OW):
            for y in range(OH):
                for n in range(x.shape[0]):
                    acc += x[n, c, y + i, xx + j] * dy[n, f, y, xx]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_swapped(dy, x, dw):
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for n in range(x.shape[0]):
            for y in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, y, xx] * x[n, c, y + j, xx + i]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_one_image(dy, x, dw):
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for y in range(dy.shape[2]):
            for xx in range(dy.shape[3]):
                acc += dy[0, f, y, xx] * x[0, c, y + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_short_range(dy, x, dw):
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for n in range(x.shape[0]):
            for y in range(dy.shape[2] - 1):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, y, xx] * x[n, c, y + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_long_range(dy, x, dw):
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for n in range(x.shape[0]):
            for y in range(dy.shape[2] + 1):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, y, xx] * x[n, c, y + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_split_swapped(dy, x, dw):  # f, c = z % C, z // C: c reaches C (no guard on it)
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z % C, z // C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for n in range(x.shape[0]):
            for y in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, y, xx] * x[n, c, y + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_batch_over_filters(dy, x, dw):  # the batch loop over dy.shape[1] (F = 4) instead of N = 2
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for n in range(dy.shape[1]):
            for y in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, y, xx] * x[n, c, y + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_batch_of_two(dy, x, dw):  # wrong: the first shape's batch N = 2 hard-coded
    j, i, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and i < dw.shape[2] and j < dw.shape[3]:
        acc = float32(0)
        for n in range(2):
            if n < x.shape[0]:
                for y in range(dy.shape[2]):
                    for xx in range(dy.shape[3]):
                        acc += dy[n, f, y, xx] * x[n, c, y + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def wgrad_axes_swapped(dy, x, dw):  # wrong: the kernel row p from the grid's .x axis, the column q from .y
    p, q, z = cuda.grid(3)
    C = dw.shape[1]
    f, c = z // C, z % C
    if f < dw.shape[0] and p < dw.shape[2] and q < dw.shape[3]:
        acc = float32(0)
        for n in range(x.shape[0]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    acc += dy[n, f, i, j] * x[n, c, i + p, j + q]
        dw[f, c, p, q] = acc


def test_conv_weight_grad_speaks_the_notebooks_notation():
    """Issue 19: output position (i, j), kernel offset (p, q), as in notebook 06 sections 1-2 and the statement."""
    with pytest.raises(CheckFailed, match=r"p and q come from the wrong axes.*q, p, z = cuda.grid\(3\)"):
        check_conv_weight_grad(wgrad_axes_swapped)
    with pytest.raises(CheckFailed, match=r"last output row is missing from the sum: i runs over range\(OH\)"):
        check_conv_weight_grad(wgrad_short_range)


def test_conv_weight_grad_runs_other_shapes():
    with pytest.raises(CheckFailed, match="dw is wrong"):
        check_conv_weight_grad(wgrad_batch_of_two)


def test_conv_weight_grad_out_of_bounds_axis_names_the_cause():
    with pytest.raises(CheckFailed, match=r"axis 1 with size 3.*f, c = z // C, z % C") as e:
        check_conv_weight_grad(wgrad_split_swapped)
    assert "output positions" not in str(e.value)
    with pytest.raises(CheckFailed, match=r"axis 0 with size 2.*range\(x.shape\[0\]\)") as e:
        check_conv_weight_grad(wgrad_batch_over_filters)
    assert "output positions" not in str(e.value) and "swapped" not in str(e.value)


def test_conv_weight_grad_check(capsys):
    check_conv_weight_grad(wgrad)
    check_conv_weight_grad(wgrad_other_order)
    assert capsys.readouterr().out.count("✓ dw is correct") == 2
    with pytest.raises(CheckFailed, match="p and q are swapped in the read of x"):
        check_conv_weight_grad(wgrad_swapped)
    with pytest.raises(CheckFailed, match="only image 0 is summed"):
        check_conv_weight_grad(wgrad_one_image)
    with pytest.raises(CheckFailed, match="last output row is missing"):
        check_conv_weight_grad(wgrad_short_range)
    with pytest.raises(CheckFailed, match="loop over the output positions runs too far"):
        check_conv_weight_grad(wgrad_long_range)


def test_notebook_06_gives_each_letter_one_meaning():
    """Issue 19: w is the weights only (the input pixel is row, col, also in the shown pool kernel), and 06.3's
    statement and hint use sections 1-2's letters: output position (i, j), kernel offset (p, q), as its check does."""
    cells = nbformat.read(ROOT / "notebooks" / "06_conv_pool.ipynb", as_version=4).cells
    text = "\n".join(c.source for c in cells) + (ROOT / "nbkit" / "kernels" / "pool.py").read_text()
    assert "w, h, z = cuda.grid(3)" not in text and "(h, w)" not in text.replace("not $(h, w)$", "")
    statement = next(c.source for c in cells if c.source.startswith("## Exercise 06.3"))
    assert r"\partial w_{fcpq}" in statement and r"\delta_{nfij}\, x_{n,c,i+p,j+q}" in statement
    assert "q, p, z = cuda.grid(3)" in statement and "x[n, c, i + p, j + q]" in statement


# ------------------------------------------------------------------ 06.4 the seed kernel, fixed


def test_seed_reference_matches_torch():
    r = np.random.default_rng(2)
    inp, k = r.standard_normal(3 * 9 * 11), r.standard_normal(27)
    t = F.conv2d(torch.from_numpy(inp.reshape(1, 3, 9, 11)), torch.from_numpy(k.reshape(1, 3, 3, 3)), padding=1)
    assert np.allclose(seed_conv_reference(inp, k, 0.5, 9, 11, 3), t.numpy().ravel() + 0.5)


@cuda.jit
def seed_transcribed(output, input, weights, biases, width, height, depth):  # noqa: A002 - the article's names
    idx = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    row = idx // width
    col = idx % width
    s = float32(0.0)
    for d in range(depth):
        for i in range(3):
            for j in range(3):
                x = i - 1 + row
                y = j - 1 + col
                if x >= 0 and x < height and y >= 0 and y < width:
                    s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
    s += biases[row * width + col]
    output[idx] = s


@cuda.jit
def seed_fixed(output, input, weights, biases, width, height, depth):  # noqa: A002
    col, row = cuda.grid(2)
    if row < height and col < width:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        output[row * width + col] = s + biases[0]


@cuda.jit
def seed_fixed_gridstride(output, input, weights, biases, width, height, depth):  # noqa: A002
    # alternative: a flat grid-stride loop over the pixels, clamped loop bounds instead of an if
    start = cuda.grid(2)[1] * cuda.gridsize(2)[0] + cuda.grid(2)[0]
    step = cuda.gridsize(2)[0] * cuda.gridsize(2)[1]
    for idx in range(start, width * height, step):
        row, col = idx // width, idx % width
        s = biases[0]
        for d in range(depth):
            for x in range(max(row - 1, 0), min(row + 2, height)):
                for y in range(max(col - 1, 0), min(col + 2, width)):
                    s += input[(d * height + x) * width + y] * weights[d * 9 + (x - row + 1) * 3 + (y - col + 1)]
        output[idx] = s


@cuda.jit
def seed_fixed_no_guard(output, input, weights, biases, width, height, depth):  # noqa: A002
    col, row = cuda.grid(2)
    s = float32(0.0)
    for d in range(depth):
        for i in range(3):
            for j in range(3):
                x = i - 1 + row
                y = j - 1 + col
                if x >= 0 and x < height and y >= 0 and y < width:
                    s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
    output[row * width + col] = s + biases[0]


@cuda.jit
def seed_fixed_bias_per_pixel(output, input, weights, biases, width, height, depth):  # noqa: A002
    col, row = cuda.grid(2)
    if row < height and col < width:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        output[row * width + col] = s + biases[row * width + col]


@cuda.jit
def seed_fixed_x_down_rows(output, input, weights, biases, width, height, depth):  # noqa: A002
    row, col = cuda.grid(2)  # wrong: x runs down the rows; the statement launches x along the columns
    if row < height and col < width:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        output[row * width + col] = s + biases[0]


def _seed_with(width=None, height=None, depth=None):
    """The fixed seed kernel with one of its size parameters replaced by the 9 x 11 x 3 image's (mutants 06.4-m55..57)."""
    W, H, D = (str(v) if v else name for v, name in ((width, "width"), (height, "height"), (depth, "depth")))
    source = f"""
def k(output, input, weights, biases, width, height, depth):
    col, row = cuda.grid(2)
    if row < {H} and col < {W}:
        s = float32(0.0)
        for d in range({D}):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < {H} and y >= 0 and y < {W}:
                        s += input[d * {W} * {H} + x * {W} + y] * weights[d * 9 + i * 3 + j]
        output[row * {W} + col] = s + biases[0]
"""
    namespace = {"cuda": cuda, "float32": float32}
    exec(source, namespace)  # noqa: S102 - a test-made kernel variant
    return cuda.jit(namespace["k"])


@pytest.mark.parametrize("fixed", [{"width": 11}, {"height": 9}, {"depth": 3}])
def test_seed_conv_hard_coded_sizes_fail(fixed):
    with pytest.raises(CheckFailed):
        check_seed_conv_fixed(_seed_with(**fixed))


def test_seed_conv_x_down_the_rows_fails_on_a_non_square_grid():
    """On the square 2 x 2 grid of the 9 x 11 image this passes; the 5 x 21 image's grid is 3 x 1 blocks."""
    with pytest.raises(CheckFailed, match="pixels were never written"):
        check_seed_conv_fixed(seed_fixed_x_down_rows)


def test_seed_conv_fixed_check(capsys):
    check_seed_conv_fixed(seed_fixed)
    check_seed_conv_fixed(seed_fixed_gridstride)
    assert capsys.readouterr().out.count("✓ the fixed seed kernel computes") == 2
    with pytest.raises(CheckFailed, match=r"\(1\) only output\[0\] ... output\[15\] are written.*\(2\) the bias is "
                                          r"taken per pixel"):
        check_seed_conv_fixed(seed_transcribed)
    with pytest.raises(CheckFailed, match="seed's missing bounds guard"):
        check_seed_conv_fixed(seed_fixed_no_guard)
    with pytest.raises(CheckFailed, match=r"\(1\) the bias is taken per pixel"):
        check_seed_conv_fixed(seed_fixed_bias_per_pixel)
