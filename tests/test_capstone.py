"""Notebook 08's loops and the step recorder, in the simulator on a tiny network (the GPU branch's plumbing)."""

import numpy as np
import pytest
import torch
from numba import cuda

from nbkit.nn import capstone
from nbkit.nn.layers import Conv2d, Dense, Flatten, MaxPool2x2, ReLU, Sequential
from nbkit.nn.optim import SGD
from nbkit.perf import steps


def tiny_twins():
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    model = Sequential(Conv2d(1, 2, 3, rng), ReLU(), MaxPool2x2(), Flatten(), Dense(8, 3, rng))
    model.load([p.detach().numpy() for p in tmodel.parameters()])
    return model, SGD(model.params(), lr=0.1, momentum=0.9), tmodel, torch.optim.SGD(tmodel.parameters(), lr=0.1,
                                                                                      momentum=0.9)


def data():
    r = np.random.default_rng(1)
    return r.standard_normal((6, 1, 6, 6)).astype(np.float32), r.integers(0, 3, 6)


def test_kernels_and_torch_train_side_by_side_on_the_same_batches():
    model, opt, tmodel, topt = tiny_twins()
    x, y = data()
    ours, _ = capstone.train(capstone.course_step(model, opt), x, y, epochs=1, batch=2, to_device=cuda.to_device,
                             log_every=1)
    theirs, _ = capstone.train(capstone.torch_step(tmodel, topt), x, y, epochs=1, batch=2, to_device=torch.from_numpy,
                               log_every=1)
    assert len(ours) == 3
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    limited, _ = capstone.train(lambda a, b: 1.0, x, y, epochs=2, batch=2, max_steps=4, log_every=50)
    assert limited.tolist() == [1.0]  # 4 steps, fewer than log_every: one point


def test_one_recorded_step_copies_only_the_loss():
    model, opt, _, _ = tiny_twins()
    x, y = data()
    dx, dy = cuda.to_device(x[:2]), cuda.to_device(y[:2])
    rec = steps.record(capstone.course_step(model, opt), dx, dy)
    assert rec.copies_except(max_bytes=8) == []
    assert [c.direction for c in rec.copies] == ["device->host"]  # the loss, 4 bytes
    counts = rec.launch_counts()
    assert counts["conv2d_forward_kernel"] == 1 and counts["sgd_momentum_kernel"] == 4
    table = steps.kernel_table(rec)
    assert "not measured" in table and "device->host copies: 1 (4 bytes)" in table
    with pytest.raises(RuntimeError, match="need a real GPU"):
        steps.time_kernels(rec, capstone.course_step(model, opt), dx, dy)


def test_numpy_arguments_are_reported_as_implicit_copies():
    model, opt, _, _ = tiny_twins()
    x, y = data()
    rec = steps.record(lambda: model.forward(x[:1]))  # a host array straight into the first kernel
    assert any("implicit" in c.how and "conv2d_forward_kernel" in c.how for c in rec.copies)


def test_predict_in_batches_or_all_at_once_and_confusion():
    model, _, _, _ = tiny_twins()
    x, y = data()

    def logits_of(xb):
        return model.forward(cuda.to_device(xb)).copy_to_host()

    all_at_once = capstone.predict(logits_of, x)
    np.testing.assert_array_equal(all_at_once, capstone.predict(logits_of, x, batch=4))  # 4 + a last batch of 2
    m = capstone.confusion_matrix(y, all_at_once, classes=3)
    assert m.sum() == 6 and np.trace(m) == (all_at_once == y).sum()
