"""Checks of notebook 08's exercises: your ReLU kernels inside LeNet, the feature-map shapes, and accuracy.

The ReLU kernels alone are declared (:data:`RELU_KERNELS`). The rest stay procedures: LeNet trained beside
PyTorch compares losses, not kernel outputs; ``feature_shapes`` returns shapes (tuples of different lengths,
each with its own hint), not numbers; ``accuracy`` is judged also by how it calls back ``logits_of`` (batch
sizes, every image once), not only by what it returns.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nbkit.checks._core import CheckFailed, exercise, fail, passed
from nbkit.checks.exercise import Case, Cause, ExerciseGroup, KernelExercise
from nbkit.core.launch import blocks_for, threads_1d
from nbkit.nn import reference as ref

__all__ = ["CheckFailed", "check_accuracy", "check_feature_shapes", "check_relu_in_lenet", "relu_backend"]


def relu_backend(forward_kernel, backward_kernel, base=None):
    """A backend whose ReLU launches your kernels, one thread per element on the flattened array.

    ``base`` is the backend for everything else: on a GPU the course's kernels, in the simulator the CPU
    path (your kernels then run in the simulator on host arrays: a few thousand threads per step). The
    outputs start as NaN, not as uninitialised memory: an element the kernel never writes then spoils the
    loss, instead of keeping by chance the right value of an earlier step.
    """
    from nbkit.core.launch import launch_1d
    from nbkit.core.mode import MODE
    from nbkit.nn.backend import replace

    if base is None:
        if MODE.is_simulator:
            from nbkit.nn.cpu import CPU as base
        else:
            from nbkit.nn.kernel_backend import KERNEL_BACKEND as base
    def nan_output(like):
        if isinstance(like, np.ndarray):
            return np.full(like.shape, np.nan, np.float32)
        from numba import cuda

        return cuda.to_device(np.full(like.shape, np.nan, np.float32))

    def relu_forward(x):
        flat = x.reshape(x.size)
        y = nan_output(flat)
        launch_1d(forward_kernel, flat.size, flat, y)
        return y.reshape(x.shape)

    def relu_backward(dout, x):
        flat = x.reshape(x.size)
        dx = nan_output(flat)
        launch_1d(backward_kernel, flat.size, dout.reshape(dout.size), flat, dx)
        return dx.reshape(x.shape)

    return replace(base, name=f"{base.name} with your ReLU kernels", relu_forward=relu_forward,
                   relu_backward=relu_backward)


def _relu_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """Awkward values: -0, 0 and ±1e-30 (ReLU'(0) = 0, as in PyTorch), an odd length."""
    pattern = np.array([-2.0, -0.0, 0.0, 1e-30, 3.5, -1e-30, 7.0, -7.0], dtype=np.float32)
    x = np.resize(pattern, c.n) * rng.uniform(0.5, 2.0, c.n).astype(np.float32)  # the zeros stay zeros
    return {"x": x, "dout": rng.uniform(-1, 1, c.n).astype(np.float32) + np.float32(0.5)}


def _relu_case(n: int) -> Case:
    """The launch the LeNet wrapper makes for n elements (launch_1d): surplus threads unless n fills the blocks."""
    return Case(grid=blocks_for(n, threads_1d(n)), block=threads_1d(n), sizes={"n": n})


# 101 and 130: surplus threads in the last block (the guard); 1: one element; 64: one block exactly full
_RELU_CASES = (_relu_case(101), _relu_case(1), _relu_case(130), _relu_case(64))
_RELU_REALISTIC = (dataclasses.replace(_relu_case(1_000_003), label="a vector of a million activations"),)

RELU_KERNELS = ExerciseGroup(
    number="08.1", task="the two ReLU kernels my_relu_forward_kernel and my_relu_backward_kernel",
    parts=(
        KernelExercise(
            number="08.1", task="the kernel my_relu_forward_kernel(x, y)", call="my_relu_forward_kernel(x, y)",
            outputs=("y",), names={"y": "relu_forward(x)"}, inputs=_relu_inputs,
            reference=lambda x, dout: ref.relu_forward(x.astype(np.float64)), cases=_RELU_CASES, rtol=0, atol=0,
            realistic=_RELU_REALISTIC,
            seed=81, float32="void(float32[::1], float32[::1])",  # the hint asks for float32 literals
        ),
        KernelExercise(
            number="08.1", task="the kernel my_relu_backward_kernel(dout, x, dx)",
            call="my_relu_backward_kernel(dout, x, dx)", outputs=("dx",), names={"dx": "relu_backward(dout, x)"},
            inputs=_relu_inputs, reference=lambda x, dout: ref.relu_backward(dout.astype(np.float64), x),
            cases=_RELU_CASES, realistic=_RELU_REALISTIC, rtol=0, atol=0, seed=81,
            float32="void(float32[::1], float32[::1], float32[::1])",
            before=(
                Cause(lambda a: np.array_equal(a.got, a.dout * (a.x >= 0)) and not np.allclose(a.got, a.want),
                      "relu_backward passes the gradient where x == 0; PyTorch (and the course) use ReLU'(0) = 0: "
                      "compare with x > 0, not x >= 0."),
            ),
        ),
    ),
    success=lambda f: (f"your ReLU kernels are exact on {', '.join(str(c.n) for c in f.parts[0].cases)} awkward values "
                       f"(±0, ±1e-30, blocks not full); {f.float32}."),
)


@exercise("08.1", "the two ReLU kernels my_relu_forward_kernel and my_relu_backward_kernel")
def check_relu_in_lenet(forward_kernel, backward_kernel, steps: int = 2) -> None:
    """Your ReLU kernels alone on awkward values (declared: :data:`RELU_KERNELS`), then inside LeNet, trained
    beside PyTorch step for step.

    The LeNet run stays a procedure: the kernels are launched by the network (through :func:`relu_backend`)
    on whatever activations it makes, and what is compared is the loss of each training step with PyTorch's,
    not an output of the kernels.
    """
    import torch

    from nbkit.nn import lenet

    verdict = RELU_KERNELS.run(forward_kernel, backward_kernel, pictures=True)
    if not verdict.passed:
        return verdict.report()
    ops = relu_backend(forward_kernel, backward_kernel)
    model, opt, tmodel, topt = lenet.twins(ops, seed=8)
    r = np.random.default_rng(8)
    largest = max(c.n for c in _RELU_CASES)
    for step in range(steps):
        xb = r.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
        yb = r.integers(0, 10, 1)
        last = step == steps - 1  # the last step's backward would change no loss that is compared: skipped
        try:
            loss = model.loss(ops.asarray(xb), yb)
            if not last:
                model.backward()
        except IndexError as exc:
            fail(f"training step {step}: inside LeNet a thread of your ReLU kernel accessed an element outside an "
                 f"array ({exc}). The kernels passed alone on up to {largest} elements; LeNet's activations are "
                 "larger (4,704 elements after the first convolution): every thread must check its index against "
                 "the array's size.")
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(xb)), torch.from_numpy(yb))
        if np.isnan(loss):
            fail(f"training step {step}: LeNet with your ReLU has loss nan. In this check the ReLU outputs start as "
                 "NaN, so some elements of an activation were never written by your kernels (they passed alone on "
                 f"up to {largest} elements; LeNet's activations have up to 4,704): does your kernel cover every "
                 "element of x, whatever its size?")
        if not np.isclose(loss, tloss.item(), rtol=1e-5, atol=1e-6):
            fail(f"training step {step}: LeNet with your ReLU has loss {loss:.6f}, PyTorch {tloss.item():.6f}. "
                 f"The kernels passed alone on up to {largest} elements; here they run on LeNet's activations (up to "
                 "4,704 elements): does your kernel depend on a fixed size?")
        if not last:
            opt.step()
            topt.zero_grad()
            tloss.backward()
            topt.step()
    passed(f"{verdict.message.removeprefix('✓ ')} LeNet built with them ({ops.name}) trains like PyTorch for "
           f"{steps} SGD steps (losses equal to 1e-5 at every step).")


