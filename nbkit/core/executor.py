"""CPU executor: a ``@cuda.jit`` kernel run as compiled CPU loops instead of the simulator's threads.

Without a GPU the CUDA simulator interprets every CUDA thread's Python code (each thread a greenlet,
:mod:`nbkit.core.fibers`): 20-40 µs per thread for a trivial kernel, more for a thread with a loop. The MCUDA
transform (Stratton, Stone, Hwu, LCPC 2008) does the same work as loops: the kernel body is wrapped in a loop
over the threads of a block, split at every ``cuda.syncthreads()`` (loop fission, so every thread finishes one
phase before any thread starts the next), values live across a barrier become per-thread arrays, and the result
is compiled with ``numba.njit``. Blocks run in parallel on CPU threads unless the kernel uses atomics.

The njit code checks bounds (an index out of bounds raises ``IndexError`` naming block and thread), except for a
launch proven in bounds: the kernel's accesses are launch-determined (:mod:`nbkit.core.bounds` proves it on the
source), and a launch with the same key (argument types, grid, block, array shapes, scalar values) already ran
checked without an error; it then runs a second launcher compiled without the checks, which executes the same
accesses. Everything not proven, and every new key, runs checked. That unchecked launcher also casts indices to
unsigned where the checked run saw none negative (no wrap-around code: :func:`_ix_record`), and, in kernels
without barriers, interleaves four threads' loops so that their sums overlap (``LANES``; eight where their reads
pack into vectors: ``WIDE``).

``NBKIT_MODE=cpu`` (:mod:`nbkit.core.launch`) runs every launch through :func:`run_on_cpu`. Whatever it cannot
transform raises :class:`ExecutorUnsupported` with the reason before anything is written, so that a caller can fall
back to the simulator; so does :class:`BarrierDivergence`, found while running, after the launch's arrays have been
put back as they were.
"""

from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import copy
import ctypes
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import re
import sys
import textwrap
import threading
import time
import types as pytypes
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import llvmlite.ir
import numba
import numba.core.compiler
import numba.core.compiler_machinery
import numba.core.imputils
import numba.core.ir
import numba.core.rewrites
import numba.core.typed_passes
import numba.core.typing
import numba.core.untyped_passes
import numba.extending
import numpy as np
from numba import cuda
from numba.core.compiler_lock import global_compiler_lock

from nbkit.core import bounds, diskcache
from nbkit.core.simulator import as_dtype, device_array_memory, poison_value
from nbkit.core.source import python_function

__all__ = ["BarrierDivergence", "ExecutorUnsupported", "run_on_cpu", "compile_for_cpu", "generated_source",
           "last_launch_checked", "last_launch_lanes", "last_launch_unsigned", "unchecked_reason"]


class ExecutorUnsupported(Exception):
    """A kernel the CPU executor cannot transform; ``reason`` says which construct and where."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BarrierDivergence(ExecutorUnsupported):
    """At run time: threads of one block disagree on a loop that contains a barrier (a kernel bug on a GPU)."""


# ---------------------------------------------------------------------------------------------- intrinsics

_INDEX = {"threadIdx": "_t", "blockIdx": "_b", "blockDim": "_bd", "gridDim": "_gd"}
_ATOMICS = {"add", "sub", "max", "min", "exch"}
_NOOPS = {"threadfence", "threadfence_block", "threadfence_system"}


def _atomic_add(a, i, v):
    old = a[i]
    a[i] = old + v
    return old


def _atomic_sub(a, i, v):
    old = a[i]
    a[i] = old - v
    return old


def _atomic_max(a, i, v):
    old = a[i]
    a[i] = max(old, v)
    return old


def _atomic_min(a, i, v):
    old = a[i]
    a[i] = min(old, v)
    return old


def _atomic_exch(a, i, v):
    old = a[i]
    a[i] = v
    return old


def _poisoned(a: np.ndarray) -> np.ndarray:
    """A fresh ``cuda.local.array`` filled as the simulator fills it (:func:`poison_value`: NaN for floats)."""
    value = poison_value(a.dtype)
    if value is not None:
        a[...] = value
    return a


@numba.extending.overload(_poisoned)
def _poisoned_cpu(a):  # no annotations: numba compares this signature with the implementation's
    value = poison_value(as_dtype(a.dtype))
    if value is None:
        return lambda a: a

    def fill(a):
        a.reshape(a.size)[:] = value
        return a

    return fill


# Every array index in a launcher is emitted as ``_ix(index, _negp)``; a kernel's launchers (checked with and
# without the record below, unchecked with signed or unsigned indices) share that source (lanes: a source of
# their own, with the same accesses) and differ in what ``_ix`` is and in numba's bounds checks. Numba wraps a
# negative signed index (``a[-1]`` is the last element, as in the simulator's Python semantics) with a test and an
# add per index, about 20-30% of a convolution's time. The checked launcher records, at the address ``_negp``
# (``_where[2]``), that an index was negative; a proven launch key that had none runs the unchecked launcher with
# the indices cast to unsigned (no wrap code: the same key executes the same indices, all non-negative and in
# bounds), one that had some keeps them signed. An address, not the array: an array passed to a helper costs a
# reference count increment and decrement per index (the checked conv forward took 70 times as long).
#
# ``_ix_record`` is a numba intrinsic (its code emitted at each index, as numba emits its own bounds checks): as an
# @overload, each index was a call to a function numba compiled apart, and the checked conv forward at LeNet conv1,
# batch 64 took 41-43 instead of 25 ms. The unchecked launchers' helpers stay overloads: as intrinsics their
# machine code differed (conv backward input with lanes 4% slower).
def _signed_integer(i: object) -> bool:
    return isinstance(i, numba.types.Integer) and i.signed


def _or_flag(builder: llvmlite.ir.IRBuilder, negp: llvmlite.ir.Value, bit: llvmlite.ir.Value) -> None:
    """``*negp |= bit`` at the int64 address ``negp`` (``bit`` an int64 value)."""
    ptr = builder.inttoptr(negp, llvmlite.ir.IntType(64).as_pointer())
    builder.store(builder.or_(builder.load(ptr), bit), ptr)


@numba.extending.intrinsic
def _ix_record(typingctx, i, negp):
    """The checked launcher's index: unchanged (a negative one wraps, as before); records that one was negative."""
    i = numba.types.unliteral(i)

    def codegen(context, builder, signature, args):
        value, ty = args[0], signature.args[0]
        if _signed_integer(ty):
            with builder.if_then(builder.icmp_signed("<", value, llvmlite.ir.Constant(value.type, 0)), likely=False):
                _or_flag(builder, args[1], llvmlite.ir.Constant(llvmlite.ir.IntType(64), _NEGATIVE))
        return numba.core.imputils.impl_ret_borrowed(context, builder, ty, value)

    return numba.core.typing.signature(i, i, numba.types.int64), codegen


def _ix_signed(i: int, negp: int) -> int:
    """The unchecked launcher's index where some index was negative: unchanged (numba wraps it)."""
    return i


def _ix_unsigned(i: int, negp: int) -> int:
    """The unchecked launcher's index where none was negative: unsigned, so numba emits no wrap-around."""
    return i


@numba.extending.overload(_ix_signed)
def _ix_signed_cpu(i, negp):  # no annotations: numba compares this signature with the implementation's
    return lambda i, negp: i


@numba.extending.overload(_ix_unsigned)
def _ix_unsigned_cpu(i, negp):
    if not _signed_integer(i):
        return lambda i, negp: i
    return lambda i, negp: numba.uint64(i)


@numba.extending.intrinsic
def _set_flag(typingctx, negp, bit):
    """``*negp |= bit`` at the int64 address ``negp``."""
    def codegen(context, builder, signature, args):
        _or_flag(builder, args[0], context.cast(builder, args[1], signature.args[1], numba.types.int64))
        return context.get_dummy_value()

    return numba.types.void(numba.types.int64, bit), codegen


# A data-gated access at a launch-determined index (``dx[i] = dy[i] if x[i] > 0 else 0``; nbkit.core.bounds
# lists them with the statement before which the index already has its value) is probed by the checked launcher:
# ``_spec(array.shape[dim], index, _negp)`` before that statement, for every dimension, whether the access then runs or
# not. Bit 1: the index is negative; bit 2: it is out of bounds (after wrapping), so the key is not proven and
# stays checked. Every other launcher's ``_spec`` does nothing. Thus a launch key is proven only if every access
# that could run for it, whatever the data, is in bounds.
_NEGATIVE, _SPECULATIVE_OUT = 1, 2


def _spec_record(n: int, i: int, negp: int) -> None:
    """The checked launcher's probe of a data-gated access's index ``i`` in a dimension of size ``n``."""
    flags = ctypes.c_int64.from_address(negp)
    if i < 0:
        flags.value |= _NEGATIVE
    if not -n <= i < n:
        flags.value |= _SPECULATIVE_OUT


@numba.extending.intrinsic
def _spec_none(typingctx, n, i, negp):
    """The probe in launchers that record nothing: no code."""
    def codegen(context, builder, signature, args):
        return context.get_dummy_value()

    return numba.core.typing.signature(numba.types.none, n, i, negp), codegen


@numba.extending.overload(_spec_record)
def _spec_record_cpu(n, i, negp):  # sizes, not the array: an array argument costs reference counting
    def probe(n, i, negp):
        if i < 0:
            _set_flag(negp, 1)
            if i + n < 0:
                _set_flag(negp, 2)
        elif i >= n:
            _set_flag(negp, 2)

    return probe


class _WrapIndices(ast.NodeTransformer):
    """``x[i, j]`` -> ``x[_ix(i, _negp), _ix(j, _negp)]`` for the kernel's arrays (constants and slices stay)."""

    def __init__(self, arrays: set[str]):
        self.arrays = arrays

    def _wrap(self, e: ast.expr) -> ast.expr:
        if isinstance(e, (ast.Slice, ast.Constant, ast.Starred)):
            return e
        return ast.Call(ast.Name("_ix", ast.Load()), [e, ast.Name("_negp", ast.Load())], [])

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        base = node.value
        while isinstance(base, ast.Subscript):
            base = base.value
        if isinstance(base, ast.Name) and base.id in self.arrays:
            if isinstance(node.slice, ast.Tuple):
                node.slice.elts = [self._wrap(e) for e in node.slice.elts]
            else:
                node.slice = self._wrap(node.slice)
        return node


def _may_inline_closures(func_ir: object) -> bool:
    """Whether numba's closure inliner (InlineClosureLikes) can change this IR: it inlines closures and
    comprehensions (``make_function``), ``np.array`` of a list built in a loop (``build_list``), and calls of
    ``functools.reduce`` and of stencils. A launcher that has none of these (most: kernels have no lists or
    closures) gets exactly the IR the pass would have left."""
    for block in func_ir.blocks.values():  # type: ignore[attr-defined]
        for stmt in block.body:
            value = getattr(stmt, "value", None)
            if isinstance(value, numba.core.ir.Expr) and value.op in ("make_function", "build_list"):
                return True
            if isinstance(value, (numba.core.ir.Global, numba.core.ir.FreeVar)) and (
                    value.value is functools.reduce or type(value.value).__name__ == "StencilFunc"):
                return True
    return False


# numba's rewrites after type inference: the ones _may_rewrite knows when they can match (another library that
# registers one more makes the pass run always)
_KNOWN_REWRITES = {"RewriteArrayExprs", "RewriteArrayOfConsts", "RewriteStringLiteralGetitems",
                   "RewriteStringLiteralSetitems"}


def _may_rewrite(state: object) -> bool:
    """Whether numba's rewrites after type inference (NopythonRewrites) can match this typed IR: an operator or a
    ufunc call on arrays (array expressions), a list (``np.array`` of constants), a string literal index (record
    fields). Launchers index arrays element by element, so most have none of these."""
    rewrites = numba.core.rewrites.rewrite_registry.rewrites["after-inference"]
    if {type(r).__name__ if not isinstance(r, type) else r.__name__ for r in rewrites} - _KNOWN_REWRITES:
        return True
    typemap = state.typemap  # type: ignore[attr-defined]
    literal = numba.types.StringLiteral
    for block in state.func_ir.blocks.values():  # type: ignore[attr-defined]
        for stmt in block.body:
            if isinstance(stmt, numba.core.ir.SetItem) and isinstance(typemap.get(stmt.index.name), literal):
                return True
            value = getattr(stmt, "value", None)
            if not isinstance(value, numba.core.ir.Expr):
                continue
            if value.op == "build_list" or (value.op == "getitem"
                                            and isinstance(typemap.get(value.index.name), literal)):
                return True
            if isinstance(stmt, numba.core.ir.Assign) and isinstance(typemap.get(stmt.target.name), numba.types.Array):
                if value.op in ("unary", "binop"):
                    return True
                if value.op == "call" and isinstance(typemap.get(value.func.name), numba.types.Function) and \
                        isinstance(typemap[value.func.name].typing_key, np.ufunc):
                    return True
    return False


@numba.core.compiler_machinery.register_pass(mutates_CFG=True, analysis_only=False)
class _InlineClosuresIfAny(numba.core.untyped_passes.InlineClosureLikes):
    """numba's closure inliner, skipped where it cannot change the IR (see _may_inline_closures)."""

    _name = "nbkit_inline_closure_likes_if_any"

    def run_pass(self, state: object) -> bool:
        return _may_inline_closures(state.func_ir) and super().run_pass(state)  # type: ignore[attr-defined]


@numba.core.compiler_machinery.register_pass(mutates_CFG=True, analysis_only=False)
class _RewritesIfAny(numba.core.typed_passes.NopythonRewrites):
    """numba's rewrites after type inference, skipped where none can match (see _may_rewrite)."""

    _name = "nbkit_nopython_rewrites_if_any"

    def run_pass(self, state: object) -> bool:
        return _may_rewrite(state) and super().run_pass(state)


_SKIPPABLE = {numba.core.untyped_passes.InlineClosureLikes: _InlineClosuresIfAny,
              numba.core.typed_passes.NopythonRewrites: _RewritesIfAny}


class _LauncherCompiler(numba.core.compiler.CompilerBase):
    """numba's nopython pipeline, the same passes in the same order, where two passes that cost about 6% of a
    launcher's compile time (0.04 s of 0.6 s: each walks the whole IR, with a liveness analysis) first look
    whether they can change anything: in the executor's launchers they rarely can, and then the IR, the machine
    code and the results are those of numba's own pipeline (tests/test_executor.py compares them)."""

    def define_pipelines(self) -> list:
        default = numba.core.compiler.DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm = numba.core.compiler_machinery.PassManager("nbkit launcher")
        for cls, what in default.passes:
            pm.add_pass(_SKIPPABLE.get(cls, cls), what)
        pm.finalize()
        return [pm]


# no_cfunc_wrapper: numba's C-callable wrapper (for passing a function to C or as a first-class function value)
# is never used here, launchers are called from Python and device functions from launchers; it cost a second
# function to lower and optimize per compile
_JIT = dict(nogil=True, boundscheck=True, no_cfunc_wrapper=True, pipeline_class=_LauncherCompiler)
_HELPERS = {f"_atomic_{op}": numba.njit(**_JIT)(globals()[f"_atomic_{op}"]) for op in _ATOMICS}


def _where(node: ast.AST) -> str:
    return f"line {getattr(node, 'lineno', '?')}"


_dotted = bounds.dotted


def _is_cuda_function(obj: object) -> bool:
    """A ``cuda.jit`` kernel or device function (compiled dispatcher or simulator kernel)."""
    return python_function(obj) is not obj and isinstance(python_function(obj), pytypes.FunctionType)


def _is_device_function(obj: object) -> bool:
    flag = getattr(obj, "_device", None)
    if flag is None:
        flag = getattr(obj, "targetoptions", {}).get("device", False)
    return bool(flag)


_ATOMS = (str, int, float, complex, bytes, bool, type(None), type(Ellipsis))


def _tree_copy(value: object, memo: dict | None = None) -> object:
    """``copy.deepcopy`` for syntax trees (nodes, lists of them), faster: code generation copies kernel bodies for
    every lane and phase, and ``deepcopy``'s generic protocol cost about 0.1 s of a fresh process's first LeNet
    step (0.82-0.84 -> 0.73-0.76 s of CPU with every launcher on disk). Same result: nodes and lists are new, a node
    met twice is copied once (``memo``, as ``deepcopy`` keeps it), any other value goes to ``deepcopy``."""
    if memo is None:
        memo = {}
    if isinstance(value, _ATOMS):
        return value
    done = memo.get(id(value))
    if done is not None:
        return done
    if isinstance(value, ast.AST):
        new = value.__class__.__new__(value.__class__)
        memo[id(value)] = new
        fields = new.__dict__
        for k, v in value.__dict__.items():
            fields[k] = v if isinstance(v, _ATOMS) else _tree_copy(v, memo)
        return new
    if isinstance(value, list):
        out: list = []
        memo[id(value)] = out
        out.extend(v if isinstance(v, _ATOMS) else _tree_copy(v, memo) for v in value)
        return out
    return copy.deepcopy(value, memo)


def _expr(text: str) -> ast.expr:
    return ast.parse(text, mode="eval").body


