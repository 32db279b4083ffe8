"""Checks for notebook 05 (activations, losses and reductions), declared as exercises (:mod:`nbkit.checks.exercise`)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types

import numpy as np

from nbkit.checks._core import fail, race_sentence
from nbkit.checks.exercise import (
    NEVER_WRITTEN,
    Attempt,
    Case,
    Cause,
    ExerciseGroup,
    KernelExercise,
    equals,
)
from nbkit.core.launch import blocks_for
from nbkit.core.source import python_function

# --------------------------------------------------------------------------------------------------
# 05.1 leaky ReLU forward and backward


def _leaky_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """x with 0, -0 and a tiny positive value first (the derivative at 0 is the slope, as in PyTorch)."""
    x = rng.standard_normal(c.n).astype(np.float32)
    x[:3] = [0.0, -0.0, 1e-30][:c.n]
    return {"x": x, "dout": rng.standard_normal(c.n).astype(np.float32), "slope": np.float32(c.slope)}


def _leaky_case(n: int, block: int, slope: float) -> Case:
    return Case(grid=blocks_for(n, block), block=block, sizes={"n": n, "slope": slope})


# slopes other than PyTorch's default 0.01 (a kernel must use its slope parameter); one element; full blocks
_LEAKY_CASES = (_leaky_case(301, 128, 0.01), _leaky_case(1, 32, 0.2), _leaky_case(257, 64, 0.3),
                _leaky_case(64, 32, 0.05))
_LEAKY_REALISTIC = (dataclasses.replace(_leaky_case(1_000_003, 256, 0.1), label="a vector of a million activations"),)

LEAKY_RELU = ExerciseGroup(
    number="05.1", task="write the kernels leaky_relu_forward and leaky_relu_backward",
    parts=(
        KernelExercise(
            number="05.1", task="write the kernel leaky_relu_forward", call="leaky_relu_forward(x, y, slope)",
            outputs=("y",), names={"y": "forward y"}, inputs=_leaky_inputs,
            reference=lambda x, slope, **_: np.where(x > 0, x, slope * x),
            cases=_LEAKY_CASES, realistic=_LEAKY_REALISTIC, rtol=1e-6, atol=1e-12, seed=51,
            causes=(
                equals(lambda a: np.maximum(a.x, 0),
                       "forward returns max(x, 0): for x <= 0 leaky ReLU returns slope * x, not 0."),
                NEVER_WRITTEN,
            ),
            float32="void(float32[::1], float32[::1], float32)",
        ),
        KernelExercise(
            number="05.1", task="write the kernel leaky_relu_backward",
            call="leaky_relu_backward(dout, x, dx, slope)", outputs=("dx",), names={"dx": "backward dx"},
            inputs=_leaky_inputs,
            reference=lambda dout, x, slope: np.where(x > 0, dout, slope * dout),
            cases=_LEAKY_CASES, realistic=_LEAKY_REALISTIC, rtol=1e-6, atol=1e-12, seed=51,
            causes=(
                equals(lambda a: np.where(a.x > 0, a.dout, 0), "backward passes no gradient where x <= 0: there the "
                                                               "derivative is the slope, so dx = slope * dout."),
                equals(lambda a: np.where(a.x >= 0, a.dout, a.slope * a.dout), "dx at x = 0 is wrong: use the slope "
                                                                               "there (x > 0 is false at 0), as "
                                                                               "PyTorch does."),
                NEVER_WRITTEN,
            ),
            float32="void(float32[::1], float32[::1], float32[::1], float32)",
        ),
    ),
    success=lambda f: (f"leaky ReLU forward and backward are correct with slopes "
                       f"{', '.join(f'{float(c.slope):g}' for c in f.parts[0].cases)} on "
                       f"{', '.join(str(c.n) for c in f.parts[0].cases)} elements, including x = 0; "
                       f"{f.float32}."),
)


def check_leaky_relu(forward_kernel, backward_kernel) -> None:
    """Exercise 05.1: leaky ReLU, ``forward_kernel(x, y, slope)`` and ``backward_kernel(dout, x, dx, slope)``.

    Forward: ``y = x`` if ``x > 0`` else ``slope * x``. Backward: ``dx = dout`` if ``x > 0`` else ``slope * dout``
    (at exactly 0 the slope, as in PyTorch). One thread per element; four launches (:data:`_LEAKY_CASES`) with
    slopes 0.01, 0.2, 0.3 and 0.05, 1 to 301 elements. Both kernels must be float32 throughout: checked in
    their PTX where numba-cuda is installed.
    """
    LEAKY_RELU.check(forward_kernel, backward_kernel)


# --------------------------------------------------------------------------------------------------
# 05.2 softmax + cross-entropy backward


def _xent_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """Logits with ordinary rows and rows 1-3 that overflow / underflow a naive softmax in float32 (N >= 5, C >= 6)."""
    logits = (3 * rng.standard_normal((c.N, c.C))).astype(np.float32)
    logits[1] += 100.0                  # exp(100) overflows float32 (largest ~3.4e38 = exp(88.7))
    logits[2] -= 1000.0                 # exp(-1000) underflows to 0 in every class: 0 / 0
    logits[3, 5] = 500.0                # one huge logit: p = 1 there, ~0 elsewhere
    labels = rng.integers(0, c.C, size=c.N).astype(np.int64)
    labels[:4] = [0, c.C - 1, 3, 5]     # first and last class appear
    labels[4] = c.C - 1
    return {"logits": logits, "labels": labels, "extreme": [1, 2, 3]}


def _xent_reference(logits: np.ndarray, labels: np.ndarray, **_) -> np.ndarray:
    N, C = logits.shape
    return (_softmax64(logits) - np.eye(C)[labels]) / N


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


def _label_message(a: Attempt) -> str:
    return _label_cause(a.got.astype(np.float64), _softmax64(a.logits), a.labels)


def _not_finite_message(a: Attempt) -> str:
    rows = sorted({int(r) for r in np.argwhere(~np.isfinite(a.got))[:, 0]})
    return (f"dlogits is not finite in row(s) {rows[:4]} (logits around +100 or -1000 there): exp overflowed to inf or "
            "underflowed to 0 in every class. Subtract the row's maximum m before exp: softmax(z) = exp(z - m) / "
            "sum(exp(z - m)), so the largest exponent is exp(0) = 1.")


def _ordinary_rows_right(a: Attempt) -> bool:
    """Every row without extreme logits is right."""
    rows = np.setdiff1d(np.arange(a.N), a.extreme)
    return bool(np.allclose(a.got[rows], a.want[rows], rtol=a.rtol, atol=a.atol))


def _max_from_zero(a: Attempt) -> bool:
    """The output equals a maximum that starts at 0's: right, except NaN in the row around -1000."""
    return _ordinary_rows_right(a) and bool(np.isnan(a.got[2]).all()) and bool(
        np.allclose(a.got[[1, 3]], a.want[[1, 3]], rtol=a.rtol, atol=a.atol))


