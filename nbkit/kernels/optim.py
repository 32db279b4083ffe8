"""SGD with momentum as a kernel, matching ``torch.optim.SGD`` step for step (the optimizer: :mod:`nbkit.nn.optim`)."""

from __future__ import annotations

from numba import cuda, float32

from nbkit.core.hw import MAX_GRID_DIM
from nbkit.core.launch import blocks_for, launch, threads_1d
from nbkit.core.mode import MODE
from nbkit.core.registry import kernel

# Simulator-only tuning: in the simulator every thread costs tens of µs, so the update's grid is capped at
# 8 blocks and the grid-stride loop walks the rest (48,240 parameters, measured 2026-11-30 on a 2-core machine:
# 0.42 s with 8 blocks of 128 threads, 2.9 s with 377). On a GPU, and in cpu mode (compiled loops), the grid
# covers every parameter (the cap is only the hardware's x limit), one thread each.
MAX_BLOCKS = 8 if MODE.slow_launches else MAX_GRID_DIM[0]

__all__ = ["MAX_BLOCKS", "sgd_momentum", "sgd_momentum_kernel"]


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


def sgd_momentum(param, grad, buf, hyper: tuple, nesterov: int, first_step: bool) -> None:
    """One SGD step on flat float32 device arrays, in place, by :func:`sgd_momentum_kernel`.

    ``hyper`` is ``(lr, momentum, dampening, weight_decay)`` as float32.
    """
    # A grid-stride loop lets a bounded grid update any number of parameters (LeNet has 62,006).
    threads = threads_1d(param.size)
    launch(sgd_momentum_kernel, min(blocks_for(param.size, threads), MAX_BLOCKS), threads, param, grad, buf, *hyper,
           nesterov, int(first_step))