class _Lower(ast.NodeTransformer):
    """Replace ``cuda.*`` intrinsics by CPU code; refuse what has no CPU meaning here."""

    def __init__(self, cuda_names: set[str], device_fns: dict[str, object], in_device: bool):
        self.cuda_names = cuda_names
        self.device_fns = device_fns
        self.in_device = in_device
        self.atomics = False

    def _cuda(self, node: ast.AST) -> list[str] | None:
        parts = _dotted(node)
        return parts[1:] if parts and parts[0] in self.cuda_names else None

    def _thread_index(self, node: ast.AST) -> None:
        if self.in_device:
            raise ExecutorUnsupported(f"a thread or block index inside a device function ({_where(node)}): "
                                      "pass the index as an argument")

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        parts = self._cuda(node)
        if parts is None:
            return self.generic_visit(node)
        if len(parts) == 2 and parts[0] in _INDEX and parts[1] in "xyz":
            self._thread_index(node)
            return ast.copy_location(ast.Name(_INDEX[parts[0]] + parts[1], ast.Load()), node)
        if parts == ["warpsize"]:
            return ast.copy_location(ast.Constant(32), node)
        if parts == ["laneid"]:
            self._thread_index(node)
            return ast.copy_location(_expr("(_t % 32)"), node)
        raise ExecutorUnsupported(f"cuda.{'.'.join(parts)} ({_where(node)}) has no CPU translation here")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.cuda_names:
            raise ExecutorUnsupported(f"the cuda module used as a value ({_where(node)})")
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        parts = self._cuda(node.func)
        if parts is None:
            callee = node.func.id if isinstance(node.func, ast.Name) else None
            if callee in self.device_fns and not _is_device_function(self.device_fns[callee]):
                raise ExecutorUnsupported(f"a kernel launched from a kernel ({callee}, {_where(node)})")
            return self.generic_visit(node)
        node.args = [self.visit(a) for a in node.args]
        name = ".".join(parts)
        args = node.args
        if node.keywords:
            raise ExecutorUnsupported(f"keyword arguments to cuda.{name} ({_where(node)})")
        if name in ("grid", "gridsize"):
            if len(args) != 1 or not isinstance(args[0], ast.Constant) or args[0].value not in (1, 2, 3):
                raise ExecutorUnsupported(f"cuda.{name} needs a literal 1, 2 or 3 ({_where(node)})")
            self._thread_index(node)
            axes = "xyz"[:args[0].value]
            terms = [f"(_b{a} * _bd{a} + _t{a})" if name == "grid" else f"(_bd{a} * _gd{a})" for a in axes]
            text = terms[0] if len(terms) == 1 else "(" + ", ".join(terms) + ")"
            return ast.copy_location(_expr(text), node)
        if name == "syncthreads":
            raise ExecutorUnsupported(f"cuda.syncthreads() used as a value or inside a device function "
                                      f"({_where(node)})")
        if name in _NOOPS:
            return ast.copy_location(ast.Constant(None), node)
        if name == "local.array":  # poisoned like the simulator's: a read before any write shows in the output
            return ast.copy_location(ast.Call(ast.Name("_poisoned", ast.Load()),
                                              [ast.Call(_expr("np.empty"), args, [])], []), node)
        if name == "shared.array":
            raise ExecutorUnsupported(f"cuda.shared.array must be assigned to a name at the top of the kernel "
                                      f"body ({_where(node)})")
        if name == "const.array_like" and len(args) == 1:
            return args[0]
        if parts[0] == "atomic" and len(parts) == 2 and parts[1] in _ATOMICS and len(args) == 3:
            self.atomics = True
            return ast.copy_location(ast.Call(ast.Name(f"_atomic_{parts[1]}", ast.Load()), args, []), node)
        if name == "fma" and len(args) == 3:  # as the simulator computes it: a * b + c, two roundings
            return ast.copy_location(ast.BinOp(ast.BinOp(args[0], ast.Mult(), args[1]), ast.Add(), args[2]), node)
        if name == "selp" and len(args) == 3:
            return ast.copy_location(ast.IfExp(args[0], args[1], args[2]), node)
        raise ExecutorUnsupported(f"cuda.{name}(...) ({_where(node)}) has no CPU translation here")


_RESERVED = {"_t", "_t0", "_nt", "_b0", "_b1", "_blk", "_where", "_ix", "_negp", "_spec", "_done", "_ret", "_probe",
             "BarrierDivergence",
             *(p + a for p in ("_t", "_b", "_bd", "_gd") for a in "xyz"), *(f"_atomic_{op}" for op in _ATOMICS)}
_FORBIDDEN = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.Global, ast.Nonlocal, ast.Try,
              ast.With, ast.Yield, ast.YieldFrom, ast.Await, ast.Delete)


def _check_constructs(fdef: ast.FunctionDef) -> None:
    clash = sorted(n for n in _names(fdef) | {a.arg for a in fdef.args.args}
                   if n in _RESERVED or n.endswith("__a") or n.startswith(("_p_", "_dt_", "_it_", "_launch_")))
    if clash:
        raise ExecutorUnsupported(f"names the executor reserves for its own loops: {clash}")
    for node in ast.walk(fdef):
        if node is not fdef and isinstance(node, _FORBIDDEN):
            raise ExecutorUnsupported(f"{type(node).__name__} inside a kernel ({_where(node)})")


# ---------------------------------------------------------------------------------------------- source and env

@dataclass
class _Source:
    fn: Callable
    fdef: ast.FunctionDef
    env: dict
    cuda_names: set[str]
    device_fns: dict[str, object] = field(default_factory=dict)
    text: str = ""  # the source as parsed (dedented)
    name: str = ""  # the function's __name__ when it was read (the launcher's name)


def _source(fn: Callable) -> _Source:
    """The kernel's tree and the globals it reads. Only names the body reads and never assigns (nor takes as a
    parameter) are kept from its globals and closure: nothing else can reach the generated code, and code
    generation then depends on no other global, as the disk record of it (:func:`_generation_key`) needs."""
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise ExecutorUnsupported(f"the source of {getattr(fn, '__name__', fn)!r} is not available ({exc})") from exc
    tree = ast.parse(text)
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        raise ExecutorUnsupported(f"{fn!r} is not a plain function")
    a = fdef.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults:
        raise ExecutorUnsupported("kernel parameters must be plain positional names (no defaults, *args or **kw)")
    fdef.decorator_list = []
    names, stored = set(), {x.arg for x in a.args}
    for n in ast.walk(fdef):
        if type(n) is ast.Name:
            names.add(n.id)
            if type(n.ctx) is not ast.Load:
                stored.add(n.id)
    every = dict(fn.__globals__)
    every.update(inspect.getclosurevars(fn).nonlocals)
    env = {name: every[name] for name in sorted(names - stored) if name in every}
    cuda_names = {name for name, value in env.items() if value is cuda}
    device_fns = {name: value for name, value in env.items() if _is_cuda_function(value)}
    return _Source(fn, fdef, env, cuda_names, device_fns, text, fn.__name__)


_SOURCES: dict[Callable, _Source] = {}  # python function -> its _Source, as first read (never changed: copy to edit)


def _cached_source(fn: Callable) -> _Source:
    """:func:`_source` once per function: the plan, the bounds proof and the disk record's key all see the same
    text and the same values of its globals (a second read could see a global changed in between)."""
    src = _SOURCES.get(fn)
    if src is None:
        src = _SOURCES.setdefault(fn, _source(fn))
    return src


_DEVICE_CACHE: dict[Callable, tuple[object, bool]] = {}  # python function -> (njit function, uses atomics)
_LOCK = threading.RLock()


def _device_njit(obj: object) -> tuple[object, bool]:
    """A ``@cuda.jit(device=True)`` function compiled for the CPU (its own intrinsics lowered too), and whether
    it (or a device function it calls) uses atomics."""
    fn = python_function(obj)
    with _LOCK:
        if fn in _DEVICE_CACHE:
            return _DEVICE_CACHE[fn]
        src = _source(fn)
        _check_constructs(src.fdef)
        lower = _Lower(src.cuda_names, src.device_fns, in_device=True)
        fdef = ast.fix_missing_locations(lower.visit(src.fdef))
        env, atomics = _cpu_env(src)
        code = ast.unparse(fdef)
        compiled = _njit(code, fdef.name, f"device function {fn.__name__}", env, numba_cache=False)
        _DEVICE_CACHE[fn] = (compiled, atomics or lower.atomics)
        return _DEVICE_CACHE[fn]


def _run_source(code: str, what: str, env: dict) -> None:
    """Define the functions of ``code`` (generated here from a kernel's own AST) in ``env``."""
    exec(compile(code, f"<nbkit executor: {what}>", "exec"), env)  # noqa: S102 - our own generated code


def _cpu_env(src: _Source) -> tuple[dict, bool]:
    """The globals of the CPU version, and whether the device functions it calls use atomics."""
    env = dict(src.env)
    atomics = False
    for name in src.cuda_names:
        env.pop(name)
    used = _names(src.fdef) - {src.fdef.name}  # only the device functions this one calls (not itself)
    for name, obj in src.device_fns.items():
        if name in used and _is_device_function(obj):
            env[name], uses = _device_njit(obj)
            atomics |= uses
    env.update(_HELPERS)
    env["np"] = np
    env["_poisoned"] = _poisoned
    env["BarrierDivergence"] = BarrierDivergence
    return env, atomics


# ---------------------------------------------------------------------------------------------- disk cache

# What the generated code's meaning depends on besides its own text and the values it reads: this module (the
# transform, the helpers), numba, llvmlite and NumPy. A change to any of them names new cache entries.
_VERSION = "|".join((diskcache.file_digest(__file__), numba.__version__, np.__version__,
                     importlib.import_module("llvmlite").__version__))
_KEYS: dict[int, tuple[object, str | None]] = {id(h): (h, f"helper {name}") for name, h in _HELPERS.items()}
_KEYS.update({id(h): (h, f"intrinsic {h._name}") for h in (_ix_record, _spec_none)})
_LOADED: dict[str, object] = {}  # content key -> njit function: the same code and values compile once
_LIBRARIES = ("builtins", "math", "cmath", "numpy", "numba")  # their objects are named by their versions
_DUNDERS = ("__name__", "__file__", "__spec__", "__loader__", "__package__", "__cached__", "__builtins__")


def _value_key(value: object) -> str | None:
    """A text that names ``value`` exactly as the compiled code sees it (numba freezes globals as constants), or
    None when it cannot be named safely (then nothing is cached on disk)."""
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, np.generic):
        return f"np:{value.dtype.str}:{value.tobytes().hex()}"
    if isinstance(value, np.dtype):
        return f"dtype:{value.str}"
    if isinstance(value, np.ndarray):
        return f"array:{value.dtype.str}:{value.shape}:{hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}"
    if isinstance(value, tuple):
        parts = [_value_key(v) for v in value]
        return None if None in parts else "tuple:(" + ",".join(parts) + ")"  # type: ignore[arg-type]
    if isinstance(value, pytypes.ModuleType):
        return f"module:{value.__name__}"
    if id(value) in _KEYS and _KEYS[id(value)][0] is value:
        return _KEYS[id(value)][1]
    if isinstance(value, numba.types.Type):
        return f"nbtype:{value!r}"
    module = "numpy" if isinstance(value, np.ufunc) else getattr(value, "__module__", None) or ""
    if (isinstance(value, (type, pytypes.BuiltinFunctionType, pytypes.FunctionType, np.ufunc))
            and (module.split(".")[0] in _LIBRARIES or module == __name__)):
        return f"object:{module}.{getattr(value, '__qualname__', getattr(value, '__name__', ''))}"
    return None


_READS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # code -> _reads(code)
_READS_MAX = 2_000  # a bound on memory (a long session compiling many kernels): past it the table starts afresh