def _overflow_rows_only(a: Attempt) -> bool:
    """Non-finite values, only in rows with extreme logits (+100, -1000, 500), every other row right."""
    bad = ~np.isfinite(a.got).all(axis=1)
    return bool(bad.any()) and set(np.flatnonzero(bad)) <= set(a.extreme) and _ordinary_rows_right(a)


def _distribution_not_softmax(a: Attempt) -> bool:
    """The probabilities implied by the answer (N · dlogits + onehot) are a distribution, but not the softmax."""
    q = a.N * a.got.astype(np.float64) + np.eye(a.C)[a.labels]
    return bool(np.isfinite(q).all() and np.allclose(q.sum(axis=1), 1, atol=1e-4) and (q > -1e-4).all())


SOFTMAX_XENT_GRAD = KernelExercise(
    number="05.2", task="write the kernel softmax_xent_grad(logits, labels, dlogits)",
    call="softmax_xent_grad(logits, labels, dlogits)", outputs=("dlogits",), inputs=_xent_inputs,
    reference=_xent_reference,
    # one thread per row, ceil(N / 32) blocks of 32: a partial last block, one block with surplus threads, 3 blocks
    cases=tuple(Case(grid=blocks_for(N, 32), block=32, sizes={"N": N, "C": C}) for N, C in ((37, 13), (5, 6), (70, 10))),
    realistic=(Case(grid=blocks_for(8191, 128), block=128, sizes={"N": 8191, "C": 10},
                    label="an evaluation batch of 8,191 rows of 10 classes"),),
    rtol=1e-4, atol=1e-7, seed=52,
    causes=(
        NEVER_WRITTEN,
        Cause(_max_from_zero, "only row 2 (logits around -1000) is wrong, and it is NaN, exactly what a maximum that "
                              "starts at 0 gives: 0 is larger than every logit of row 2, so exp(z - 0) underflows to 0 "
                              "in every class (0 / 0 = nan), while every other row is right. Start it at logits[n, 0] "
                              "(or -inf)."),
        Cause(_overflow_rows_only, _not_finite_message),
        equals(lambda a: a.N * a.want,
               "the 1/N is missing: the loss is the MEAN over the N rows, so every gradient is divided by N."),
        equals(lambda a: a.want / a.N, "divided by N twice."),
        equals(lambda a: a.want * a.N / a.C, "divided by C (classes) instead of N (rows)."),
        Cause(lambda a: bool(_label_message(a)), _label_message),
        Cause(_distribution_not_softmax,
              "N · dlogits + onehot, the probabilities your kernel used, sum to 1 in every row but are not "
              "softmax(z): check the softmax (exp of z - max, divided by the sum over the whole row)."),
    ),
    float32="void(float32[:, ::1], int64[::1], float32[:, ::1])",
    success=lambda f: ("dlogits = (softmax - onehot) / N is correct on "
                       + ", ".join(f"{c.N} rows × {c.C} classes" for c in f.cases)
                       + f", including logits of +100 and -1000 (no overflow); {f.float32}."),
)


