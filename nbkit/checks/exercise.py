"""Exercises declared as data: one object per exercise, one generic check that runs it.

An exercise check used to be a procedure that wired the launch, the comparison, the diagnoses and the ✓
line by hand. Here an exercise is *described* instead (GPU-Puzzles style: inputs, spec, launch, check),
and :meth:`KernelExercise.run` does the wiring once for all of them. Because the description is data,
a program can use it too: it can run an exercise on any kernel and get a :class:`Verdict` back instead
of printed text (mutation testing), or run it on other cases (varied shapes and launches).

Declaring a kernel exercise (see ``nbkit/checks/README.md`` for more)::

    SAXPY = KernelExercise(
        number="00.1", task="write the kernel saxpy(alpha, x, y, out)",
        call="saxpy(alpha, x, y, out)",          # the learner's parameters, in order
        outputs=("out",),                         # which of them the kernel writes
        inputs=lambda rng, case: {"alpha": np.float32(2.5),
                                  "x": rng.standard_normal(case.n).astype(np.float32),
                                  "y": rng.standard_normal(case.n).astype(np.float32)},
        reference=lambda alpha, x, y: alpha * x.astype(np.float64) + y,
        cases=(Case(grid=3, block=128, sizes={"n": 300}),),
        rtol=1e-6, atol=1e-6,
        causes=(
            NEVER_WRITTEN,
            equals(lambda a: a.x + a.alpha * a.y, "alpha multiplies y instead of x: ..."),
        ),
        float32="void(float32, float32[::1], float32[::1], float32[::1])",
        success="saxpy is correct on {n} elements ...; {float32}.",
    )

    def check_saxpy(kernel) -> None:      # the public name and signature the notebooks call
        SAXPY.check(kernel)

The parameters of ``call`` before the outputs are the inputs, those after them are passed last (e.g. a
scalar ``slope``); every non-output parameter must be a key of the ``inputs`` dictionary. An output that
is also in that dictionary starts with that value (an in-place update, ``axpy(a, x, y)``); the others
start as the sentinel, so a never-written element is seen. The reference is called with the inputs as
keyword arguments and returns the expected outputs in float64 (one array, or a tuple in ``outputs`` order);
their shapes are the output shapes.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Sequence

import numpy as np

from nbkit.checks._core import (
    SENTINEL,
    UNWRITTEN,
    CheckFailed,
    KernelRun,
    compare,
    fail,
    find_races,
    first_wrong,
    is_stub,
    never_written,
    no_pictures,
    not_solved_message,
    require_float32,
    run_kernel,
    say_not_solved,
)

Shape = tuple[int, ...]
Dim = int | tuple[int, ...]


@dataclass(frozen=True)
class Case:
    """One launch of an exercise: the sizes its inputs are made with, and the grid and block.

    ``case.n`` reads ``case.sizes["n"]``. Adding a case to an exercise (another shape, fewer threads than
    items, a grid that does not divide the size) needs no other change: the inputs and the reference are
    computed from the sizes.
    """

    grid: Dim
    block: Dim
    sizes: Mapping[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> int:
        if name.startswith("__") or name == "sizes":
            raise AttributeError(name)
        try:
            return self.sizes[name]
        except KeyError:
            raise AttributeError(f"this case has no size {name!r} (it has {sorted(self.sizes)})") from None

    @property
    def threads(self) -> int:
        """Threads in the whole launch (grid times block)."""
        return int(np.prod(self.grid)) * int(np.prod(self.block))


def _dim_text(dim: Dim) -> str:
    """A grid or block as the messages write it: 3, or 4x4."""
    return "x".join(str(d) for d in dim) if isinstance(dim, tuple) else str(dim)


# --------------------------------------------------------------------------------------------------
# what a cause's predicate sees


@dataclass
class Attempt:
    """One case of one kernel, as a cause's predicate and message see it.

    ``attempt.x`` reads the input ``x`` (then a size of the case); ``got`` is the learner's output being
    compared (named ``output``), ``want`` the reference's, in float64. ``outputs`` and ``wants`` hold all
    outputs of the launch by name.
    """

    exercise: KernelExercise
    case: Case
    inputs: dict[str, object]
    run: KernelRun
    output: str
    got: np.ndarray
    want: np.ndarray
    outputs: dict[str, np.ndarray]
    wants: dict[str, np.ndarray]

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or name in ("inputs", "case"):
            raise AttributeError(name)
        if name in self.inputs:
            return self.inputs[name]
        return getattr(self.case, name)

    @property
    def rtol(self) -> float:
        return self.exercise.tolerance(self.output)[0]

    @property
    def atol(self) -> float:
        return self.exercise.tolerance(self.output)[1]

    @property
    def never_written(self) -> np.ndarray:
        """Mask of ``got``'s elements that still hold the sentinel: no thread wrote them."""
        return never_written(self.run, self.exercise.outputs.index(self.output))

    @functools.cached_property
    def wrong(self) -> np.ndarray:
        """Mask of ``got``'s elements outside the tolerance."""
        return ~np.isclose(self.got, self.want, rtol=self.rtol, atol=self.atol, equal_nan=True)

    @functools.cached_property
    def races(self) -> list | None:
        """Shared-memory races of this launch, found by the tracer (None when it cannot run)."""
        fresh = [np.zeros(self.run.out_shapes[k], self.run.dtypes[k]) for k in range(len(self.run.out_shapes))]
        return find_races(self.run.kernel, self.case.grid, self.case.block, *self.run.inputs, *fresh,
                          *self.run.extra)[0]


