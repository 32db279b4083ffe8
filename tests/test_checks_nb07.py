"""Exercises of notebook 07: the SGD-momentum kernel, the Sigmoid layer and the training loop."""

import pytest
import torch
import torch.nn.functional as F
from conftest import FLOAT32_NOTE
from numba import cuda, float32

from nbkit.checks import CheckFailed, check_sgd_momentum, check_sigmoid_layer, check_training_loop
from nbkit.kernels.activations import sigmoid_backward, sigmoid_forward


def fails(check, answer, message):
    with pytest.raises(CheckFailed, match=message) as info:
        check(answer)
    assert str(info.value).startswith("✗ ")
    return str(info.value)


# ------------------------------------------------------------------ 07.1 SGD-momentum kernel

@cuda.jit
def sgd_right(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        if first_step:
            b = g
        else:
            b = momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = b
        param[i] -= lr * b


@cuda.jit
def sgd_grid_stride(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.size, stride):
        g = grad[i] + weight_decay * param[i]
        b = g if first_step != 0 else momentum * buf[i] + g - dampening * g
        buf[i] = b
        param[i] = param[i] - lr * b


@cuda.jit
def sgd_textbook(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        b = momentum * buf[i] - lr * g  # v = μv - lr g, p += v
        buf[i] = b
        param[i] += b


@cuda.jit
def sgd_no_first_step(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        b = momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = b
        param[i] -= lr * b


@cuda.jit
def sgd_float64(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        if first_step:
            b = g
        else:
            b = momentum * buf[i] + (1 - dampening) * g  # int 1 - float32: float64 in numba
        buf[i] = b
        param[i] -= lr * b


@cuda.jit
def sgd_no_weight_decay(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i]
        b = g if first_step else momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = b
        param[i] -= lr * b


@cuda.jit
def sgd_decay_after_dampening(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    # weight decay added to the buffer outside the (1 - dampening) factor: right unless both are non-zero
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i]
        if first_step:
            b = g
        else:
            b = momentum * buf[i] + (float32(1) - dampening) * g
        b += weight_decay * param[i]
        buf[i] = b
        param[i] -= lr * b


@cuda.jit
def sgd_decay_in_the_step(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)  # wrong: weight decay added to the step, not to the buffer (probe 07.1 C: it is not "missing")
    if i < param.size:
        g = grad[i]
        b = g if first_step else momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = b
        param[i] -= lr * (b + weight_decay * param[i])


@cuda.jit
def sgd_unguarded(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)
    g = grad[i] + weight_decay * param[i]
    b = g if first_step else momentum * buf[i] + (float32(1) - dampening) * g
    buf[i] = b
    param[i] -= lr * b


def test_sgd_momentum_passes_any_thread_mapping(capsys):
    for kernel in (sgd_right, sgd_grid_stride):
        check_sgd_momentum(kernel)
        out = capsys.readouterr().out
        assert out.startswith("✓ your kernel matches torch.optim.SGD"), out
        assert out.rstrip().endswith("; " + FLOAT32_NOTE), out


@pytest.mark.parametrize("wrong, message", [
    (sgd_textbook, r"step 1 of the run with lr=0.1, momentum=0.9.*buf is wrong.*the first is buf\[0\].*v = μv - lr·g"),
    (sgd_no_first_step, r"step 1 of the run with .*dampening=0.25.*on the first step PyTorch sets buf = g"),
    (sgd_no_weight_decay, "your buffer holds the gradient without weight decay"),
    (sgd_decay_in_the_step, "your buffer holds the gradient without weight decay"),
    (sgd_decay_after_dampening, r"step 2 of the run with .*dampening=0.25, weight_decay=0.05.*buf is wrong.*"
                                r"weight decay must be added to the gradient before momentum and dampening: "
                                r"g = grad \+ wd \* param"),
    (sgd_unguarded, "step 1 of the run with .*: a thread accessed an element outside an array"),
    pytest.param(sgd_float64, "float64 instruction", marks=pytest.mark.compiler),
])
def test_sgd_momentum_wrong_answers(wrong, message):
    fails(check_sgd_momentum, wrong, message)


@cuda.jit
def sgd_fixed_size(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    i = cuda.grid(1)
    if i < 101:  # wrong: the size of the first runs hard-coded
        g = grad[i] + weight_decay * param[i]
        b = g if first_step else momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = b
        param[i] -= lr * b


def test_sgd_momentum_runs_other_sizes():
    fails(check_sgd_momentum, sgd_fixed_size, "step 1 of the run with .*257 elements: .*buf is wrong")


def test_sgd_momentum_parameter_order():
    @cuda.jit
    def swapped(grad, param, buf, lr, momentum, dampening, weight_decay, first_step):
        pass

    fails(check_sgd_momentum, swapped, "put them in that order")


# ------------------------------------------------------------------ 07.2 Sigmoid layer

class SigmoidRight:
    def forward(self, x):
        self.y = sigmoid_forward(x)
        return self.y

    def backward(self, dout):
        return sigmoid_backward(dout, self.y)


class SigmoidKeepsInput:  # correct too: recomputes y from the saved input
    def forward(self, x):
        self.x = x
        return sigmoid_forward(x)

    def backward(self, dout):
        return sigmoid_backward(dout, sigmoid_forward(self.x))


class SigmoidUsesInput(SigmoidKeepsInput):
    def backward(self, dout):
        return sigmoid_backward(dout, self.x)


class SigmoidTwice(SigmoidRight):
    def backward(self, dout):
        return sigmoid_backward(dout, sigmoid_forward(self.y))


class SigmoidCrashes(SigmoidRight):
    def backward(self, dout):
        return sigmoid_backward(dout, self.output)


class SigmoidCachesFirst(SigmoidRight):  # wrong: keeps the output of its first call
    def forward(self, x):
        if not hasattr(self, "y"):
            self.y = sigmoid_forward(x)
        return self.y


class SigmoidClassState:  # wrong: y kept in the class, shared by every layer object
    y = None

    def forward(self, x):
        SigmoidClassState.y = sigmoid_forward(x)
        return SigmoidClassState.y

    def backward(self, dout):
        return sigmoid_backward(dout, SigmoidClassState.y)


class SigmoidBackwardFirstOutput:  # wrong: backward uses the output of the first forward only
    def forward(self, x):
        y = sigmoid_forward(x)
        if not hasattr(self, "first"):
            self.first = y
        return y

    def backward(self, dout):
        return sigmoid_backward(dout, self.first)


class SigmoidIsTanh(SigmoidRight):
    def forward(self, x):
        from nbkit.kernels.activations import tanh_forward

        self.y = tanh_forward(x)
        return self.y


class SigmoidForgetsDout(SigmoidRight):
    def backward(self, dout):
        return sigmoid_backward(sigmoid_forward(self.y) * 0 + 1, self.y)


def test_sigmoid_layer_names_tanh_and_a_missing_dout():
    fails(check_sigmoid_layer, SigmoidIsTanh, "forward computed tanh")
    fails(check_sigmoid_layer, SigmoidForgetsDout, "without multiplying by the upstream gradient dout")


def test_sigmoid_layer_is_called_more_than_once():
    fails(check_sigmoid_layer, SigmoidCachesFirst, r"layer \(second call\).forward\(x\).*forward is wrong.*Likely cause: "
                                                   r"forward returned the output of an earlier forward call of this layer")
    fails(check_sigmoid_layer, SigmoidBackwardFirstOutput, r"layer.backward\(dout\).*Likely cause: backward used the "
                                                           r"output of an earlier forward call of this layer")
    fails(check_sigmoid_layer, SigmoidClassState, r"layer.backward\(dout\).*Likely cause: backward used the output of "
                                                  r"the other layer object's forward")


def test_sigmoid_layer_check(capsys):
    for right in (SigmoidRight, SigmoidKeepsInput):
        check_sigmoid_layer(right)
        assert capsys.readouterr().out.startswith("✓")
    fails(check_sigmoid_layer, SigmoidUsesInput, r"backward is wrong.*passed the input x")
    fails(check_sigmoid_layer, SigmoidTwice, "applied the sigmoid to its output again")
    fails(check_sigmoid_layer, SigmoidCrashes, "backward\\(dout\\) raised AttributeError")


# ------------------------------------------------------------------ 07.3 training loop

def loop_right(model, opt, batches):
    losses = []
    for X, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def loop_set_to_zero(model, opt, batches):  # another correct loop: zero the grads by hand, at the end
    losses = []
    for X, y in batches:
        loss = torch.nn.CrossEntropyLoss()(model(X), y)
        loss.backward()
        opt.step()
        for p in model.parameters():
            p.grad.zero_()
        losses.append(loss.item())
    return losses


def loop_tensor_losses(model, opt, batches):  # wrong: the statement asks for floats (probe 07.3 A)
    return [torch.tensor(v) for v in loop_right(model, opt, batches)]


def loop_no_zero(model, opt, batches):
    losses = []
    for X, y in batches:
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def loop_zero_between(model, opt, batches):
    losses = []
    for X, y in batches:
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        opt.zero_grad()
        opt.step()
        losses.append(loss.item())
    return losses


def loop_step_before_backward(model, opt, batches):
    losses = []
    for X, y in batches:
        loss = F.cross_entropy(model(X), y)
        opt.step()
        loss.backward()
        losses.append(loss.item())
    return losses


def loop_no_step(model, opt, batches):  # wrong: opt.step() is missing
    losses = []
    for X, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        losses.append(loss.item())
    return losses


def loop_sum(model, opt, batches):  # wrong: reduction='sum'
    losses = []
    for X, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(X), y, reduction="sum")
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def loop_own_optimizer(model, opt, batches):  # wrong: ignores the optimizer it is given
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return loop_right(model, opt, batches)


def test_training_loop_causes_come_from_the_calls_made():
    """No step and zero_grad between backward and step give the same losses: the recorded calls tell them apart."""
    message = fails(check_training_loop, loop_no_step, "opt.step\\(\\) is never called")
    assert "between backward" not in message
    message = fails(check_training_loop, loop_zero_between, "zero_grad\\(\\) between backward\\(\\) and step\\(\\)")
    assert "never called" not in message
    fails(check_training_loop, loop_sum, "reduction='sum'")
    fails(check_training_loop, loop_tensor_losses, "losses as floats.*Tensor")
    message = fails(check_training_loop, loop_own_optimizer, r"with SGD\(lr=0.05, momentum=0.0\) on batches of 16, 9, 4: "
                                                             r"losses is wrong")
    assert "Likely cause" not in message


def test_training_loop_check(capsys):
    for right in (loop_right, loop_set_to_zero):
        check_training_loop(right)
        assert capsys.readouterr().out.startswith("✓ your loop matches"), right
    fails(check_training_loop, loop_no_zero, r"losses is wrong.*the first is losses\[2\].*gradients accumulate")
    fails(check_training_loop, loop_zero_between, "zero_grad\\(\\) between backward.*parameters never change")
    fails(check_training_loop, loop_step_before_backward, "raised RuntimeError.*the order is zero_grad")
    fails(check_training_loop, lambda m, o, b: loop_right(m, o, b)[:-1], "one loss per batch")
    fails(check_training_loop, lambda m, o, b: None, "must return a list")


def test_unsolved_stubs_say_not_solved(capsys):
    @cuda.jit
    def kernel_stub(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
        raise NotImplementedError()

    class LayerStub:
        def forward(self, x):
            raise NotImplementedError()

        def backward(self, dout):
            raise NotImplementedError()

    def loop_stub(model, opt, batches):
        raise NotImplementedError()

    for check, answer, number in ((check_sgd_momentum, kernel_stub, "07.1"), (check_sigmoid_layer, LayerStub, "07.2"),
                                  (check_training_loop, loop_stub, "07.3")):
        check(answer)
        assert capsys.readouterr().out.startswith(f"◻ Exercise {number} not solved yet")


def test_the_sgd_reference_is_torch_optim_sgd_step_bit_for_bit():
    # the reference calls torch.optim.sgd.sgd (what SGD.step calls) without building an optimizer: the same numbers
    import numpy as np

    from nbkit.checks.nb07 import SGD_MOMENTUM, _sgd_inputs, _torch_sgd_step

    for case in (*SGD_MOMENTUM.cases, *SGD_MOMENTUM.realistic):
        s = _sgd_inputs(None, case)
        param = torch.tensor(s["param"], requires_grad=True)
        opt = torch.optim.SGD([param], lr=float(s["lr"]), momentum=float(s["momentum"]),
                              dampening=float(s["dampening"]), weight_decay=float(s["weight_decay"]))
        if not s["first_step"]:
            opt.state[param]["momentum_buffer"] = torch.tensor(s["buf"])
        param.grad = torch.tensor(s["grad"])
        opt.step()
        got_param, got_grad, got_buf = _torch_sgd_step(**s)
        assert np.array_equal(got_param, param.detach().numpy()), case
        assert np.array_equal(got_buf, opt.state[param]["momentum_buffer"].numpy()), case
        assert got_grad is s["grad"]
