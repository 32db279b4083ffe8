"""Exercises 05.1-05.3 (activations and losses): answers written from the learner notebook."""

import math

from numba import cuda, float32

from ._answer import Answer

TREE = 128

# ---- 05.1 leaky ReLU


@cuda.jit
def lf_ok(x, y, slope):
    """Correct forward."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] if x[i] > 0 else slope * x[i]


@cuda.jit
def lb_ok(dout, x, dx, slope):
    """Correct backward (slope at 0)."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dout[i] if x[i] > 0 else slope * dout[i]


@cuda.jit
def lf_max(x, y, slope):
    """Correct forward for 0 < slope < 1: max(x, slope * x), grid-stride."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = max(x[i], slope * x[i])


@cuda.jit
def lb_stride(dout, x, dx, slope):
    """Correct backward: grid-stride with a float32 factor."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        g = float32(1) if x[i] > float32(0) else slope
        dx[i] = g * dout[i]


@cuda.jit
def lf_hard_slope(x, y, slope):
    """Wrong: ignores the slope parameter, writes float32(0.01)."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] if x[i] > 0 else float32(0.01) * x[i]


@cuda.jit
def lb_ge(dout, x, dx, slope):
    """Wrong: derivative 1 at x == 0 (x >= 0)."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dout[i] if x[i] >= 0 else slope * dout[i]


@cuda.jit
def lb_no_dout(dout, x, dx, slope):
    """Wrong: returns the local derivative without dout."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = float32(1) if x[i] > 0 else slope


@cuda.jit
def lf_f64(x, y, slope):
    """Wrong: 0.0 comparison and a float64 literal multiplication (slope * 1.0)."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] if x[i] > 0.0 else slope * 1.0 * x[i]


@cuda.jit
def lb_uses_y_sign_dout(dout, x, dx, slope):
    """Wrong: tests the sign of dout instead of x."""
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dout[i] if dout[i] > 0 else slope * dout[i]


@cuda.jit
def lf_relu(x, y, slope):
    """Wrong: plain ReLU forward (0 for negatives)."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] if x[i] > 0 else float32(0)


@cuda.jit
def lb_no_guard(dout, x, dx, slope):
    """Wrong: backward without bounds guard."""
    i = cuda.grid(1)
    dx[i] = dout[i] if x[i] > 0 else slope * dout[i]


# ---- 05.2 softmax xent grad from logits


@cuda.jit
def sx_ok(logits, labels, dlogits):
    """Correct: three passes, float32, max-subtracted."""
    n = cuda.grid(1)
    N, C = logits.shape
    if n < N:
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        invN = float32(1) / float32(N)
        for j in range(C):
            p = math.exp(logits[n, j] - m) / s
            oh = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (p - oh) * invN


@cuda.jit
def sx_online(logits, labels, dlogits):
    """Correct: online softmax (running max and rescaled sum in one pass), grid-stride over rows."""
    N, C = logits.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        m = float32(-math.inf)
        s = float32(0)
        for j in range(C):
            z = logits[n, j]
            if z > m:
                s = s * math.exp(m - z) + float32(1)
                m = z
            else:
                s += math.exp(z - m)
        for j in range(C):
            dlogits[n, j] = math.exp(logits[n, j] - m) / s / float32(N)
        lab = labels[n]
        dlogits[n, lab] -= float32(1) / float32(N)


@cuda.jit
def sx_no_max(logits, labels, dlogits):
    """Wrong: no max subtraction (overflow / 0/0 at the +100 and -1000 rows)."""
    n = cuda.grid(1)
    N, C = logits.shape
    if n < N:
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j])
        for j in range(C):
            p = math.exp(logits[n, j]) / s
            oh = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (p - oh) / float32(N)


@cuda.jit
def sx_int_N(logits, labels, dlogits):
    """Wrong: divides by the integer logits.shape[0] (float64 in numba)."""
    n = cuda.grid(1)
    N, C = logits.shape
    if n < N:
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        for j in range(C):
            p = math.exp(logits[n, j] - m) / s
            oh = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (p - oh) / logits.shape[0]


@cuda.jit
def sx_no_mean(logits, labels, dlogits):
    """Wrong: forgets 1/N."""
    n = cuda.grid(1)
    N, C = logits.shape
    if n < N:
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        for j in range(C):
            p = math.exp(logits[n, j] - m) / s
            oh = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = p - oh


@cuda.jit
def sx_max_zero(logits, labels, dlogits):
    """Wrong: the running max starts at float32(0) (wrong for rows that are all negative: -1000 -> 0/0)."""
    n = cuda.grid(1)
    N, C = logits.shape
    if n < N:
        m = float32(0)
        for j in range(C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        invN = float32(1) / float32(N)
        for j in range(C):
            p = math.exp(logits[n, j] - m) / s
            oh = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (p - oh) * invN


@cuda.jit
def sx_onehot_col0(logits, labels, dlogits):
    """Wrong: one-hot compares n (the row) with the label instead of j."""
    n = cuda.grid(1)
    N, C = logits.shape
    if n < N:
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        invN = float32(1) / float32(N)
        for j in range(C):
            p = math.exp(logits[n, j] - m) / s
            oh = float32(1) if n % C == labels[n] and j == labels[n] else float32(0)
            dlogits[n, j] = (p - oh) * invN


@cuda.jit
def sx_divide_C(logits, labels, dlogits):
    """Wrong: divides by C instead of N."""
    n = cuda.grid(1)
    N, C = logits.shape
    if n < N:
        m = logits[n, 0]
        for j in range(1, C):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(C):
            s += math.exp(logits[n, j] - m)
        invC = float32(1) / float32(C)
        for j in range(C):
            p = math.exp(logits[n, j] - m) / s
            oh = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (p - oh) * invC


# ---- 05.3 block sum, two elements per thread


@cuda.jit
def bs_ok(x, partial):
    """Correct: the hint."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    b = cuda.blockIdx.x
    n = x.size
    i = 2 * b * B + t
    v = x[i] if i < n else float32(0)
    if i + B < n:
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
        partial[b] = buf[0]


