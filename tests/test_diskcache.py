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
from nbkit.core.executor import compile_for_cpu, run_on_cpu
sys.path.insert(0, sys.argv[1])
import kmod

def launch():
    x = np.array([1, 2, 4, 8], np.float32)
    out = np.zeros(4, np.float32)
    run_on_cpu(kmod.mirror, 1, 4, x, out)
    stats = compile_for_cpu(kmod.mirror, [x, out]).launcher.stats
    print(json.dumps({"out": out.tolist(), "hits": sum(stats.cache_hits.values()),
                      "misses": sum(stats.cache_misses.values()), "path": stats.cache_path}), flush=True)

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
