"""CUDA compatibility: which numba-cuda extra (CUDA 12 or 13) fits a driver and its GPUs, and what is wrong when
the installed one does not fit.

Standard library only, and no import of nbkit: ``coursekit/setup_plan.py`` loads this file by its path to choose
what to install before numba exists, and :mod:`nbkit.core.doctor` imports it to name a mismatch in a learner's
environment with the command that fixes it. A probe is anything with the fields of
:class:`nbkit.core.mode.GpuProbe` (``usable``, ``driver_version``, ``compute_capabilities``, ``device_names``).
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from typing import Protocol, Sequence


class Probe(Protocol):
    """What compat reads of a :class:`nbkit.core.mode.GpuProbe` (declared here: mode imports compat, not back)."""

    @property
    def usable(self) -> bool: ...

    driver_version: int | None
    compute_capabilities: tuple[tuple[int, int], ...]
    device_names: tuple[str, ...]

# --- What each CUDA toolkit needs (cuDriverGetVersion reports the newest CUDA version the driver supports) ----------
# Driver: CUDA 13.x needs a driver >= 580, CUDA 12.x one >= 525 (the driver then reports 13000+ / 12000+).
#   NVIDIA, CUDA Compatibility, "Minor Version Compatibility", Table 1:
#   https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html
#   (exact minima: CUDA 12 525.60.13 Linux / 527.41 Windows; CUDA 13 580.65 Linux / 580.88 Windows, from
#   https://nvidia.github.io/cuda-python/cuda-core/latest/install.html)
#   A CUDA 12.9 toolkit on a driver that reports 12.2 works through minor version compatibility, which
#   numba-cuda provides with nvJitLink: https://nvidia.github.io/numba-cuda/user/minor_version_compatibility.html
# GPU: numba-cuda supports "for CUDA 12 ... Compute Capabilities 5.0 to 12.1 ..., and for CUDA 13 ... 7.5 to 12.1"
#   (https://nvidia.github.io/numba-cuda/user/installation.html): CUDA 13 dropped Maxwell, Pascal and Volta
#   (https://developer.nvidia.com/blog/navigating-gpu-architecture-support-a-guide-for-nvidia-cuda-developers).
CUDA13_MIN_DRIVER_REPORT, CUDA13_MIN_DRIVER = 13000, "580"
CUDA12_MIN_DRIVER_REPORT, CUDA12_MIN_DRIVER = 12000, "525"
CUDA13_MIN_CC = (7, 5)
CUDA12_MIN_CC = (5, 0)
EXTRAS = ("cu12", "cu13")
DEFAULT_EXTRA = "cu13"  # without a GPU: numba-cuda still compiles kernels to PTX (python -m nbkit.perf.ptx)
FORCE_VAR = "NBKIT_CUDA"  # NBKIT_CUDA=cu12 or cu13 overrides the choice

# Wheels that numba-cuda[cu13] adds (cuda-toolkit[cccl,cudart,nvrtc,nvvm]==13.*, nvidia-nvjitlink 13). They must go
# when switching to cu12: cuda-pathfinder finds CUDA 13's libraries first when both are installed.
CUDA13_TOOLKIT_WHEELS = ("cuda-toolkit", "nvidia-cuda-cccl", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc",
                         "nvidia-nvvm", "nvidia-nvjitlink")
NUMBA_CUDA_REQ = "numba-cuda[{extra}]>=0.21"
STAMP = "nbkit-setup.json"  # written by course.sh into the virtual environment it made (see coursekit/setup_plan.py)


def cuda_version(report: int | None) -> str:
    """13000 -> '13.0' (the driver's cuDriverGetVersion value)."""
    return "unknown" if not report else f"{report // 1000}.{(report % 1000) // 10}"


def _cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


@dataclass(frozen=True)
class Choice:
    """The numba-cuda extra for this machine; ``warning`` is set when no CUDA toolkit can use its GPU."""

    extra: str
    reason: str
    warning: str | None = None


def choose_extra(driver_report: int | None, capabilities: Sequence[tuple[int, int]],
                 names: Sequence[str] = (), forced: str | None = None) -> Choice:
    """cu13 where driver and every GPU support CUDA 13, cu12 where only CUDA 12 fits, cu13 without a GPU."""
    if forced:
        if forced not in EXTRAS:
            raise ValueError(f"{FORCE_VAR}={forced!r} is not understood: expected one of {', '.join(EXTRAS)}.")
        return Choice(forced, f"forced by {FORCE_VAR}={forced}")
    if driver_report is None or not capabilities:
        return Choice(DEFAULT_EXTRA, "no NVIDIA GPU found: CUDA 13 (kernels still compile to PTX; the simulator runs them)")
    oldest = min(capabilities)
    gpu = names[capabilities.index(oldest)] if len(names) == len(capabilities) else "the GPU"
    what = f"{gpu} (compute capability {_cc(oldest)})"
    if oldest < CUDA12_MIN_CC:
        return Choice(DEFAULT_EXTRA, f"{what} is older than any CUDA toolkit numba-cuda supports",
                      f"{what} is not supported by CUDA 12 (needs >= {_cc(CUDA12_MIN_CC)}) or CUDA 13: "
                      "run the course on the simulator (NBKIT_MODE=sim).")
    if driver_report < CUDA12_MIN_DRIVER_REPORT:
        return Choice("cu12", f"the driver supports only CUDA {cuda_version(driver_report)}",
                      f"the NVIDIA driver supports only CUDA {cuda_version(driver_report)}; numba-cuda needs CUDA 12 "
                      f"(driver >= {CUDA12_MIN_DRIVER}) or 13 (>= {CUDA13_MIN_DRIVER}). Update the driver; until then "
                      "use the simulator (NBKIT_MODE=sim).")
    if driver_report < CUDA13_MIN_DRIVER_REPORT:
        return Choice("cu12", f"{what}, driver supports CUDA {cuda_version(driver_report)} "
                              f"(CUDA 13 needs driver >= {CUDA13_MIN_DRIVER})")
    if oldest < CUDA13_MIN_CC:
        return Choice("cu12", f"{what}: CUDA 13 supports compute capability >= {_cc(CUDA13_MIN_CC)}, CUDA 12 does")
    return Choice("cu13", f"{what}, driver supports CUDA {cuda_version(driver_report)}")


def choose_for(probe: Probe, forced: str | None = None) -> Choice:
    return choose_extra(probe.driver_version, probe.compute_capabilities if probe.usable else (),
                        probe.device_names, forced)


# --- The doctor's check of the installed toolkit -------------------------------------------------------------------
def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_toolkit_major() -> int | None:
    """CUDA major version numba-cuda is set up for: that of cuda-bindings (12.x or 13.x), None without it."""
    version = _installed("cuda-bindings")
    return int(version.split(".")[0]) if version else None


def switch_to_cu12_command(python: str, in_course_venv: bool, installed: dict[str, str | None] | None = None) -> str:
    """The exact command that replaces numba-cuda's CUDA 13 set-up with CUDA 12 in this environment."""
    if in_course_venv:
        return f"bash course.sh setup   (or {FORCE_VAR}=cu12 bash course.sh setup): it rebuilds the environment for CUDA 12"
    installed = installed if installed is not None else {name: _installed(name) for name in CUDA13_TOOLKIT_WHEELS}
    remove = [name for name, version in installed.items() if version and version.split(".")[0] == "13"]
    install = f'{python} -m pip install "{NUMBA_CUDA_REQ.format(extra="cu12")}"'
    return (f"{python} -m pip uninstall -y {' '.join(remove)} && {install}" if remove else install)


def gpu_blocker(probe: Probe, toolkit_major: int | None) -> str | None:
    """Why numba-cuda cannot run kernels on this machine's GPUs, or None where it can (or where nothing is known).

    Used by :mod:`nbkit.core.mode`, which falls back to the simulator in auto mode rather than pick a GPU that
    fails at the first launch. ``toolkit_major``: :func:`installed_toolkit_major` (None: not known).
    """
    if not probe.usable:
        return None
    report = probe.driver_version
    if probe.compute_capabilities and min(probe.compute_capabilities) < CUDA12_MIN_CC:
        return (f"compute capability {_cc(min(probe.compute_capabilities))} is older than any CUDA toolkit "
                f"numba-cuda supports (>= {_cc(CUDA12_MIN_CC)})")
    if report is not None and report < CUDA12_MIN_DRIVER_REPORT:
        return (f"the NVIDIA driver supports only CUDA {cuda_version(report)}; numba-cuda needs driver >= "
                f"{CUDA12_MIN_DRIVER} (CUDA 12)")
    if toolkit_major is not None and toolkit_major >= 13:
        if report is not None and report < CUDA13_MIN_DRIVER_REPORT:
            return (f"numba-cuda is installed for CUDA {toolkit_major}, which needs driver >= {CUDA13_MIN_DRIVER}; "
                    f"this driver supports CUDA {cuda_version(report)}")
        if probe.compute_capabilities and min(probe.compute_capabilities) < CUDA13_MIN_CC:
            return (f"numba-cuda is installed for CUDA {toolkit_major}, which supports compute capability >= "
                    f"{_cc(CUDA13_MIN_CC)}; this GPU has {_cc(min(probe.compute_capabilities))}")
    return None


def diagnose(probe: Probe, toolkit_major: int | None, python: str = "python",
             in_course_venv: bool = False, installed: dict[str, str | None] | None = None) -> list[str]:
    """Each mismatch between driver, GPUs and installed CUDA toolkit, with the command that fixes it."""
    if not probe.usable or not probe.compute_capabilities:
        return []
    problems = []
    report = probe.driver_version or 0
    oldest = min(probe.compute_capabilities)
    names = probe.device_names if len(probe.device_names) == len(probe.compute_capabilities) else ()
    gpu = names[probe.compute_capabilities.index(oldest)] if names else "the GPU"
    if oldest < CUDA12_MIN_CC:
        problems.append(f"{gpu} has compute capability {_cc(oldest)}; numba-cuda needs >= {_cc(CUDA12_MIN_CC)} "
                        "(CUDA 12). Fix: use the simulator: NBKIT_MODE=sim (set it before starting Python).")
        return problems
    if toolkit_major is None:
        if sys.platform.startswith("linux") or sys.platform.startswith("win"):
            extra = choose_for(probe).extra
            problems.append(f"numba-cuda's CUDA libraries (cuda-bindings) are not installed. Fix: "
                            f'{python} -m pip install "{NUMBA_CUDA_REQ.format(extra=extra)}"')
        return problems
    if report < CUDA12_MIN_DRIVER_REPORT:
        problems.append(f"the NVIDIA driver supports only CUDA {cuda_version(report)}; numba-cuda needs CUDA 12 "
                        f"(driver >= {CUDA12_MIN_DRIVER}) or 13 (driver >= {CUDA13_MIN_DRIVER}). Fix: update the "
                        "NVIDIA driver (https://www.nvidia.com/drivers); until then NBKIT_MODE=sim.")
        return problems
    if toolkit_major >= 13 and report < CUDA13_MIN_DRIVER_REPORT:
        problems.append(f"numba-cuda is set up for CUDA {toolkit_major}, which needs driver >= {CUDA13_MIN_DRIVER}, "
                        f"but this driver supports CUDA {cuda_version(report)}. Fix: "
                        + switch_to_cu12_command(python, in_course_venv, installed))
    if toolkit_major >= 13 and oldest < CUDA13_MIN_CC:
        problems.append(f"{gpu} has compute capability {_cc(oldest)}; CUDA {toolkit_major} supports "
                        f">= {_cc(CUDA13_MIN_CC)}. Fix: " + switch_to_cu12_command(python, in_course_venv, installed))
    return problems


# --- PyTorch's CUDA, paired with the driver as numba-cuda's is ------------------------------------------------------
def torch_cuda_blocker(torch_cuda: str | None, cuda_available: bool, arch_list: Sequence[str],
                       capability: tuple[int, int] | None, driver_report: int | None) -> str | None:
    """Why PyTorch cannot run on this GPU (None where it can): asked of torch, not assumed from numba's GPU.

    ``torch_cuda``: ``torch.version.cuda`` (None for a CPU build); ``cuda_available``:
    ``torch.cuda.is_available()``; ``arch_list``: ``torch.cuda.get_arch_list()`` (the sm_XY it was compiled for);
    ``capability``: the GPU's compute capability. The driver rules are the CUDA toolkit's, as for numba-cuda.
    """
    if torch_cuda is None:
        return "this PyTorch is a CPU build (torch.version.cuda is None)"
    major = int(torch_cuda.split(".")[0])
    need = CUDA13_MIN_DRIVER_REPORT if major >= 13 else CUDA12_MIN_DRIVER_REPORT
    if driver_report is not None and driver_report < need:
        return (f"PyTorch is built for CUDA {torch_cuda}, which needs driver >= "
                f"{CUDA13_MIN_DRIVER if major >= 13 else CUDA12_MIN_DRIVER}; this driver supports CUDA "
                f"{cuda_version(driver_report)}")
    if capability is not None and arch_list:
        sm = [tuple(divmod(int(a.split("_")[1]), 10)) for a in arch_list if a.startswith("sm_") and a[3:].isdigit()]
        ptx = [tuple(divmod(int(a.split("_")[1]), 10)) for a in arch_list
               if a.startswith("compute_") and a[8:].isdigit()]
        # a cubin runs on its own major at an equal or higher minor; PTX is JIT-compiled for any newer GPU
        if not any(m == capability[0] and n <= capability[1] for m, n in sm) and not any(p <= capability for p in ptx):
            return (f"PyTorch {torch_cuda} was not compiled for compute capability {_cc(capability)} "
                    f"(it has {', '.join(arch_list)})")
    if not cuda_available:
        return f"torch.cuda.is_available() is False (PyTorch built for CUDA {torch_cuda})"
    return None
