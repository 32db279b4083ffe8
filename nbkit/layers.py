"""Layers built from the course's kernels, and a ``Sequential`` model that keeps everything on the device.

Each layer saves in ``forward`` what its ``backward`` needs, and ``backward`` sets the gradients of its
parameters and returns the gradient for the layer before. Parameters, gradients and momentum buffers
stay in device memory between steps; the only value a training step copies back is the loss.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import activations, conv, dense, losses, pool
from .optim import Param


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int):
    """PyTorch's default initialisation for Linear and Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in)
    return cuda.to_device(rng.uniform(-bound, bound, size=shape).astype(np.float32))


class Layer:
    def params(self) -> list[Param]:
        return []

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError


class Dense(Layer):
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, method: str = "naive"):
        self.W = Param("weight", _uniform(rng, (n_out, n_in), n_in))
        self.b = Param("bias", _uniform(rng, (n_out,), n_in))
        self.method = method

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        self.x = x
        return dense.dense_forward(x, self.W.value, self.b.value, self.method)

    def backward(self, dout):
        dx, self.W.grad, self.b.grad = dense.dense_backward(dout, self.x, self.W.value, self.method)
        return dx


class Conv2d(Layer):
    def __init__(self, c_in: int, c_out: int, k: int, rng: np.random.Generator):
        self.W = Param("weight", _uniform(rng, (c_out, c_in, k, k), c_in * k * k))
        self.b = Param("bias", _uniform(rng, (c_out,), c_in * k * k))

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        self.x = x
        return conv.conv2d_forward(x, self.W.value, self.b.value)

    def backward(self, dout):
        dx, self.W.grad, self.b.grad = conv.conv2d_backward(dout, self.x, self.W.value)
        return dx


class ReLU(Layer):
    def forward(self, x):
        self.x = x
        return activations.relu_forward(x)

    def backward(self, dout):
        return activations.relu_backward(dout, self.x)


class Tanh(Layer):
    def forward(self, x):
        self.y = activations.tanh_forward(x)
        return self.y

    def backward(self, dout):
        return activations.tanh_backward(dout, self.y)


class MaxPool2x2(Layer):
    def forward(self, x):
        self.shape = x.shape
        y, self.argmax = pool.maxpool2x2_forward(x)
        return y

    def backward(self, dout):
        return pool.maxpool2x2_backward(dout, self.argmax, self.shape)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W): a view of the same contiguous memory, no kernel needed."""

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def backward(self, dout):
        return dout.reshape(*self.shape)


class Sequential:
    """Layers applied in order, followed by softmax + cross-entropy."""

    def __init__(self, *layers: Layer):
        self.layers = list(layers)

    def params(self) -> list[Param]:
        return [p for layer in self.layers for p in layer.params()]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x, labels) -> float:
        """Forward pass and mean cross-entropy; keeps what ``backward`` needs. Only the loss leaves the device."""
        loss, self._probs = losses.softmax_xent_forward(self.forward(x), labels)
        self._labels = labels
        return loss

    def backward(self) -> None:
        grad = losses.softmax_xent_backward(self._probs, self._labels)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    def load(self, arrays: list[np.ndarray]) -> None:
        """Copy host arrays (in ``params()`` order, e.g. from a PyTorch ``state_dict``) into the parameters."""
        params = self.params()
        if len(arrays) != len(params):
            raise ValueError(f"expected {len(params)} arrays, got {len(arrays)}")
        for p, a in zip(params, arrays):
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.shape != tuple(p.value.shape):
                raise ValueError(f"{p.name}: expected shape {tuple(p.value.shape)}, got {a.shape}")
            p.value = cuda.to_device(a)

    def state(self) -> list[np.ndarray]:
        """Copies of the parameters on the host (for checking and plotting, not during training)."""
        return [p.value.copy_to_host() for p in self.params()]
