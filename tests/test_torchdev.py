"""PyTorch's GPU is asked of torch (its CUDA paired with the driver), and comparisons run float32 without TF32."""

import torch

from nbkit.core.compat import torch_cuda_blocker
from nbkit.nn import torchdev


def test_cpu_build_is_named():
    assert "CPU build" in torch_cuda_blocker(None, False, [], (8, 0), 13000)


def test_cuda13_torch_on_a_cuda12_driver_is_refused():
    why = torch_cuda_blocker("13.0", False, ["sm_80", "sm_90"], (8, 0), 12040)
    assert "needs driver >= 580" in why and "CUDA 12.4" in why


def test_cuda12_torch_on_a_recent_driver_is_fine():
    assert torch_cuda_blocker("12.8", True, ["sm_50", "sm_80", "sm_90"], (8, 6), 13000) is None


def test_gpu_missing_from_the_arch_list_is_refused():
    why = torch_cuda_blocker("12.8", True, ["sm_75", "sm_80", "sm_90"], (6, 0), 12080)
    assert "not compiled for compute capability 6.0" in why
    # PTX for an older architecture is JIT-compiled for a newer GPU
    assert torch_cuda_blocker("12.8", True, ["sm_80", "compute_90"], (12, 0), 12080) is None


def test_torch_that_cannot_see_the_gpu_is_refused():
    assert "is_available() is False" in torch_cuda_blocker("12.8", False, ["sm_80"], (8, 0), 12080)


def test_torch_device_without_gpu_is_cpu():
    where, why = torchdev.torch_device()
    assert where == "cpu" and "no GPU" in why


def test_torch_device_asks_torch_even_when_numba_sees_a_gpu(monkeypatch):
    import types

    probe = types.SimpleNamespace(usable=True, compute_capabilities=((8, 0),), driver_version=13000)
    monkeypatch.setattr(torchdev, "MODE", types.SimpleNamespace(is_simulator=False, name="gpu", probe=probe))
    # this torch is the CPU build: numba's GPU alone must not make the twin use "cuda"
    where, why = torchdev.torch_device()
    assert where == "cpu" and ("CPU build" in why or "is_available() is False" in why)


def test_strict_float32_turns_tf32_off_in_cublas_and_cudnn_and_restores():
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    with torchdev.strict_float32():
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