# --------------------------------------------------------------------------------------------------
# causes: named mistakes, as predicates on the attempt


@dataclass(frozen=True)
class Cause:
    """A named mistake: when ``holds(attempt)`` is true for a wrong answer, ``message`` says what went wrong.

    ``message`` is a string, or a function of the attempt for a message with numbers in it. ``output``
    restricts the cause to one output (None: any). Causes are tried in order; the first that holds is
    given, so a specific cause goes before a general one. A cause is only consulted for a wrong answer,
    and a predicate that raises counts as "does not hold".
    """

    holds: Callable[[Attempt], bool]
    message: str | Callable[[Attempt], str]
    output: str | None = None

    def text(self, attempt: Attempt) -> str:
        return self.message(attempt) if callable(self.message) else self.message


def equals(mistake: Callable[[Attempt], object], message: str | Callable[[Attempt], str],
           output: str | None = None) -> Cause:
    """A cause that holds when the output equals (within the exercise's tolerance) what ``mistake`` computes.

    ``mistake(attempt)`` returns the output of the mistaken kernel, e.g. ``lambda a: a.x + a.alpha * a.y``.
    """
    def holds(a: Attempt) -> bool:
        alternative = np.asarray(mistake(a), dtype=np.float64)
        return alternative.shape == a.got.shape and bool(np.allclose(a.got, alternative, rtol=a.rtol, atol=a.atol))

    return Cause(holds, message, output)


NEVER_WRITTEN = Cause(lambda a: bool(a.never_written.any()), UNWRITTEN)
"""Some elements still hold the sentinel: too few threads, a guard too strict, a loop that stops early."""



def summed_into_output(message: str) -> Cause:
    """The kernel summed into its output directly, which starts as the sentinel: ``got == want + SENTINEL``."""
    return equals(lambda a: a.want + SENTINEL, message)


# --------------------------------------------------------------------------------------------------
# verdicts


