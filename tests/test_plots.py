"""The conv2d pictures of notebook 01 draw what their titles say, from index arithmetic checked against the reference."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from nbkit.nn import reference as ref
from nbkit.plots import conv_writers, plot_conv_window, plot_gather_scatter


def _cells(ax, gid: str, x0: float = 0) -> set[tuple[int, int]]:
    """(row, column) of the cells highlighted with ``gid`` in the grid whose left edge is x0."""
    return {(int(p.get_y()), int(p.get_x() - x0)) for p in ax.patches if p.get_gid() == gid}


def _reads(H, W, KH, KW, i, j) -> set[tuple[int, int]]:
    """The inputs output (i, j) depends on, found by the reference: ∂y[i, j]/∂x is nonzero exactly there."""
    delta = np.zeros((1, 1, H - KH + 1, W - KW + 1))
    delta[0, 0, i, j] = 1.0
    dx = ref.conv2d_backward(delta, np.zeros((1, 1, H, W)), np.ones((1, 1, KH, KW)))[0]
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(dx[0, 0]))}


@pytest.mark.parametrize("H, W, KH, KW, pixel", [(5, 6, 3, 2, (1, 2)), (4, 4, 1, 1, (3, 3)), (7, 5, 5, 5, (2, 0))])
def test_conv_window_highlights_the_kh_kw_inputs_the_output_reads(H, W, KH, KW, pixel):
    fig = plot_conv_window(H, W, KH, KW, pixel)
    ax = fig.axes[0]
    window = _cells(ax, "window")
    assert len(window) == KH * KW
    assert window == _reads(H, W, KH, KW, *pixel)
    assert _cells(ax, "output", x0=W + 2) == {pixel}
    labels = {t.get_text() for t in ax.texts}
    assert {f"p={p}\nq={q}" for p in range(KH) for q in range(KW)} <= labels  # every kernel offset is labelled
    assert f"reads the {KH * KW} inputs" in ax.get_title()
    plt.close(fig)


def test_conv_writers_counts_the_outputs_that_read_each_pixel():
    H, W, KH, KW = 6, 7, 3, 2
    count = conv_writers(H, W, KH, KW)
    expected = np.zeros((H, W), dtype=int)
    for i in range(H - KH + 1):
        for j in range(W - KW + 1):
            for r, c in _reads(H, W, KH, KW, i, j):
                expected[r, c] += 1
    np.testing.assert_array_equal(count, expected)
    assert count.max() == KH * KW and count[0, 0] == 1


@pytest.mark.parametrize("in_pixel", [(2, 2), (0, 0), (4, 5)])
def test_gather_scatter_draws_the_window_and_the_outputs_each_input_gathers(in_pixel):
    H, W, KH, KW, out_pixel = 5, 6, 3, 2, (1, 2)
    fig = plot_gather_scatter(H, W, KH, KW, out_pixel, in_pixel)
    forward, scatter, gather = fig.axes
    window = _reads(H, W, KH, KW, *out_pixel)
    assert _cells(forward, "read") == window and len(window) == KH * KW
    assert _cells(scatter, "written") == window
    assert "GATHER" in forward.get_title() and "SCATTER" in scatter.get_title() and "atomic" in scatter.get_title()
    # Panel 3: the outputs whose window covers the input pixel, no more, no fewer (fewer near the edges).
    r, s = in_pixel
    covering = {(i, j) for i in range(H - KH + 1) for j in range(W - KW + 1) if (r, s) in _reads(H, W, KH, KW, i, j)}
    assert _cells(gather, "gathered", x0=W + 2) == covering
    assert len(covering) == conv_writers(H, W, KH, KW)[r, s]
    assert f"reads the {len(covering)} outputs" in gather.get_title()
    assert _cells(gather, "thread") == {in_pixel}
    plt.close(fig)


def test_conv_pictures_refuse_what_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        plot_conv_window(3, 3, 4, 1, (0, 0))
    with pytest.raises(ValueError, match="outside"):
        plot_conv_window(5, 6, 3, 2, (3, 0))
    with pytest.raises(ValueError, match="input pixel"):
        plot_gather_scatter(5, 6, 3, 2, (0, 0), (5, 0))
