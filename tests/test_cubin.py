"""Compiler facts read from ptxas's report and nvdisasm's SASS, for the naive and tiled matmul (no GPU needed).

The figures asserted are structural (what the kernels' code forces), not typed-in copies of a report:
the naive kernel's hot loop has two global loads per FMA and no shared memory; the tiled kernel's
loop has one barrier pair, 2 global loads, 2 shared stores and 32 shared loads per 16 FMAs.
"""

import pytest

from nbkit.core import diskcache
from nbkit.kernels.matmul import TILE, matmul_naive_kernel, matmul_tiled_kernel
from nbkit.perf import cubin
from nbkit.perf.compiler import compiler_missing

REASON = compiler_missing() or cubin.tools_available()
pytestmark = [pytest.mark.compiler, pytest.mark.skipif(bool(REASON), reason=REASON)]


@pytest.fixture(scope="module")
def built():
    return cubin.build([matmul_naive_kernel, matmul_tiled_kernel], archs=("sm_75", "sm_80", "sm_90"))


def test_registers_and_shared_memory_come_from_ptxas(built):
    assert len(built) == 6
    for b in built:
        assert "Compiling entry function" in b.log and f"for '{b.cc}'" in b.log
        assert 0 < b.resources.registers <= 255 and not b.resources.spills and b.resources.stack_bytes == 0
        if b.name.endswith("tiled_kernel"):
            assert b.resources.shared_bytes >= 2 * TILE * TILE * 4 and b.resources.barriers == 1
        else:
            assert b.resources.shared_bytes == 0
    assert cubin.resources("matmul_naive_kernel", "sm_80") == next(
        b.resources for b in built if b.cc == "sm_80" and b.name.endswith("naive_kernel"))


def test_naive_matmul_hot_loop_is_two_global_loads_per_fma(built):
    counts = cubin.sass_counts(matmul_naive_kernel, "sm_80")
    loop = counts.main
    c = loop.counts
    assert c["FFMA"] >= 1 and c["LDG"] == 2 * c["FFMA"] and c["LDS"] == c["BAR"] == 0
    seq = loop.sequence()
    assert seq == ["LDG", "LDG", "FFMA"] * c["FFMA"]  # unrolled: LDG, LDG, FFMA repeated
    assert counts.total["STG"] >= 1 and counts.total["LDS"] == 0


def test_tiled_matmul_hot_loop_reuses_shared_memory(built):
    loop = cubin.sass_counts(matmul_tiled_kernel, "sm_80").main
    c = loop.counts
    assert c["FFMA"] == TILE and c["LDS"] == 2 * TILE and c["LDG"] == 2 and c["STS"] == 2 and c["BAR"] == 2
    assert loop.flops_per_pass == 2 * TILE


def test_sass_for_display_is_short_and_readable(built):
    text = cubin.sass(matmul_naive_kernel, "sm_80", max_lines=30)
    lines = text.splitlines()
    assert len(lines) == 31 and lines[-1].startswith("  ... ") and "_ZN" not in text
    assert "LDG" in cubin.sass(matmul_naive_kernel, "sm_80", max_lines=None)


def test_unknown_kernel_and_signature_are_clear_errors():
    with pytest.raises(KeyError, match="no single registered kernel matches 'no_such_kernel'"):
        cubin.resources("no_such_kernel")
    with pytest.raises(ValueError, match="has no registered signature"):
        cubin.resources(matmul_naive_kernel, "sm_80", signature="void(float64[::1])")
    with pytest.raises(ValueError, match="not an architecture: 'sm80'"):  # refused before anything is compiled
        cubin.resources(matmul_naive_kernel, "sm80")


def test_report_parser_on_a_ptxas_report():
    log = ("ptxas info    : Compiling entry function '_Z1kPf' for 'sm_80'\n"
           "ptxas info    : Function properties for _Z1kPf\n"
           "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers, 4096 bytes smem, 368 bytes cmem[0]\n")
    r = cubin.parse_ptxas_report(log)["_Z1kPf"]
    assert (r.registers, r.spill_store_bytes, r.spill_load_bytes, r.stack_bytes, r.shared_bytes, r.constant_bytes,
            r.barriers) == (255, 4, 12, 8, 4096, 368, 1)
    assert r.spills
    with pytest.raises(ValueError, match="no entry function"):
        cubin.parse_ptxas_report("ptxas info    : 0 bytes gmem\n")


