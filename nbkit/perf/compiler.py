"""numba-cuda's CUDA compiler, used without a GPU: is it installed, compile to PTX, run in GPU mode.

``numba.cuda.compile_ptx`` runs the whole CUDA compiler (NVVM) on the CPU, but only in numba's real CUDA
target, and numba fixes its target (GPU or simulator) once per process. Code running in the simulator
therefore compiles in a fresh process started by :func:`run_in_gpu_mode`. :mod:`nbkit.perf.ptx` (rules
about the PTX) and :mod:`nbkit.perf.cubin` (PTX to machine code) both build on this module.

:func:`compile_kernel` compiles a learner's kernel as a GPU would, in every mode: in GPU mode in this process,
in the simulator in one long-lived GPU-mode worker process per session (started on first use), sent the
kernel's whole closure (:mod:`nbkit.perf.closure`); results are cached per closure and signature, in memory and
on disk (:mod:`nbkit.core.diskcache`: a later process does not compile the same kernel again). A refusal
becomes one line naming the learner's line and the compiler's reason (:func:`compile_error`).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import json
import linecache
import os
import queue
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from nbkit.core import diskcache
from nbkit.core.hw import Arch, compute_capability
from nbkit.core.mode import MODE

_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the directory that holds the nbkit package


def compiler_missing() -> str | None:
    """Why numba-cuda's CUDA compiler cannot be used here, or None when it is installed."""
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda (with its CUDA compiler) is not installed here, e.g. on macOS"
    return None


