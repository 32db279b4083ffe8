"""Choose GPU or simulator *before* numba is imported.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when ``numba.cuda`` is first imported, and the choice
cannot be undone in a running process. So this module must not import numba itself: it looks for
a CUDA driver and device with ctypes, decides, sets the variable, and only then lets numba load.

The learner can force a mode with ``NBKIT_MODE=gpu``, ``NBKIT_MODE=sim`` or ``NBKIT_MODE=cpu`` (default
``auto``). ``NBKIT_MODE=gpu`` without a device still selects the real CUDA target: kernels then compile
(e.g. to PTX, see :mod:`nbkit.perf.ptx`) but cannot be launched. ``NBKIT_MODE=cpu`` sets numba up as in
``sim`` (the simulator's device arrays, ``cuda.to_device``, ``cuda.shared``), but kernel launches run as
compiled CPU loops (:mod:`nbkit.core.executor`), falling back to the simulator per kernel where they cannot.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "NBKIT_MODE"
MODES = ("auto", "gpu", "sim", "cpu")


class ModeError(RuntimeError):
    """numba was set up for a different target than the one nbkit must use."""


@dataclass(frozen=True)
class GpuProbe:
    """What the CUDA driver says, asked through ctypes without numba."""

    driver_found: bool
    device_count: int
    driver_version: int | None  # e.g. 13000 for CUDA 13.0
    detail: str
    # One (major, minor) compute capability and one name per device, in device order (set-up checks them).
    compute_capabilities: tuple[tuple[int, int], ...] = ()
    device_names: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return self.driver_found and self.device_count > 0


@dataclass(frozen=True)
class Mode:
    name: str  # "gpu", "sim" or "cpu"
    reason: str
    probe: GpuProbe

    @property
    def is_simulator(self) -> bool:
        """``numba.cuda`` is the CUDA simulator, not the real CUDA target: true in ``sim`` and ``cpu`` mode.

        Code that needs the real target (PTX, GPU timing, CUDA events) checks this.
        """
        return self.name in ("sim", "cpu")

    @property
    def slow_launches(self) -> bool:
        """Every launch runs each CUDA thread as Python code, one after another (``sim`` mode only).

        Code that shrinks work to keep the simulator bearable (fewer blocks, a simpler kernel) checks this, not
        :attr:`is_simulator`: in ``cpu`` mode launches are compiled loops and need no shrinking.
        """
        return self.name == "sim"


def _driver_library_names() -> list[str]:
    if sys.platform.startswith("win"):
        return ["nvcuda.dll"]
    if sys.platform == "darwin":
        return []  # no CUDA driver on current macOS
    return ["libcuda.so.1", "libcuda.so"]


def probe_gpu() -> GpuProbe:
    """Ask the CUDA driver API (cuInit, cuDeviceGetCount) whether a device is present."""
    names = _driver_library_names()
    if not names:
        return GpuProbe(False, 0, None, f"no CUDA driver exists for {sys.platform}")
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return GpuProbe(False, 0, None, "CUDA driver library (libcuda) not found")
    version = ctypes.c_int(0)
    driver_version = None
    try:
        if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
            driver_version = version.value
    except AttributeError:
        pass
    try:
        status = lib.cuInit(0)
        if status != 0:
            return GpuProbe(True, 0, driver_version, f"cuInit failed with CUDA error {status}")
        count = ctypes.c_int(0)
        status = lib.cuDeviceGetCount(ctypes.byref(count))
        if status != 0:
            return GpuProbe(True, 0, driver_version, f"cuDeviceGetCount failed with CUDA error {status}")
    except AttributeError as exc:  # a stub library without the entry points
        return GpuProbe(True, 0, driver_version, f"CUDA driver library is incomplete: {exc}")
    capabilities, names = _describe_devices(lib, count.value)
    return GpuProbe(True, count.value, driver_version, f"{count.value} CUDA device(s) found", capabilities, names)


# CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR in the driver API header cuda.h.
_CC_MAJOR, _CC_MINOR = 75, 76


def _describe_devices(lib: ctypes.CDLL, count: int) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...]]:
    """Compute capability and name of each device (cuDeviceGet, cuDeviceGetAttribute, cuDeviceGetName).

    Devices the driver will not describe are left out rather than guessed.
    """
    capabilities, names = [], []
    try:
        for ordinal in range(count):
            device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
            if lib.cuDeviceGet(ctypes.byref(device), ordinal) != 0:
                continue
            if (lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device) != 0
                    or lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device) != 0):
                continue
            buffer = ctypes.create_string_buffer(256)
            name = buffer.value.decode(errors="replace") if lib.cuDeviceGetName(buffer, 256, device) == 0 else "?"
            capabilities.append((major.value, minor.value))
            names.append(name)
    except AttributeError:  # a stub library without these entry points: describe nothing
        pass
    return tuple(capabilities), tuple(names)


def _loaded_numba_cuda_target() -> str | None:
    """'sim' or 'gpu' if numba.cuda is already imported, else None."""
    module = sys.modules.get("numba.cuda")
    if module is None or not hasattr(module, "jit"):
        return None
    return "sim" if "simulator" in getattr(module.jit, "__module__", "") else "gpu"


def _requested() -> tuple[str, str]:
    raw = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if raw not in MODES:
        raise ModeError(f"{ENV_VAR}={raw!r} is not understood: expected one of {', '.join(MODES)}.")
    if raw != "auto":
        return raw, f"forced by {ENV_VAR}={raw}"
    numba_sim = os.environ.get("NUMBA_ENABLE_CUDASIM")
    if numba_sim is not None and numba_sim.strip() not in ("", "0"):
        return "sim", "forced by NUMBA_ENABLE_CUDASIM=1"
    return "auto", ""


def _compat():
    """:mod:`nbkit.core.compat`, also where this file was loaded by its path before nbkit and numba exist
    (``coursekit/setup_plan.py``): then compat.py is loaded the same way, since importing nbkit would import numba."""
    if __package__:
        from nbkit.core import compat

        return compat
    import importlib.util

    name = "_nbkit_compat"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("compat.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up in sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


def auto_choice(probe: GpuProbe, toolkit_major: int | None) -> tuple[str, str]:
    """``(name, reason)`` in auto mode: the GPU where one is found and the set-up check knows no reason it fails.

    The rules are :func:`nbkit.core.compat.gpu_blocker`'s (too old a GPU or driver, a CUDA 13 toolkit on a GPU or
    driver CUDA 13 does not support): on such a machine the first launch would fail, so auto mode runs the
    simulator and says why. ``NBKIT_MODE=gpu`` still forces the GPU.
    """
    if not probe.usable:
        return "sim", f"auto: {probe.detail}"
    blocker = _compat().gpu_blocker(probe, toolkit_major)
    if blocker:
        return "sim", (f"auto: {probe.detail}, but {blocker}: using the simulator (nbkit.doctor() names the fix; "
                       f"{ENV_VAR}=gpu forces the GPU)")
    return "gpu", f"auto: {probe.detail}"


def select_mode() -> Mode:
    """Decide the mode, set NUMBA_ENABLE_CUDASIM to match, and refuse a numba set up otherwise."""
    requested, reason = _requested()
    probe = probe_gpu()
    if requested == "auto":
        name, reason = auto_choice(probe, _compat().installed_toolkit_major() if probe.usable else None)
        if probe.usable and name == "sim":
            print(f"nbkit: {reason}", file=sys.stderr)  # one line: a GPU is here, and this is why it is not used
    else:
        name = requested

    target = "gpu" if name == "gpu" else "sim"  # cpu mode runs on numba's simulator target too
    loaded = _loaded_numba_cuda_target()
    if loaded is not None and loaded != target:
        wanted = "the CUDA simulator" if target == "sim" else "the real GPU target"
        got = "the CUDA simulator" if loaded == "sim" else "the real GPU target"
        if requested == "auto" and loaded == "sim":
            # The learner chose the simulator by importing numba with NUMBA_ENABLE_CUDASIM=1: honour it.
            return Mode("sim", "numba.cuda was already imported in simulator mode", probe)
        raise ModeError(
            f"numba.cuda was imported before nbkit and is set up for {got}, but nbkit needs {wanted} "
            f"({reason}). Numba fixes this choice at its first import and cannot change it later. "
            "Restart the Python kernel and make `import nbkit` the first import "
            f"(or set {ENV_VAR}=sim / {ENV_VAR}=cpu / {ENV_VAR}=gpu before starting Python)."
        )

    os.environ["NUMBA_ENABLE_CUDASIM"] = "1" if target == "sim" else "0"
    numba_mod = sys.modules.get("numba")
    if numba_mod is not None and loaded is None:
        # numba itself is imported but numba.cuda is not yet: re-read the environment so the choice holds.
        from numba.core import config

        config.reload_config()
    return Mode(name, reason, probe)


MODE: Mode = select_mode()  # decided once, at the first import of nbkit, before anything imports numba.cuda