def _reads(code: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names ``code`` may read from its globals (every name it neither assigns nor takes as a parameter nor
    defines, sorted) and its dotted attribute chains (``np.float32``, sorted): what :func:`_globals_key` looks up.
    A function of the text alone, computed once per text (one walk of its tree: launchers are long, and a fresh
    process keys each of them, its variants too) or taken from the disk record that holds the text
    (:func:`_load_generated`)."""
    got = _READS.get(code)
    if got is None:
        names, local, chains = set(), set(), set()
        for n in ast.walk(ast.parse(code)):
            t = type(n)
            if t is ast.Name:
                names.add(n.id)
                if type(n.ctx) is not ast.Load:
                    local.add(n.id)
            elif t is ast.Attribute:
                p = _dotted(n)
                if p:
                    chains.add(".".join(p))
            elif t is ast.arguments:
                local.update(a.arg for a in (*n.posonlyargs, *n.args, *n.kwonlyargs))
            elif t is ast.FunctionDef:
                local.add(n.name)
        got = (tuple(sorted(names - local)), tuple(sorted(chains)))
        if len(_READS) >= _READS_MAX:
            _READS.clear()
        _READS[code] = got
    return got


def _globals_key(code: str, env: dict) -> str | None:
    """The values the generated code reads from its globals (names and module attributes), as one text."""
    free, dotted = _reads(code)
    names = [n for n in free if n in env]
    present = set(names)
    chains = [c for c in dotted if (root := c.split(".", 1)[0]) in present
              and isinstance(env[root], pytypes.ModuleType)]
    parts = []
    for name in names + chains:
        root, *attrs = name.split(".")
        value: object = env[root]
        for attr in attrs:
            value = getattr(value, attr, None)
        key = _value_key(value)
        if key is None:
            return None
        parts.append(f"{name}={key}")
    return "\n".join(parts)


def _content_key(code: str, env: dict, *extra: str) -> str | None:
    values = _globals_key(code, env)
    return None if values is None else diskcache.digest(_VERSION, code, values, *extra)


def _load_module(folder: object, key: str, code: str, what: str, env: dict) -> pytypes.ModuleType | None:
    """``code`` as an importable module file named by its key (numba's cache and its pickled environments need a
    real file and an importable module), its globals ``env``; None if the file cannot be written or read.

    The key names the file's whole text, its ``what`` header too (:func:`_njit`), so a file of that name holding
    anything else was changed outside nbkit: it is replaced (atomically), not bypassed by compiling in memory."""
    name = f"nbkit_cpu_{key[:40]}"
    if name in sys.modules:
        return sys.modules[name]
    path = folder / f"{name}.py"  # type: ignore[operator]
    text = f"# nbkit CPU executor: {what}. Generated; safe to delete (see nbkit/core/diskcache.py)\n{code}"
    try:
        if not diskcache.write_exact(path, text):
            return None
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        module.__dict__.update({k: v for k, v in env.items() if k not in _DUNDERS})
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except OSError:
        sys.modules.pop(name, None)
        return None
    return module


def _njit(code: str, name: str, what: str, env: dict, numba_cache: bool = True, boundscheck: bool = True) -> object:
    """The njit function ``name`` defined by ``code`` with globals ``env`` (``boundscheck=False``: the variant
    without numba's bounds checks, for launches proven in bounds; a cache entry of its own).

    With the disk cache (:mod:`nbkit.core.diskcache`) the code becomes a module file named by a hash of the
    code, of every value it reads and of the versions, compiled with numba's ``cache=True``: a later process
    loads the machine code instead of compiling (seconds per kernel). Without it (turned off, not writable,
    a value that cannot be named): compiled in memory, as it always was.
    """
    folder = diskcache.cache_dir("cpu")
    flags = dict(_JIT, boundscheck=boundscheck)
    variant = () if boundscheck else ("boundscheck=False",)
    # ``what`` (the file's header) is part of the key: the same code under two labels is two files, each holding
    # exactly its own text (see _load_module)
    key = _content_key(code, env, *variant, f"what={what}") if folder is not None else None
    with _LOCK:
        if key is not None and key in _LOADED:
            return _LOADED[key]
        module = _load_module(folder, key, code, what, env) if key is not None else None
        if module is None:
            _run_source(code, what, env)
            compiled = numba.njit(**flags)(env[name])
        else:
            try:
                compiled = numba.njit(**flags, cache=numba_cache)(getattr(module, name))
            except RuntimeError:  # numba found no folder to cache in: compile in memory
                compiled = numba.njit(**flags)(getattr(module, name))
            _LOADED[key] = compiled  # type: ignore[index]
        _KEYS[id(compiled)] = (compiled, None if key is None else f"njit {key}")
        return compiled


def _cached_probe(code: str, env: dict, argtypes: tuple) -> dict[str, np.dtype] | None:
    """The probe's answer (per-thread variables' dtypes) stored by an earlier process, or None."""
    folder = diskcache.cache_dir("cpu")
    key = _content_key(code, env, repr(argtypes)) if folder is not None else None
    stored = diskcache.read_json(folder / f"probe_{key}.json") if key is not None else None  # type: ignore[operator]
    return {v: np.dtype(dt) for v, dt in stored.items()} if isinstance(stored, dict) else None


def _store_probe(code: str, env: dict, argtypes: tuple, dtypes: dict[str, np.dtype]) -> None:
    folder = diskcache.cache_dir("cpu")
    key = _content_key(code, env, repr(argtypes)) if folder is not None else None
    if key is not None:
        diskcache.write_json(folder / f"probe_{key}.json", {v: dt.str for v, dt in dtypes.items()})  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------- barriers

def _is_sync(node: ast.AST, cuda_names: set[str]) -> bool:
    if isinstance(node, ast.Expr):
        node = node.value
    if not isinstance(node, ast.Call):
        return False
    parts = _dotted(node.func)
    return bool(parts) and parts[0] in cuda_names and parts[1:] == ["syncthreads"]


def _has_sync(node: ast.AST, cuda_names: set[str]) -> bool:
    return any(_is_sync(n, cuda_names) for n in ast.walk(node))


def _is_shared_alloc(stmt: ast.stmt, cuda_names: set[str]) -> bool:
    if not (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)):
        return False
    parts = _dotted(stmt.value.func)
    return bool(parts) and parts[0] in cuda_names and parts[1:] == ["shared", "array"]


@dataclass
class _Seg:
    stmts: list[ast.stmt]
    in_loop: bool


@dataclass
class _Loop:
    stmt: ast.For | ast.While  # the header; its body is `pieces`
    pieces: list


def _split(stmts: list[ast.stmt], cuda_names: set[str], in_loop: bool, shared: list, top: bool) -> list:
    """The body as thread segments (no barrier inside) and block-uniform loops that contain barriers."""
    pieces: list = []
    current: list[ast.stmt] = []

    def flush() -> None:
        if current:
            pieces.append(_Seg(list(current), in_loop))
            current.clear()

    for stmt in stmts:
        if _is_shared_alloc(stmt, cuda_names):
            if not top or len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                raise ExecutorUnsupported(f"cuda.shared.array must be assigned to one name at the top level of "
                                          f"the kernel body ({_where(stmt)})")
            shared.append(stmt)
        elif _is_sync(stmt, cuda_names):
            flush()
        elif _has_sync(stmt, cuda_names):
            if isinstance(stmt, (ast.For, ast.While)) and not stmt.orelse:
                flush()
                pieces.append(_Loop(stmt, _split(stmt.body, cuda_names, True, shared, False)))
            else:
                raise ExecutorUnsupported(
                    f"cuda.syncthreads() inside {type(stmt).__name__.lower()} ({_where(stmt)}): the executor "
                    f"splits the body only at barriers at the top level or in block-uniform for/while loops")
        else:
            if any(_is_shared_alloc(s, cuda_names) for s in ast.walk(stmt) if isinstance(s, ast.stmt)):
                raise ExecutorUnsupported(f"cuda.shared.array inside a nested statement ({_where(stmt)})")
            current.append(stmt)
    flush()
    return pieces


def _segments(pieces: list) -> list[_Seg]:
    out = []
    for p in pieces:
        out.extend([p] if isinstance(p, _Seg) else _segments(p.pieces))
    return out


def _loops(pieces: list) -> list[_Loop]:
    out = []
    for p in pieces:
        if isinstance(p, _Loop):
            out.append(p)
            out.extend(_loops(p.pieces))
    return out


def _names(node: ast.AST | list, ctx: type | None = None) -> set[str]:
    nodes = node if isinstance(node, list) else [node]
    return {n.id for x in nodes for n in ast.walk(x)
            if isinstance(n, ast.Name) and (ctx is None or isinstance(n.ctx, ctx))}


def _header(loop: _Loop) -> list[ast.AST]:
    return [loop.stmt.iter] if isinstance(loop.stmt, ast.For) else [loop.stmt.test]


def _defines_first(stmts: list[ast.stmt], name: str) -> bool:
    """Whether the first top-level statement that mentions ``name`` assigns it without reading it."""
    for stmt in stmts:
        if name not in _names(stmt):
            continue
        if isinstance(stmt, ast.Assign):
            return name in _names(stmt.targets, ast.Store) and name not in _names(stmt.value) \
                and name not in _names(stmt.targets, ast.Load)
        if isinstance(stmt, ast.For):
            return _names(stmt.target) >= {name} and name not in _names(stmt.iter)
        return False
    return False


class _ToArrays(ast.NodeTransformer):
    """Per-thread variables ``v`` become ``v__a[index]``."""

    def __init__(self, arrays: set[str], index: str):
        self.arrays = arrays
        self.index = index

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.arrays:
            return ast.copy_location(ast.Subscript(ast.Name(node.id + "__a", ast.Load()),
                                                   ast.Name(self.index, ast.Load()), node.ctx), node)
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        if isinstance(node.target, ast.Name) and node.target.id in self.arrays:
            tmp = f"_it_{node.target.id}"
            node.body.insert(0, ast.Assign([ast.Name(node.target.id, ast.Store())], ast.Name(tmp, ast.Load())))
            node.target = ast.Name(tmp, ast.Store())
        return self.generic_visit(node)


def _fix_returns(stmts: list[ast.stmt], depth: int, on_return: list[ast.stmt]) -> tuple[list[ast.stmt], bool]:
    """A thread's ``return``: at segment level, ``on_return`` + continue (next thread); inside loops, a flag
    and ``break`` out of each loop."""
    out: list[ast.stmt] = []
    found = False
    for stmt in stmts:
        if isinstance(stmt, ast.Return):
            if stmt.value is not None and not (isinstance(stmt.value, ast.Constant) and stmt.value.value is None):
                raise ExecutorUnsupported(f"a kernel returns a value ({_where(stmt)})")
            found = True
            out.extend([*on_return, ast.Continue()] if depth == 0 else
                       [ast.parse("_ret = True").body[0], ast.Break()])
            continue
        if isinstance(stmt, (ast.Break, ast.Continue)) and depth == 0:
            raise ExecutorUnsupported(f"{type(stmt).__name__.lower()} of a loop that contains a barrier "
                                      f"({_where(stmt)})")
        if isinstance(stmt, ast.If):
            stmt.body, f1 = _fix_returns(stmt.body, depth, on_return)
            stmt.orelse, f2 = _fix_returns(stmt.orelse, depth, on_return)
            found |= f1 or f2
            out.append(stmt)
        elif isinstance(stmt, (ast.For, ast.While)):
            stmt.body, inner = _fix_returns(stmt.body, depth + 1, on_return)
            if inner and stmt.orelse:
                raise ExecutorUnsupported(f"return inside a loop with an else clause ({_where(stmt)})")
            out.append(stmt)
            if inner:
                found = True
                exit_ = [ast.Break()] if depth > 0 else [*on_return, ast.Continue()]
                out.append(ast.If(ast.Name("_ret", ast.Load()), exit_, []))
        else:
            out.append(stmt)
    return out, found


# ---------------------------------------------------------------------------------------------- code generation

# Lanes: in the unchecked launcher of a kernel without barriers, LANES consecutive threads along threadIdx.x run
# interleaved ("unroll and jam" of the thread loop, as POCL does for work-items): each thread keeps its own copy of
# every local (``acc`` -> ``acc__l0`` .. ``acc__l3``), a loop over a range all lanes agree on runs once for all of
# them, and an ``if`` all lanes agree on is taken once; a name every lane computes alike is one copy (:func:`_uniform`),
# so a loop or a test on it needs no comparison of the lanes. A convolution thread's sum is one long chain of dependent
# float additions (each waits for the previous, 4 cycles); four threads' chains interleaved keep the adder busy:
# conv forward 2.2-2.6x faster. Every thread computes exactly its own operations in its own order, so results are
# bit-identical. What stays exact whatever the kernel does: lanes interleave only statements that write nothing
# (no store to an array, no call that may write); from the first statement that may write, each lane runs the
# rest of its body in turn, lane 0 first, as the plain thread loop does; a loop or an ``if`` whose lanes disagree
# runs each lane's copy in turn (a loop that only adds into sums: once over the union of the lanes' ranges, see
# _masked_union). So stores happen in the same order, and a read can come earlier only from an array
# no statement of the kernel writes, and only when it shares no memory with an array written (checked per launch:
# :func:`run_on_cpu`). Any other shape (a store inside a loop, a ``return``) keeps the plain thread loop.
LANES = 4


@contextlib.contextmanager
def _slp_vectorize() -> Iterator[None]:
    """LLVM's SLP vectorizer on while a lanes launcher compiles (numba turns it off by default, and reads the
    setting when it builds its pass managers, under its compiler lock). It packs the lanes' identical operations
    on consecutive elements into vector instructions: conv forward 6.3 -> 3.9 ms at LeNet conv1, batch 64. It
    does not reorder floating-point operations (no fast-math), so the results are the same bits."""
    with global_compiler_lock:
        before = numba.core.config.SLP_VECTORIZE
        numba.core.config.SLP_VECTORIZE = 1
        try:
            yield
        finally:
            numba.core.config.SLP_VECTORIZE = before


class _NoJam(Exception):
    """The segment keeps the plain thread loop (see LANES)."""


_PURE_HELPERS = {"range", "len", "bool", "_poisoned", "_spec"}  # _spec writes only in checked launchers


def _resolved(parts: list[str], env: dict) -> object:
    """The object a dotted name (``math.sqrt``) names in the kernel's globals or builtins; None if it is not there
    or reaches through something other than a module."""
    value: object = env.get(parts[0], getattr(builtins, parts[0], None))
    for attr in parts[1:]:
        if not isinstance(value, pytypes.ModuleType):
            return None
        value = getattr(value, attr, None)
    return value


def _pure_call(node: ast.Call, env: dict) -> bool:
    parts = _dotted(node.func)
    if not parts:
        return False
    if len(parts) == 1 and parts[0] in _PURE_HELPERS:
        return True
    if parts == ["np", "empty"]:
        return True
    value = _resolved(parts, env)
    if isinstance(value, np.ufunc) and len(node.args) > value.nin:
        return False  # the extra argument is an output array
    return value is not None and bounds.pure_callable(value)


def _writes(stmt: ast.AST, env: dict) -> bool:
    """Whether ``stmt`` may write memory: a store to a subscript, or a call not known to be pure."""
    for n in ast.walk(stmt):
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store):
            return True
        if isinstance(n, ast.Call) and not _pure_call(n, env):
            return True
    return False


class _Rename(ast.NodeTransformer):
    """``names`` as lane ``lane``'s (``acc`` -> ``acc__l2``); ``strip``: names already a lane's become lane
    ``lane``'s (``f__l2`` -> ``f__l0``)."""

    def __init__(self, names: set[str], lane: int, strip: bool = False):
        self.names, self.lane, self.strip = names, lane, strip

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.names:
            base = re.sub(r"__l\d+$", "", node.id) if self.strip else node.id
            return ast.copy_location(ast.Name(f"{base}__l{self.lane}", node.ctx), node)
        return node


def _jam(body: list[ast.stmt], env: dict, lanes: int, split: list[ast.stmt] | None = None, first_tag: int = 0
         ) -> tuple[list[ast.stmt], set[str], set[str]]:
    """One thread's statements as ``lanes`` threads' (see LANES), the names of the arrays the interleaved part
    reads and of those the kernel writes; raises :class:`_NoJam` where that would not be exact. ``split``: what
    runs instead where the lanes disagree on the body's last statement, an ``if`` (see WIDE); ``first_tag``: the
    number after which its tags (``_jam_<n>``) are counted."""
    for n in ast.walk(ast.Module(body, [])):
        if isinstance(n, (ast.Return, ast.Break, ast.Continue, ast.While)):
            raise _NoJam(type(n).__name__)
        if isinstance(n, ast.Name) and (n.id.startswith("_jam_") or re.search(r"__l\d+$", n.id)):
            raise _NoJam(n.id)
    per_lane = (_names(body, ast.Store) - _uniform(body, env)) | {"_tx", "_t"}
    unit = _unit_names(body, env, per_lane)
    apart = unit | {"_t"}  # never the same in two lanes
    kernel_stores, loads = _names(body, ast.Store), _loads(ast.Module(body, []))
    around: list[set[str]] = []  # the names each loop around the statement being jammed assigns, innermost last

    def reads_memory(node: ast.AST) -> bool:  # an array element (not a .shape entry)
        return any(isinstance(m, ast.Subscript) and isinstance(m.ctx, ast.Load)
                   and not (isinstance(m.value, ast.Attribute) and m.value.attr == "shape") for m in ast.walk(node))

    data: set[str] = set()  # locals computed from values read from arrays (a fixpoint)
    while True:
        before = len(data)
        for n in ast.walk(ast.Module(body, [])):
            source = n.value if isinstance(n, (ast.Assign, ast.AugAssign)) else n.iter if isinstance(n, ast.For) else None
            if source is not None and (_names(source) & data or reads_memory(source)):
                data |= _names(n.targets if isinstance(n, ast.Assign) else [n.target], ast.Store)
        if len(data) == before:
            break
    reads: set[str] = set()
    writes: set[str] = set()
    counter = [first_tag]
    guard: list[str | None] = [None]  # inside a speculative copy: the tag of the lanes' flags (see if_)

    def lane(node: ast.AST, k: int) -> ast.AST:
        return _Rename(per_lane, k).visit(_tree_copy(node))

    def each(stmts: list[ast.stmt]) -> list[ast.stmt]:
        """Each lane's copy of ``stmts`` in turn, lane 0 first (the plain thread loop's order)."""
        for node in stmts:
            for n in ast.walk(node):
                if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name):
                    writes.add(n.value.id)
                if isinstance(n, ast.Call) and not _pure_call(n, env):
                    writes.update(a.id for a in n.args if isinstance(a, ast.Name))
        if guard[0] is not None:  # speculative lanes: each lane's writes only where its test held
            return [ast.If(ast.Name(f"{guard[0]}__l{k}", ast.Load()), [lane(t, k) for t in stmts], [])
                    for k in range(lanes)]
        return [lane(t, k) for k in range(lanes) for t in stmts]

    def read(node: ast.AST) -> None:
        reads.update(n.value.id for n in ast.walk(node) if isinstance(n, ast.Subscript)
                     and isinstance(n.value, ast.Name))

    def if_(st: ast.If, tag: str, in_loop: bool, last: bool = False) -> list[ast.stmt]:
        """``last``: ``st`` is the body's last statement (nothing follows it, and nothing before it wrote)."""
        read(st.test)
        if not _names(st.test) & per_lane:  # all lanes agree
            return [ast.If(st.test, jam(st.body, in_loop) or [ast.Pass()], jam(st.orelse, in_loop))]
        if in_loop and (_names(st.test) & data or reads_memory(st.test)):
            raise _NoJam("a test on data inside a loop")  # lanes would mostly disagree (a max-pool: 4x slower)
        flags = [ast.Assign([ast.Name(f"{tag}__l{k}", ast.Store())],
                            ast.Call(ast.Name("bool", ast.Load()), [lane(st.test, k)], [])) for k in range(lanes)]
        every = _expr(" and ".join(f"{tag}__l{k}" for k in range(lanes)))
        none = _expr("not (" + " or ".join(f"{tag}__l{k}" for k in range(lanes)) + ")")
        apart = [ast.If(ast.Name(f"{tag}__l{k}", ast.Load()), [lane(b, k) for b in st.body],
                        [lane(b, k) for b in st.orelse]) for k in range(lanes)]
        each(st.body + st.orelse)  # records the writes of the lanes taken apart
        if last and split is not None:
            apart = split
        if last and lanes == LANES and not st.orelse and guard[0] is None:
            tests = _speculable(st.body, env, lanes, per_lane, unit, kernel_stores)
            if tests is not None:  # every lane runs the branch, each writing only where its test held
                guard[0] = tag
                try:
                    speculative = jam(st.body, in_loop) or [ast.Pass()]
                finally:
                    guard[0] = None
                # where every lane's test held it is the branch itself (every write runs): one copy for both
                # (a copy of the conv forward's branch each cost 0.8 s of its lanes launcher's compile)
                run = ast.BoolOp(ast.Or(), [every, *tests]) if tests else None
                return [*flags, ast.If(none, [ast.Pass()], speculative if run is None else [
                    ast.If(run, speculative, apart)])]
        mixed = ast.If(none, jam(st.orelse, in_loop) or [ast.Pass()], apart)
        return [*flags, ast.If(every, jam(st.body, in_loop) or [ast.Pass()], [mixed])]

    def shared(loop: ast.For) -> list[ast.stmt]:
        """``loop`` (run once for all lanes, outermost), and before it, where lanes may agree at run time on names
        that alone make an element they read differ (the weight gradient's ``f`` in ``dy[n, f, i, j]``: f is
        t // (C * KH * KW), the same for most groups of consecutive threads), a copy taken when they do, reading
        lane 0's: one load instead of one per lane (weight gradient at LeNet conv1, batch 64: 5.1 -> 4.2 ms).
        Names that differ in every group (the lane's x index plus a shared value, see WIDE) are not tested."""
        stored = _names(loop, ast.Store)
        names: set[str] = set()
        for n in ast.walk(loop):
            if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load) and isinstance(n.value, ast.Name):
                mine = {m for m in _names(n.slice) if re.search(r"__l\d+$", m)}
                bases = {re.sub(r"__l\d+$", "", m) for m in mine}
                every = {f"{v}__l{k}" for v in bases for k in range(lanes)}  # loop-invariant in every lane
                if len(bases) == 1 and not every & stored and not bases & apart:
                    names |= bases
        if not names:
            return [loop]
        same = _expr(" and ".join(f"{v}__l0 == {v}__l{k}" for v in sorted(names) for k in range(1, lanes)))
        one = _Rename({f"{v}__l{k}" for v in names for k in range(1, lanes)}, 0, strip=True)
        return [ast.If(same, [one.visit(_tree_copy(loop))], [loop])]

    def for_(st: ast.For, tag: str, in_loop: bool = True) -> list[ast.stmt]:
        read(st.iter)
        around.append(_names(st, ast.Store))
        inner = [lane(ast.Assign([ast.Name(st.target.id, ast.Store())], ast.Name(tag, ast.Load())), k)
                 for k in range(lanes if st.target.id in per_lane else 1)] + jam(st.body, True)
        around.pop()
        if not _names(st.iter.args) & per_lane:
            loop = ast.For(ast.Name(tag, ast.Store()), st.iter, inner, [])
            return [loop] if in_loop else shared(loop)
        out: list[ast.stmt] = []
        for a, arg in enumerate(st.iter.args):
            out += [ast.Assign([ast.Name(f"{tag}_{a}__l{k}", ast.Store())], lane(arg, k)) for k in range(lanes)]
        agree = _expr(" and ".join(f"{tag}_{a}__l0 == {tag}_{a}__l{k}" for a in range(len(st.iter.args))
                                   for k in range(1, lanes)))
        args = [ast.Name(f"{tag}_{a}__l0", ast.Load()) for a in range(len(st.iter.args))]
        together = ast.For(ast.Name(tag, ast.Store()), ast.Call(ast.Name("range", ast.Load()), args, []), inner, [])
        apart: list[ast.stmt] = [lane(st, k) for k in range(lanes)]
        masked = _masked_union(st, tag, lanes, per_lane, lane, unit, kernel_stores, around[-1] if around else set(),
                               loads)
        if masked is not None:
            apart = [ast.If(masked[0], masked[1], apart)]
        return [*out, ast.If(agree, [together], apart)]

    def jam(stmts: list[ast.stmt], in_loop: bool, top: bool = False) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for i, st in enumerate(stmts):
            counter[0] += 1
            tag = f"_jam_{counter[0]}"
            last = top and i == len(stmts) - 1
            if _writes(st, env):
                if in_loop:
                    raise _NoJam("a write inside a loop")
                # nothing follows: its branches interleave up to their own first write (in a speculative copy,
                # each lane's writes run apart, under its flag)
                if isinstance(st, ast.If) and i == len(stmts) - 1 and guard[0] is None:
                    out += if_(st, tag, in_loop, last)
                    return out
                return out + each(stmts[i:])  # from the first write on, each lane's rest in turn
            if (isinstance(st, ast.For) and isinstance(st.target, ast.Name) and not st.orelse
                    and isinstance(st.iter, ast.Call) and _dotted(st.iter.func) == ["range"]
                    and not st.iter.keywords and 1 <= len(st.iter.args) <= 3):
                out += for_(st, tag, in_loop)
            elif isinstance(st, ast.If):
                out += if_(st, tag, in_loop, last)
            else:
                read(st)
                out += [lane(st, k) for k in range(lanes if _names(st) & per_lane else 1)]
        return out

    jammed = jam(body, False, top=True)
    if not any(isinstance(n, ast.For) and isinstance(n.target, ast.Name) and n.target.id.startswith("_jam_")
               for st in jammed for n in ast.walk(st)):
        raise _NoJam("no loop run once for all lanes")  # nothing to overlap: lanes only add their tests
    if reads & writes:
        raise _NoJam(f"{sorted(reads & writes)} read before the writes and written")
    return jammed, reads, writes


