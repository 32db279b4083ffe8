"""Exercises 07.1-07.3 (training): answers written from the learner notebook."""

import torch
from numba import cuda, float32

from nbkit.kernels.activations import sigmoid_backward, sigmoid_forward
from nbkit.nn import layers

from ._answer import Answer

# ---- 07.1 SGD with momentum


@cuda.jit
def sgd_ok(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Correct: one thread per element."""
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        if first_step:
            v = g
        else:
            v = momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = v
        param[i] -= lr * v


@cuda.jit
def sgd_stride(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Correct: grid-stride loop, first_step compared with 1, momentum == 0 handled (no buffer)."""
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        g = weight_decay * param[i] + grad[i]
        if momentum != float32(0):
            if first_step == 1:
                buf[i] = g
            else:
                buf[i] = buf[i] * momentum + g - dampening * g
            g = buf[i]
        param[i] = param[i] - g * lr


@cuda.jit
def sgd_int_one(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Wrong: (1 - dampening) with an integer 1 (float64 arithmetic)."""
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        if first_step:
            v = g
        else:
            v = momentum * buf[i] + (1 - dampening) * g
        buf[i] = v
        param[i] -= lr * v


@cuda.jit
def sgd_textbook(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Wrong: textbook form v = mu v - lr g, theta += v (differs once lr changes; and buffer holds -lr g)."""
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        if first_step:
            v = -lr * g
        else:
            v = momentum * buf[i] - lr * (float32(1) - dampening) * g
        buf[i] = v
        param[i] += v


@cuda.jit
def sgd_no_wd(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Wrong: ignores weight_decay."""
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i]
        if first_step:
            v = g
        else:
            v = momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = v
        param[i] -= lr * v


@cuda.jit
def sgd_wd_after(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Wrong: weight decay added after the buffer (to the step, not into the buffer)."""
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i]
        if first_step:
            v = g
        else:
            v = momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = v
        param[i] -= lr * (v + weight_decay * param[i])


@cuda.jit
def sgd_ignore_first(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Wrong: ignores first_step (the first buffer is (1 - tau) g + mu * 0 or garbage)."""
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        v = momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = v
        param[i] -= lr * v


@cuda.jit
def sgd_writes_grad(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Wrong: writes the decayed gradient back into grad (grad must only be read)."""
    i = cuda.grid(1)
    if i < param.size:
        grad[i] += weight_decay * param[i]
        if first_step:
            v = grad[i]
        else:
            v = momentum * buf[i] + (float32(1) - dampening) * grad[i]
        buf[i] = v
        param[i] -= lr * v


@cuda.jit
def sgd_dampen_first(param, grad, buf, lr, momentum, dampening, weight_decay, first_step):
    """Wrong: dampening applied on the first step too (v = (1 - tau) g)."""
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        if first_step:
            v = (float32(1) - dampening) * g
        else:
            v = momentum * buf[i] + (float32(1) - dampening) * g
        buf[i] = v
        param[i] -= lr * v


# ---- 07.2 Sigmoid layer


class SigmoidOk(layers.Layer):
    """Correct: keeps the output y, as Tanh does."""

    def forward(self, x):
        self.y = sigmoid_forward(x)
        return self.y

    def backward(self, dout):
        return sigmoid_backward(dout, self.y)


class SigmoidRecompute(layers.Layer):
    """Correct: keeps the input and recomputes y in backward."""

    def forward(self, x):
        self.x = x
        return sigmoid_forward(x)

    def backward(self, dout):
        return sigmoid_backward(dout, sigmoid_forward(self.x))


class SigmoidWithX(layers.Layer):
    """Wrong: passes the input x to sigmoid_backward (which wants the output y)."""

    def forward(self, x):
        self.x = x
        return sigmoid_forward(x)

    def backward(self, dout):
        return sigmoid_backward(dout, self.x)


class SigmoidCached(layers.Layer):
    """Wrong: caches the first forward's output and returns it on every later call."""

    def forward(self, x):
        if not hasattr(self, "y"):
            self.y = sigmoid_forward(x)
        return self.y

    def backward(self, dout):
        return sigmoid_backward(dout, self.y)


class SigmoidArgsSwapped(layers.Layer):
    """Wrong: sigmoid_backward(y, dout) (arguments swapped)."""

    def forward(self, x):
        self.y = sigmoid_forward(x)
        return self.y

    def backward(self, dout):
        return sigmoid_backward(self.y, dout)


class SigmoidPassThrough(layers.Layer):
    """Wrong: backward returns dout unchanged."""

    def forward(self, x):
        self.y = sigmoid_forward(x)
        return self.y

    def backward(self, dout):
        return dout


# ---- 07.3 training loop


def train_ok(model, opt, batches):
    """Correct: zero_grad, loss, backward, step."""
    losses = []
    for X, y in batches:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return losses


def train_zero_after(model, opt, batches):
    """Correct: model.zero_grad(set_to_none=True) after each step (grads start as None)."""
    losses = []
    for X, y in batches:
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(float(loss))
    return losses


def train_no_zero(model, opt, batches):
    """Wrong: never clears the gradients (they accumulate)."""
    losses = []
    for X, y in batches:
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def train_zero_before_step(model, opt, batches):
    """Wrong: zero_grad between backward and step (every step uses zero gradients)."""
    losses = []
    for X, y in batches:
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.zero_grad()
        opt.step()
        losses.append(loss.item())
    return losses


def train_loss_after_step(model, opt, batches):
    """Wrong: records the loss recomputed after the step."""
    losses = []
    for X, y in batches:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        with torch.no_grad():
            losses.append(torch.nn.functional.cross_entropy(model(X), y).item())
    return losses


def train_tensors(model, opt, batches):
    """Wrong: returns the loss tensors, not floats."""
    losses = []
    for X, y in batches:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


def train_sum_loss(model, opt, batches):
    """Wrong: cross-entropy with reduction='sum'."""
    losses = []
    for X, y in batches:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y, reduction="sum")
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def train_first_batch_only(model, opt, batches):
    """Wrong: steps only on the first batch, repeated."""
    losses = []
    batches = list(batches)
    X0, y0 = batches[0]
    for _ in batches:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X0), y0)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


