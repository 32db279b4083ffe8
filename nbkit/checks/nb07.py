"""Checks for notebook 07 (training): the SGD-momentum kernel, a layer, and a training loop."""

from __future__ import annotations

import copy

import numpy as np

from nbkit.checks._answers import call_answer
from nbkit.checks._core import CheckFailed, compare, exercise, fail, passed, require_float32, run_kernel
from nbkit.core.launch import blocks_for

# ---------------------------------------------------------------------------------------------- 07.1

SGD_CALL = "sgd_momentum(param, grad, buf, lr, momentum, dampening, weight_decay, first_step)"
SGD_SIGNATURE = "void(float32[::1], float32[::1], float32[::1], float32, float32, float32, float32, int32)"

# Two runs of four steps beside torch.optim.SGD. The second changes the learning rate between steps (as a
# scheduler does) and uses dampening, so the first-step rule and the lr convention both show; it has weight
# decay too, so decay added outside the (1 - dampening) factor is told apart from decay added to the gradient.
SGD_RUNS = (
    dict(label="lr=0.1, momentum=0.9, dampening=0, weight_decay=0.01", lrs=(0.1, 0.1, 0.1, 0.1), momentum=0.9,
         dampening=0.0, weight_decay=0.01),
    dict(label="lr=0.1, 0.05, 0.05, 0.02, momentum=0.8, dampening=0.25, weight_decay=0.05",
         lrs=(0.1, 0.05, 0.05, 0.02), momentum=0.8, dampening=0.25, weight_decay=0.05),
)


def _buf_causes(g, b_prev, p_prev, lr, mu, tau, wd, first):
    g_eff = g + wd * p_prev
    causes = []
    if first:
        causes += [
            ((1 - tau) * g_eff, "on the first step PyTorch sets buf = g, without the (1 - dampening) factor: "
                                "test first_step and start the buffer at the gradient."),
            (-lr * g_eff, "your buffer holds -lr·g: that is the textbook convention v = μv - lr·g, p += v. PyTorch "
                          "keeps v = μv + (1 - dampening)·g and subtracts lr·v from p; the two agree only while lr "
                          "never changes, and the buffer (saved in checkpoints) differs."),
            (g, "weight decay is missing: g = grad + weight_decay · param, before the momentum."),
        ]
    else:
        causes += [
            (mu * b_prev - lr * g_eff, "your buffer holds v = μv - lr·g, the textbook convention. PyTorch keeps "
                                       "v = μv + (1 - dampening)·g and subtracts lr·v from p."),
            (mu * b_prev + g_eff, "dampening is missing: v = μ·v + (1 - dampening)·g."),
            (mu * b_prev + (1 - tau) * g, "weight decay is missing: g = grad + weight_decay · param, before the momentum."),
            (mu * b_prev + (1 - tau) * g + wd * p_prev,
             "weight decay must be added to the gradient before momentum and dampening: g = grad + wd * param, "
             "then v = μ·v + (1 - dampening)·g (your buffer adds wd·param after the (1 - dampening) factor)."),
            (mu * b_prev + (1 - mu) * g_eff, "that is an exponential moving average (Adam's first moment); SGD "
                                             "uses v = μ·v + (1 - dampening)·g."),
            (g_eff, "the buffer does not carry over: v = μ·v + (1 - dampening)·g after the first step (is first_step "
                    "read correctly?)."),
            ((1 - tau) * g_eff + mu * 0, "the old buffer is ignored: v = μ·v + (1 - dampening)·g reads buf first."),
        ]
    return causes


_PARTLY = ("some elements were updated and others not: too few threads for the array, or a bounds guard that is "
           "too strict (a grid-stride loop must run while i < param.size).")


def _partly(before: np.ndarray):
    """A cause predicate: some elements changed, others still hold their old value."""
    def check(got: np.ndarray) -> bool:
        same = got == before
        return bool(same.any() and not same.all())

    return check


def _with_context(context: str, check, *args, **kwargs) -> None:
    try:
        check(*args, **kwargs)
    except CheckFailed as exc:
        raise CheckFailed(f"✗ {context}: {str(exc)[2:]}") from None


