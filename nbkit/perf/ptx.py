"""Prove, with no GPU present, that every nbkit kernel compiles for real hardware.

``numba.cuda.compile_ptx`` runs the whole CUDA compiler (NVVM) on the CPU (see :mod:`nbkit.perf.compiler`).
This module compiles every registered kernel (see :func:`nbkit.kernels.all_kernels`) for the architectures in
:data:`nbkit.core.hw.ARCHS` and checks the PTX: a float32 kernel must not contain a single float64
instruction (see :func:`f64_instructions`; a stray ``0.5`` literal or a ``math`` call on a float64 makes a
consumer GPU run at 1/64 speed), and its static shared memory must match what
:func:`nbkit.core.launch.static_shared_bytes` reads from the source.

It is also a resource test: each kernel's PTX is compiled on to a cubin by nvJitLink (see
:mod:`nbkit.perf.cubin`), and ptxas's own report must show no register spills (unless the kernel is
registered with ``allow_spills=True``) and, for a kernel registered with a launch ``block`` and a
``min_occupancy``, an occupancy (see :mod:`nbkit.perf.occupancy`) at least that high on every architecture.

Run it as ``python -m nbkit.perf.ptx`` (all kernels) or ``python -m nbkit.perf.ptx --show vector_add`` (one
kernel's PTX); ``--only PREFIX --show NAME`` prints the check of some kernels, then one's PTX, from one
process (each process pays for importing the compiler). It needs numba's real CUDA target; started in
simulator mode it re-runs itself in a fresh process with ``NBKIT_MODE=gpu`` (no GPU is needed to compile).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Sequence

from nbkit.core.hw import ARCHS, MAX_STATIC_SHARED_BYTES, Arch, sm_name
from nbkit.core.launch import static_shared_bytes
from nbkit.core.mode import MODE
from nbkit.core.registry import KernelSpec
from nbkit.kernels import all_kernels
from nbkit.perf.compiler import compile_ptx, run_in_gpu_mode
from nbkit.perf.cubin import parse_ptxas_report, ptx_to_cubin, tools_available
from nbkit.perf.occupancy import occupancy

_SHARED_DECL = re.compile(r"^\s*(?:\.visible\s+|\.extern\s+)?\.shared\s+\.align\s+\d+\s+\.b8\s+\S+?\[(\d*)\]", re.M)


_MANGLED = re.compile(r"_ZN(\w+?)(_param_\d+)?\b")


def _short_name(mangled: str) -> str:
    """``08NumbaEnv5nbkit7kernels6vector10vector_addB2v1...`` -> ``NumbaEnv_vector_add``: the first and last of
    the length-prefixed parts (the first only when it is numba's ``NumbaEnv``), the ABI tags dropped."""
    parts, i = [], 0
    while i < len(mangled) and mangled[i].isdigit():
        j = i
        while j < len(mangled) and mangled[j].isdigit():
            j += 1
        n = int(mangled[i:j])
        parts.append(mangled[j:j + n])
        i = j + n
    if not parts:
        return "<kernel>"
    return f"NumbaEnv_{parts[-1]}" if parts[0] == "NumbaEnv" and len(parts) > 1 else parts[-1]


def readable(ptx: str) -> str:
    """The PTX with numba's mangled names shortened, comments dropped and the parameter declarations
    collapsed into one comment line; every instruction stays, ``ld.param`` included, so every register
    used is defined.

    Names: the kernel (or device function) ``_ZN5nbkit...10vector_addB2v1...`` becomes ``vector_add``,
    its parameter ``..._param_4`` ``vector_add_param_4``, and numba's environment global
    ``_ZN08NumbaEnv...`` ``NumbaEnv_vector_add``.
    """
    def shorten(text: str) -> str:
        return _MANGLED.sub(lambda m: _short_name(m.group(1)) + (m.group(2) or ""), text)

    keep: list[str] = []
    params: list[str] = []
    for line in ptx.splitlines():
        stripped = line.strip()
        if stripped.startswith(".param"):
            params.append(shorten(stripped.rstrip(",")))
            continue
        if params:
            first, last = params[0].split()[-1], params[-1].split()[-1]
            span = first if len(params) == 1 else f"{first} ... {last}"
            keep.append(f"\t// {len(params)} parameters, {span} (declarations collapsed; numba passes "
                        "each array as several: data pointer, sizes, strides, ...)")
            params = []
        if not stripped or stripped.startswith("//"):
            continue
        keep.append(shorten(line.rstrip()))
    return "\n".join(keep)


def f64_instructions(ptx: str) -> list[str]:
    """The PTX instructions whose opcode has a float64 type (``mul.f64``, ``cvt.f64.f32``, ``@%p1 add.f64``,
    ``ld.param.f64``), whitespace collapsed, one per line.

    Declarations (``.reg .f64 %fd<5>;``, ``.param .f64 ...``), other directives and comments are left out:
    they cost nothing at run time, and numba may declare float64 registers that no instruction uses.
    """
    found = []
    for line in ptx.splitlines():
        code = line.split("//", 1)[0]
        words = code.split()
        opcode = words[1] if words and words[0].startswith("@") and len(words) > 1 else words[0] if words else ""
        if not opcode.startswith(".") and "f64" in opcode.split(".")[1:]:
            found.append(" ".join(words))
    return found


def ptx_shared_bytes(ptx: str) -> int:
    """Static shared memory declared in the PTX (dynamic `extern` arrays have no size and count 0)."""
    return sum(int(n) for n in _SHARED_DECL.findall(ptx) if n)


@dataclass
class KernelReport:
    name: str
    signature: str
    cc: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    shared_bytes: int = 0
    f64_lines: int = 0  # PTX lines that are float64 instructions (see f64_instructions)
    registers: int | None = None  # from ptxas's report (None: not compiled to a cubin)
    spill_bytes: int | None = None  # spill stores + spill loads
    stack_bytes: int | None = None
    occupancy: float | None = None  # MODEL, for the registered block size


def resource_problems(spec: KernelSpec, cc: Arch, ptx: str, report: KernelReport) -> list[str]:
    """Compile the PTX to a cubin, record ptxas's figures in ``report`` and list the resource problems."""
    _, log = ptx_to_cubin(ptx, cc, spec.max_registers)
    res = next(iter(parse_ptxas_report(log).values()))
    report.registers, report.stack_bytes = res.registers, res.stack_bytes
    report.spill_bytes = res.spill_store_bytes + res.spill_load_bytes
    problems = []
    if res.spills and not spec.allow_spills:
        problems.append(f"ptxas spills registers to local memory ({res.spill_store_bytes} B stored, "
                        f"{res.spill_load_bytes} B loaded per thread, {res.registers} registers): "
                        "keep fewer values alive, raise max_registers, or register with allow_spills=True")
    if spec.threads_per_block is not None:
        occ = occupancy(cc, spec.threads_per_block, res.registers, res.shared_bytes)
        report.occupancy = occ.fraction
        if spec.min_occupancy is not None and occ.fraction < spec.min_occupancy:
            problems.append(f"block {spec.block} reaches {occ.fraction:.0%} occupancy, below the stated "
                            f"{spec.min_occupancy:.0%} ({occ}): a smaller block, fewer registers or less "
                            "shared memory would fix it")
    return problems


def check_spec(spec: KernelSpec, archs: Sequence[Arch] = ARCHS) -> list[KernelReport]:
    """Compile one kernel for every signature and architecture, and list what is wrong with each."""
    reports = []
    source_shared = None if spec.device else static_shared_bytes(spec.py_func)
    cubins = not spec.device and not tools_available()
    for signature in spec.signatures:
        for cc in archs:
            problems: list[str] = []
            shared = n_f64 = 0
            report = KernelReport(spec.name, signature, sm_name(cc), True)
            try:
                ptx = compile_ptx(spec.py_func, signature, cc, spec.device)
            except Exception as exc:  # noqa: BLE001 - report any compiler error as a failure
                problems.append(f"does not compile: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            else:
                bad = f64_instructions(ptx)
                n_f64 = len(bad)
                if spec.expect_f64 and not bad:
                    problems.append("this demonstration of float64 promotion compiles without any float64 instruction")
                elif spec.float32_only and bad and not spec.expect_f64:
                    problems.append(f"float32 kernel contains {len(bad)} float64 instruction(s), e.g. {bad[:3]}: look for "
                                    "literals mixed with float32 values, like 0.5 (write float32(0.5)) or "
                                    "max(x, 0) (write max(x, float32(0))), or float64 math")
                shared = ptx_shared_bytes(ptx)
                if shared > MAX_STATIC_SHARED_BYTES:
                    problems.append(f"{shared} bytes of static shared memory exceed 48 KiB")
                if source_shared is not None and shared != source_shared:
                    problems.append(f"PTX declares {shared} bytes of shared memory but the source reading gives "
                                    f"{source_shared}: nbkit.core.launch cannot check this kernel's launches")
                if cubins:
                    try:
                        problems.extend(resource_problems(spec, cc, ptx, report))
                    except Exception as exc:  # noqa: BLE001 - report any ptxas error as a failure
                        problems.append(f"ptxas: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            report.ok, report.problems, report.shared_bytes, report.f64_lines = not problems, problems, shared, n_f64
            reports.append(report)
    return reports


def check_all(extra_modules: tuple[str, ...] = (), archs: Sequence[Arch] = ARCHS,
              only: str = "") -> list[KernelReport]:
    """Check every registered kernel whose name starts with ``only``, after importing ``extra_modules``."""
    for module in extra_modules:
        importlib.import_module(module)
    reports = []
    for spec in all_kernels():
        if spec.name.startswith(only):
            reports.extend(check_spec(spec, archs))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", default=[], help="also import this module (it may register kernels)")
    parser.add_argument("--json", action="store_true", help="print one JSON list of reports")
    parser.add_argument("--show", metavar="NAME", help="print the PTX of one kernel (first signature, sm_80); "
                                                        "with --only, after the check of those kernels")
    parser.add_argument("--only", default="", metavar="PREFIX", help="check only kernels whose name starts with this")
    args = parser.parse_args(argv)
    if args.show and args.json:
        parser.error("--show prints PTX text: it cannot be combined with --json")
    if MODE.is_simulator:
        argv = sys.argv[1:] if argv is None else argv
        return run_in_gpu_mode(["-m", "nbkit.perf.ptx", *argv], capture=False).returncode
    status = 0
    if args.only or not args.show:
        reports = check_all(tuple(args.module), only=args.only)
        if args.json:
            print(json.dumps([asdict(r) for r in reports]))
        else:
            for r in reports:
                ok = "ok  " if r.ok else "FAIL"
                res = "" if r.registers is None else f" registers={r.registers} spills={r.spill_bytes}B stack={r.stack_bytes}B"
                occ = "" if r.occupancy is None else f" occupancy={r.occupancy:.0%} (MODEL)"
                print(f"{ok} {r.cc} {r.name} {r.signature} shared={r.shared_bytes}B f64_lines={r.f64_lines}{res}{occ}")
                for p in r.problems:
                    print(f"       {p}")
            failed = sum(not r.ok for r in reports)
            print(f"{len(reports) - failed} passed, {failed} failed (kernel x signature x architecture)")
        status = 1 if any(not r.ok for r in reports) else 0
    if args.show:
        for module in args.module:
            importlib.import_module(module)
        matches = [s for s in all_kernels() if s.name == args.show or s.name.endswith("." + args.show)]
        if len(matches) != 1:
            print(f"no single registered kernel is called {args.show!r}; known: "
                  f"{', '.join(s.name for s in all_kernels())}", file=sys.stderr)
            return 2
        spec = matches[0]
        print(f"// PTX of {spec.name} for {spec.signatures[0]}, sm_80 (names shortened, comments dropped)")
        print(readable(compile_ptx(spec.py_func, spec.signatures[0], "sm_80", spec.device)))
    return status


if __name__ == "__main__":
    sys.exit(main())
