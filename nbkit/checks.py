"""Self-checks for the exercises. Each says what is right, or what exactly is wrong.

Convention (fixed for the whole course): the learner's solution cell carries the cell tag
``solution``; the cell right after it calls one ``check_*`` function from here. A passing check
prints a line starting with ✓; a failing one raises :class:`CheckFailed` whose message starts with ✗
and explains the mistake. ``python -m nbkit.strip`` removes the solution cells to make the learner's copy.
"""

from __future__ import annotations

import numpy as np

from .launch import blocks_for, launch


class CheckFailed(AssertionError):
    """The learner's answer is wrong; the message says how."""


def _fail(message: str) -> None:
    raise CheckFailed("✗ " + message)


def _passed(message: str) -> None:
    print("✓ " + message)


def _run_guarded(kernel, grid, block, inputs: list, out_shape: tuple[int, ...], sentinel: float = -7.0,
                 extra: tuple = ()) -> np.ndarray:
    """Launch ``kernel(*inputs, out, *extra)`` with ``out`` a view of a padded buffer, to catch stray writes.

    The simulator raises IndexError on out-of-bounds access; a GPU does not check, so the output is a
    view into a larger buffer filled with a sentinel: a changed sentinel means a missing bounds guard.
    """
    size = int(np.prod(out_shape))
    pad = 1024
    out_buf = np.full(size + pad, sentinel, dtype=np.float32)
    out = out_buf[:size].reshape(out_shape)
    try:
        launch(kernel, grid, block, *inputs, out, *extra)
    except IndexError as exc:
        _fail(f"a thread accessed an element past the end of an array ({exc}). The grid has more threads than "
              "elements: every thread must check its index before reading or writing (the bounds guard).")
    if np.any(out_buf[size:] != sentinel):
        _fail("threads past the end of the array wrote to memory they do not own: add the bounds guard.")
    return out


def check_saxpy(kernel, n: int = 300, threads: int = 128) -> None:
    """Exercise 00.1: ``out[i] = alpha * x[i] + y[i]`` for float32 vectors, one thread per element.

    The kernel's parameters must be ``(alpha, x, y, out)``.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    alpha = np.float32(2.5)
    expected = alpha * x + y
    out = _run_guarded(kernel, blocks_for(n, threads), threads, [alpha, x, y], (n,))
    if not np.allclose(out, expected, rtol=1e-6, atol=1e-6):
        wrong = np.flatnonzero(~np.isclose(out, expected, rtol=1e-6, atol=1e-6))
        i = int(wrong[0])
        hint = ""
        if np.allclose(out, x + alpha * y, rtol=1e-6):
            hint = " It looks like alpha multiplies y instead of x."
        elif np.all(out[wrong] == -7.0):
            hint = " Those elements were never written: does every element get a thread?"
        _fail(f"{wrong.size} of {n} elements are wrong; e.g. out[{i}] = {out[i]:.6g}, expected "
              f"{alpha} * {x[i]:.6g} + {y[i]:.6g} = {expected[i]:.6g}.{hint}")
    _passed(f"saxpy is correct on {n} elements with {blocks_for(n, threads)} blocks of {threads} threads "
            f"({blocks_for(n, threads) * threads - n} idle threads were guarded).")


def _compare(name: str, got, want, rtol: float = 1e-6, atol: float = 0.0) -> None:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != np.shape(want):
        _fail(f"{name} has shape {got.shape}, expected {np.shape(want)}.")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        i = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
        _fail(f"{name} is wrong: at index {tuple(int(j) for j in i)} you have {got[i]:.6g}, expected {want[i]:.6g}.")


def check_tanh_backward(fn) -> None:
    """Exercise 01.1: ``fn(dout, y)`` returns ∂L/∂x for ``y = tanh(x)``, given the upstream gradient."""
    from . import reference as ref

    r = np.random.default_rng(11)
    x = r.standard_normal((4, 5)) * 2
    y, dout = np.tanh(x), r.standard_normal((4, 5))
    got = np.asarray(fn(dout, y), dtype=np.float64)
    want = ref.tanh_backward(dout, y)
    if got.shape == want.shape and not np.allclose(got, want):
        if np.allclose(got, 1 - y**2):
            _fail("you returned tanh'(x) = 1 - y² but forgot to multiply by the upstream gradient dout.")
        if np.allclose(got, dout * (1 - np.tanh(y) ** 2)):
            _fail("fn receives y = tanh(x), not x: use 1 - y², not 1 - tanh(y)².")
        if np.allclose(got, dout * (1 - y)):
            _fail("tanh'(x) is 1 - tanh(x)², so 1 - y², not 1 - y.")
    _compare("dx", got, want, rtol=1e-9)
    _passed("tanh backward is dout * (1 - y²): correct.")


def check_dense_backward(fn) -> None:
    """Exercise 01.2: ``fn(dZ, A, W)`` returns ``(dA, dW, db)`` for ``Z = A Wᵀ + b`` (samples as rows)."""
    from . import reference as ref

    r = np.random.default_rng(12)
    A, W, dZ = r.standard_normal((5, 3)), r.standard_normal((2, 3)), r.standard_normal((5, 2))
    got = fn(dZ, A, W)
    if not isinstance(got, tuple) or len(got) != 3:
        _fail("fn must return a tuple (dA, dW, db).")
    for name, g, w, shape_of in zip(("dA", "dW", "db"), got, ref.dense_backward(dZ, A, W), ("A", "W", "b")):
        if np.shape(g) != w.shape:
            hint = " (transposed?)" if np.shape(g) == w.shape[::-1] else ""
            _fail(f"{name} has shape {np.shape(g)}{hint}; a gradient always has the shape of its variable, "
                  f"here {shape_of}: {w.shape}.")
        _compare(name, g, w, rtol=1e-9)
    _passed("dA = dZ W, dW = dZᵀ A, db = column sums of dZ: all three correct.")


def check_sigmoid_example(dW, db) -> None:
    """Exercise 02.1: the gradients of the article's 3→2 example with sigmoid in place of ReLU."""
    X, W, b, Y = (np.array([1.0, 2, 3]), np.array([[1.0, 2, 3], [4, 5, 6]]), np.array([1.0, 2]), np.array([0.0, 1]))
    s = 1 / (1 + np.exp(-(W @ X + b)))
    delta = (s - Y) * s * (1 - s)
    if np.shape(dW) == (2, 3) and np.allclose(dW, np.outer(s - Y, X)):
        _fail("you left out the sigmoid's derivative σ'(z) = σ(z)(1 - σ(z)) from δ.")
    _compare("dW", dW, np.outer(delta, X), rtol=1e-6, atol=1e-40)
    _compare("db", db, delta, rtol=1e-6, atol=1e-40)
    _passed(f"correct: δ = {delta[0]:.4g}, {delta[1]:.4g}. The sigmoid saturates at z = 15 and 34, so the "
            "gradient almost vanishes.")


