"""Checks compile the learner's kernel as a GPU would: its whole closure, with one line for a refusal.

The compiler tier (numba-cuda's compiler, in the session's compile worker) except where a test replaces the
compiler: the no-compiler message and a numba error raised at a GPU launch.
"""

import math

import numpy as np
import pytest
from conftest import needs_compiler
from numba import cuda, float32

import nbkit.perf.compiler as compiler
from nbkit.checks._core import CheckFailed, launch_failed
from nbkit.checks.exercise import Case, KernelExercise
from nbkit.checks.nb08 import check_relu_in_lenet
from nbkit.perf.closure import NotShippable, kernel_closure

SCALE = KernelExercise(
    number="99.7", task="write the kernel scale(x, out)", call="scale(x, out)", outputs=("out",),
    inputs=lambda rng, c: {"x": rng.standard_normal(c.n).astype(np.float32)},
    reference=lambda x: 1.1 * x.astype(np.float64), cases=(Case(grid=2, block=32, sizes={"n": 50}),),
    rtol=1e-5, atol=1e-6, float32="void(float32[::1], float32[::1])", success="scaled; {float32}.",
)
COPY = KernelExercise(  # no float32 declared: compiled with the signature of its launch
    number="99.8", task="write the kernel copy(x, out)", call="copy(x, out)", outputs=("out",),
    inputs=lambda rng, c: {"x": rng.standard_normal(c.n).astype(np.float32)},
    reference=lambda x: x, cases=(Case(grid=2, block=32, sizes={"n": 50}),), success="copied.",
)
F32 = "float32 throughout (checked in the PTX: no .f64 instruction)"

FACTOR32 = np.float32(1.1)
FACTOR64 = np.float64(1.1)
TABLE = {"factor": 1.1, "one": 1.0}


@cuda.jit(device=True)
def times_factor32(v):
    return v * float32(1.1)


@cuda.jit(device=True)
def times_factor64(v):
    return v * 1.1  # a float64 literal: the multiplication is float64


@cuda.jit(device=True)
def via_helper(v):  # a device function that calls another
    return times_factor32(v)


@cuda.jit
def scale_device32(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = via_helper(x[i])


@cuda.jit
def scale_device64(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = times_factor64(x[i])


@cuda.jit
def scale_const32(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i] * FACTOR32


@cuda.jit
def scale_const64(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i] * FACTOR64


@cuda.jit
def scale_math(x, out):  # math and a module-level numpy constant, both sent to the compiler
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i] * FACTOR32 + math.floor(float32(0.5))


@cuda.jit
def scale_dict(x, out):  # a dict global: the simulator reads it, a kernel cannot be sent it (nor compiled with it)
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i] * TABLE["factor"]


def _closure_kernel():
    factor = np.float32(1.1)

    @cuda.jit
    def scale_closure(x, out):
        i = cuda.grid(1)
        if i < x.size:
            out[i] = x[i] * factor

    return scale_closure


@cuda.jit
def copy_shared_sized_at_launch(x, out):
    s = cuda.shared.array(cuda.blockDim.x, float32)
    i = cuda.grid(1)
    if i < x.size:
        s[cuda.threadIdx.x] = x[i]
        out[i] = s[cuda.threadIdx.x]


@cuda.jit
def copy_through_dict(x, out):
    i = cuda.grid(1)
    if i < x.size:
        d = {"v": x[i]}
        out[i] = d["v"]


@cuda.jit
def relu_no_guard(x, y):
    i = cuda.grid(1)
    y[i] = max(x[i], float32(0))


@cuda.jit
def relu_backward(dout, x, dx):
    i = cuda.grid(1)
    if i < dx.size:
        dx[i] = dout[i] if x[i] > float32(0) else float32(0)


def test_closure_sends_device_functions_constants_and_modules_by_value():
    closure = kernel_closure(scale_math)
    kernel = closure["functions"][closure["root"]]
    assert kernel["globals"] == {"cuda": {"module": "numba.cuda"}, "FACTOR32": {"np": "<f4", "v": float(FACTOR32)},
                                 "math": {"module": "math"}, "float32": {"nbtype": "float32"}}
    names = sorted(f["name"] for f in kernel_closure(scale_device32)["functions"].values())
    assert names == ["scale_device32", "times_factor32", "via_helper"]
    with pytest.raises(NotShippable, match="`TABLE` in scale_dict: a dict cannot be sent"):
        kernel_closure(scale_dict)


