"""Exercise checks of notebook 05: each passes correct answers (also written another way) and names wrong ones."""

import inspect
import math
import re

import pytest
from conftest import FLOAT32_NOTE, needs_compiler
from numba import cuda, float32

from nbkit.checks import CheckFailed, check_block_sum, check_leaky_relu, check_softmax_xent_grad, check_warp_reduce
from nbkit.checks.nb05 import BLOCK_SUM

# ------------------------------------------------------------------ 05.1 leaky ReLU


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
def leaky_forward_gridstride(x, y, slope):  # alternative: grid-stride loop, max/min form
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = max(x[i], float32(0)) + slope * min(x[i], float32(0))


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


@cuda.jit
def leaky_backward_float64(dout, x, dx, slope):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > 0 else slope * dout[i] * 0.5 * 2  # 0.5: a float64 literal


@cuda.jit
def leaky_forward_fixed_slope(x, y, slope):  # wrong: ignores its slope parameter (right only for slope 0.01)
    i = cuda.grid(1)
    if i < y.size:
        y[i] = x[i] if x[i] > 0 else float32(0.01) * x[i]


@cuda.jit
def leaky_backward_fixed_slope(dout, x, dx, slope):  # wrong: ignores its slope parameter (mutant 05.1-m24)
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > 0 else float32(0.01) * dout[i]


def test_leaky_relu_uses_the_slope_parameter():
    """Mutants 05.1-m23/m24: slope 0.01 written into the kernel passed while the check used only 0.01."""
    with pytest.raises(CheckFailed, match="forward y is wrong"):
        check_leaky_relu(leaky_forward_fixed_slope, leaky_backward)
    with pytest.raises(CheckFailed, match="backward dx is wrong"):
        check_leaky_relu(leaky_forward, leaky_backward_fixed_slope)


def test_leaky_relu_check(capsys):
    check_leaky_relu(leaky_forward, leaky_backward)
    check_leaky_relu(leaky_forward_gridstride, leaky_backward)
    out = capsys.readouterr().out
    assert out.count("✓ leaky ReLU forward and backward are correct") == 2
    with pytest.raises(CheckFailed, match="not 0"):
        check_leaky_relu(relu_as_leaky_forward, leaky_backward)
    with pytest.raises(CheckFailed, match="passes no gradient"):
        check_leaky_relu(leaky_forward, leaky_backward_no_slope)
    with pytest.raises(CheckFailed, match="at x = 0 is wrong"):
        check_leaky_relu(leaky_forward, leaky_backward_wrong_at_zero)


@needs_compiler
def test_leaky_relu_check_float32():
    with pytest.raises(CheckFailed, match="float64 instruction"):
        check_leaky_relu(leaky_forward, leaky_backward_float64)


# ------------------------------------------------------------------ 05.2 softmax + cross-entropy backward


@cuda.jit
def xent_grad(logits, labels, dlogits):
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        inv_n = float32(1) / float32(logits.shape[0])
        for j in range(C):
            onehot = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (math.exp(logits[n, j] - m) / s - onehot) * inv_n


@cuda.jit
def xent_grad_gridstride_logsumexp(logits, labels, dlogits):  # alternative: grid-stride, exp(z - logsumexp)
    N, C = logits.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        m = float32(-math.inf)
        for j in range(C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        lse = m + math.log(s)
        for j in range(C):
            dlogits[n, j] = math.exp(logits[n, j] - lse) / float32(N)
        dlogits[n, labels[n]] -= float32(1) / float32(N)


@cuda.jit
def xent_grad_no_mean(logits, labels, dlogits):
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        for j in range(C):
            onehot = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = math.exp(logits[n, j] - m) / s - onehot


@cuda.jit
def xent_grad_unstable(logits, labels, dlogits):
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j])
        for j in range(C):
            onehot = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (math.exp(logits[n, j]) / s - onehot) / float32(logits.shape[0])


@cuda.jit
def xent_grad_label_of_column(logits, labels, dlogits):
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        for j in range(C):
            onehot = float32(1) if j == labels[j] else float32(0)
            dlogits[n, j] = (math.exp(logits[n, j] - m) / s - onehot) / float32(logits.shape[0])


