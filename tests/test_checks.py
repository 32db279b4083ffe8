"""Every exercise check passes a correct answer and fails wrong ones with a useful message."""

import pytest
from numba import cuda, float32

from nbkit.checks import CheckFailed, check_leaky_relu, check_row_sum, check_transposed_matmul

# ------------------------------------------------------------------ notebooks 03-05


@cuda.jit
def row_sum_right(M, out):
    r = cuda.grid(1)
    if r < out.size:
        acc = float32(0)
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def row_sum_columns(M, out):
    r = cuda.grid(1)
    if r < M.shape[1] and r < out.size:
        acc = float32(0)
        for i in range(M.shape[0]):
            acc += M[i, r]
        out[r] = acc


@cuda.jit
def row_sum_unguarded(M, out):
    r = cuda.grid(1)
    acc = float32(0)
    for j in range(M.shape[1]):
        acc += M[r, j]
    out[r] = acc


def test_row_sum_check(capsys):
    check_row_sum(row_sum_right)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match="sum of column i"):
        check_row_sum(row_sum_columns)
    with pytest.raises(CheckFailed, match="outside an array|past the end"):
        check_row_sum(row_sum_unguarded)


@cuda.jit
def at_b_right(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, col]
        C[row, col] = acc


@cuda.jit
def at_b_wrong_index(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[0]):
            acc += A[k, row] * B[k, row % B.shape[1]]
        C[row, col] = acc


@cuda.jit
def at_b_writes_nothing(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[1] and col < C.shape[0] and row < 0:
        C[row, col] = 0


def test_transposed_matmul_check(capsys):
    check_transposed_matmul(at_b_right)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match="C is wrong"):
        check_transposed_matmul(at_b_wrong_index)
    with pytest.raises(CheckFailed, match="never written"):
        check_transposed_matmul(at_b_writes_nothing)


@cuda.jit
def leaky_forward(x, y, slope):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[i] if x[i] > 0 else slope * x[i]


@cuda.jit
def leaky_backward(dout, x, dx, slope):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > 0 else slope * dout[i]


@cuda.jit
def relu_as_leaky_forward(x, y, slope):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[i] if x[i] > 0 else float32(0)


@cuda.jit
def leaky_backward_no_slope(dout, x, dx, slope):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > 0 else float32(0)


@cuda.jit
def leaky_backward_wrong_at_zero(dout, x, dx, slope):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] >= 0 else slope * dout[i]


def test_leaky_relu_check(capsys):
    check_leaky_relu(leaky_forward, leaky_backward)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match="not 0"):
        check_leaky_relu(relu_as_leaky_forward, leaky_backward)
    with pytest.raises(CheckFailed, match="passes no gradient"):
        check_leaky_relu(leaky_forward, leaky_backward_no_slope)
    with pytest.raises(CheckFailed, match="at x = 0 is wrong"):
        check_leaky_relu(leaky_forward, leaky_backward_wrong_at_zero)


# ------------------------------------------------------------------ notebooks 06 and 07

from nbkit.checks import check_avgpool  # noqa: E402


@cuda.jit
def avg_forward(x, y):
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


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


def test_avgpool_check(capsys):
    check_avgpool(avg_forward, avg_backward)
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match="sum of each window"):
        check_avgpool(avg_forward_sum, avg_backward)
    with pytest.raises(CheckFailed, match="dy / 4"):
        check_avgpool(avg_forward, avg_backward_full)
    with pytest.raises(CheckFailed, match="dropped last row/column must get gradient 0"):
        check_avgpool(avg_forward, avg_backward_skips_edges)
