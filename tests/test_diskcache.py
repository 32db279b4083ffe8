"""The disk cache of compiled code (nbkit.core.diskcache): a later process loads what an earlier one compiled,
a change of source or of a value the code reads is a miss (never a stale answer), concurrent writers are safe, and
a folder that cannot be written falls back to compiling in memory."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_compiler

from nbkit.core import diskcache, executor
from nbkit.perf import compiler
from nbkit.perf.ptx import f64_instructions

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent

# A kernel with a barrier and a value live across it (so the executor also probes per-thread dtypes), reading a
# module-level constant that numba freezes into the compiled code.
KERNEL = """
import numpy as np
from numba import cuda, float32

SCALE = np.float32({scale})


@cuda.jit
def mirror(x, out):
    s = cuda.shared.array(4, float32)
    i = cuda.threadIdx.x
    v = x[i] * SCALE
    s[i] = v
    cuda.syncthreads()
    out[i] = s[3 - i] {op} v
"""

# Launches kmod.mirror and prints one JSON line; then, for each further argument, rewrites kmod.py with that text,
# reloads it and launches again (a later version of the module, against the same cache).
LAUNCH = """
import importlib, json, sys
from pathlib import Path
import numpy as np
import nbkit
from nbkit.core import executor
from nbkit.core.executor import compile_for_cpu, run_on_cpu
sys.path.insert(0, sys.argv[1])
import kmod

def launch():
    x = np.array([1, 2, 4, 8], np.float32)
    out = np.zeros(4, np.float32)
    run_on_cpu(kmod.mirror, 1, 4, x, out)
    stats = compile_for_cpu(kmod.mirror, [x, out]).launcher.stats
    print(json.dumps({"out": out.tolist(), "hits": sum(stats.cache_hits.values()),
                      "misses": sum(stats.cache_misses.values()), "path": stats.cache_path,
                      "planned": len(executor._PLANS)}), flush=True)

launch()
for text in sys.argv[2:]:
    Path(kmod.__file__).write_text(text)
    importlib.reload(kmod)
    launch()