ANSWERS = [
    Answer("07.1", "one-thread", "check_sgd_momentum", (sgd_ok,), True),
    Answer("07.1", "grid-stride-mu0", "check_sgd_momentum", (sgd_stride,), True),
    Answer("07.1", "int-one", "check_sgd_momentum", (sgd_int_one,), False),
    Answer("07.1", "textbook-form", "check_sgd_momentum", (sgd_textbook,), False),
    Answer("07.1", "no-weight-decay", "check_sgd_momentum", (sgd_no_wd,), False),
    Answer("07.1", "weight-decay-after-buffer", "check_sgd_momentum", (sgd_wd_after,), False),
    Answer("07.1", "ignores-first-step", "check_sgd_momentum", (sgd_ignore_first,), False),
    Answer("07.1", "writes-grad", "check_sgd_momentum", (sgd_writes_grad,), False),
    Answer("07.1", "dampening-on-first-step", "check_sgd_momentum", (sgd_dampen_first,), False),
    Answer("07.2", "keeps-y", "check_sigmoid_layer", (SigmoidOk,), True),
    Answer("07.2", "recomputes-y", "check_sigmoid_layer", (SigmoidRecompute,), True),
    Answer("07.2", "backward-with-x", "check_sigmoid_layer", (SigmoidWithX,), False),
    Answer("07.2", "cached-forward", "check_sigmoid_layer", (SigmoidCached,), False),
    Answer("07.2", "args-swapped", "check_sigmoid_layer", (SigmoidArgsSwapped,), False),
    Answer("07.2", "pass-through", "check_sigmoid_layer", (SigmoidPassThrough,), False),
    Answer("07.3", "zero-first", "check_training_loop", (train_ok,), True),
    Answer("07.3", "zero-after-step-none", "check_training_loop", (train_zero_after,), True),
    Answer("07.3", "no-zero-grad", "check_training_loop", (train_no_zero,), False),
    Answer("07.3", "zero-before-step", "check_training_loop", (train_zero_before_step,), False),
    Answer("07.3", "loss-after-step", "check_training_loop", (train_loss_after_step,), False),
    Answer("07.3", "tensors", "check_training_loop", (train_tensors,), False),
    Answer("07.3", "sum-reduction", "check_training_loop", (train_sum_loss,), False),
    Answer("07.3", "first-batch-only", "check_training_loop", (train_first_batch_only,), False),
]
