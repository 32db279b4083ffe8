"""Compiler facts without a GPU: ptxas's resource report and the SASS of every nbkit kernel.

The PTX that numba produces (see :mod:`nbkit.perf.ptx`) is compiled to a cubin, real machine code for one
architecture, by NVIDIA's nvJitLink library (``cuda.bindings.nvjitlink``, installed with
``numba-cuda[cu13]``); no GPU is needed. With ``-Xptxas=-v`` its info log is ptxas's own report:
registers per thread, spill stores and loads, stack frame, shared and constant memory. Every number
here is read from that report or from the disassembly, never typed in. ``nvdisasm`` from NVIDIA's
PyPI wheel ``nvidia-cuda-nvdisasm`` turns the cubin into SASS, which is counted by instruction class,
over the whole kernel and per pass of each loop (a loop is found by its backward branch).

Compiling needs numba's real CUDA target. In simulator mode :func:`build` runs one fresh process with
``NBKIT_MODE=gpu`` for all the kernels asked for at once, and caches the results for this process; the PTX,
the cubins (with ptxas's reports) and the SASS are also kept on disk (:mod:`nbkit.core.diskcache`), so a later
process (a test worker, a notebook) does not compile or disassemble the same code again.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nbkit.core import diskcache
from nbkit.core.hw import ARCHS, sm_name
from nbkit.core.mode import MODE
from nbkit.core.registry import KernelSpec
from nbkit.kernels import all_kernels
from nbkit.perf.compiler import _compiler_version, compile_ptx, run_in_gpu_mode, stored_ptx


class ToolMissing(RuntimeError):
    """An NVIDIA tool this module needs (nvJitLink in cuda.bindings, or nvdisasm) is not installed."""


# ----------------------------------------------------------------------------------------------- tools

def _nvjitlink():
    try:
        from cuda.bindings import nvjitlink
    except ImportError as exc:
        raise ToolMissing("compiling PTX to a cubin needs NVIDIA's nvJitLink from cuda.bindings, installed with "
                          "numba-cuda[cu13] (no macOS wheels exist: on macOS this part of the course cannot run)") from exc
    return nvjitlink


def nvdisasm_path() -> Path:
    """The ``nvdisasm`` executable inside the ``nvidia-cuda-nvdisasm`` wheel (found from its file list)."""
    try:
        files = importlib.metadata.files("nvidia-cuda-nvdisasm") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name in ("nvdisasm", "nvdisasm.exe") and "bin" in f.parts:
            path = Path(f.locate())
            if path.is_file():
                return path
    on_path = shutil.which("nvdisasm")  # conda's cuda-nvdisasm, or a CUDA toolkit
    if on_path:
        return Path(on_path)
    raise ToolMissing("disassembling a cubin needs nvdisasm from the PyPI wheel nvidia-cuda-nvdisasm "
                      "(pip install nvidia-cuda-nvdisasm; it has no macOS build)")


def tools_available() -> str:
    """Empty string when nvJitLink and nvdisasm are both installed, else the reason they are not."""
    try:
        _nvjitlink()
        nvdisasm_path()
    except ToolMissing as exc:
        return str(exc)
    return ""


def ptx_to_cubin(ptx: str, cc="sm_80", max_registers: int | None = None) -> tuple[bytes, str]:
    """Compile PTX to a cubin with nvJitLink; returns the cubin and ptxas's verbose report (the info log).

    Kept on disk (:mod:`nbkit.core.diskcache`), named by the PTX, the architecture, ``max_registers`` and the
    versions of this module and of NVIDIA's packages: a later process (a test worker, a notebook) reads it."""
    entry = _cubin_entry(ptx, cc, max_registers)
    stored = _stored_cubin(entry)
    if stored is not None:
        return stored
    cubin, log = _link(ptx, cc, max_registers)
    if entry is not None:
        diskcache.write_json(entry, {"cubin": base64.b64encode(cubin).decode(), "log": log})
    return cubin, log


