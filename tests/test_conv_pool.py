"""conv2d and max-pool kernels against the NumPy reference and PyTorch, on odd sizes."""

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nbkit.kernels.conv import conv2d_backward, conv2d_forward
from nbkit.kernels.pool import maxpool2x2_backward, maxpool2x2_forward
from nbkit.nn import reference as ref


def data(seed=0):
    r = np.random.default_rng(seed)
    f = np.float32
    x = r.standard_normal((2, 3, 9, 7)).astype(f)  # 9 x 7 image: output 7 x 4 straddles the 8 x 8 blocks
    w = r.standard_normal((4, 3, 3, 4)).astype(f)  # non-square kernel
    b = r.standard_normal(4).astype(f)
    return x, w, b


def test_conv_forward_matches_reference_and_torch():
    x, w, b = data()
    y = conv2d_forward(x, w, b)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["gather", "atomic"])
def test_conv_backward_matches_reference_and_torch(method):
    x, w, b = data(1)
    dy = np.random.default_rng(2).standard_normal((2, 4, 7, 4)).astype(np.float32)
    dx, dw, db = conv2d_backward(dy, x, w, method)
    rdx, rdw, rdb = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64))
    for got, want in ((dx, rdx), (dw, rdw), (db, rdb)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (F.conv2d(xt, wt) * torch.from_numpy(dy)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_conv_bad_input():
    x, w, b = data()
    with pytest.raises(ValueError, match=r"w has 2 input channels but x has 3"):
        conv2d_forward(x, w[:, :2].copy(), b)
    with pytest.raises(ValueError, match="larger than the image"):
        conv2d_forward(x[:, :, :2, :2].copy(), w, b)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 4, 7, 4\)"):
        conv2d_backward(np.zeros((2, 4, 7, 5), np.float32), x, w)
    with pytest.raises(ValueError, match="method must be"):
        conv2d_backward(np.zeros((2, 4, 7, 4), np.float32), x, w, method="fft")


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 2, 7, 5)], ids=["even", "odd"])
def test_maxpool_matches_reference_and_torch(shape):
    r = np.random.default_rng(3)
    x = r.standard_normal(shape).astype(np.float32)
    x[0, 0, 0, :2] = x[0, 0, 1, 0] = 9.0  # a three-way tie in the first window
    y, argmax = maxpool2x2_forward(x)
    ry, rargmax = ref.maxpool2x2_forward(x)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(argmax, rargmax)
    dy = r.standard_normal(y.shape).astype(np.float32)
    dx = maxpool2x2_backward(dy, argmax, x.shape)
    xt = torch.tensor(x, requires_grad=True)
    (F.max_pool2d(xt, 2) * torch.from_numpy(dy)).sum().backward()
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_maxpool_bad_input():
    with pytest.raises(ValueError, match="needs H, W >= 2"):
        maxpool2x2_forward(np.zeros((1, 1, 1, 5), np.float32))
    with pytest.raises(TypeError, match="argmax must have dtype int8"):
        maxpool2x2_backward(np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2, 2))


# ---------------------------------------------------------------- any batch size: grid z is split in chunks


def test_batch_past_the_grid_z_limit_is_launched_in_chunks(monkeypatch):
    """4,100 single-channel 5x5 images through 16 filters: 65,600 (image, filter) pairs > 65,535.

    A spy replaces the launch (the simulator would take minutes for 4 million threads): it applies the
    hardware check to every launch and records which images each one covers.
    """
    from nbkit.kernels import conv, pool

    launch = importlib.import_module("nbkit.core.launch")  # the module (nbkit.core.launch is also the function)
    launches = []

    def spy(kernel, grid, block, *args):
        launch.check_launch(grid, block, kernel)  # raises LaunchConfigError past 65,535 blocks in z
        launches.append((kernel, grid, args))

    def spy_1d(kernel, n, *args):  # the weight and bias gradients: one thread per weight, no grid z at all
        launches.append((kernel, (n,), args))

    monkeypatch.setattr(conv, "launch", spy)
    monkeypatch.setattr(pool, "launch", spy)
    monkeypatch.setattr(conv, "launch_1d", spy_1d)  # nothing runs: 4,100 images per weight take seconds simulated
    N, F = 4100, 16
    assert N * F > launch.MAX_GRID_DIM[2]
    x = np.zeros((N, 1, 5, 5), np.float32)
    w = np.zeros((F, 1, 5, 5), np.float32)
    y = conv2d_forward(x, w, np.zeros(F, np.float32))
    conv2d_backward(y, x, w, method="atomic")
    p = np.zeros((N, F, 2, 2), np.float32)
    pooled, argmax = maxpool2x2_forward(p)
    maxpool2x2_backward(pooled, argmax, p.shape)
    first_input = {conv.conv2d_forward_kernel: x, conv.conv2d_backward_input_atomic_kernel: y,
                   pool.maxpool2x2_forward_kernel: p, pool.maxpool2x2_backward_kernel: pooled}
    for kern, whole in first_input.items():
        mine = [(grid, args) for k, grid, args in launches if k is kern]
        assert len(mine) == 2, kern  # 4,095 images (65,520 pairs) + 5 images
        assert sum(args[0].shape[0] for _, args in mine) == N
        assert all(grid[2] <= launch.MAX_GRID_DIM[2] for grid, _ in mine)
        assert all(np.shares_memory(args[0], whole) for _, args in mine), kern  # slices are views, not copies
    assert {k for k, grid, _ in launches if len(grid) == 1} == {conv.conv2d_backward_weight_kernel,
                                                                conv.conv2d_backward_bias_kernel}


def test_chunked_launches_compute_the_same(monkeypatch):
    """With grid z limited to 5, every conv and pool launch is split; the results must not change."""
    launch = importlib.import_module("nbkit.core.launch")
    monkeypatch.setattr(launch, "MAX_GRID_DIM", (2**31 - 1, 65535, 5))
    x, w, b = data(3)  # 2 images, 3 channels, 4 filters: 8 and 6 pairs > 5
    x = np.concatenate([x, x[:1] * 2])  # 3 images, chunks of 1
    y = conv2d_forward(x, w, b)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b), rtol=1e-5, atol=1e-4)
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    want = ref.conv2d_backward(dy, x, w)
    for method in ("gather", "atomic"):
        for got, wnt in zip(conv2d_backward(dy, x, w, method=method), want):
            np.testing.assert_allclose(got, wnt, rtol=1e-4, atol=1e-4)
    pooled, argmax = maxpool2x2_forward(x)
    np.testing.assert_array_equal(pooled, ref.maxpool2x2_forward(x)[0])
    np.testing.assert_array_equal(maxpool2x2_backward(pooled, argmax, x.shape),
                                  ref.maxpool2x2_backward(pooled, ref.maxpool2x2_forward(x)[1], x.shape))
    with pytest.raises(launch.LaunchConfigError, match="one item needs 6 z blocks"):
        launch.batch_chunks(3, 6)