# Masked union: a loop whose bounds differ per lane (the conv input gradient's shrunk ``for q``: at a map's edges,
# three of every four groups of lanes disagree) whose body only assigns names and adds into accumulators runs once
# over the union of the lanes' ranges instead of once per lane in turn (one chain of vector additions instead of
# four scalar ones). Each lane computes at its own iteration value clamped into its range (an iteration it runs
# anyway, so every index it reads is one it reads in the plain loop) and keeps the sum only where the clamped value
# is the loop's: ``acc = v if q == t else acc`` (a select: the old value itself, not ``+ 0.0``, so -0.0, NaN and
# the order of additions stay exact). A read whose index depends on no per-lane name but the loop variable uses the
# loop's value: every value of the union is in some lane's range (taken only where the ranges share a point), so
# it is an element some lane reads; one load for the four lanes (without that, per-lane loads: 6.8 ms, no gain).
# Where every read is such or is at the lane's x index plus shared values in its last entry (``dy[n, f, i, col -
# q]``), every lane computes at the loop's value instead (_consecutive): consecutive elements, one vector load
# instead of a gather, up to LANES - 1 elements past a row's ends where a lane is outside its range, so only where
# a test before the loop shows those reads inside the array (else each lane's loop in turn); the values read there
# are discarded by the select. LeNet's conv2 input gradient, batch 64, one thread: 6.2-6.6 -> 4.8-5.3 ms.
# After the loop each lane's names hold their last iteration's values, as in the plain loop.
_EXACT_OPS = (ast.Add, ast.Sub, ast.Mult, ast.USub, ast.UAdd)


def _exact(e: ast.AST) -> bool:
    """Only operations that cannot raise on another state's values (+, -, *, reads): see the masked union."""
    if isinstance(e, ast.BinOp):
        return isinstance(e.op, _EXACT_OPS) and _exact(e.left) and _exact(e.right)
    if isinstance(e, ast.UnaryOp):
        return isinstance(e.op, _EXACT_OPS) and _exact(e.operand)
    if isinstance(e, ast.Subscript):
        return (isinstance(e.value, ast.Name) and isinstance(e.ctx, ast.Load)
                and not any(isinstance(n, (ast.Call, ast.NamedExpr, ast.Lambda)) for n in ast.walk(e)))
    return isinstance(e, (ast.Name, ast.Constant))


class _Replace(ast.NodeTransformer):
    """The name ``old`` as ``new``."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


def _loads(node: ast.AST) -> collections.Counter:
    """How often each name is read in ``node``."""
    return collections.Counter(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))


def _stmt(text: str) -> ast.stmt:
    return ast.parse(text).body[0]


def _consecutive(st: ast.For, q: str, lanes: int, per_lane: set[str], unit: set[str], stored: set[str],
                 varying: set[str]) -> list[ast.expr] | None:
    """Whether the masked union of ``st`` (loop variable ``q``) may read at the loop's value ``t`` in every lane
    (consecutive elements: one vector load instead of a gather), and the tests that make that safe, evaluated
    before the loop; None where it may not.

    With q = t in every lane, a name the body computes from q and names every lane shares is the same in every
    lane, and one computed as a unit name plus such values is the lane's x index plus a shared value (_is_unit).
    Each read must then be at an index whose entries are all the same in every lane (the element read by the lane
    whose range holds t: in bounds, the launch being proven), or whose last entry is unit and other entries are
    the same in every lane: lane k then reads in the row that lane k' reads, at its last entry plus k - k', so
    within lanes - 1 elements of that row (after numba's wrap of a negative index too). Such reads stay inside the
    array's memory where it is C-contiguous, its last stride its item size, and the part of it that the leading
    entries the enclosing loop does not change (``varying``: the names it assigns) select has lanes - 1 elements
    before and after it: the tests (a test that changes in the innermost loop around the union costs, as LLVM no
    longer takes the tests out of it: LeNet's conv2 input gradient with the exact row's test 6.1 ms, 5.0 without).
    The values read outside the rows only go into sums the select discards; assigned values and the sums' terms
    are + - * of names and reads, which cannot raise on them."""
    same = {q}
    units = set(unit)
    for b in st.body:
        if isinstance(b, ast.Assign):
            if not _exact(b.value):
                return None
            if not _names(b.value) & (per_lane - same):
                same.add(b.targets[0].id)
            elif _is_unit(b.value, units, per_lane - same):
                units.add(b.targets[0].id)
    tests: list[ast.expr] = []
    for b in st.body:
        if not _row_reads(b.value, per_lane - same, units, stored, lanes, per_lane | varying, tests):
            return None
    return tests


def _row_reads(e: ast.AST, per_lane: set[str], unit: set[str], stored: set[str], lanes: int, changing: set[str],
               tests: list[ast.expr]) -> bool:
    """Whether every array read in ``e`` that names a value of ``per_lane`` stays within ``lanes - 1`` elements of the
    element another lane reads: a parameter (not in ``stored``) read at an index whose entries but the last are the
    same in every lane and whose last is the lane's x index plus shared values (_is_unit over ``unit``). Each such
    read's _row_test (``changing``: names that change between the tests and the reads) joins ``tests`` once. A read
    with a slice or a starred index never qualifies. One rule for the masked union and the speculative lanes."""
    for n in ast.walk(e):
        if not (isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load)):
            continue
        index = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
        if any(isinstance(x, (ast.Slice, ast.Starred)) for x in index):
            return False
        if not _names(index) & per_lane:
            continue  # the same element in every lane
        if (not isinstance(n.value, ast.Name) or n.value.id in stored or not _is_unit(index[-1], unit, per_lane)
                or any(_names(x) & per_lane for x in index[:-1])):
            return False
        test = _row_test(n.value.id, index, lanes, changing)
        if test is None:
            return False
        if ast.dump(test) not in {ast.dump(t) for t in tests}:
            tests.append(test)
    return True


def _row_test(a: str, index: list[ast.expr], lanes: int, changing: set[str]) -> ast.expr | None:
    """A test that the part of array ``a`` selected by the leading entries of ``index`` up to the first that
    names one of ``changing`` (its value is known before the loop or statement the test guards) has ``lanes - 1``
    elements before and after it inside the array, which is C-contiguous with its last stride its item size: then
    a read at that index with its last entry up to ``lanes - 1`` elements off stays inside the array's memory.
    None where no leading entry qualifies (the whole array: its first row has no element before it)."""
    fixed = []  # the leading entries, up to the first that changes
    for e in index[:-1]:
        if _names(e) & changing or not _exact(e) or any(isinstance(m, ast.Subscript) for m in ast.walk(e)):
            break
        fixed.append(f"({ast.unparse(e)})")
    if not fixed:
        return None
    m = len(index) - 1
    part = " * ".join(f"{a}.shape[{d}]" for d in range(len(fixed), m + 1))  # elements of the part selected
    number = fixed[0]  # the part's number among the array's parts of that size
    for d, e in enumerate(fixed[1:], 1):
        number = f"({number}) * {a}.shape[{d}] + {e}"
    return _expr(" and ".join([f"{a}.flags.c_contiguous", f"{a}.strides[{m}] == {a}.itemsize",
                               *(f"{e} >= 0" for e in fixed), f"{lanes - 1} <= ({number}) * ({part})",
                               f"(({number}) + 1) * ({part}) + {lanes - 1} <= {a}.size"]))


def _speculable(body: list[ast.stmt], env: dict, lanes: int, per_lane: set[str], unit: set[str],
                stored: set[str]) -> list[ast.expr] | None:
    """Whether the lanes of a group that disagree on the body's last ``if`` (``body``: its branch) may all run its
    statements up to the first write, interleaved, each lane's writes then running only where its test held (see
    SPECULATIVE LANES), and the tests that make that safe, evaluated before it; None where they may not.

    Every statement before the first write must be ``name = e``, ``name += e`` (``-=``, ``*=``) or a ``for`` over a
    ``range`` whose bounds every lane shares, with such statements inside: no test, so every lane runs the same
    iterations as a lane whose test held, and a statement that names no per-lane value computes what that lane
    computes. Where ``e`` names a per-lane value it is + - * of names, constants and reads (nothing that can raise on
    another lane's values), and each read that names one is at an index whose entries but the last are the same in
    every lane and whose last is the lane's x index plus shared values (_is_unit): within ``lanes - 1`` elements of
    the element a lane whose test held reads (in bounds: the launch is proven), inside the array where _row_test's
    test holds. ``stored``: names the kernel assigns (an array read must be a parameter)."""
    varying = _names(body, ast.Store)
    tests: list[ast.expr] = []

    def exact(e: ast.AST) -> bool:
        if not _names(e) & per_lane:
            return True  # what a lane whose test held computes
        return _exact(e) and _row_reads(e, per_lane, unit, stored, lanes, per_lane | varying, tests)

    def ok(stmts: list[ast.stmt]) -> bool:
        for st in stmts:
            if isinstance(st, ast.Assign):
                if len(st.targets) != 1 or not isinstance(st.targets[0], ast.Name) or not exact(st.value):
                    return False
            elif isinstance(st, ast.AugAssign):
                if (not isinstance(st.target, ast.Name) or not isinstance(st.op, (ast.Add, ast.Sub, ast.Mult))
                        or not exact(st.value)):
                    return False
            elif isinstance(st, ast.For):
                if (st.orelse or not isinstance(st.target, ast.Name) or not isinstance(st.iter, ast.Call)
                        or _dotted(st.iter.func) != ["range"] or st.iter.keywords or _names(st.iter) & per_lane
                        or not ok(st.body)):
                    return False
            else:
                return False
        return True

    first = next((i for i, st in enumerate(body) if _writes(st, env)), len(body))
    return tests if ok(body[:first]) else None


def _masked_union(st: ast.For, tag: str, lanes: int, per_lane: set[str], lane: Callable[[ast.AST, int], ast.AST],
                  unit: set[str], stored: set[str], varying: set[str], loads: collections.Counter
                  ) -> tuple[ast.expr, list[ast.stmt]] | None:
    """The test (the lanes' ranges share a point) and the loop over their union (see above) for ``st``, whose
    bounds (``{tag}_{a}__l{k}``, assigned before) differ per lane; None where the body does not qualify.
    ``unit``: names equal to the lane's x index plus a value every lane shares (_unit_names); ``stored``: names
    the kernel assigns; ``varying``: those the loop around ``st`` assigns; ``loads``: how often the kernel reads
    each name (_loads). Where every read qualifies, the loop reads at the loop's value in every lane (see
    _consecutive), and the test also says that those reads stay inside their arrays."""
    if len(st.iter.args) > 2 or not isinstance(st.target, ast.Name) or st.target.id not in per_lane:
        return None
    q = st.target.id
    assigned: set[str] = set()
    sums: set[str] = set()
    for b in st.body:
        if isinstance(b, ast.Assign) and len(b.targets) == 1 and isinstance(b.targets[0], ast.Name):
            name, value = b.targets[0].id, b.value
            if name in assigned or any(isinstance(n, (ast.Subscript, ast.Call, ast.NamedExpr, ast.Lambda))
                                       for n in ast.walk(value)):
                return None
            assigned.add(name)
        elif (isinstance(b, ast.AugAssign) and isinstance(b.target, ast.Name)
              and isinstance(b.op, (ast.Add, ast.Sub, ast.Mult))):
            sums.add(b.target.id)
            if not _exact(b.value):
                return None
        else:
            return None
    if not sums or q in assigned | sums or assigned & sums or not per_lane >= assigned | sums:
        return None
    seen: set[str] = set()
    for b in st.body:  # no index, no assigned value computed from a sum; no assigned name read before it is set
        if _names(b.value) & (assigned - seen):
            return None
        seen |= _names(b.targets[0] if isinstance(b, ast.Assign) else b.target)
        for n in ast.walk(b.value):
            if (isinstance(b, ast.Assign) or isinstance(n, ast.Subscript)) and _names(
                    n.slice if isinstance(n, ast.Subscript) else n) & sums:
                return None
    n_args = len(st.iter.args)
    lo = [f"{tag}_0__l{k}" if n_args == 2 else "0" for k in range(lanes)]
    hi = [f"{tag}_{n_args - 1}__l{k}" for k in range(lanes)]
    test = _expr(f"max({', '.join(lo)}) < min({', '.join(hi)})")
    body: list[ast.stmt] = [_stmt(f"{q}__l{k} = min(max({tag}, {lo[k]}), {hi[k]} - 1)") for k in range(lanes)]
    inside = _consecutive(st, q, lanes, per_lane, unit, stored, varying)
    if inside is not None:
        at_loop = _Replace(q, tag)  # in every lane
        for b in st.body:
            if isinstance(b, ast.Assign):
                body += [lane(at_loop.visit(_tree_copy(b)), k) for k in range(lanes)]
                continue
            total = b.target.id
            for k in range(lanes):
                new = lane(ast.BinOp(ast.Name(total, ast.Load()), b.op, at_loop.visit(_tree_copy(b.value))), k)
                body.append(ast.Assign([ast.Name(f"{tag}_v__l{k}", ast.Store())], new))
                body.append(_stmt(f"{total}__l{k} = {tag}_v__l{k} if {q}__l{k} == {tag} else {total}__l{k}"))
        loop = ast.For(ast.Name(tag, ast.Store()),
                       _expr(f"range(min({', '.join(lo)}), max({', '.join(hi)}))"), body, [])
        # after it, each lane's names the kernel reads elsewhere as its last iteration left them (q__lk is that
        # iteration: hi - 1); only those: a name live after the loop made its compile 1.3 s longer
        here = _loads(st)
        after = [lane(b, k) for k in range(lanes) for b in st.body
                 if isinstance(b, ast.Assign) and loads[b.targets[0].id] > here[b.targets[0].id]]
        return ast.BoolOp(ast.And(), [test, *inside]) if inside else test, [loop, *after]

    class _Shared(ast.NodeTransformer):  # reads indexed by no per-lane name but q: at the loop's value
        def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
            if _names(node.slice) & per_lane <= {q}:
                for n in ast.walk(node.slice):
                    if isinstance(n, ast.Name) and n.id == q:
                        n.id = tag
            return node

    for b in st.body:
        if isinstance(b, ast.Assign):
            body += [lane(b, k) for k in range(lanes)]
            continue
        total = b.target.id
        for k in range(lanes):
            value = _Shared().visit(_tree_copy(b.value))
            new = lane(ast.BinOp(ast.Name(total, ast.Load()), b.op, value), k)
            body.append(ast.Assign([ast.Name(f"{tag}_v__l{k}", ast.Store())], new))
            body.append(_stmt(f"{total}__l{k} = {tag}_v__l{k} if {q}__l{k} == {tag} else {total}__l{k}"))
    loop = ast.For(ast.Name(tag, ast.Store()),
                   _expr(f"range(min({', '.join(lo)}), max({', '.join(hi)}))"), body, [])
    return test, [loop]


def _uniform(body: list[ast.stmt], env: dict) -> set[str]:
    """Names that hold the same value in every lane wherever a lane reads them (``row``, ``OH``, ``i = row - p`` in a
    convolution whose lanes run along x): lanes share one copy, and a test or a loop on them is one test or one
    loop, not four and a comparison. Each is assigned by one statement (``for`` over a ``range``, or ``=``; one
    element of ``a, b = x, y``), from names that are themselves uniform or not assigned in the body (parameters,
    constants, ``_ty``, ``_bx``) by arithmetic and pure calls on numbers, reading no array element. Every lane that
    runs that statement computes the same value from the same inputs; a lane reads the name only after running it
    (a local is assigned before it is read), and a lane running its statements apart from the others (after a
    write) runs it again before reading, as the plain loop does."""
    sites: dict[str, list[ast.AST | None]] = {}  # name -> what each assignment computes it from (None: not pure)

    def add(name: str, value: ast.AST | None) -> None:
        sites.setdefault(name, []).append(value)

    for st in ast.walk(ast.Module(body, [])):
        if isinstance(st, ast.For):
            over_range = isinstance(st.iter, ast.Call) and _dotted(st.iter.func) == ["range"]
            for name in _names(st.target, ast.Store):  # over an array: its elements
                add(name, st.iter if over_range and isinstance(st.target, ast.Name) else None)
        elif isinstance(st, ast.Assign) and len(st.targets) == 1:
            target, value = st.targets[0], st.value
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                for t, v in zip(target.elts, value.elts):
                    for name in _names(t, ast.Store):
                        add(name, v if isinstance(t, ast.Name) else None)
            else:
                for name in _names(target, ast.Store):
                    add(name, value if isinstance(target, ast.Name) else None)
        elif isinstance(st, ast.stmt) and not isinstance(st, (ast.If, ast.While)):  # (their bodies: walked)
            for name in _names(st, ast.Store):  # +=, a = b = ..., ...
                add(name, None)
        if isinstance(st, (ast.NamedExpr, ast.comprehension)):
            for name in _names(st.target, ast.Store):
                add(name, None)

    def pure(e: ast.AST) -> bool:
        for n in ast.walk(e):
            if isinstance(n, ast.Subscript) and not (isinstance(n.value, ast.Attribute) and n.value.attr == "shape"):
                return False
            if isinstance(n, ast.Call) and not (_pure_cast(n, env) or _dotted(n.func) == ["range"]):
                return False
            if isinstance(n, (ast.NamedExpr, ast.Lambda, ast.ListComp, ast.GeneratorExp, ast.Starred)):
                return False
        return True

    uniform = {name for name, values in sites.items() if len(values) == 1 and values[0] is not None
               and pure(values[0])}
    while True:
        varying = set(sites) - uniform | {"_tx", "_t"}
        out = {name for name in uniform if not _names(sites[name][0]) & (varying | {name})}
        if out == uniform:
            return uniform
        uniform = out


# Wide lanes: where LLVM's SLP vectorizer can pack the lanes' loads into one vector load (every array element
# the body reads is at an index whose last entry is the same in every lane or the lane's x thread index plus the
# same value in every lane, its other entries the same in every lane: a convolution forward's ``x[n, c, i + p,
# j + q]`` and ``w[f, c, p, q]``) and every loop has the same bounds in every lane, WIDE threads run interleaved
# instead of LANES: their sums are one vector of WIDE floats instead of LANES, one chain of dependent vector
# additions doing twice the work. Where the wide lanes disagree on the body's last ``if`` (the guard of a thread
# past the edge of the output), each half runs as LANES lanes (the statements before it wrote nothing, so running
# them again is exact). Elsewhere (a weight gradient's ``dy[n, f, i, j]``, ``f`` computed per thread by // and %;
# loops whose bounds differ per lane, as in the conv input gradient) wide lanes were slower, and LANES stays.
WIDE = 8

# SPECULATIVE LANES: where a group of LANES lanes disagrees on the body's last ``if`` (threads past the output's edge:
# LeNet's conv2 forward has rows of 10 outputs in blocks of 8, so a fifth of its threads are in such groups), every
# lane runs the branch's statements up to its first write interleaved, as the lanes that agree do, and then each
# lane's writes run only where its test held (lane 0 first, as the plain loop runs them), instead of the plain loop
# for the four threads. Only where that is exact (_speculable): no test inside the branch before its writes, loops
# whose bounds every lane shares, values + - * of names and reads, each read that differs per lane at the lane's x
# index plus shared values in its last entry (so a dead lane reads within LANES - 1 elements of what a live lane
# reads in the same row), and a test before it that those rows have LANES - 1 elements of the array before and
# after them (_row_test; the plain loop elsewhere). A dead lane's values go nowhere. The group whose lanes all hold
# runs the same copy (every write then runs), so the launcher has one copy of the branch more than the plain loop, as
# before. Conv forward at LeNet conv2, batch 64, one thread: 3.3-3.5 -> 2.4-2.5 ms (bits unchanged); its lanes
# launcher's cold compile 3.3-3.8 s before, 3.4-3.6 s after (with a copy of its own for the speculative groups:
# 4.2-4.6 s).


def _is_unit(e: ast.AST, unit: set[str], per_lane: set[str]) -> bool:
    """Whether ``e`` is a name of ``unit`` plus or minus values the same in every lane."""
    if isinstance(e, ast.Name):
        return e.id in unit
    same = lambda x: not _names(x) & per_lane  # noqa: E731
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
        return (_is_unit(e.left, unit, per_lane) and same(e.right)) or (same(e.left) and _is_unit(e.right, unit, per_lane))
    return isinstance(e, ast.BinOp) and isinstance(e.op, ast.Sub) and _is_unit(e.left, unit, per_lane) and same(e.right)


def _unit_names(body: list[ast.stmt], env: dict, per_lane: set[str]) -> set[str]:
    """Names equal to the lane's x thread index plus a value the same in every lane (``_tx``, ``j = _bx * _bdx +
    _tx``, ``col - q``): assigned once, by such an expression."""
    values: dict[str, list[ast.AST | None]] = {}
    for st in ast.walk(ast.Module(body, [])):
        if isinstance(st, ast.Assign) and len(st.targets) == 1:
            target, value = st.targets[0], st.value
            pairs = (list(zip(target.elts, value.elts)) if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                     and len(target.elts) == len(value.elts) else [(target, value)])
            for t, v in pairs:
                for name in _names(t, ast.Store):
                    values.setdefault(name, []).append(v if isinstance(t, ast.Name) else None)
        elif isinstance(st, (ast.stmt, ast.NamedExpr, ast.comprehension)) and not isinstance(st, (ast.If, ast.While)):
            for name in _names(st.target if isinstance(st, (ast.NamedExpr, ast.comprehension)) else
                               getattr(st, "target", None) or [], ast.Store):
                values.setdefault(name, []).append(None)
    unit = {"_tx"}
    while True:
        more = {n for n, vs in values.items() if n not in unit and len(vs) == 1 and vs[0] is not None
                and _is_unit(vs[0], unit, per_lane)}
        if not more:
            return unit
        unit |= more


def _packable(body: list[ast.stmt], env: dict) -> bool:
    """Whether the lanes' reads can be packed into vectors and they agree on every loop (see WIDE)."""
    uniform = _uniform(body, env)
    per_lane = (_names(body, ast.Store) - uniform) | {"_tx", "_t"}
    same = lambda e: not _names(e) & per_lane  # noqa: E731
    unit = _unit_names(body, env, per_lane)

    def is_unit(e: ast.AST) -> bool:
        return _is_unit(e, unit, per_lane)

    for n in ast.walk(ast.Module(body, [])):
        if isinstance(n, ast.For) and not same(n.iter):
            return False
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load) and isinstance(n.value, ast.Name):
            index = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
            if not all(same(e) for e in index[:-1]) or not (same(index[-1]) or is_unit(index[-1])):
                return False
    return True