def run_in_gpu_mode(args: Sequence[str], *, input: str | None = None, capture: bool = True,  # noqa: A002 - as in subprocess.run
                    timeout: float | None = None, path: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a fresh process with ``NBKIT_MODE=gpu``, where numba's real CUDA target (and its
    compiler) is active; no GPU is needed to compile.

    The child finds the same modules as this process (nbkit's directory, then ``path``, then this
    ``sys.path``), so kernels from a notebook's own modules can be compiled too. ``capture=False``
    lets its output through to this process's terminal. Raises ``subprocess.TimeoutExpired`` after ``timeout``.
    """
    return subprocess.run([sys.executable, *args], input=input, capture_output=capture, text=True,
                          env=_gpu_mode_env(path), timeout=timeout)


def _gpu_mode_env(path: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment for a child in GPU mode that finds the same modules."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NBKIT_MODE"] = "gpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, *path, *sys.path, env.get("PYTHONPATH", "")) if p)
    return env


@functools.lru_cache(maxsize=None)
def compile_ptx(py_func: Callable, signature: str, cc: Arch, device: bool = False) -> str:
    """PTX text for one kernel and one signature, compiled for ``cc`` (e.g. ``"sm_80"``), as
    ``numba.cuda.compile_ptx`` makes it.

    Cached per process and on disk (:func:`_ptx_entry`: a later process, a test worker or a notebook, reads it).
    A kernel is type-inferred and lowered to LLVM IR once for all the architectures asked for, and only NVVM
    runs per architecture (:func:`_ptx_from_one_lowering`); that is two thirds of the compile time saved for
    three architectures.
    """
    from numba import cuda

    if MODE.is_simulator:
        raise RuntimeError("PTX needs the real CUDA target; the simulator is active. "
                           "Run in a fresh process with NBKIT_MODE=gpu (no GPU is needed to compile): "
                           "nbkit.perf.compiler.run_in_gpu_mode does that.")
    entry = _ptx_entry(py_func, signature, cc, device)
    stored = _stored_ptx(entry)
    if stored is not None:
        return stored
    ptx = _ptx_from_one_lowering(py_func, signature, compute_capability(cc), device)
    if ptx is None:
        ptx, _ = cuda.compile_ptx(py_func, signature, device=device, cc=compute_capability(cc))
    if entry is not None:
        diskcache.write_json(entry, {"ptx": ptx})
    return ptx


def stored_ptx(py_func: Callable, signature: str, cc: Arch, device: bool = False) -> str | None:
    """The PTX :func:`compile_ptx` made earlier for these arguments (in any process), read from disk without
    compiling, in any mode; None when there is none."""
    return _stored_ptx(_ptx_entry(py_func, signature, cc, device))


def _stored_ptx(entry: Path | None) -> str | None:
    stored = diskcache.read_json(entry) if entry is not None else None
    return stored["ptx"] if isinstance(stored, dict) and isinstance(stored.get("ptx"), str) else None


def _ptx_entry(py_func: Callable, signature: str, cc: Arch, device: bool) -> Path | None:
    """Where the PTX of this function, signature and architecture is stored, or None (no cache, or a function
    whose closure cannot be read). The name covers everything the PTX depends on: the function's closure (its
    source and every value and function it refers to, :func:`nbkit.perf.closure.kernel_closure`), its module and
    name (they are in the PTX's symbol names), the signature, the architecture, numba's settings and the versions
    of this module and of the compiler (:func:`_compiler_version`)."""
    from numba.cuda import config

    from nbkit.core.hw import sm_name
    from nbkit.perf.closure import NotShippable, kernel_closure

    folder = diskcache.cache_dir("ptx")
    if folder is None:
        return None
    try:
        closure = json.dumps(kernel_closure(py_func), sort_keys=True)
    except NotShippable:
        return None
    key = diskcache.digest("compile_ptx", _compiler_version(), *_numba_settings(), repr(config.OPT),
                           repr(config.CUDA_DEBUGINFO_DEFAULT), closure, py_func.__module__, py_func.__qualname__,
                           repr(py_func.__defaults__), signature, sm_name(cc), repr(bool(device)))
    return folder / f"{key}.json"


# numba-cuda versions whose lowering (Python to LLVM IR) has been read for what depends on the architecture, and
# the compute capabilities at which it changes. 0.30.4: a float64 atomic add from 6.0 (nvvmutils.py) and
# tanh.approx under fastmath from 7.5 (mathimpl.py); nothing else reads it, apart from the compile flags that
# numba writes into every symbol name as an ABI tag. A version not listed compiles each architecture on its own.
LOWERING_CHANGES_AT: dict[str, tuple[tuple[int, int], ...]] = {"0.30.4": ((6, 0), (7, 5))}

_lowerings: dict[tuple, tuple | None] = {}  # (function, signature, device, side of the thresholds) -> a lowering


def _ptx_from_one_lowering(py_func: Callable, signature: str, cc: tuple[int, int], device: bool) -> str | None:
    """The PTX ``numba.cuda.compile_ptx(py_func, signature, device=device, cc=cc)`` gives, made from a lowering
    this process already did for another architecture (or does now, for this one), or None where that is not
    known to give the same PTX (then the caller compiles with ``numba.cuda.compile_ptx``).

    The one place that uses numba-cuda's internals (0.30.4): ``_compile_pyfunc_with_fixup`` (what
    ``compile_ptx`` runs before NVVM), the code library's LLVM IR and NVVM options, ``nvvm.compile_ir``, and
    the flags ABI tag (``CUDAFlags.demangle``). The IR of the other architecture differs only in that tag, which
    names the architecture: it is rewritten to what the compile for ``cc`` writes, so the PTX is the same text.
    Only numba's counters in names are those of the first lowering: the ``v<N>`` tag (compiles so far in this
    process) and the N of ``_cudapy_smem_N`` (shared arrays so far); two calls of ``compile_ptx`` differ in them
    too. tests/test_ptx.py compares the two paths.
    """
    import numba_cuda
    from numba.cuda.compiler import _compile_pyfunc_with_fixup
    from numba.cuda.core.compiler_lock import global_compiler_lock
    from numba.cuda.cudadrv import nvrtc, nvvm
    from numba.cuda.itanium_mangler import mangle_abi_tag

    changes = LOWERING_CHANGES_AT.get(getattr(numba_cuda, "__version__", ""))
    if changes is None:
        return None
    key = (py_func, signature, bool(device), tuple(cc >= at for at in changes))
    with global_compiler_lock:
        if key not in _lowerings:
            try:
                library, _ = _compile_pyfunc_with_fixup(py_func, signature, device=device, cc=cc, abi="numba")
                tags = _flags_tags(library.get_llvm_str(), cc)
            except Exception:  # noqa: BLE001 - numba_cuda.compile_ptx then gives the error, or the PTX
                library = tags = None
            plain = library is not None and tags is not None and not library._linking_libraries \
                and not library._linking_files and "g" not in library._nvvm_options
            _lowerings[key] = (library, cc, tags) if plain else None
        lowering = _lowerings[key]
        if lowering is None:
            return None
        library, lowered_for, tags = lowering
        if cc == lowered_for:
            codes = library.get_asm_strs(cc=cc)
            return codes[0] if len(codes) == 1 else None
        renamed = []
        for ir in library.llvm_strs:
            for mangled, summary in tags.items():
                summary = summary.replace(f"compute_capability={lowered_for!r}", f"compute_capability={cc!r}")
                ir = ir.replace(mangled, mangle_abi_tag(_flags_tag(summary)))
            renamed.append(ir)
        options = {**library._nvvm_options, "arch": nvrtc.get_arch_option(*cc)}
        return nvvm.compile_ir(renamed, **options).decode().strip("\x00").strip()


def _flags_tags(ir: str, cc: tuple[int, int]) -> dict[str, str] | None:
    """Each flags ABI tag in the IR's symbol names (as mangled), with the compile flags it encodes; None when
    one cannot be read back into exactly the same tag, or does not name ``cc`` once."""
    from numba.cuda.flags import CUDAFlags
    from numba.cuda.itanium_mangler import mangle_abi_tag

    tags: dict[str, str] = {}
    for found in re.finditer(r"B\d+v\d+B(\d+)", ir):  # the count tag v<N>, then the flags tag
        mangled = ir[found.start(1) - 1:found.end() + int(found.group(1))]
        if mangled not in tags:
            summary = CUDAFlags.demangle(mangled[1 + len(found.group(1)):])
            if summary.count(f"compute_capability={cc!r}") != 1 or mangle_abi_tag(_flags_tag(summary)) != mangled:
                return None
            tags[mangled] = summary
    return tags or None


def _flags_tag(summary: str) -> str:
    """The ABI tag numba makes of compile flags whose summary is ``summary`` (``Flags.get_mangle_string``)."""
    import base64
    import zlib

    from numba.cuda.flags import CUDAFlags

    compressor = zlib.compressobj(zdict=CUDAFlags._make_compression_dictionary(), level=zlib.Z_BEST_COMPRESSION,
                                  **CUDAFlags._ZLIB_CONFIG)
    return base64.b64encode(compressor.compress(summary.encode()) + compressor.flush()).decode()


# --------------------------------------------------------------------------------------------------
# a learner's kernel, compiled as a GPU would compile it

NO_COMPILER = "numba-cuda's compiler is not installed"  # why nothing is compiled (KernelCompile.skipped)
CHECK_CC: Arch = "sm_75"  # the architecture checks compile for (any would do: the PTX rules do not depend on it)
COMPILE_TIMEOUT_S = 180.0  # one compile; the first one in a session also waits for the worker to start


@dataclass(frozen=True)
class KernelCompile:
    """What numba-cuda's compiler made of a kernel: its PTX, or why it refused, or why it was not asked."""

    ptx: str | None = None  # the PTX text, when it compiled
    error: str | None = None  # the compiler refused: one line, the learner's line and the reason
    skipped: str | None = None  # not compiled (no compiler here, something could not be sent): why, one line


