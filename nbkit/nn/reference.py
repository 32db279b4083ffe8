"""NumPy reference layers, forward and backward: the ground truth every kernel is tested against.

Conventions, fixed for the whole course:

* A batch is stored with **samples as rows**: activations ``A`` have shape ``(N, features)``, images
  ``(N, C, H, W)`` (NCHW), as in PyTorch. One sample written as a column vector gives the textbook
  ``z = W a + b``; for the batch that is ``Z = A Wᵀ + b``.
* ``W`` has shape ``(out_features, in_features)``, like ``torch.nn.Linear.weight``.
* Every ``*_backward`` takes the upstream gradient ``dout = ∂L/∂(output)`` and returns ``∂L/∂(input)``
  (and parameter gradients), so layers chain by passing gradients backwards.
* Losses average over the batch, like PyTorch's default ``reduction="mean"``.

They work in any float dtype; tests run them in float64 against PyTorch autograd and finite differences.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- dense (affine) layer


def dense_forward(A: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Z = A Wᵀ + b``: A (N, in), W (out, in), b (out,) -> Z (N, out)."""
    return A @ W.T + b


def dense_backward(dZ: np.ndarray, A: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dA, dW, db)`` of the dense layer; ``db`` sums over the batch."""
    return dZ @ W, dZ.T @ A, dZ.sum(axis=0)


# ---------------------------------------------------------------- activations


def relu_forward(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ReLU'(x) is 1 for x > 0 and 0 otherwise; at exactly 0 we take 0, as PyTorch does."""
    return dout * (x > 0)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """Stable for large |x|: never evaluates exp of a large positive number."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Uses the forward output ``y = sigmoid(x)``: sigmoid' = y (1 - y)."""
    return dout * y * (1 - y)


def tanh_forward(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_backward(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Uses the forward output ``y = tanh(x)``: tanh' = 1 - y²."""
    return dout * (1 - y * y)


# ---------------------------------------------------------------- losses


def mse_forward(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean of squared errors over *all* elements, like ``torch.nn.functional.mse_loss``.

    No factor ½: notebook 01 shows how the ½ convention only rescales the gradient.
    """
    return float(np.mean((pred - target) ** 2))


def mse_backward(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return 2 * (pred - target) / pred.size


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, stable: subtract the row max before exp so nothing overflows."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def _check_labels(logits: np.ndarray, labels: np.ndarray) -> None:
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, classes) and labels (N,), got {logits.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be integers in [0, {logits.shape[1]}), got {labels!r}")


def softmax_cross_entropy_forward(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the batch of ``-log softmax(logits)[label]``, like ``torch.nn.functional.cross_entropy``."""
    _check_labels(logits, labels)
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def softmax_cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The fused gradient ``(p - y) / N``, with ``p`` the softmax and ``y`` the one-hot labels."""
    _check_labels(logits, labels)
    grad = softmax(logits)
    grad[np.arange(len(labels)), labels] -= 1
    return grad / len(labels)


# ---------------------------------------------------------------- convolution (stride 1, no padding)


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-correlation, as in ``torch.nn.functional.conv2d`` with stride 1 and no padding.

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> (N, F, H-KH+1, W-KW+1). Only stride 1 and no padding
    are covered: that is all the course's LeNet needs.
    """
    N, C, H, Wd = x.shape
    F, C2, KH, KW = w.shape
    if C != C2 or H < KH or Wd < KW:
        raise ValueError(f"input {x.shape} and weights {w.shape} do not fit (channels must match, kernel <= image)")
    OH, OW = H - KH + 1, Wd - KW + 1
    out = np.zeros((N, F, OH, OW), dtype=np.result_type(x, w))
    for i in range(KH):
        for j in range(KW):
            # (N, C, OH, OW) window shifted by (i, j), contracted with w[:, :, i, j] over C.
            out += np.einsum("nchw,fc->nfhw", x[:, :, i:i + OH, j:j + OW], w[:, :, i, j])
    return out + b[None, :, None, None]


def conv2d_backward(dout: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)``; dx scatters each output gradient back over the window that made it."""
    _, _, KH, KW = w.shape
    OH, OW = dout.shape[2:]
    dx = np.zeros_like(x, dtype=np.result_type(x, w, dout))
    dw = np.zeros_like(w, dtype=dx.dtype)
    for i in range(KH):
        for j in range(KW):
            dx[:, :, i:i + OH, j:j + OW] += np.einsum("nfhw,fc->nchw", dout, w[:, :, i, j])
            dw[:, :, i, j] = np.einsum("nfhw,nchw->fc", dout, x[:, :, i:i + OH, j:j + OW])
    return dx, dw, dout.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------- max-pool 2x2, stride 2


def maxpool2x2_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2×2 max-pool with stride 2; returns ``(out, argmax)``, argmax in 0..3 (row-major in the window).

    An odd trailing row or column is dropped, as PyTorch does by default (``ceil_mode=False``). On a tie
    the first maximum in row-major order wins, as in PyTorch's CPU kernel, so gradients agree.
    """
    N, C, H, W = x.shape
    if H < 2 or W < 2:
        raise ValueError(f"max-pool 2x2 needs H, W >= 2, got input shape {x.shape}")
    OH, OW = H // 2, W // 2
    windows = (x[:, :, :2 * OH, :2 * OW].reshape(N, C, OH, 2, OW, 2)
               .transpose(0, 1, 2, 4, 3, 5).reshape(N, C, OH, OW, 4))
    argmax = windows.argmax(axis=-1)  # np.argmax returns the first maximum: same tie rule as PyTorch
    return np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0], argmax


def maxpool2x2_backward(dout: np.ndarray, argmax: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Route each output gradient to the input position that won the max; all others get 0."""
    N, C, OH, OW = dout.shape
    dx = np.zeros(input_shape, dtype=dout.dtype)
    n, c, oh, ow = np.indices((N, C, OH, OW))
    dx[n, c, 2 * oh + argmax // 2, 2 * ow + argmax % 2] = dout
    return dx


# ---------------------------------------------------------------- flatten


def flatten_forward(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C*H*W), in C order, matching ``torch.flatten(x, 1)``."""
    return x.reshape(x.shape[0], -1)


def flatten_backward(dout: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    return dout.reshape(input_shape)


# ---------------------------------------------------------------- optimizer


def sgd_momentum_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray | None, lr: float,
                      momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                      nesterov: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """One step of ``torch.optim.SGD``; returns ``(new_param, new_buf)``.

    PyTorch's rule: ``g = grad + weight_decay * param``; on the first step ``buf = g`` (not
    ``(1 - dampening) g``), afterwards ``buf = momentum * buf + (1 - dampening) * g``; the step uses
    ``g + momentum * buf`` with Nesterov, else ``buf``; ``param -= lr * step``. Note: the learning rate
    multiplies the whole buffer, unlike the ``v = μ v - lr g`` form of some textbooks.
    """
    g = grad + weight_decay * param if weight_decay else grad
    if momentum:
        buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
        step = g + momentum * buf if nesterov else buf
    else:
        step = g
    return param - lr * step, buf