_PRELUDE = ["_nt = _bdx * _bdy * _bdz"]
_BLOCK = ["_bx = _blk % _gdx", "_by = (_blk // _gdx) % _gdy", "_bz = _blk // (_gdx * _gdy)", "_where[0] = _blk"]
_THREAD = ["for _tz in range(_bdz):",  # nested loops: no division per thread to find its index
           "    for _ty in range(_bdy):",
           "        for _tx in range(_bdx):",
           "            _t = (_tz * _bdy + _ty) * _bdx + _tx"]


@dataclass
class _Plan:
    """A kernel after the transform, before the per-thread arrays' dtypes are known."""

    name: str
    params: list[str]
    pieces: list
    shared: list[ast.stmt]
    arrays: set[str]            # per-thread variables (live across a barrier)
    assigned_params: set[str]
    barriers: bool
    returns: bool
    atomics: bool
    env: dict
    probe_fdef: ast.FunctionDef  # the whole body without barriers: numba types its variables
    source: _Source  # the kernel as written (its tree untouched by the transform): for nbkit.core.bounds
    index_arrays: set[str]  # names that are arrays throughout: their indices are wrapped (_WrapIndices)
    remat: list[ast.stmt] = field(default_factory=list)  # see _rematerializable


def _plan(fn: Callable) -> _Plan:
    cached = _cached_source(fn)  # the transform below changes the tree: it works on a copy
    src = _Source(cached.fn, _tree_copy(cached.fdef), cached.env, cached.cuda_names, cached.device_fns, cached.text,
                  cached.name)
    _check_constructs(src.fdef)
    original = _Source(cached.fn, _tree_copy(cached.fdef), cached.env, cached.cuda_names, cached.device_fns,
                       cached.text, cached.name)
    cn = src.cuda_names
    params = [a.arg for a in src.fdef.args.args]
    shared: list[ast.stmt] = []
    pieces = _split(src.fdef.body, cn, False, shared, True)
    barriers = _has_sync(src.fdef, cn)
    lower = _Lower(cn, src.device_fns, in_device=False)

    # the probe: the body with barriers removed and shared arrays as plain zeros (typing only)
    probe = ast.parse(ast.unparse(src.fdef)).body[0]
    probe.args.args = [ast.arg(n) for n in ("_tx", "_ty", "_tz", "_bx", "_by", "_bz", "_bdx", "_bdy", "_bdz",
                                             "_gdx", "_gdy", "_gdz", "_t")] + probe.args.args

    class _StripSync(ast.NodeTransformer):
        def visit_Expr(self, node):
            return ast.Pass() if _is_sync(node, cn) else node

        def visit_Assign(self, node):
            if _is_shared_alloc(node, cn):
                node.value = ast.Call(_expr("np.zeros"), node.value.args, [])
            return self.generic_visit(node)

    probe = ast.fix_missing_locations(lower.visit(_StripSync().visit(probe)))
    probe.name = "_probe"

    segs = _segments(pieces)
    loops = _loops(pieces)
    for stmt in shared:
        lower.visit(stmt.value.args[0]) if stmt.value.args else None
        if len(stmt.value.args) != 2 or stmt.value.keywords:
            raise ExecutorUnsupported(f"cuda.shared.array(shape, dtype) expected ({_where(stmt)})")
    shared_names = {s.targets[0].id for s in shared}
    loop_vars = set()
    for loop in loops:
        st = loop.stmt
        if isinstance(st, ast.For):
            if not isinstance(st.target, ast.Name):
                raise ExecutorUnsupported(f"a loop with barriers needs a single loop variable ({_where(st)})")
            loop_vars.add(st.target.id)
    stored = _names([s for seg in segs for s in seg.stmts], ast.Store)
    if stored & (loop_vars | shared_names):
        raise ExecutorUnsupported(f"{sorted(stored & (loop_vars | shared_names))} assigned per thread but used "
                                  f"as a block-wide loop variable or shared array")
    assigned_params = stored & set(params)
    arrays: set[str] = set()
    if barriers:
        headers = _names([h for loop in loops for h in _header(loop)])
        for v in stored:
            uses = [seg for seg in segs if v in _names(seg.stmts)]
            if v in assigned_params or v in headers or len(uses) > 1 or not _defines_first(uses[0].stmts, v):
                arrays.add(v)
    returns = any(isinstance(n, ast.Return) for n in ast.walk(src.fdef))
    for seg in segs:  # lower the intrinsics of the real segments and headers
        seg.stmts = [lower.visit(s) for s in seg.stmts]
    for loop in loops:
        if isinstance(loop.stmt, ast.For):
            loop.stmt.iter = lower.visit(loop.stmt.iter)
        else:
            loop.stmt.test = lower.visit(loop.stmt.test)
        if _names(_header(loop)) & {"_t", "_tx", "_ty", "_tz"}:
            raise ExecutorUnsupported(f"a loop with barriers whose bounds depend on the thread index "
                                      f"({_where(loop.stmt)})")
    env, device_atomics = _cpu_env(src)
    # arrays whose name means the array everywhere: parameters never assigned, shared arrays, local arrays
    # assigned once (other names may hold a tuple or a number somewhere: their indices are left alone)
    counts: dict[str, int] = {}
    for node in ast.walk(original.fdef):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            counts[node.id] = counts.get(node.id, 0) + 1
    local_arrays = {n.targets[0].id for n in ast.walk(original.fdef)
                    if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
                    and isinstance(n.value, ast.Call) and (_dotted(n.value.func) or [""])[0] in cn
                    and (_dotted(n.value.func) or [])[1:] == ["local", "array"]}
    index_arrays = {p for p in params if p not in counts} | {a for a in shared_names | local_arrays
                                                             if counts.get(a) == 1 and a not in params}
    remat: list[ast.stmt] = []
    if barriers and pieces and isinstance(pieces[0], _Seg):
        keep = _names([h for loop in loops for h in _header(loop)]) | assigned_params | shared_names
        remat = _rematerializable(pieces[0].stmts, counts, keep, env)
        arrays -= _names(remat, ast.Store)
    return _Plan(cached.name, params, pieces, shared, arrays, assigned_params, barriers, returns,
                 lower.atomics or device_atomics, env, probe, original, index_arrays, remat)


def _rematerializable(first: list[ast.stmt], counts: dict[str, int], keep: set[str], env: dict) -> list[ast.stmt]:
    """The top-level statements of a barrier kernel's first segment that a later segment may compute again
    instead of loading their values from per-thread arrays (``tx, ty = cuda.threadIdx.x, ...``, ``row = ...``,
    ``M, N = C.shape``): each assigns names assigned nowhere else, from thread and block indices, parameters the
    kernel never assigns, constants, shapes, pure casts and math, and names of earlier such statements; it reads
    no array element. So it gives the same values wherever it runs, and costs a few integer operations instead of
    a load (and a store in the first segment). Recomputed, LLVM sees that thread ``tx + 1``'s ``tx`` is ``tx + 1``:
    in the tiled matmul's product phase it then vectorizes the thread loop itself (consecutive threads read
    consecutive elements of a tile; each thread's additions keep their order): 1.50 -> 0.57 ms per launch."""
    stored = set(counts)
    out: list[ast.stmt] = []
    ok: set[str] = set()
    for st in first:
        if not (isinstance(st, ast.Assign) and all(isinstance(t, (ast.Name, ast.Tuple)) for t in st.targets)):
            continue
        targets = _names(st.targets, ast.Store)
        if not targets or targets & keep or any(counts.get(t, 0) != 1 for t in targets) \
                or _names(st.targets, ast.Load) or (_names(st.value) & stored) - ok:
            continue
        if any(isinstance(n, ast.Subscript) and not (isinstance(n.value, ast.Attribute) and n.value.attr == "shape")
               for n in ast.walk(st.value)):
            continue  # an array element: it may change between segments
        if any(isinstance(n, ast.Call) and not _pure_cast(n, env) for n in ast.walk(st.value)):
            continue
        if any(isinstance(n, (ast.NamedExpr, ast.Lambda, ast.ListComp, ast.GeneratorExp)) for n in ast.walk(st.value)):
            continue
        out.append(st)
        ok |= targets
    return out


def _pure_cast(node: ast.Call, env: dict) -> bool:
    """A call that makes a number from numbers (``float32(0)``, ``math.sqrt``, ``min``), not an array."""
    parts = _dotted(node.func)
    if not parts or parts[0] in _PURE_HELPERS or parts == ["np", "empty"] or node.keywords:
        return False
    value = _resolved(parts, env)
    return value is not None and not isinstance(value, np.ufunc) and bounds.pure_callable(value)


def _with_probes(stmts: list[ast.stmt], probes: dict, placed: set) -> list[ast.stmt]:
    """``stmts`` with the probes of each statement (keyed by its line and column) put before it, at any depth."""
    out: list[ast.stmt] = []
    for st in stmts:
        key = (getattr(st, "lineno", None), getattr(st, "col_offset", None))
        if key in probes:
            out.extend(_tree_copy(probes[key]))
            placed.add(key)
        if isinstance(st, (ast.If, ast.For, ast.While)):
            st.body = _with_probes(st.body, probes, placed)
            st.orelse = _with_probes(st.orelse, probes, placed)
        out.append(st)
    return out


# A range loop whose body is pure assignments and then one ``if`` on a condition affine in the loop variable
# (a convolution's ``for q in range(KW): j = col - q; if 0 <= j < OW: ...``) runs only the iterations where the
# condition can hold: ``range(max(0, col - OW + 1), min(KW, col + 1))``. At LeNet's sizes 60% of the input
# gradient's (p, q) iterations fail such tests. The iterations removed are exactly ones whose test is false: they
# would have computed the assignments (pure, read again only after being assigned anew) and the test (pure: no
# call, no array element, nothing that can raise) and done nothing else, so every launcher (checked ones too: no
# access, no probe runs there) behaves as before. Where every conjunct of the test gave a bound the test holds in
# every iteration left and is dropped (lanes then run such a loop together where they agree on its bounds).
_LAUNCH_INTS = {"_tx", "_ty", "_tz", "_bx", "_by", "_bz", "_bdx", "_bdy", "_bdz", "_gdx", "_gdy", "_gdz", "_t"}
_SAFE_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.BitAnd, ast.BitOr, ast.BitXor)  # none can raise


def _shape_entry(e: ast.AST) -> bool:
    """``a.shape[k]`` (also ``.size``, ``.ndim``): an intp; reads no element."""
    if isinstance(e, ast.Attribute) and e.attr in ("size", "ndim"):
        return True
    return isinstance(e, ast.Subscript) and isinstance(e.value, ast.Attribute) and e.value.attr == "shape" \
        and isinstance(e.slice, ast.Constant) and isinstance(e.slice.value, int)


def _int_expr(e: ast.AST, ints: set[str]) -> bool:
    """Whether ``e`` is a signed 64-bit integer in numba (built of ``ints``, int constants and shapes)."""
    if isinstance(e, ast.Constant):
        return type(e.value) is int
    if isinstance(e, ast.Name):
        return e.id in ints
    if isinstance(e, ast.BinOp):
        return isinstance(e.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod)) \
            and _int_expr(e.left, ints) and _int_expr(e.right, ints)
    if isinstance(e, ast.UnaryOp):
        return isinstance(e.op, (ast.USub, ast.UAdd)) and _int_expr(e.operand, ints)
    return _shape_entry(e)


