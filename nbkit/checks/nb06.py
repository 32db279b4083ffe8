"""Checks for notebook 06 (convolution and pooling), declared as exercises (:mod:`nbkit.checks.exercise`)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from nbkit.checks._core import CheckFailed, run_kernel
from nbkit.checks.exercise import (
    NEVER_WRITTEN,
    Attempt,
    Case,
    Cause,
    ExerciseGroup,
    KernelExercise,
    equals,
    summed_into_output,
)
from nbkit.core.launch import blocks_for

_POOL_BLOCK = (8, 8, 1)


def _pool_case(N: int, C: int, H: int, W: int, over: str) -> Case:
    """z = n * C + c and x along the columns: ``j, i, z = cuda.grid(3)`` over the outputs (forward), ``col, row, z`` over
    the input pixels (backward)."""
    rows, cols = (H // 2, W // 2) if over == "outputs" else (H, W)
    return Case(grid=(blocks_for(cols, 8), blocks_for(rows, 8), N * C), block=_POOL_BLOCK,
                sizes={"N": N, "C": C, "H": H, "W": W})


# --------------------------------------------------------------------------------------------------
# 06.1 average pooling


def _avgpool_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    x = rng.standard_normal((c.N, c.C, c.H, c.W)).astype(np.float32)
    return {"x": x, "dy": rng.standard_normal((c.N, c.C, c.H // 2, c.W // 2)).astype(np.float32)}


def _avgpool_forward(x: np.ndarray, **_) -> np.ndarray:
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    return x[:, :, :2 * OH, :2 * OW].reshape(N, C, OH, 2, OW, 2).mean(axis=(3, 5))


def _avgpool_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy / 4 to each pixel of its window; the dropped odd last row and column get 0."""
    OH, OW = dy.shape[2:]
    dx = np.zeros(x.shape)
    dx[:, :, :2 * OH, :2 * OW] = np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4
    return dx