"""


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "NUMBA_CACHE_DIR")}
    env.update(NBKIT_MODE="sim", NBKIT_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _start(module_dir: Path, cache: Path, *later_versions: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LAUNCH, str(module_dir), *later_versions], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(cache), cwd=ROOT)


def _results(proc: subprocess.Popen) -> list[dict]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.strip().splitlines() if line.startswith("{")]


def _result(proc: subprocess.Popen) -> dict:
    return _results(proc)[-1]


def _module(tmp_path: Path, scale: float = 2.0, op: str = "+") -> Path:
    folder = tmp_path / "kernels"
    folder.mkdir(exist_ok=True)
    (folder / "kmod.py").write_text(KERNEL.format(scale=scale, op=op))
    return folder


def _expected(scale: float, op: str) -> list[float]:
    v = np.array([1, 2, 4, 8], np.float32) * np.float32(scale)
    return (v[::-1] + v if op == "+" else v[::-1] - v).tolist()


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory) -> dict:
    """Two processes compile ``mirror`` into an empty cache at once, then a third loads it: what each printed, and
    the cache folder's files right after. The third process then rewrites kmod.py twice (another value of SCALE,
    then another operator) and launches each version, against the same cache. Two tests read it (each process
    start costs a second or two)."""
    tmp = tmp_path_factory.mktemp("diskcache")
    kernels, cache = _module(tmp), tmp / "cache"
    first = [_start(kernels, cache), _start(kernels, cache)]  # two writers of the same entries at once
    first = [_result(proc) for proc in first]
    files = {"probes": list((cache / "cpu").glob("probe_*.json")), "partial": list((cache / "cpu").glob(".tmp-*"))}
    later, changed_constant, changed_source = _results(_start(kernels, cache, KERNEL.format(scale=3.0, op="+"),
                                                              KERNEL.format(scale=3.0, op="-")))
    return {"tmp": tmp, "cache": cache, "first": first, "later": later, "changed_constant": changed_constant,
            "changed_source": changed_source, **files}


def test_second_process_loads_what_concurrent_first_ones_compiled(first_runs):
    cache, later = first_runs["cache"], first_runs["later"]
    for result in first_runs["first"]:
        assert result["out"] == _expected(2.0, "+")
        assert result["hits"] + result["misses"] == 1
    assert later["out"] == _expected(2.0, "+")
    assert (later["hits"], later["misses"]) == (1, 0)
    assert later["planned"] == 0  # the generated code too came from the disk (its record): no transform ran
    assert later["path"].startswith(str(cache / "cpu"))
    assert len(first_runs["probes"]) == 1
    assert not first_runs["partial"]  # no half-written entry left behind


def test_changed_constant_or_source_is_a_miss_never_a_stale_result(first_runs):
    # The same kernels/kmod.py, rewritten, against the cache where its first version (2.0, "+") was compiled.
    assert all(result["out"] == _expected(2.0, "+") for result in first_runs["first"])
    changed_constant = first_runs["changed_constant"]  # only a global's value differs
    assert changed_constant["out"] == _expected(3.0, "+")
    assert changed_constant["misses"] == 1
    changed_source = first_runs["changed_source"]
    assert changed_source["out"] == _expected(3.0, "-")
    assert changed_source["misses"] == 1
    # each change named another record of the generated code: generated again (planned), never read back
    assert (changed_constant["planned"], changed_source["planned"]) == (1, 2)


def test_unwritable_cache_folder_compiles_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(diskcache.ENV_VAR, str(blocker / "cache"))  # cannot be created: a file is in the way
    monkeypatch.setattr(executor, "_LOADED", {})  # nothing compiled in memory before
    spec = importlib.util.spec_from_file_location("nbkit_test_unwritable_kmod", _module(tmp_path) / "kmod.py")
    kmod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, kmod)
    spec.loader.exec_module(kmod)
    x, out = np.array([1, 2, 4, 8], np.float32), np.zeros(4, np.float32)
    executor.run_on_cpu(kmod.mirror, 1, 4, x, out)
    stats = executor.compile_for_cpu(kmod.mirror, [x, out]).launcher.stats
    assert out.tolist() == _expected(2.0, "+")
    assert stats.cache_path is None and sum(stats.cache_hits.values()) == 0  # numba's stats without a cache


def test_values_that_cannot_be_named_are_not_cached():
    code = "def f(x):\n    return x + LIMIT + helper.value\n"
    assert executor._globals_key(code, {"LIMIT": np.float32(1), "helper": object()}) is None
    assert executor._globals_key(code, {"LIMIT": np.float32(1)}) == "LIMIT=np:<f4:0000803f"
    # the name of a local variable that is also a global is not read from the globals
    assert executor._globals_key("def f(x):\n    LIMIT = 2\n    return x + LIMIT\n", {"LIMIT": object()}) == ""


def test_a_cache_file_holds_exactly_its_named_text_else_it_is_replaced_not_bypassed(tmp_path, monkeypatch):
    """A launcher's module file is named by its whole text, the ``what`` header too: the same code under another
    label is another file, and a file whose text was changed outside nbkit (here its header) is replaced and
    loaded, not silently skipped by compiling in memory (numba's cache then holds nothing for it)."""
    monkeypatch.setenv(diskcache.ENV_VAR, str(tmp_path))
    code = "def _launch_k(a):\n    return a[0] * 3\n"

    def as_a_new_process(what):
        monkeypatch.setattr(executor, "_LOADED", {})  # nothing in memory: what a new process finds is the disk
        for name in [n for n in sys.modules if n.startswith("nbkit_cpu_")]:
            monkeypatch.delitem(sys.modules, name)
        compiled = executor._njit(code, "_launch_k", what, {"np": np})
        assert compiled(np.arange(2.0)) == 0.0
        return compiled

    first = as_a_new_process("kernel k")
    (path,) = (tmp_path / "cpu").glob("nbkit_cpu_*.py")
    assert first.py_func.__module__ == path.stem and first.stats.cache_path is not None
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("kernel k", "something else"), encoding="utf-8")
    again = as_a_new_process("kernel k")
    assert path.read_text(encoding="utf-8") == original  # replaced whole
    assert again.py_func.__module__ == path.stem and again.stats.cache_path is not None

    relabelled = as_a_new_process("kernel k, another label")
    assert relabelled.py_func.__module__ != path.stem and relabelled.stats.cache_path is not None
    assert len(list((tmp_path / "cpu").glob("nbkit_cpu_*.py"))) == 2 and path.read_text(encoding="utf-8") == original


