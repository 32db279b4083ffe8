"""Checks for notebook 05 (activations, losses and reductions), declared as exercises (:mod:`nbkit.checks.exercise`)."""

from __future__ import annotations

import ast
import inspect
import textwrap
import types

import numpy as np

from nbkit.checks._core import fail, race_sentence
from nbkit.checks.exercise import NEVER_WRITTEN, Attempt, Case, Cause, ExerciseGroup, KernelExercise, equals
from nbkit.core.launch import blocks_for
from nbkit.core.source import python_function

# --------------------------------------------------------------------------------------------------
# 05.1 leaky ReLU forward and backward


def _leaky_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """x with 0, -0 and a tiny positive value first (the derivative at 0 is the slope, as in PyTorch)."""
    x = rng.standard_normal(c.n).astype(np.float32)
    x[:3] = [0.0, -0.0, 1e-30]
    return {"x": x, "dout": rng.standard_normal(c.n).astype(np.float32), "slope": np.float32(0.01)}


def _both_float32(forward: types.SimpleNamespace, backward: types.SimpleNamespace) -> str:
    """The PTX phrase once when both kernels' agree, else each."""
    if forward.float32 == backward.float32:
        return forward.float32
    return f"forward: {forward.float32}; backward: {backward.float32}"


_LEAKY_CASES = (Case(grid=blocks_for(301, 128), block=128, sizes={"n": 301}),)