@cuda.jit
def bs_interleaved(x, partial):
    """Correct: interleaved addressing (t % (2s) == 0), loads with a grid-stride-free guard."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    a = float32(0)
    if i < x.shape[0]:
        a = x[i]
    c = float32(0)
    if i + B < x.shape[0]:
        c = x[i + B]
    buf[t] = a + c
    cuda.syncthreads()
    s = 1
    while s < B:
        if t % (2 * s) == 0:
            buf[t] += buf[t + s]
        cuda.syncthreads()
        s *= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def bs_one_elem(x, partial):
    """Wrong: loads only x[i], not x[i + B]."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    buf[t] = x[i] if i < x.size else float32(0)
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
def bs_wrong_offset(x, partial):
    """Wrong: i = b * B + t (one block's width, overlapping the next block's elements)."""
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


@cuda.jit
def bs_no_tail_guard(x, partial):
    """Wrong: guards x[i] but reads x[i + B] unguarded when i < n."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = float32(0)
    if i < x.size:
        v = x[i] + x[i + B]
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
def bs_fixed_stride(x, partial):
    """Wrong: the tree starts at TREE // 2 = 64 instead of B // 2 (reads uninitialised slots when B = 32)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    cuda.syncthreads()
    stride = TREE // 2
    while stride > 0:
        if t < stride and t + stride < TREE:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def bs_early_return(x, partial):
    """Wrong: threads past the end return early (skip the barriers)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    if i >= x.size:
        return
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
def bs_no_sync_after_load(x, partial):
    """Wrong: no barrier between the load and the tree (a race; the check says it reads the source for
    syncthreads, so one barrier elsewhere may hide it)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


@cuda.jit
def bs_sync_in_if(x, partial):
    """Wrong: the tree's barrier inside `if t < stride` (divergent barrier)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
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


@cuda.jit
def bs_no_sync(x, partial):
    """Wrong: no barrier at all."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    stride = B // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        stride //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = buf[0]


