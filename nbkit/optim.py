"""SGD with momentum as a kernel, matching ``torch.optim.SGD`` step for step."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import cuda, float32

from .launch import launch_1d
from .registry import kernel



@kernel("void(float32[::1], float32[::1], float32[::1], float32, float32, float32, float32, int32, int32)")
def sgd_momentum_kernel(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    i = cuda.grid(1)
    if i < param.size:
        g = grad[i] + weight_decay * param[i]
        if momentum != float32(0):
            if first_step:
                b = g  # PyTorch starts the buffer at the first gradient, not at (1 - dampening) * g
            else:
                b = momentum * buf[i] + (float32(1) - dampening) * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] -= lr * g


@dataclass
class Param:
    """A parameter on the device, with its gradient (set by the layer's backward) and momentum buffer."""

    name: str
    value: object  # device array
    grad: object = None
    buf: object = field(default=None, repr=False)


class SGD:
    """``torch.optim.SGD`` for parameters held on the device; ``step()`` copies nothing to the host."""

    def __init__(self, params: list[Param], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0, momentum >= 0, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0 (as in PyTorch).")
        self.params = params
        self.hyper = tuple(np.float32(v) for v in (lr, momentum, dampening, weight_decay))
        self.nesterov = int(nesterov)
        self.steps = 0

    def step(self) -> None:
        for p in self.params:
            if p.grad is None:
                raise RuntimeError(f"parameter {p.name} has no gradient: run backward() before step().")
            if p.buf is None:
                p.buf = cuda.device_array(p.value.shape, dtype=np.float32)
            flat = (a.reshape(a.size) for a in (p.value, p.grad, p.buf))
            launch_1d(sgd_momentum_kernel, p.value.size, *flat, *self.hyper,
                   self.nesterov, int(self.steps == 0))
        self.steps += 1
