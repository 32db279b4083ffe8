"""The CIFAR-10 LeNet of seed article 000 §5.2 (the PyTorch tutorial's network), three ways.

conv 3->6 5x5, ReLU, max-pool 2, conv 6->16 5x5, ReLU, max-pool 2, flatten (400), fc 400->120, ReLU,
fc 120->84, ReLU, fc 84->10; softmax + cross-entropy; SGD lr 0.001, momentum 0.9, batch 4.
"""

from __future__ import annotations

import numpy as np

from nbkit.nn.backend import Backend
from nbkit.nn.layers import KERNEL_BACKEND, Conv2d, Dense, Flatten, MaxPool2x2, ReLU, Sequential
from nbkit.nn.optim import SGD

LR, MOMENTUM, BATCH, EPOCHS = 0.001, 0.9, 4, 2  # the article's (and the tutorial's) settings


def build(backend: Backend = KERNEL_BACKEND, seed: int = 0) -> Sequential:
    """LeNet from the course's layers on ``backend``: the CUDA kernels, :data:`nbkit.nn.cpu.CPU`, or your own."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(3, 6, 5, rng), ReLU(), MaxPool2x2(),
        Conv2d(6, 16, 5, rng), ReLU(), MaxPool2x2(),
        Flatten(),
        Dense(16 * 5 * 5, 120, rng), ReLU(),
        Dense(120, 84, rng), ReLU(),
        Dense(84, 10, rng),
        backend=backend,  # Sequential hands it to every layer
    )


def optimizer(model: Sequential, lr: float = LR, momentum: float = MOMENTUM) -> SGD:
    return SGD(model.params(), lr=lr, momentum=momentum, update=model.ops.sgd_update)


def build_torch():
    """The same network in PyTorch, parameters in the same order as :func:`build`'s ``params()``."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def copy_from_torch(model: Sequential, torch_model) -> None:
    """Give ``model`` exactly the weights of ``torch_model``."""
    model.load([p.detach().cpu().numpy() for p in torch_model.parameters()])


def twin_models(backend: Backend = KERNEL_BACKEND, seed: int = 0):
    """``(model, torch_model)``: the two networks with identical initial weights, and no optimisers.

    PyTorch initialises (under ``torch.manual_seed(seed)``); the course's model copies its weights. For a caller
    that never trains the PyTorch twin: PyTorch's first optimiser imports ``torch._dynamo`` (a second of CPU).
    """
    import torch

    torch.manual_seed(seed)
    torch_model = build_torch()
    model = build(backend)
    copy_from_torch(model, torch_model)
    return model, torch_model


def twins(backend: Backend = KERNEL_BACKEND, seed: int = 0, torch_device: str = "cpu"):
    """``(model, optimizer, torch_model, torch_optimizer)``: the two networks with identical initial weights.

    PyTorch initialises (under ``torch.manual_seed(seed)``); the course's model copies its weights. Both
    optimisers use the article's SGD settings. ``torch_device="cuda"`` puts the PyTorch twin on the GPU
    (moved before its optimiser is made, as PyTorch asks).
    """
    import torch

    model, torch_model = twin_models(backend, seed)
    torch_model = torch_model.to(torch_device)
    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=LR, momentum=MOMENTUM)
    return model, optimizer(model), torch_model, torch_opt
