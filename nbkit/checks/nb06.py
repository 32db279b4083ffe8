"""Checks for notebook 06 (convolution and pooling)."""

from __future__ import annotations

import re

import numpy as np

from nbkit.checks._core import (
    SENTINEL,
    CheckFailed,
    compare,
    exercise,
    fail,
    never_written,
    passed,
    require_float32,
    run_kernel,
    unwritten_cause,
)
from nbkit.core.launch import blocks_for


@exercise("06.1", "write the kernels avgpool_forward and avgpool_backward")
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
    y = run_kernel(forward_kernel, (blocks_for(OW, 8), blocks_for(OH, 8), N * C), (8, 8, 1), [x], [(N, C, OH, OW)],
                   output_names=("y",), call="avgpool_forward(x, y)").outputs[0]
    if np.allclose(y, 4 * want_y, rtol=1e-5, atol=1e-6):
        fail("forward returns the sum of each window: divide by 4 for the average.")
    compare("forward y", y, want_y, rtol=1e-5, atol=1e-6)
    dy = r.standard_normal((N, C, OH, OW)).astype(np.float32)
    want_dx = np.zeros_like(x)
    want_dx[:, :, :2 * OH, :2 * OW] = np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4
    dx = run_kernel(backward_kernel, (blocks_for(W, 8), blocks_for(H, 8), N * C), (8, 8, 1), [dy], [(N, C, H, W)],
                    output_names=("dx",), call="avgpool_backward(dy, dx)").outputs[0]
    if np.allclose(dx, 4 * want_dx, rtol=1e-5, atol=1e-6):
        fail("backward passes dy unchanged: each of the 4 inputs contributed 1/4 of the average, so it gets dy / 4.")
    inner = (slice(None), slice(None), slice(0, 2 * OH), slice(0, 2 * OW))
    if np.allclose(dx[inner], want_dx[inner], rtol=1e-5, atol=1e-6) and not np.allclose(dx, want_dx, atol=1e-6):
        fail("the dropped last row/column must get gradient 0 (they never entered a window); was it written at all?")
    compare("backward dx", dx, want_dx, rtol=1e-5, atol=1e-6)
    passed("average pooling forward and backward are correct, including the dropped odd row and column.")


# --------------------------------------------------------------------------------------------------
# 06.2 max-pool forward and backward, PyTorch's tie rule


def _maxpool_data() -> np.ndarray:
    """Small integers, so ties of 2, 3 and 4 equal maxima happen often; negative windows included."""
    r = np.random.default_rng(62)
    x = r.integers(-3, 3, size=(2, 3, 7, 9)).astype(np.float32)
    x[0, 0, 0:2, 0:2] = [[2, 2], [2, 2]]      # four-way tie
    x[0, 0, 0:2, 2:4] = [[-1, -2], [-1, -3]]  # all negative, tie between (0,0) and (1,0)
    x[0, 0, 2:4, 0:2] = [[0, 1], [1, 1]]      # three-way tie, first at (0,1)
    x[0, 0, 2:4, 2:4] = [[0, 0], [1, 0]]      # a single max at (1,0)
    x[0, 0, 4:6, 0:2] = [[-3, -3], [-3, -2]]  # a single max at (1,1), all negative
    return x


def _windows(x: np.ndarray) -> np.ndarray:
    """(N, C, OH, OW, 4): the 2×2 windows, positions in row-major order (0,0), (0,1), (1,0), (1,1)."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    w = x[:, :, :2 * OH, :2 * OW].reshape(N, C, OH, 2, OW, 2).transpose(0, 1, 2, 4, 3, 5)
    return w.reshape(N, C, OH, OW, 4)


def _route(x: np.ndarray, dy: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """dx with dy[n, c, i, j] * pick[n, c, i, j, k] put at window position k of output (i, j)."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    g = (dy[..., None] * pick).reshape(N, C, OH, OW, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, 2 * OH, 2 * OW)
    dx = np.zeros(x.shape)
    dx[:, :, :2 * OH, :2 * OW] = g
    return dx