def check_softmax_xent_grad(kernel) -> None:
    """Exercise 05.2: ``kernel(logits, labels, dlogits)`` writes ``(softmax(logits) - onehot(labels)) / N``.

    One thread per row: launched with ``ceil(N / 32)`` blocks of 32 threads (a grid-stride loop over rows
    is fine too), on 37 × 13, 5 × 6 and 70 × 10 logits. Row 1 has logits around 100 and row 2 around -1000, so a
    softmax that does not subtract the row maximum overflows (inf / inf) or underflows (0 / 0) in float32.
    Float32 throughout is checked from the PTX where numba-cuda is installed.
    """
    SOFTMAX_XENT_GRAD.check(kernel)


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


def _tree_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """Distinct multiples of 1/4 (every order of additions gives the exact sum), and each block's 2B elements (a row
    of ``chunks``, zero past the end of x). Past 2^16 elements (a realistic case), multiples of 1/4 in [-256, 256),
    not all distinct: distinct ones would grow too large for a block's float32 sum to stay exact."""
    if c.n <= 1 << 16:
        x = (rng.permutation(np.arange(-2 * c.n, 2 * c.n))[:c.n] / 4).astype(np.float32)
    else:
        x = (rng.integers(-1024, 1024, c.n) / 4).astype(np.float32)
    B, blocks = c.block, c.grid
    padded = np.zeros(max(c.n, 2 * B * blocks))
    padded[:c.n] = x
    chunks = padded[:2 * B * blocks].reshape(blocks, 2 * B)
    return {"x": x, "chunks": chunks, "loaded": chunks[:, :B] + chunks[:, B:]}  # loaded: what each thread holds


def _tree_case(B: int, n: int) -> Case:
    return Case(grid=blocks_for(n, 2 * B), block=B, sizes={"n": n})


# n no multiple of 2B (128 and 32 threads), n a multiple of 2B (64), a single element (128), one partial block (32);
# no block below a warp: 05.4's shuffle tail, which also answers 05.3, needs full warps
_TREE_CASES = (_tree_case(128, 300), _tree_case(32, 100), _tree_case(64, 256), _tree_case(128, 1), _tree_case(32, 45))
_MILLION = dataclasses.replace(_tree_case(128, 1_000_003), label="a million values")


