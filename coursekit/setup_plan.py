"""What ``course.sh`` installs on this machine, decided before the environment has numba.

Run as a file with any Python >= 3.10 (standard library and ctypes only; ``nbkit/__init__`` would import
numba, so this is never run as ``python -m coursekit.setup_plan``)::

    python3 coursekit/setup_plan.py extra          # cu12 or cu13: the numba-cuda extra for this driver and GPU
    python3 coursekit/setup_plan.py torch-req      # torch==X.Y.Z: the pin in pyproject.toml's [tool.nbkit]
    python3 coursekit/setup_plan.py torch-args PY TORCH      # pip arguments for TORCH (e.g. torch==2.13.0)
    python3 coursekit/setup_plan.py state VENV EXTRA TORCH   # current | new | changed | switch
    python3 coursekit/setup_plan.py mark VENV EXTRA TORCH    # record a finished install

``nbkit.doctor()`` uses :func:`diagnose` to name a driver/GPU/toolkit mismatch with the command that fixes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: coursekit/ heads sys.path; keep its modules from shadowing the standard library
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from typing import Sequence

if __package__:
    from nbkit.core.mode import GpuProbe, probe_gpu
else:  # load nbkit/core/mode.py (standard library only) without running nbkit/__init__.py
    _mode_path = Path(__file__).resolve().parent.parent / "nbkit" / "core" / "mode.py"
    _spec = importlib.util.spec_from_file_location("_nbkit_mode", _mode_path)
    _mode = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _mode  # dataclasses look their module up in sys.modules
    _spec.loader.exec_module(_mode)
    GpuProbe, probe_gpu = _mode.GpuProbe, _mode.probe_gpu

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

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pinned_torch(pyproject_text: str) -> str:
    """``torch==X.Y.Z`` from pyproject.toml's ``[tool.nbkit] torch = "X.Y.Z"``, the one place torch is pinned.

    Read with a regular expression, not tomllib: this file runs before anything is installed, on Python 3.10 too.
    """
    table = re.search(r"^\[tool\.nbkit\][ \t]*$(.*?)(?=^\[|\Z)", pyproject_text, re.M | re.S)
    version = table and re.search(r'^torch[ \t]*=[ \t]*"([^"]+)"', table.group(1), re.M)
    if not version:
        raise ValueError('pyproject.toml has no [tool.nbkit] table with torch = "X.Y.Z" (the torch course.sh installs)')
    return f"torch=={version.group(1)}"
STAMP = "nbkit-setup.json"  # in the virtual environment: what was installed, from which pyproject.toml
ROOT = Path(__file__).resolve().parent.parent


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


def choose_for(probe: GpuProbe, forced: str | None = None) -> Choice:
    return choose_extra(probe.driver_version, probe.compute_capabilities if probe.usable else (),
                        probe.device_names, forced)


# --- PyTorch ----------------------------------------------------------------------------------------------------
def torch_index(system: str, gpu_usable: bool) -> str | None:
    """PyTorch's CPU-only index on Linux without a GPU (PyPI's Linux torch bundles GBs of CUDA libraries)."""
    return TORCH_CPU_INDEX if system == "Linux" and not gpu_usable else None


def _listed_versions(pip_index_output: str) -> list[str]:
    for line in pip_index_output.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
    return []


def index_serves(pip_index_output: str, version: str) -> bool:
    """Does `pip index versions` output list ``version`` (a local label such as +cpu allowed)?"""
    return any(v == version or v.startswith(version + "+") for v in _listed_versions(pip_index_output))


_PROBE_KEEPS = ("proxy", "cert", "client-cert", "trusted-host")  # pip settings the probe needs to reach an index


def _pip_network_options(python: str) -> list[str]:
    """The learner's pip.conf proxy/certificate settings, as command-line options (the probe skips pip.conf)."""
    try:
        listing = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    options = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if key.startswith(":env:") or name not in _PROBE_KEEPS:
            continue  # PIP_* environment variables still reach the probe by themselves
        for item in value.strip().strip("'\"").split():
            options += [f"--{name}", item]
    return options


