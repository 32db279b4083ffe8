"""Layers built from the course's kernels, and a ``Sequential`` model that keeps everything on the device.

Each layer saves in ``forward`` what its ``backward`` needs, and ``backward`` sets the gradients of its
parameters and returns the gradient for the layer before. Parameters, gradients and momentum buffers
stay in the backend's memory between steps; the only value a training step copies back is the loss.

A layer calls its operations through a *backend* (the contract: :class:`nbkit.nn.backend.Backend`):
:data:`KERNEL_BACKEND` (the CUDA kernels, on a GPU or in the simulator) by default, or
:data:`nbkit.nn.cpu.CPU`, the fast NumPy path for training on a CPU. ``Sequential(..., backend=...)`` hands its
backend to all its layers. Both backends are tested to give the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from nbkit.nn.backend import Backend, Param
from nbkit.nn.kernel_backend import KERNEL_BACKEND

__all__ = ["KERNEL_BACKEND", "Conv2d", "Dense", "Flatten", "Layer", "MaxPool2x2", "Param", "ReLU", "Sequential",
           "Tanh"]


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """PyTorch's default initialisation for Linear and Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), on the host."""
    bound = 1 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


class Layer:
    """Base class: ``forward`` saves what ``backward`` needs; operations come from ``self.ops`` (a backend).

    A layer is bound to one backend: the one given to it, else the one its ``Sequential`` hands it, else
    (used on its own) the CUDA kernels. Binding moves its parameters into that backend's memory.
    """

    _ops: Backend | None = None  # also for subclasses whose __init__ does not call Layer.__init__

    def __init__(self, backend: Backend | None = None):
        self._ops: Backend | None = None
        if backend is not None:
            self.bind(backend)

    @property
    def ops(self) -> Backend:
        if self._ops is None:
            self.bind(KERNEL_BACKEND)
        return self._ops

    def bind(self, backend: Backend) -> None:
        """Compute with ``backend`` from now on; parameters move to its memory, gradients and buffers reset."""
        if backend is self._ops:
            return
        for p in self.params():
            host = p.value if self._ops is None else self._ops.to_host(p.value)
            p.value, p.grad, p.buf = backend.asarray(host), None, None
        self._ops = backend

    def params(self) -> list[Param]:
        return []

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError


class Dense(Layer):
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, backend: Backend | None = None):
        self.W = Param("weight", _uniform(rng, (n_out, n_in), n_in))
        self.b = Param("bias", _uniform(rng, (n_out,), n_in))
        super().__init__(backend)

    def params(self):
        return [self.W, self.b]

    def forward(self, x):
        self.x = x
        return self.ops.dense_forward(x, self.W.value, self.b.value)

    def backward(self, dout):
        dx, self.W.grad, self.b.grad = self.ops.dense_backward(dout, self.x, self.W.value)
        return dx


class Conv2d(Layer):
    def __init__(self, c_in: int, c_out: int, k: int, rng: np.random.Generator, backend: Backend | None = None):
        self.need_input_grad = True  # Sequential turns this off for its first layer
        self.W = Param("weight", _uniform(rng, (c_out, c_in, k, k), c_in * k * k))
        self.b = Param("bias", _uniform(rng, (c_out,), c_in * k * k))
        super().__init__(backend)

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
    """Layers applied in order, followed by softmax + cross-entropy, all on one backend (default: the kernels)."""

    def __init__(self, *layers: Layer, backend: Backend | None = None):
        self.layers = list(layers)
        self.ops = backend or KERNEL_BACKEND
        for layer in self.layers:
            layer.bind(self.ops)  # one backend for the whole model: its arrays never mix with another's
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