def _stored_cubin(entry: Path | None) -> tuple[bytes, str] | None:
    stored = diskcache.read_json(entry) if entry is not None else None
    if isinstance(stored, dict) and isinstance(stored.get("cubin"), str) and isinstance(stored.get("log"), str):
        return base64.b64decode(stored["cubin"]), stored["log"]
    return None


def _cubin_entry(ptx: str, cc, max_registers: int | None) -> Path | None:
    folder = diskcache.cache_dir("cubin")
    if folder is None:
        return None
    key = diskcache.digest("ptx_to_cubin", _compiler_version(), diskcache.file_digest(__file__), sm_name(cc),
                           repr(max_registers), ptx)
    return folder / f"{key}.json"


def _link(ptx: str, cc, max_registers: int | None) -> tuple[bytes, str]:
    nvj = _nvjitlink()
    options = [f"-arch={sm_name(cc)}", "-Xptxas=-v", "-verbose"]  # ptxas's report, then the linker's
    if max_registers:
        options.append(f"-maxrregcount={int(max_registers)}")  # what numba passes for cuda.jit(max_registers=...)
    handle = nvj.create(len(options), options)
    try:
        data = ptx.encode()
        try:
            nvj.add_data(handle, nvj.InputType.PTX, data, len(data), "kernel.ptx")
            nvj.complete(handle)
        except nvj.nvJitLinkError as exc:
            log = bytearray(nvj.get_error_log_size(handle))
            nvj.get_error_log(handle, log)
            raise RuntimeError(f"nvJitLink could not compile the PTX for {sm_name(cc)}: {exc}\n{log.decode(errors='replace')}")
        info = bytearray(nvj.get_info_log_size(handle))
        nvj.get_info_log(handle, info)
        cubin = bytearray(nvj.get_linked_cubin_size(handle))
        nvj.get_linked_cubin(handle, cubin)
    finally:
        nvj.destroy(handle)
    return bytes(cubin), info.decode(errors="replace").rstrip("\x00")


# ------------------------------------------------------------------------------------ ptxas's report

@dataclass(frozen=True)
class Resources:
    """One kernel's resources as ptxas reported them for one architecture."""

    registers: int  # per thread
    spill_store_bytes: int
    spill_load_bytes: int
    stack_bytes: int  # local-memory stack frame per thread (local arrays, spills)
    shared_bytes: int  # static shared memory per block
    constant_bytes: int  # cmem[0] (kernel parameters) and any other constant banks
    barriers: int

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0

    def __str__(self) -> str:
        return (f"{self.registers} registers/thread, spills {self.spill_store_bytes} B stored / "
                f"{self.spill_load_bytes} B loaded, stack {self.stack_bytes} B, shared {self.shared_bytes} B, "
                f"constant {self.constant_bytes} B")


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_BARRIERS = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+) bytes smem")
_CMEM = re.compile(r"(\d+) bytes cmem\[\d+\]")
_LINKED = re.compile(r"Function properties for '([^']+)':\s*\n\s*info\s*:\s*(used \d+ registers[^\n]*)")


