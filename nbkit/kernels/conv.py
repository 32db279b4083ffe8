"""conv2d kernels (stride 1, no padding): forward, and backward in two forms for the input gradient.

Shapes follow :mod:`nbkit.nn.reference`: x (N, C, H, W), w (F, C, KH, KW), b (F,), y (N, F, OH, OW)
with OH = H - KH + 1, OW = W - KW + 1. 3-D launches: x runs along output columns, y along output rows,
z over (image, channel) pairs, so one grid covers batch × channels × rows × columns. Grid z stops at 65,535:
a larger batch is launched in chunks of images (:func:`nbkit.core.launch.batch_chunks`), each on a slice of the
batch, so any batch that fits in memory works.

The input gradient can *gather* (one thread per input pixel sums the outputs it fed: every thread
writes only its own pixel) or *scatter* (one thread per output adds into the window it read: windows
overlap, so the additions must be atomic). The course uses the gather form; the scatter form is here to
compare, and is tested too.
"""

from __future__ import annotations

from numba import cuda, float32

from nbkit.core.launch import batch_chunks, grid_3d, launch, launch_1d
from nbkit.core.registry import kernel
from nbkit.core.validate import new_output, require_array

BLOCK = (8, 8, 1)  # not for fewer idle threads: on 28x28 and 10x10 maps 16x16 launches the same; 8x8 gives more blocks
_T4 = "float32[:, :, :, ::1]"
_V = "float32[::1]"


@kernel(f"void({_T4}, {_T4}, {_V}, {_T4})")
def conv2d_forward_kernel(x, w, b, y):
    j, i, z = cuda.grid(3)  # output column, output row, (image, out-channel) pair
    F = y.shape[1]
    n, f = z // F, z % F
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        acc = b[f]
        for c in range(x.shape[1]):
            for p in range(w.shape[2]):
                for q in range(w.shape[3]):
                    acc += x[n, c, i + p, j + q] * w[f, c, p, q]  # the window starts at (i, j)
        y[n, f, i, j] = acc


@kernel(f"void({_T4}, {_T4}, {_T4})")
def conv2d_backward_input_kernel(dy, w, dx):
    col, row, z = cuda.grid(3)  # one thread per INPUT pixel gathers from every output it fed
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and row < dx.shape[2] and col < dx.shape[3]:
        KH, KW = w.shape[2], w.shape[3]
        OH, OW = dy.shape[2], dy.shape[3]
        acc = float32(0)
        for f in range(w.shape[0]):
            for p in range(KH):
                i = row - p  # output row whose window put weight (p, q) on this pixel
                if 0 <= i < OH:
                    for q in range(KW):
                        j = col - q
                        if 0 <= j < OW:
                            acc += dy[n, f, i, j] * w[f, c, p, q]
        dx[n, c, row, col] = acc


@kernel(f"void({_T4}, {_T4}, {_T4})")
def conv2d_backward_input_atomic_kernel(dy, w, dx):
    j, i, z = cuda.grid(3)  # one thread per OUTPUT element scatters into its window
    F = dy.shape[1]
    n, f = z // F, z % F
    if n < dy.shape[0] and i < dy.shape[2] and j < dy.shape[3]:
        g = dy[n, f, i, j]
        for c in range(dx.shape[1]):
            for p in range(w.shape[2]):
                for q in range(w.shape[3]):
                    # neighbouring outputs' windows overlap: plain += would lose updates
                    cuda.atomic.add(dx, (n, c, i + p, j + q), g * w[f, c, p, q])


@kernel(f"void({_T4}, {_T4}, {_T4})")
def conv2d_backward_weight_kernel(dy, x, dw):
    t = cuda.grid(1)  # one thread per weight: dw[f, c, p, q] = sum over n, i, j of dy * x
    F, C, KH, KW = dw.shape
    if t < F * C * KH * KW:
        f, rest = t // (C * KH * KW), t % (C * KH * KW)
        c, rest = rest // (KH * KW), rest % (KH * KW)
        p, q = rest // KW, rest % KW
        acc = float32(0)
        for n in range(x.shape[0]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    acc += dy[n, f, i, j] * x[n, c, i + p, j + q]
        dw[f, c, p, q] = acc


@kernel(f"void({_T4}, {_V})")
def conv2d_backward_bias_kernel(dy, db):
    f = cuda.grid(1)  # one thread per output channel
    if f < db.size:
        acc = float32(0)
        for n in range(dy.shape[0]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    acc += dy[n, f, i, j]
        db[f] = acc


def _launch_per_map(kernel, rows: int, cols: int, per_image: int, batch_args: tuple, shared_args: tuple,
                    order: tuple[int, ...]) -> None:
    """Launch ``kernel`` with one z index per (image, map) pair, in chunks of the batch that fit grid z.

    ``batch_args`` are sliced along the batch axis; ``order`` gives the kernel's parameter order as indices
    into ``batch_args + shared_args``.
    """
    batch = batch_args[0].shape[0]
    for start, stop in batch_chunks(batch, per_image):
        args = tuple(a[start:stop] for a in batch_args) + shared_args
        launch(kernel, grid_3d(rows, cols, (stop - start) * per_image, BLOCK), BLOCK, *(args[i] for i in order))


def _check(x, w):
    x = require_array(x, "x", ndim=4)
    w = require_array(w, "w", ndim=4)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input channels but x has {x.shape[1]}: expected w of shape "
                         f"(F, {x.shape[1]}, KH, KW), got {tuple(w.shape)}.")
    if w.shape[2] > x.shape[2] or w.shape[3] > x.shape[3]:
        raise ValueError(f"kernel {w.shape[2]}x{w.shape[3]} is larger than the image {x.shape[2]}x{x.shape[3]}.")
    return x, w


def conv2d_forward(x, w, b):
    """Cross-correlation, stride 1, no padding, as ``torch.nn.functional.conv2d``."""
    x, w = _check(x, w)
    b = require_array(b, "b", shape=(w.shape[0],))
    N, F = x.shape[0], w.shape[0]
    OH, OW = x.shape[2] - w.shape[2] + 1, x.shape[3] - w.shape[3] + 1
    y = new_output(x, (N, F, OH, OW))
    _launch_per_map(conv2d_forward_kernel, OH, OW, F, (x, y), (w, b), order=(0, 2, 3, 1))
    return y


def conv2d_backward(dy, x, w, method: str = "gather", need_dx: bool = True):
    """``(dx, dw, db)``; ``method`` "gather" (one thread per input pixel) or "atomic" (scatter).

    ``need_dx=False`` skips the input gradient (dx is None): a network's first layer has no use for it.
    """
    x, w = _check(x, w)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    dy = require_array(dy, "dy", shape=(N, F, H - KH + 1, W - KW + 1))
    if not need_dx:
        dx = None
    elif method == "gather":
        dx = new_output(x, x.shape)
        _launch_per_map(conv2d_backward_input_kernel, H, W, C, (dy, dx), (w,), order=(0, 2, 1))
    elif method == "atomic":
        dx = new_output(x, x.shape, zeros=True)
        _launch_per_map(conv2d_backward_input_atomic_kernel, dy.shape[2], dy.shape[3], F, (dy, dx), (w,),
                        order=(0, 2, 1))
    else:
        raise ValueError(f"method must be 'gather' or 'atomic', got {method!r}")
    dw = new_output(x, w.shape)
    launch_1d(conv2d_backward_weight_kernel, w.size, dy, x, dw)
    db = new_output(x, (F,))
    launch_1d(conv2d_backward_bias_kernel, F, dy, db)
    return dx, dw, db