@functools.lru_cache(maxsize=None)
def _numba_dirs() -> tuple[str, ...]:
    """The folders of numba, numba-cuda and llvmlite: code there is the compiler's, not the learner's."""
    specs = (importlib.util.find_spec(name) for name in ("numba", "numba_cuda", "llvmlite"))
    return tuple(str(Path(spec.origin).resolve().parent) for spec in specs if spec is not None and spec.origin)


def _learners(filename: str) -> bool:
    """Whether a file name is the learner's code (a cell, a module), not numba's own."""
    path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return not path.startswith(_numba_dirs())


def _error_location(exc: BaseException) -> tuple[str, int] | None:
    """(file, line) in the learner's code where the compiler stopped: its message, else its traceback's frames."""
    for found in reversed(re.findall(r'File "([^"]+)", line (\d+)', str(exc))):
        name = found[0]
        matches = sorted((f for f in list(linecache.cache) if (f == name or f.endswith(os.sep + os.path.basename(name)))
                          and _learners(f)), key=lambda f: f != name)  # the file itself before its namesakes
        if matches:
            return matches[0], int(found[1])
    best = None
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the frames (deepest last) of each chained exception
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            for name in ("self", "inst", "stmt", "expr", "loc"):
                value = tb.tb_frame.f_locals.get(name)
                try:
                    loc = value if hasattr(value, "filename") and hasattr(value, "line") else getattr(value, "loc", None)
                    filename, line = getattr(loc, "filename", None), getattr(loc, "line", None)
                except Exception:  # noqa: BLE001, S112 - an object whose attributes raise holds no location
                    continue
                if isinstance(filename, str) and isinstance(line, int) and _learners(filename):
                    best = (filename, line)
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return best