def check_row_sum(kernel, rows: int = 37, cols: int = 13, threads: int = 32) -> None:
    """Exercise 03.1: ``kernel(M, out)`` with one thread per row writes ``out[r] = sum of row r``.

    Launched with ``blocks_for(rows, 32)`` blocks of 32 threads over a (37, 13) float32 matrix.
    """
    M = np.random.default_rng(31).standard_normal((rows, cols)).astype(np.float32)
    out = _run_guarded(kernel, blocks_for(rows, threads), threads, [M], (rows,))
    want = M.sum(axis=1, dtype=np.float64)
    if not np.allclose(out, want, rtol=1e-5, atol=1e-5):
        if np.allclose(out[:cols], M.sum(axis=0)[:rows], rtol=1e-5, atol=1e-5):
            _fail("out[i] holds the sum of column i: a row sum runs along the second index, M[r, j] for j in range(M.shape[1]).")
    _compare("out", out, want, rtol=1e-5, atol=1e-5)
    _passed(f"row sums of a {rows}x{cols} matrix are correct ({blocks_for(rows, threads)} blocks of {threads} threads).")


def check_transposed_matmul(kernel, M: int = 19, K: int = 21, N: int = 17, tile: int = 16) -> None:
    """Exercise 04.1: ``kernel(A, B, C)`` computes ``C = Aᵀ B`` for A (K, M), B (K, N), C (M, N).

    Launched like the course's matmul kernels: blocks of (16, 16) threads, grid (ceil(N/16), ceil(M/16)),
    thread x along the columns of C and thread y along its rows: ``col, row = cuda.grid(2)``.
    """
    r = np.random.default_rng(41)
    A = r.standard_normal((K, M)).astype(np.float32)
    B = r.standard_normal((K, N)).astype(np.float32)
    out = _run_guarded(kernel, (blocks_for(N, tile), blocks_for(M, tile)), (tile, tile), [A, B], (M, N))
    want = A.T.astype(np.float64) @ B
    if not np.allclose(out, want, rtol=1e-4, atol=1e-4) and np.all(out == -7.0):
        _fail("no element of C was written: check the guard (row < C.shape[0] and col < C.shape[1]).")
    _compare("C", out, want, rtol=1e-4, atol=1e-4)
    _passed(f"C = Aᵀ B is correct for A {A.shape}, B {B.shape}, without copying a transposed A.")