def probe_index(python: str, url: str, version: str, timeout_s: int = 5) -> tuple[bool, str]:
    """Ask pip whether ``url`` serves torch ``version`` for this Python, with short timeouts and no retries.

    Only that index is asked: pip.conf (whose find-links or extra index URLs would answer instead) is
    skipped, its proxy and certificate settings passed on.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL")}
    command = [python, "-m", "pip", "index", "versions", "torch", "--index-url", url,
               "--timeout", str(timeout_s), "--retries", "0", *_pip_network_options(python)]
    env["PIP_CONFIG_FILE"] = os.devnull
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if index_serves(result.stdout, version):
        return True, ""
    last = (result.stderr.strip().splitlines() or ["no answer"])[-1].removeprefix("ERROR: ")
    return False, f"pip: {last}; offline or blocked?" if result.returncode else f"torch {version} not listed for this Python"


def torch_pip_args(python: str, requirement: str, system: str, gpu_usable: bool) -> tuple[list[str], str]:
    """pip arguments for installing ``requirement`` (e.g. torch==2.13.0) and a message saying where it comes from."""
    url = torch_index(system, gpu_usable)
    if url is None:
        why = "a GPU is present" if gpu_usable else f"{system} has no CUDA build on PyPI"
        return [], f"{requirement} from the default index ({why})"
    version = requirement.split("==", 1)[1] if "==" in requirement else ""
    ok, detail = probe_index(python, url, version) if version else (False, "no pinned version to look for")
    if ok:
        return ["--index-url", url], f"{requirement}, CPU-only build (no GPU here), from {url}"
    return [], (f"PyTorch's CPU index {url} did not offer {requirement} ({detail}): falling back to the default "
                "index, which may download a CUDA build of several GB")


# --- Re-install only when something changed ----------------------------------------------------------------------
def fingerprint(pyproject_text: str, *keys: str) -> str:
    """Hash of pyproject.toml and the choices (extra, torch pin): a new value means install again."""
    digest = hashlib.sha256(pyproject_text.encode())
    for key in keys:
        digest.update(b"\0" + key.encode())
    return digest.hexdigest()


def read_stamp(venv: Path) -> dict:
    try:
        return json.loads((Path(venv) / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def install_state(venv: Path, pyproject_text: str, extra: str, torch_requirement: str) -> str:
    """'current' (nothing to do), 'new' (never installed), 'changed' (install again), 'switch' (other CUDA extra)."""
    stamp = read_stamp(venv)
    if not stamp:
        # Environments made before the stamp existed always got CUDA 13: one whose extra must now be cu12 starts again.
        old_cu13 = any(Path(venv).glob("lib/python*/site-packages/cuda_bindings-13*.dist-info"))
        return "switch" if extra == "cu12" and old_cu13 else "new"
    if stamp.get("extra") != extra:
        return "switch"
    return "current" if stamp.get("fingerprint") == fingerprint(pyproject_text, extra, torch_requirement) else "changed"


def mark_installed(venv: Path, pyproject_text: str, extra: str, torch_requirement: str) -> None:
    stamp = {"fingerprint": fingerprint(pyproject_text, extra, torch_requirement), "extra": extra,
             "torch": torch_requirement}
    (Path(venv) / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")


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


def diagnose(probe: GpuProbe, toolkit_major: int | None, python: str = "python",
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


# --- Command line (used by course.sh) ----------------------------------------------------------------------------
def main(argv: Sequence[str], probe: GpuProbe | None = None) -> int:
    usage = __doc__.split("::", 1)[1].split("``nbkit.core.doctor", 1)[0].rstrip()
    if not argv or argv[0] not in ("extra", "torch-req", "torch-args", "state", "mark"):
        print(f"usage:{usage}", file=sys.stderr)
        return 2
    if list(argv) == ["torch-req"]:  # before the GPU probe: the pin is the same on every machine
        print(pinned_torch((ROOT / "pyproject.toml").read_text()))
        return 0
    probe = probe if probe is not None else probe_gpu()
    command, args = argv[0], list(argv[1:])
    if command == "extra":
        try:
            choice = choose_for(probe, os.environ.get(FORCE_VAR, "").strip().lower() or None)
        except ValueError as exc:
            print(f"course.sh: {exc}", file=sys.stderr)
            return 2
        print(f"course.sh: numba-cuda[{choice.extra}]: {choice.reason}", file=sys.stderr)
        if choice.warning:
            print(f"course.sh: WARNING: {choice.warning}", file=sys.stderr)
        print(choice.extra)
        return 0
    if command == "torch-args" and len(args) == 2:
        pip_args, message = torch_pip_args(args[0], args[1], platform.system(), probe.usable)
        print(f"course.sh: {message}", file=sys.stderr)
        print(" ".join(pip_args))
        return 0
    if command in ("state", "mark") and len(args) == 3:
        venv, extra, torch_requirement = Path(args[0]), args[1], args[2]
        text = (ROOT / "pyproject.toml").read_text()
        if command == "state":
            print(install_state(venv, text, extra, torch_requirement))
        else:
            mark_installed(venv, text, extra, torch_requirement)
        return 0
    print(f"usage:{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