_FUNCTION = re.compile(r"Function\(<(?:built-in )?function ([\w.]+)(?: at 0x[0-9a-f]+)?>\)")


def _first_argument(call: str) -> str:
    """The first argument type of a call written as ``name(type, type, ...)``."""
    text, depth = call[call.find("(") + 1:], 0
    for k, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if depth < 0 or (char == "," and depth == 0):
            return text[:k]
    return text


def _error_reason(exc: BaseException) -> str:
    """The first meaningful line of the compiler's message, made readable."""
    lines = [line.strip() for line in str(exc).splitlines()]
    reason = ""
    for k, line in enumerate(lines):
        if not line or line.startswith(("Failed in", "During:", "<source elided>", "- Of which")):
            continue
        if line.startswith("File "):
            break
        reason = line
        function = _FUNCTION.search(line)
        if function and "found for signature" in line:
            call = next((s[3:].strip() for s in lines[k + 1:] if s.startswith(">>>")), "")
            name = function.group(1)
            name = "cuda." + name if name.split(".")[0] in ("shared", "local", "const") else name
            reason = f"no version of {name} accepts the argument types {call[call.find('('):]}"
            if name in ("getitem", "setitem") and re.match(r"\w+\((float|int|uint|bool)\w*,", call):
                reason += ": a number is indexed like an array (are the parameters in the order the caller passes them?)"
            if name in ("cuda.shared.array", "cuda.local.array") and "int" in re.sub(
                    r"Literal\[int\]\(\d+\)", "", _first_argument(call)):  # a size known only at launch
                reason += (": the shape of a shared or local array must be a compile-time constant (a number, or a "
                           "module-level constant), not a value known only at launch such as cuda.blockDim.x")
        if reason.startswith("Untyped global name") and "<class 'function'>" in reason:
            reason += (": a kernel can call only device functions: decorate the function with "
                       "@cuda.jit(device=True)")
        break
    reason = reason or type(exc).__name__
    return reason if len(reason) <= 400 else reason[:397] + "..."


def compile_error(exc: BaseException) -> str:
    """One line for a compile (or launch) error: the learner's line, if it can be told, and the compiler's reason."""
    reason = _error_reason(exc)
    where = _error_location(exc)
    if where is None:
        return reason
    filename, line = where
    code = linecache.getline(filename, line).strip()
    function = next((m.group(1) for k in range(line, 0, -1)
                     if (m := re.match(r"\s*def (\w+)\(", linecache.getline(filename, k)))), None)
    place = f"line {line}" + (f" of {function}" if function else "") + (f", `{code}`" if code else "")
    return f"{place}: {reason}"


def _unreadable(signature: str) -> str | None:
    """Why numba cannot read ``signature`` (a check's mistake, not the learner's), or None."""
    sigutils = importlib.import_module("numba.core.sigutils")
    try:
        sigutils.normalize_signature(signature)
    except Exception as exc:  # noqa: BLE001 - any failure to read it means the same: not compiled
        return f"numba cannot read the signature {signature} ({type(exc).__name__}: {exc})"
    return None