LEAKY_RELU = ExerciseGroup(
    number="05.1", task="write the kernels leaky_relu_forward and leaky_relu_backward",
    parts=(
        KernelExercise(
            number="05.1", task="write the kernel leaky_relu_forward", call="leaky_relu_forward(x, y, slope)",
            outputs=("y",), names={"y": "forward y"}, inputs=_leaky_inputs,
            reference=lambda x, slope, **_: np.where(x > 0, x, slope * x),
            cases=_LEAKY_CASES, rtol=1e-6, atol=1e-12, seed=51,
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
            cases=_LEAKY_CASES, rtol=1e-6, atol=1e-12, seed=51,
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
    success=lambda f: (f"leaky ReLU forward and backward are correct on {f.parts[0].n} elements, including x = 0; "
                       f"{_both_float32(*f.parts)}."),
)


def check_leaky_relu(forward_kernel, backward_kernel) -> None:
    """Exercise 05.1: leaky ReLU, ``forward_kernel(x, y, slope)`` and ``backward_kernel(dout, x, dx, slope)``.

    Forward: ``y = x`` if ``x > 0`` else ``slope * x``. Backward: ``dx = dout`` if ``x > 0`` else ``slope * dout``
    (at exactly 0 the slope, as in PyTorch). One thread per element, 128 threads per block, slope 0.01,
    301 elements. Both kernels must be float32 throughout: checked in their PTX where numba-cuda is installed.
    """
    LEAKY_RELU.check(forward_kernel, backward_kernel)


# --------------------------------------------------------------------------------------------------
# 05.2 softmax + cross-entropy backward


def _xent_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """Logits with ordinary rows and rows that overflow / underflow a naive softmax in float32."""
    logits = (3 * rng.standard_normal((c.N, c.C))).astype(np.float32)
    logits[1] += 100.0                  # exp(100) overflows float32 (largest ~3.4e38 = exp(88.7))
    logits[2] -= 1000.0                 # exp(-1000) underflows to 0 in every class: 0 / 0
    logits[3, 5] = 500.0                # one huge logit: p = 1 there, ~0 elsewhere
    labels = rng.integers(0, c.C, size=c.N).astype(np.int64)
    labels[:4] = [0, c.C - 1, 3, 5]     # first and last class appear
    labels[4] = c.C - 1
    return {"logits": logits, "labels": labels}


def _xent_reference(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
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


def _wrong_rows(a: Attempt) -> list[int]:
    return sorted({int(r) for r in np.argwhere(a.wrong)[:, 0]})


def _label_message(a: Attempt) -> str:
    return _label_cause(a.got.astype(np.float64), _softmax64(a.logits), a.labels)


def _not_finite_message(a: Attempt) -> str:
    rows = sorted({int(r) for r in np.argwhere(~np.isfinite(a.got))[:, 0]})
    return (f"dlogits is not finite in row(s) {rows[:4]} (logits around +100 or -1000 there): exp overflowed to inf or "
            "underflowed to 0 in every class. Subtract the row's maximum m before exp: softmax(z) = exp(z - m) / "
            "sum(exp(z - m)), so the largest exponent is exp(0) = 1.")


SOFTMAX_XENT_GRAD = KernelExercise(
    number="05.2", task="write the kernel softmax_xent_grad(logits, labels, dlogits)",
    call="softmax_xent_grad(logits, labels, dlogits)", outputs=("dlogits",), inputs=_xent_inputs,
    reference=_xent_reference,
    cases=(Case(grid=blocks_for(37, 32), block=32, sizes={"N": 37, "C": 13}),),
    rtol=1e-4, atol=1e-7, seed=52,
    causes=(
        NEVER_WRITTEN,
        # only the row around -1000 is wrong; the row around +100 (where a maximum starting at 0 is reached) is fine
        Cause(lambda a: _wrong_rows(a) == [2],
              "only row 2 (logits around -1000) is wrong, while row 1 (around +100) is right: your maximum starts at "
              "0, and 0 is larger than every logit of row 2, so exp(z - 0) underflows to 0 in every class (0 / 0 = "
              "nan). Start it at logits[n, 0] (or -inf)."),
        Cause(lambda a: not np.isfinite(a.got).all(), _not_finite_message),
        equals(lambda a: a.N * a.want,
               "the 1/N is missing: the loss is the MEAN over the N rows, so every gradient is divided by N."),
        equals(lambda a: a.want / a.N, "divided by N twice."),
        equals(lambda a: a.want * a.N / a.C, "divided by C (classes) instead of N (rows)."),
        Cause(lambda a: bool(_label_message(a)), _label_message),
        Cause(lambda a: np.allclose(a.got[np.isfinite(a.want).all(axis=1)].sum(axis=1), 0, atol=1e-5),
              "each row sums to 0 as it should, but the probabilities are wrong: check the softmax (exp of z - max, "
              "divided by the sum of the whole row)."),
    ),
    float32="void(float32[:, ::1], int64[::1], float32[:, ::1])",
    success="dlogits = (softmax - onehot) / N is correct on {N} rows × {C} classes, including logits of +100 and "
            "-1000 (no overflow); {float32}.",
)


def check_softmax_xent_grad(kernel) -> None:
    """Exercise 05.2: ``kernel(logits, labels, dlogits)`` writes ``(softmax(logits) - onehot(labels)) / N``.

    One thread per row: launched with ``ceil(N / 32)`` blocks of 32 threads (a grid-stride loop over rows
    is fine too), N = 37 rows of C = 13 classes. Row 1 has logits around 100 and row 2 around -1000, so a
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
    """Distinct multiples of 1/4 (every order of additions gives the exact sum), and each block's 2B elements."""
    x = (rng.permutation(np.arange(-2 * c.n, 2 * c.n))[:c.n] / 4).astype(np.float32)
    B, blocks = c.block, c.grid
    chunks = [np.concatenate([x[2 * k * B:2 * (k + 1) * B], np.zeros(max(0, 2 * (k + 1) * B - c.n))])
              for k in range(blocks)]
    return {"x": x, "chunks": chunks, "loaded": [ch[:B] + ch[B:] for ch in chunks]}  # loaded: what each thread holds


def _tree_case(B: int, n: int) -> Case:
    return Case(grid=blocks_for(n, 2 * B), block=B, sizes={"n": n})


_TREE_CASES = (_tree_case(128, 300), _tree_case(32, 100))  # n is no multiple of 2B


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


def _launch_context(message: str, stage: str, c: Case) -> str:
    """A wrong sum says which launch it came from: the two launches differ in block size."""
    if not stage.startswith("output"):
        return message
    return f"{message} (launch: {c.grid} blocks of {c.block} threads, n = {c.n})"


BLOCK_SUM = KernelExercise(
    number="05.3", task="write the kernel block_sum(x, partial)", call="block_sum(x, partial)", outputs=("partial",),
    inputs=_tree_inputs, reference=lambda x, chunks, loaded: np.array([ch.sum() for ch in chunks]),
    cases=_TREE_CASES, rtol=1e-7, atol=0.0, seed=53,
    before=(
        Cause(lambda a: _barriers(a.run.kernel) is not None and not _barriers(a.run.kernel)[0],
              "your kernel never calls cuda.syncthreads(). Threads of a block run in any order on a GPU: before a "
              "thread reads a value another thread wrote to shared memory, the whole block must pass a barrier "
              "(after loading, and after every step of the tree)."),
    ),
    causes=(
        NEVER_WRITTEN,
        Cause(lambda a: bool(_barriers(a.run.kernel)[1]),
              "there is no cuda.syncthreads() inside your loop: a thread may read buf[t + stride] before the thread "
              "that owns it has added into it. Put a barrier after every step of the tree. (In the simulator the "
              "result of such a race depends on how Python schedules the threads, so it can change from run to run; "
              "on a GPU too.)"),
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
        Cause(lambda a: bool(np.array_equal(a.got[:-1], a.want[:-1]) and a.got[-1] != a.want[-1]),
              lambda a: "only the last block's sum is wrong: it has threads whose second element, or both, lie past "
                        f"the end of x (n = {a.n}); each thread must add x[i] only if i < n and x[i + B] only if "
                        "i + B < n (else 0), and must still take part in the tree and reach every cuda.syncthreads()."),
        Cause(lambda a: bool(_prefix_message(a)), _prefix_message),
        Cause(lambda a: a.case.block != _TREE_CASES[0].block,
              lambda a: f"the sums are right with {_TREE_CASES[0].block} threads per block but not with "
                        f"{a.case.block}: does your kernel assume a block size? Start the stride at "
                        "cuda.blockDim.x // 2."),
    ),
    proofs={"races": _no_race},
    float32="void(float32[::1], float32[::1])",
    frame=_launch_context,
    success="block sums are correct with 128 and 32 threads per block (two elements per thread) and n not a multiple "
            "of 2B; {float32}. {races}",
)


def check_block_sum(kernel) -> None:
    """Exercise 05.3: ``kernel(x, partial)``: block b writes the sum of x[2bB : 2bB + 2B] to ``partial[b]``.

    B = blockDim.x; each thread loads and adds two elements, x[i] and x[i + B] with i = 2bB + t, then the
    block sums its B values with a tree in shared memory. Launched with 128 and with 32 threads per block (any
    power of two up to 128 must work) and n not a multiple of 2B, so the last block has threads whose second
    element, or both, lie past the end of x. Values are distinct multiples of 1/4, so every order of additions
    gives the exact sum. Float32 is checked from the PTX, and shared-memory races by the memory-access tracer.
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
    outputs=("partial",), inputs=_tree_inputs, reference=lambda x, chunks, loaded: np.array([ch.sum() for ch in chunks]),
    cases=_WARP_CASES, rtol=1e-7, atol=0.0, seed=54,
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