def _int_names(stmts: list[ast.stmt], params: set[str], env: dict) -> set[str]:
    """The names that hold a signed 64-bit integer wherever the kernel assigns them (a fixpoint), the launcher's
    thread and block indices and dimensions, and module globals that are ints (numba freezes them); never a
    parameter (its type is the caller's)."""
    stores: dict[str, list] = {}  # name -> values assigned; None: not known to be an integer

    def note(target: ast.AST, value: ast.AST | None) -> None:
        if isinstance(target, ast.Name):
            stores.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, ast.Tuple) and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    note(t, v)
            else:
                shape = isinstance(value, ast.Attribute) and value.attr == "shape"
                for t in target.elts:
                    note(t, ast.Constant(0) if shape else None)

    for n in ast.walk(ast.Module(list(stmts), [])):
        if isinstance(n, ast.Assign):
            for t in n.targets:
                note(t, n.value)
        elif isinstance(n, ast.AugAssign):
            note(n.target, ast.BinOp(copy.copy(n.target), n.op, n.value) if isinstance(n.target, ast.Name) else None)
        elif isinstance(n, ast.For):
            over_range = isinstance(n.iter, ast.Call) and _dotted(n.iter.func) == ["range"] and not n.iter.keywords
            for t in ast.walk(n.target):
                if isinstance(t, ast.Name):
                    stores.setdefault(t.id, []).append(n.iter if over_range and isinstance(n.target, ast.Name)
                                                       else None)
        elif isinstance(n, (ast.AnnAssign, ast.NamedExpr, ast.With, ast.comprehension)):
            for t in ast.walk(n):
                if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store):
                    stores.setdefault(t.id, []).append(None)
    constants = {k for k, v in env.items() if type(v) is int and -2**63 <= v < 2**63}
    ints = (set(stores) | ((_LAUNCH_INTS | constants) - set(stores))) - params
    while True:
        bad = set()
        for name, values in stores.items():
            for v in values:
                ok = v is not None and (all(_int_expr(a, ints) for a in v.args) if isinstance(v, ast.Call)
                                        and _dotted(v.func) == ["range"] else _int_expr(v, ints))
                if not ok:
                    bad.add(name)
                    break
        if not bad & ints:
            return ints
        ints -= bad


def _pure_test(e: ast.AST) -> bool:
    """No call, no array element, no operation that can raise (``//``, ``%``, ``/``, ``**``, shifts)."""
    for n in ast.walk(e):
        if isinstance(n, (ast.Call, ast.NamedExpr, ast.Lambda, ast.IfExp, ast.comprehension, ast.Starred)):
            return False
        if isinstance(n, ast.Subscript) and not _shape_entry(n):
            return False
        if isinstance(n, ast.BinOp) and not isinstance(n.op, _SAFE_BINOPS):
            return False
    return True


def _affine(e: ast.AST, v: str, sub: dict, ints: set[str], varying: set[str]) -> tuple[int, ast.expr | None] | None:
    """``e`` as ``coef * v + rest`` (rest None: 0; ``sub``: the affine forms of names assigned in the loop body
    before the test), with ``rest`` an integer that the loop does not change; None where it is not."""
    if isinstance(e, ast.Name) and e.id == v:
        return 1, None
    if isinstance(e, ast.Name) and e.id in sub:
        return sub[e.id]
    if not (_names(e) & (varying | {v})):
        return (0, None if isinstance(e, ast.Constant) and e.value == 0 else e) if _int_expr(e, ints) else None
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
        a = _affine(e.operand, v, sub, ints, varying)
        return None if a is None else (-a[0], None if a[1] is None else ast.UnaryOp(ast.USub(), a[1]))
    if isinstance(e, ast.BinOp) and isinstance(e.op, (ast.Add, ast.Sub)):
        a, b = _affine(e.left, v, sub, ints, varying), _affine(e.right, v, sub, ints, varying)
        if a is None or b is None:
            return None
        sign = 1 if isinstance(e.op, ast.Add) else -1
        if b[1] is None:
            rest = a[1]
        elif a[1] is None:
            rest = b[1] if sign == 1 else ast.UnaryOp(ast.USub(), b[1])
        else:
            rest = ast.BinOp(a[1], e.op, b[1])
        return a[0] + sign * b[0], rest
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Mult):
        for k, other in ((e.left, e.right), (e.right, e.left)):
            if isinstance(k, ast.Constant) and type(k.value) is int:
                a = _affine(other, v, sub, ints, varying)
                if a is not None:
                    return k.value * a[0], None if a[1] is None else ast.BinOp(copy.copy(k), ast.Mult(), a[1])
    return None


def _guard_bounds(test: ast.AST, v: str, sub: dict, ints: set[str], varying: set[str]
                  ) -> tuple[list[ast.expr], list[ast.expr], bool]:
    """Bounds lo <= v < hi implied by the conjuncts of ``test`` of the form ``+-v + rest  <, <=, >, >=  ...``;
    and whether they imply ``test`` too (every conjunct gave one)."""
    los: list[ast.expr] = []
    his: list[ast.expr] = []
    exact = True
    conjuncts = [test]
    while any(isinstance(c, ast.BoolOp) and isinstance(c.op, ast.And) for c in conjuncts):
        conjuncts = [x for c in conjuncts for x in (c.values if isinstance(c, ast.BoolOp)
                                                     and isinstance(c.op, ast.And) else [c])]
    for c in conjuncts:
        if not isinstance(c, ast.Compare):
            exact = False
            continue
        left = c.left
        for op, right in zip(c.ops, c.comparators):
            a, b = _affine(left, v, sub, ints, varying), _affine(right, v, sub, ints, varying)
            left = right
            if a is None or b is None or a[0] - b[0] not in (1, -1) \
                    or not isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
                exact = False
                continue
            if a[0] - b[0] == -1:  # -v + ra  op  rb  <=>  v  op'  ra - rb
                a, b = b, a
                op = {ast.Lt: ast.Gt(), ast.LtE: ast.GtE(), ast.Gt: ast.Lt(), ast.GtE: ast.LtE()}[type(op)]
            # now v  op  d, with d = b.rest - a.rest
            d: ast.expr = ast.Constant(0) if b[1] is None else _tree_copy(b[1])
            if a[1] is not None:
                d = ast.BinOp(d, ast.Sub(), _tree_copy(a[1])) if b[1] is not None \
                    else ast.UnaryOp(ast.USub(), _tree_copy(a[1]))
            plus1 = ast.BinOp(d, ast.Add(), ast.Constant(1))
            if isinstance(op, ast.Lt):
                his.append(d)
            elif isinstance(op, ast.LtE):
                his.append(plus1)
            elif isinstance(op, ast.Gt):
                los.append(plus1)
            else:
                los.append(d)
    return los, his, exact


def _assigns_first(loop: ast.For, name: str) -> bool:
    """Whether each iteration of ``loop`` assigns ``name`` before anything in it reads it."""
    if isinstance(loop.target, ast.Name) and loop.target.id == name:
        return True
    for st in loop.body:
        if isinstance(st, ast.Assign) and name in _names(st.targets, ast.Store):
            return name not in _names(st.value) and name not in _names(st.targets, ast.Load)
        if name in _names(st):
            return False
    return False


def _dead_after(name: str, key: tuple, stmts: list[ast.stmt], fresh: bool = False) -> bool:
    """Whether no statement outside the loop at ``key`` (line, column) reads the value ``name`` has after it:
    every other read is in a loop that assigns ``name`` anew first (and does not contain that loop)."""
    for st in stmts:
        if isinstance(st, ast.For) and (st.lineno, st.col_offset) == key:
            continue
        inside = {(getattr(n, "lineno", None), getattr(n, "col_offset", None)) for n in ast.walk(st)}
        if isinstance(st, ast.For):
            if not fresh and name in _names(st.iter, ast.Load):
                return False
            if not _dead_after(name, key, st.body, (fresh or _assigns_first(st, name)) and key not in inside):
                return False
            if not _dead_after(name, key, st.orelse, False if key in inside else fresh):
                return False
        elif isinstance(st, (ast.If, ast.While)):
            if not fresh and name in _names(st.test, ast.Load):
                return False
            if not (_dead_after(name, key, st.body, fresh) and _dead_after(name, key, st.orelse, fresh)):
                return False
        elif not fresh and name in _names(st, ast.Load):
            return False
    return True


def _shrink_guarded(stmts: list[ast.stmt], ints: set[str], kernel: list[ast.stmt], keep: set[str]
                    ) -> list[ast.stmt]:
    """``stmts`` with each guarded range loop shrunk to the iterations where its guard can hold (see above);
    ``kernel``: the whole kernel body (where the loop's names are read); ``keep``: names never touched."""
    out = []
    for st in stmts:
        if isinstance(st, (ast.If, ast.For, ast.While)):
            st.body = _shrink_guarded(st.body, ints, kernel, keep)
            st.orelse = _shrink_guarded(st.orelse, ints, kernel, keep)
        if isinstance(st, ast.For):
            st = _shrink_loop(st, ints, kernel, keep)
        out.append(st)
    return out


def _shrink_loop(st: ast.For, ints: set[str], kernel: list[ast.stmt], keep: set[str]) -> ast.For:
    it = st.iter
    if not (isinstance(st.target, ast.Name) and not st.orelse and isinstance(it, ast.Call)
            and _dotted(it.func) == ["range"] and not it.keywords and 1 <= len(it.args) <= 2
            and all(_int_expr(a, ints) for a in it.args) and st.body and isinstance(st.body[-1], ast.If)
            and not st.body[-1].orelse):
        return st
    v, guard, prefix = st.target.id, st.body[-1], st.body[:-1]
    varying = _names(st.body, ast.Store) | {v}
    sub: dict[str, tuple[int, ast.expr | None]] = {}
    assigned = {v}
    for p in prefix:
        if not (isinstance(p, ast.Assign) and len(p.targets) == 1 and isinstance(p.targets[0], ast.Name)
                and _pure_test(p.value) and not (_names(p.value) & varying) - assigned):
            return st  # only pure assignments from values the loop does not change (and earlier ones)
        name = p.targets[0].id
        if name in assigned:
            return st
        assigned.add(name)
        a = _affine(p.value, v, sub, ints, varying)
        if a is not None:
            sub[name] = a
    if not _pure_test(guard.test) or assigned & keep:
        return st
    key = (st.lineno, st.col_offset)
    if not all(_dead_after(name, key, kernel) for name in assigned):
        return st
    los, his, exact = _guard_bounds(guard.test, v, sub, ints, varying)
    if not los and not his:
        return st
    start, stop = (it.args if len(it.args) == 2 else [ast.Constant(0), it.args[0]])
    lo = ast.Call(ast.Name("max", ast.Load()), [start, *los], []) if los else start
    hi = ast.Call(ast.Name("min", ast.Load()), [stop, *his], []) if his else stop
    body = prefix + guard.body if exact else st.body
    new = ast.For(st.target, ast.Call(ast.Name("range", ast.Load()), [lo, hi], []), body, [])
    return ast.fix_missing_locations(ast.copy_location(new, st))


def _emit(plan: _Plan, dtypes: dict[str, np.dtype], wrap_indices: bool = True, lanes: int = 0,
          probes: dict | None = None, placed: set | None = None, wide: int = 0) -> str:
    """The launcher's source: blocks [_b0, _b1) of the grid, every thread of each, phase by phase.
    ``wrap_indices=False``: without the ``_ix`` wrappers of array indices (the text shown to read);
    ``lanes``: threads along x interleaved by that many (see LANES; raises :class:`_NoJam` where not), ``wide``
    where their reads pack into vectors (see WIDE);
    ``probes``: (line, column) of a statement -> the ``_spec`` statements to put before it (see _spec_record);
    the keys placed are added to ``placed``."""
    lines: list[str] = []
    sig = ["_b0", "_b1", "_where", "_negp", "_gdx", "_gdy", "_gdz", "_bdx", "_bdy", "_bdz"]
    sig += [f"_p_{p}" if p in plan.assigned_params else p for p in plan.params]
    lines.append(f"def _launch_{plan.name}({', '.join(sig)}):")
    ind = "    "
    lines += [ind + s for s in _PRELUDE]
    done = plan.barriers and plan.returns
    # per-thread arrays: allocated once per call (not per block), reset where a block must start afresh
    for v in sorted(plan.arrays):
        if v in plan.assigned_params:
            lines.append(f"{ind}{v}__a = np.full(_nt, _p_{v})")
        else:
            lines.append(f"{ind}{v}__a = np.empty(_nt, _dt_{v})")
    if done:
        lines.append(f"{ind}_done = np.zeros(_nt, np.bool_)")
    lines.append(ind + "for _blk in range(_b0, _b1):")
    ind2 = ind * 2
    lines += [ind2 + s for s in _BLOCK]
    for stmt in plan.shared:
        shape, dtype = (ast.unparse(a) for a in stmt.value.args)
        # poisoned like the simulator's (NaN, or an integer sentinel): _poison_<name> is set by compile_for_cpu
        lines.append(f"{ind2}{stmt.targets[0].id} = np.full({shape}, _poison_{stmt.targets[0].id}, {dtype})")
    for v in sorted(plan.arrays & plan.assigned_params):
        lines.append(f"{ind2}{v}__a[:] = _p_{v}")
    if done:
        lines.append(f"{ind2}_done[:] = False")
    to_arrays = _ToArrays(plan.arrays, "_t")
    head_arrays = _ToArrays(plan.arrays, "_t0")
    on_return = [ast.parse("_done[_t] = True").body[0]] if done else []
    ints = _int_names([s for seg in _segments(plan.pieces) for s in seg.stmts]
                      + [loop.stmt for loop in _loops(plan.pieces)], set(plan.params), plan.env)

    def first_live(indent: str) -> list[str]:
        if not done:
            return [f"{indent}_t0 = 0"]
        return [f"{indent}_t0 = 0", f"{indent}while _t0 < _nt - 1 and _done[_t0]:", f"{indent}    _t0 += 1"]

    def uniform(exprs: list[ast.expr], indent: str, where: str) -> None:
        """Every live thread must see the same loop bounds (as on a GPU, where a barrier that only some threads
        reach hangs or corrupts the block): check, instead of silently following thread _t0."""
        if not _names(list(exprs)) & plan.arrays:
            return
        mine = " or ".join(f"({ast.unparse(to_arrays.visit(_tree_copy(e)))}) != "
                           f"({ast.unparse(head_arrays.visit(_tree_copy(e)))})" for e in exprs)
        lines.append(f"{indent}for _t in range(_nt):")
        if done:
            lines.append(f"{indent}    if _done[_t]:")
            lines.append(f"{indent}        continue")
        lines.append(f"{indent}    if {mine}:")
        message = f"threads of a block disagree on the bounds of a loop that contains cuda.syncthreads() ({where})"
        lines.append(f"{indent}        raise BarrierDivergence({message!r})")

    def seg_body(p: _Seg) -> list[ast.stmt]:
        body = [_tree_copy(s) for s in p.stmts]  # the plan serves every dtype
        body = _with_probes(body, probes, placed if placed is not None else set()) if probes else body
        return _shrink_guarded(body, ints, plan.source.fdef.body, plan.arrays | set(plan.params))

    def remat(p: _Seg) -> list[ast.stmt]:
        """The first segment's statements that compute names ``p`` uses (see _rematerializable), in order."""
        if p is plan.pieces[0]:
            return []
        need, out = _names(p.stmts), []
        for st in reversed(plan.remat):
            if _names(st.targets, ast.Store) & need:
                out.insert(0, _tree_copy(st))
                need |= _names(st.value)
        return out

    def jammed(p: _Seg, indent: str) -> None:
        def head(n: int, offset: str = "") -> list[ast.stmt]:
            return ast.parse("\n".join(f"_tx__l{k} = _jam_tx{offset} + {k}\n_t__l{k} = (_tz * _bdy + _ty) * _bdx + "
                                       f"_tx__l{k}" for k in range(n))).body

        def plain(offset: str) -> list[ast.stmt]:
            """The plain thread loop over the group's ``lanes`` threads from ``_jam_tx + offset``."""
            return [ast.For(ast.Name("_tx", ast.Store()), _expr(f"range(_jam_tx{offset}, _jam_tx{offset} + {lanes})"),
                            ast.parse("_t = (_tz * _bdy + _ty) * _bdx + _tx").body + seg_body(p), [])]

        n = lanes
        body, _, _ = _jam(seg_body(p), plan.env, lanes)
        if wide and _packable(seg_body(p), plan.env):
            narrow = head(lanes, " + _jam_h") + _jam(seg_body(p), plan.env, lanes, plain(" + _jam_h"), 10_000)[0]
            halves = [ast.For(ast.Name("_jam_h", ast.Store()), _expr(f"range(0, {wide}, {lanes})"), narrow, [])]
            try:
                body, n = _jam(seg_body(p), plan.env, wide, split=halves)[0], wide
            except _NoJam:
                pass
        if wrap_indices:
            body = [_WrapIndices(plan.index_arrays).visit(s) for s in body]
        lines.extend([f"{indent}for _tz in range(_bdz):", f"{indent}    for _ty in range(_bdy):",
                      f"{indent}        for _jam_tx in range(0, _bdx - {n - 1}, {n}):"])
        inner = indent + "    " * 3
        lines.append(f"{inner}_where[1] = (_tz * _bdy + _ty) * _bdx + _jam_tx")
        lines.extend(inner + ast.unparse(s) for s in head(n))
        for s in body:
            lines.extend([inner + line for line in ast.unparse(ast.fix_missing_locations(s)).splitlines()])
        # the threads left over (fewer than lanes at the end of a row): the plain loop
        lines.append(f"{indent}        for _tx in range(_bdx - _bdx % {n}, _bdx):")
        lines.append(f"{inner}_t = (_tz * _bdy + _ty) * _bdx + _tx")
        lines.append(f"{inner}_where[1] = _t")
        rest = seg_body(p)
        if wrap_indices:
            rest = [_WrapIndices(plan.index_arrays).visit(s) for s in rest]
        for s in rest:
            lines.extend([inner + line for line in ast.unparse(ast.fix_missing_locations(s)).splitlines()])

    def pieces(ps: list, indent: str) -> None:
        for p in ps:
            if isinstance(p, _Seg) and lanes:
                if plan.barriers or plan.assigned_params or plan.returns:
                    raise _NoJam("barriers, an assigned parameter or a return")
                jammed(p, indent)
            elif isinstance(p, _Seg):
                body = seg_body(p)
                if wrap_indices:
                    body = [_WrapIndices(plan.index_arrays).visit(s) for s in body]
                body, has_ret = _fix_returns(body, 0, on_return)
                lines.extend(indent + s for s in _THREAD)
                inner = indent + "    " * (len(_THREAD) - 1)
                if done:
                    lines.append(f"{inner}if _done[_t]:")
                    lines.append(f"{inner}    continue")
                lines.append(f"{inner}_where[1] = _t")
                if not plan.barriers:
                    lines.extend([f"{inner}{v} = _p_{v}" for v in sorted(plan.assigned_params)])
                # a thread's values live across barriers in per-thread arrays: in local variables (registers)
                # while its segment runs, stored back at the end (a returning thread's values are not needed)
                mentioned = _names(p.stmts)
                lines.extend(f"{inner}{v} = {v}__a[_t]" for v in sorted(plan.arrays & mentioned))
                if has_ret:
                    lines.append(f"{inner}_ret = False")
                for s in remat(p) + body:
                    lines.extend([inner + line for line in ast.unparse(ast.fix_missing_locations(s)).splitlines()])
                lines.extend(f"{inner}{v}__a[_t] = {v}" for v in sorted(plan.arrays & _names(p.stmts, ast.Store)))
            else:
                st = p.stmt
                lines.extend(first_live(indent))
                if isinstance(st, ast.For):
                    it = st.iter
                    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
                        uniform(it.args, indent, _where(st))
                    elif _names(it) & plan.arrays:
                        raise ExecutorUnsupported(f"a loop with barriers over per-thread values that is not a "
                                                  f"range ({_where(st)})")
                    it = ast.unparse(head_arrays.visit(_tree_copy(st.iter)))
                    lines.append(f"{indent}for {st.target.id} in {it}:")
                    pieces(p.pieces, indent + "    ")
                else:
                    test = ast.unparse(head_arrays.visit(_tree_copy(st.test)))
                    lines.append(f"{indent}while True:")
                    lines.extend(first_live(indent + "    "))
                    uniform([st.test], indent + "    ", _where(st))
                    lines.append(f"{indent}    if not ({test}):")
                    lines.append(f"{indent}        break")
                    pieces(p.pieces, indent + "    ")

    pieces(plan.pieces, ind2)
    if lanes and not any(isinstance(p, _Seg) for p in plan.pieces):
        raise _NoJam("no statements")
    return "\n".join(lines) + "\n"