def _prefix_message(a: Attempt) -> str:
    B = a.case.block
    for k in (2 ** e for e in range(int(np.log2(B)))):
        if np.array_equal(a.got, [v[:k].sum() for v in a.loaded]):
            return (f"only the first {k} threads' values of each block are summed: the tree starts at a fixed stride "
                    f"{k // 2}, but with {B} threads per block it must start at cuda.blockDim.x // 2 = {B // 2}.")
    return ""


def _no_race(a: Attempt) -> str:
    """The tracer's proof that barriers separate shared-memory writes from other threads' reads (the ✓ phrase)."""
    races = a.races
    if races:
        fail("the sums are right in this run, but the memory-access tracer (which does not depend on the order the "
             "simulator ran the threads in) found a race on shared memory: " + race_sentence(races) +
             " On a GPU such a kernel gives the right sum only by luck.")
    if races is None:
        return ("Not checked: that a barrier separates every write to shared memory from every read of it by another "
                "thread (the memory-access tracer could not run this kernel); on a GPU a race can give the right sum "
                "by luck.")
    return ("No race: the memory-access tracer saw every write to shared memory separated from every read of it by "
            f"another thread by a cuda.syncthreads() (last launch: {a.case.grid} blocks of {a.case.block} threads).")


def _right_blocks(a: Attempt) -> str:
    """The block sizes of the earlier launches, which came out right."""
    return " and ".join(str(b) for b in sorted({c.block for c in a.earlier if c.block != a.case.block}, reverse=True))


def _launch_context(message: str, stage: str, c: Case) -> str:
    """A wrong sum says which launch it came from: the two launches differ in block size."""
    if not stage.startswith("output"):
        return message
    return f"{message} (launch: {c.grid} blocks of {c.block} threads, n = {c.n})"


BLOCK_SUM = KernelExercise(
    number="05.3", task="write the kernel block_sum(x, partial)", call="block_sum(x, partial)", outputs=("partial",),
    inputs=_tree_inputs, reference=lambda x, chunks, loaded: chunks.sum(axis=1),
    cases=_TREE_CASES, realistic=(_MILLION,), rtol=1e-7, atol=0.0, seed=53,
    before=(
        Cause(lambda a: _barriers(a.run.kernel) is not None and not _barriers(a.run.kernel)[0],
              "your kernel never calls cuda.syncthreads(). Threads of a block run in any order on a GPU: before a "
              "thread reads a value another thread wrote to shared memory, the whole block must pass a barrier "
              "(after loading, and after every step of the tree)."),
    ),
    causes=(
        NEVER_WRITTEN,
        Cause(lambda a: bool(a.races) and bool(_barriers(a.run.kernel)[1]),
              lambda a: "there is no cuda.syncthreads() inside your loop, so a thread may read buf[t + stride] before "
                        "the thread that owns it has added into it: put a barrier after every step of the tree. The "
                        "memory-access tracer found such a race: " + race_sentence(a.races) + " (The simulator runs a "
                        "block's threads one after another in a fixed order, so there a race gives the same result "
                        "on every run; on a GPU the order, and so the result, can change from run to run.)"),
        Cause(lambda a: bool(a.races),
              lambda a: "the memory-access tracer found a race on shared memory: " + race_sentence(a.races)),
        equals(lambda a: [ch[:a.case.block].sum() for ch in a.chunks],
               "only the first B elements of each block's 2B are summed: each thread adds x[i] and x[i + blockDim.x], "
               "with i = blockIdx.x * 2 * blockDim.x + threadIdx.x."),
        equals(lambda a: [a.x[k * a.case.block:(k + 1) * a.case.block].astype(np.float64).sum()
                          for k in range(a.case.grid)],
               "block b sums x[bB : bB + B]: here each block covers 2B elements, so i = blockIdx.x * 2 * blockDim.x + "
               "threadIdx.x, and the second element is x[i + blockDim.x]."),
        equals(lambda a: [_doubling_schedule(v) for v in a.loaded],
               "wrong stride order: with `if t < stride`, the stride must start at blockDim.x // 2 and halve (64, 32, "
               "..., 1); growing it (1, 2, 4, ...) adds values that are not partial sums yet."),
        equals(lambda a: [a.x[b * a.case.block:(b + 2) * a.case.block].astype(np.float64).sum()
                          for b in range(a.case.grid)],
               "block b sums x[bB : bB + 2B]: its offset is b·B, but each block covers 2B elements, so "
               "i = blockIdx.x * 2 * blockDim.x + threadIdx.x (block 0 comes out right because its offset is 0)."),
        Cause(lambda a: bool(a.n % (2 * a.case.block) and np.array_equal(a.got[:-1], a.want[:-1])
                             and a.got[-1] != a.want[-1]),
              lambda a: "only the last block's sum is wrong: it has threads whose second element, or both, lie past "
                        f"the end of x (n = {a.n}); each thread must add x[i] only if i < n and x[i + B] only if "
                        "i + B < n (else 0), and must still take part in the tree and reach every cuda.syncthreads()."),
        Cause(lambda a: bool(_prefix_message(a)), _prefix_message),
        Cause(lambda a: any(c.block != a.case.block for c in a.earlier),
              lambda a: f"the sums are right with {_right_blocks(a)} threads per block but not with "
                        f"{a.case.block}: does your kernel assume a block size? Start the stride at "
                        "cuda.blockDim.x // 2."),
    ),
    proofs={"races": _no_race},
    float32="void(float32[::1], float32[::1])",
    frame=_launch_context,
    success=lambda f: ("block sums are correct with "
                       + ", ".join(str(b) for b in sorted({c.block for c in _TREE_CASES}, reverse=True)[:-1])
                       + f" and {min(c.block for c in _TREE_CASES)} threads per block (two elements per thread), n = "
                       + ", ".join(str(c.n) for c in _TREE_CASES) + f" (a multiple of 2B or not); {f.float32}. "
                       + f.races),
)


