"""Training and evaluation loops of notebook 08, shared by the CPU path, the kernels on a GPU and PyTorch.

Kept here (not in the notebook) so the GPU branch, which cannot run on a machine without a GPU, is still
exercised by ``tests/test_capstone.py`` in the simulator on tiny sizes: same functions, smaller numbers.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def course_step(model, opt) -> Callable:
    """``step(x, y) -> loss``: forward, backward and SGD step of a course model (any backend)."""
    def step(x, y) -> float:
        loss = model.loss(x, y)
        model.backward()
        opt.step()
        return loss

    return step


def torch_step(torch_model, torch_opt) -> Callable:
    """``step(x, y) -> loss`` for the PyTorch twin (tensors on its device)."""
    import torch

    def step(x, y) -> float:
        loss = torch.nn.functional.cross_entropy(torch_model(x), y)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()
        return loss.item()  # .item() waits for the GPU: the time per epoch includes all the work

    return step


def train(step: Callable, x: np.ndarray, y: np.ndarray, epochs: int, batch: int, to_device: Callable = lambda a: a,
          seed: int = 0, log_every: int = 50, max_steps: int | None = None) -> tuple[np.ndarray, list[float]]:
    """``(mean loss of every log_every steps, seconds per epoch)``; the order is ``seed``'s permutations.

    Two calls with the same ``seed`` see the same batches in the same order. ``to_device`` moves one batch
    (images, labels) to where the model computes; its time is part of the epoch time, as in any training.
    """
    order_rng = np.random.default_rng(seed)
    losses, times, running, steps = [], [], [], 0
    for _ in range(epochs):
        order = order_rng.permutation(len(x))
        t0 = time.perf_counter()
        for i in range(0, len(order) - batch + 1, batch):
            if max_steps is not None and steps == max_steps:
                break
            idx = order[i:i + batch]
            running.append(step(to_device(x[idx]), to_device(y[idx])))
            steps += 1
            if len(running) == log_every:
                losses.append(float(np.mean(running)))
                running = []
        times.append(time.perf_counter() - t0)
    if running and not losses:
        losses.append(float(np.mean(running)))  # fewer steps than log_every: one point
    return np.array(losses), times


def predict(logits_of: Callable, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Predicted classes of every image, ``batch`` at a time (None: all in one batch)."""
    batch = batch or len(x)
    return np.concatenate([np.asarray(logits_of(x[i:i + batch])).argmax(axis=1) for i in range(0, len(x), batch)])


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, classes: int = 10) -> np.ndarray:
    """``m[t, p]``: how many images of true class t were predicted as p."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, preds), 1)
    return m
