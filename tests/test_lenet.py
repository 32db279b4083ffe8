"""The article's LeNet, assembled from the course's kernels, against PyTorch (simulator, tiny batch).

This is the slowest test of the suite (the simulator runs every CUDA thread as a Python thread), so it
uses a batch of one image and two SGD steps.
"""

import numpy as np
import pytest
import torch
from numba import cuda

from nbkit.nn import lenet


def test_kernel_lenet_matches_torch_for_two_sgd_steps():
    model, opt, tmodel, topt = lenet.twins(seed=0)
    r = np.random.default_rng(0)
    for step in range(2):
        x = r.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
        y = r.integers(0, 10, 1)
        loss = model.loss(cuda.to_device(x), cuda.to_device(y))
        logits = model.logits.copy_to_host()
        model.backward()
        tlogits = tmodel(torch.from_numpy(x))
        tloss = torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=1e-4, atol=1e-5)
        assert loss == pytest.approx(tloss.item(), rel=1e-5)
        for p, t in zip(model.params(), tmodel.parameters()):
            np.testing.assert_allclose(p.grad.copy_to_host(), t.grad.numpy(), rtol=1e-3, atol=1e-6, err_msg=p.name)
        opt.step()
        topt.step()
    for p, t in zip(model.state(), tmodel.parameters()):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-5, atol=1e-6)
