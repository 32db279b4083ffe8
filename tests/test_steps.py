"""The step recorder counts each host<->device copy once, whatever path numba takes to write a NumPy argument back.

numba-cuda 0.21 to 0.24 (and the simulators) write a NumPy kernel argument back with the device array's
``copy_to_host(host_array)``, which the recorder also hooks; 0.25 and later call the driver directly. The fake
kernels below take each path; the last test launches a real kernel in this process's mode.
"""

import numpy as np
import pytest
from numba import cuda

from nbkit.core.launch import launch
from nbkit.kernels.vector import vector_add
from nbkit.perf import steps


def fake_kernel(writes_back_through_copy_to_host: bool):
    """A kernel stand-in that copies its NumPy arguments the way a numba-cuda version does."""

    def kernel(*args):
        pass

    def launcher(*args):
        if writes_back_through_copy_to_host:  # numba-cuda 0.21-0.24: args.InOut -> devary.copy_to_host(value)
            for a in args:
                if isinstance(a, np.ndarray):
                    cuda.device_array(a.shape, dtype=a.dtype).copy_to_host(a)
        # numba-cuda >= 0.25: driver.cuMemcpyDtoH(...), invisible to the recorder

    class Kernel:
        py_func = kernel

        def __getitem__(self, config):
            return launcher

    return Kernel()


def directions(rec):
    return [(c.direction, c.nbytes, c.how.split(" ")[0]) for c in rec.copies]


@pytest.mark.parametrize("old_numba_cuda", [True, False], ids=["numba-cuda 0.21-0.24", "numba-cuda >= 0.25"])
def test_an_implicit_copy_is_counted_once_each_way(old_numba_cuda):
    a, b = np.zeros(4, np.float32), np.zeros(2, np.float64)
    rec = steps.record(lambda: launch(fake_kernel(old_numba_cuda), 1, 1, a, b, 3))
    assert directions(rec) == [("host->device", 16, "implicit"), ("device->host", 16, "implicit"),
                               ("host->device", 16, "implicit"), ("device->host", 16, "implicit")]


def test_explicit_copies_are_still_counted():
    a = np.zeros(4, np.float32)

    def step():
        launch(fake_kernel(True), 1, 1, a)
        d = cuda.to_device(a)
        d.copy_to_host(a)  # explicit, into the array of the latest launch: after its write-back, so counted
        d.copy_to_host()
        launch(fake_kernel(False), 1, 1, 5)
        d.copy_to_host(a)  # a was not passed to this launch: counted

    rec = steps.record(step)
    assert directions(rec) == [("host->device", 16, "implicit"), ("device->host", 16, "implicit"),
                               ("host->device", 16, "cuda.to_device"), ("device->host", 16, "copy_to_host"),
                               ("device->host", 16, "copy_to_host"), ("device->host", 16, "copy_to_host")]


def test_a_real_launch_with_numpy_arguments_counts_one_copy_each_way_per_array():
    a, b, out = (np.arange(5, dtype=np.float32) for _ in range(3))
    rec = steps.record(lambda: launch(vector_add, 1, 32, a, b, out))
    np.testing.assert_array_equal(out, 2 * a)
    assert sorted(c.direction for c in rec.copies) == ["device->host"] * 3 + ["host->device"] * 3
