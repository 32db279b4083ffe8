"""Checks of notebook 08's exercises: your ReLU kernels inside LeNet, the feature-map shapes, and accuracy.

The ReLU kernels alone are declared (:data:`RELU_KERNELS`). The rest stay procedures: LeNet trained beside
PyTorch compares losses, not kernel outputs; ``feature_shapes`` returns shapes (tuples of different lengths,
each with its own hint), not numbers; ``accuracy`` is judged also by how it calls back ``logits_of`` (batch
sizes, every image once), not only by what it returns.
"""

from __future__ import annotations

import numpy as np

from nbkit.checks._core import CheckFailed, compare, exercise, fail, passed
from nbkit.checks.exercise import Case, Cause, ExerciseGroup, KernelExercise
from nbkit.core.launch import blocks_for, threads_1d
from nbkit.nn import reference as ref

__all__ = ["CheckFailed", "check_accuracy", "check_feature_shapes", "check_relu_in_lenet", "relu_backend"]


def relu_backend(forward_kernel, backward_kernel, base=None):
    """A backend whose ReLU launches your kernels, one thread per element on the flattened array.

    ``base`` is the backend for everything else: on a GPU the course's kernels, in the simulator the CPU
    path (your kernels then run in the simulator on host arrays: a few thousand threads per step).
    """
    from nbkit.core.launch import launch_1d
    from nbkit.core.mode import MODE
    from nbkit.nn.backend import replace

    if base is None:
        if MODE.is_simulator:
            from nbkit.nn.cpu import CPU as base
        else:
            from nbkit.nn.kernel_backend import KERNEL_BACKEND as base
    from nbkit.core.validate import new_output

    def relu_forward(x):
        flat = x.reshape(x.size)
        y = new_output(flat, flat.shape)
        launch_1d(forward_kernel, flat.size, flat, y)
        return y.reshape(x.shape)

    def relu_backward(dout, x):
        flat = x.reshape(x.size)
        dx = new_output(flat, flat.shape)
        launch_1d(backward_kernel, flat.size, dout.reshape(dout.size), flat, dx)
        return dx.reshape(x.shape)

    return replace(base, name=f"{base.name} with your ReLU kernels", relu_forward=relu_forward,
                   relu_backward=relu_backward)


def _relu_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """Awkward values: -0, 0 and ±1e-30 (ReLU'(0) = 0, as in PyTorch), an odd length."""
    x = np.array([-2.0, -0.0, 0.0, 1e-30, 3.5, -1e-30, 7.0, -7.0] * 13, dtype=np.float32)[:c.n]
    return {"x": x, "dout": np.linspace(-1, 1, c.n).astype(np.float32)}


_RELU_CASES = (Case(grid=blocks_for(101, threads_1d(101)), block=threads_1d(101), sizes={"n": 101}),)

RELU_KERNELS = ExerciseGroup(
    number="08.1", task="the two ReLU kernels my_relu_forward_kernel and my_relu_backward_kernel",
    parts=(
        KernelExercise(
            number="08.1", task="the kernel my_relu_forward_kernel(x, y)", call="my_relu_forward_kernel(x, y)",
            outputs=("y",), names={"y": "relu_forward(x)"}, inputs=_relu_inputs,
            reference=lambda x, dout: ref.relu_forward(x.astype(np.float64)), cases=_RELU_CASES, rtol=0, atol=0,
            float32="void(float32[::1], float32[::1])",  # the hint asks for float32 literals
        ),
        KernelExercise(
            number="08.1", task="the kernel my_relu_backward_kernel(dout, x, dx)",
            call="my_relu_backward_kernel(dout, x, dx)", outputs=("dx",), names={"dx": "relu_backward(dout, x)"},
            inputs=_relu_inputs, reference=lambda x, dout: ref.relu_backward(dout.astype(np.float64), x),
            cases=_RELU_CASES, rtol=0, atol=0,
            before=(
                Cause(lambda a: np.allclose(a.got, a.dout * (a.x >= 0)) and not np.allclose(a.got, a.want),
                      "relu_backward passes the gradient where x == 0; PyTorch (and the course) use ReLU'(0) = 0: "
                      "compare with x > 0, not x >= 0."),
            ),
            float32="void(float32[::1], float32[::1], float32[::1])",
        ),
    ),
    success=lambda f: (f"your ReLU kernels are exact on {f.parts[0].n} awkward values (±0, ±1e-30, an odd length); "
                       f"{f.float32}."),
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
    for step in range(steps):
        xb = r.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
        yb = r.integers(0, 10, 1)
        loss = model.loss(ops.asarray(xb), yb)
        model.backward()
        opt.step()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(xb)), torch.from_numpy(yb))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        if not np.isclose(loss, tloss.item(), rtol=1e-5, atol=1e-6):
            fail(f"training step {step}: LeNet with your ReLU has loss {loss:.6f}, PyTorch {tloss.item():.6f}. "
                 "The kernels passed alone, so look at shapes: do they handle every element of a 4-D activation "
                 "(the wrapper flattens it; size, not shape[0])?")
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


