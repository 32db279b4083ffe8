"""The SGD kernel and the Sequential model against PyTorch, step for step."""

import numpy as np
import pytest
import torch
from numba import cuda

from nbkit.nn.layers import Conv2d, Dense, Flatten, MaxPool2x2, ReLU, Sequential, Tanh
from nbkit.nn.optim import SGD, Param


@pytest.mark.parametrize("options", [
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(momentum=0.8, nesterov=True),
    dict(),
])
def test_sgd_kernel_matches_torch(options):
    r = np.random.default_rng(0)
    p0 = r.standard_normal((3, 5)).astype(np.float32)
    grads = r.standard_normal((4, 3, 5)).astype(np.float32)
    p = Param("w", cuda.to_device(p0))
    opt = SGD([p], lr=0.1, **options)
    pt = torch.tensor(p0.copy(), requires_grad=True)
    topt = torch.optim.SGD([pt], lr=0.1, **options)
    for g in grads:
        p.grad = cuda.to_device(g)
        opt.step()
        pt.grad = torch.from_numpy(g.copy())
        topt.step()
        np.testing.assert_allclose(p.value.copy_to_host(), pt.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_sgd_refuses_bad_settings():
    p = Param("w", cuda.to_device(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="lr > 0"):
        SGD([p], lr=0)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(RuntimeError, match="no gradient"):
        SGD([p], lr=0.1).step()


def run_parity(model, tmodel, x, y, steps):
    model.load([t.detach().numpy() for t in tmodel.parameters()])
    opt = SGD(model.params(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    for _ in range(steps):
        loss = model.loss(dx, dy)
        model.backward()
        grads = [p.grad.copy_to_host() for p in model.params()]
        opt.step()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        assert loss == pytest.approx(tloss.item(), rel=1e-5, abs=1e-6)
        for g, t in zip(grads, tmodel.parameters()):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-4, atol=1e-6)
        topt.step()
    for p, t in zip(model.state(), tmodel.parameters()):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_mlp_trains_like_torch():
    torch.manual_seed(0)
    r = np.random.default_rng(1)
    x = r.standard_normal((6, 3)).astype(np.float32)
    y = r.integers(0, 2, 6)
    model = Sequential(Dense(3, 5, r), Tanh(), Dense(5, 4, r), ReLU(), Dense(4, 2, r))
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4), torch.nn.ReLU(),
                                 torch.nn.Linear(4, 2))
    run_parity(model, tmodel, x, y, steps=3)


def test_small_convnet_trains_like_torch():
    torch.manual_seed(1)
    r = np.random.default_rng(2)
    x = r.standard_normal((2, 2, 7, 7)).astype(np.float32)
    y = np.array([0, 2])
    model = Sequential(Conv2d(2, 3, 3, r), ReLU(), MaxPool2x2(), Flatten(), Dense(12, 3, r))
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(12, 3))
    run_parity(model, tmodel, x, y, steps=2)


def test_load_refuses_wrong_shapes():
    model = Sequential(Dense(3, 2, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"weight: expected shape \(2, 3\)"):
        model.load([np.zeros((3, 2)), np.zeros(2)])
    with pytest.raises(ValueError, match="expected 2 arrays"):
        model.load([np.zeros((2, 3))])
