"""Exercise 00.1 (saxpy): answers written from the learner notebook."""

from numba import cuda

from ._answer import Answer


@cuda.jit
def saxpy_plain(alpha, x, y, out):
    """Correct: one thread per element with a guard."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_stride(alpha, x, y, out):
    """Correct: a grid-stride loop over x.shape[0]."""
    start = cuda.threadIdx.x + cuda.blockIdx.x * cuda.blockDim.x
    for i in range(start, x.shape[0], cuda.blockDim.x * cuda.gridDim.x):
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_early_return(alpha, x, y, out):
    """Correct: an early return instead of an if-block."""
    i = cuda.grid(1)
    if i >= x.size:
        return
    out[i] = y[i] + x[i] * alpha


@cuda.jit
def saxpy_no_guard(alpha, x, y, out):
    """Wrong: no bounds guard (84 idle threads write past out)."""
    i = cuda.grid(1)
    out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_swapped(alpha, x, y, out):
    """Wrong: alpha multiplies y instead of x."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + alpha * y[i]


@cuda.jit
def saxpy_off_by_one_guard(alpha, x, y, out):
    """Wrong: guard `i <= n`: the thread with i == n writes one element past out."""
    i = cuda.grid(1)
    if i <= out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_f64(alpha, x, y, out):
    """Wrong: float64 arithmetic (2.0 * alpha / 2.0 is a float64 expression)."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = (2.0 * alpha / 2.0) * x[i] + y[i]


@cuda.jit
def saxpy_hardcoded(alpha, x, y, out):
    """Wrong: the guard hard-codes 256 elements (the statement's 300 is not even that), so 44 stay unwritten."""
    i = cuda.grid(1)
    if i < 256:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_block_index(alpha, x, y, out):
    """Wrong: uses threadIdx.x only, so all blocks write the first 128 elements."""
    i = cuda.threadIdx.x
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_params_order(x, alpha, y, out):
    """Wrong: parameters in the order (x, alpha, y, out)."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


def _a(name, fn, ok, **kw):
    return Answer("00.1", name, "check_saxpy", (fn,), ok, **kw)


ANSWERS = [
    _a("plain", saxpy_plain, True),
    _a("grid-stride", saxpy_stride, True),
    _a("early-return", saxpy_early_return, True),
    _a("no-guard", saxpy_no_guard, False),
    _a("alpha-times-y", saxpy_swapped, False),
    _a("off-by-one-write", saxpy_off_by_one_guard, False),
    _a("float64-literals", saxpy_f64, False),
    _a("hard-coded-256", saxpy_hardcoded, False),
    _a("threadIdx-only", saxpy_block_index, False),
    _a("param-order", saxpy_params_order, False),
]