def _torch_feature_shapes(h: int, w: int) -> list[tuple[int, ...]]:
    import torch

    from nbkit.nn import lenet

    net = lenet.build_torch()[:7]  # conv, ReLU, pool, conv, ReLU, pool, flatten
    shapes, t = [], torch.zeros(1, 3, h, w)
    with torch.no_grad():
        for layer in net:
            t = layer(t)
            shapes.append(tuple(t.shape[1:]))
    return shapes


# (32, 32): LeNet's; the others odd, and chosen so that round() differs from // at both pools: 35 and 27 give
# pool inputs of 31 and 11, and 23 and 7 (x.5 rounds up to the even x + 1); 16 x 17 reaches a 1 x 1 map.
FEATURE_SIZES = ((32, 32), (37, 30), (21, 44), (35, 27), (16, 17))


@exercise("08.2", "feature_shapes(h, w)")
def check_feature_shapes(feature_shapes) -> None:
    """The shape of one image after each of LeNet's first seven layers, by formula, for any image size.

    Sizes are odd as well as even, non-square, and such that a pool's ``round(h / 2)`` or ``ceil`` differs
    from PyTorch's ``h // 2`` (see :data:`FEATURE_SIZES`).
    """
    names = ["conv 3->6 5x5", "ReLU", "max-pool 2x2", "conv 6->16 5x5", "ReLU", "max-pool 2x2", "flatten"]
    for h, w in FEATURE_SIZES:
        want = _torch_feature_shapes(h, w)
        got = feature_shapes(h, w)
        if got is None or len(got) != len(want):
            fail(f"for a {h}x{w} image expected a list of {len(want)} shapes (one per layer), "
                 f"got {None if got is None else len(got)}.")
        before = (3, h, w)
        for i, (g, wnt) in enumerate(zip(got, want)):
            if not isinstance(g, (tuple, list, np.ndarray)):
                fail(f"{h}x{w} image, layer {i} ({names[i]}): you have {g!r} (type {type(g).__name__}); every shape "
                     f"is a tuple, {wnt} here" + (" (a 1-tuple for flatten)." if len(wnt) == 1 else "."))
            if tuple(int(v) for v in g) != wnt:
                fail(f"{h}x{w} image, layer {i} ({names[i]}): you have shape {tuple(g)}, PyTorch gives {wnt}."
                     f"{_shape_hint(names[i], tuple(int(v) for v in g), before, wnt)}")
            before = wnt
    passed(f"feature shapes agree with PyTorch for {', '.join(f'{h}x{w}' for h, w in FEATURE_SIZES)} images "
           f"(32x32 flattens to {_torch_feature_shapes(32, 32)[-1][0]} features: the 400 inputs of the first dense layer).")