def compile_request(request: dict) -> dict:
    """The compile worker's job for one request (run in GPU mode): rebuild the closure, compile, answer as a dict.

    Without a GPU, numba-cuda still asks the device for its compute capability when a kernel calls a device
    function; the worker answers for it with the request's architecture (only in a process without a driver).
    """
    from numba import cuda

    from nbkit.perf.closure import rebuild

    cc = tuple(request["cc"])
    if not cuda.is_available():
        dispatcher = importlib.import_module("numba.cuda.dispatcher")

        class _Architecture:  # what a kernel's compile asks of "the current device" without a GPU
            compute_capability = cc

        dispatcher.get_current_device = _Architecture
    unreadable = _unreadable(request["signature"])
    if unreadable:
        return {"skipped": unreadable}
    try:
        fn = rebuild(request["closure"])
    except Exception as exc:  # noqa: BLE001 - not the learner's mistake: said as "not checked"
        return {"skipped": f"the kernel could not be rebuilt for the compiler ({type(exc).__name__}: {exc})"}
    try:
        return {"ptx": cuda.compile_ptx(fn, request["signature"], cc=cc)[0]}
    except Exception as exc:  # noqa: BLE001 - every refusal of the compiler becomes the learner's verdict
        return {"error": compile_error(exc)}


_WORKER = r"""
import json, sys
import nbkit
from numba import cuda
from nbkit.perf.compiler import compile_request
def warm_up(x):  # loads the compiler (NVVM) before the first request: the check's launches run meanwhile
    x[0] = 1
cuda.compile_ptx(warm_up, "void(float32[::1])", cc=(7, 5))
for line in sys.stdin:
    answer = compile_request(json.loads(line))
    sys.stdout.write("nbkit-compile " + json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


class _Worker:
    """One GPU-mode process that compiles requests, one JSON line each, for the whole session."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=_gpu_mode_env(), bufsize=1)
        self.answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith("nbkit-compile "):
                self.answers.put(line[len("nbkit-compile "):])
        self.answers.put(None)  # the process ended

    def ask(self, request: str, timeout: float) -> dict:
        self.proc.stdin.write(request + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        answer = self.answers.get(timeout=timeout)
        if answer is None:
            raise RuntimeError(f"the compiler process stopped (exit code {self.proc.wait()})")
        return json.loads(answer)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_worker: list[_Worker] = []
_lock = threading.Lock()
_compiled: dict[str, KernelCompile] = {}  # simulator: per closure and signature (a hash of the request)
_compiled_here: dict[tuple[object, str], KernelCompile] = {}  # GPU mode: per Python function and signature


def _close_worker() -> None:
    while _worker:
        _worker.pop().close()


atexit.register(_close_worker)


def _started_worker() -> _Worker:
    if not _worker or _worker[0].proc.poll() is not None:
        _close_worker()
        _worker.append(_Worker())
    return _worker[0]


def start_compile_worker(kernel: object = None, signature: str | None = None) -> None:
    """Start the session's compile worker now, without waiting for it (nothing to do in GPU mode or without a
    compiler). A check calls this before its launches, so the worker's start (seconds: numba-cuda and NVVM load)
    overlaps the simulator's run instead of following it. Given the kernel and signature it will compile, nothing
    is started when that result is already cached (in memory or on disk)."""
    if MODE.is_simulator and compiler_missing() is None:
        if kernel is not None and signature is not None and _cached(kernel, signature) is not None:
            return
        if kernel is not None and signature is None and _answered_before(kernel):
            return  # the signature comes with the first launch; the compile, if one is needed, starts the worker
        with _lock:
            _started_worker()


@functools.lru_cache(maxsize=None)
def _compiler_version() -> str:
    """What a compile's answer depends on besides the request: this module and closure.py (the worker's code),
    the installed numba, numba-cuda, llvmlite and CUDA packages (NVVM), and where a CUDA toolkit is looked for."""
    from importlib import metadata

    def compiler_part(d: metadata.Distribution) -> bool:
        # chosen by its folder's name (numba_cuda-0.30.4.dist-info) where it has one, before any metadata file is
        # read: parsing every installed distribution's metadata cost 0.13 s of CPU in every process that compiles
        name = getattr(d, "_normalized_name", None) or d.metadata["Name"] or ""
        return any(w in name.lower() for w in ("numba", "llvmlite", "cuda", "nvvm")) and bool(d.metadata["Name"])

    here = Path(__file__).resolve().parent
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if compiler_part(d))
    toolkit = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(("CUDA_", "NUMBA_CUDA")))
    return "|".join([diskcache.file_digest(here / "compiler.py"), diskcache.file_digest(here / "closure.py"),
                     *dists, *toolkit])