def test_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(diskcache.ENV_VAR, "off")
    assert diskcache.cache_root() is None and diskcache.cache_dir("cpu") is None


COMPILED = """
from numba import cuda


@cuda.jit
def scale(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = x[i] * SCALE
"""


@needs_compiler
def test_compile_results_are_stored_on_disk_and_keyed_on_values(tmp_path, monkeypatch):
    monkeypatch.setenv(diskcache.ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(compiler, "_compiled", {})
    (tmp_path / "kmod.py").write_text(COMPILED)
    spec = importlib.util.spec_from_file_location("nbkit_test_kmod", tmp_path / "kmod.py")
    kmod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kmod)
    kmod.SCALE = np.float32(0.1)
    signature = "void(float32[::1])"
    first = compiler.compile_kernel(kmod.scale, signature)
    assert first.ptx and not f64_instructions(first.ptx)
    assert len(list((tmp_path / "cache" / "ptx").glob("*.json"))) == 1

    monkeypatch.setattr(compiler, "_compiled", {})  # as a new process: nothing in memory, no worker
    compiler._close_worker()
    compiler.start_compile_worker(kmod.scale, signature)
    assert not compiler._worker  # the answer is on disk: no worker is started for it
    assert compiler.compile_kernel(kmod.scale, signature) == first
    assert not compiler._worker

    kmod.SCALE = np.float64(0.1)  # the same source reading a float64 constant: another kernel for the compiler
    changed = compiler.compile_kernel(kmod.scale, signature)
    assert f64_instructions(changed.ptx)

    monkeypatch.setenv(diskcache.ENV_VAR, str(tmp_path / "kmod.py" / "cache"))  # cannot be created: compiles
    kmod.SCALE = np.float32(3)
    assert not f64_instructions(compiler.compile_kernel(kmod.scale, signature).ptx)


def test_the_compiler_version_reads_the_metadata_of_the_compilers_distributions_only(tmp_path, monkeypatch):
    """Every process that compiles names the compiler's distributions in its cache keys; reading every installed
    distribution's metadata to find them cost 0.13 s of CPU per process."""
    from importlib import metadata

    read = []

    class Recorded(metadata.PathDistribution):
        def read_text(self, filename):
            read.append(self._path.name)
            return super().read_text(filename)

    dists = []
    for name, version in (("numba-cuda", "9.9"), ("requests", "1.0"), ("llvmlite", "8.8")):
        folder = f"{name.replace('-', '_')}-{version}.dist-info"
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        dists.append(Recorded(tmp_path / folder))
    monkeypatch.setattr(metadata, "distributions", lambda: iter(dists))
    compiler._compiler_version.cache_clear()
    try:
        version = compiler._compiler_version()
    finally:
        compiler._compiler_version.cache_clear()
    assert "|llvmlite==8.8|numba-cuda==9.9" in version and "requests" not in version
    assert "requests-1.0.dist-info" not in read and "numba_cuda-9.9.dist-info" in read


def test_the_compile_workers_answers_are_keyed_on_numbas_settings(tmp_path, monkeypatch):
    """The worker inherits NUMBA_OPT; at 0 a float32 kernel's PTX keeps float64 conversions, so a stored answer
    made at another setting would give another verdict. The simulator switch decides only where kernels run."""
    import json

    monkeypatch.setenv(diskcache.ENV_VAR, str(tmp_path))
    monkeypatch.delenv("NUMBA_OPT", raising=False)
    request = json.dumps({"closure": {"functions": {"f": {"file": str(tmp_path / "k.py")}}}, "signature": "(float32[:],)"})
    default = compiler._disk_entry(request)
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert compiler._disk_entry(request) == default
    monkeypatch.setenv("NUMBA_OPT", "0")
    assert compiler._disk_entry(request) != default


# ---------------------------------------------------------------------------------------------- generated code