@cuda.jit
def xent_grad_float64(logits, labels, dlogits):
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        for j in range(C):
            onehot = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (math.exp(logits[n, j] - m) / s - onehot) / logits.shape[0]  # float32 / int64: float64


@cuda.jit
def xent_grad_max_from_zero(logits, labels, dlogits):  # a beginner's maximum: m = float32(0), then max(m, ...)
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = float32(0)
        for j in range(C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        for j in range(C):
            onehot = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (math.exp(logits[n, j] - m) / s - onehot) / float32(logits.shape[0])


@cuda.jit
def xent_grad_max_from_minus_inf(logits, labels, dlogits):  # alternative: the maximum starts at -inf, early return
    n = cuda.grid(1)
    if n >= logits.shape[0]:
        return
    C = logits.shape[1]
    m = float32(-math.inf)
    for j in range(C):
        if logits[n, j] > m:
            m = logits[n, j]
    s = float32(0)
    for j in range(C):
        s += math.exp(logits[n, j] - m)
    for j in range(C):
        g = math.exp(logits[n, j] - m) / s
        if j == labels[n]:
            g = g - float32(1)
        dlogits[n, j] = g / float32(logits.shape[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 0 / 0 in the simulator, on purpose
def test_softmax_xent_grad_max_starting_at_zero(capsys):
    check_softmax_xent_grad(xent_grad_max_from_minus_inf)
    assert "✓ dlogits = (softmax - onehot) / N is correct" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=r"a maximum that starts at 0 gives.*Start it at logits\[n, 0\] \(or -inf\)") as e:
        check_softmax_xent_grad(xent_grad_max_from_zero)
    assert "Subtract the row's maximum" not in str(e.value)  # the learner did subtract it


@cuda.jit
def xent_grad_max_from_zero_no_mean(logits, labels, dlogits):  # two mistakes: the max from 0 AND no 1/N
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = float32(0)
        for j in range(C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        for j in range(C):
            onehot = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = math.exp(logits[n, j] - m) / s - onehot


@cuda.jit
def xent_grad_sharpened(logits, labels, dlogits):  # wrong: softmax(2z), a distribution but not softmax(z)
    n = cuda.grid(1)
    if n < logits.shape[0]:
        C = logits.shape[1]
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(float32(2) * (logits[n, j] - m))
        inv_n = float32(1) / float32(logits.shape[0])
        for j in range(C):
            onehot = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (math.exp(float32(2) * (logits[n, j] - m)) / s - onehot) * inv_n


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 0 / 0 in the simulator, on purpose
def test_softmax_xent_grad_causes_need_their_output():
    """Row 2 NaN with every other row wrong too is not 'the maximum starts at 0' alone."""
    with pytest.raises(CheckFailed) as e:
        check_softmax_xent_grad(xent_grad_max_from_zero_no_mean)
    assert "maximum starts at 0" not in str(e.value) and "-1000" not in str(e.value)
    with pytest.raises(CheckFailed, match="sum to 1 in every row but are not softmax"):
        check_softmax_xent_grad(xent_grad_sharpened)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the unstable answer overflows in the simulator, on purpose
def test_softmax_xent_grad_check(capsys):
    check_softmax_xent_grad(xent_grad)
    check_softmax_xent_grad(xent_grad_gridstride_logsumexp)
    assert capsys.readouterr().out.count("✓ dlogits = (softmax - onehot) / N is correct") == 2
    with pytest.raises(CheckFailed, match="the 1/N is missing"):
        check_softmax_xent_grad(xent_grad_no_mean)
    with pytest.raises(CheckFailed, match="not finite in row.*Subtract the row's maximum"):
        check_softmax_xent_grad(xent_grad_unstable)
    with pytest.raises(CheckFailed, match=r"indexed wrongly: in row 1 the 1 is subtracted at column 0, but labels\[1\] = 12"):
        check_softmax_xent_grad(xent_grad_label_of_column)


@needs_compiler
def test_softmax_xent_grad_check_float32():
    with pytest.raises(CheckFailed, match="float64 instruction") as e:
        check_softmax_xent_grad(xent_grad_float64)
    assert ".reg" not in str(e.value) and "logits.shape[0]" in str(e.value)  # a real instruction, and the int cause


# ------------------------------------------------------------------ 05.3 tree reduction

TREE = 128


@cuda.jit
def block_sum(x, partial):
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    v = float32(0)
    if i < x.size:
        v = x[i]
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    cuda.syncthreads()
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def block_sum_interleaved(x, partial):  # alternative: interleaved addressing (stride 1, 2, 4 with t % (2 * stride))
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    stride = 1
    while stride < B:
        cuda.syncthreads()  # barrier at the top of each step: also separates the load from the first step
        if t % (2 * stride) == 0:
            buf[t] += buf[t + stride]
        stride *= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


def _tree_variant(grow, fixed_stride, tail_guard):
    """Wrong answers, built from one template so that each has exactly one mistake (barriers are all in place)."""

    @cuda.jit
    def kernel(x, partial):
        buf = cuda.shared.array(TREE, float32)
        t = cuda.threadIdx.x
        B = cuda.blockDim.x
        i = cuda.blockIdx.x * 2 * B + t
        v = float32(0)
        if tail_guard:
            if i < x.size:
                v = x[i]
            if i + B < x.size:
                v += x[i + B]
        elif i + B < x.size:  # drops x[i] when only the first element exists
            v = x[i] + x[i + B]
        buf[t] = v
        cuda.syncthreads()
        stride = 1 if grow else (fixed_stride if fixed_stride else B // 2)
        while stride > 0 and stride < B:
            if t < stride:
                buf[t] += buf[t + stride]
            cuda.syncthreads()
            stride = stride * 2 if grow else stride // 2
        if t == 0:
            partial[cuda.blockIdx.x] = buf[0]

    return kernel


@cuda.jit
def block_sum_no_barrier_in_loop(x, partial):
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    cuda.syncthreads()
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def block_sum_no_barrier(x, partial):
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def block_sum_peeks_early(x, partial):
    """Right sums, but thread 1 reads buf[0] before the barrier that orders it after thread 0's write: a race."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    if t == 1:
        peek = buf[0]  # noqa: F841 - unused, but read without a barrier
    cuda.syncthreads()
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def block_sum_assumes_128(x, partial):  # wrong: 2 * 128 elements per block, whatever blockDim.x is
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 256 + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + 128] if i + 128 < x.size else float32(0))
    cuda.syncthreads()
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def block_sum_offset_b_times_B(x, partial):  # wrong: block offset b * B instead of 2 * b * B (probe 05.3 C)
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    cuda.syncthreads()
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


def test_block_sum_wrong_offset_is_not_blamed_on_the_tail():
    with pytest.raises(CheckFailed, match=r"block b sums x\[bB : bB \+ 2B\]: its offset is b·B") as e:
        check_block_sum(block_sum_offset_b_times_B)
    assert "only the last block" not in str(e.value)


def test_block_sum_names_an_assumed_block_size():
    with pytest.raises(CheckFailed, match="right with 128 threads per block but not with 32"):
        check_block_sum(block_sum_assumes_128)


def test_block_sum_check_finds_a_race_that_leaves_the_sums_right():
    with pytest.raises(CheckFailed, match=r"the sums are right in this run, but the memory-access tracer .* found a race"):
        check_block_sum(block_sum_peeks_early)


def test_block_sum_check(capsys):
    check_block_sum(block_sum)
    check_block_sum(block_sum_interleaved)
    out = capsys.readouterr().out
    assert out.count("✓ block sums are correct") == 2 and "No race: the memory-access tracer" in out
    with pytest.raises(CheckFailed, match="never calls cuda.syncthreads"):
        check_block_sum(block_sum_no_barrier)
    with pytest.raises(CheckFailed, match="no cuda.syncthreads\\(\\) inside your loop"):
        check_block_sum(block_sum_no_barrier_in_loop)
    with pytest.raises(CheckFailed, match="wrong stride order"):
        check_block_sum(_tree_variant(grow=True, fixed_stride=0, tail_guard=True))
    with pytest.raises(CheckFailed, match="only the last block's sum is wrong"):
        check_block_sum(_tree_variant(grow=False, fixed_stride=0, tail_guard=False))
    with pytest.raises(CheckFailed, match="only the first 32 threads' values of each block are summed"):
        check_block_sum(_tree_variant(grow=False, fixed_stride=16, tail_guard=True))


# ------------------------------------------------------------------ 05.4 a warp-shuffle tail

FULL = 0xFFFFFFFF


@cuda.jit
def warp_block_sum(x, partial):
    """The reference: 05.3's tree in shared memory down to 32 values, then warp 0 shuffles them down."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    v = float32(0)
    if i < x.size:
        v = x[i]
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    cuda.syncthreads()
    stride = B // 2
    while stride >= 32:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t < 32:
        v = buf[t]
        for offset in (16, 8, 4, 2, 1):
            v += cuda.shfl_down_sync(0xFFFFFFFF, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


def _warp_tail_variant(first_offset=16, up=False, stop=32, tail_lanes=32):
    """Wrong 05.4 answers from one template, each with exactly one mistake."""

    @cuda.jit
    def kernel(x, partial):
        buf = cuda.shared.array(TREE, float32)
        t = cuda.threadIdx.x
        B = cuda.blockDim.x
        i = cuda.blockIdx.x * 2 * B + t
        v = float32(0)
        if i < x.size:
            v = x[i]
        if i + B < x.size:
            v += x[i + B]
        buf[t] = v
        cuda.syncthreads()
        stride = B // 2
        while stride >= stop:
            if t < stride:
                buf[t] += buf[t + stride]
            cuda.syncthreads()
            stride //= 2
        if t < tail_lanes:
            v = buf[t]
            offset = first_offset
            while offset > 0:
                v += cuda.shfl_up_sync(FULL, v, offset) if up else cuda.shfl_down_sync(FULL, v, offset)
                offset //= 2
            if t == 0:
                partial[cuda.blockIdx.x] = v

    return kernel


@cuda.jit(device=True)
def warp_allreduce(v):
    for lane_mask in (16, 8, 4, 2, 1):
        v += cuda.shfl_xor_sync(FULL, v, lane_mask)  # butterfly: every lane ends with the warp's sum
    return v


@cuda.jit
def warp_block_sum_butterfly(x, partial):
    """Alternative: each warp reduces its own values with an xor butterfly (in a device function), the warp sums
    meet in shared memory, warp 0 reduces those: no shared-memory tree at all."""
    sums = cuda.shared.array(32, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    v = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    v = warp_allreduce(v)
    if cuda.laneid == 0:
        sums[t // 32] = v
    cuda.syncthreads()
    if t < 32:
        v = warp_allreduce(sums[t] if t < B // 32 else float32(0))
        if t == 0:
            partial[cuda.blockIdx.x] = v


def test_warp_reduce_check_accepts_the_reference_and_a_butterfly(capsys):
    check_warp_reduce(warp_block_sum)
    check_warp_reduce(warp_block_sum_butterfly)
    out = capsys.readouterr().out
    assert out.count("✓ block sums are correct with 128, 64 and 32 threads per block") == 2 and "warp-shuffle tail" in out
    assert "No race on shared memory" in out and out.count(FLOAT32_NOTE) >= 1  # the butterfly's device function:
    # the PTX proof compiles a kernel alone and may say it could not


def test_warp_reduce_check_names_the_mistakes():
    with pytest.raises(CheckFailed, match="your kernel calls no warp shuffle"):
        check_warp_reduce(block_sum)  # 05.3's answer: right sums, but no shuffle
    with pytest.raises(CheckFailed, match="shfl_up_sync reads lane - delta"):
        check_warp_reduce(_warp_tail_variant(up=True))
    with pytest.raises(CheckFailed, match="only lanes 0-15 of warp 0 are summed"):
        check_warp_reduce(_warp_tail_variant(first_offset=8))
    with pytest.raises(CheckFailed, match="warp 0 sums only 32 of the 64 values"):
        check_warp_reduce(_warp_tail_variant(stop=64))


def test_warp_reduce_check_names_a_shuffle_that_reads_lanes_outside_it():
    """Only lanes 0-15 shuffle with the full mask: lane 0 reads lane 16, which has returned (undefined in CUDA)."""
    with pytest.raises(CheckFailed) as info:
        check_warp_reduce(_warp_tail_variant(tail_lanes=16))
    message = str(info.value)
    assert "WarpError" in message and "read lane 16, but lane 16 has returned from the kernel" in message


def test_the_shuffle_tail_also_passes_05_3(capsys):
    """Before the simulator had shuffles, 05.3 answered a correct shuffle tail with AttributeError."""
    check_block_sum(warp_block_sum)
    assert "✓ block sums are correct" in capsys.readouterr().out


# ------------------------------------------------------------------ 05.3: what the tracer adds (issue 16)


def _source_line(kernel, text: str) -> int:
    lines, first = inspect.getsourcelines(kernel.py_func)
    return first + next(k for k, line in enumerate(lines) if text in line)


@cuda.jit
def block_sum_fixed_stride(x, partial):
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    cuda.syncthreads()
    stride = TREE // 2  # right for 128 threads; with 32 the tree reads buf[32..127], which nobody wrote
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


def test_block_sum_check_names_the_read_of_never_written_shared_memory():
    # Shared memory used to read as zero in the simulator, and this kernel passed with 32 threads per block.
    verdict = BLOCK_SUM.run(block_sum_fixed_stride)
    line = _source_line(block_sum_fixed_stride, "buf[t] += buf[t + stride]")
    assert verdict.status == "failed" and verdict.case.block == 32
    assert re.search(rf"partial is wrong .*you have nan.*The memory-access tracer also found: block \(0\): thread "
                     rf"\(0\) reads buf\[64\] \(line {line}\) before any thread of the block wrote it", verdict.message)


@cuda.jit
def block_sum_barrier_in_if(x, partial):
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    cuda.syncthreads()
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
            cuda.syncthreads()  # reached only by the threads that add
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


def test_block_sum_check_rejects_a_barrier_inside_the_if():
    # The sums come out right and the tracer sees no race: before, this got ✓ and "No race".
    verdict = BLOCK_SUM.run(block_sum_barrier_in_if)
    line = _source_line(block_sum_barrier_in_if, "cuda.syncthreads()  # reached only")
    assert verdict.status == "failed" and verdict.stage == "proof barriers"
    assert (f"threads 16..31 of block (0) never reached the cuda.syncthreads() on line {line}; threads 0..15 waited "
            "there") in verdict.message
    assert "CUDA Programming Guide" in verdict.message


@cuda.jit
def block_sum_barrier_in_both_branches(x, partial):
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = cuda.blockIdx.x * 2 * B + t
    buf[t] = (x[i] if i < x.size else float32(0)) + (x[i + B] if i + B < x.size else float32(0))
    cuda.syncthreads()
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
            cuda.syncthreads()
        else:
            cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


def test_block_sum_check_rejects_barriers_at_two_call_sites():
    verdict = BLOCK_SUM.run(block_sum_barrier_in_both_branches)
    assert verdict.status == "failed" and verdict.stage == "launch"
    assert "wait at different cuda.syncthreads() calls" in verdict.message and "tid=" not in verdict.message


def test_race_advice_names_the_missing_barrier_from_program_order():
    write = _source_line(block_sum_peeks_early, "buf[t] = (x[i]")
    read = _source_line(block_sum_peeks_early, "peek = buf[0]")
    messages = {BLOCK_SUM.run(block_sum_peeks_early).message for _ in range(2)}
    assert len(messages) == 1  # the same words in every run
    message = messages.pop()
    assert "read-after-write hazard" in message
    assert f"Here: a cuda.syncthreads() is missing after line {write} (write) and before line {read} (read)." in message


def test_block_sum_check_rejects_never_written_shared_memory_even_when_the_launch_read_zeros(monkeypatch):
    # On a GPU (or in the CPU executor, before it poisoned shared memory) the fixed-stride tree may read zeros and
    # get the right sums; the proof traces it with shared memory starting as NaN, which reaches partial.
    from nbkit.core import executor, simulator
    from nbkit.core.launch import run_on_executor

    monkeypatch.setattr(executor, "poison_value", lambda dtype: 0)  # shared memory reads as zeros, as it used to
    simulator.route_launches(run_on_executor)
    try:
        verdict = BLOCK_SUM.run(block_sum_fixed_stride)
    finally:
        simulator.route_launches(None)
    assert verdict.status == "failed" and verdict.stage == "proof barriers", verdict.message
    assert ("the outputs are right in this run, but not when shared memory starts as garbage (as on a GPU): the "
            "memory-access tracer ran your kernel with shared memory starting as NaN and partial came out NaN. "
            "block (0): thread (0) reads buf[64]") in verdict.message
