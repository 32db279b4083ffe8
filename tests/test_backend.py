"""Every operation of every backend against the NumPy reference (float64), from one parametrised test.

The operations come from :data:`nbkit.nn.backend.OPERATIONS`, read off the :class:`~nbkit.nn.backend.Backend`
protocol: an operation added to the protocol without a case here, or missing from a backend, fails.
"""

import zlib

import numpy as np
import pytest

from nbkit.nn import reference as ref
from nbkit.nn.backend import OPERATIONS, Backend, Param, missing_operations, replace
from nbkit.nn.cpu import CPU
from nbkit.nn.kernel_backend import KERNEL_BACKEND

BACKENDS = [KERNEL_BACKEND, CPU]


def _f32(r, *shape, scale=1.0):
    return (r.standard_normal(shape) * scale).astype(np.float32)


def _close(backend, got, want, rtol=1e-5, atol=1e-5):
    got = backend.to_host(got)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32, (type(got), getattr(got, "dtype", None))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def case_asarray(b, r):
    x = r.standard_normal((3, 4))  # float64 in, float32 in the backend
    want = x.astype(np.float32)
    a = b.asarray(x)
    x[0, 0] = 99.0  # the backend's array is a copy, not a view of the caller's
    _close(b, a, want, atol=0)


def case_to_host(b, r):
    x = _f32(r, 2, 3, 5)
    h = b.to_host(b.asarray(x))
    assert isinstance(h, np.ndarray)
    np.testing.assert_array_equal(h, x)


def _dense_inputs(r):
    return _f32(r, 5, 7), _f32(r, 3, 7), _f32(r, 3)


def case_dense_forward(b, r):
    A, W, bias = _dense_inputs(r)
    _close(b, b.dense_forward(b.asarray(A), b.asarray(W), b.asarray(bias)), ref.dense_forward(*(
        v.astype(np.float64) for v in (A, W, bias))))


def case_dense_backward(b, r):
    A, W, _ = _dense_inputs(r)
    dZ = _f32(r, 5, 3)
    got = b.dense_backward(b.asarray(dZ), b.asarray(A), b.asarray(W))
    for g, w in zip(got, ref.dense_backward(*(v.astype(np.float64) for v in (dZ, A, W)))):
        _close(b, g, w)


def case_relu_forward(b, r):
    x = _f32(r, 2, 3, 5)
    x[0, 0, 0] = 0.0
    _close(b, b.relu_forward(b.asarray(x)), ref.relu_forward(x.astype(np.float64)), atol=0)


def case_relu_backward(b, r):
    x, d = _f32(r, 2, 3, 5), _f32(r, 2, 3, 5)
    x[0, 0, 0] = 0.0  # ReLU'(0) = 0, as in PyTorch
    _close(b, b.relu_backward(b.asarray(d), b.asarray(x)), ref.relu_backward(d.astype(np.float64), x), atol=0)


def case_tanh_forward(b, r):
    x = _f32(r, 7, 3, scale=3)
    _close(b, b.tanh_forward(b.asarray(x)), np.tanh(x.astype(np.float64)), atol=1e-6)


def case_tanh_backward(b, r):
    y, d = np.tanh(_f32(r, 7, 3)), _f32(r, 7, 3)
    _close(b, b.tanh_backward(b.asarray(d), b.asarray(y)), ref.tanh_backward(d.astype(np.float64), y.astype(np.float64)))


def _conv_inputs(r):
    return _f32(r, 2, 3, 9, 8), _f32(r, 4, 3, 3, 2), _f32(r, 4)


def case_conv2d_forward(b, r):
    x, w, bias = _conv_inputs(r)
    y, _ = b.conv2d_forward(b.asarray(x), b.asarray(w), b.asarray(bias))
    _close(b, y, ref.conv2d_forward(*(v.astype(np.float64) for v in (x, w, bias))), atol=1e-4)