Status = Literal["passed", "failed", "not solved"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of running an exercise on an answer, without printing anything.

    ``message`` is the line the learner would see (✓, ✗ or ◻ first). For a failure, ``stage`` says where
    it was found ("launch", "before <name>" (a ``before`` cause), "output <name>", "proof <name>",
    "float32"), ``cause`` is the :class:`Cause` that was named (None when the mistake has no name) and
    ``case`` the case that failed. A pass keeps the fields its ✓ message was made from in ``fields``.
    """

    status: Status
    message: str
    stage: str = ""
    cause: Cause | None = None
    case: Case | None = None
    fields: types.SimpleNamespace | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def report(self) -> None:
        """What a check cell shows: print ✓ or ◻, raise :class:`CheckFailed` (or NotSolved under nbgrader)."""
        if self.status == "passed":
            print(self.message)
        elif self.status == "not solved":
            say_not_solved(self.message)
        else:
            raise CheckFailed(self.message)


def not_solved_verdict(number: str, task: str) -> Verdict:
    """The verdict for an answer that is still the stub: one line, no traceback."""
    return Verdict("not solved", not_solved_message(number, task))


@dataclass
class _Progress:
    """Where a run is, so that a failure raised deep in the machinery gets its stage, cause and case."""

    stage: str = "launch"
    cause: Cause | None = None
    case: Case | None = None


# --------------------------------------------------------------------------------------------------
# the kernel exercise


def _parameters(call: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in call[call.index("(") + 1:call.rindex(")")].split(",") if p.strip())


@dataclass(frozen=True)
class KernelExercise:
    """A kernel exercise, declared: what the learner writes, on which data and launches, and what is right.

    * ``number``, ``task``: "03.1", "write the kernel row_sum(M, out)" (the "not solved yet" line uses them);
    * ``call``: the learner's signature, ``"row_sum(M, out)"``; parameter count and order are checked first;
    * ``outputs``: the parameters the kernel writes, contiguous in ``call``;
    * ``inputs(rng, case)``: a dict of every other parameter (arrays, scalars) and of in-place outputs'
      starting values; extra keys are allowed (data the causes need);
    * ``reference(**inputs)``: the expected outputs (float64), one array or a tuple in ``outputs`` order;
    * ``cases``: the launches (:class:`Case`), run in order; one random generator seeded with ``seed``
      makes the inputs of all of them;
    * ``rtol``, ``atol``: the tolerance of the comparison (and of :func:`equals` causes);
    * ``causes``: the table of named mistakes (:class:`Cause`), tried in order on a wrong output;
    * ``proofs``: checks run after every case came out right, in order, on the last case's attempt; each
      returns a phrase for the ✓ message (available as ``{name}``) or fails with :func:`~_core.fail`;
    * ``float32``: the signature to compile the kernel with to prove float32 in the PTX (None: not asked);
      its phrase is ``{float32}`` in the ✓ message;
    * ``success``: the ✓ message, a ``str.format`` template or a function of the same fields (a namespace):
      the last case's sizes and inputs, ``grid``, ``block`` (as "4x4"), ``threads`` (the launch's total),
      ``cases`` (those fields for every case, in order), the proofs' phrases and ``float32``;
    * ``before``: causes tried on every attempt *before* the comparison, whether the output is right or
      not; the first that holds is the whole verdict ("✗ " + its message, no "is wrong at"): a requirement
      the output cannot show (no ``cuda.syncthreads()`` at all) or a mistake whose message stands alone;
    * ``tolerances``: ``{output: (rtol, atol)}`` for an output compared otherwise than the others (``(0, 0)``
      for an input the kernel must leave untouched); ``order``: the order the outputs are compared in, when
      one output feeds the others (compare a momentum buffer before the parameter it updates);
    * ``names``: how a wrong-output message names an output, e.g. ``{"y": "forward y"}`` (default: its name);
    * ``frame(message, stage, case)``: rewrites the message of a failure in a case (e.g. adds which launch
      or which step of a sequence it was); None: unchanged;
    * ``explain_launch(message, case, inputs, kernel)``: when the launch itself fails (a crash, an access
      out of bounds, a stray write), returns the message with the likely cause added; None: unchanged.
    """

    number: str
    task: str
    call: str
    outputs: tuple[str, ...]
    inputs: Callable[[np.random.Generator, Case], Mapping[str, object]]
    reference: Callable[..., object]
    cases: tuple[Case, ...]
    success: str | Callable[[types.SimpleNamespace], str]
    causes: tuple[Cause, ...] = ()
    rtol: float = 1e-6
    atol: float = 0.0
    seed: int = 0
    proofs: Mapping[str, Callable[[Attempt], str]] = field(default_factory=dict)
    float32: str | None = None
    out_dtypes: tuple[type, ...] | None = None
    before: tuple[Cause, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    tolerances: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    order: tuple[str, ...] | None = None
    frame: Callable[[str, str, Case], str] | None = None
    explain_launch: Callable[[str, Case, Mapping[str, object], object], str] | None = None

    def __post_init__(self) -> None:
        params = _parameters(self.call)
        positions = [params.index(o) for o in self.outputs if o in params]
        if not positions or len(positions) != len(self.outputs) or positions != list(
                range(positions[0], positions[0] + len(positions))):
            raise ValueError(f"exercise {self.number}: the outputs {self.outputs} must be contiguous parameters of "
                             f"{self.call}")

    # -- the parts of the call
    @property
    def parameters(self) -> tuple[str, ...]:
        return _parameters(self.call)

    def _split(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(inputs before the outputs, parameters after them)."""
        params = self.parameters
        first = params.index(self.outputs[0])
        return params[:first], params[first + len(self.outputs):]

    def tolerance(self, output: str) -> tuple[float, float]:
        """(rtol, atol) of ``output``'s comparison (and of its :func:`equals` causes)."""
        return self.tolerances.get(output, (self.rtol, self.atol))

    def expected(self, inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
        """The reference's outputs for ``inputs``, by output name, in float64."""
        result = self.reference(**inputs)
        arrays = result if isinstance(result, tuple) else (result,)
        if len(arrays) != len(self.outputs):
            raise ValueError(f"exercise {self.number}: the reference returned {len(arrays)} arrays for the outputs "
                             f"{self.outputs}")
        return {name: np.asarray(a, dtype=np.float64) for name, a in zip(self.outputs, arrays)}

    # -- running
    def attempt(self, kernel: object, case: Case, rng: np.random.Generator) -> list[Attempt]:
        """Launch ``kernel`` on one case; the attempts (one per output), not yet compared.

        Fails (:class:`CheckFailed`) when the launch itself goes wrong: parameters, a crash, a stray write.
        """
        inputs = dict(self.inputs(rng, case))
        before, after = self._split()
        missing = [p for p in (*before, *after) if p not in inputs]
        if missing:
            raise ValueError(f"exercise {self.number}: inputs() gave no value for {missing}")
        wants = self.expected(inputs)
        try:
            run = run_kernel(kernel, case.grid, case.block, [inputs[p] for p in before],
                             [wants[o].shape for o in self.outputs], extra=tuple(inputs[p] for p in after),
                             dtypes=self.out_dtypes, output_names=self.outputs,
                             initial=[inputs.get(o) for o in self.outputs], call=self.call)
        except CheckFailed as exc:
            if self.explain_launch is None:
                raise
            raise CheckFailed(self.explain_launch(str(exc), case, inputs, kernel)) from None
        outputs = dict(zip(self.outputs, run.outputs))
        return [Attempt(self, case, inputs, run, name, outputs[name], wants[name], outputs, wants)
                for name in self.outputs]

    def diagnose(self, attempt: Attempt, causes: Sequence[Cause] | None = None) -> Cause | None:
        """The first cause of the table (or of ``causes``) that holds for this attempt, or None."""
        for cause in self.causes if causes is None else causes:
            if cause.output not in (None, attempt.output):
                continue
            try:
                if cause.holds(attempt):
                    return cause
            except Exception:  # noqa: BLE001 - a diagnosis that cannot be computed is simply not offered
                continue
        return None

    def _refuse(self, attempt: Attempt, progress: _Progress) -> None:
        """Fail with the message alone when one of the ``before`` causes holds for this attempt."""
        progress.stage = f"before {attempt.output}"
        cause = self.diagnose(attempt, self.before)
        if cause is not None:
            progress.cause = cause
            fail(cause.text(attempt), attempt.run)

    def _compare(self, attempt: Attempt, progress: _Progress) -> None:
        """Fail, naming the first wrong element and the cause, unless the attempt's output is right."""
        progress.stage = f"output {attempt.output}"
        if first_wrong(attempt.got, attempt.want, attempt.rtol, attempt.atol) is None:
            return
        cause = progress.cause = self.diagnose(attempt)
        message = cause.text(attempt) if cause else ""
        compare(self.names.get(attempt.output, attempt.output), attempt.got, attempt.want, rtol=attempt.rtol,
                atol=attempt.atol,
                causes=[(lambda got: True, message)] if message else [], run=attempt.run)

    def run(self, kernel: object, cases: Sequence[Case] | None = None, *, pictures: bool = False) -> Verdict:
        """Run the exercise on ``kernel`` (all ``cases``, by default the declared ones) and return the verdict.

        Prints nothing. ``pictures=True`` lets a failure draw the launch picture (a notebook, via :meth:`check`).
        """
        if is_stub(kernel):
            return not_solved_verdict(self.number, self.task)
        progress = _Progress()
        try:
            if pictures:
                return self._run(kernel, cases, progress)
            with no_pictures():
                return self._run(kernel, cases, progress)
        except NotImplementedError:
            return not_solved_verdict(self.number, self.task)
        except CheckFailed as exc:
            message = str(exc)
            if self.frame is not None and progress.case is not None:
                message = self.frame(message, progress.stage, progress.case)
            return Verdict("failed", message, progress.stage, progress.cause, progress.case)

    def _run(self, kernel: object, cases: Sequence[Case] | None, progress: _Progress) -> Verdict:
        rng = np.random.default_rng(self.seed)
        last: list[Attempt] = []
        every: list[types.SimpleNamespace] = []
        for case in (self.cases if cases is None else cases):
            progress.stage, progress.case = "launch", case
            last = self.attempt(kernel, case, rng)
            ordered = sorted(last, key=lambda a: self.order.index(a.output)) if self.order else last
            for attempt in ordered:
                self._refuse(attempt, progress)
            for attempt in ordered:
                self._compare(attempt, progress)
            every.append(types.SimpleNamespace(**{**case.sizes, **last[0].inputs, "grid": _dim_text(case.grid),
                                                  "block": _dim_text(case.block), "threads": case.threads}))
        phrases = {}
        for name, proof in self.proofs.items():
            progress.stage = f"proof {name}"
            phrases[name] = proof(last[0])
        if self.float32:
            progress.stage = "float32"
            phrases["float32"] = require_float32(kernel, self.float32)
        fields = types.SimpleNamespace(**vars(every[-1]), cases=every, **phrases)
        text = self.success(fields) if callable(self.success) else self.success.format_map(vars(fields))
        return Verdict("passed", "✓ " + text, fields=fields)

    def check(self, kernel: object, cases: Sequence[Case] | None = None) -> None:
        """The check cell's call: print ✓ or "not solved yet", or raise :class:`CheckFailed` (with a picture)."""
        self.run(kernel, cases, pictures=True).report()


# --------------------------------------------------------------------------------------------------
# several kernels, one exercise


@dataclass(frozen=True)
class KernelGroup:
    """One exercise in which the learner writes several kernels, e.g. a forward and a backward pass.

    * ``number``, ``task``: as for :class:`KernelExercise`; "not solved yet" as soon as one kernel is a stub;
    * ``parts``: one :class:`KernelExercise` per kernel, in the order the check takes the kernels, run in that
      order (each with its own proofs and float32); a part's ``number`` is the group's number and its name,
      ``"05.1 forward"``, so that it can be run alone too;
    * ``success``: the ✓ message, a template or a function of a namespace with each part's fields under its
      name (``{forward.n}``) and ``float32``: the parts' PTX phrase, said once when they agree, else per part.
    """

    number: str
    task: str
    parts: tuple[KernelExercise, ...]
    success: str | Callable[[types.SimpleNamespace], str]

    def _name(self, part: KernelExercise) -> str:
        return part.number.removeprefix(self.number).strip()

    def run(self, *kernels: object, pictures: bool = False) -> Verdict:
        """Run every part on its kernel and return one verdict; prints nothing."""
        if len(kernels) != len(self.parts):
            raise TypeError(f"exercise {self.number} takes {len(self.parts)} kernels, got {len(kernels)}")
        if any(is_stub(k) for k in kernels):
            return not_solved_verdict(self.number, self.task)
        fields: dict[str, object] = {}
        phrases: dict[str, str] = {}
        for part, kernel in zip(self.parts, kernels):
            verdict = part.run(kernel, pictures=pictures)
            if verdict.status == "not solved":
                return not_solved_verdict(self.number, self.task)
            if not verdict.passed:
                return verdict
            fields[self._name(part)] = verdict.fields
            if part.float32:
                phrases[self._name(part)] = verdict.fields.float32
        if phrases:
            fields["float32"] = next(iter(phrases.values())) if len(set(phrases.values())) == 1 else "; ".join(
                f"{name}: {phrase}" for name, phrase in phrases.items())
        namespace = types.SimpleNamespace(**fields)
        text = self.success(namespace) if callable(self.success) else self.success.format_map(fields)
        return Verdict("passed", "✓ " + text, fields=namespace)

    def check(self, *kernels: object) -> None:
        """The check cell's call: print ✓ or "not solved yet", or raise :class:`CheckFailed` (with a picture)."""
        self.run(*kernels, pictures=True).report()