def check_block_sum(kernel) -> None:
    """Exercise 05.3: ``kernel(x, partial)``: block b writes the sum of x[2bB : 2bB + 2B] to ``partial[b]``.

    B = blockDim.x; each thread loads and adds two elements, x[i] and x[i + B] with i = 2bB + t, then the
    block sums its B values with a tree in shared memory. Launched with 128 and with 32 threads per block (any
    power of two up to 128 must work) and n not a multiple of 2B, so the last block has threads whose second
    element, or both, lie past the end of x; then 64 threads with n = 256 (full blocks), 128 threads with one
    element, 32 threads with n = 45 (one partial block). Values are distinct multiples of 1/4, so every
    order of additions gives the exact sum. Float32 is checked from the PTX, and shared-memory races by the
    memory-access tracer (on the last launch; a wrong sum's race is named on its own launch).
    """
    BLOCK_SUM.check(kernel)


# --------------------------------------------------------------------------------------------------
# 05.4 a warp-shuffle tail

_SHUFFLES = ("shfl_down_sync", "shfl_xor_sync", "shfl_up_sync", "shfl_sync")


def _calls_shuffle(kernel: object) -> bool | None:
    """Whether the kernel, or a device function it names, calls a cuda.shfl_*_sync; None: no source to read."""
    func = python_function(kernel)
    seen: set[int] = set()

    def calls(fn: types.FunctionType) -> bool | None:
        if id(fn) in seen:
            return False
        seen.add(id(fn))
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            return None
        if any(isinstance(n, ast.Attribute) and n.attr in _SHUFFLES for n in ast.walk(tree)):
            return True
        callees = [fn.__globals__.get(name) for name in fn.__code__.co_names]  # device functions it names
        return any(calls(c.py_func) for c in callees if inspect.isfunction(getattr(c, "py_func", None)))

    return calls(func)