def _request(kernel: object, signature: str) -> str:
    """The worker's request for this kernel and signature (raises ``NotShippable``)."""
    from nbkit.perf.closure import kernel_closure

    return json.dumps({"closure": kernel_closure(kernel), "signature": signature,
                       "cc": compute_capability(CHECK_CC)}, sort_keys=True)


def _disk_entry(request: str) -> Path | None:
    """Where the answer to ``request`` is stored: named by the request without what cannot change the answer
    (:func:`_canonical`), so that the same code checked in another process is not compiled again."""
    folder = diskcache.cache_dir("ptx")
    if folder is None:
        return None
    return folder / f"{diskcache.digest(_compiler_version(), *_numba_settings(), _canonical(request))}.json"


def _canonical(request: str) -> str:
    """The request without its file names and the newlines that end a source: the answer never names a file, and
    the same code has another file name in every process (a notebook cell's file is
    ``/tmp/ipykernel_<pid>/<hash of the cell>.py``, a new folder per session; the course's tests check the same
    cell as ``<mutant 05.1>``, whose last line ends without a newline). What the answer can depend on stays: the
    sources, the values, the line numbers (a refusal names the learner's line) and which functions share a file,
    the files numbered in the order the kernel reaches their functions (breadth first from the kernel)."""
    data = json.loads(request)
    closure = data.get("closure", {})
    functions = closure.get("functions", {})
    order = [closure["root"]] if closure.get("root") in functions else []
    refs: list[str] = []

    def find(spec: object) -> None:  # the functions a global's value refers to, in order
        if isinstance(spec, dict):
            if isinstance(spec.get("fn"), str):
                refs.append(spec["fn"])
            for value in spec.get("tuple", ()):
                find(value)

    for key in order:  # grows while it is read: the kernel, then what it reaches
        for _, spec in sorted(functions[key].get("globals", {}).items()):
            find(spec)
        order += [ref for ref in refs if ref in functions and ref not in order]
        refs.clear()
    order += sorted(set(functions) - set(order))
    name = {key: f"f{k}" for k, key in enumerate(order)}  # a function's name in the request holds its file's
    files: dict[str, int] = {}

    def renamed(spec: object) -> object:
        if isinstance(spec, dict):
            return {k: (name.get(v, v) if k == "fn" else renamed(v)) for k, v in spec.items()}
        if isinstance(spec, list):
            return [renamed(v) for v in spec]
        return spec

    canonical = {}
    for key in order:
        info = {**functions[key], "globals": renamed(functions[key].get("globals", {}))}
        info["file"] = files.setdefault(info.get("file", ""), len(files))
        if isinstance(info.get("source"), str):
            info["source"] = info["source"].rstrip("\n")
        canonical[name[key]] = info
    return json.dumps({**data, "closure": {**closure, "root": name.get(closure.get("root")), "functions": canonical}},
                      sort_keys=True)


def _numba_settings() -> list[str]:
    """numba's settings from the environment, which a compile's answer can depend on (the compile worker inherits
    them): NUMBA_OPT=0 leaves a float32 kernel's PTX with the float64 conversions that optimisation removes, so the
    float32 proof's verdict changes with it. The simulator switch is not one: it decides where a kernel runs."""
    return sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("NUMBA_") and k != "NUMBA_ENABLE_CUDASIM")