@exercise("07.1", f"write the kernel {SGD_CALL}")
def check_sgd_momentum(kernel, n: int = 101, threads: int = 32) -> None:
    """Exercise 07.1: one SGD-with-momentum step per launch, checked against ``torch.optim.SGD`` step by step.

    ``param`` and ``buf`` are updated in place, ``grad`` only read; ``first_step`` is 1 on the first step
    (the buffer then holds zeros). Any thread mapping passes (one thread per element, grid-stride). The
    parameter and the momentum buffer are compared with PyTorch's after every step, and float32 is
    checked in the PTX.
    """
    import torch

    r = np.random.default_rng(72)
    grid = blocks_for(n, threads)
    for cfg in SGD_RUNS:
        p0 = r.standard_normal(n).astype(np.float32)
        tp = torch.tensor(p0.copy(), requires_grad=True)
        opt = torch.optim.SGD([tp], lr=cfg["lrs"][0], momentum=cfg["momentum"], dampening=cfg["dampening"],
                              weight_decay=cfg["weight_decay"])
        param, buf = p0.copy(), np.zeros(n, dtype=np.float32)
        for k, lr in enumerate(cfg["lrs"]):
            g = r.standard_normal(n).astype(np.float32)
            opt.param_groups[0]["lr"] = lr
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
            want_p, want_b = tp.detach().numpy().copy(), opt.state[tp]["momentum_buffer"].numpy().copy()
            extra = (np.float32(lr), np.float32(cfg["momentum"]), np.float32(cfg["dampening"]),
                     np.float32(cfg["weight_decay"]), np.int32(k == 0))
            context = f"step {k + 1} of the run with {cfg['label']}"
            try:
                run = run_kernel(kernel, grid, threads, [], [(n,), (n,), (n,)], extra=extra,
                                 initial=[param, g, buf], output_names=("param", "grad", "buf"), call=SGD_CALL)
            except CheckFailed as exc:
                raise CheckFailed(f"✗ {context}: {str(exc)[2:]}") from None
            got_p, got_g, got_b = run.outputs
            _with_context(context, compare, "grad", got_g, g, rtol=0, atol=0, run=run, causes=[
                (lambda got: True, "your kernel wrote into grad; it must only read it (keep g in a local variable).")])
            _with_context(context, compare, "buf", got_b, want_b, rtol=1e-5, atol=1e-6, run=run, causes=[
                (_partly(buf), _PARTLY),
                *_buf_causes(g, buf, param, lr, cfg["momentum"], cfg["dampening"], cfg["weight_decay"], k == 0)])
            _with_context(context, compare, "param", got_p, want_p, rtol=1e-5, atol=1e-6, run=run, causes=[
                (_partly(param), _PARTLY),
                (param, "param did not change: p -= lr · v."),
                (param - lr * (g + cfg["weight_decay"] * param), "you stepped with the gradient, not the momentum "
                                                                 "buffer: p -= lr · v."),
                (param + lr * want_b, "the step goes the wrong way: p -= lr · v."),
                (param - want_b, "the learning rate is missing: p -= lr · v."),
                (param + want_b, "p += v belongs to the textbook convention v = μv - lr·g; PyTorch's is p -= lr · v."),
            ])
            param, buf = got_p.copy(), got_b.copy()
    f32 = require_float32(kernel, SGD_SIGNATURE)
    passed(f"your kernel matches torch.optim.SGD (parameter and momentum buffer) after each of {len(SGD_RUNS[0]['lrs'])} "
           f"steps, in two runs (weight decay; a changing learning rate with dampening and weight decay), {n} elements with "
           f"{grid} blocks of {threads} threads; {f32}.")


# ---------------------------------------------------------------------------------------------- 07.2


def _to_host(a) -> np.ndarray:
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def _layer_call(method, arg, what: str):
    try:
        return method(arg)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the learner's code is the verdict
        fail(f"{what} raised {type(exc).__name__}: {exc}")


@exercise("07.2", "write the class Sigmoid with forward and backward")
def check_sigmoid_layer(layer_cls) -> None:
    """Exercise 07.2: a ``Sigmoid`` layer with ``forward(x)`` and ``backward(dout)``, like ``nbkit.nn.layers.Tanh``."""
    from numba import cuda

    from nbkit.nn import reference as ref

    r = np.random.default_rng(71)
    x = (r.standard_normal((5, 7)) * 3).astype(np.float32)
    dout = r.standard_normal((5, 7)).astype(np.float32)
    layer = layer_cls()
    y = _to_host(_layer_call(layer.forward, cuda.to_device(x), "Sigmoid().forward(x)"))
    compare("forward", y, ref.sigmoid_forward(x.astype(np.float64)), rtol=1e-5, atol=1e-6, causes=[
        (np.tanh(x), "forward computed tanh, not the sigmoid."),
    ])
    dx = _to_host(_layer_call(layer.backward, cuda.to_device(dout), "Sigmoid().backward(dout)"))
    s = ref.sigmoid_forward(x.astype(np.float64))
    compare("backward", dx, ref.sigmoid_backward(dout.astype(np.float64), s), rtol=1e-4, atol=1e-6, causes=[
        (dout * ref.sigmoid_backward(np.ones_like(s), ref.sigmoid_forward(s)),
         "backward applied the sigmoid to its output again: sigmoid_backward takes y = σ(x) itself."),
        (dout * ref.sigmoid_backward(np.ones_like(s), x.astype(np.float64)),
         "backward passed the input x where sigmoid_backward needs the forward output y = σ(x)."),
        (s * (1 - s), "backward returned σ'(x) without multiplying by the upstream gradient dout."),
    ])
    passed("the Sigmoid layer's forward and backward agree with the reference.")


