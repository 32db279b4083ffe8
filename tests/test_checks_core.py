"""The shared machinery of the exercise checks: not-solved detection, comparisons, guarded launches, PTX."""

import numpy as np
import pytest
from conftest import needs_compiler
from numba import cuda

from nbkit.checks import CheckFailed, NotSolved, check_saxpy, is_stub
from nbkit.checks import _core as core
from nbkit.core.simulator import device_array_memory
from nbkit.perf.ptx import f64_instructions


@cuda.jit
def saxpy_stub(alpha, x, y, out):
    """What nbgrader leaves in the learner's copy."""
    raise NotImplementedError()


@cuda.jit
def saxpy_right(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_grid_stride(alpha, x, y, out):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.shape[0], stride):
        out[i] = y[i] + x[i] * alpha


@cuda.jit
def saxpy_parameters_reordered(x, y, alpha, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i] + y[i]


@cuda.jit
def saxpy_other_names_wrong_order(a, b, scale, result):
    i = cuda.grid(1)
    if i < result.size:
        result[i] = scale * a[i] + b[i]


class LayerStub:
    def forward(self, x):
        return x

    def backward(self, dout):
        raise NotImplementedError()


def test_is_stub_sees_functions_kernels_and_classes():
    def f(x):
        raise NotImplementedError()

    def g(x):
        return 2 * x

    assert is_stub(f) and is_stub(saxpy_stub) and is_stub(LayerStub)
    assert not is_stub(g) and not is_stub(saxpy_right) and not is_stub(np.sum)


