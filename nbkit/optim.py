"""SGD with momentum as a kernel, matching ``torch.optim.SGD`` step for step."""

from __future__ import annotations

import numpy as np
from numba import cuda, float32

from .backend import Param
from .launch import MAX_GRID_DIM, blocks_for, launch, threads_1d
from .mode import MODE
from .registry import kernel

# Simulator-only tuning: in the simulator every thread is a Python thread, so the update's grid is capped at
# 8 blocks and the grid-stride loop walks the rest. On a GPU the grid covers every parameter (the cap is only
# the hardware's x limit), one thread each.
MAX_BLOCKS = 8 if MODE.is_simulator else MAX_GRID_DIM[0]

__all__ = ["MAX_BLOCKS", "SGD", "Param", "sgd_momentum_kernel", "sgd_update_kernel"]


@kernel("void(float32[::1], float32[::1], float32[::1], float32, float32, float32, float32, int32, int32)")
def sgd_momentum_kernel(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):  # grid-stride: any grid covers any size
        g = grad[i] + weight_decay * param[i]
        if momentum != float32(0):
            if first_step:
                b = g  # PyTorch starts the buffer at the first gradient, not at (1 - dampening) * g
            else:
                b = momentum * buf[i] + (float32(1) - dampening) * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] -= lr * g


def sgd_update_kernel(p: Param, hyper: tuple, nesterov: int, first_step: bool) -> None:
    """One SGD step of one parameter on the device, by :func:`sgd_momentum_kernel`."""
    if p.buf is None:
        p.buf = cuda.device_array(p.value.shape, dtype=np.float32)
    flat = (a.reshape(a.size) for a in (p.value, p.grad, p.buf))
    # A grid-stride loop lets a bounded grid update any number of parameters (LeNet has 62,006).
    threads = threads_1d(p.value.size)
    launch(sgd_momentum_kernel, min(blocks_for(p.value.size, threads), MAX_BLOCKS), threads, *flat, *hyper,
           nesterov, int(first_step))


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