def _inside_right(a: Attempt) -> bool:
    """dx is right on the pooled part of the image, wrong on the dropped last row or column."""
    inner = (slice(None), slice(None), slice(0, 2 * (a.H // 2)), slice(0, 2 * (a.W // 2)))
    return np.allclose(a.got[inner], a.want[inner], rtol=1e-5, atol=1e-6) and not np.allclose(a.got, a.want, atol=1e-6)


_AVG_SHAPE = (2, 3, 7, 9)  # odd: the last row and column are dropped, and their gradient is 0
# then: even sizes (nothing dropped), one output column, a single row of 9 windows in a wide image (a grid of 2 x 1
# blocks: x along the rows instead of the columns fails there; the statement fixes j, i, z = cuda.grid(3))
_AVG_SHAPES = (_AVG_SHAPE, (1, 2, 4, 6), (3, 1, 5, 2), (1, 1, 2, 19))
_AVG_SIGNATURE = "void(float32[:, :, :, ::1], float32[:, :, :, ::1])"
_LENET_POOL = (64, 6, 28, 28)  # LeNet's first pooling layer, on a batch of 64: grid z = N * C = 384


def _realistic_pool(over: str) -> tuple[Case, ...]:
    return (dataclasses.replace(_pool_case(*_LENET_POOL, over=over), label="LeNet's first pooling layer, batch 64"),)


AVGPOOL = ExerciseGroup(
    number="06.1", task="write the kernels avgpool_forward and avgpool_backward",
    parts=(
        KernelExercise(
            number="06.1", task="write the kernel avgpool_forward(x, y)", call="avgpool_forward(x, y)",
            outputs=("y",), names={"y": "forward y"}, inputs=_avgpool_inputs, reference=_avgpool_forward,
            cases=tuple(_pool_case(*shape, over="outputs") for shape in _AVG_SHAPES), rtol=1e-5, atol=1e-6, seed=61,
            realistic=_realistic_pool("outputs"),
            before=(equals(lambda a: 4 * a.want, "forward returns the sum of each window: divide by 4 for the average."),),
            causes=(NEVER_WRITTEN,), float32=_AVG_SIGNATURE,  # the hint asks for float32(0.25)
        ),
        KernelExercise(
            number="06.1", task="write the kernel avgpool_backward(dy, dx)", call="avgpool_backward(dy, dx)",
            outputs=("dx",), names={"dx": "backward dx"}, inputs=_avgpool_inputs, reference=_avgpool_backward,
            cases=tuple(_pool_case(*shape, over="pixels") for shape in _AVG_SHAPES), rtol=1e-5, atol=1e-6, seed=61,
            realistic=_realistic_pool("pixels"),
            causes=(NEVER_WRITTEN,), float32=_AVG_SIGNATURE,
            before=(
                equals(lambda a: 4 * a.want, "backward passes dy unchanged: each of the 4 inputs contributed 1/4 of the "
                                             "average, so it gets dy / 4."),
                Cause(_inside_right, "the dropped last row/column must get gradient 0 (they never entered a window); "
                                     "was it written at all?"),
            ),
        ),
    ),
    success=lambda f: (f"average pooling forward and backward are correct on inputs of shape "
                       f"{', '.join(str(c.x.shape) for c in f.parts[0].cases)}, including the dropped odd row and "
                       f"column; {f.float32}."),
)


def check_avgpool(forward_kernel, backward_kernel) -> None:
    """Exercise 06.1: 2×2 average pooling with stride 2, as ``torch.nn.functional.avg_pool2d(x, 2)``.

    ``forward_kernel(x, y)``: one thread per output, ``j, i, z = cuda.grid(3)`` with z = n * C + c.
    ``backward_kernel(dy, dx)``: one thread per input pixel, ``col, row, z = cuda.grid(3)``.
    Both are launched with blocks of (8, 8, 1) threads on x of shapes (2, 3, 7, 9) (odd: the last row and
    column are dropped, and their gradient is 0), (1, 2, 4, 6), (3, 1, 5, 2) and (1, 1, 2, 19). Float32 is
    checked from the PTX (the hint asks for float32(0.25)).
    """
    AVGPOOL.check(forward_kernel, backward_kernel)


# --------------------------------------------------------------------------------------------------
# 06.2 max-pool forward and backward, PyTorch's tie rule


def _maxpool_data(shape: tuple[int, int, int, int] = (2, 3, 7, 9), seed: int = 62) -> np.ndarray:
    """Small integers, so ties of 2, 3 and 4 equal maxima happen often; negative windows included."""
    r = np.random.default_rng(seed)
    x = r.integers(-3, 3, size=shape).astype(np.float32)
    if shape[2] < 6 or shape[3] < 4:
        return x
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


def _maxpool_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    x = _maxpool_data((c.N, c.C, c.H, c.W), seed=62 + c.H * 100 + c.W)
    return {"x": x, "dy": rng.standard_normal((c.N, c.C, c.H // 2, c.W // 2)).astype(np.float32)}


def _tie_to(a: Attempt, rule: str) -> np.ndarray:
    """dx when a tie gives the gradient to every maximum, the last one, or the first one down the columns."""
    w = _windows(a.x.astype(np.float64))
    is_max = w == w.max(axis=-1, keepdims=True)
    if rule == "every":
        pick = is_max.astype(np.float64)
    elif rule == "last":
        pick = np.eye(4)[3 - is_max[..., ::-1].argmax(axis=-1)]
    else:  # first maximum scanning down the columns: positions 0, 2, 1, 3
        order = [0, 2, 1, 3]
        pick = np.zeros_like(is_max, dtype=np.float64)
        np.put_along_axis(pick, np.take(order, is_max[..., order].argmax(axis=-1))[..., None], 1.0, axis=-1)
    return _route(a.x, a.dy, pick)


def _not_a_max(a: Attempt) -> str:
    """Names an element that got gradient although it is not the maximum of its window; '' if none."""
    w = _windows(a.x.astype(np.float64))
    is_max = w == w.max(axis=-1, keepdims=True)
    bad = np.argwhere((_windows(a.got) != 0) & ~is_max)
    if bad.size == 0:
        return ""
    n, c, i, j, k = (int(v) for v in bad[0])
    x = a.x
    return (f"gradient reaches x[{n}, {c}, {2 * i + k // 2}, {2 * j + k % 2}] = {x[n, c, 2 * i + k // 2, 2 * j + k % 2]:g}, "
            f"which is not the maximum of its window (that is {w[n, c, i, j].max():g}): the gradient goes only to "
            "the element that won, and the others get 0.")


_MP_SHAPE = (2, 3, 7, 9)
# then: even sizes, one output column, one row of windows in a wide image (all small integers: ties everywhere)
_MP_SHAPES = (_MP_SHAPE, (1, 2, 4, 6), (3, 1, 5, 2), (1, 1, 2, 17))

MAXPOOL = ExerciseGroup(
    number="06.2", task="write the kernels maxpool_forward(x, y) and maxpool_backward(x, dy, dx)",
    parts=(
        KernelExercise(
            number="06.2", task="write the kernel maxpool_forward(x, y)", call="maxpool_forward(x, y)",
            outputs=("y",), inputs=_maxpool_inputs, reference=lambda x, dy: maxpool_first_max_reference(x, dy)[0],
            cases=tuple(_pool_case(*shape, over="outputs") for shape in _MP_SHAPES), rtol=0, atol=0, seed=63,
            realistic=_realistic_pool("outputs"),
            causes=(
                NEVER_WRITTEN,
                equals(lambda a: np.maximum(a.want, 0), "the maximum starts at 0, so a window of negative numbers "
                                                        "gives 0: start it at the window's first element."),
                equals(lambda a: _windows(a.x).min(axis=-1), "that is the minimum of each window (the comparison is "
                                                             "the wrong way round)."),
                equals(lambda a: _windows(a.x.astype(np.float64)).mean(axis=-1),
                       "that is the average of each window, not its maximum."),
                equals(lambda a: _windows(a.x)[..., 0], "only the first element of each window is taken: compare all "
                                                        "four."),
            ),
        ),
        KernelExercise(
            number="06.2", task="write the kernel maxpool_backward(x, dy, dx)",
            call="maxpool_backward(x, dy, dx)", outputs=("dx",), inputs=_maxpool_inputs,
            reference=lambda x, dy: maxpool_first_max_reference(x, dy)[1],
            cases=tuple(_pool_case(*shape, over="pixels") for shape in _MP_SHAPES), rtol=0, atol=0, seed=63,
            realistic=_realistic_pool("pixels"),
            causes=(
                equals(lambda a: _tie_to(a, "every"), "on a tie every maximum gets the gradient, so it is counted "
                       "several times; PyTorch gives it only to the FIRST maximum in row-major order ((0,0), (0,1), "
                       "(1,0), (1,1)): a later position wins only if it is strictly greater than every earlier one."),
                equals(lambda a: _tie_to(a, "last"), "on a tie the LAST maximum gets the gradient (a >= comparison "
                                                     "while scanning); PyTorch gives it to the first: compare with a "
                                                     "strict >."),
                equals(lambda a: _tie_to(a, "columns"), "on a tie the first maximum going down the COLUMNS gets the "
                                                        "gradient; PyTorch scans the window row by row: (0,0), (0,1), "
                                                        "(1,0), (1,1)."),
                equals(lambda a: a.want / 4, "the gradient is divided by 4 (that is average pooling): the maximum "
                                             "passes dy on unchanged."),
                Cause(lambda a: bool(a.never_written.any()), "some elements of dx were never written (they still hold "
                      "-7): every input pixel must get a value, 0 where it did not win, and in the dropped last row "
                      "and column."),
                Cause(lambda a: bool(_not_a_max(a)), _not_a_max),
            ),
        ),
    ),
    success=lambda f: (f"max-pool forward and backward are correct on inputs of shape "
                       f"{', '.join(str(c.x.shape) for c in f.parts[0].cases)}, with PyTorch's rule on ties of two, "
                       "three and four (the first maximum in row-major order gets the gradient) and the dropped row "
                       "and column."),
)


def check_maxpool(forward_kernel, backward_kernel) -> None:
    """Exercise 06.2: 2×2 max-pooling, stride 2, as ``F.max_pool2d(x, 2)``, without an argmax array.

    ``forward_kernel(x, y)``: one thread per output. ``backward_kernel(x, dy, dx)``: one thread per input pixel,
    which finds out from x whether it is the first maximum (row-major) of its window. Forward uses
    ``j, i, z = cuda.grid(3)``, backward ``col, row, z = cuda.grid(3)``, with z = n * C + c, blocks of (8, 8, 1).
    x has shapes (2, 3, 7, 9), (1, 2, 4, 6), (3, 1, 5, 2) and (1, 1, 2, 17), with small integer values, so ties of
    two, three and four maxima are common.
    """
    MAXPOOL.check(forward_kernel, backward_kernel)


# --------------------------------------------------------------------------------------------------
# 06.3 conv2d weight gradient


def conv_weight_grad_reference(dy: np.ndarray, x: np.ndarray, KH: int, KW: int, rows: int | None = None,
                               cols: int | None = None, batch: slice = slice(None)) -> np.ndarray:
    """dw[f, c, p, q] = Σ_n Σ_i Σ_j dy[n, f, i, j] · x[n, c, i + p, j + q] (over the first ``rows`` × ``cols`` outputs)."""
    dy = dy.astype(np.float64)[batch]
    x = x.astype(np.float64)[batch]
    OH, OW = dy.shape[2], dy.shape[3]
    rows, cols = rows or OH, cols or OW
    dw = np.empty((dy.shape[1], x.shape[1], KH, KW))
    for p in range(KH):
        for q in range(KW):
            dw[:, :, p, q] = np.einsum("nfij,ncij->fc", dy[:, :, :rows, :cols], x[:, :, p:p + rows, q:q + cols])
    return dw


def _swapped_reference(dy: np.ndarray, x: np.ndarray, KH: int, KW: int) -> np.ndarray:
    """The common slip x[n, c, i + q, j + p] (kernel offsets swapped); x must be large enough."""
    dy64, x64 = dy.astype(np.float64), x.astype(np.float64)
    OH, OW = dy.shape[2], dy.shape[3]
    dw = np.empty((dy.shape[1], x.shape[1], KH, KW))
    for p in range(KH):
        for q in range(KW):
            dw[:, :, p, q] = np.einsum("nfij,ncij->fc", dy64, x64[:, :, q:q + OH, p:p + OW])
    return dw


_WG_BLOCK = (8, 4, 1)
_WG_CALL = "conv2d_weight_grad(dy, x, dw)"


def _wg_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """Normal values; for a realistic case (sums of more than 10,000 products) multiples of 1/8 in [-1, 1]: a float32
    sum of 50,000 products of normals rounds beyond the tolerance in some orders, while these sum exactly in any."""
    dy_shape = (c.N, c.F, c.H - c.KH + 1, c.W - c.KW + 1)
    if c.N * dy_shape[2] * dy_shape[3] <= 10_000:
        x = rng.standard_normal((c.N, c.C, c.H, c.W)).astype(np.float32)
        dy = rng.standard_normal(dy_shape).astype(np.float32)
    else:
        x = (rng.integers(-8, 9, (c.N, c.C, c.H, c.W)) / 8).astype(np.float32)
        dy = (rng.integers(-8, 9, dy_shape) / 8).astype(np.float32)
    return {"dy": dy, "x": x, "KH": c.KH, "KW": c.KW}


def _wg_launch_cause(message: str, c: Case, inputs: dict, kernel: object) -> str:
    """For an access out of bounds, the axis tells the cause; otherwise a probe with a larger x does.

    Offered where an out-of-bounds access raises (the simulator, cpu mode): on a GPU a read out of bounds raises
    nothing (a wrong dw follows, judged by the causes) and a stray write gets the sentinel padding's message alone.
    """
    if "outside an array" not in message:
        return message
    N, C, F = c.N, c.C, c.F
    # The simulator says which axis the bad index was on: the batch and channel axes have their own causes.
    found = re.search(r"axis (\d+) with size (\d+)", message)
    axis, size = (int(found.group(1)), int(found.group(2))) if found else (None, None)
    if axis == 0 and size == N:
        return (f"{message} Likely cause here: an index on the batch axis (axis 0, size N = {N}) runs too far: the "
                "loop over the images must run over range(x.shape[0]) (= dy.shape[0] = N), not over dy.shape[1] "
                f"(F = {F}) or another size.")
    if axis in (0, 1):
        return (f"{message} Likely cause here: an index on the filter or channel axis (axis {axis}, size {size}) runs "
                f"too far: the split of z = f * C + c is wrong. It is f, c = z // C, z % C with C = x.shape[1] = {C} "
                f"(F = {F} filters, so z < F * C = {F * C}).")
    # Diagnose with a larger x (the extra rows and columns are never read by a correct kernel).
    dy, x, KH, KW = inputs["dy"], inputs["x"], c.KH, c.KW
    big = np.random.default_rng(64).standard_normal((N, C, c.H + KW, c.W + KH)).astype(np.float32)
    big[:, :, :c.H, :c.W] = x
    try:
        probe = run_kernel(kernel, c.grid, c.block, [dy, big], [(F, C, KH, KW)], call=_WG_CALL).outputs[0]
    except CheckFailed:
        probe = None
    if probe is not None and np.allclose(probe, _swapped_reference(dy, big, KH, KW), rtol=1e-4, atol=1e-4):
        cause = ("p and q are swapped in the read of x: the kernel row p moves down the rows, so it is "
                 "x[n, c, i + p, j + q]; with a 3 × 5 kernel the swapped read runs off the image.")
    else:
        cause = ("a loop over the output positions runs too far (i in range(OH) and j in range(OW), with OH, OW = "
                 "dy.shape[2], dy.shape[3]), or p and q are swapped somewhere (the kernel is 3 × 5).")
    return f"{message} Likely cause here: {cause}"


def _wg_axes_swapped(a: Attempt) -> bool:
    """Exactly the columns q >= blockDim.y were never written: q came from the grid's .y axis."""
    mask = a.never_written
    KJ, _ = np.meshgrid(np.arange(a.KW), np.arange(a.KH))
    return bool(mask.any() and np.array_equal(mask, np.broadcast_to(KJ >= _WG_BLOCK[1], mask.shape)))


def _wg(a: Attempt, **kwargs) -> np.ndarray:
    return conv_weight_grad_reference(a.dy, a.x, a.KH, a.KW, **kwargs)


_WG = {"N": 2, "C": 3, "H": 9, "W": 13, "F": 4, "KH": 3, "KW": 5}
# then: a 1 x 1 kernel on a single image, a tall 4 x 2 kernel (rows fill the block's y), a 2 x 7 kernel on 1 channel
_WG_SIZES = (_WG, {"N": 1, "C": 2, "H": 5, "W": 4, "F": 3, "KH": 1, "KW": 1},
             {"N": 3, "C": 2, "H": 8, "W": 5, "F": 1, "KH": 4, "KW": 2},
             {"N": 2, "C": 1, "H": 3, "W": 11, "F": 3, "KH": 2, "KW": 7})
# N differs from F and C from F in every case: the axis and size of an out-of-bounds index name the array


def _wg_case(sizes: dict[str, int]) -> Case:
    """The launch of the statement: (8, 4, 1) blocks, grid (ceil(KW / 8), ceil(KH / 4), F * C)."""
    return Case(grid=(blocks_for(sizes["KW"], _WG_BLOCK[0]), blocks_for(sizes["KH"], _WG_BLOCK[1]),
                      sizes["F"] * sizes["C"]), block=_WG_BLOCK, sizes=sizes)

CONV_WEIGHT_GRAD = KernelExercise(
    number="06.3", task="write the kernel conv2d_weight_grad(dy, x, dw)", call=_WG_CALL, outputs=("dw",),
    inputs=_wg_inputs, reference=conv_weight_grad_reference,
    cases=tuple(_wg_case(sizes) for sizes in _WG_SIZES),
    realistic=(dataclasses.replace(_wg_case({"N": 64, "C": 3, "H": 32, "W": 32, "F": 6, "KH": 5, "KW": 5}),
                                   label="LeNet's conv1 on a batch of 64 CIFAR images"),),
    rtol=1e-4, atol=1e-4, seed=64,
    causes=(
        Cause(_wg_axes_swapped, "the columns q >= 4 of dw were never written: p and q come from the wrong axes. "
                                "The grid's .x axis runs along the kernel's columns: q, p, z = cuda.grid(3)."),
        NEVER_WRITTEN,
        summed_into_output("dw still contains its starting value (-7 here): you add into dw without setting it to 0 "
                           "first. Sum into a local float32(0) and write dw once."),
        equals(lambda a: _wg(a, batch=slice(0, 1)), "only image 0 is summed: the weight gradient is a sum over the "
                                                    "whole batch n as well."),
        equals(lambda a: _wg(a, batch=slice(a.N - 1, a.N)), "only the last image is summed (or each image overwrites "
                                                            "the previous one): accumulate over the whole batch."),
        equals(lambda a: _wg(a, rows=a.dy.shape[2] - 1), "the last output row is missing from the sum: i runs over "
                                                         "range(OH), OH = dy.shape[2]."),
        equals(lambda a: _wg(a, cols=a.dy.shape[3] - 1), "the last output column is missing from the sum: j runs over "
                                                         "range(OW), OW = dy.shape[3]."),
        equals(lambda a: _wg(a, rows=a.dy.shape[2] - 1, cols=a.dy.shape[3] - 1),
               "the last output row and column are missing: use range(OH) and range(OW)."),
    ),
    explain_launch=_wg_launch_cause,
    float32="void(float32[:, :, :, ::1], float32[:, :, :, ::1], float32[:, :, :, ::1])",
    success=lambda f: ("dw is correct for " + "; ".join(f"x {c.x.shape}, a {c.KH} × {c.KW} kernel" for c in f.cases)
                       + f" (sum over batch and positions); {f.float32}."),
)


def check_conv_weight_grad(kernel) -> None:
    """Exercise 06.3: ``kernel(dy, x, dw)``: dw[f, c, p, q] = Σ_n Σ_i Σ_j dy[n, f, i, j] · x[n, c, i + p, j + q].

    (i, j) is an output position, (p, q) the weight's offset in the kernel (notebook 06's notation).
    One thread per weight: ``q, p, z = cuda.grid(3)`` with z = f * C + c, blocks of (8, 4, 1) threads,
    grid (1, 1, F * C). Sizes are odd and nothing is square: x (2, 3, 9, 13), a 3 × 5 kernel, dy (2, 4, 7, 9),
    so swapped p and q, a missed image of the batch or a loop one step short all give wrong numbers; then
    1 × 1, 4 × 2 and 2 × 7 kernels on other shapes (one image, one channel, one filter).
    Float32 is checked from the PTX.
    """
    CONV_WEIGHT_GRAD.check(kernel)


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


def _seed_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """Flat float32 arrays as in the article; as many biases as pixels (only biases[0] may be used)."""
    return {"input": rng.standard_normal(c.depth * c.height * c.width).astype(np.float32),
            "weights": rng.standard_normal(c.depth * 9).astype(np.float32),
            "biases": (10 + np.arange(c.height * c.width)).astype(np.float32),  # biases[0] = 10; per-pixel values differ
            "width": np.int32(c.width), "height": np.int32(c.height), "depth": np.int32(c.depth)}


def _seed_reference(**p) -> np.ndarray:
    return seed_conv_reference(p["input"], p["weights"], p["biases"][0], int(p["height"]), int(p["width"]),
                               int(p["depth"]))


def _seed_launch_cause(message: str, c: Case, inputs: dict, kernel: object) -> str:
    if "outside" in message or "past the end" in message or "before the start" in message:
        return (f"{message} This is the seed's missing bounds guard: the grid has {c.grid[0] * _SEED_BLOCK[0]} × "
                f"{c.grid[1] * _SEED_BLOCK[1]} threads for a {c.height} × {c.width} image.")
    return message


def _seed_bugs(a: Attempt) -> str:
    """The seed's bugs still in the answer, numbered: a 1-D index in a 2-D grid, a bias per pixel."""
    got = a.got.astype(np.float64)
    written = ~a.never_written
    bugs = []
    x_threads = a.case.grid[0] * _SEED_BLOCK[0]
    if (~written).any() and written.any() and np.array_equal(np.flatnonzero(written), np.arange(x_threads)):
        bugs.append(f"only output[0] ... output[{x_threads - 1}] are written: idx = blockIdx.x * blockDim.x + "
                    "threadIdx.x ignores the y part of the 2-D grid, so many threads compute the same pixel and most "
                    "pixels are never computed. Take col, row = cuda.grid(2) and idx = row * width + col.")
    elif (~written).any():
        bugs.append(f"{int((~written).sum())} pixels were never written, e.g. output[{int(np.flatnonzero(~written)[0])}]:"
                    " every pixel (row, col) of the height × width image needs one thread.")
    per_pixel = np.isclose(got, a.want - a.biases[0] + a.biases, rtol=1e-4, atol=1e-4) & written
    if per_pixel[1:].any() and not np.isclose(got, a.want, rtol=1e-4, atol=1e-4)[written].all():
        bugs.append("the bias is taken per pixel (biases[row * width + col]): a convolution has one bias per output "
                    "channel, shared by every pixel; this layer has one channel, so biases[0].")
    return " ".join(f"({k + 1}) {b}" for k, b in enumerate(bugs))


def _seed_inside_right(a: Attempt) -> bool:
    h, w = a.height, a.width
    return np.allclose(a.got.reshape(h, w)[1:-1, 1:-1], a.want.reshape(h, w)[1:-1, 1:-1], rtol=1e-4, atol=1e-4)


_SEED = {"height": 9, "width": 11, "depth": 3}  # the grid has threads outside the image
# then non-square grids (3 x 1 and 1 x 3 blocks), so x along the rows instead of the columns shows
_SEED_SIZES = (_SEED, {"height": 5, "width": 21, "depth": 2}, {"height": 19, "width": 4, "depth": 1})

SEED_CONV_FIXED = KernelExercise(
    number="06.4", task="fix the seed kernel in seed_conv2d_fixed(output, input, weights, biases, width, height, depth)",
    call="seed_conv2d_fixed(output, input, weights, biases, width, height, depth)", outputs=("output",),
    inputs=_seed_inputs, reference=_seed_reference,
    cases=tuple(Case(grid=(blocks_for(sz["width"], _SEED_BLOCK[0]), blocks_for(sz["height"], _SEED_BLOCK[1])),
                     block=_SEED_BLOCK, sizes=sz) for sz in _SEED_SIZES),
    realistic=(Case(grid=(blocks_for(481, _SEED_BLOCK[0]), blocks_for(321, _SEED_BLOCK[1])), block=_SEED_BLOCK,
                    sizes={"height": 321, "width": 481, "depth": 3}, label="a 321 x 481 photo with 3 channels"),),
    rtol=1e-4, atol=1e-4, seed=65,
    causes=(
        Cause(lambda a: bool(_seed_bugs(a)), _seed_bugs),
        Cause(_seed_inside_right, "the inside of the image is right, the border is not: 'same' padding means "
                                  "neighbours outside the image count as 0, so skip them (0 <= x < height and "
                                  "0 <= y < width)."),
    ),
    explain_launch=_seed_launch_cause,
    float32="void(float32[::1], float32[::1], float32[::1], float32[::1], int32, int32, int32)",
    success=lambda f: ("the fixed seed kernel computes the 'same' 3 × 3 convolution of "
                       + ", ".join(f"a {c.depth}-channel {c.height} × {c.width}" for c in f.cases)
                       + f" image (grids of {', '.join(c.grid for c in f.cases)} blocks): every pixel right, the "
                       f"threads outside the image wrote nothing (a bounds guard), one bias (biases[0]); {f.float32}."),
)


def check_seed_conv_fixed(kernel) -> None:
    """Exercise 06.4: the seed article's conv kernel, fixed. Flat float32 arrays as in the article.

    ``kernel(output, input, weights, biases, width, height, depth)``: a 'same' 3 × 3 convolution (padding 1,
    output height × width) of a depth-channel image into ONE feature map, with ONE bias, ``biases[0]``
    (the check passes, as the article does, as many biases as pixels: the others must not be used).
    Launched with a 2-D grid covering the image, (8, 8) threads per block, x along columns: the image is
    9 × 11, so the grid has threads outside it, then 5 × 21 and 19 × 4 (grids of 3 × 1 and 1 × 3 blocks: a
    kernel with x along the rows fails there). Float32 is checked from the PTX.
    """
    SEED_CONV_FIXED.check(kernel)
