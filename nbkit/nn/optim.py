"""``torch.optim.SGD`` over the parameters of a model, updated on the device by the course's kernel."""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbkit.kernels.optim import sgd_momentum, sgd_momentum_kernel
from nbkit.nn.backend import Param

__all__ = ["SGD", "Param", "sgd_momentum_kernel", "sgd_update_kernel"]


def sgd_update_kernel(p: Param, hyper: tuple, nesterov: int, first_step: bool) -> None:
    """One SGD step of one parameter on the device, by :func:`nbkit.kernels.optim.sgd_momentum_kernel`."""
    if p.buf is None:
        p.buf = cuda.device_array(p.value.shape, dtype=np.float32)
    sgd_momentum(*(a.reshape(a.size) for a in (p.value, p.grad, p.buf)), hyper, nesterov, first_step)


class SGD:
    """``torch.optim.SGD``; with the default update the parameters stay on the device and nothing is copied."""

    def __init__(self, params: list[Param], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, update=sgd_update_kernel):
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0, momentum >= 0, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0 (as in PyTorch).")
        self.params = params
        self.hyper = tuple(np.float32(v) for v in (lr, momentum, dampening, weight_decay))
        self.nesterov = int(nesterov)
        self.update = update
        self.steps = 0

    def step(self) -> None:
        for p in self.params:
            if p.grad is None:
                raise RuntimeError(f"parameter {p.name} has no gradient: run backward() before step().")
            self.update(p, self.hyper, self.nesterov, self.steps == 0)
        self.steps += 1