ANSWERS = [
    Answer("05.1", "plain", "check_leaky_relu", (lf_ok, lb_ok), True),
    Answer("05.1", "max-and-stride", "check_leaky_relu", (lf_max, lb_stride), True),
    Answer("05.1", "hard-coded-slope", "check_leaky_relu", (lf_hard_slope, lb_ok), False),
    Answer("05.1", "derivative-1-at-0", "check_leaky_relu", (lf_ok, lb_ge), False),
    Answer("05.1", "backward-no-dout", "check_leaky_relu", (lf_ok, lb_no_dout), False),
    Answer("05.1", "float64-literal", "check_leaky_relu", (lf_f64, lb_ok), False),
    Answer("05.1", "sign-of-dout", "check_leaky_relu", (lf_ok, lb_uses_y_sign_dout), False),
    Answer("05.1", "plain-relu-forward", "check_leaky_relu", (lf_relu, lb_ok), False),
    Answer("05.1", "backward-no-guard", "check_leaky_relu", (lf_ok, lb_no_guard), False),
    Answer("05.2", "three-passes", "check_softmax_xent_grad", (sx_ok,), True),
    Answer("05.2", "online-softmax-stride", "check_softmax_xent_grad", (sx_online,), True),
    Answer("05.2", "no-max", "check_softmax_xent_grad", (sx_no_max,), False),
    Answer("05.2", "int-N", "check_softmax_xent_grad", (sx_int_N,), False),
    Answer("05.2", "no-mean", "check_softmax_xent_grad", (sx_no_mean,), False),
    Answer("05.2", "max-starts-at-0", "check_softmax_xent_grad", (sx_max_zero,), False),
    Answer("05.2", "onehot-row-test", "check_softmax_xent_grad", (sx_onehot_col0,), False),
    Answer("05.2", "divide-by-C", "check_softmax_xent_grad", (sx_divide_C,), False),
    Answer("05.3", "hint", "check_block_sum", (bs_ok,), True),
    Answer("05.3", "interleaved", "check_block_sum", (bs_interleaved,), True),
    Answer("05.3", "one-element", "check_block_sum", (bs_one_elem,), False),
    Answer("05.3", "offset-bB", "check_block_sum", (bs_wrong_offset,), False),
    Answer("05.3", "second-load-unguarded", "check_block_sum", (bs_no_tail_guard,), False),
    Answer("05.3", "tree-from-TREE", "check_block_sum", (bs_fixed_stride,), False),
    Answer("05.3", "early-return", "check_block_sum", (bs_early_return,), False),
    Answer("05.3", "no-barrier-after-load", "check_block_sum", (bs_no_sync_after_load,), False),
    Answer("05.3", "barrier-in-if", "check_block_sum", (bs_sync_in_if,), False),
    Answer("05.3", "no-barrier", "check_block_sum", (bs_no_sync,), False),
]


@cuda.jit
def sx_hardcoded_N(logits, labels, dlogits):
    """Wrong: 1/N with the statement's N = 37 copied in (and C = 13)."""
    n = cuda.grid(1)
    if n < 37:
        m = logits[n, 0]
        for j in range(1, 13):
            m = max(m, logits[n, j])
        s = float32(0)
        for j in range(13):
            s += math.exp(logits[n, j] - m)
        for j in range(13):
            p = math.exp(logits[n, j] - m) / s
            oh = float32(1) if j == labels[n] else float32(0)
            dlogits[n, j] = (p - oh) * float32(1.0 / 37)


ANSWERS.append(Answer("05.2", "hard-coded-N-C", "check_softmax_xent_grad", (sx_hardcoded_N,), False))


# ---- 05.4 a warp-shuffle tail (added to notebook 05 after the first probe pass)

FULL = 0xFFFFFFFF


