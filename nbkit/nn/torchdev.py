"""Where the PyTorch twin runs, asked of torch itself, and float32 comparisons without TF32."""

from __future__ import annotations

import contextlib
from typing import Iterator

from nbkit.core import compat
from nbkit.core.mode import MODE


def torch_device() -> tuple[str, str]:
    """("cuda", why) where both numba and torch can use the GPU, else ("cpu", why not)."""
    import torch

    if MODE.is_simulator or not MODE.probe.usable:
        return "cpu", f"no GPU in this {MODE.name} mode"
    capability = None
    with contextlib.suppress(Exception):  # a CPU build or a broken driver: the blocker below says why
        capability = tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None
    if capability is None and MODE.probe.compute_capabilities:
        capability = MODE.probe.compute_capabilities[0]
    arch_list: list[str] = []
    with contextlib.suppress(Exception):
        arch_list = list(torch.cuda.get_arch_list())
    blocker = compat.torch_cuda_blocker(torch.version.cuda, torch.cuda.is_available(), arch_list, capability,
                                        MODE.probe.driver_version)
    if blocker:
        return "cpu", f"PyTorch runs on the CPU: {blocker}"
    return "cuda", f"PyTorch on the GPU (CUDA {torch.version.cuda})"


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """TF32 off for cuBLAS matmuls and cuDNN convolutions: PyTorch computes in float32, as the course kernels do.

    PyTorch's defaults let cuDNN convolutions use TF32 on Ampere and newer GPUs (10-bit mantissa products), which
    would compare a faster, less precise format with our float32 kernels.
    """
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
