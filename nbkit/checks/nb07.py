"""Checks for notebook 07 (training): the SGD-momentum kernel, a layer, and a training loop.

07.1 is declared (:data:`SGD_MOMENTUM`, :mod:`nbkit.checks.exercise`). 07.2 and 07.3 stay procedures: their
answers are a class and a loop that change state (a layer keeps its forward output for backward; a loop
updates a model and its optimizer), so what is checked is a sequence of calls and the state they leave, not
the value one call returns.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import numpy as np

from nbkit.checks._answers import call_answer
from nbkit.checks._core import CheckFailed, compare, exercise, fail, passed
from nbkit.checks.exercise import Attempt, Case, Cause, KernelExercise, equals
from nbkit.core.launch import blocks_for

# ---------------------------------------------------------------------------------------------- 07.1

SGD_CALL = "sgd_momentum(param, grad, buf, lr, momentum, dampening, weight_decay, first_step)"
SGD_SIGNATURE = "void(float32[::1], float32[::1], float32[::1], float32, float32, float32, float32, int32)"

# Runs beside torch.optim.SGD. The second changes the learning rate between steps (as a scheduler does) and
# uses dampening, so the first-step rule and the lr convention both show; it has weight decay too, so decay
# added outside the (1 - dampening) factor is told apart from decay added to the gradient. The third has no
# weight decay, other momentum and dampening, and 257 elements on blocks of 64 (the last block part empty);
# the fourth one element.
SGD_RUNS = (
    dict(label="lr=0.1, momentum=0.9, dampening=0, weight_decay=0.01", lrs=(0.1, 0.1, 0.1, 0.1), momentum=0.9,
         dampening=0.0, weight_decay=0.01, n=101, threads=32),
    dict(label="lr=0.1, 0.05, 0.05, 0.02, momentum=0.8, dampening=0.25, weight_decay=0.05",
         lrs=(0.1, 0.05, 0.05, 0.02), momentum=0.8, dampening=0.25, weight_decay=0.05, n=101, threads=32),
    dict(label="lr=0.3, 0.3, 0.01, momentum=0.5, dampening=0.5, weight_decay=0, 257 elements",
         lrs=(0.3, 0.3, 0.01), momentum=0.5, dampening=0.5, weight_decay=0.0, n=257, threads=64),
    dict(label="lr=0.2, momentum=0.99, dampening=0, weight_decay=0.1, one element", lrs=(0.2, 0.2), momentum=0.99,
         dampening=0.0, weight_decay=0.1, n=1, threads=32),
)


def _torch_sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, first_step, **_) -> tuple:
    """(param, grad, buf) after one step of ``torch.optim.SGD`` from this state: the reference.

    Through ``torch.optim.sgd.sgd``, the function ``SGD.step`` calls with the optimizer's state (foreach and fused
    left to PyTorch's default, as ``SGD`` leaves them): the same arithmetic, without building an optimizer, whose
    first construction in a process imports ``torch._dynamo`` (1.3 s of CPU time measured, for nothing here).
    """
    import torch
    from torch.optim.sgd import sgd

    tp = torch.tensor(np.array(param, dtype=np.float32))
    # PyTorch's first step sets buf = g (a None buffer); later steps read the buffer
    buffers = [None if first_step else torch.tensor(np.array(buf, dtype=np.float32))]
    with torch.no_grad():
        sgd([tp], [torch.tensor(np.array(grad, dtype=np.float32))], buffers, weight_decay=float(weight_decay),
            momentum=float(momentum), lr=float(lr), dampening=float(dampening), nesterov=False, maximize=False)
    return tp.numpy().copy(), grad, buffers[0].numpy().copy()


def _sgd_inputs(rng: np.random.Generator, c: Case) -> dict[str, object]:
    """The state before step ``c.step`` of run ``c.run``: PyTorch's, from the run's own random parameter and
    gradients (each case is made alone, so the run's data comes from its own generator)."""
    cfg = SGD_RUNS[c.run]
    r = np.random.default_rng((72, c.run))
    state = {"param": r.standard_normal(c.n).astype(np.float32), "buf": np.zeros(c.n, np.float32)}
    for k in range(c.step + 1):
        state.update(grad=r.standard_normal(c.n).astype(np.float32), lr=np.float32(cfg["lrs"][k]),
                     momentum=np.float32(cfg["momentum"]), dampening=np.float32(cfg["dampening"]),
                     weight_decay=np.float32(cfg["weight_decay"]), first_step=np.int32(k == 0))
        if k < c.step:
            state["param"], _, state["buf"] = _torch_sgd_step(**state)
    return state


def _sgd_case(run: int, step: int) -> Case:
    n, threads = SGD_RUNS[run]["n"], SGD_RUNS[run]["threads"]
    return Case(grid=blocks_for(n, threads), block=threads, sizes={"n": n, "run": run, "step": step})


def _g(a: Attempt) -> np.ndarray:
    """The gradient with weight decay, as PyTorch uses it: g = grad + weight_decay * param."""
    return a.grad + a.weight_decay * a.param


def _buf_cause(first: bool, mistake, message: str) -> Cause:
    """A mistake in the momentum buffer, on the first step (first=True) or on a later one."""
    same = equals(mistake, message, output="buf")
    return Cause(lambda a: bool(a.first_step) == first and same.holds(a), message, output="buf")


def _partly(a: Attempt) -> bool:
    """Some elements changed, others still hold their old value."""
    same = a.got == a.inputs[a.output]
    return bool(same.any() and not same.all())


_PARTLY = ("some elements were updated and others not: too few threads for the array, or a bounds guard that is "
           "too strict (a grid-stride loop must run while i < param.size).")
_TEXTBOOK = ("your buffer holds v = μv - lr·g, the textbook convention. PyTorch keeps v = μv + (1 - dampening)·g and "
             "subtracts lr·v from p.")


def _step_context(message: str, stage: str, c: Case) -> str:
    """A failure during the runs says which step of which run it was."""
    if stage == "float32":
        return message
    return f"✗ step {c.step + 1} of the run with {SGD_RUNS[c.run]['label']}: {message[2:]}"


SGD_MOMENTUM = KernelExercise(
    number="07.1", task=f"write the kernel {SGD_CALL}", call=SGD_CALL, outputs=("param", "grad", "buf"),
    inputs=_sgd_inputs, reference=_torch_sgd_step,
    cases=tuple(_sgd_case(run, step) for run, cfg in enumerate(SGD_RUNS) for step in range(len(cfg["lrs"]))),
    # the second step of the run with dampening and a changing lr, on as many elements as LeNet has parameters
    realistic=(Case(grid=blocks_for(62_006, 256), block=256, sizes={"n": 62_006, "run": 1, "step": 1},
                    label="LeNet's 62,006 parameters"),),
    rtol=1e-5, atol=1e-6, tolerances={"grad": (0, 0)}, order=("grad", "buf", "param"),
    causes=(
        Cause(lambda a: True, "your kernel wrote into grad; it must only read it (keep g in a local variable).",
              output="grad"),
        Cause(_partly, _PARTLY, output="buf"),
        _buf_cause(True, lambda a: (1 - a.dampening) * _g(a), "on the first step PyTorch sets buf = g, without the "
                   "(1 - dampening) factor: test first_step and start the buffer at the gradient."),
        _buf_cause(True, lambda a: -a.lr * _g(a), "your buffer holds -lr·g: that is the textbook convention v = μv - "
                   "lr·g, p += v. PyTorch keeps v = μv + (1 - dampening)·g and subtracts lr·v from p; the two agree "
                   "only while lr never changes, and the buffer (saved in checkpoints) differs."),
        _buf_cause(True, lambda a: a.grad, "your buffer holds the gradient without weight decay: the decay goes into "
                                           "the buffer, g = grad + weight_decay · param, before the momentum."),
        _buf_cause(False, lambda a: a.momentum * a.buf - a.lr * _g(a), _TEXTBOOK),
        _buf_cause(False, lambda a: a.momentum * a.buf + _g(a), "dampening is missing: v = μ·v + (1 - dampening)·g."),
        _buf_cause(False, lambda a: a.momentum * a.buf + (1 - a.dampening) * a.grad,
                   "your buffer has no weight decay in it: the decay goes into the buffer, g = grad + weight_decay · "
                   "param, before the momentum."),
        _buf_cause(False, lambda a: a.momentum * a.buf + (1 - a.dampening) * a.grad + a.weight_decay * a.param,
                   "weight decay must be added to the gradient before momentum and dampening: g = grad + wd * param, "
                   "then v = μ·v + (1 - dampening)·g (your buffer adds wd·param after the (1 - dampening) factor)."),
        _buf_cause(False, lambda a: a.momentum * a.buf + (1 - a.momentum) * _g(a),
                   "that is an exponential moving average (Adam's first moment); SGD uses v = μ·v + (1 - dampening)·g."),
        _buf_cause(False, _g, "the buffer does not carry over: v = μ·v + (1 - dampening)·g after the first step (is "
                              "first_step read correctly?)."),
        _buf_cause(False, lambda a: (1 - a.dampening) * _g(a), "the old buffer is ignored: v = μ·v + (1 - dampening)·g "
                                                               "reads buf first."),
        Cause(_partly, _PARTLY, output="param"),
        equals(lambda a: a.param, "param did not change: p -= lr · v.", output="param"),
        equals(lambda a: a.param - a.lr * _g(a), "you stepped with the gradient, not the momentum buffer: p -= lr · v.",
               output="param"),
        equals(lambda a: a.param + a.lr * a.wants["buf"], "the step goes the wrong way: p -= lr · v.", output="param"),
        equals(lambda a: a.param - a.wants["buf"], "the learning rate is missing: p -= lr · v.", output="param"),
        equals(lambda a: a.param + a.wants["buf"], "p += v belongs to the textbook convention v = μv - lr·g; PyTorch's "
                                                   "is p -= lr · v.", output="param"),
    ),
    frame=_step_context,
    float32=SGD_SIGNATURE,
    success=lambda f: (f"your kernel matches torch.optim.SGD (parameter and momentum buffer) after every step of "
                       f"{len(SGD_RUNS)} runs ({'; '.join(run['label'] for run in SGD_RUNS)}; 101 elements unless "
                       f"said); {f.float32}."),
)


def check_sgd_momentum(kernel) -> None:
    """Exercise 07.1: one SGD-with-momentum step per launch, checked against ``torch.optim.SGD`` step by step.

    ``param`` and ``buf`` are updated in place, ``grad`` only read; ``first_step`` is 1 on the first step
    (the buffer then holds zeros). Any thread mapping passes (one thread per element, grid-stride): the runs
    of :data:`SGD_RUNS` (101 elements on blocks of 32, 257 on blocks of 64, one element; several lr,
    momentum, dampening, weight decay). The gradient, the momentum buffer and the parameter are compared with
    PyTorch's after every step (each step starts from PyTorch's state), and float32 is checked in the PTX.
    """
    SGD_MOMENTUM.check(kernel)


# ---------------------------------------------------------------------------------------------- 07.2


def _to_host(a) -> np.ndarray:
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


@contextlib.contextmanager
def _context(prefix: str) -> Iterator[None]:
    """A failure inside says where it happened: "✗ <prefix><message>"."""
    try:
        yield
    except CheckFailed as exc:
        raise CheckFailed("✗ " + prefix + str(exc)[2:]) from None


def _layer_call(method, arg, what: str):
    try:
        return method(arg)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the learner's code is the verdict
        fail(f"{what} raised {type(exc).__name__}: {exc}")


_EARLIER = {
    "own": "an earlier forward call of this layer, not the last one: set self.y in every forward",
    "other": "the other layer object's forward: keep y in this object (self.y), not in the class or a global",
}


def _sigmoid_forward_causes(x: np.ndarray, earlier: dict[str, list[np.ndarray]]) -> list[tuple[object, str]]:
    """Wrong forward outputs that name their mistake: tanh, or the output for an earlier input returned again."""
    from nbkit.nn import reference as ref

    causes: list[tuple[object, str]] = [(np.tanh(x.astype(np.float64)), "forward computed tanh, not the sigmoid.")]
    causes += [(ref.sigmoid_forward(e.astype(np.float64)), f"forward returned the output of {_EARLIER[who]}.")
               for who, inputs in earlier.items() for e in inputs if e.shape == x.shape]
    return causes


def _sigmoid_backward_causes(dout: np.ndarray, x: np.ndarray,
                             earlier: dict[str, list[np.ndarray]]) -> list[tuple[object, str]]:
    """Wrong backward outputs that name their mistake (each is what that mistaken layer returns)."""
    from nbkit.nn import reference as ref

    d, s = dout.astype(np.float64), ref.sigmoid_forward(x.astype(np.float64))
    causes: list[tuple[object, str]] = [
        (ref.sigmoid_backward(d, ref.sigmoid_forward(s)),
         "backward applied the sigmoid to its output again: sigmoid_backward takes y = σ(x) itself."),
        (ref.sigmoid_backward(d, x.astype(np.float64)),
         "backward passed the input x where sigmoid_backward needs the forward output y = σ(x)."),
        (s * (1 - s), "backward returned σ'(x) without multiplying by the upstream gradient dout."),
    ]
    causes += [(ref.sigmoid_backward(d, ref.sigmoid_forward(e.astype(np.float64))),
                f"backward used the output of {_EARLIER[who]}.")
               for who, inputs in earlier.items() for e in inputs if e.shape == x.shape]
    return causes


@exercise("07.2", "write the class Sigmoid with forward and backward")
def check_sigmoid_layer(layer_cls) -> None:
    """Exercise 07.2: a ``Sigmoid`` layer with ``forward(x)`` and ``backward(dout)``, like ``nbkit.nn.layers.Tanh``.

    A layer is used many times: each layer object is called forward, forward again on another input,
    backward (which must use the *last* forward), backward again with another dout (backward changes no
    state), and a second layer object in between must not disturb the first. Shapes (5, 7), (2, 3, 4) and (1,).
    """
    from numba import cuda

    from nbkit.nn import reference as ref

    r = np.random.default_rng(71)

    def draw(shape):
        return (r.standard_normal(shape) * 3).astype(np.float32)

    def forward(layer, x, name, earlier):
        y = _to_host(_layer_call(layer.forward, cuda.to_device(x), f"{name}.forward(x)"))
        with _context(f"{name}.forward(x), x of shape {x.shape}: "):
            compare("forward", y, ref.sigmoid_forward(x.astype(np.float64)), rtol=1e-5, atol=1e-6,
                    causes=_sigmoid_forward_causes(x, earlier))

    def backward(layer, x, dout, name, earlier):
        dx = _to_host(_layer_call(layer.backward, cuda.to_device(dout), f"{name}.backward(dout)"))
        s = ref.sigmoid_forward(x.astype(np.float64))
        with _context(f"{name}.backward(dout) after its forward on x of shape {x.shape}: "):
            compare("backward", dx, ref.sigmoid_backward(dout.astype(np.float64), s), rtol=1e-4, atol=1e-6,
                    causes=_sigmoid_backward_causes(dout, x, earlier))

    # every input of one layer object has the shape of the other's at that time, so state shared between
    # objects (the class, a global) gives numbers, not a shape error; the later calls change shape
    first, second = layer_cls(), layer_cls()
    x1, x2, x3 = draw((5, 7)), draw((5, 7)), draw((5, 7))
    x4, x5, x6 = draw((2, 3, 4)), draw((2, 3, 4)), draw((1,))
    forward(first, x1, "layer", {})
    forward(first, x2, "layer (second call)", {"own": [x1]})
    forward(second, x3, "a second layer", {"other": [x1, x2]})
    backward(first, x2, draw((5, 7)), "layer", {"own": [x1], "other": [x3]})
    backward(first, x2, draw((5, 7)), "layer (backward again)", {"own": [x1], "other": [x3]})
    backward(second, x3, draw((5, 7)), "the second layer", {"other": [x1, x2]})
    forward(first, x4, "layer (third call)", {})
    forward(second, x5, "the second layer (second call)", {"other": [x4]})
    backward(first, x4, draw((2, 3, 4)), "layer", {"other": [x5]})
    backward(second, x5, draw((2, 3, 4)), "the second layer", {"other": [x4]})
    forward(first, x6, "layer (fourth call)", {})
    backward(first, x6, draw((1,)), "layer", {})
    passed("the Sigmoid layer's forward and backward agree with the reference on shapes (5, 7), (2, 3, 4) and (1,): "
           "forward twice, backward twice, and two layer objects used in turn.")


# ---------------------------------------------------------------------------------------------- 07.3

LOOP_CALL = "train_torch(model, opt, batches)"

# Two runs: the statement's optimizer on five batches of 16, then other settings (the loop must use the
# optimizer it is given) on three batches of different sizes.
LOOP_RUNS = (
    dict(lr=0.1, momentum=0.9, sizes=(16, 16, 16, 16, 16)),
    dict(lr=0.05, momentum=0.0, sizes=(16, 9, 4)),
)


def _loop(model, opt, batches, variant: str = "right") -> list[float]:
    """The correct PyTorch loop, or one of the usual mistakes (for naming the learner's by its output)."""
    import torch.nn.functional as F

    losses = []
    for X, y in batches:
        if variant != "no_zero":
            opt.zero_grad()
        loss = F.cross_entropy(model(X), y, reduction="sum" if variant == "sum" else "mean")
        loss.backward()
        if variant != "frozen":
            opt.step()
        losses.append(loss.item())
    return losses


def _flat(model) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def _record_calls(model, opt) -> list[str]:
    """The order of ``opt.zero_grad()``, ``loss.backward()`` and ``opt.step()`` calls the loop makes (instrumented)."""
    events: list[str] = []

    def wrap(name, method):
        def recorded(*args, **kwargs):
            events.append(name)
            return method(*args, **kwargs)
        return recorded

    opt.zero_grad = wrap("zero_grad", opt.zero_grad)
    opt.step = wrap("step", opt.step)
    for p in model.parameters():
        p.register_hook(lambda g: events.append("backward") if events[-1:] != ["backward"] else None)
    return events


def _frozen_cause(events: list[str]) -> str:
    """Why the parameters never changed, read from the calls the loop made; '' when the calls do not show it."""
    order = ("The order is zero_grad(), forward, loss, backward(), step().")
    if "step" not in events:
        return f"opt.step() is never called, so the parameters never change. {order}"
    if "backward" not in events:
        return f"loss.backward() is never called, so opt.step() finds no gradient. {order}"
    if any(events[k:k + 3] == ["backward", "zero_grad", "step"] for k in range(len(events))):
        return ("zero_grad() between backward() and step() sets the gradients to None, so opt.step() finds no "
                f"gradient and the parameters never change. {order}")
    if events.index("step") < events.index("backward"):
        return f"opt.step() comes before loss.backward(), so it finds no gradient. {order}"
    return ""


@exercise("07.3", f"write {LOOP_CALL}")
def check_training_loop(fn) -> None:
    """Exercise 07.3: a PyTorch training loop, run beside a correct one from the same weights.

    The model is a 2-8-2 tanh network; two runs (:data:`LOOP_RUNS`): ``SGD(lr=0.1, momentum=0.9)`` on five
    batches of 16, then ``SGD(lr=0.05)`` on batches of 16, 9 and 4. ``batches`` is a list of ``(X, y)``
    tensors. The losses of every step and the final parameters must match the correct loop. A mistake is
    named only when the answer's losses equal that mistake's (loops without zero_grad, with reduction='sum',
    or whose parameters never change); for the last, the calls the loop made (recorded) say which call is
    missing or misplaced.
    """
    import torch

    r = np.random.default_rng(73)
    centres = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float32)
    for run in LOOP_RUNS:
        steps = len(run["sizes"])
        batches = []
        for size in run["sizes"]:
            corner = r.integers(0, 4, size)
            X = (centres[corner] + 0.35 * r.standard_normal((size, 2))).astype(np.float32)
            batches.append((torch.from_numpy(X), torch.from_numpy((corner >= 2).astype(np.int64))))
        torch.manual_seed(73)
        base = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        label = f"with SGD(lr={run['lr']}, momentum={run['momentum']}) on batches of {', '.join(map(str, run['sizes']))}"

        def fresh(base=base, run=run):
            model = copy.deepcopy(base)
            return model, torch.optim.SGD(model.parameters(), lr=run["lr"], momentum=run["momentum"])

        model, opt = fresh()
        events = _record_calls(model, opt)
        result = call_answer(fn, model, opt, list(batches), call=LOOP_CALL,
                             hint="(PyTorch says 'modified by an inplace operation' when opt.step() changes the "
                                  "weights between the forward pass and loss.backward(): the order is zero_grad(), "
                                  "forward, loss, backward(), step().)")
        try:
            got = np.array([float(v) for v in result], dtype=np.float64)
        except (TypeError, ValueError):
            fail(f"{LOOP_CALL} must return a list of {steps} floats, the loss of each step (loss.item()); it returned "
                 f"{type(result).__name__}.")
        kinds = sorted({type(v).__name__ for v in result if not isinstance(v, float)})
        if kinds:
            fail(f"{LOOP_CALL} must return the losses as floats (loss.item()); it returned {', '.join(kinds)} values.")
        if got.shape != (steps,):
            fail(f"{LOOP_CALL} must return one loss per batch: {steps} values, got {got.size} ({label}).")
        variants = {}
        for name in ("right", "no_zero", "frozen", "sum"):
            m, o = fresh()
            variants[name] = (np.array(_loop(m, o, batches, name)), _flat(m))
        want_losses, want_params = variants["right"]
        frozen = _frozen_cause(events)
        loss_causes = [
            (variants["no_zero"][0], "the gradients accumulate: PyTorch's backward() *adds* to .grad, so without "
                                     "opt.zero_grad() each step uses the sum of all gradients so far. Call "
                                     "opt.zero_grad() at the start of every step."),
            (variants["sum"][0], "your losses are those of reduction='sum' (the sum over the batch, which also scales "
                                 "the gradients): use the mean over the batch, F.cross_entropy's default."),
        ]
        if frozen:
            loss_causes.append((variants["frozen"][0], frozen))
        with _context(f"{label}: "):
            compare("losses", got, want_losses, rtol=1e-6, atol=1e-7, causes=loss_causes)
            compare("parameters after the loop", _flat(model), want_params, rtol=1e-5, atol=1e-7,
                    causes=[(_flat(base), frozen)] if frozen else [])
    passed(f"your loop matches the correct one in {len(LOOP_RUNS)} runs ("
           + "; ".join(f"SGD(lr={run['lr']}, momentum={run['momentum']}), {len(run['sizes'])} steps"
                       for run in LOOP_RUNS)
           + ") and leaves the same parameters: the gradients are cleared between steps and every step uses its "
           "own batch's gradient.")
