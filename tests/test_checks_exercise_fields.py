"""The exercise API's optional fields (before, names, tolerances, order, frame, explain_launch): each changes
the verdict the way nbkit/checks/README.md says, and only then."""

import numpy as np
from numba import cuda, float32

from nbkit.checks.exercise import Case, Cause, FunctionExercise, KernelExercise


@cuda.jit
def copy_twice(x, a, b):
    i = cuda.grid(1)
    if i < x.size:
        a[i] = x[i]
        b[i] = x[i]


@cuda.jit
def copy_twice_b_nudged(x, a, b):  # b off by 1e-6 relative: within 1e-5, not exact
    i = cuda.grid(1)
    if i < x.size:
        a[i] = x[i]
        b[i] = x[i] * float32(1.000001)


@cuda.jit
def copy_twice_both_wrong(x, a, b):
    i = cuda.grid(1)
    if i < x.size:
        a[i] = x[i] + float32(1)
        b[i] = x[i] + float32(1)


@cuda.jit
def copy_twice_unguarded(x, a, b):
    i = cuda.grid(1)
    a[i] = x[i]
    b[i] = x[i]


def exercise(**fields) -> KernelExercise:
    declared = dict(number="99.1", task="write copy_twice(x, a, b)", call="copy_twice(x, a, b)", outputs=("a", "b"),
                    inputs=lambda rng, c: {"x": (rng.standard_normal(c.n) + 2).astype(np.float32)},
                    reference=lambda x: (x, x), cases=(Case(grid=2, block=32, sizes={"n": 40}),), rtol=1e-5,
                    atol=1e-6, success="copied {n} values.")
    return KernelExercise(**{**declared, **fields})


def test_defaults_pass_and_name_the_first_output():
    assert exercise().run(copy_twice).message == "✓ copied 40 values."
    verdict = exercise().run(copy_twice_both_wrong)
    assert verdict.stage == "output a" and verdict.message.startswith("✗ a is wrong at 40 of 40 elements")


def test_before_is_the_whole_verdict_even_for_a_right_output():
    rule = Cause(lambda a: True, "your kernel must not be called copy_twice.")
    verdict = exercise(before=(rule,)).run(copy_twice)
    assert (verdict.status, verdict.stage, verdict.message) == ("failed", "before a",
                                                                "✗ your kernel must not be called copy_twice.")
    assert verdict.cause is rule


def test_names_and_order_and_tolerances():
    verdict = exercise(names={"b": "the copy b"}, order=("b", "a")).run(copy_twice_both_wrong)
    assert verdict.stage == "output b" and verdict.message.startswith("✗ the copy b is wrong at")
    assert exercise().run(copy_twice_b_nudged).passed
    exact = exercise(tolerances={"b": (0, 0)}).run(copy_twice_b_nudged)
    assert exact.stage == "output b" and "b is wrong at" in exact.message


def test_frame_rewrites_failures_only():
    framed = exercise(frame=lambda message, stage, case: f"{message} [{stage}, n = {case.n}]")
    assert framed.run(copy_twice).message == "✓ copied 40 values."
    assert framed.run(copy_twice_both_wrong).message.endswith("[output a, n = 40]")


def test_explain_launch_adds_to_a_failed_launch():
    explained = exercise(explain_launch=lambda message, case, inputs, kernel: f"{message} (grid of {case.threads} "
                                                                              f"threads for {inputs['x'].size})")
    verdict = explained.run(copy_twice_unguarded)
    assert verdict.stage == "launch" and verdict.message.endswith("(grid of 64 threads for 40)")
    assert explained.run(copy_twice).passed


def test_a_function_returning_none_reaches_the_causes_as_none():
    ex = FunctionExercise(number="99.2", task="write half(v)", call="half(v)", outputs=("h",),
                          inputs=lambda rng, c: {"v": 3.0}, reference=lambda v: v / 2, cases=(Case(),),
                          before=(Cause(lambda a: a.got is None, "half(v) returned None: return v / 2."),),
                          success="ok")
    assert ex.run(lambda v: None).message == "✗ half(v) returned None: return v / 2."
    assert ex.run(lambda v: v / 2).passed