def parse_ptxas_report(log: str) -> dict[str, Resources]:
    """Resources of every entry function in a ``ptxas -v`` report, by (mangled) function name.

    Registers, spills, stack and barriers come from ptxas's lines. Numba declares shared arrays at
    module scope, which ptxas leaves out of its per-function line; the linker's final line
    (``-verbose``: "used N registers, ..., S bytes smem, ...") counts them, so shared and constant
    memory are taken from it when present. (Observed: on sm_90 that figure can exceed the arrays'
    size, e.g. 3072 B for the tiled matmul's two 1 KiB tiles.)
    """
    out: dict[str, Resources] = {}
    linked = {name: line for name, line in _LINKED.findall(log)}
    parts = _ENTRY.split(log)
    for name, block in zip(parts[1::2], parts[2::2]):
        frame, used = _FRAME.search(block), _USED.search(block)
        if not frame or not used:
            raise ValueError(f"ptxas's report for {name[:60]} has no stack-frame or register line:\n{block[:600]}")
        line = block[used.start():].splitlines()[0]  # "Used 40 registers, used 1 barriers, 2048 bytes smem, ..."
        barriers = _BARRIERS.search(line)
        if name in linked:
            line = linked[name]
        smem = _SMEM.search(line)
        out[name] = Resources(int(used.group(1)), int(frame.group(2)), int(frame.group(3)), int(frame.group(1)),
                              int(smem.group(1)) if smem else 0, sum(int(n) for n in _CMEM.findall(line)),
                              int(barriers.group(1)) if barriers else 0)
    if not out:
        raise ValueError(f"no entry function in ptxas's report:\n{log[:600]}")
    return out


# -------------------------------------------------------------------------------------------- SASS

def disassemble(cubin: bytes) -> str:
    """SASS text of a cubin, from nvdisasm; kept on disk, named by the cubin and the nvdisasm that read it."""
    exe = nvdisasm_path()
    folder = diskcache.cache_dir("sass")
    entry = None
    if folder is not None:
        stat = exe.stat()
        entry = folder / (diskcache.digest("nvdisasm", diskcache.file_digest(__file__), str(exe), str(stat.st_size),
                                           str(stat.st_mtime_ns), hashlib.sha256(cubin).hexdigest()) + ".json")
        stored = diskcache.read_json(entry)
        if isinstance(stored, dict) and isinstance(stored.get("sass"), str):
            return stored["sass"]
    sass = _nvdisasm(exe, cubin)
    if entry is not None:
        diskcache.write_json(entry, {"sass": sass})
    return sass