def _shape_hint(name: str, got: tuple[int, ...], before: tuple[int, ...], want: tuple[int, ...]) -> str:
    """The formula the answer used on a layer whose input shape was right, where the numbers show it."""
    if len(got) != 3 or len(before) != 3 or got[0] != want[0]:
        return ""
    sizes = list(zip(("height", "width"), before[1:], got[1:], want[1:]))
    if name.startswith("conv") and all(g in (b - 5, w) for _, b, g, w in sizes):
        return " A 5x5 window fits H - 5 + 1 times along H, not H - 5."
    if name.startswith("max-pool"):
        ceil, rounded = (all(g == f(b) for _, b, g, w in sizes) for f in (lambda b: -(-b // 2), lambda b: round(b / 2)))
        if ceil or rounded:
            how = (" and ".join(f for f, ok in (("math.ceil", ceil), ("round()", rounded)) if ok))
            return (f" Your sizes are the input's {before[1]}x{before[2]} halved and rounded as {how} "
                    f"{'round' if ceil and rounded else 'rounds'} them; "
                    "PyTorch drops an odd last row and column (floor, ceil_mode=False): use H // 2.")
    return ""


# (images, batch): a short last batch (103 = 4 x 25 + 3), a batch larger than the data, batches that divide the
# data, a batch of 1, a batch of n - 1 (last batch of one image)
ACCURACY_RUNS = ((103, 25), (10, 32), (60, 20), (7, 1), (41, 40), (103, 25))  # the last: new data, same sizes


def _accuracy_data(n: int, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, logits): about 2/3 of the images right, spread over every batch (the last one included)."""
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = rng.integers(0, 10, n)
    table = rng.standard_normal((n, 10)).astype(np.float32)
    right = rng.random(n) < 0.65
    right[-1] = True  # the last batch has a correct image: its accuracy is not 0
    table[right, y[right]] += 10
    table[~right, (y[~right] + 1) % 10] += 10
    return x, y, table


def _accuracy_mistakes(table: np.ndarray, y: np.ndarray, batch: int) -> dict[str, float]:
    """What the usual wrong answers return on these data, by the message that names the mistake."""
    n = len(y)
    hits = table.argmax(axis=1) == y
    starts = range(0, n, batch)
    batch_means = [float(hits[i:i + batch].mean()) for i in starts]
    full = n - n % batch
    mistakes = {
        f"you averaged the {len(batch_means)} batch accuracies; the last batch has only {n - starts[-1]} image(s), so it "
        f"weighs as much as a full one. Count correct predictions and divide by {n}.": float(np.mean(batch_means)),
        f"you divided the number of correct predictions by batch × number of batches = {batch * len(batch_means)}, "
        f"not by the number of images, {n}.": hits.sum() / (batch * len(batch_means)),
        f"you divided the number of correct predictions by the images in full batches, {full}, not by {n}.":
            hits.sum() / full if full else np.nan,
    }
    return mistakes


@exercise("08.3", "accuracy(logits_of, x, y, batch)")
def check_accuracy(accuracy) -> None:
    """Accuracy over a data set evaluated ``batch`` images at a time, whatever the size of the last batch.

    Several runs (:data:`ACCURACY_RUNS`): a short last batch, a batch larger than the data, batches that
    divide it, a batch of 1, and the first sizes again with other data (an answer must not cache). The fake
    ``logits_of`` looks up each image it is given, in the order given, so the batches may be taken in any order,
    and counts how often each image was evaluated.
    """
    rng = np.random.default_rng(83)
    for n, batch in ACCURACY_RUNS:
        x, y, table = _accuracy_data(n, batch, rng)
        row_of = {x[k].tobytes(): k for k in range(n)}
        seen = np.zeros(n, np.int64)
        largest = [0]

        def logits_of(xb, x=x, table=table, row_of=row_of, seen=seen, largest=largest):
            xb = np.asarray(xb, dtype=np.float32)
            if xb.ndim != 2 or xb.shape[1:] != x.shape[1:]:
                fail(f"logits_of was given an array of shape {xb.shape}; it takes a batch of images, shape (b, "
                     f"{x.shape[1]}): pass slices x[i:i + batch].")
            idx = np.array([row_of.get(row.tobytes(), -1) for row in xb], dtype=np.int64)
            if (idx < 0).any():
                fail("logits_of was given images that are not rows of x: pass slices x[i:i + batch].")
            np.add.at(seen, idx, 1)
            largest[0] = max(largest[0], len(xb))
            return table[idx]

        label = f"with {n} images and batch = {batch}"
        got = accuracy(logits_of, x, y, batch)
        if largest[0] > batch:
            fail(f"{label}, logits_of was called with {largest[0]} images at once; batch is {batch}.")
        if (seen == 0).any():
            first = int(np.flatnonzero(seen == 0)[0])
            dropped = n % batch and (seen[:n - n % batch] > 0).all() and (seen[n - n % batch:] == 0).all()
            fail(f"{label}, logits_of never saw image {first} ({int((seen == 0).sum())} of {n} images missed)"
                 + (": the last, shorter batch was dropped." if dropped else "."))
        if (seen > 1).any():
            first = int(np.flatnonzero(seen > 1)[0])
            fail(f"{label}, logits_of saw image {first} {int(seen[first])} times: evaluate every image once.")
        want = float((table.argmax(axis=1) == y).mean())
        try:
            value = float(got)
        except (TypeError, ValueError):
            fail(f"{label}, accuracy returned {got!r}: expected a number, the fraction of images classified right.")
        if not np.isclose(value, want, rtol=1e-9, atol=1e-12):
            named = [m for m, v in _accuracy_mistakes(table, y, batch).items()
                     if np.isclose(value, v, rtol=1e-9, atol=1e-12)]
            cause = f" Likely cause: {named[0]}" if len(named) == 1 else ""
            fail(f"{label}, your accuracy is {value:.6g}, expected {want:.6g} ({int(round(want * n))} of {n} images "
                 f"right).{cause}")
    runs = ", ".join(f"{n} images in batches of {b}" for n, b in ACCURACY_RUNS)
    passed(f"accuracy is right in {len(ACCURACY_RUNS)} runs ({runs}), whatever the size of the last batch.")
