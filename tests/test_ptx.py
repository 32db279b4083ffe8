"""Every registered nbkit kernel compiles to PTX for sm_75, sm_80 and sm_90, with no GPU present.

Compiling needs numba's real CUDA target, while the tests run in the simulator, so the compiler runs
once in a subprocess with NBKIT_MODE=gpu. New kernels join by registering with ``@nbkit.kernel``.
"""

import json
from pathlib import Path

import pytest
from conftest import needs_compiler

from nbkit.core import hw
from nbkit.kernels import all_kernels
from nbkit.perf.compiler import compiler_missing, run_in_gpu_mode
from nbkit.perf.ptx import f64_instructions

HERE = Path(__file__).resolve().parent
ARCHS = set(hw.ARCHS)


@pytest.fixture(scope="module")
def reports():
    if compiler_missing():
        pytest.skip(compiler_missing())
    r = run_in_gpu_mode(["-m", "nbkit.perf.ptx", "--json", "--module", "ptx_fixtures"], path=[str(HERE)], timeout=900)
    assert r.stdout, f"nbkit.perf.ptx printed nothing; stderr:\n{r.stderr}"
    by_name = {}
    for rep in json.loads(r.stdout.splitlines()[-1]):
        by_name.setdefault(rep["name"], []).append(rep)
    return by_name


NBKIT_KERNELS = [spec for spec in all_kernels() if spec.name.startswith("nbkit.")]


def test_the_registry_finds_kernels_by_itself():
    names = {spec.name for spec in NBKIT_KERNELS}
    assert "nbkit.kernels.vector.vector_add" in names


@needs_compiler
@pytest.mark.parametrize("spec", NBKIT_KERNELS, ids=lambda s: s.name)
def test_nbkit_kernel_compiles_for_every_architecture(reports, spec):
    mine = reports[spec.name]
    assert {r["cc"] for r in mine} == ARCHS
    assert len(mine) == len(ARCHS) * len(spec.signatures)
    failures = [f"{r['cc']} {r['signature']}: {p}" for r in mine for p in r["problems"]]
    assert not failures, "\n".join(failures)


@needs_compiler
def test_a_float64_literal_in_a_float32_kernel_fails(reports):
    bad = reports["ptx_fixtures.float64_literal_unmarked"]
    assert len(bad) == 3 and not any(r["ok"] for r in bad)
    assert all("float64 instruction(s)" in r["problems"][0] and "float32(0.5)" in r["problems"][0] for r in bad)


@needs_compiler
def test_the_float64_demonstration_really_shows_float64(reports):
    assert all(r["ok"] and r["f64_lines"] > 0 for r in reports["nbkit.kernels.precision.half_square_float64_literal"])
    assert all(r["ok"] and r["f64_lines"] == 0 for r in reports["nbkit.kernels.precision.half_square_float32"])
    fake = reports["ptx_fixtures.float32_marked_as_demo"]
    assert not any(r["ok"] for r in fake) and "without any float64 instruction" in fake[0]["problems"][0]


@needs_compiler
def test_a_float64_kernel_may_use_float64(reports):
    assert all(r["ok"] and r["f64_lines"] > 0 for r in reports["ptx_fixtures.float64_kernel"])


def test_float64_instructions_are_told_from_declarations_and_comments():
    ptx = """
    .param .f64 _Z5scale_param_2
    .reg .f64 \t%fd<4>;
    // mul.f64 in a comment
    \tcvt.f64.f32 \t%fd1, %f1;
    @%p1 add.f64 %fd2, %fd1, 0d3FB999999999999A;  // guarded
    mov.b64 %rd1, %fd1;
    cvt.rn.f32.f64 %f2, %fd3;
    $L__BB0_2:
    """
    assert f64_instructions(ptx) == ["cvt.f64.f32 %fd1, %f1;", "@%p1 add.f64 %fd2, %fd1, 0d3FB999999999999A;",
                                     "cvt.rn.f32.f64 %f2, %fd3;"]