def maxpool_first_max_reference(x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, dx) of 2×2 max-pooling; the gradient goes to the FIRST maximum in row-major order (as PyTorch)."""
    w = _windows(x.astype(np.float64))
    first = np.eye(4)[w.argmax(axis=-1)]  # argmax returns the first maximum
    return w.max(axis=-1), _route(x, dy, first)


@exercise("06.2", "write the kernels maxpool_forward(x, y) and maxpool_backward(x, dy, dx)")
def check_maxpool(forward_kernel, backward_kernel) -> None:
    """Exercise 06.2: 2×2 max-pooling, stride 2, as ``F.max_pool2d(x, 2)``, without an argmax array.

    ``forward_kernel(x, y)``: one thread per output. ``backward_kernel(x, dy, dx)``: one thread per input pixel,
    which finds out from x whether it is the first maximum (row-major) of its window. Both use
    ``j, i, z = cuda.grid(3)`` with z = n * C + c, blocks of (8, 8, 1). x has shape (2, 3, 7, 9) with small
    integer values, so ties of two, three and four maxima are common.
    """
    x = _maxpool_data()
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    dy = np.random.default_rng(63).standard_normal((N, C, OH, OW)).astype(np.float32)
    want_y, want_dx = maxpool_first_max_reference(x, dy)
    w = _windows(x.astype(np.float64))
    fwd = run_kernel(forward_kernel, (blocks_for(OW, 8), blocks_for(OH, 8), N * C), (8, 8, 1), [x], [(N, C, OH, OW)],
                     output_names=("y",), call="maxpool_forward(x, y)")
    compare("y", fwd.outputs[0], want_y, rtol=0, atol=0, run=fwd, causes=[
        unwritten_cause(fwd),
        (np.maximum(want_y, 0), "the maximum starts at 0, so a window of negative numbers gives 0: start it at the "
                                "window's first element."),
        (w.min(axis=-1), "that is the minimum of each window (the comparison is the wrong way round)."),
        (w.mean(axis=-1), "that is the average of each window, not its maximum."),
        (w[..., 0], "only the first element of each window is taken: compare all four."),
    ])
    bwd = run_kernel(backward_kernel, (blocks_for(W, 8), blocks_for(H, 8), N * C), (8, 8, 1), [x, dy],
                     [(N, C, H, W)], output_names=("dx",), call="maxpool_backward(x, dy, dx)")
    is_max = w == w.max(axis=-1, keepdims=True)
    last = np.eye(4)[3 - is_max[..., ::-1].argmax(axis=-1)]
    colmajor = np.zeros_like(is_max, dtype=np.float64)  # first maximum scanning down the columns: 0, 2, 1, 3
    order = [0, 2, 1, 3]
    first_cm = np.take(order, is_max[..., order].argmax(axis=-1))
    np.put_along_axis(colmajor, first_cm[..., None], 1.0, axis=-1)
    got = bwd.outputs[0]

    def not_a_max(g: np.ndarray) -> str:
        gw = _windows(g)
        bad = np.argwhere((gw != 0) & ~is_max)
        if bad.size == 0:
            return ""
        n, c, i, j, k = (int(v) for v in bad[0])
        return (f"gradient reaches x[{n}, {c}, {2 * i + k // 2}, {2 * j + k % 2}] = {x[n, c, 2 * i + k // 2, 2 * j + k % 2]:g}, "
                f"which is not the maximum of its window (that is {w[n, c, i, j].max():g}): the gradient goes only to "
                "the element that won, and the others get 0.")

    compare("dx", got, want_dx, rtol=0, atol=0, run=bwd, causes=[
        (_route(x, dy, is_max.astype(np.float64)), "on a tie every maximum gets the gradient, so it is counted "
         "several times; PyTorch gives it only to the FIRST maximum in row-major order ((0,0), (0,1), (1,0), (1,1)): "
         "a later position wins only if it is strictly greater than every earlier one."),
        (_route(x, dy, last), "on a tie the LAST maximum gets the gradient (a >= comparison while scanning); PyTorch "
                              "gives it to the first: compare with a strict >."),
        (_route(x, dy, colmajor), "on a tie the first maximum going down the COLUMNS gets the gradient; PyTorch scans "
                                  "the window row by row: (0,0), (0,1), (1,0), (1,1)."),
        (want_dx / 4, "the gradient is divided by 4 (that is average pooling): the maximum passes dy on unchanged."),
        (lambda g: bool(never_written(bwd).any()), "some elements of dx were never written (they still hold -7): "
         "every input pixel must get a value, 0 where it did not win, and in the dropped last row and column."),
        (lambda g: bool(not_a_max(g)), not_a_max(got)),
    ])
    passed("max-pool forward and backward are correct on a (2, 3, 7, 9) input, with PyTorch's rule on ties of two, "
           "three and four (the first maximum in row-major order gets the gradient) and the dropped row and column.")


# --------------------------------------------------------------------------------------------------
# 06.3 conv2d weight gradient


def conv_weight_grad_reference(dy: np.ndarray, x: np.ndarray, KH: int, KW: int, rows: int | None = None,
                               cols: int | None = None, batch: slice = slice(None)) -> np.ndarray:
    """dW[f, c, i, j] = Σ_n Σ_y Σ_x dY[n, f, y, x] · X[n, c, y + i, x + j] (over the first ``rows`` × ``cols`` outputs)."""
    dy = dy.astype(np.float64)[batch]
    x = x.astype(np.float64)[batch]
    OH, OW = dy.shape[2], dy.shape[3]
    rows, cols = rows or OH, cols or OW
    dw = np.empty((dy.shape[1], x.shape[1], KH, KW))
    for i in range(KH):
        for j in range(KW):
            dw[:, :, i, j] = np.einsum("nfyx,ncyx->fc", dy[:, :, :rows, :cols], x[:, :, i:i + rows, j:j + cols])
    return dw


def _swapped_reference(dy: np.ndarray, x: np.ndarray, KH: int, KW: int) -> np.ndarray:
    """The common slip X[n, c, y + j, x + i] (kernel offsets swapped); x must be large enough."""
    dy64, x64 = dy.astype(np.float64), x.astype(np.float64)
    OH, OW = dy.shape[2], dy.shape[3]
    dw = np.empty((dy.shape[1], x.shape[1], KH, KW))
    for i in range(KH):
        for j in range(KW):
            dw[:, :, i, j] = np.einsum("nfyx,ncyx->fc", dy64, x64[:, :, j:j + OH, i:i + OW])
    return dw


_WG_BLOCK = (8, 4, 1)


@exercise("06.3", "write the kernel conv2d_weight_grad(dy, x, dw)")
def check_conv_weight_grad(kernel) -> None:
    """Exercise 06.3: ``kernel(dy, x, dw)``: dW[f, c, i, j] = Σ_n Σ_y Σ_x dY[n, f, y, x] · X[n, c, y + i, x + j].

    One thread per weight: ``j, i, z = cuda.grid(3)`` with z = f * C + c, blocks of (8, 4, 1) threads,
    grid (1, 1, F * C). Sizes are odd and nothing is square: x (2, 3, 9, 13), a 3 × 5 kernel, dy (2, 4, 7, 9),
    so swapped i and j, a missed image of the batch or a loop one step short all give wrong numbers.
    Float32 is checked from the PTX.
    """
    r = np.random.default_rng(64)
    N, C, H, W, F, KH, KW = 2, 3, 9, 13, 4, 3, 5
    OH, OW = H - KH + 1, W - KW + 1
    x = r.standard_normal((N, C, H, W)).astype(np.float32)
    dy = r.standard_normal((N, F, OH, OW)).astype(np.float32)
    want = conv_weight_grad_reference(dy, x, KH, KW)
    grid = (blocks_for(KW, _WG_BLOCK[0]), blocks_for(KH, _WG_BLOCK[1]), F * C)
    call = "conv2d_weight_grad(dy, x, dw)"
    try:
        run = run_kernel(kernel, grid, _WG_BLOCK, [dy, x], [(F, C, KH, KW)], output_names=("dw",), call=call)
    except CheckFailed as exc:
        if "outside an array" not in str(exc):
            raise
        # The simulator says which axis the bad index was on: the batch and channel axes have their own causes.
        found = re.search(r"axis (\d+) with size (\d+)", str(exc))
        axis, size = (int(found.group(1)), int(found.group(2))) if found else (None, None)
        if axis == 0 and size == N:
            raise CheckFailed(f"{exc} Likely cause here: an index on the batch axis (axis 0, size N = {N}) runs too "
                              "far: the loop over the images must run over range(x.shape[0]) (= dy.shape[0] = N), "
                              f"not over dy.shape[1] (F = {F}) or another size.") from None
        if axis in (0, 1):
            raise CheckFailed(f"{exc} Likely cause here: an index on the filter or channel axis (axis {axis}, size "
                              f"{size}) runs too far: the split of z = f * C + c is wrong. It is f, c = z // C, z % C "
                              f"with C = x.shape[1] = {C} (F = {F} filters, so z < F * C = {F * C}).") from None
        # Diagnose with a larger x (the extra rows and columns are never read by a correct kernel).
        big = r.standard_normal((N, C, H + KW, W + KH)).astype(np.float32)
        big[:, :, :H, :W] = x
        try:
            probe = run_kernel(kernel, grid, _WG_BLOCK, [dy, big], [(F, C, KH, KW)], call=call).outputs[0]
        except CheckFailed:
            probe = None
        if probe is not None and np.allclose(probe, _swapped_reference(dy, big, KH, KW), rtol=1e-4, atol=1e-4):
            cause = ("i and j are swapped in the read of x: the kernel row i moves down the rows, so it is "
                     "x[n, c, y + i, x + j]; with a 3 × 5 kernel the swapped read runs off the image.")
        else:
            cause = ("a loop over the output positions runs too far (y in range(OH) and x in range(OW), with OH, OW = "
                     "dy.shape[2], dy.shape[3]), or i and j are swapped somewhere (the kernel is 3 × 5).")
        raise CheckFailed(f"{exc} Likely cause here: {cause}") from None
    got = run.outputs[0]
    mask = never_written(run)
    KJ, KI = np.meshgrid(np.arange(KW), np.arange(KH))
    swapped_axes = bool(mask.any() and np.array_equal(mask, np.broadcast_to(KJ >= _WG_BLOCK[1], mask.shape)))
    compare("dw", got, want, rtol=1e-4, atol=1e-4, run=run, causes=[
        (lambda g: swapped_axes, "the columns j >= 4 of dw were never written: i and j come from the wrong axes. "
                                 "Thread x runs along the kernel's columns: j, i, z = cuda.grid(3)."),
        unwritten_cause(run),
        (want + SENTINEL, "dw still contains its starting value (-7 here): you add into dw without setting it to 0 "
                          "first. Sum into a local float32(0) and write dw once."),
        (conv_weight_grad_reference(dy, x, KH, KW, batch=slice(0, 1)), "only image 0 is summed: the weight gradient "
                                                                       "is a sum over the whole batch n as well."),
        (conv_weight_grad_reference(dy, x, KH, KW, batch=slice(N - 1, N)), "only the last image is summed (or each "
         "image overwrites the previous one): accumulate over the whole batch."),
        (conv_weight_grad_reference(dy, x, KH, KW, rows=OH - 1), "the last output row is missing from the sum: "
                                                                 "y runs over range(OH), OH = dy.shape[2]."),
        (conv_weight_grad_reference(dy, x, KH, KW, cols=OW - 1), "the last output column is missing from the sum: "
                                                                 "x runs over range(OW), OW = dy.shape[3]."),
        (conv_weight_grad_reference(dy, x, KH, KW, rows=OH - 1, cols=OW - 1), "the last output row and column are "
                                                                             "missing: use range(OH) and range(OW)."),
    ])
    f32 = require_float32(kernel, "void(float32[:, :, :, ::1], float32[:, :, :, ::1], float32[:, :, :, ::1])")
    passed(f"dw is correct for x {x.shape}, a {KH} × {KW} kernel and dy {dy.shape} (sum over batch and positions); "
           f"{f32}.")


# --------------------------------------------------------------------------------------------------
# 06.4 find the bugs in the seed article's conv kernel


def seed_conv_reference(inp: np.ndarray, weights: np.ndarray, bias: float, height: int, width: int,
                        depth: int) -> np.ndarray:
    """The convolution the seed kernel means: 'same' 3 × 3 (padding 1), one output map, one bias."""
    x = np.zeros((depth, height + 2, width + 2))
    x[:, 1:-1, 1:-1] = inp.reshape(depth, height, width)
    k = weights.reshape(depth, 3, 3).astype(np.float64)
    out = np.full((height, width), float(bias))
    for i in range(3):
        for j in range(3):
            out += np.einsum("dhw,d->hw", x[:, i:i + height, j:j + width], k[:, i, j])
    return out.ravel()


_SEED_BLOCK = (8, 8)


class _OutputFirst:
    """Launches a kernel whose output comes first, as in the article, although run_kernel passes outputs after inputs."""

    def __init__(self, kernel: object) -> None:
        self.kernel = kernel
        self.py_func = getattr(kernel, "py_func", kernel)

    def __getitem__(self, config: object):
        launcher = self.kernel[config]
        return lambda inp, weights, biases, output, *extra: launcher(output, inp, weights, biases, *extra)


@exercise("06.4", "fix the seed kernel in seed_conv2d_fixed(output, input, weights, biases, width, height, depth)")
def check_seed_conv_fixed(kernel) -> None:
    """Exercise 06.4: the seed article's conv kernel, fixed. Flat float32 arrays as in the article.

    ``kernel(output, input, weights, biases, width, height, depth)``: a 'same' 3 × 3 convolution (padding 1,
    output height × width) of a depth-channel image into ONE feature map, with ONE bias, ``biases[0]``
    (the check passes, as the article does, as many biases as pixels: the others must not be used).
    Launched with a 2-D grid covering the image, (8, 8) threads per block, x along columns: the image is
    9 × 11, so the grid has threads outside it. Float32 is checked from the PTX.
    """
    r = np.random.default_rng(65)
    height, width, depth = 9, 11, 3
    inp = r.standard_normal(depth * height * width).astype(np.float32)
    weights = r.standard_normal(depth * 9).astype(np.float32)
    biases = (10 + np.arange(height * width)).astype(np.float32)  # biases[0] = 10; per-pixel values differ
    want = seed_conv_reference(inp, weights, biases[0], height, width, depth)
    grid = (blocks_for(width, _SEED_BLOCK[0]), blocks_for(height, _SEED_BLOCK[1]))
    extra = (np.int32(width), np.int32(height), np.int32(depth))
    call = "seed_conv2d_fixed(output, input, weights, biases, width, height, depth)"
    try:
        run = run_kernel(_OutputFirst(kernel), grid, _SEED_BLOCK, [inp, weights, biases], [(height * width,)],
                         extra=extra, output_names=("output",), call=call)
    except CheckFailed as exc:
        if "outside" in str(exc) or "past the end" in str(exc) or "before the start" in str(exc):
            raise CheckFailed(f"{exc} This is the seed's missing bounds guard: the grid has {grid[0] * 8} × "
                              f"{grid[1] * 8} threads for a {height} × {width} image.") from None
        raise
    got = run.outputs[0].astype(np.float64)
    written = ~never_written(run)
    no_bias = want - biases[0]
    bugs = []
    x_threads = grid[0] * _SEED_BLOCK[0]
    if (~written).any() and written.any() and np.array_equal(np.flatnonzero(written), np.arange(x_threads)):
        bugs.append(f"only output[0] ... output[{x_threads - 1}] are written: idx = blockIdx.x * blockDim.x + "
                    "threadIdx.x ignores the y part of the 2-D grid, so many threads compute the same pixel and most "
                    "pixels are never computed. Take col, row = cuda.grid(2) and idx = row * width + col.")
    elif (~written).any():
        bugs.append(f"{int((~written).sum())} pixels were never written, e.g. output[{int(np.flatnonzero(~written)[0])}]:"
                    " every pixel (row, col) of the height × width image needs one thread.")
    per_pixel = np.isclose(got, no_bias + biases, rtol=1e-4, atol=1e-4) & written
    if per_pixel[1:].any() and not np.isclose(got, want, rtol=1e-4, atol=1e-4)[written].all():
        bugs.append("the bias is taken per pixel (biases[row * width + col]): a convolution has one bias per output "
                    "channel, shared by every pixel; this layer has one channel, so biases[0].")
    compare("output", got, want, rtol=1e-4, atol=1e-4, run=run, causes=[
        (lambda g: bool(bugs), " ".join(f"({k + 1}) {b}" for k, b in enumerate(bugs))),
        (lambda g: np.allclose(g.reshape(height, width)[1:-1, 1:-1], want.reshape(height, width)[1:-1, 1:-1],
                               rtol=1e-4, atol=1e-4),
         "the inside of the image is right, the border is not: 'same' padding means neighbours outside the "
         "image count as 0, so skip them (0 <= x < height and 0 <= y < width)."),
    ])
    f32 = require_float32(kernel, "void(float32[::1], float32[::1], float32[::1], float32[::1], int32, int32, int32)")
    passed(f"the fixed seed kernel computes the 'same' 3 × 3 convolution of a {depth}-channel {height} × {width} image: "
           f"one thread per pixel from a 2-D grid, a bounds guard, one bias; {f32}.")
