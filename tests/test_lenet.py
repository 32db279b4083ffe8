"""The article's LeNet, assembled from the course's kernels, against PyTorch (two SGD steps, batch of 4).

Only the results matter here, so the launches run compiled by the CPU executor (``compiled_launches``; on a GPU,
on the GPU), as notebook 08 trains. Each kernel's simulator run is tested in its own file, and
tests/test_executor.py requires the executor's results to equal the simulator's for every registered kernel. On
the simulator this was the slowest test of the suite (minutes for one image); compiled, with the compiles shared
through the disk cache (notebook 08 compiles the same kernels), a batch of 4 takes seconds.
"""

import numpy as np
import pytest
import torch
from numba import cuda

from nbkit.core.launch import compiled_launches
from nbkit.nn import lenet


def test_kernel_lenet_matches_torch_for_two_sgd_steps():
    model, opt, tmodel, topt = lenet.twins(seed=0)
    r = np.random.default_rng(0)
    with compiled_launches():
        for step in range(2):
            x = r.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
            y = r.integers(0, 10, 4)
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
                np.testing.assert_allclose(p.grad.copy_to_host(), t.grad.numpy(), rtol=1e-3, atol=1e-6,
                                           err_msg=p.name)
            opt.step()
            topt.step()
    for p, t in zip(model.state(), tmodel.parameters()):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-5, atol=1e-6)
