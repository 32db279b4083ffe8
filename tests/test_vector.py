import numpy as np
import pytest

from nbkit.core.source import source
from nbkit.kernels.threads import thread_map, thread_map_2d
from nbkit.kernels.vector import add, vector_add


@pytest.mark.parametrize("n", [1, 31, 127, 128, 129, 1000])
@pytest.mark.parametrize("threads", [32, 128])
def test_add_matches_numpy_on_sizes_that_are_not_multiples_of_the_block(n, threads):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((2, n)).astype(np.float32)
    np.testing.assert_array_equal(add(a, b, threads_per_block=threads), a + b)


def test_add_refuses_bad_input():
    a = np.ones(10, dtype=np.float32)
    with pytest.raises(TypeError, match="b must have dtype float32, got float64"):
        add(a, np.ones(10))
    with pytest.raises(ValueError, match=r"b must have shape \(10,\), got \(11,\)"):
        add(a, np.ones(11, dtype=np.float32))
    with pytest.raises(ValueError, match="a must be 1-D"):
        add(np.ones((2, 5), dtype=np.float32), a)
    with pytest.raises(ValueError, match="C-contiguous"):
        add(np.ones(20, dtype=np.float32)[::2], a)
    with pytest.raises(ValueError, match="empty"):
        add(np.ones(0, dtype=np.float32), np.ones(0, dtype=np.float32))
    with pytest.raises(TypeError, match="NumPy or device array"):
        add([1.0, 2.0], a)


def test_thread_map_is_what_the_launch_did():
    m = thread_map(20, 8)
    assert m["blocks"] == 3
    np.testing.assert_array_equal(m["global"], np.arange(20))
    np.testing.assert_array_equal(m["block"], np.arange(20) // 8)
    np.testing.assert_array_equal(m["thread"], np.arange(20) % 8)


def test_thread_map_plot_draws_idle_threads():
    import matplotlib

    matplotlib.use("Agg")
    from nbkit.plots import plot_thread_map

    fig = plot_thread_map(thread_map(20, 8))
    assert "4 idle thread(s)" in fig.axes[0].get_title()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum("idle" in t for t in texts) == 4 and "b2\nt3" in texts


def test_thread_map_2d_plot_labels_threads_x_then_y_as_the_tracer_prints_them():
    import matplotlib

    matplotlib.use("Agg")
    from nbkit.plots import plot_thread_map_2d

    fig = plot_thread_map_2d(thread_map_2d(rows=4, cols=6, block=(4, 2)))  # block 4 wide (x), 2 tall (y)
    ax = fig.axes[0]
    labels = {(int(t.get_position()[1]), int(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert labels[(1, 2)] == "(2, 1)"  # row 1, column 2: threadIdx.x = 2, threadIdx.y = 1
    assert labels[(3, 5)] == "(1, 1)"  # second block along x and along y
    assert "(threadIdx.x, threadIdx.y)" in ax.get_title()


def test_show_gives_the_code_that_runs():
    text = source(vector_add)
    assert text.startswith('@kernel("void(float32[::1], float32[::1], float32[::1])")\ndef vector_add(a, b, out):')
    assert "if i < out.size:" in text
