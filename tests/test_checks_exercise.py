"""The declarative exercise API: a program can run an exercise and read the verdict, on other cases too."""

import numpy as np
import pytest
from numba import cuda

from nbkit.checks import CheckFailed, NotSolved, exercises
from nbkit.checks.exercise import NEVER_WRITTEN, Case, Cause, ExerciseGroup, FunctionExercise, KernelExercise, equals
from nbkit.checks.nb03 import AXPY_GRID_STRIDE, ROW_SUM


@cuda.jit
def double_right(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + x[i]


@cuda.jit
def double_triples(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] * 3


@cuda.jit
def double_skips_last(x, out):
    i = cuda.grid(1)
    if i < out.size - 1:
        out[i] = x[i] + x[i]


@cuda.jit
def double_stub(x, out):
    raise NotImplementedError()


TRIPLES = equals(lambda a: 3 * a.x, "you multiplied by 3.")

DOUBLE = KernelExercise(
    number="99.1", task="write the kernel double(x, out)", call="double(x, out)", outputs=("out",),
    inputs=lambda rng, c: {"x": rng.standard_normal(c.n).astype(np.float32)},
    reference=lambda x: 2 * x.astype(np.float64),
    cases=(Case(grid=2, block=32, sizes={"n": 50}),),
    causes=(TRIPLES, NEVER_WRITTEN),
    success="doubled {n} values with {threads} threads.",
)


def test_run_returns_a_verdict_and_prints_nothing(capsys):
    verdict = DOUBLE.run(double_right)
    assert verdict.passed and verdict.message == "✓ doubled 50 values with 64 threads."
    wrong = DOUBLE.run(double_triples)
    assert wrong.status == "failed" and wrong.cause is TRIPLES and wrong.stage == "output out"
    assert wrong.message.startswith("✗ out is wrong") and wrong.message.endswith("you multiplied by 3.")
    assert wrong.case is DOUBLE.cases[0]
    assert DOUBLE.run(double_skips_last).cause is NEVER_WRITTEN
    assert DOUBLE.run(double_stub).status == "not solved"
    assert capsys.readouterr().out == ""


def test_other_cases_can_be_run_and_the_failing_one_is_named():
    small, uneven = Case(grid=1, block=32, sizes={"n": 20}), Case(grid=3, block=16, sizes={"n": 33})
    verdict = DOUBLE.run(double_right, [small, uneven])
    assert verdict.passed and verdict.message == "✓ doubled 33 values with 48 threads."
    too_few = Case(grid=1, block=32, sizes={"n": 40})  # fewer threads than items: a one-per-thread kernel misses some
    verdict = DOUBLE.run(double_right, [small, too_few])
    assert verdict.status == "failed" and verdict.case is too_few and verdict.cause is NEVER_WRITTEN


def test_check_prints_or_raises_from_the_verdict(capsys, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    DOUBLE.check(double_right)
    DOUBLE.check(double_stub)
    assert capsys.readouterr().out.splitlines() == [
        "✓ doubled 50 values with 64 threads.",
        "◻ Exercise 99.1 not solved yet: write the kernel double(x, out) in the cell above, then run this cell again."]
    with pytest.raises(CheckFailed, match="multiplied by 3"):
        DOUBLE.check(double_triples)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(NotSolved):
        DOUBLE.check(double_stub)


def test_a_launch_failure_is_a_verdict_at_the_launch_stage():
    @cuda.jit
    def double_swapped(out, x):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = x[i] + x[i]

    verdict = DOUBLE.run(double_swapped)
    assert verdict.status == "failed" and verdict.stage == "launch" and "in that order" in verdict.message


def test_a_cause_whose_predicate_raises_is_not_offered():
    broken = Cause(lambda a: a.no_such_input.any(), "never shown")
    ex = KernelExercise(number="99.2", task="t", call="double(x, out)", outputs=("out",),
                        inputs=DOUBLE.inputs, reference=DOUBLE.reference, cases=DOUBLE.cases,
                        causes=(broken, TRIPLES), success="ok")
    assert ex.run(double_triples).cause is TRIPLES


def test_declaration_mistakes_are_told_early():
    with pytest.raises(ValueError, match="contiguous"):
        KernelExercise(number="99.3", task="t", call="f(out, x, y)", outputs=("out", "y"), inputs=DOUBLE.inputs,
                       reference=DOUBLE.reference, cases=DOUBLE.cases, success="ok")
    ex = KernelExercise(number="99.4", task="t", call="f(x, out, scale)", outputs=("out",), inputs=DOUBLE.inputs,
                        reference=DOUBLE.reference, cases=DOUBLE.cases, success="ok")
    with pytest.raises(ValueError, match="scale"):
        ex.run(double_right)


def test_every_converted_exercise_is_listed_with_its_cases():
    found = exercises()
    assert found["03.1"] is ROW_SUM and found["03.3"] is AXPY_GRID_STRIDE
    assert len(AXPY_GRID_STRIDE.cases) == 7 and all(c.threads < 1000 for c in AXPY_GRID_STRIDE.cases[:3])


@cuda.jit
def triple_right(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] * 3


TRIPLE = KernelExercise(
    number="99.5", task="write triple", call="triple(x, out)", outputs=("out",), inputs=DOUBLE.inputs,
    reference=lambda x: 3 * x.astype(np.float64), cases=(Case(grid=1, block=64, sizes={"n": 40}),))
BOTH = ExerciseGroup(number="99.6", task="write the kernels double and triple", parts=(DOUBLE, TRIPLE),
                     success=lambda f: f"both right, on {f.parts[0].n} and {f.parts[1].n} values.")


def test_a_group_runs_its_parts_in_order_and_words_its_own_verdict(capsys):
    assert BOTH.run(double_right, triple_right).message == "✓ both right, on 50 and 40 values."
    wrong = BOTH.run(double_right, double_right)
    assert wrong.status == "failed" and "out is wrong" in wrong.message
    assert BOTH.run(double_triples, double_stub).message.startswith("◻ Exercise 99.6 not solved yet: write the kernels")
    assert capsys.readouterr().out == ""
    assert exercises()["03.1"] is ROW_SUM


SQUARES = FunctionExercise(
    number="99.7", task="write squares(v)", call="squares(v)", outputs=("s", "total"),
    inputs=lambda rng, c: {"v": rng.standard_normal(c.n)},
    reference=lambda v: (v**2, (v**2).sum()),
    cases=(Case(sizes={"n": 6}), Case(data={"v": np.array([1.0, -2.0])})),
    shapes={"s": "one square per element."},
    hint=lambda exc, line, inputs, fn: f"v has {inputs['v'].size} elements.",
    causes=(equals(lambda a: 2 * a.v, "you doubled instead of squaring.", output="s"),),
    success=lambda f: f"squares right; on the example: {f.cases[-1].got['s'].tolist()}.",
)


def test_a_function_exercise_calls_unpacks_and_explains_shapes():
    assert SQUARES.run(lambda v: (v * v, float(np.sum(v * v)))).message == "✓ squares right; on the example: [1.0, 4.0]."
    doubled = SQUARES.run(lambda v: (2 * v, 0.0))
    assert doubled.cause is SQUARES.causes[0] and doubled.stage == "output s"
    assert "must return a tuple (s, total)" in SQUARES.run(lambda v: v * v).message
    short = SQUARES.run(lambda v: (v[:-1] ** 2, 0.0))
    assert short.stage == "shape s" and short.message.endswith("expected (6,): one square per element.")
    raised = SQUARES.run(lambda v: (v @ np.ones(3), 0.0))
    assert raised.stage == "call" and raised.message.endswith("v has 6 elements.")
    assert SQUARES.run(lambda v: (v * v, float(v @ v) + 1)).message.startswith("✗ total is wrong")


def test_a_cause_can_say_which_earlier_cases_were_right():
    right_before = Cause(lambda a: bool(a.earlier), lambda a: f"right for n = {a.earlier[0].n}, wrong for n = {a.n}.")
    ex = KernelExercise(number="99.8", task="t", call="double(x, out)", outputs=("out",), inputs=DOUBLE.inputs,
                        reference=DOUBLE.reference, cases=DOUBLE.cases, causes=(right_before,), success="ok")
    small, too_few = Case(grid=1, block=32, sizes={"n": 20}), Case(grid=1, block=32, sizes={"n": 40})
    assert ex.run(double_right, [small, too_few]).message.endswith("right for n = 20, wrong for n = 40.")
    assert ex.run(double_right, [too_few]).cause is None  # nothing came out right before: no such claim
