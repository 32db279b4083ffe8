"""Checks for notebook 05 (activations, losses and reductions)."""

from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np

from nbkit.checks._core import (
    CheckFailed,
    compare,
    exercise,
    fail,
    find_races,
    passed,
    race_sentence,
    require_float32,
    run_kernel,
    unwritten_cause,
)
from nbkit.core.launch import blocks_for
from nbkit.core.source import python_function


@exercise("05.1", "write the kernels leaky_relu_forward and leaky_relu_backward")
def check_leaky_relu(forward_kernel, backward_kernel, slope: float = 0.01, n: int = 301) -> None:
    """Exercise 05.1: leaky ReLU, ``forward_kernel(x, y, slope)`` and ``backward_kernel(dout, x, dx, slope)``.

    Forward: ``y = x`` if ``x > 0`` else ``slope * x``. Backward: ``dx = dout`` if ``x > 0`` else ``slope * dout``
    (at exactly 0 the slope, as in PyTorch). One thread per element, 128 threads per block. Both kernels must be
    float32 throughout: checked in their PTX where numba-cuda is installed.
    """
    r = np.random.default_rng(51)
    x = r.standard_normal(n).astype(np.float32)
    x[:3] = [0.0, -0.0, 1e-30]
    dout = r.standard_normal(n).astype(np.float32)
    s = np.float32(slope)
    grid = blocks_for(n, 128)
    fwd = run_kernel(forward_kernel, grid, 128, [x], [(n,)], extra=(s,), output_names=("y",),
                     call="leaky_relu_forward(x, y, slope)")
    compare("forward y", fwd.outputs[0], np.where(x > 0, x, s * x), rtol=1e-6, atol=1e-12, run=fwd, causes=[
        (np.maximum(x, 0), "forward returns max(x, 0): for x <= 0 leaky ReLU returns slope * x, not 0."),
        unwritten_cause(fwd),
    ])
    bwd = run_kernel(backward_kernel, grid, 128, [dout, x], [(n,)], extra=(s,), output_names=("dx",),
                     call="leaky_relu_backward(dout, x, dx, slope)")
    want_dx = np.where(x > 0, dout, s * dout)
    compare("backward dx", bwd.outputs[0], want_dx, rtol=1e-6, atol=1e-12, run=bwd, causes=[
        (np.where(x > 0, dout, 0), "backward passes no gradient where x <= 0: there the derivative is the slope, "
                                   "so dx = slope * dout."),
        (np.where(x >= 0, dout, s * dout), "dx at x = 0 is wrong: use the slope there (x > 0 is false at 0), "
                                           "as PyTorch does."),
        unwritten_cause(bwd),
    ])
    f32 = require_float32(forward_kernel, "void(float32[::1], float32[::1], float32)")
    f32b = require_float32(backward_kernel, "void(float32[::1], float32[::1], float32[::1], float32)")
    note = f32 if f32 == f32b else f"forward: {f32}; backward: {f32b}"
    passed(f"leaky ReLU forward and backward are correct on {n} elements, including x = 0; {note}.")


# --------------------------------------------------------------------------------------------------
# 05.2 softmax + cross-entropy backward