def test_unsolved_stub_prints_one_line(capsys, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    check_saxpy(saxpy_stub)
    out = capsys.readouterr().out
    assert out.startswith("◻ Exercise 00.1 not solved yet") and out.count("\n") == 1


def test_unsolved_stub_earns_no_points_under_nbgrader(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(NotSolved, match="not solved yet"):
        check_saxpy(saxpy_stub)


def test_not_implemented_raised_inside_the_check_counts_as_unsolved(capsys, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)

    @core.exercise("99.1", "write helper")
    def check(fn):
        fn()

    def helper_calls_a_stub():
        return LayerStub().backward(1)

    check(helper_calls_a_stub)
    assert "not solved yet" in capsys.readouterr().out


def test_correct_answers_written_differently_pass(capsys):
    check_saxpy(saxpy_right)
    check_saxpy(saxpy_grid_stride)
    out = capsys.readouterr().out
    assert out.count("✓ saxpy is correct") == 2


def test_compare_names_the_first_wrong_index_in_row_major_order():
    want = np.arange(12.0).reshape(3, 4)
    got = want.copy()
    got[2, 3] += 100.0  # the largest error
    got[1, 2] += 1.0  # the first one
    with pytest.raises(CheckFailed, match=r"2 of 12 elements; the first is C\[1, 2\]: you have 7, expected 6"):
        core.compare("C", got, want)


def test_compare_reports_shape_and_likely_cause():
    want = np.ones((2, 3))
    with pytest.raises(CheckFailed, match=r"shape \(3, 2\) \(transposed\?\)"):
        core.compare("dW", np.ones((3, 2)), want)
    with pytest.raises(CheckFailed, match="Likely cause: doubled"):
        core.compare("y", 2 * want, want, causes=[(2 * want, "doubled")])


def test_compare_shows_negative_zero_as_zero():
    with pytest.raises(CheckFailed, match=r"you have 0.5, expected 0\.$") as e:
        core.compare("dx", [0.5], np.array([-0.0]))  # dy * 0 is -0 when dy < 0
    assert "-0" not in str(e.value)


def test_compare_accepts_values_within_relative_or_absolute_tolerance():
    core.compare("x", [1.0 + 1e-9, 1e-20], [1.0, 0.0], rtol=1e-6, atol=1e-12)


def test_parameters_in_another_order_are_named(capsys):
    with pytest.raises(CheckFailed, match=r"parameters are \(x, y, alpha, out\).*saxpy\(alpha, x, y, out\)"):
        check_saxpy(saxpy_parameters_reordered)


def test_parameters_with_other_names_in_the_wrong_order_give_a_useful_message():
    # names differ from the check's, so only the run can tell: indexing the scalar is reported as an order problem
    with pytest.raises(CheckFailed) as info:
        check_saxpy(saxpy_other_names_wrong_order)
    assert str(info.value).startswith("✗ your kernel indexed a scalar parameter (")
    assert str(info.value).endswith("): the parameters are probably in another order than the check passes them: "
                                    "it calls saxpy(alpha, x, y, out).")


def _scribbling_launch(offset_from_end: int):
    """A launch that behaves like an unguarded kernel on a GPU: it writes right next to ``out`` in device memory."""

    def fake_launch(kernel, grid, block, alpha, x, y, out):
        out[:] = alpha * x.copy_to_host() + y.copy_to_host()
        device_buffer = device_array_memory(out).base  # the padded device allocation the view lives in
        n = out.shape[0]
        if offset_from_end >= 0:
            device_buffer[core.PAD + n + offset_from_end] = 1.0
        else:
            device_buffer[core.PAD + offset_from_end] = 1.0

    return fake_launch


@pytest.mark.parametrize("offset, where", [(0, "past the end"), (5, "past the end"), (-1, "before the start")])
def test_stray_writes_land_in_device_padding_and_are_caught(monkeypatch, offset, where):
    monkeypatch.setattr(core, "launch", _scribbling_launch(offset))
    with pytest.raises(CheckFailed, match=f"wrote {where} of out"):
        check_saxpy(saxpy_right)


def test_outputs_are_device_views_not_host_copies(monkeypatch):
    seen = {}

    def spy(kernel, grid, block, *args):
        seen.setdefault("out", args[-1])  # the first case's (00.1 runs several)
        kernel[grid, block](*args)

    monkeypatch.setattr(core, "launch", spy)
    check_saxpy(saxpy_right)
    out = seen["out"]
    assert hasattr(out, "copy_to_host"), "the kernel must receive a device array, or the padding never reaches the GPU"
    assert out.shape == (300,)


@cuda.jit
def scale_f32(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] * 0.75  # exactly representable in float32: stays float32


@cuda.jit
def scale_f64(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] * 0.1  # not representable: the multiplication is done in float64


@needs_compiler
def test_float32_is_proved_from_the_ptx():
    ok, message = core.float32_ptx(scale_f32, "void(float32[::1], float32[::1])")
    assert ok is True and "no .f64" in message
    ok, message = core.float32_ptx(scale_f64, "void(float32[::1], float32[::1])")
    assert ok is False and "float64 instruction" in message
    example = message.split("`")[1]
    assert f64_instructions(example) == [example], example
    assert "integer operand" in message and "float literal" in message
    with pytest.raises(CheckFailed, match="float64"):
        core.require_float32(scale_f64, "void(float32[::1], float32[::1])")


@cuda.jit
def saxpy_reads_neighbour(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size - 1:
        out[i] = alpha * x[i + 1] + y[i]


def test_a_failing_kernel_check_draws_who_wrote_what_and_what_the_culprit_read(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    x = np.arange(40, dtype=np.float32)
    run = core.run_kernel(saxpy_reads_neighbour, 2, 32, [np.float32(2), x, x], [(40,)], output_names=("out",))
    fig = core.launch_picture(run, 0, (0,))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any("never written" in t for t in titles), titles  # out[39] was never written
    assert any("out[0] is wrong" in t and "block (0,), thread (0,)" in t and "elements of x" in t for t in titles), titles
    shown = []
    monkeypatch.setenv("NBKIT_CHECK_PICTURES", "1")
    monkeypatch.setattr("IPython.display.display", lambda f: shown.append(f))
    with pytest.raises(CheckFailed, match=r"out\[0\]"):
        check_saxpy(saxpy_reads_neighbour)
    assert len(shown) == 1


def test_no_pictures_outside_a_notebook(monkeypatch):
    monkeypatch.delenv("NBKIT_CHECK_PICTURES", raising=False)
    assert core.pictures_wanted() is False


def test_verdicts_say_where_the_launch_ran(monkeypatch):
    """A race verdict must not say "in the simulator" when the kernel ran on a GPU (or in the CPU executor)."""
    import types

    import nbkit.core.mode as mode
    from nbkit.checks._core import where_it_ran

    assert "simulator" in where_it_ran()
    monkeypatch.setattr(mode, "MODE", types.SimpleNamespace(name="gpu"))
    assert where_it_ran() == "on the GPU in this run"
    monkeypatch.setattr(mode, "MODE", types.SimpleNamespace(name="cpu"))
    assert "CPU executor" in where_it_ran()


@cuda.jit
def saxpy_float_index(alpha, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = alpha * x[i / 1] + y[i]


def test_a_float_index_is_not_called_out_of_bounds():
    """`/` instead of `//` gives a float index: the simulator raises IndexError, but nothing was out of bounds."""
    from nbkit.checks import CheckFailed, check_saxpy

    with pytest.raises(CheckFailed) as info:
        check_saxpy(saxpy_float_index)
    assert "not an integer" in str(info.value) and "outside an array" not in str(info.value)