def _nvdisasm(exe: Path, cubin: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        r = subprocess.run([str(exe), "-c", "-g", str(f.name)], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            r = subprocess.run([str(exe), "-c", str(f.name)], capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {r.stderr.strip()[:500]}")
    return r.stdout


@dataclass(frozen=True)
class Instruction:
    address: int
    predicate: str  # e.g. "@P0", "@!P1" or ""
    opcode: str  # full opcode with modifiers, e.g. "LDG.E.CONSTANT"
    operands: str
    target: int | None = None  # branch target address

    @property
    def base(self) -> str:
        return self.opcode.split(".")[0]


_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):", re.M)


def parse_sass(text: str) -> list[Instruction]:
    """Instructions of the SASS text with branch targets resolved to addresses."""
    labels: dict[str, int] = {}
    pending: list[str] = []
    instrs: list[tuple[int, str, str, str]] = []
    for line in text.splitlines():
        m = _LABEL.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = _INSTR.search(line)
        if m:
            addr = int(m.group(1), 16)
            for label in pending:
                labels[label] = addr
            pending = []
            instrs.append((addr, (m.group(2) or "").strip(), m.group(3), m.group(4).strip()))
    out = []
    for addr, pred, op, operands in instrs:
        target = None
        if op.split(".")[0] in ("BRA", "BRX", "JMP"):
            m = re.search(r"\.L_x_\d+", operands)
            if m and m.group(0) in labels:
                target = labels[m.group(0)]
        out.append(Instruction(addr, pred, op, operands, target))
    return out


# Instruction classes shown in the course; everything else is "other".
CLASSES: dict[str, tuple[str, ...]] = {
    "LDG": ("LDG",), "STG": ("STG",), "LDS": ("LDS", "LDSM"), "STS": ("STS",),
    "LDL": ("LDL",), "STL": ("STL",),  # local memory: spills and local arrays
    "ATOM": ("ATOM", "ATOMG", "RED", "ATOMS"), "LDC": ("LDC", "ULDC"),
    "FFMA": ("FFMA",), "FMUL": ("FMUL",), "FADD": ("FADD",), "MUFU": ("MUFU",),
    "F64": ("DFMA", "DADD", "DMUL", "DSETP", "F2F"),
    "BAR": ("BAR",), "BRA": ("BRA", "BRX", "JMP"), "EXIT": ("EXIT",),
}
_CLASS_OF = {op: cls for cls, ops in CLASSES.items() for op in ops}


def instruction_class(opcode: str) -> str:
    return _CLASS_OF.get(opcode.split(".")[0], "other")


def count_classes(instrs: list[Instruction]) -> dict[str, int]:
    """Instruction count per class (``CLASSES``), classes with no instruction included as 0."""
    counts = Counter(instruction_class(i.opcode) for i in instrs)
    return {cls: counts.get(cls, 0) for cls in (*CLASSES, "other")}


@dataclass(frozen=True)
class Loop:
    """A SASS loop: the instructions from a backward branch's target to the branch (one pass)."""

    start: int
    end: int
    instructions: tuple[Instruction, ...]
    innermost: bool

    @property
    def counts(self) -> dict[str, int]:
        return count_classes(list(self.instructions))

    @property
    def flops_per_pass(self) -> int:
        c = self.counts
        return 2 * c["FFMA"] + c["FMUL"] + c["FADD"]

    def sequence(self, classes=("LDG", "STG", "LDS", "STS", "FFMA", "BAR")) -> list[str]:
        """The loop's instructions of the given classes, in order (e.g. LDG, LDG, FFMA, ...)."""
        return [instruction_class(i.opcode) for i in self.instructions if instruction_class(i.opcode) in classes]


def find_loops(instrs: list[Instruction]) -> list[Loop]:
    """Every loop, found by its backward branch, innermost ones flagged (no other loop inside).

    A branch to itself (``BRA`` after the final ``EXIT``, where the compiler parks the program counter)
    is not a loop.
    """
    spans = sorted({(i.target, i.address) for i in instrs if i.target is not None and i.target < i.address})
    loops = []
    for start, end in spans:
        body = tuple(i for i in instrs if start <= i.address <= end)
        inner = not any((s, e) != (start, end) and start <= s and e <= end for s, e in spans)
        loops.append(Loop(start, end, body, inner))
    return loops


def main_loop(loops: list[Loop]) -> Loop | None:
    """The innermost loop doing the most floating-point work per pass (ties: the longest): the hot loop."""
    inner = [lp for lp in loops if lp.innermost]
    if not inner:
        return None
    return max(inner, key=lambda lp: (lp.flops_per_pass, len(lp.instructions)))


def short_sass(text: str, max_lines: int | None = 80) -> str:
    """SASS for reading: instructions and labels only, mangled names shortened, addresses kept."""
    keep = []
    for line in text.splitlines():
        stripped = line.strip()
        if _LABEL.match(line):
            keep.append(stripped)
        elif _INSTR.search(line):
            m = _INSTR.search(line)
            pred = (m.group(2) or "").strip()
            keep.append(f"  /*{m.group(1)}*/ {pred + ' ' if pred else ''}{m.group(3)} {m.group(4).strip()}".rstrip())
    if max_lines is not None and len(keep) > max_lines:
        keep = keep[:max_lines] + [f"  ... {len(keep) - max_lines} more lines"]
    return "\n".join(re.sub(r"_ZN\w+", "<kernel>", line) for line in keep)


# ------------------------------------------------------------------------------ building the kernels

@dataclass
class Build:
    """One kernel x signature x architecture, compiled to a cubin, with ptxas's report."""

    name: str
    signature: str
    cc: str
    resources: Resources
    cubin: bytes = field(repr=False)
    log: str = field(repr=False, default="")
    from_disk: bool = field(default=False, compare=False)  # read from the disk cache: an earlier process compiled it

    def sass(self) -> str:
        return disassemble(self.cubin)


_CACHE: dict[tuple[str, str, str], Build] = {}


def _compile_here(spec: KernelSpec, signature: str, cc: str) -> dict:
    ptx = compile_ptx(spec.py_func, signature, cc, spec.device)
    cubin, log = ptx_to_cubin(ptx, cc, spec.max_registers)
    return _record(spec, signature, cc, cubin, log)


def _record(spec: KernelSpec, signature: str, cc: str, cubin: bytes, log: str) -> dict:
    return {"name": spec.name, "signature": signature, "cc": cc, "log": log,
            "cubin": base64.b64encode(cubin).decode()}


def _stored_record(spec: KernelSpec, signature: str, cc: str) -> dict | None:
    """What :func:`_compile_here` gives, read from the disk cache (no compiler, any mode); None if not all there."""
    ptx = stored_ptx(spec.py_func, signature, cc, spec.device)
    stored = _stored_cubin(_cubin_entry(ptx, cc, spec.max_registers)) if ptx is not None else None
    return _record(spec, signature, cc, *stored) if stored is not None else None


def _from_record(rec: dict) -> Build:
    found = parse_ptxas_report(rec["log"])
    if len(found) != 1:
        raise ValueError(f"expected one entry function for {rec['name']}, ptxas reported {len(found)}")
    return Build(rec["name"], rec["signature"], rec["cc"], next(iter(found.values())),
                 base64.b64decode(rec["cubin"]), rec["log"])


def _spec_of(kernel, modules: tuple[str, ...] = ()) -> KernelSpec:
    import importlib

    for module in modules:
        importlib.import_module(module)
    specs = all_kernels()
    if isinstance(kernel, KernelSpec):
        return kernel
    if isinstance(kernel, str):
        matches = [s for s in specs if s.name == kernel or s.name.endswith("." + kernel)]
    else:
        fn = getattr(kernel, "py_func", kernel)
        matches = [s for s in specs if s.py_func is fn]
    if len(matches) != 1:
        raise KeyError(f"no single registered kernel matches {kernel!r} ({len(matches)} found); registered kernels: "
                       f"{', '.join(s.name for s in specs)}")
    return matches[0]


def build(kernels=None, archs=ARCHS, modules: tuple[str, ...] = ()) -> list[Build]:
    """Compile kernels (names, dispatchers or specs; default all registered) for ``archs``, every signature.

    Device functions are left out (they have no entry point to report on). Results are cached per
    process and on disk; whatever is missing is compiled in one go (in one fresh process in simulator mode,
    started only when something is not on disk).
    """
    reason = tools_available()
    if reason:
        raise ToolMissing(reason)
    specs = all_kernels() if kernels is None else [_spec_of(k, modules) for k in kernels]
    specs = [s for s in specs if not s.device]
    ccs = [sm_name(cc) for cc in archs]
    wanted = [(s.name, sig, cc) for s in specs for sig in s.signatures for cc in ccs]
    by_name = {s.name: s for s in specs}
    if MODE.is_simulator:  # what an earlier process compiled is on disk: no GPU-mode process is started for it
        for name, sig, cc in wanted:
            record = None if (name, sig, cc) in _CACHE else _stored_record(by_name[name], sig, cc)
            if record is not None:
                _CACHE[(name, sig, cc)] = _from_record(record)
                _CACHE[(name, sig, cc)].from_disk = True
    missing = [w for w in wanted if w not in _CACHE]
    if missing:
        if MODE.is_simulator:
            records = _compile_in_subprocess(sorted({m[0] for m in missing}), sorted({m[2] for m in missing}), modules)
        else:
            records = [_compile_here(by_name[n], sig, cc) for n, sig, cc in missing]
        for rec in records:
            b = _from_record(rec)
            _CACHE[(b.name, b.signature, b.cc)] = b
    return [_CACHE[w] for w in wanted]


def _compile_in_subprocess(names: list[str], ccs: list[str], modules: tuple[str, ...]) -> list[dict]:
    args = ["-m", "nbkit.perf.cubin", "--records"]
    for n in names:
        args += ["--kernel", n]
    for cc in ccs:
        args += ["--arch", cc]
    for m in modules:
        args += ["--module", m]
    r = run_in_gpu_mode(args, timeout=900)
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError(f"compiling in a fresh process (NBKIT_MODE=gpu) failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _one(kernel, cc, signature: str | None) -> Build:
    spec = _spec_of(kernel)
    if spec.device:
        raise ValueError(f"{spec.name} is a device function: ptxas reports resources of kernels only")
    sig = signature or spec.signatures[0]
    if sig not in spec.signatures:
        raise ValueError(f"{spec.name} has no registered signature {sig!r}; registered: {spec.signatures}")
    cc = sm_name(cc)
    if (spec.name, sig, cc) not in _CACHE:
        build([spec], archs=(cc,))
    return _CACHE[(spec.name, sig, cc)]


def resources(kernel, cc="sm_80", signature: str | None = None) -> Resources:
    """ptxas's report on one registered kernel (name, dispatcher or spec) for ``cc`` (default: first signature)."""
    return _one(kernel, cc, signature).resources


def sass(kernel, cc="sm_80", signature: str | None = None, max_lines: int | None = 80) -> str:
    """The kernel's SASS shortened for reading (see :func:`short_sass`); ``max_lines=None`` for all of it."""
    return short_sass(_one(kernel, cc, signature).sass(), max_lines)


@dataclass(frozen=True)
class SassCounts:
    """Instruction counts of one kernel: whole kernel, every loop, and the hot (main) loop."""

    name: str
    cc: str
    total: dict
    loops: tuple[Loop, ...]
    main: Loop | None

    def __str__(self) -> str:
        def fmt(c):
            return ", ".join(f"{k} {v}" for k, v in c.items() if v and k != "other")

        text = f"{self.name} on {self.cc}: whole kernel {fmt(self.total)} ({sum(self.total.values())} instructions)"
        if self.main is not None:
            text += (f"\n  hot loop (one pass, {len(self.main.instructions)} instructions): {fmt(self.main.counts)}"
                     f"\n  order: {' '.join(self.main.sequence())}")
        return text


def sass_counts(kernel, cc="sm_80", signature: str | None = None) -> SassCounts:
    """Instruction classes over the whole kernel, per loop pass, and for the hot loop."""
    b = _one(kernel, cc, signature)
    instrs = parse_sass(b.sass())
    loops = find_loops(instrs)
    return SassCounts(b.name, b.cc, count_classes(instrs), tuple(loops), main_loop(loops))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", action="append", default=[], help="registered kernel name (default: all)")
    parser.add_argument("--arch", action="append", default=[], help=f"e.g. sm_80 (default: {', '.join(ARCHS)})")
    parser.add_argument("--module", action="append", default=[], help="also import this module (it may register kernels)")
    parser.add_argument("--records", action="store_true", help="print one JSON list of raw records (used internally)")
    parser.add_argument("--sass", action="store_true", help="print the SASS and its counts (first signature)")
    args = parser.parse_args(argv)
    import importlib

    for module in args.module:
        importlib.import_module(module)
    archs = tuple(args.arch) or ARCHS
    if args.records:
        if MODE.is_simulator:
            raise SystemExit("--records needs NBKIT_MODE=gpu (the real CUDA target; no GPU is needed)")
        specs = [_spec_of(k) for k in args.kernel] if args.kernel else all_kernels()
        print(json.dumps([_compile_here(s, sig, sm_name(cc)) for s in specs if not s.device
                          for sig in s.signatures for cc in archs]))
        return 0
    builds = build(args.kernel or None, archs, tuple(args.module))
    for b in builds:
        print(f"{b.cc} {b.name} {b.signature}: {b.resources}")
        if args.sass:
            print(sass_counts(b.name, b.cc, b.signature))
            print(short_sass(b.sass(), None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
