"""The launch helper refuses, in the simulator too, what a real GPU would refuse."""

import numpy as np
import pytest
from numba import cuda, float32, int32

import nbkit
from nbkit.core.launch import LaunchConfigError, blocks_for, check_launch, launch, static_shared_bytes
from nbkit.kernels.vector import vector_add

TILE = 16


@cuda.jit
def uses_two_tiles(out):
    a = cuda.shared.array((TILE, TILE), float32)
    b = cuda.shared.array(shape=TILE * 4, dtype=int32)
    i = cuda.grid(1)
    if i < out.size:
        a[0, 0] = 1
        b[0] = 1
        out[i] = a[0, 0] + b[0]


@cuda.jit
def too_much_shared(out):
    big = cuda.shared.array((128, 128), float32)  # 64 KiB
    i = cuda.grid(1)
    if i < out.size:
        big[0, 0] = 1
        out[i] = big[0, 0]


def test_2048_threads_per_block_is_refused_in_the_simulator():
    assert nbkit.MODE.is_simulator
    a = np.ones(4096, dtype=np.float32)
    with pytest.raises(LaunchConfigError, match="exceeds the hardware limit 1024"):
        launch(vector_add, 2, 2048, a, a, a)


def test_2d_block_over_1024_threads_in_total_is_refused():
    with pytest.raises(LaunchConfigError, match="2048 threads per block .* exceeds the limit of 1024"):
        check_launch((1, 1), (32, 64))


@pytest.mark.parametrize("grid, block, message", [
    (0, 128, "zero or a negative number"),
    ((4, 0), (16, 16), "zero or a negative number"),
    (1, (1, 1, 65), "block dimension z = 65 exceeds the hardware limit 64"),
    ((1, 70000), 32, "grid dimension y = 70000 exceeds the hardware limit 65535"),
    ((1, 1, 1, 1), 32, "1, 2 or 3 dimensions"),
    (1.5, 32, "whole numbers"),
])
def test_bad_configurations_are_refused(grid, block, message):
    with pytest.raises(LaunchConfigError, match=message):
        check_launch(grid, block)


def test_good_configuration_is_returned_as_tuples():
    assert check_launch(3, (32, 8)) == ((3,), (32, 8))
    assert check_launch((2**31 - 1,), 1024) == ((2**31 - 1,), (1024,))


def test_an_accepted_configuration_is_not_checked_again(monkeypatch):
    """Every launch is checked: an accepted configuration (grid, block, kernel, dynamic shared bytes) is remembered
    (the checks cost 3-4 µs of a cpu-mode launch's ~25), one refused is refused every time, and a float that equals
    an accepted int is still refused."""
    import nbkit.core.launch as L

    calls = []
    monkeypatch.setattr(L, "static_shared_bytes", lambda kernel: calls.append(kernel) or 0)
    monkeypatch.setattr(L, "_ACCEPTED", set())
    kernel = object()
    for _ in range(3):
        assert check_launch((5, 2), 96, kernel) == ((5, 2), (96,))
    assert len(calls) == 1
    for _ in range(2):
        with pytest.raises(LaunchConfigError, match="whole numbers"):
            check_launch((5.0, 2), 96, kernel)
        with pytest.raises(LaunchConfigError, match="exceeds the limit of 1024"):
            check_launch((5, 2), (64, 32), kernel)


def test_blocks_for_rounds_up():
    assert [blocks_for(n, 128) for n in (1, 127, 128, 129, 1000)] == [1, 1, 1, 2, 8]
    with pytest.raises(LaunchConfigError):
        blocks_for(0, 128)


def test_static_shared_memory_is_read_from_the_source():
    assert static_shared_bytes(uses_two_tiles) == TILE * TILE * 4 + TILE * 4 * 4
    assert static_shared_bytes(vector_add) == 0


def test_shared_memory_over_48_kib_is_refused():
    out = np.zeros(8, dtype=np.float32)
    with pytest.raises(LaunchConfigError, match=r"65536 bytes of shared memory .*\(48 KiB\)"):
        launch(too_much_shared, 1, 8, out)


def test_dynamic_shared_memory_counts_too():
    static = TILE * TILE * 4 + TILE * 4 * 4
    check_launch(1, 32, uses_two_tiles, dynamic_shared_bytes=48 * 1024 - static)  # exactly at the limit: fine
    with pytest.raises(LaunchConfigError, match=f"{static} static \\+ {48 * 1024 - static + 1} dynamic"):
        check_launch(1, 32, uses_two_tiles, dynamic_shared_bytes=48 * 1024 - static + 1)
    with pytest.raises(LaunchConfigError, match="must be >= 0"):
        check_launch(1, 32, dynamic_shared_bytes=-1)


def test_an_accepted_launch_runs():
    out = np.zeros(37, dtype=np.float32)
    launch(uses_two_tiles, blocks_for(37, 16), 16, out)
    np.testing.assert_array_equal(out, 2.0)


@cuda.jit
def reads_past_the_end(x, out):
    i = cuda.grid(1)
    out[i] = x[i + 1]  # no bounds guard, and reads one element too far


def test_a_failing_launch_names_the_kernel_and_the_launch():
    x = np.zeros(4, np.float32)
    with pytest.raises(IndexError) as info:
        launch(reads_past_the_end, 1, 4, x, np.zeros(4, np.float32))
    note = "\n".join(getattr(info.value, "__notes__", []))
    assert "reads_past_the_end" in note and "grid (1,), block (4,)" in note and "host float32(4,)" in note