@numba.core.compiler_machinery.register_pass(mutates_CFG=False, analysis_only=True)
class _TypesDone(numba.core.compiler_machinery.AnalysisPass):
    """The end of :class:`_TypesOnly`: its result is the type of every variable."""

    _name = "nbkit_types_done"

    def __init__(self) -> None:  # abstract in numba's pass classes
        numba.core.compiler_machinery.AnalysisPass.__init__(self)

    def run_pass(self, state: object) -> bool:
        raise numba.core.compiler._EarlyPipelineCompletion(dict(state.typemap))  # type: ignore[attr-defined]


class _TypesOnly(numba.core.compiler.CompilerBase):
    """Numba's nopython pipeline up to its type inference, the same passes in the same order, without lowering
    and LLVM: about three quarters of the probe's compile time (0.2-0.4 s -> 0.05-0.1 s per kernel)."""

    def define_pipelines(self) -> list:
        pm = numba.core.compiler.DefaultPassBuilder.define_untyped_pipeline(self.state)
        pm.add_pass(numba.core.typed_passes.NopythonTypeInference, "nopython frontend")
        pm.add_pass(_TypesDone, "the types are the result")
        pm.finalize()
        return [pm]


def _probe_types(plan: _Plan, argtypes: tuple) -> dict[str, np.dtype]:
    """The dtype of every per-thread variable, as numba types the kernel body for these arguments."""
    if not plan.arrays - plan.assigned_params:
        return {}
    env = dict(plan.env)
    code = ast.unparse(plan.probe_fdef)
    stored = _cached_probe(code, env, argtypes)
    if stored is not None:
        return stored
    _run_source(code, f"probe {plan.name}", env)
    disp = numba.njit(env["_probe"])
    sig = (numba.types.int64,) * 13 + tuple(argtypes)
    flags = numba.core.compiler.Flags()
    disp.targetdescr.options.parse_as_flags(flags, disp.targetoptions)
    typing = disp.targetdescr.typing_context
    try:  # numba's pipeline up to its type inference: the types are all the probe is for
        with global_compiler_lock:
            typemap = numba.core.compiler.compile_extra(typing, disp.targetdescr.target_context, env["_probe"], sig,
                                                        None, flags, {}, pipeline_class=_TypesOnly)
    except numba.core.errors.NumbaError as exc:
        raise ExecutorUnsupported(f"numba cannot compile {plan.name} for the CPU: {str(exc).splitlines()[0]}") from exc
    out = {}
    for v in plan.arrays - plan.assigned_params:
        found = [t for k, t in typemap.items() if k == v or (k.startswith(v + ".") and k[len(v) + 1:].isdigit())]
        found = {numba.types.unliteral(t) for t in found}
        if not found:
            raise ExecutorUnsupported(f"cannot tell the type of {v!r}, live across a barrier")
        ty = found.pop() if len(found) == 1 else typing.unify_types(*found)
        if not isinstance(ty, (numba.types.Number, numba.types.Boolean)):
            raise ExecutorUnsupported(f"{v!r} ({ty}) is live across a barrier: only numbers can be kept per thread")
        out[v] = numba.np.numpy_support.as_dtype(ty)
    _store_probe(code, env, argtypes, out)
    return out


# ---------------------------------------------------------------------------------------------- compile and run

@dataclass
class _Compiled:
    """An executor: the njit launcher (blocks b0..b1 of a grid), whether blocks must run serially, its source."""

    launcher: Callable
    serial: bool
    source: str
    name: str = ""
    env: dict = field(default_factory=dict)  # the globals the launcher was compiled with
    readable: str = ""  # the source without the _ix wrappers of array indices (generated_source)
    lanes_source: str | None = None  # the source with threads interleaved (LANES), None where not exact
    lanes_apart: tuple = ()  # (written, read) parameter positions that must not share memory for lanes_source
    unprobed: bool = False  # a data-gated access the checked launcher could not probe: never proven
    no_unchecked: bool = False  # numba refused the unchecked source (see run_on_cpu): always checked
    _variants: dict = field(default_factory=dict)  # (boundscheck, _ix helper, lanes) -> launcher

    @functools.cached_property
    def may_diverge(self) -> bool:
        """Whether it checks, while running, that threads agree on a loop with a barrier (and may raise)."""
        return "raise BarrierDivergence" in self.source  # (a search of the source: asked at every launch)

    def unchecked(self, nonnegative: bool = False, lanes: bool = False) -> Callable:
        """The same launcher compiled without numba's bounds checks, from the same source and the same globals
        (so it executes the same accesses); only for launches proven in bounds (see :func:`run_on_cpu`).
        ``nonnegative``: array indices cast to unsigned (no wrap-around code), only for a launch key whose
        checked run had no negative index (see :func:`_ix_record`). ``lanes``: from ``lanes_source`` (the same
        accesses, threads interleaved: see LANES)."""
        return self._variant(False, _ix_unsigned if nonnegative else _ix_signed, lanes)

    def lanes_allowed(self, host: Sequence) -> bool:
        """Whether a launch with these arguments may run ``lanes_source``: no array it writes shares memory with
        one its interleaved statements read."""
        return self.lanes_source is not None and not any(
            isinstance(host[w], np.ndarray) and isinstance(host[r], np.ndarray)
            and np.may_share_memory(host[w], host[r]) for w, r in self.lanes_apart)

    def checked_only(self) -> Callable:
        """The checked launcher without the record of negative indices (it made LeNet's conv forward 1.8 times as
        slow), for launches that can never run unchecked (a kernel not proven launch-determined)."""
        return self._variant(True, _ix_signed)

    def _variant(self, boundscheck: bool, ix: Callable, lanes: bool = False) -> Callable:
        key = (boundscheck, ix, lanes)
        variant = self._variants.get(key)  # every launch asks: no lock once it exists (a dict read is atomic)
        if variant is not None:
            return variant
        with _LOCK:
            if key not in self._variants:
                what = (f"{self.name} ({'checked' if boundscheck else 'unchecked'}, {ix.__name__}"
                        f"{', lanes' if lanes else ''})")
                source = self.lanes_source if lanes else self.source
                self._variants[key] = _njit(source, f"_launch_{self.name}", what,  # type: ignore[arg-type]
                                            dict(self.env, _ix=ix, _spec=_spec_none), boundscheck=boundscheck)
            return self._variants[key]


_PLANS: dict[Callable, _Plan] = {}
_COMPILED: dict[tuple, _Compiled] = {}


def _get_plan(fn: Callable) -> _Plan:
    plan = _PLANS.get(fn)  # no lock once made
    if plan is not None:
        return plan
    with _LOCK:
        if fn not in _PLANS:
            _PLANS[fn] = _plan(fn)
        return _PLANS[fn]


_ARRAY_TYPES: dict[tuple, object] = {}
_SCALAR_TYPES: dict[type, object] = {}  # int, float, bool, complex, NumPy number types -> their numba type


def _typeof(a: object) -> object:
    """``numba.typeof(a)``, for arrays from a cache keyed by what their numba type depends on (a launch has many
    array arguments, and numba.typeof costs about 10 µs each), for scalars by type (about 1 µs each)."""
    t = type(a)
    if t is not np.ndarray:  # a scalar's numba type follows from its Python type (an int's: in int64's range)
        ty = _SCALAR_TYPES.get(t)
        if ty is not None and (t is not int or -2**63 <= a < 2**63):
            return ty
        ty = numba.typeof(a)
        if (t in (int, float, complex, bool) or issubclass(t, (np.number, np.bool_))) and isinstance(
                ty, (numba.types.Integer, numba.types.Float, numba.types.Complex, numba.types.Boolean)):
            _SCALAR_TYPES[t] = numba.int64 if t is int else ty  # an int over 2**63 types uint64: not cached
        return ty
    f = a.flags
    key = (a.dtype, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)
    ty = _ARRAY_TYPES.get(key)
    if ty is None:
        ty = _ARRAY_TYPES[key] = numba.typeof(a)
    return ty


def compile_for_cpu(kernel: object, args: Sequence = ()) -> _Compiled:
    """The executor of ``kernel`` for arguments of these types (host arrays and scalars as passed to the launcher).

    Cached per kernel and kinds of arguments (array or scalar: the checked launcher probes data-gated accesses
    of a kernel proven for them), and per argument types where values live across a barrier (their arrays need
    dtypes), so a later launch of any shape only runs it.
    """
    return _compile(python_function(kernel), _argtypes(args), _describe(list(args))[0])


def _argtypes(args: Sequence) -> tuple:
    try:
        return tuple(_typeof(a) for a in args)
    except ValueError as exc:  # numba.typeof refuses what it cannot type: the simulator may still take it
        raise ExecutorUnsupported(f"an argument numba cannot compile for the CPU: {exc}") from exc


# The disk record of generated code: what _compile generates for a kernel (the launcher's source and its lanes and
# readable texts, the per-thread dtypes, ...) is a function of the kernel's source text, the values of the globals
# it reads (_source keeps no other: every name the body reads and never assigns, the values of module attributes
# it names, each device function by its own compiled code's key, which names its source and values in turn), the
# argument types and kinds, LANES and WIDE, and the code of this module and of nbkit.core.bounds (file digests),
# numba, NumPy, llvmlite and Python. A fresh process with a record skips the transform (about 60% of its first
# LeNet step's CPU time, 2026-11-30) and finds the texts' globals in it (_reads); what the record cannot name
# exactly (a value _value_key refuses) gets no record, and what depends on other state is computed anew in every
# process: the shared arrays' poison (poison_value), the globals the launcher is compiled with (_cpu_env), whether
# the kernel is proven (_unproven). tests/test_diskcache.py changes each input and sees another key.
_GEN_VERSION = "|".join(("generated code 1", _VERSION, diskcache.file_digest(bounds.__file__)))
_PER_THREAD: dict[Callable, bool] = {}  # python function -> whether its launchers keep per-thread arrays


def _generation_key(src: _Source, env: dict, argtypes: tuple, kinds: tuple[str, ...]) -> str | None:
    """The name of the disk record of what :func:`_compile` generates for ``src`` with these arguments (``env``:
    its CPU globals, :func:`_cpu_env`), or None when a value it reads cannot be named exactly."""
    parts = []
    for name, value in src.env.items():  # only the names the kernel reads (see _source)
        if name in src.cuda_names:
            key: str | None = "the cuda module"  # its attributes are translated by name (_Lower), never read
        elif name in src.device_fns:  # by the key of its compiled code (its source, its values: _njit)
            key = _value_key(env.get(name)) if _is_device_function(value) else None
        else:
            key = _value_key(value)
        if key is None:
            return None
        parts.append(f"{name}={key}")
    chains = sorted({".".join(p) for n in ast.walk(src.fdef) if type(n) is ast.Attribute and (p := _dotted(n))
                     and p[0] in src.env and p[0] not in src.cuda_names
                     and isinstance(src.env[p[0]], pytypes.ModuleType)})
    for chain in chains:  # module attributes, as _globals_key names them
        root, *attrs = chain.split(".")
        value = src.env[root]
        for attr in attrs:
            value = getattr(value, attr, None)
        key = _value_key(value)
        if key is None:
            return None
        parts.append(f"{chain}={key}")
    return diskcache.digest(_GEN_VERSION, f"LANES={LANES!r} WIDE={WIDE!r}", f"name={src.name}", src.text,
                            "\n".join(parts), repr(argtypes), repr(kinds))


_RECORD_FIELDS = {"code": str, "readable": str, "lanes": (str, type(None)), "apart": list, "unprobed": bool,
                  "dtypes": dict, "serial": bool, "per_thread": bool, "shared": list, "reads": dict}


def _record_check(key: str, record: dict) -> str:
    return diskcache.digest(key, json.dumps({k: record[k] for k in _RECORD_FIELDS}, sort_keys=True))


def _load_generated(folder: object, key: str) -> dict | None:
    """The record named ``key`` if it is whole and holds what its writer stored (its check), else None."""
    record = diskcache.read_json(folder / f"gen_{key}.json")  # type: ignore[operator]
    if not isinstance(record, dict) or any(not isinstance(record.get(k), t) for k, t in _RECORD_FIELDS.items()):
        return None
    if record.get("check") != _record_check(key, record):
        return None
    for text, field_ in ((record["code"], "code"), (record["lanes"], "lanes")):
        reads = record["reads"].get(field_)
        if text is not None and reads is not None and text not in _READS:
            _READS[text] = (tuple(reads[0]), tuple(reads[1]))
    return record


def _store_generated(folder: object, key: str, record: dict) -> None:
    record["reads"] = {"code": _reads(record["code"])}
    if record["lanes"] is not None:
        record["reads"]["lanes"] = _reads(record["lanes"])
    record = json.loads(json.dumps(record))  # as it will be read back (tuples as lists)
    record["check"] = _record_check(key, record)
    diskcache.write_exact(folder / f"gen_{key}.json", json.dumps(record, sort_keys=True))  # type: ignore[operator]


def _compile(fn: Callable, argtypes: tuple, kinds: tuple[str, ...]) -> _Compiled:
    per_thread = _PER_THREAD.get(fn)
    if per_thread is not None:
        compiled = _COMPILED.get((fn, kinds, argtypes if per_thread else None))  # every launch asks: no lock
        if compiled is not None:
            return compiled
    with _LOCK:
        folder = diskcache.cache_dir("cpu")
        record, gkey, cpu_env = None, None, None
        if folder is not None:
            try:
                src = _cached_source(fn)
                cpu_env = _cpu_env(src)[0]
                gkey = _generation_key(src, cpu_env, argtypes, kinds)
            except ExecutorUnsupported:  # raised again below, where the plan finds it, in its order
                gkey = None
            record = _load_generated(folder, gkey) if gkey is not None else None
        plan = _get_plan(fn) if record is None else None
        per_thread = bool(plan.arrays) if plan is not None else record["per_thread"]  # type: ignore[index]
        _PER_THREAD[fn] = per_thread
        key = (fn, kinds, argtypes if per_thread else None)
        if key in _COMPILED:
            return _COMPILED[key]
        if plan is not None:
            dtypes = _probe_types(plan, argtypes)
            probes = _probe_statements(plan, fn, kinds)
            placed: set = set()
            code = _emit(plan, dtypes, probes=probes, placed=placed)
            lanes_source, apart = None, ()
            try:
                lanes_source = _emit(plan, dtypes, lanes=LANES, probes=probes, wide=WIDE)
                _, reads, writes = _jam([_tree_copy(s) for s in plan.pieces[0].stmts], plan.env, LANES)
                where = {p: i for i, p in enumerate(plan.params)}
                apart = tuple((where[w], where[r]) for w in sorted(writes & set(where))
                              for r in sorted(reads & set(where)))
            except _NoJam:
                pass
            record = {"code": code, "readable": _emit(plan, dtypes, wrap_indices=False), "lanes": lanes_source,
                      "apart": apart, "unprobed": len(placed) < len(probes),  # a data-gated access not probed
                      "dtypes": {v: dt.str for v, dt in dtypes.items()}, "serial": plan.atomics,
                      "per_thread": per_thread,
                      "shared": [(stmt.targets[0].id, ast.unparse(stmt.value.args[1])) for stmt in plan.shared]}
            if gkey is not None:
                _store_generated(folder, gkey, dict(record))
            env = dict(plan.env)
        else:
            env = cpu_env  # type: ignore[assignment]
        env.update({f"_dt_{v}": np.dtype(dt) for v, dt in record["dtypes"].items()})  # type: ignore[index]
        env.update({f"_poison_{name}": _poison(_expr(dtype), env) for name, dtype in record["shared"]})  # type: ignore[index]
        env["_ix"], env["_spec"] = _ix_record, _spec_record
        code = record["code"]  # type: ignore[index]
        name = _cached_source(fn).name  # the plan's and the key's (one reading of the function)
        compiled = _Compiled(_njit(code, f"_launch_{name}", name, dict(env)),
                             record["serial"], code, name, env, record["readable"],  # type: ignore[index]
                             record["lanes"], tuple(tuple(pair) for pair in record["apart"]),  # type: ignore[index]
                             record["unprobed"])  # type: ignore[index]
        _COMPILED[key] = compiled
        return compiled