# A kernel reading every kind of input the executor's code generation reads: a global constant, a module's
# attribute, a closure value, a device function (which reads a global of its own), and an unused global.
GENERATED = """
import numpy as np
from numba import cuda, float32
import nbkit_test_gen_helper as helper

SCALE = {scale}
OFFSET = {offset}
UNUSED = {unused}
v = [1]  # names of the kernel's local and parameter, values no key can name: the kernel never reads them
n = [2]


@cuda.jit(device=True)
def dev(v):
    return v * {factor} + OFFSET


def make(k):
    @cuda.jit
    def {name}(x, out, n):
        s = cuda.shared.array(32, float32)
        i = cuda.grid(1)
        t = cuda.threadIdx.x
        v = float32(0)
        if i < n:
            v = dev(x[i]) * SCALE + helper.BIAS + k
        s[t] = v
        cuda.syncthreads()
        if i < n:
            out[i] = s[t] {op} v
    return {name}
"""
GENERATED_BASE = dict(scale="np.float32(2)", offset="1.5", unused="3", factor="2", name="kern", op="+")


def _generated_kernel(tmp_path: Path, k: object = 1.0, **change: str) -> object:
    """The kernel of GENERATED with these changes, from a module file of its own (a fresh function object)."""
    text = GENERATED.format(**{**GENERATED_BASE, **change})
    path = tmp_path / f"kgen_{abs(hash((text, repr(k))))}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(k)


def _generation_key(kernel: object, args: list) -> str | None:
    from nbkit.core.source import python_function

    src = executor._cached_source(python_function(kernel))
    return executor._generation_key(src, executor._cpu_env(src)[0], executor._argtypes(args),
                                    executor._describe(args)[0])


@pytest.fixture
def generated(tmp_path, monkeypatch):
    """A cache folder of its own and the helper module whose attribute the kernel reads."""
    monkeypatch.setenv(diskcache.ENV_VAR, str(tmp_path / "cache"))
    (tmp_path / "nbkit_test_gen_helper.py").write_text("BIAS = 0.25\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nbkit_test_gen_helper", raising=False)
    return tmp_path


def test_the_key_of_generated_code_changes_with_every_input_it_is_made_from(generated, monkeypatch):
    """What the executor generates is stored on disk under a key; a stale generated source would be a silent
    wrong result, so every input of code generation must change the key: the kernel's text, each global it reads
    (through a module too), a closure value, a device function's text and its globals, the argument types and
    kinds, LANES and WIDE, and the code of the executor and of nbkit.core.bounds (their file digests)."""
    import nbkit_test_gen_helper as helper

    from nbkit.core import bounds

    x, out = np.zeros(40, np.float32), np.zeros(40, np.float32)
    args = [x, out, 40]
    base = _generation_key(_generated_kernel(generated), args)
    assert base is not None
    assert _generation_key(_generated_kernel(generated), args) == base  # a new function object, the same inputs
    assert _generation_key(_generated_kernel(generated, unused="4"), args) == base  # a global it never reads
    keys = {"base": base}
    for what, change in {"source": dict(op="-"), "name": dict(name="kern2"), "constant": dict(scale="np.float32(3)"),
                         "constant type": dict(scale="np.float64(2)"), "device source": dict(factor="3"),
                         "device global": dict(offset="2.5")}.items():
        keys[what] = _generation_key(_generated_kernel(generated, **change), args)
    keys["closure"] = _generation_key(_generated_kernel(generated, k=2.0), args)
    keys["argument dtype"] = _generation_key(_generated_kernel(generated), [x.astype(np.float64), out, 40])
    keys["argument layout"] = _generation_key(_generated_kernel(generated), [x[::2], out, 40])
    keys["argument kind"] = _generation_key(_generated_kernel(generated), [x, out, np.zeros(1)])
    keys["scalar type"] = _generation_key(_generated_kernel(generated), [x, out, 40.0])
    monkeypatch.setattr(helper, "BIAS", 0.5)
    keys["module attribute"] = _generation_key(_generated_kernel(generated), args)
    monkeypatch.setattr(helper, "BIAS", 0.25)
    for name, value in (("LANES", 2), ("WIDE", 4), ("_GEN_VERSION", executor._GEN_VERSION + "x")):
        with monkeypatch.context() as m:
            m.setattr(executor, name, value)
            keys[name] = _generation_key(_generated_kernel(generated), args)
    assert None not in keys.values() and len(set(keys.values())) == len(keys), keys
    assert _generation_key(_generated_kernel(generated), args) == base  # every change undone: the same key again
    for module in (executor, bounds):  # the code that generates: a change of either file names new records
        assert diskcache.file_digest(module.__file__) in executor._GEN_VERSION
    # a value it cannot name exactly: no record at all
    assert _generation_key(_generated_kernel(generated, scale="[2.0]"), args) is None