def _answered_entry(kernel: object) -> Path | None:
    """Where it is noted that this kernel's code was answered for some signature (in any process), or None: beside
    the answers, named by the code alone (:func:`_canonical`), a suffix of its own."""
    from nbkit.perf.closure import NotShippable, kernel_closure

    folder = diskcache.cache_dir("ptx")
    if folder is None:
        return None
    try:
        request = json.dumps({"closure": kernel_closure(kernel)}, sort_keys=True)
    except NotShippable:
        return None
    return folder / f"{diskcache.digest(_compiler_version(), *_numba_settings(), _canonical(request))}.answered"


def _answered_before(kernel: object) -> bool:
    """Whether this kernel's code was answered before, for any signature: a check without a float32 signature knows
    its own only at its first launch, and would otherwise start a worker (a second of CPU) where the answer is on
    disk, as in every notebook kernel that checks a solution the course's tests checked before."""
    entry = _answered_entry(kernel)
    return entry is not None and diskcache.read_json(entry) is not None


def _cached(kernel: object, signature: str) -> KernelCompile | None:
    """The compile of this kernel and signature, if this process or an earlier one made it; else None."""
    from nbkit.perf.closure import NotShippable

    try:
        request = _request(kernel, signature)
    except NotShippable:
        return None
    key = hashlib.sha256(request.encode()).hexdigest()
    if key not in _compiled:
        entry = _disk_entry(request)
        stored = diskcache.read_json(entry) if entry is not None else None
        if not isinstance(stored, dict) or set(stored) - {"ptx", "error"} or len(stored) != 1:
            return None
        _compiled[key] = KernelCompile(**stored)
    return _compiled[key]


def _ask_worker(request: str, timeout: float) -> dict:
    with _lock:
        _started_worker()
        try:
            return _worker[0].ask(request, timeout)
        except (OSError, RuntimeError, queue.Empty) as exc:
            _close_worker()  # a stuck or dead worker is replaced at the next request
            why = f"compiling took more than {timeout:.0f} s" if isinstance(exc, queue.Empty) else str(exc)
            return {"skipped": why}


def compile_kernel(kernel: object, signature: str, timeout: float = COMPILE_TIMEOUT_S) -> KernelCompile:
    """Compile ``kernel`` for ``signature`` ("void(float32[::1], float32[::1])") with numba-cuda, as a GPU would.

    In GPU mode in this process: the dispatcher's Python function with its own globals (the real device
    dispatchers it calls), through ``cuda.compile_ptx``, cached per function and signature. In the simulator in
    the session's compile worker, sent the kernel's closure (:func:`nbkit.perf.closure.kernel_closure`), cached
    per closure (sources and values) and signature, in memory and on disk: a second check of the same kernel
    costs nothing, in this process or a later one.
    """
    from nbkit.core.source import python_function
    from nbkit.perf.closure import NotShippable

    missing = compiler_missing()
    if missing:
        return KernelCompile(skipped=NO_COMPILER)
    if not MODE.is_simulator:
        from numba import cuda

        unreadable = _unreadable(signature)
        if unreadable:
            return KernelCompile(skipped=unreadable)
        here = (python_function(kernel), signature)
        if here not in _compiled_here:
            try:
                ptx, _ = cuda.compile_ptx(here[0], signature, cc=compute_capability(CHECK_CC))
                _compiled_here[here] = KernelCompile(ptx=ptx)
            except Exception as exc:  # noqa: BLE001 - every refusal of the compiler becomes the learner's verdict
                _compiled_here[here] = KernelCompile(error=compile_error(exc))
        return _compiled_here[here]
    try:
        request = _request(kernel, signature)
    except NotShippable as exc:
        return KernelCompile(skipped=f"it could not be sent to the compiler: {exc}")
    key = hashlib.sha256(request.encode()).hexdigest()
    if key not in _compiled and _cached(kernel, signature) is None:
        answer = _ask_worker(request, timeout)
        result = KernelCompile(**answer)
        if result.skipped is not None:
            return result  # a failure of the machinery, not of the kernel: try again next time
        _compiled[key] = result
        entry = _disk_entry(request)
        if entry is not None:
            diskcache.write_json(entry, answer)
            answered = _answered_entry(kernel)
            if answered is not None:
                diskcache.write_json(answered, {"signature": signature})
    return _compiled[key]