def test_loops_are_found_by_backward_branches():
    sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   LDG.E R2, [R4.64] ;
        /*0020*/                   FFMA R3, R2, R2, R3 ;
        /*0030*/               @P0 BRA `(.L_x_1) ;
        /*0040*/                   STG.E [R4.64], R3 ;
        /*0050*/                   EXIT ;
.L_x_2:
        /*0060*/                   BRA `(.L_x_2);
"""
    instrs = cubin.parse_sass(sass)
    loops = cubin.find_loops(instrs)
    assert len(loops) == 1 and (loops[0].start, loops[0].end) == (0x10, 0x30) and loops[0].innermost
    assert loops[0].sequence() == ["LDG", "FFMA"]
    assert cubin.count_classes(instrs)["BRA"] == 2


def test_a_missing_nvdisasm_wheel_is_a_clear_error(monkeypatch):
    import importlib.metadata

    def no_package(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", no_package)
    with pytest.raises(cubin.ToolMissing, match="pip install nvidia-cuda-nvdisasm"):
        cubin.nvdisasm_path()
    assert "nvidia-cuda-nvdisasm" in cubin.tools_available()


_STORE_ONE = """.version 8.0
.target sm_80
.address_size 64

.visible .entry store_one(.param .u64 out)
{
	.reg .b32 %r<2>;
	.reg .b64 %rd<3>;
	ld.param.u64 %rd1, [out];
	cvta.to.global.u64 %rd2, %rd1;
	mov.b32 %r1, 1;
	st.global.u32 [%rd2], %r1;
	ret;
}
"""


def test_cubins_and_sass_are_kept_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_CACHE_DIR", str(tmp_path))
    made, log = cubin.ptx_to_cubin(_STORE_ONE, "sm_80")
    sass = cubin.disassemble(made)
    assert "Compiling entry function 'store_one' for 'sm_80'" in log and "STG" in sass
    assert [len(list((tmp_path / part).glob("*.json"))) for part in ("cubin", "sass")] == [1, 1]

    def refuse(*args, **kwargs):
        raise AssertionError("compiled again instead of read from disk")

    monkeypatch.setattr(cubin, "_link", refuse)
    monkeypatch.setattr(cubin, "_nvdisasm", refuse)
    assert cubin.ptx_to_cubin(_STORE_ONE, "sm_80") == (made, log)
    assert cubin.disassemble(made) == sass
    for other in ({"cc": "sm_90"}, {"max_registers": 32}):  # another architecture or register limit: another entry
        with pytest.raises(AssertionError, match="compiled again"):
            cubin.ptx_to_cubin(_STORE_ONE, **{"cc": "sm_80", **other})
    with pytest.raises(AssertionError, match="compiled again"):
        cubin.ptx_to_cubin(_STORE_ONE.replace("mov.b32 %r1, 1;", "mov.b32 %r1, 2;"), "sm_80")
    monkeypatch.setenv("NBKIT_CACHE_DIR", "off")
    with pytest.raises(AssertionError, match="compiled again"):
        cubin.ptx_to_cubin(_STORE_ONE, "sm_80")
    with pytest.raises(AssertionError, match="compiled again"):
        cubin.disassemble(made)


def test_build_reads_what_is_on_disk_without_a_gpu_mode_process(tmp_path, monkeypatch):
    from nbkit.kernels.vector import vector_add
    from nbkit.perf import compiler

    monkeypatch.setenv("NBKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cubin, "_CACHE", {})
    spec = cubin._spec_of(vector_add)
    signature = spec.signatures[0]
    # stand-ins for what an earlier process stored: a PTX for this kernel, and its cubin with ptxas's report
    diskcache.write_json(compiler._ptx_entry(spec.py_func, signature, "sm_80", False), {"ptx": _STORE_ONE})
    cubin.ptx_to_cubin(_STORE_ONE, "sm_80")

    def refuse(*args, **kwargs):
        raise AssertionError("a GPU-mode process was started")

    monkeypatch.setattr(cubin, "_compile_in_subprocess", refuse)
    (b,) = cubin.build([vector_add], archs=("sm_80",))
    assert (b.name, b.signature, b.cc) == (spec.name, signature, "sm_80") and "'store_one'" in b.log
    assert b.from_disk  # what notebook 09 prints: how many of its cubins were compiled, how many read from disk
    assert not cubin.Build(b.name, b.signature, b.cc, b.resources, b.cubin).from_disk  # compiled here: the default
    with pytest.raises(AssertionError, match="GPU-mode process"):  # sm_90 is not on disk
        cubin.build([vector_add], archs=("sm_90",))