# ---------------------------------------------------------------------------------------------- 07.3

LOOP_CALL = "train_torch(model, opt, batches)"


def _loop(model, opt, batches, variant: str = "right") -> list[float]:
    """The correct PyTorch loop, or one of the usual mistakes (for naming the learner's)."""
    import torch.nn.functional as F

    losses = []
    for X, y in batches:
        if variant in ("right", "step_first"):
            opt.zero_grad()
        loss = F.cross_entropy(model(X), y)
        if variant == "step_first":
            opt.step()
            loss.backward()
        else:
            loss.backward()
            if variant == "zero_after_backward":
                opt.zero_grad()
            opt.step()
        losses.append(loss.item())
    return losses


def _flat(model) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


@exercise("07.3", f"write {LOOP_CALL}")
def check_training_loop(fn, steps: int = 5) -> None:
    """Exercise 07.3: a PyTorch training loop, run beside a correct one from the same weights.

    The model is a 2-8-2 tanh network with ``SGD(lr=0.1, momentum=0.9)``; ``batches`` is a list of
    ``(X, y)`` tensors. The losses of every step and the final parameters must match the correct loop.
    Forgetting ``zero_grad`` (gradients then accumulate), zeroing between ``backward`` and ``step``, or
    stepping before ``backward`` are recognised by running those loops too.
    """
    import torch

    r = np.random.default_rng(73)
    centres = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float32)
    batches = []
    for _ in range(steps):
        corner = r.integers(0, 4, 16)
        X = (centres[corner] + 0.35 * r.standard_normal((16, 2))).astype(np.float32)
        batches.append((torch.from_numpy(X), torch.from_numpy((corner >= 2).astype(np.int64))))
    torch.manual_seed(73)
    base = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

    def fresh():
        model = copy.deepcopy(base)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, opt = fresh()
    result = call_answer(fn, model, opt, list(batches), call=LOOP_CALL,
                         hint="(PyTorch says 'modified by an inplace operation' when opt.step() changes the weights "
                              "between the forward pass and loss.backward(): the order is zero_grad(), forward, loss, "
                              "backward(), step().)")
    try:
        got = np.array([float(v) for v in result], dtype=np.float64)
    except (TypeError, ValueError):
        fail(f"{LOOP_CALL} must return a list of {steps} floats, the loss of each step (loss.item()); it returned "
             f"{type(result).__name__}.")
    if got.shape != (steps,):
        fail(f"{LOOP_CALL} must return one loss per batch: {steps} values, got {got.size}.")
    variants = {}
    for name in ("right", "no_zero", "zero_after_backward", "step_first"):
        m, o = fresh()
        variants[name] = (np.array(_loop(m, o, batches, name)), _flat(m))
    want_losses, want_params = variants["right"]
    frozen = ("the parameters never change, so {what} opt.step() finds no gradient: zero_grad() sets the gradients "
              "to None. The order is zero_grad(), forward, loss, backward(), step().")
    loss_causes = [
        (variants["no_zero"][0], "the gradients accumulate: PyTorch's backward() *adds* to .grad, so without "
                                 "opt.zero_grad() each step uses the sum of all gradients so far. Call "
                                 "opt.zero_grad() at the start of every step."),
        (variants["zero_after_backward"][0], frozen.format(what="zero_grad() between backward() and step() means")),
        (variants["step_first"][0], frozen.format(what="step() before backward() means")),
        (want_losses * 16, "your losses are 16 times too large: use the mean over the batch (F.cross_entropy's "
                           "default), not reduction='sum'."),
    ]
    compare("losses", got, want_losses, rtol=1e-6, atol=1e-7, causes=loss_causes)
    compare("parameters after the loop", _flat(model), want_params, rtol=1e-5, atol=1e-7, causes=[
        (_flat(base), "the parameters never changed: call opt.step() after loss.backward()."),
        (variants["no_zero"][1], "the gradients accumulate: call opt.zero_grad() at the start of every step."),
    ])
    passed(f"your loop matches the correct one for all {steps} steps (losses {got[0]:.4f} → {got[-1]:.4f}) and leaves "
           "the same parameters: zero_grad, forward, backward, step, in that order.")