def _xent_data(N: int, C: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits with ordinary rows and rows that overflow / underflow a naive softmax in float32."""
    r = np.random.default_rng(52)
    logits = (3 * r.standard_normal((N, C))).astype(np.float32)
    logits[1] += 100.0                  # exp(100) overflows float32 (largest ~3.4e38 = exp(88.7))
    logits[2] -= 1000.0                 # exp(-1000) underflows to 0 in every class: 0 / 0
    logits[3, 5] = 500.0                # one huge logit: p = 1 there, ~0 elsewhere
    labels = r.integers(0, C, size=N).astype(np.int64)
    labels[:4] = [0, C - 1, 3, 5]       # first and last class appear
    labels[4] = C - 1
    return logits, labels


def _softmax64(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _onehot_columns(got: np.ndarray, p: np.ndarray, N: int) -> list[np.ndarray]:
    """Per row, the columns where the answer subtracted (about) 1/N from p/N."""
    d = N * (p / N - got)  # -> the one-hot the learner subtracted, if the rest is right
    return [np.flatnonzero(np.isclose(row, 1.0, atol=1e-3)) for row in d]


def _label_cause(got: np.ndarray, p: np.ndarray, labels: np.ndarray) -> str:
    N = p.shape[0]
    finite = np.isfinite(got).all(axis=1)
    cols = _onehot_columns(got, p, N)
    rest_ok = [np.allclose(np.delete(N * got[n] - p[n], c), 0, atol=1e-3) for n, c in enumerate(cols)]
    if not all(ok or not f for ok, f in zip(rest_ok, finite)):
        return ""
    if all(len(c) == 0 for c, f in zip(cols, finite) if f):
        return "nothing is subtracted for the true class: the gradient is (p - onehot) / N, so subtract 1 at column labels[n]."
    if all(len(c) == p.shape[1] for c, f in zip(cols, finite) if f):
        return "1 is subtracted from every class: subtract it only at column labels[n] (the one-hot of the label)."
    for n, c in enumerate(cols):
        if finite[n] and (len(c) != 1 or c[0] != labels[n]):
            where = f"column{'s' if len(c) != 1 else ''} {', '.join(str(k) for k in c) or 'none'}"
            return (f"the label is indexed wrongly: in row {n} the 1 is subtracted at {where}, but labels[{n}] = "
                    f"{labels[n]}. Compare the column j with labels[n] (the label of this row), not labels[j] or "
                    "another index.")
    return ""


@exercise("05.2", "write the kernel softmax_xent_grad(logits, labels, dlogits)")
def check_softmax_xent_grad(kernel, N: int = 37, C: int = 13) -> None:
    """Exercise 05.2: ``kernel(logits, labels, dlogits)`` writes ``(softmax(logits) - onehot(labels)) / N``.

    One thread per row: launched with ``ceil(N / 32)`` blocks of 32 threads (a grid-stride loop over rows
    is fine too). Row 1 has logits around 100 and row 2 around -1000, so a softmax that does not subtract
    the row maximum overflows (inf / inf) or underflows (0 / 0) in float32. Float32 throughout is checked
    from the PTX where numba-cuda is installed.
    """
    logits, labels = _xent_data(N, C)
    p = _softmax64(logits)
    want = (p - np.eye(C)[labels]) / N
    run = run_kernel(kernel, blocks_for(N, 32), 32, [logits, labels], [(N, C)], output_names=("dlogits",),
                     call="softmax_xent_grad(logits, labels, dlogits)")
    got = run.outputs[0].astype(np.float64)

    def overflowed(g: np.ndarray) -> bool:
        return not np.isfinite(g).all()

    rows = sorted({int(r) for r in np.argwhere(~np.isfinite(got))[:, 0]})
    wrong_rows = sorted({int(r) for r in np.argwhere(~np.isclose(got, want, rtol=1e-4, atol=1e-7))[:, 0]})

    def max_starts_at_zero(g: np.ndarray) -> bool:
        # Only the row around -1000 is wrong; the row around +100 (where a maximum starting at 0 is reached) is fine.
        return wrong_rows == [2]

    compare("dlogits", got, want, rtol=1e-4, atol=1e-7, run=run, causes=[
        unwritten_cause(run),
        (max_starts_at_zero, "only row 2 (logits around -1000) is wrong, while row 1 (around +100) is right: "
                             "your maximum starts at 0, and 0 is larger than every logit of row 2, so exp(z - 0) "
                             "underflows to 0 in every class (0 / 0 = nan). Start it at logits[n, 0] (or -inf)."),
        (overflowed, f"dlogits is not finite in row(s) {rows[:4]} (logits around +100 or -1000 there): exp overflowed "
                     "to inf or underflowed to 0 in every class. Subtract the row's maximum m before exp: "
                     "softmax(z) = exp(z - m) / sum(exp(z - m)), so the largest exponent is exp(0) = 1."),
        (N * want, "the 1/N is missing: the loss is the MEAN over the N rows, so every gradient is divided by N."),
        (want / N, "divided by N twice."),
        (want * N / C, "divided by C (classes) instead of N (rows)."),
        (lambda g: bool(_label_cause(g, p, labels)), _label_cause(got, p, labels)),
        (lambda g: np.allclose(g[np.isfinite(want).all(axis=1)].sum(axis=1), 0, atol=1e-5),
         "each row sums to 0 as it should, but the probabilities are wrong: check the softmax (exp of z - max, "
         "divided by the sum of the whole row)."),
    ])
    f32 = require_float32(kernel, "void(float32[:, ::1], int64[::1], float32[:, ::1])")
    passed(f"dlogits = (softmax - onehot) / N is correct on {N} rows × {C} classes, including logits of +100 and "
           f"-1000 (no overflow); {f32}.")


# --------------------------------------------------------------------------------------------------
# 05.3 tree reduction in shared memory


def _doubling_schedule(block: np.ndarray) -> float:
    """buf[0] after the wrong stride order: stride 1, 2, 4, ... with ``if t < stride`` (barriers in place)."""
    buf = block.astype(np.float64).copy()
    s = 1
    while s < buf.size:
        buf[:s] += buf[s:2 * s]
        s *= 2
    return float(buf[0])


def _barriers(kernel: object) -> tuple[bool, bool] | None:
    """(calls cuda.syncthreads at all, has a loop without one inside), read from the source; None: no source."""
    func = python_function(kernel)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return None

    def calls(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Attribute) and n.attr == "syncthreads" for n in ast.walk(node))

    loops = [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While))]
    return calls(tree), any(not calls(loop) for loop in loops)


_TREE_RUNS = ((128, 300), (32, 100))  # (threads per block B, n): n is no multiple of 2B


@exercise("05.3", "write the kernel block_sum(x, partial)")
def check_block_sum(kernel) -> None:
    """Exercise 05.3: ``kernel(x, partial)``: block b writes the sum of x[2bB : 2bB + 2B] to ``partial[b]``.

    B = blockDim.x; each thread loads and adds two elements, x[i] and x[i + B] with i = 2bB + t, then the
    block sums its B values with a tree in shared memory. Launched with 128 and with 32 threads per block (any
    power of two up to 128 must work) and n not a multiple of 2B, so the last block has threads whose second
    element, or both, lie past the end of x. Values are distinct multiples of 1/4, so every order of additions
    gives the exact sum. Float32 is checked from the PTX.
    """
    r = np.random.default_rng(53)
    barriers = _barriers(kernel)
    for B, n in _TREE_RUNS:
        x = (r.permutation(np.arange(-2 * n, 2 * n))[:n] / 4).astype(np.float32)
        blocks = blocks_for(n, 2 * B)
        chunks = [np.concatenate([x[2 * k * B:2 * (k + 1) * B], np.zeros(max(0, 2 * (k + 1) * B - n))])
                  for k in range(blocks)]
        want = np.array([c.sum() for c in chunks])
        loaded = [c[:B] + c[B:] for c in chunks]  # what each thread holds after adding its two elements
        run = run_kernel(kernel, blocks, B, [x], [(blocks,)], output_names=("partial",),
                         call="block_sum(x, partial)")
        got = run.outputs[0].astype(np.float64)
        doubling = np.array([_doubling_schedule(v) for v in loaded])

        def prefix(g: np.ndarray, loaded=loaded, B=B) -> str:
            for k in (2 ** e for e in range(int(np.log2(B)))):
                if np.array_equal(g, [v[:k].sum() for v in loaded]):
                    return (f"only the first {k} threads' values of each block are summed: the tree starts at a fixed "
                            f"stride {k // 2}, but with {B} threads per block it must start at cuda.blockDim.x // 2 = "
                            f"{B // 2}.")
            return ""

        last_only = bool(np.array_equal(got[:-1], want[:-1]) and got[-1] != want[-1])
        tail = ("only the last block's sum is wrong: it has threads whose second element, or both, lie past the end of "
                f"x (n = {n}); each thread must add x[i] only if i < n and x[i + B] only if i + B < n (else 0), "
                "and must still take part in the tree and reach every cuda.syncthreads().")
        if barriers is not None and not barriers[0]:
            fail("your kernel never calls cuda.syncthreads(). Threads of a block run in any order on a GPU: before a "
                 "thread reads a value another thread wrote to shared memory, the whole block must pass a barrier "
                 "(after loading, and after every step of the tree).", run)
        try:
            compare("partial", got, want, rtol=1e-7, atol=0.0, run=run, causes=[
                unwritten_cause(run),
                (lambda g: bool(barriers and barriers[1]),
                 "there is no cuda.syncthreads() inside your loop: a thread may read buf[t + stride] before the "
                 "thread that owns it has added into it. Put a barrier after every step of the tree. (In the "
                 "simulator the result of such a race depends on how Python schedules the threads, so it can change "
                 "from run to run; on a GPU too.)"),
                (np.array([c[:B].sum() for c in chunks]), "only the first B elements of each block's 2B are summed: "
                 "each thread adds x[i] and x[i + blockDim.x], with i = blockIdx.x * 2 * blockDim.x + threadIdx.x."),
                (np.array([x[k * B:(k + 1) * B].astype(np.float64).sum() for k in range(blocks)]),
                 "block b sums x[bB : bB + B]: here each block covers 2B elements, so i = blockIdx.x * 2 * "
                 "blockDim.x + threadIdx.x, and the second element is x[i + blockDim.x]."),
                (doubling, "wrong stride order: with `if t < stride`, the stride must start at blockDim.x // 2 and "
                           "halve (64, 32, ..., 1); growing it (1, 2, 4, ...) adds values that are not partial sums yet."),
                (lambda g: last_only, tail),
                (lambda g: bool(prefix(g)), prefix(got)),
                (lambda g: B != _TREE_RUNS[0][0], f"the sums are right with {_TREE_RUNS[0][0]} threads per block but "
                                                  f"not with {B}: does your kernel assume a block size? Start the stride "
                                                  "at cuda.blockDim.x // 2."),
            ])
        except CheckFailed as exc:
            raise CheckFailed(f"{exc} (launch: {blocks} blocks of {B} threads, n = {n})") from None
    races, _ = find_races(kernel, blocks, B, x, np.zeros(blocks, np.float32))
    if races:
        fail("the sums are right in this run, but the memory-access tracer (which does not depend on the order the "
             "simulator ran the threads in) found a race on shared memory: " + race_sentence(races) +
             " On a GPU such a kernel gives the right sum only by luck.")
    f32 = require_float32(kernel, "void(float32[::1], float32[::1])")
    if races is None:
        race_note = ("Not checked: that a barrier separates every write to shared memory from every read of it by "
                     "another thread (the memory-access tracer could not run this kernel); on a GPU a race can give "
                     "the right sum by luck.")
    else:
        race_note = ("No race: the memory-access tracer saw every write to shared memory separated from every read of "
                     f"it by another thread by a cuda.syncthreads() (last launch: {blocks} blocks of {B} threads).")
    passed(f"block sums are correct with 128 and 32 threads per block (two elements per thread) and n not a multiple "
           f"of 2B; {f32}. {race_note}")