@exercise("08.2", "feature_shapes(h, w)")
def check_feature_shapes(feature_shapes) -> None:
    """The shape of one image after each of LeNet's first seven layers, by formula, for any image size."""
    names = ["conv 3->6 5x5", "ReLU", "max-pool 2x2", "conv 6->16 5x5", "ReLU", "max-pool 2x2", "flatten"]
    for h, w in ((32, 32), (37, 30), (21, 44)):
        want = _torch_feature_shapes(h, w)
        got = feature_shapes(h, w)
        if got is None or len(got) != len(want):
            fail(f"for a {h}x{w} image expected a list of {len(want)} shapes (one per layer), "
                 f"got {None if got is None else len(got)}.")
        for i, (g, wnt) in enumerate(zip(got, want)):
            if tuple(int(v) for v in g) != wnt:
                hint = ""
                if names[i].startswith("conv") and len(g) == 3 and g[1] == wnt[1] - 1:
                    hint = " A 5x5 window fits H - 5 + 1 times along H, not H - 5."
                elif names[i].startswith("max-pool") and len(g) == 3 and g[1] == wnt[1] + 1:
                    hint = " PyTorch drops an odd last row (floor, ceil_mode=False): use H // 2."
                fail(f"{h}x{w} image, layer {i} ({names[i]}): you have shape {tuple(g)}, PyTorch gives {wnt}.{hint}")
    passed("feature shapes agree with PyTorch for 32x32, 37x30 and 21x44 images "
           f"(32x32 flattens to {_torch_feature_shapes(32, 32)[-1][0]} features: the 400 inputs of the first dense layer).")


@exercise("08.3", "accuracy(logits_of, x, y, batch)")
def check_accuracy(accuracy) -> None:
    """Accuracy over a data set evaluated ``batch`` images at a time, whatever the size of the last batch."""
    r = np.random.default_rng(83)
    n, classes, batch = 103, 10, 25  # 4 batches of 25 and one of 3
    x = r.standard_normal((n, 4)).astype(np.float32)
    y = r.integers(0, classes, n)
    table = r.standard_normal((n, classes)).astype(np.float32)
    table[:90][np.arange(90), y[:90]] += 10  # the first 90 are right, the last 13 mostly wrong
    seen = []

    def logits_of(xb):
        seen.append(len(xb))
        idx = np.flatnonzero((x[:, None, :] == xb[None, :, :]).all(axis=2).any(axis=1))
        if len(idx) != len(xb):
            fail("logits_of was given images that are not rows of x: pass slices x[i:i + batch].")
        return table[idx]

    want = float((table.argmax(axis=1) == y).mean())
    got = accuracy(logits_of, x, y, batch)
    if max(seen, default=0) > batch:
        fail(f"logits_of was called with {max(seen)} images at once; batch is {batch}.")
    if sum(seen) != n:
        fail(f"logits_of saw {sum(seen)} images in total, the data set has {n}: "
             + ("the last, shorter batch was dropped." if sum(seen) < n else "some were evaluated twice."))
    batch_means = [float((table[i:i + batch].argmax(axis=1) == y[i:i + batch]).mean()) for i in range(0, n, batch)]
    if got is not None and np.isclose(got, np.mean(batch_means)) and not np.isclose(got, want):
        fail(f"you averaged the {len(batch_means)} batch accuracies ({got:.4f}); the last batch has only {n % batch} "
             f"images, so it weighs too much. Count correct predictions and divide by {n} (expected {want:.4f}).")
    compare("accuracy", np.float64(got if got is not None else np.nan), np.float64(want), rtol=1e-9, atol=1e-12)
    passed(f"accuracy {want:.4f} over {n} images in batches of {batch} (the last batch has {n % batch}).")