def _after_tree(loaded: np.ndarray, width: int) -> np.ndarray:
    """A block's values after the shared-memory tree has halved them down to ``width`` (float64)."""
    buf = loaded.astype(np.float64)
    while buf.size > width:
        buf = buf[:buf.size // 2] + buf[buf.size // 2:]
    return buf


def _warp_no_race(a: Attempt) -> str:
    """The tracer's proof for the shared-memory part (the shuffles exchange registers, not memory)."""
    races = a.races
    if races:
        fail("the sums are right in this run, but the memory-access tracer found a race on shared memory: "
             + race_sentence(races) + " Warp 0 may read buf before the other warps' last additions: a "
             "cuda.syncthreads() must separate the last shared-memory step from the shuffles' first read.")
    if races is None:
        return "Not checked: races on shared memory (the memory-access tracer could not run this kernel)."
    return ("No race on shared memory (memory-access tracer); the shuffles exchange registers, so the last five "
            "steps need neither shared memory nor a barrier.")


_WARP_CASES = (_tree_case(128, 300), _tree_case(64, 200), _tree_case(32, 100))

WARP_REDUCE = KernelExercise(
    number="05.4", task="write the kernel warp_block_sum(x, partial)", call="warp_block_sum(x, partial)",
    outputs=("partial",), inputs=_tree_inputs, reference=lambda x, chunks, loaded: chunks.sum(axis=1),
    cases=_WARP_CASES, realistic=(_MILLION,), rtol=1e-7, atol=0.0, seed=54,
    before=(
        Cause(lambda a: _calls_shuffle(a.run.kernel) is False,
              "your kernel calls no warp shuffle: the last five steps of the tree (strides 16, 8, 4, 2, 1) must be "
              "done by warp 0 with cuda.shfl_down_sync(0xFFFFFFFF, v, offset) on a register, not in shared memory."),
    ),
    causes=(
        NEVER_WRITTEN,
        equals(lambda a: [32 * _after_tree(v, 32)[0] for v in a.loaded],
               "lane 0 doubled its own value five times: it never got another lane's value. cuda.shfl_up_sync reads "
               "lane - delta, and lane 0 has no lane below it; use cuda.shfl_down_sync (lane + delta), or "
               "cuda.shfl_xor_sync."),
        equals(lambda a: [_after_tree(v, 32)[:16].sum() for v in a.loaded],
               "only lanes 0-15 of warp 0 are summed: the shuffles must start at offset 16 (warpSize // 2) and halve: "
               "16, 8, 4, 2, 1."),
        equals(lambda a: [_after_tree(v, 64)[:32].sum() for v in a.loaded],
               "warp 0 sums only 32 of the 64 values your shared-memory tree leaves: the tree must go down to 32 "
               "values (its last step has stride 32: buf[t] += buf[t + 32], then a barrier) before warp 0 shuffles."),
        Cause(lambda a: bool(np.array_equal(a.got[:-1], a.want[:-1]) and a.got[-1] != a.want[-1]),
              lambda a: "only the last block's sum is wrong: threads whose elements lie past the end of x "
                        f"(n = {a.n}) must load 0 and still take part in the tree, the barriers and the shuffles."),
        Cause(lambda a: a.case.block != _WARP_CASES[0].block,
              lambda a: f"the sums are right with {_WARP_CASES[0].block} threads per block but not with "
                        f"{a.case.block}: with {a.case.block} threads the shared-memory tree has "
                        f"{int(np.log2(a.case.block)) - 5} step(s) before the shuffles; start its stride at "
                        "cuda.blockDim.x // 2 and stop it at 32."),
    ),
    proofs={"races": _warp_no_race},
    float32="void(float32[::1], float32[::1])",
    frame=_launch_context,
    success="block sums are correct with 128, 64 and 32 threads per block and n not a multiple of 2B, with a warp-shuffle "
            "tail (your source calls cuda.shfl_*_sync); {float32}. {races}",
)


def check_warp_reduce(kernel) -> None:
    """Exercise 05.4: ``kernel(x, partial)``: 05.3's block sum, with the last five steps done by warp shuffles.

    Block b (B = blockDim.x threads, a power of two from 32 to 128) writes the sum of x[2bB : 2bB + 2B] to
    ``partial[b]``: each thread adds two elements while loading, a tree in shared memory goes down to 32 values,
    then warp 0 sums them in registers with ``cuda.shfl_down_sync`` (or ``shfl_xor_sync``). Launched with 128, 64
    and 32 threads per block and n not a multiple of 2B. The source must call a shuffle; float32 is checked from
    the PTX, shared-memory races by the memory-access tracer. In the simulator nbkit emulates the shuffles
    (:mod:`nbkit.core.warp`).
    """
    WARP_REDUCE.check(kernel)
