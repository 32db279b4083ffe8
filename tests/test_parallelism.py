"""The launch-shape table of one LeNet step: configurations as launched, threads with work and loops by hand."""

import pytest
from numba import cuda

from nbkit.core.launch import compiled_launches
from nbkit.nn import capstone, lenet
from nbkit.perf import parallelism, steps
from nbkit.perf.steps import StepRecord


@pytest.fixture(scope="module")
def lenet_steps():
    """One LeNet training step recorded at batch 1 and batch 2 (every launch through the CPU executor)."""
    import numpy as np

    rng = np.random.default_rng(0)
    recs = {}
    with compiled_launches():
        for batch in (1, 2):
            net, opt, _, _ = lenet.twins(seed=0)
            x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
            y = rng.integers(0, 10, batch)
            recs[f"batch {batch}"] = steps.record(capstone.course_step(net, opt), cuda.to_device(x), cuda.to_device(y))
    return recs


def test_every_lenet_launch_is_modelled_and_counted_as_launched(lenet_steps):
    rec = lenet_steps["batch 2"]
    shapes = parallelism.launch_shapes(rec)
    assert len(shapes) == len(rec.launches) == 47
    assert all(s.work is not None for s in shapes), [s.kernel for s in shapes if s.work is None]
    for s, (_, grid, block, _) in zip(shapes, rec.launches):
        as_3d = lambda d: (d,) if isinstance(d, int) else tuple(d)  # noqa: E731
        launched = 1
        for v in as_3d(grid) + as_3d(block):
            launched *= v
        assert s.threads_launched == launched
        assert s.work.threads <= s.threads_launched


def test_gradient_kernels_by_hand(lenet_steps):
    """conv1 dW: 6·3·5·5 = 450 threads, each summing over n, 28, 28; conv2 dW: 2,400 threads over n, 10, 10."""
    for batch in (1, 2):
        shapes = parallelism.launch_shapes(lenet_steps[f"batch {batch}"])
        weight = [s.work for s in shapes if s.kernel == "conv2d_backward_weight_kernel"]
        bias = [s.work for s in shapes if s.kernel == "conv2d_backward_bias_kernel"]
        assert sorted((w.threads, w.loop) for w in weight) == [(450, batch * 784), (2400, batch * 100)]
        assert sorted((b.threads, b.loop) for b in bias) == [(6, batch * 784), (16, batch * 100)]
        dense_bias = sorted((w.threads, w.loop) for s in shapes if s.kernel == "column_sum_kernel" for w in [s.work])
        assert dense_bias == [(10, batch), (84, batch), (120, batch)]


def test_table_puts_the_gradient_kernels_first_and_labels_the_model(lenet_steps):
    text = parallelism.table(lenet_steps, rows=2)
    body = text.splitlines()[2:4]
    assert [line.split()[0] for line in body] == ["conv2d_backward_weight", "conv2d_backward_bias"]
    assert "1,568" in body[0] and "450" in body[0]  # the first conv layer, batch 2: 2 × 28 × 28 iterations
    assert "... 45 more launches, each thread's loop at most 400" in text
    assert "MODEL" in text and "108 SMs × 2,048 = 221,184" in text and "132 SMs × 2,048 = 270,336" in text


def test_resident_threads_from_datasheet_and_occupancy_limits():
    assert parallelism.resident_threads("A100 SXM 40GB") == 108 * 64 * 32
    assert parallelism.resident_threads("H100 SXM") == 132 * 64 * 32
    assert parallelism.resident_threads("T4") == 40 * 32 * 32


def test_records_of_different_networks_are_refused(lenet_steps):
    other = StepRecord(launches=lenet_steps["batch 1"].launches[:-1])
    with pytest.raises(ValueError, match="same launches in the same order"):
        parallelism.table({"a": lenet_steps["batch 1"], "b": other})


def test_a_kernel_without_a_formula_is_shown_as_unknown():
    def mystery_kernel(x):
        pass

    rec = StepRecord(launches=[(mystery_kernel, (3, 1), 32, ())])
    (shape,) = parallelism.launch_shapes(rec)
    assert shape.work is None and shape.threads_launched == 96
    assert "mystery" in parallelism.table({"only": rec}) and "—" in parallelism.table({"only": rec})


def test_the_tiled_matmul_loops_over_whole_tiles():
    """On a GPU the dense layers use the tiled kernel: each thread runs ceil(K / 16) tiles of 16 multiply-adds."""
    import numpy as np

    from nbkit.kernels.matmul import TILE, matmul_tiled_kernel

    a, b, c = np.zeros((64, 84), np.float32), np.zeros((84, 10), np.float32), np.zeros((64, 10), np.float32)
    rec = StepRecord(launches=[(matmul_tiled_kernel, (1, 4), (TILE, TILE), (a, b, c, 0, 0))])
    (shape,) = parallelism.launch_shapes(rec)
    assert (shape.work.threads, shape.work.loop, shape.threads_launched) == (640, 96, 1024)


def test_matmul_variants_chosen_by_batch_size_share_a_row(lenet_steps):
    """Where the executor runs the launches, batch 1 uses the naive matmul and batch 16 the tiled one."""
    import numpy as np

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((16, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 16)
    with compiled_launches():
        net, opt, _, _ = lenet.twins(seed=0)
        rec16 = steps.record(capstone.course_step(net, opt), cuda.to_device(x), cuda.to_device(y))
    text = parallelism.table({"batch 1": lenet_steps["batch 1"], "batch 16": rec16})
    assert "matmul_naive / matmul_tiled" in text