@cuda.jit
def wr_ok(x, partial):
    """Correct: the hint (tree down to 32 values, then shfl_down 16..1 in warp 0)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
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
            v += cuda.shfl_down_sync(FULL, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_xor(x, partial):
    """Correct: an xor butterfly (every lane ends with the sum)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    a = x[i] if i < x.size else float32(0)
    b = x[i + B] if i + B < x.size else float32(0)
    buf[t] = a + b
    cuda.syncthreads()
    stride = B // 2
    while stride >= 32:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t < 32:
        v = buf[t]
        offset = 16
        while offset > 0:
            v += cuda.shfl_xor_sync(FULL, v, offset)
            offset //= 2
        if t == 0:
            partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_offsets_up(x, partial):
    """Correct: shfl_down with offsets 1, 2, 4, 8, 16 (another valid order: lane 0 still gets the total)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
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
        for offset in (1, 2, 4, 8, 16):
            v += cuda.shfl_down_sync(FULL, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_no_last_barrier(x, partial):
    """Correct: no barrier after the stride-32 step (warp 0 then reads only what each lane wrote itself)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    cuda.syncthreads()
    stride = B // 2
    while stride >= 32:
        if t < stride:
            buf[t] += buf[t + stride]
        if stride > 32:
            cuda.syncthreads()
        stride //= 2
    if t < 32:
        v = buf[t]
        for offset in (16, 8, 4, 2, 1):
            v += cuda.shfl_down_sync(FULL, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_half_warp(x, partial):
    """Correct (judged by the lead after the probe): only lanes 0-15 call the shuffles, with the full mask.

    The probe first called this undefined. The Programming Guide's rule for the *_sync intrinsics is that "all
    non-exited threads named in mask must execute the same intrinsic with the same mask"; lanes 16-31 leave the
    kernel without another intrinsic or barrier, so they are exited threads, and lane 0's sum only reads lanes
    1-15. Fragile style (a mask of the calling lanes, 0x0000FFFF, says what is meant), but not wrong.
    """
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
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
    if t < 16:
        v = buf[t] + buf[t + 16]
        for offset in (8, 4, 2, 1):
            v += cuda.shfl_down_sync(FULL, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_tree_to_1(x, partial):
    """Wrong: the shared tree runs all the way down (stride >= 1) and the shuffles then add the leftovers again."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    cuda.syncthreads()
    stride = B // 2
    while stride >= 1:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t < 32:
        v = buf[t]
        for offset in (16, 8, 4, 2, 1):
            v += cuda.shfl_down_sync(FULL, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_every_lane_writes(x, partial):
    """Wrong: every lane of warp 0 writes partial[b] (its own partial sum; the last writer wins)."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
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
            v += cuda.shfl_down_sync(FULL, v, offset)
        partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_half_mask(x, partial):
    """Wrong: mask 0xFFFF (lanes 0-15) while all 32 lanes call the shuffle."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
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
            v += cuda.shfl_down_sync(0xFFFF, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


@cuda.jit
def wr_tree_stops_at_64(x, partial):
    """Wrong: the tree stops one step early (while stride > 32): with 128 threads buf[32:64] is never added."""
    buf = cuda.shared.array(TREE, float32)
    t = cuda.threadIdx.x
    B = cuda.blockDim.x
    i = 2 * cuda.blockIdx.x * B + t
    v = x[i] if i < x.size else float32(0)
    if i + B < x.size:
        v += x[i + B]
    buf[t] = v
    cuda.syncthreads()
    stride = B // 2
    while stride > 32:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t < 32:
        v = buf[t]
        for offset in (16, 8, 4, 2, 1):
            v += cuda.shfl_down_sync(FULL, v, offset)
        if t == 0:
            partial[cuda.blockIdx.x] = v


ANSWERS += [
    Answer("05.4", "hint-shfl-down", "check_warp_reduce", (wr_ok,), True),
    Answer("05.4", "xor-butterfly", "check_warp_reduce", (wr_xor,), True),
    Answer("05.4", "offsets-ascending", "check_warp_reduce", (wr_offsets_up,), True),
    Answer("05.4", "no-barrier-after-last-step", "check_warp_reduce", (wr_no_last_barrier,), True),
    Answer("05.4", "half-warp-full-mask", "check_warp_reduce", (wr_half_warp,), True),
    Answer("05.4", "tree-to-1-then-shuffles", "check_warp_reduce", (wr_tree_to_1,), False),
    Answer("05.4", "every-lane-writes", "check_warp_reduce", (wr_every_lane_writes,), False),
    Answer("05.4", "mask-0xFFFF", "check_warp_reduce", (wr_half_mask,), False),
    Answer("05.4", "tree-stops-at-64", "check_warp_reduce", (wr_tree_stops_at_64,), False),
    Answer("05.4", "no-shuffle", "check_warp_reduce", (bs_ok,), False),
]
