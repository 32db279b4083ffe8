"""Layers built from the course's kernels, and a ``Sequential`` model that keeps everything on the device.

Each layer saves in ``forward`` what its ``backward`` needs, and ``backward`` sets the gradients of its
parameters and returns the gradient for the layer before. Parameters, gradients and momentum buffers
stay in device memory between steps; the only value a training step copies back is the loss.

A layer calls its operations through a *backend*: :data:`KERNELS` (the CUDA kernels, on a GPU or in the
simulator) by default, or :data:`nbkit.cpu.CPU`, the fast NumPy path for training on a CPU. Both are
tested to give the same numbers.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from numba import cuda

from . import activations, conv, dense, losses, optim, pool
from .optim import Param

KERNELS = SimpleNamespace(
    name="CUDA kernels",
    asarray=lambda a: cuda.to_device(np.ascontiguousarray(a, dtype=np.float32)),
    to_host=lambda a: a.copy_to_host(),
    dense_forward=lambda x, W, b: dense.dense_forward(x, W, b, "naive"),
    dense_backward=lambda dy, x, W: dense.dense_backward(dy, x, W, "naive"),
    relu_forward=activations.relu_forward, relu_backward=activations.relu_backward,
    tanh_forward=activations.tanh_forward, tanh_backward=activations.tanh_backward,
    conv2d_forward=lambda x, w, b: (conv.conv2d_forward(x, w, b), x),
    conv2d_backward=lambda dy, x, w, need_dx=True: conv.conv2d_backward(dy, x, w, need_dx=need_dx),
    maxpool2x2_forward=pool.maxpool2x2_forward, maxpool2x2_backward=pool.maxpool2x2_backward,
    softmax_xent_forward=losses.softmax_xent_forward, softmax_xent_backward=losses.softmax_xent_backward,
    sgd_update=optim.sgd_update_kernel,
)


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, backend):
    """PyTorch's default initialisation for Linear and Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in)
    return backend.asarray(rng.uniform(-bound, bound, size=shape).astype(np.float32))


class Layer:
    """Base class: ``forward`` saves what ``backward`` needs; operations come from ``self.ops`` (a backend)."""

    def __init__(self, backend=KERNELS):
        self.ops = backend

    def params(self) -> list[Param]:
        return []

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError


class Dense(Layer):
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, backend=KERNELS):
        super().__init__(backend)
        self.W = Param("weight", _uniform(rng, (n_out, n_in), n_in, backend))
        self.b = Param("bias", _uniform(rng, (n_out,), n_in, backend))

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        self.x = x
        return self.ops.dense_forward(x, self.W.value, self.b.value)

    def backward(self, dout):
        dx, self.W.grad, self.b.grad = self.ops.dense_backward(dout, self.x, self.W.value)
        return dx


class Conv2d(Layer):
    def __init__(self, c_in: int, c_out: int, k: int, rng: np.random.Generator, backend=KERNELS):
        super().__init__(backend)
        self.need_input_grad = True  # Sequential turns this off for its first layer
        self.W = Param("weight", _uniform(rng, (c_out, c_in, k, k), c_in * k * k, backend))
        self.b = Param("bias", _uniform(rng, (c_out,), c_in * k * k, backend))

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        y, self.saved = self.ops.conv2d_forward(x, self.W.value, self.b.value)  # saved: what backward needs of x
        return y

    def backward(self, dout):
        dx, self.W.grad, self.b.grad = self.ops.conv2d_backward(dout, self.saved, self.W.value,
                                                                 need_dx=self.need_input_grad)
        return dx


class ReLU(Layer):
    def forward(self, x):
        self.x = x
        return self.ops.relu_forward(x)

    def backward(self, dout):
        return self.ops.relu_backward(dout, self.x)


class Tanh(Layer):
    def forward(self, x):
        self.y = self.ops.tanh_forward(x)
        return self.y

    def backward(self, dout):
        return self.ops.tanh_backward(dout, self.y)


class MaxPool2x2(Layer):
    def forward(self, x):
        self.shape = x.shape
        y, self.argmax = self.ops.maxpool2x2_forward(x)
        return y

    def backward(self, dout):
        return self.ops.maxpool2x2_backward(dout, self.argmax, self.shape)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W): a view of the same contiguous memory, no kernel needed."""

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def backward(self, dout):
        return dout.reshape(*self.shape)


class Sequential:
    """Layers applied in order, followed by softmax + cross-entropy."""

    def __init__(self, *layers: Layer, backend=KERNELS):
        self.layers = list(layers)
        self.ops = backend
        if hasattr(self.layers[0], "need_input_grad"):
            self.layers[0].need_input_grad = False  # nothing before it needs the gradient of the input

    def params(self) -> list[Param]:
        return [p for layer in self.layers for p in layer.params()]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x, labels) -> float:
        """Forward pass and mean cross-entropy; keeps what ``backward`` needs. Only the loss leaves the device."""
        self.logits = self.forward(x)  # kept, so callers can inspect them without a second forward pass
        loss, self._probs = self.ops.softmax_xent_forward(self.logits, labels)
        self._labels = labels
        return loss

    def backward(self) -> None:
        grad = self.ops.softmax_xent_backward(self._probs, self._labels)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)  # the first layer may return None: nobody needs it

    def load(self, arrays: list[np.ndarray]) -> None:
        """Copy host arrays (in ``params()`` order, e.g. from a PyTorch ``state_dict``) into the parameters."""
        params = self.params()
        if len(arrays) != len(params):
            raise ValueError(f"expected {len(params)} arrays, got {len(arrays)}")
        for p, a in zip(params, arrays):
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.shape != tuple(p.value.shape):
                raise ValueError(f"{p.name}: expected shape {tuple(p.value.shape)}, got {a.shape}")
            p.value = self.ops.asarray(a)

    def state(self) -> list[np.ndarray]:
        """Copies of the parameters on the host (for checking and plotting, not during training)."""
        return [self.ops.to_host(p.value) for p in self.params()]