# ---------------------------------------------------------------------------------------------- bounds checks

# Launches that may run without numba's bounds checks (the scheme is nbkit.core.bounds's docstring): a kernel whose
# accesses are proven launch-determined (per kind of argument: which are arrays), and a launch key (the launcher,
# argument types, grid, block, array shapes, scalar values to the bit) that already ran checked without an error.
# A launch that took less CPU time than _UNCHECKED_MIN_SECONDS (measured on a checked run that did not compile)
# stays checked: the saving (up to 40% of it) would hardly pay for compiling the second variant (about 0.5 s, once
# per machine: the disk cache keeps it). At 0.25 ms a LeNet step at batch 4 switches its convolutions and matmuls.
_UNPROVEN: dict[tuple, str | None] = {}  # (python function, kinds) -> why not proven, or None
_PROVEN: dict[tuple, tuple[float, bool]] = {}  # launch key -> (CPU seconds of its checked run, a negative index)
_PROVEN_MAX = 100_000  # a bound on memory: past it the table starts afresh (launches are then checked once more)
_UNCHECKED_MIN_SECONDS = 0.00025
_LAST = threading.local()


def _unproven(fn: Callable, kinds: tuple[str, ...]) -> str | None:
    """Why launches of ``fn`` with arguments of these kinds always run with bounds checks (None: they need not)."""
    key = (fn, kinds)
    if key not in _UNPROVEN:
        src = _cached_source(fn)  # the kernel as written (a launch with a disk record makes no plan)
        params = [a.arg for a in src.fdef.args.args]
        probes: list = []
        if len(kinds) != len(params):
            reason: str | None = f"{len(kinds)} arguments for {len(params)} parameters"
        else:
            reason, probes = bounds.analyse(src.fdef, src.env, src.cuda_names, src.device_fns,
                                            dict(zip(params, kinds)),
                                            lambda v: _is_cuda_function(v) and _is_device_function(v))
        _PROBES[key] = probes
        _UNPROVEN[key] = reason
    return _UNPROVEN[key]


_PROBES: dict[tuple, list] = {}  # (python function, kinds) -> bounds.analyse's data-gated accesses


def _probe_statements(plan: _Plan, fn: Callable, kinds: tuple[str, ...]) -> dict:
    """(line, column) of a statement -> the ``_spec`` calls to put before it (see _spec_record), for a kernel
    proven for these kinds of arguments; {} otherwise."""
    if _unproven(fn, kinds) is not None:
        return {}
    lower = _Lower(plan.source.cuda_names, plan.source.device_fns, in_device=False)
    out: dict = {}
    for anchor, sub, guard in _PROBES[(fn, kinds)]:
        index = sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice]
        calls: list[ast.stmt] = [ast.Expr(ast.Call(ast.Name("_spec", ast.Load()),
                                                   [_expr(f"{sub.value.id}.shape[{d}]"),
                                                    lower.visit(_tree_copy(e)), ast.Name("_negp", ast.Load())],
                                                   []))
                                 for d, e in enumerate(index)]
        if guard:  # only where the access can run at all (the launch-determined part of its if's test)
            test = guard[0] if len(guard) == 1 else ast.BoolOp(ast.And(), guard)
            calls = [ast.If(lower.visit(_tree_copy(test)), calls, [])]
        here = out.setdefault((anchor.lineno, anchor.col_offset), [])
        here.extend(c for c in calls if ast.dump(c) not in {ast.dump(h) for h in here})  # once each
    return out


_KIND_OF_TYPE: dict[type, str] = {}


def _kind(t: type) -> str:
    kind = _KIND_OF_TYPE.get(t)
    if kind is None:
        kind = _KIND_OF_TYPE[t] = ("array" if issubclass(t, np.ndarray) else
                                   "scalar" if issubclass(t, (bool, int, float, complex, np.number, np.bool_)) else
                                   f"other: {t.__name__}")
    return kind


def _describe(host: list) -> tuple[tuple[str, ...], tuple | None]:
    """Each argument's kind ("array", "scalar", or the type of anything else) and what the accesses of a
    launch-determined kernel depend on: each array's dtype and shape (its layout changes addresses, not indices),
    each scalar to the bit (0.0 and -0.0 differ, a NaN equals itself); None if an argument is neither. One pass,
    cheap to hash (numba types are not: about 1 µs each, and a launch has many arguments)."""
    kinds, parts = [], []
    for a in host:
        t = type(a)
        kind = _kind(t)
        kinds.append(kind)
        if kind == "array":
            parts.append((a.dtype, a.shape))
        elif kind != "scalar":
            continue
        elif issubclass(t, np.generic):
            parts.append((t, a.tobytes()))
        elif issubclass(t, float):
            parts.append((t, float(a).hex()))
        elif issubclass(t, complex):
            parts.append((t, a.real.hex(), a.imag.hex()))
        else:
            parts.append((t, int(a)))
    return tuple(kinds), (tuple(parts) if len(parts) == len(host) else None)


def unchecked_reason(kernel: object, *args: object) -> str | None:
    """Why launches of ``kernel`` with these arguments always keep numba's bounds checks, or None when the
    kernel's accesses are proven launch-determined (:mod:`nbkit.core.bounds`), so that a repeated launch with
    the same key runs without them."""
    host = [_host(a) for a in args]
    fn = python_function(kernel)
    _get_plan(fn)  # a kernel the executor cannot run raises ExecutorUnsupported, as its launch would
    return _unproven(fn, _describe(host)[0])


def last_launch_checked() -> bool | None:
    """Whether the last :func:`run_on_cpu` on this thread ran with numba's bounds checks (None: no launch yet)."""
    return getattr(_LAST, "checked", None)


def last_launch_lanes() -> bool | None:
    """Whether the last :func:`run_on_cpu` on this thread ran unchecked with threads interleaved (see LANES;
    None: no launch yet)."""
    return getattr(_LAST, "lanes", None)


def last_launch_unsigned() -> bool | None:
    """Whether the last :func:`run_on_cpu` on this thread ran unchecked with its array indices as unsigned (its
    key's checked run saw no negative index; None: no launch yet)."""
    return getattr(_LAST, "unsigned", None)


def _poison(dtype: ast.expr, env: dict) -> object:
    """What a shared array of this dtype (the kernel's expression) starts as: the simulator's poison, else 0."""
    try:
        value = poison_value(as_dtype(eval(compile(ast.Expression(dtype), "<dtype>", "eval"), dict(env))))  # noqa: S307
    except Exception:  # noqa: BLE001 - an expression we cannot evaluate here: numba will say what is wrong with it
        value = None
    return 0 if value is None else value


def generated_source(kernel: object, *args: object) -> str:
    """The Python source the executor compiles for ``kernel`` (to read how a barrier was split), without the
    ``_ix(index, _negp)`` wrapper it puts around every array index (:func:`_ix_record`)."""
    return compile_for_cpu(kernel, [_host(a) for a in args]).readable


def _dims(value: int | Sequence[int], what: str) -> tuple[int, int, int]:
    if type(value) is tuple and len(value) == 3:  # as every routed launch passes them (core.simulator)
        x, y, z = value
        if type(x) is int and type(y) is int and type(z) is int and x > 0 and y > 0 and z > 0:
            return value
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(int(d) < 1 for d in dims):
        raise ValueError(f"{what} must be 1 to 3 positive ints, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _host(arg: object) -> object:
    memory = device_array_memory(arg)
    return memory if memory is not None else arg


_POOL: ThreadPoolExecutor | None = None
# Whether a launch's blocks are shared out to the pool (handing out work costs ~80 µs on a quiet machine, far more
# on a busy one) is decided by its work, not its thread count: a cheap launch of many threads (an element-wise
# kernel) runs on the calling thread, and few threads with long loops (a weight gradient: one thread per weight,
# each summing over the batch) are split. The work is the CPU time the same launch took the first time it ran
# compiled (its threads' CPU time: waiting for a busy machine does not count; the same launch: launcher variant,
# grid, block, the arguments' shapes and scalars); a launch not seen before is shared out if it has many threads.
_PARALLEL_MIN_THREADS = 16384
_PARALLEL_MIN_SECONDS = 0.001
_WORK_SECONDS: dict[tuple, float] = {}
_WHERE_ROW = 16  # int64s per worker's where-record: 128 bytes, so that two workers' records share no cache line
_READY: set = set()  # (launcher, ids of the argument types) that ran: compiled for those types


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="nbkit-executor")
        return _POOL


def _where_records(workers: int) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """Zeroed where-records for a launch on ``workers`` workers: the array, its rows, the address of each row's
    flags (``[2]``, see _ix_record). Kept per calling thread and reused (a new array and its address cost about 2 µs
    a launch); a launch reads its records only before it returns, and its thread makes no other launch meanwhile."""
    records = getattr(_LAST, "wheres", None)
    if records is None:
        records = _LAST.wheres = {}
    made = records.get(workers)
    if made is None:
        wheres = np.zeros((workers, _WHERE_ROW), np.int64)
        base = wheres.ctypes.data
        made = records[workers] = (wheres, list(wheres), [base + (_WHERE_ROW * k + 2) * wheres.itemsize
                                                          for k in range(workers)])
    else:
        made[0].fill(0)
    return made


def _saved_arrays(host: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Copies of a launch's arrays, to put back if it raises :class:`BarrierDivergence`."""
    return [(a, a.copy()) for a in host if isinstance(a, np.ndarray)]


def run_on_cpu(kernel: object, griddim: int | Sequence[int], blockdim: int | Sequence[int], *args: object) -> None:
    """Run ``kernel[griddim, blockdim](*args)`` as compiled CPU loops; writes go to the arrays passed.

    Raises :class:`ExecutorUnsupported` for kernels the transform cannot handle, and ``IndexError`` naming the
    block and thread for an index out of bounds. Runs without numba's bounds checks only a launch whose key
    (launcher, argument types, grid, block, array shapes, scalar values to the bit) already ran checked without
    an error, of a kernel whose accesses :mod:`nbkit.core.bounds` proves launch-determined: that launch then
    executes the same accesses, all in bounds. Kernels not proven, new keys, and launches under
    ``_UNCHECKED_MIN_SECONDS`` of work (a second compile would not pay) keep the checks.
    """
    grid, block = _dims(griddim, "griddim"), _dims(blockdim, "blockdim")
    host = [_host(a) for a in args]
    fn = python_function(kernel)
    argtypes = _argtypes(host)
    kinds, parts = _describe(host)
    compiled = _compile(fn, argtypes, kinds)
    reason = _UNPROVEN.get((fn, kinds), "")
    if reason == "":
        reason = _unproven(fn, kinds)
    if compiled.unprobed:
        reason = "an access decided by data next to a barrier (not probed)"
    proof = None if reason or parts is None else (compiled.launcher, grid, block, parts)
    proven = _PROVEN.get(proof) if proof is not None else None
    checked = proven is None or proven[0] < _UNCHECKED_MIN_SECONDS or compiled.no_unchecked
    unsigned = not checked and not proven[1]  # type: ignore[index]
    lanes = not checked and compiled.lanes_allowed(host)
    launcher = (compiled.unchecked(nonnegative=unsigned, lanes=lanes) if not checked else
                compiled.launcher if proof is not None else compiled.checked_only())
    _LAST.checked, _LAST.unsigned, _LAST.lanes = checked, unsigned, lanes
    nblocks = grid[0] * grid[1] * grid[2]
    # the same kernel, grid and block on other shapes (a dense layer's forward and backward matmuls) is other work
    launch_key = (launcher, grid, block, parts)  # per variant: an unchecked launch is other work than a checked one
    work = _WORK_SECONDS.get(launch_key)
    # thread_time costs ~13 µs a call on this VM, a third of a small launch's overhead: measured only where it
    # decides something, for a launch not measured yet and for a checked run that may prove its key
    measure = work is None or (proof is not None and proven is None)
    if work is None:  # an unchecked variant's first run: what the checked launcher took, an upper bound
        work = _WORK_SECONDS.get((compiled.launcher, grid, block, parts))
    small = (work < _PARALLEL_MIN_SECONDS if work is not None  # the pool costs more than it saves
             else nblocks * block[0] * block[1] * block[2] < _PARALLEL_MIN_THREADS)
    workers = 1 if compiled.serial or small else max(1, min(os.cpu_count() or 1, nblocks))
    bounds = [(nblocks * k // workers, nblocks * (k + 1) // workers) for k in range(workers)]
    # per worker: block, thread, flags (_NEGATIVE, _SPECULATIVE_OUT) in a row of its own cache lines: a launcher
    # writes the thread at every thread, and two workers writing one cache line slow each other down (false sharing)
    wheres, rows, negps = _where_records(workers)
    errors: list[tuple[int, IndexError]] = []
    diverged: list[BarrierDivergence] = []
    # BarrierDivergence is found after earlier phases wrote: keep the arrays to put back, where it can happen. Not
    # in an unchecked run: its key is proven, so every loop's trip count, per thread, is launch-determined (as every
    # decision on which accesses run: nbkit.core.bounds), and the checked run of the same key did not diverge.
    before = _saved_arrays(host) if compiled.may_diverge and checked else []

    cpu = [0.0] * workers

    def run(k: int) -> None:
        start = time.thread_time() if measure else 0.0
        try:
            launcher(bounds[k][0], bounds[k][1], rows[k], negps[k], *grid, *block, *host)
            cpu[k] = time.thread_time() - start if measure else 0.0
        except IndexError as exc:
            errors.append((k, exc))
        except BarrierDivergence as exc:  # wait for the other workers before putting the arrays back
            diverged.append(exc)

    try:
        first = 0
        ready = (launcher, *map(id, argtypes))  # numba types are interned: their ids name them, cheaply
        compiled_before = ready in _READY or bool(launcher.signatures)  # (signatures costs ~13 µs a call)
        if workers == 1 or not compiled_before:
            # alone: the first call compiles, and compiling once beats every worker waiting for it
            with _slp_vectorize() if lanes and not compiled_before else contextlib.nullcontext():
                run(0)
            first = 1
        futures = [_pool().submit(run, k) for k in range(max(first, 1), workers)]
        if first == 0:
            run(0)  # the calling thread takes the first share instead of waiting
        for future in futures:
            future.result()
        _READY.add(ready)
        if compiled_before and not compiled.serial and measure:
            if len(_WORK_SECONDS) >= _PROVEN_MAX:  # a bound on memory, as for _PROVEN
                _WORK_SECONDS.clear()
            _WORK_SECONDS[launch_key] = sum(cpu)  # CPU time of the work itself, not of handing it out
    except numba.core.errors.NumbaError as exc:  # compile-time only: errors of the running code are not NumbaErrors
        # nothing ran (the first call of a launcher compiles, alone): a variant numba refuses where the checked
        # launcher compiled falls back to the plain loops, then to the checked launcher, from now on
        if lanes:
            compiled.lanes_source = None
            return run_on_cpu(kernel, griddim, blockdim, *args)
        if not checked:
            compiled.no_unchecked = True
            return run_on_cpu(kernel, griddim, blockdim, *args)
        raise ExecutorUnsupported(f"numba cannot compile {python_function(kernel).__name__} for the CPU: "
                                  f"{str(exc).splitlines()[0]}") from exc
    if diverged:
        for array, saved in before:
            array[...] = saved
        raise diverged[0]
    if errors:
        k, exc = min(errors, key=lambda e: e[0])
        blk, t = (int(v) for v in wheres[k][:2])
        b = (blk % grid[0], blk // grid[0] % grid[1], blk // (grid[0] * grid[1]))
        th = (t % block[0], t // block[0] % block[1], t // (block[0] * block[1]))
        raise IndexError(f"{python_function(kernel).__name__}[{grid}, {block}]: {exc} in block {b}, thread {th} "
                         f"(blockIdx.x, .y, .z and threadIdx.x, .y, .z; the simulator names the array and "
                         f"index)") from None
    if proof is not None and proven is None and compiled_before:  # ran checked without an error: proven in bounds
        if len(_PROVEN) >= _PROVEN_MAX:
            _PROVEN.clear()
        # measured once: a cheap launch stays checked; indices all non-negative: they may run unsigned; a probed
        # access that would be out of bounds: not proven (see _spec_record)
        flags = [int(w[2]) for w in wheres]
        if not any(f & _SPECULATIVE_OUT for f in flags):
            _PROVEN[proof] = (sum(cpu), any(f & _NEGATIVE for f in flags))