def case_conv2d_backward(b, r):
    x, w, bias = _conv_inputs(r)
    dw_ = b.asarray(w)
    y, saved = b.conv2d_forward(b.asarray(x), dw_, b.asarray(bias))
    dy = _f32(r, *y.shape)
    want = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64))
    for g, wnt in zip(b.conv2d_backward(b.asarray(dy), saved, dw_), want):
        _close(b, g, wnt, atol=1e-4)
    dx, dw, db = b.conv2d_backward(b.asarray(dy), saved, dw_, need_dx=False)
    assert dx is None
    _close(b, dw, want[1], atol=1e-4)
    _close(b, db, want[2], atol=1e-4)


def case_maxpool2x2_forward(b, r):
    x = _f32(r, 3, 2, 7, 5)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 5.0  # a tie: the first maximum in row-major order wins
    y, argmax = b.maxpool2x2_forward(b.asarray(x))
    want_y, want_arg = ref.maxpool2x2_forward(x.astype(np.float64))
    _close(b, y, want_y, atol=0)
    np.testing.assert_array_equal(b.to_host(argmax) if not isinstance(argmax, np.ndarray) else argmax, want_arg)


def case_maxpool2x2_backward(b, r):
    x = _f32(r, 3, 2, 7, 5)
    y, argmax = b.maxpool2x2_forward(b.asarray(x))
    dy = _f32(r, 3, 2, 3, 2)
    _, want_arg = ref.maxpool2x2_forward(x)
    _close(b, b.maxpool2x2_backward(b.asarray(dy), argmax, x.shape),
           ref.maxpool2x2_backward(dy.astype(np.float64), want_arg, x.shape), atol=0)


def case_softmax_xent_forward(b, r):
    logits, labels = _f32(r, 5, 10, scale=4), r.integers(0, 10, 5)
    logits[0, :2] = (0.0, 120.0)  # must not overflow: computed from the log-softmax
    labels[0] = 0
    loss, probs = b.softmax_xent_forward(b.asarray(logits), labels)
    assert isinstance(loss, float)
    assert loss == pytest.approx(ref.softmax_cross_entropy_forward(logits.astype(np.float64), labels), rel=1e-5)
    _close(b, probs, ref.softmax(logits.astype(np.float64)), atol=1e-6)


def case_softmax_xent_backward(b, r):
    logits, labels = _f32(r, 5, 10, scale=4), r.integers(0, 10, 5)
    _, probs = b.softmax_xent_forward(b.asarray(logits), labels)
    _close(b, b.softmax_xent_backward(probs, labels),
           ref.softmax_cross_entropy_backward(logits.astype(np.float64), labels), atol=1e-6)


def case_sgd_update(b, r):
    p0, grads = _f32(r, 3, 5), [_f32(r, 3, 5) for _ in range(3)]
    p = Param("w", b.asarray(p0))
    hyper = tuple(np.float32(v) for v in (0.1, 0.9, 0.0, 0.01))
    want, buf = p0.astype(np.float64), None
    for step, g in enumerate(grads):
        p.grad = b.asarray(g)
        b.sgd_update(p, hyper, 0, step == 0)
        want, buf = ref.sgd_momentum_step(want, g.astype(np.float64), buf, 0.1, 0.9, 0.0, 0.01)
    _close(b, p.value, want, rtol=1e-5, atol=1e-6)


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def test_every_operation_has_a_case():
    assert set(CASES) == set(OPERATIONS), f"operations without a case: {sorted(set(OPERATIONS) - set(CASES))}"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_backend_is_complete(backend):
    assert isinstance(backend, Backend)
    assert missing_operations(backend) == []


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_operation_matches_reference(backend, op):
    CASES[op](backend, np.random.default_rng(zlib.crc32(op.encode())))


def test_replace_swaps_one_operation_and_refuses_unknown_names():
    calls = []

    def my_relu(x):
        calls.append(x.shape)
        return CPU.relu_forward(x)

    mine = replace(CPU, relu_forward=my_relu)
    mine.relu_forward(np.ones((2, 3), np.float32))
    assert calls == [(2, 3)] and CPU.relu_forward is not my_relu and "relu_forward" in mine.name
    with pytest.raises(ValueError, match="not backend operations: relu_fwd"):
        replace(CPU, relu_fwd=my_relu)
    assert missing_operations(object()) == list(OPERATIONS)