@needs_compiler
def test_device_function_kernel_is_proven_float32():
    verdict = SCALE.run(scale_device32)
    assert verdict.passed, verdict.message
    assert verdict.message == f"✓ scaled; {F32}."


@needs_compiler
def test_float64_device_function_is_rejected_with_the_count():
    verdict = SCALE.run(scale_device64)
    assert verdict.stage == "float32"
    assert verdict.message.startswith("✗ the PTX of your kernel contains 3 float64 instruction(s), e.g. `cvt.f64.f32")


@needs_compiler
def test_module_constants_keep_their_dtype():
    assert SCALE.run(scale_const32).message == f"✓ scaled; {F32}."
    assert SCALE.run(_closure_kernel()).message == f"✓ scaled; {F32}."  # a closure's free variable
    assert SCALE.run(scale_math).passed
    verdict = SCALE.run(scale_const64)
    assert verdict.stage == "float32" and "contains 3 float64 instruction(s)" in verdict.message


@needs_compiler
def test_shared_array_sized_at_launch_is_refused_with_the_compilers_reason():
    verdict = COPY.run(copy_shared_sized_at_launch)  # the simulator runs it; a GPU would not
    assert verdict.stage == "compile"
    assert verdict.message.startswith(
        "✗ numba-cuda's compiler refuses your kernel, so a GPU could not run it (void(float32[::1], float32[::1])): "
        "line ")
    assert "of copy_shared_sized_at_launch, `s = cuda.shared.array(cuda.blockDim.x, float32)`: no version of " \
           "cuda.shared.array accepts the argument types (int32, class(float32)): the shape of a shared or local " \
           "array must be a compile-time constant" in verdict.message


@needs_compiler
def test_typing_error_is_one_line_naming_the_line():
    verdict = COPY.run(copy_through_dict)
    assert verdict.stage == "compile"
    assert "\n" not in verdict.message and "During:" not in verdict.message
    assert "of copy_through_dict, `out[i] = d[\"v\"]`: no version of getitem accepts the argument types (DictType" \
           in verdict.message


@needs_compiler
def test_what_cannot_be_sent_is_said_not_hidden():
    verdict = SCALE.run(scale_dict)
    assert verdict.message == ("✓ scaled; float32 not checked: it could not be sent to the compiler: `TABLE` in "
                               "scale_dict: a dict cannot be sent to the compiler.")


def test_without_a_compiler_the_check_says_float32_was_not_checked(monkeypatch):
    monkeypatch.setattr(compiler, "compiler_missing", lambda: "numba-cuda is not installed here")
    assert SCALE.run(scale_const64).message == "✓ scaled; float32 not checked: numba-cuda's compiler is not installed."
    assert COPY.run(copy_shared_sized_at_launch).message == "✓ copied."  # nothing claimed about compiling


@needs_compiler
def test_a_second_check_of_the_same_kernel_is_answered_from_the_cache(monkeypatch):
    SCALE.run(scale_const32)
    asked = []
    real = compiler._ask_worker
    monkeypatch.setattr(compiler, "_ask_worker", lambda *a: asked.append(a) or real(*a))
    assert SCALE.run(scale_const32).passed
    assert asked == []  # no compile was asked for: the answer came from the cache


def test_a_numba_error_at_a_gpu_launch_is_one_line():
    from numba.core.errors import TypingError

    exc = TypingError("Failed in cuda mode pipeline (step: nopython frontend)\nUnknown attribute 'foo' of type "
                      "float32\n\nFile \"k.py\", line 4:\n    out[i] = x[i].foo\n\nDuring: typing of get attribute")
    with pytest.raises(CheckFailed) as info:
        launch_failed(exc, "copy(x, out)")
    assert str(info.value) == ("✗ numba-cuda's compiler refuses your kernel, so a GPU could not run it: Unknown "
                               "attribute 'foo' of type float32 (the check calls it as copy(x, out)).")


def test_relu_without_a_bounds_guard_gets_a_verdict():
    with pytest.raises(CheckFailed, match="bounds guard"):
        check_relu_in_lenet(relu_no_guard, relu_backward)


# The two other modes, each tested in the one interpreter of that mode that a test file already starts: cpu mode in
# tests/test_realistic_cases.py (test_cpu_mode_compiles_too), GPU mode without a GPU in tests/test_ptx.py
# (test_gpu_mode_compiles_a_checks_kernel_in_process); their own interpreters cost 2 s and 1.7 s of CPU.


