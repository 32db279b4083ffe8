"""The contract between the layers and the code that computes them. Imports no numba, so it is safe anywhere.

A *backend* provides every operation a layer of :mod:`nbkit.nn.layers` calls, on its own kind of array:
:data:`nbkit.nn.kernel_backend.KERNEL_BACKEND` launches the course's CUDA kernels on device arrays (on a GPU or in
the simulator); :data:`nbkit.nn.cpu.CPU` computes the same on NumPy arrays with BLAS and compiled loops.
:data:`OPERATIONS` lists the operations, read from :class:`Backend` itself, and ``tests/test_backend.py`` runs
every one of them on every backend against the NumPy reference: an operation added here and missing from a
backend fails that test.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

Array = Any  # a NumPy array or a device array, whichever the backend works on


@dataclass
class Param:
    """A parameter in the backend's memory, with its gradient (set by the layer's backward) and momentum buffer."""

    name: str
    value: Array
    grad: Array = None
    buf: Array = field(default=None, repr=False)


@runtime_checkable
class Backend(Protocol):
    """What a layer may ask of a backend. Shapes follow :mod:`nbkit.nn.reference`."""

    name: str

    def asarray(self, a: np.ndarray) -> Array:
        """A float32 copy of the host array ``a`` in this backend's memory."""

    def to_host(self, a: Array) -> np.ndarray:
        """A NumPy copy of ``a`` (for checks and plots, not inside a training step)."""

    def dense_forward(self, x: Array, W: Array, b: Array) -> Array:
        """``x Wᵀ + b``."""

    def dense_backward(self, dy: Array, x: Array, W: Array) -> tuple[Array, Array, Array]:
        """``(dx, dW, db)``."""

    def relu_forward(self, x: Array) -> Array: ...

    def relu_backward(self, dout: Array, x: Array) -> Array: ...

    def tanh_forward(self, x: Array) -> Array: ...

    def tanh_backward(self, dout: Array, y: Array) -> Array:
        """From the forward output ``y``."""

    def conv2d_forward(self, x: Array, w: Array, b: Array) -> tuple[Array, Any]:
        """``(y, saved)``: ``saved`` is whatever this backend's ``conv2d_backward`` needs to know about ``x``.

        The layer keeps ``saved`` from forward to backward (the kernels keep ``x``, the CPU path its
        unfolding): a backend holds no state between calls.
        """

    def conv2d_backward(self, dy: Array, saved: Any, w: Array, need_dx: bool = True
                        ) -> tuple[Array | None, Array, Array]:
        """``(dx, dw, db)``; ``dx`` is None when ``need_dx`` is false (a network's first layer)."""

    def maxpool2x2_forward(self, x: Array) -> tuple[Array, Array]:
        """``(y, argmax)``, argmax int8 in 0..3, first maximum wins a tie."""

    def maxpool2x2_backward(self, dy: Array, argmax: Array, input_shape: tuple[int, ...]) -> Array: ...

    def softmax_xent_forward(self, logits: Array, labels: Array) -> tuple[float, Array]:
        """``(mean loss, probs)``: the loss, a Python float, is the only value a training step copies to the host."""

    def softmax_xent_backward(self, probs: Array, labels: Array) -> Array:
        """``(probs - onehot(labels)) / N``."""

    def sgd_update(self, p: Param, hyper: tuple, nesterov: int, first_step: bool) -> None:
        """One ``torch.optim.SGD`` step of ``p`` in place; ``hyper`` is ``(lr, momentum, dampening, weight_decay)``."""


OPERATIONS: tuple[str, ...] = tuple(name for name, value in vars(Backend).items()
                                    if callable(value) and not name.startswith("_"))


def missing_operations(backend: object) -> list[str]:
    """The operations of :class:`Backend` that ``backend`` lacks (empty for a complete backend)."""
    return [op for op in OPERATIONS if not callable(getattr(backend, op, None))]


def replace(backend: Backend, name: str | None = None, **ops: Callable) -> Backend:
    """A copy of ``backend`` with some operations replaced, e.g. by your own kernels' wrappers.

    ``replace(KERNEL_BACKEND, relu_forward=my_relu, relu_backward=my_relu_grad)`` runs the network with your
    ReLU and the course's everything else. Unknown operation names are refused, so a typo cannot go unused.
    """
    unknown = sorted(set(ops) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"not backend operations: {', '.join(unknown)}; the operations are {', '.join(OPERATIONS)}.")
    for op, fn in ops.items():
        if not callable(fn):
            raise TypeError(f"{op} must be a function, got {type(fn).__name__}.")
    new = copy.copy(backend)
    for op, fn in ops.items():
        setattr(new, op, fn)  # an instance attribute: called as fn(...), without self
    new.name = name or f"{backend.name} with your {', '.join(sorted(ops))}"
    return new
