"""What ``course.sh`` installs on this machine, decided before the environment has numba.

Run as a file with any Python >= 3.10 (standard library and ctypes only; ``nbkit/__init__`` would import
numba, so this is never run as ``python -m coursekit.setup_plan``)::

    python3 coursekit/setup_plan.py extra          # cu12 or cu13: the numba-cuda extra for this driver and GPU
    python3 coursekit/setup_plan.py torch-req      # torch==X.Y.Z: the pin in pyproject.toml's [tool.nbkit]
    python3 coursekit/setup_plan.py torch-args PY TORCH      # pip arguments for TORCH (e.g. torch==2.13.0)
    python3 coursekit/setup_plan.py state VENV EXTRA TORCH   # current | new | changed | switch
    python3 coursekit/setup_plan.py mark VENV EXTRA TORCH    # record a finished install

The CUDA compatibility rules (which extra fits a driver and GPU) live in ``nbkit/core/compat.py``, which this file
loads by its path; the doctor (``nbkit.doctor()``) uses them too. This file keeps the installer's logic: PyTorch's
index, the stamp that says what was installed, the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: coursekit/ heads sys.path; keep its modules from shadowing the standard library
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import hashlib
import importlib.util
import json
import os
import platform
import re
import subprocess
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent

if __package__:
    from nbkit.core import compat
    from nbkit.core.mode import GpuProbe, probe_gpu
else:  # load nbkit/core/mode.py and compat.py (standard library only) without running nbkit/__init__.py
    def _load(name: str):
        spec = importlib.util.spec_from_file_location(f"_nbkit_{name}", ROOT / "nbkit" / "core" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules
        spec.loader.exec_module(module)
        return module

    _mode, compat = _load("mode"), _load("compat")
    GpuProbe, probe_gpu = _mode.GpuProbe, _mode.probe_gpu

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
        return json.loads((Path(venv) / compat.STAMP).read_text())
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
    (Path(venv) / compat.STAMP).write_text(json.dumps(stamp, indent=1) + "\n")


# --- Command line (used by course.sh) ----------------------------------------------------------------------------
def main(argv: Sequence[str], probe: GpuProbe | None = None) -> int:
    usage = __doc__.split("::", 1)[1].split("The CUDA compatibility rules", 1)[0].rstrip()
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
            choice = compat.choose_for(probe, os.environ.get(compat.FORCE_VAR, "").strip().lower() or None)
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