@cuda.jit
def copy_dict(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i] * TABLE["one"]


@needs_compiler
def test_a_kernel_that_cannot_be_sent_is_said_in_the_check_without_float32():
    assert COPY.run(copy_dict).message == ("✓ copied. Not compiled for a GPU: it could not be sent to the compiler: "
                                           "`TABLE` in copy_dict: a dict cannot be sent to the compiler.")


@cuda.jit
def row_sum_acc64(M, out):
    r = cuda.grid(1)
    if r < out.size:
        acc = 0.0  # a float64 accumulator: right sums, float64 arithmetic
        for j in range(M.shape[1]):
            acc += M[r, j]
        out[r] = acc


@cuda.jit
def bias_grad_acc64(dZ, db):
    j = cuda.grid(1)
    if j < db.size:
        acc = 0.0
        for n in range(dZ.shape[0]):
            acc += dZ[n, j]
        db[j] = acc


@cuda.jit
def avgpool_forward_acc64(x, y):
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    n, c = z // C, z % C
    if n < y.shape[0] and i < y.shape[2] and j < y.shape[3]:
        acc = 0.0  # a float64 accumulator (a bare * 0.25 alone is exact, and the compiler keeps it float32)
        for di in range(2):
            for dj in range(2):
                acc += x[n, c, 2 * i + di, 2 * j + dj]
        y[n, c, i, j] = acc * 0.25


