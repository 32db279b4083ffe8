"""The roofline MODEL: formulas by hand at tiny sizes, GPU datasheet figures, placement and plot."""

import matplotlib

matplotlib.use("Agg")

import pytest

from nbkit.perf import roofline as rl


def test_matmul_formulas_by_hand():
    naive = rl.matmul_naive(2, 3, 5)
    assert naive.flops == 2 * 2 * 3 * 5 == 60
    assert naive.bytes_issued == 4 * (2 * 2 * 3 * 5 + 6)  # 2K loads + 1 store per output
    assert naive.bytes_min == 4 * (10 + 15 + 6)
    tiled = rl.matmul_tiled(20, 20, 20, tile=16)  # 2 x 2 blocks: each A and B element loaded twice
    assert tiled.bytes_issued == 4 * (400 * 2 + 400 * 2 + 400)
    assert rl.matmul_tiled(16, 16, 16).bytes_issued == rl.matmul_tiled(16, 16, 16).bytes_min


def test_tiling_divides_issued_traffic_by_the_tile():
    n = 1024
    ratio = rl.matmul_naive(n, n, n).bytes_issued / rl.matmul_tiled(n, n, n).bytes_issued
    assert 15 < ratio < 16  # 2n³ loads vs 2n³/16 (plus the n² stores)


def test_other_kernels():
    assert rl.elementwise("relu_forward", 10).bytes_issued == 80
    assert rl.elementwise("sigmoid_backward", 10).bytes_issued == 120
    with pytest.raises(ValueError, match="unknown elementwise kernel 'gelu'"):
        rl.elementwise("gelu", 10)
    conv = rl.conv2d_forward(1, 1, 3, 3, 1, 2, 2)  # 2x2 outputs of 4 taps
    assert conv.flops == 2 * 4 * 4 and conv.bytes_issued == 4 * 4 * (2 * 4 + 2)
    assert rl.maxpool2x2_forward(1, 1, 4, 4).bytes_issued == 4 * (16 + 4 + 1)
    sm = rl.softmax_xent_row_per_thread(2, 10)
    assert sm.flops == 2 * 53 and sm.bytes_issued == 2 * (4 * 52 + 4)
    assert rl.sgd_momentum(10).bytes_issued == 240
    assert rl.dense_forward(4, 8, 3).flops == rl.matmul_tiled(4, 3, 8).flops + 12


def test_gpus_are_named_with_sources():
    assert set(rl.GPUS) == {"T4", "A100 SXM 40GB", "H100 SXM"}
    for gpu in rl.GPUS.values():
        assert "datasheet" in gpu.source and "http" in gpu.source
    assert rl.GPUS["T4"].ridge == pytest.approx(8100 / 320)


def test_placement_is_labelled_model_and_bound_is_right():
    relu = rl.place(rl.elementwise("relu_forward", 1 << 20), "A100 SXM 40GB")
    assert relu.bound == "memory-bound" and relu.attainable_gflops == pytest.approx(1555 / 8)
    assert str(relu).startswith("MODEL relu_forward")
    mm = rl.place(rl.matmul_tiled(4096, 4096, 4096), "T4")
    assert mm.bound == "compute-bound" and mm.attainable_gflops == 8100
    timed = rl.place(rl.matmul_tiled(64, 64, 64), "T4", measured_seconds=1e-5)
    assert "MEASURED on the GPU" in str(timed)
    with pytest.raises(ValueError, match="unknown GPU 'V100'; known: T4"):
        rl.place(relu.work, "V100")


def test_measured_time_needs_a_gpu():
    with pytest.raises(RuntimeError, match="needs a real GPU"):
        rl.measure_beside_model(rl.sgd_momentum(10), "T4", lambda: None)


def test_plot_roofline_is_titled_and_labelled():
    ax = rl.plot_roofline([rl.matmul_naive(256, 256, 256), rl.elementwise("relu_forward", 1000)])
    assert "MODEL" in ax.get_title() and "FLOP/byte" in ax.get_xlabel() and "GFLOP/s" in ax.get_ylabel()
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_model_is_picked_from_the_device_present_or_none():
    from nbkit.perf.roofline import GPUS, model_for

    assert model_for("Tesla T4") is GPUS["T4"]
    assert model_for("NVIDIA A100-SXM4-40GB") is GPUS["A100 SXM 40GB"]
    assert model_for("NVIDIA A100-PCIE-40GB") is GPUS["A100 SXM 40GB"]
    assert model_for("NVIDIA H100 80GB HBM3") is GPUS["H100 SXM"]
    for other in ("NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA A100-SXM4-80GB", "NVIDIA H200", "NVIDIA GeForce RTX 4090"):
        assert model_for(other) is None, other


def test_no_model_in_the_simulator():
    from nbkit.perf.roofline import present_model

    assert present_model() == (None, "")


def test_roofline_labels_are_merged_and_spread_apart():
    from nbkit.perf import roofline as rl

    works = [rl.elementwise("relu_forward", 1000), rl.elementwise("relu_forward", 5000),
             rl.maxpool2x2_forward(4, 6, 28, 28), rl.conv2d_forward(4, 3, 32, 32, 6, 5, 5)]
    labels, offsets = rl._label_layout(works, [w.intensity() for w in works])
    names = [(name, count) for name, _, count in labels]
    assert ("relu_forward", 2) in names and len(labels) == 3  # the two ReLUs share one label
    assert len(set(offsets[:2])) == 2  # ReLU and max-pool sit close together: their labels are stacked