_REAL_PTX = """
import json
import nbkit
from numba import cuda
from nbkit.perf.compiler import compile_ptx
from nbkit.kernels.precision import half_square_float32, half_square_float64_literal

def scale(x, out, a):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] * a

sig = "void(float32[::1], float32[::1])"
print(json.dumps([compile_ptx(half_square_float64_literal.py_func, sig, "sm_80"),
                  compile_ptx(half_square_float32.py_func, sig, "sm_80"),
                  compile_ptx(scale, "void(float64[::1], float64[::1], float64)", "sm_75")]))
"""


@needs_compiler
def test_float64_instructions_in_real_ptx():
    r = run_in_gpu_mode(["-c", _REAL_PTX], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    literal, clean, scale = json.loads(r.stdout.splitlines()[-1])
    # 0.5 * x * x: x widened, two float64 products, narrowed back; the .reg declaration is not counted
    assert ".reg .f64" in literal
    assert [line.split()[0] for line in f64_instructions(literal)] == ["cvt.f64.f32", "mul.f64", "mul.f64", "cvt.rn.f32.f64"]
    assert f64_instructions(clean) == [] and ".f64" not in clean
    # a float64 kernel: its .param .f64 declaration is left out, loading that parameter is an instruction
    assert ".param .f64" in scale
    assert [line.split()[0] for line in f64_instructions(scale)] == ["ld.param.f64", "ld.global.f64", "mul.f64",
                                                                     "st.global.f64"]


@needs_compiler
def test_shared_memory_in_ptx_matches_the_source_reading(reports):
    tile = reports["ptx_fixtures.tile_copy"]
    assert all(r["ok"] and r["shared_bytes"] == 8 * 8 * 4 for r in tile)


# ---- the resource test: ptxas's report, read from the cubin nvJitLink builds ----

@needs_compiler
def test_every_kernel_reports_registers_from_ptxas(reports):
    for spec in NBKIT_KERNELS:
        if not spec.device:
            assert all(r["registers"] and 0 < r["registers"] <= 255 for r in reports[spec.name]), spec.name


@needs_compiler
def test_a_kernel_that_spills_fails_with_the_spill_bytes(reports):
    bad = reports["ptx_fixtures.forced_spill"]
    assert len(bad) == 3 and not any(r["ok"] for r in bad)
    for r in bad:
        assert r["spill_bytes"] > 0
        assert "spills registers to local memory" in r["problems"][0] and "allow_spills=True" in r["problems"][0]
    allowed = reports["ptx_fixtures.forced_spill_allowed"]
    assert all(r["ok"] and r["spill_bytes"] > 0 for r in allowed)


@needs_compiler
def test_a_launch_that_cannot_reach_its_stated_occupancy_fails(reports):
    # 48 KiB shared + 256 threads: 1 block/SM on sm_75 (64 KiB) = 25%, 3 on sm_80 (164 KiB) = 37.5%,
    # 4 on sm_90 (228 KiB) = 50%; stated minimum 50%.
    hog = {r["cc"]: r for r in reports["ptx_fixtures.shared_hog"]}
    assert hog["sm_75"]["occupancy"] == 0.25 and hog["sm_80"]["occupancy"] == 0.375
    assert not hog["sm_75"]["ok"] and not hog["sm_80"]["ok"] and hog["sm_90"]["ok"]
    assert "below the stated 50%" in hog["sm_80"]["problems"][0] and "shared memory" in hog["sm_80"]["problems"][0]
    assert all(r["ok"] for r in reports["ptx_fixtures.shared_hog_honest"])


@needs_compiler
def test_the_tiled_matmul_keeps_its_registered_occupancy(reports):
    tiled = reports["nbkit.kernels.matmul.matmul_tiled_kernel"]
    assert all(r["ok"] and r["occupancy"] >= 0.5 and r["shared_bytes"] == 2 * 16 * 16 * 4 for r in tiled)