@cuda.jit
def avgpool_backward32(dy, dx):
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    n, c = z // C, z % C
    if n < dx.shape[0] and h < dx.shape[2] and w < dx.shape[3]:
        if h // 2 < dy.shape[2] and w // 2 < dy.shape[3]:
            dx[n, c, h, w] = dy[n, c, h // 2, w // 2] * float32(0.25)
        else:
            dx[n, c, h, w] = float32(0)


@needs_compiler
@pytest.mark.parametrize("exercise, answers", [
    ("ROW_SUM", (row_sum_acc64,)), ("BIAS_GRAD", (bias_grad_acc64,)),
    ("AVGPOOL", (avgpool_forward_acc64, avgpool_backward32)),
])
def test_exercises_whose_hints_ask_for_float32_prove_it(exercise, answers):
    from nbkit.checks import nb03, nb04, nb06

    ex = getattr(nb03, exercise, None) or getattr(nb04, exercise, None) or getattr(nb06, exercise)
    verdict = ex.run(*answers)
    assert verdict.stage == "float32", verdict.message
    assert verdict.message.startswith("✗ the PTX of your kernel contains ")


def test_a_fault_reported_by_the_gpu_is_one_line():
    api_error = type("CudaAPIError", (Exception,), {"__module__": "numba.fake_driver"})  # the driver's class, in shape
    exc = api_error("[700] Call to cuMemcpyDtoH results in CUDA_ERROR_ILLEGAL_ADDRESS")
    with pytest.raises(CheckFailed) as info:
        launch_failed(exc)
    assert str(info.value) == ("✗ the GPU refused or aborted the launch (a thread accessed memory that no array owns: "
                               "a missing or wrong bounds guard, or a wrong index; the GPU context is unusable now: "
                               "restart the Python kernel after fixing it): [700] Call to cuMemcpyDtoH results in "
                               "CUDA_ERROR_ILLEGAL_ADDRESS.")
    with pytest.raises(KeyError):
        launch_failed(KeyError("not the learner's"))


@needs_compiler
def test_a_signature_numba_cannot_read_is_not_blamed_on_the_kernel():
    result = compiler.compile_kernel(scale_const32, "void(reflected list(int64), float32[::1])")
    assert result.error is None and result.skipped.startswith("numba cannot read the signature")


def doubled(v):  # a plain Python function: the simulator calls it, a GPU cannot
    return v + v


@cuda.jit
def copy_through_plain_function(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = doubled(x[i]) - x[i]


@needs_compiler
def test_a_plain_python_helper_is_refused_with_what_to_do():
    verdict = COPY.run(copy_through_plain_function)
    assert verdict.stage == "compile"
    assert verdict.message.endswith("of copy_through_plain_function, `out[i] = doubled(x[i]) - x[i]`: Untyped global "
                                    "name 'doubled': Cannot determine Numba type of <class 'function'>: a kernel can "
                                    "call only device functions: decorate the function with @cuda.jit(device=True).")


# ---- the same code checked in another process, from another file: the stored answer, never a wrong line ----

_PLACED = """from numba import cuda, float32

{pad}@cuda.jit
def scale_placed(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i] * float32(1.1){refused}"""


def _placed(folder, name: str, pad: int = 0, refused: bool = False, newline: bool = True):
    """``scale_placed`` from its own file ``folder/name.py``, ``pad`` lines lower (``refused``: a line the compiler
    refuses); ``newline=False``: from a text that ends without a newline, as the course's tests run a notebook's
    cell (``nbkit.checks.mutate``: registered in linecache as it is, where a file's last line gets a newline)."""
    import importlib.util
    import linecache

    text = _PLACED.format(pad="\n" * pad, refused="\n        out[i] = x[i].foo" if refused else "")
    if not newline:
        filename = f"<{name}>"
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        namespace: dict = {}
        exec(compile(text, filename, "exec"), namespace)  # noqa: S102 - the test's own kernel
        return namespace["scale_placed"]
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(text + "\n")
    spec = importlib.util.spec_from_file_location(f"nbkit_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scale_placed


@pytest.fixture
def fresh_compiler(tmp_path, monkeypatch):
    """compile_kernel with an empty cache folder and nothing in memory; the function it gives makes it as in a new
    process: nothing in memory, no worker (the session's, which compiled so far, is kept aside and given back after
    the test; one started since is closed). Not a worker per test: each costs a second of CPU to start."""
    from nbkit.core import diskcache

    monkeypatch.setenv(diskcache.ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(compiler, "_compiled", {})
    started: list = []

    def new_process() -> None:
        compiler._compiled.clear()
        monkeypatch.setattr(compiler, "_worker", started)

    yield new_process
    while started:
        started.pop().close()


@needs_compiler
def test_the_same_code_from_another_file_is_answered_from_disk_without_a_worker(tmp_path, fresh_compiler):
    """A notebook cell's file is named anew in every kernel, and the tests check the same cell as `<mutant 05.1>`
    (its last line without a newline): the answer is stored once for the code, whatever its file is called."""
    sig = "void(float32[::1], float32[::1])"
    first = compiler.compile_kernel(_placed(tmp_path / "a", "cell_in_one_kernel"), sig)
    assert first.ptx
    fresh_compiler()
    elsewhere = _placed(tmp_path / "b", "cell_in_another", newline=False)
    compiler.start_compile_worker(elsewhere, sig)
    assert compiler.compile_kernel(elsewhere, sig) == first
    assert not compiler._worker  # nothing was started: the answer came from disk


@needs_compiler
def test_a_refusal_stored_for_one_place_never_names_the_line_of_another(tmp_path, fresh_compiler):
    sig = "void(float32[::1], float32[::1])"
    here = compiler.compile_kernel(_placed(tmp_path / "a", "refused_here", refused=True), sig)
    assert here.error.startswith("line 8 of scale_placed, `out[i] = x[i].foo`"), here.error
    compiler._compiled.clear()  # the answer above is on disk now; the session's worker compiles what is not
    lower = compiler.compile_kernel(_placed(tmp_path / "b", "refused_lower", pad=3, refused=True), sig)
    assert lower.error.startswith("line 11 of scale_placed, `out[i] = x[i].foo`"), lower.error


@cuda.jit
def copy_with_x_attribute(x, out):  # `x` is a parameter here; `.x` an attribute: neither is the global below
    i = cuda.threadIdx.x + cuda.blockIdx.x * cuda.blockDim.x
    if i < x.size:
        out[i] = x[i]


x = np.arange(4, dtype=np.float32)  # a global array named like the parameter (a notebook's `x = ...` cell)


def test_a_global_named_like_a_parameter_or_attribute_is_not_sent():
    kernel = kernel_closure(copy_with_x_attribute)
    assert kernel["functions"][kernel["root"]]["globals"] == {"cuda": {"module": "numba.cuda"}}


@needs_compiler
def test_a_check_without_a_float32_signature_starts_no_worker_for_an_answer_on_disk(tmp_path, fresh_compiler):
    """COPY declares no float32 signature: the check learns it only at its first launch, after it starts the worker
    (so that the worker loads while the cases run); code answered before, for any signature, starts none."""
    assert COPY.run(copy_with_x_attribute).passed
    fresh_compiler()
    verdict = COPY.run(copy_with_x_attribute)
    assert verdict.passed, verdict.message
    assert not compiler._worker