def check_leaky_relu(forward_kernel, backward_kernel, slope: float = 0.01, n: int = 301) -> None:
    """Exercise 05.1: leaky ReLU, ``forward_kernel(x, y, slope)`` and ``backward_kernel(dout, x, dx, slope)``.

    Forward: ``y = x`` if ``x > 0`` else ``slope * x``. Backward: ``dx = dout`` if ``x > 0`` else ``slope * dout``
    (at exactly 0 the slope, as in PyTorch). One thread per element, 128 threads per block.
    """
    r = np.random.default_rng(51)
    x = r.standard_normal(n).astype(np.float32)
    x[:3] = [0.0, -0.0, 1e-30]
    dout = r.standard_normal(n).astype(np.float32)
    s = np.float32(slope)
    grid = blocks_for(n, 128)
    y = _run_guarded(forward_kernel, grid, 128, [x], (n,), extra=(s,))
    want_y = np.where(x > 0, x, s * x)
    if np.allclose(y, np.maximum(x, 0)):
        _fail("forward returns max(x, 0): for x <= 0 leaky ReLU returns slope * x, not 0.")
    _compare("forward y", y, want_y, rtol=1e-6, atol=1e-12)
    dx = _run_guarded(backward_kernel, grid, 128, [dout, x], (n,), extra=(s,))
    want_dx = np.where(x > 0, dout, s * dout)
    if np.allclose(dx, np.where(x > 0, dout, 0)):
        _fail("backward passes no gradient where x <= 0: there the derivative is the slope, so dx = slope * dout.")
    if np.allclose(dx[3:], want_dx[3:]) and not np.allclose(dx[:2], want_dx[:2]):
        _fail("dx at x = 0 is wrong: use the slope there (x > 0 is false at 0), as PyTorch does.")
    _compare("backward dx", dx, want_dx, rtol=1e-6, atol=1e-12)
    _passed(f"leaky ReLU forward and backward are correct on {n} elements, including x = 0.")


def check_avgpool(forward_kernel, backward_kernel) -> None:
    """Exercise 06.1: 2×2 average pooling with stride 2, as ``torch.nn.functional.avg_pool2d(x, 2)``.

    ``forward_kernel(x, y)``: one thread per output, ``j, i, z = cuda.grid(3)`` with z = n * C + c.
    ``backward_kernel(dy, dx)``: one thread per input pixel, the same mapping over the input.
    Both are launched with blocks of (8, 8, 1) threads; x has shape (2, 3, 7, 9) (odd: the last row and
    column are dropped, and their gradient is 0).
    """
    N, C, H, W = 2, 3, 7, 9
    OH, OW = H // 2, W // 2
    r = np.random.default_rng(61)
    x = r.standard_normal((N, C, H, W)).astype(np.float32)
    windows = x[:, :, :2 * OH, :2 * OW].reshape(N, C, OH, 2, OW, 2)
    want_y = windows.mean(axis=(3, 5))
    y = _run_guarded(forward_kernel, (blocks_for(OW, 8), blocks_for(OH, 8), N * C), (8, 8, 1), [x], (N, C, OH, OW))
    if np.allclose(y, 4 * want_y, rtol=1e-5, atol=1e-6):
        _fail("forward returns the sum of each window: divide by 4 for the average.")
    _compare("forward y", y, want_y, rtol=1e-5, atol=1e-6)
    dy = r.standard_normal((N, C, OH, OW)).astype(np.float32)
    want_dx = np.zeros_like(x)
    want_dx[:, :, :2 * OH, :2 * OW] = np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4
    dx = _run_guarded(backward_kernel, (blocks_for(W, 8), blocks_for(H, 8), N * C), (8, 8, 1), [dy], (N, C, H, W))
    if np.allclose(dx, 4 * want_dx, rtol=1e-5, atol=1e-6):
        _fail("backward passes dy unchanged: each of the 4 inputs contributed 1/4 of the average, so it gets dy / 4.")
    inner = (slice(None), slice(None), slice(0, 2 * OH), slice(0, 2 * OW))
    if np.allclose(dx[inner], want_dx[inner], rtol=1e-5, atol=1e-6) and not np.allclose(dx, want_dx, atol=1e-6):
        _fail("the dropped last row/column must get gradient 0 (they never entered a window); was it written at all?")
    _compare("backward dx", dx, want_dx, rtol=1e-5, atol=1e-6)
    _passed("average pooling forward and backward are correct, including the dropped odd row and column.")


def check_sigmoid_layer(layer_cls) -> None:
    """Exercise 07.1: a ``Sigmoid`` layer with ``forward(x)`` and ``backward(dout)``, like ``nbkit.layers.Tanh``."""
    from numba import cuda

    from . import reference as ref

    r = np.random.default_rng(71)
    x = (r.standard_normal((5, 7)) * 3).astype(np.float32)
    dout = r.standard_normal((5, 7)).astype(np.float32)
    layer = layer_cls()
    y = layer.forward(cuda.to_device(x))
    y = y.copy_to_host() if hasattr(y, "copy_to_host") else np.asarray(y)
    _compare("forward", y, ref.sigmoid_forward(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    dx = layer.backward(cuda.to_device(dout))
    dx = dx.copy_to_host() if hasattr(dx, "copy_to_host") else np.asarray(dx)
    want = ref.sigmoid_backward(dout.astype(np.float64), ref.sigmoid_forward(x.astype(np.float64)))
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    if np.allclose(dx, dout * (1 / (1 + np.exp(-s))) * (1 - 1 / (1 + np.exp(-s))), rtol=1e-4, atol=1e-6):
        _fail("backward applied the sigmoid to its output again: sigmoid_backward takes y = σ(x) itself.")
    if np.allclose(dx, dout * ref.sigmoid_backward(np.ones_like(x), x.astype(np.float64)), rtol=1e-4, atol=1e-6):
        _fail("backward passed the input x where sigmoid_backward needs the forward output y = σ(x).")
    _compare("backward", dx, want, rtol=1e-4, atol=1e-6)
    _passed("the Sigmoid layer's forward and backward agree with the reference.")