def test_generation_reads_only_the_globals_the_kernel_reads(generated):
    """The key names the values of the globals the kernel reads; code generation is given no other (so no other
    can change what it makes): not the module's other globals, not a global shadowed by a local or a parameter."""
    from nbkit.core.source import python_function

    src = executor._cached_source(python_function(_generated_kernel(generated)))
    assert sorted(src.env) == ["SCALE", "cuda", "dev", "float32", "helper", "k"]
    plan = executor._plan(src.fn)
    assert {"UNUSED", "OFFSET", "make", "v", "n"}.isdisjoint(plan.env) and plan.env["np"] is np


def test_a_later_process_takes_generated_code_from_its_record_and_poison_from_now(generated, monkeypatch):
    """A fresh process finds the generated code in its record instead of transforming the kernel again (about 60%
    of a LeNet step's CPU time in a fresh process), the same texts and facts; what may change between processes
    is computed anew (the shared arrays' poison: a test makes it zeros); a record that is not whole, or whose
    contents are not what its writer stored, is not used but generated again and replaced."""
    kernel = _generated_kernel(generated)
    args = [np.zeros(40, np.float32), np.zeros(40, np.float32), 40]
    first = executor.compile_for_cpu(kernel, args)  # (a launcher compiles at its first call: nothing compiles here)
    (record,) = (generated / "cache" / "cpu").glob("gen_*.json")

    def as_a_new_process():
        for table in ("_COMPILED", "_PLANS", "_SOURCES", "_PER_THREAD", "_READS", "_LOADED"):
            monkeypatch.setattr(executor, table, {})

    def no_plan(fn):
        raise AssertionError("planned again")

    as_a_new_process()
    with monkeypatch.context() as m:
        m.setattr(executor, "_plan", no_plan)
        m.setattr(executor, "poison_value", lambda dtype: 0)
        again = executor.compile_for_cpu(kernel, args)
    for field in ("source", "readable", "lanes_source", "lanes_apart", "unprobed", "serial", "name"):
        assert getattr(again, field) == getattr(first, field), field
    assert again.lanes_source is None and again.env["_dt_v"] == first.env["_dt_v"] == np.float64
    assert np.isnan(first.env["_poison_s"]) and again.env["_poison_s"] == 0
    assert set(again.env) == set(first.env)
    reads = executor._READS.pop(again.source)  # as stored in the record: what the text itself gives
    assert executor._reads(again.source) == reads

    stored = json.loads(record.read_text())
    for broken in ({**stored, "code": stored["code"] + "\n"}, {**stored, "check": "0"},
                   {k: v for k, v in stored.items() if k != "serial"}):
        record.write_text(json.dumps(broken))
        as_a_new_process()
        planned = []
        with monkeypatch.context() as m:
            m.setattr(executor, "_plan", lambda fn, plan=executor._plan: planned.append(fn) or plan(fn))
            assert executor.compile_for_cpu(kernel, args).source == first.source
        assert planned and json.loads(record.read_text()) == stored  # generated again, the record replaced whole


def test_a_kernel_renamed_after_its_first_launch_keeps_the_name_it_was_read_with(generated):
    """The plan, the record's key and the launcher's name all come from one reading of the function: a later
    compile (other kinds of arguments) of a kernel whose ``__name__`` was changed in between still finds its
    launcher (``_launch_kern`` in the generated text)."""
    from nbkit.core.source import python_function

    kernel = _generated_kernel(generated)
    x = np.zeros(40, np.float32)
    executor.compile_for_cpu(kernel, [x, x.copy(), 40])
    python_function(kernel).__name__ = "renamed"
    again = executor.compile_for_cpu(kernel, [x, x.copy(), np.zeros(1, np.int64)])
    assert again.name == "kern" and again.launcher.py_func.__name__ == "_launch_kern"
