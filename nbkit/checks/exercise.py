"""Exercises declared as data: one object per exercise, one generic check that runs it.

An exercise check used to be a procedure that wired the launch, the comparison, the diagnoses and the ✓
line by hand. Here an exercise is *described* instead (GPU-Puzzles style: inputs, spec, launch, check),
and one engine (:class:`Exercise`) does the wiring once for all of them: :class:`KernelExercise` for a
kernel, :class:`FunctionExercise` for a NumPy function, :class:`ExerciseGroup` for an exercise answered by
several pieces (forward and backward kernels). Because the description is data, a program can use it too:
it can run an exercise on any answer and get a :class:`Verdict` back instead of printed text (mutation
testing), or run it on other cases (varied shapes and launches).

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

import abc
import contextlib
import dataclasses
import functools
import inspect
import types
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Mapping, Sequence

import numpy as np

from nbkit.checks._answers import call_answer, shape_of, unpack
from nbkit.checks._core import (
    SENTINEL,
    UNWRITTEN,
    CheckFailed,
    KernelRun,
    SharedScan,
    call_parameters,
    compare,
    divergence_sentence,
    fail,
    first_wrong,
    is_stub,
    never_written,
    no_pictures,
    not_solved_message,
    require_compiles,
    require_float32,
    run_kernel,
    say_not_solved,
    scan_shared,
    signature_of,
    uninitialised_sentence,
)
from nbkit.core.launch import blocks_for
from nbkit.core.source import python_function
from nbkit.perf.compiler import NO_COMPILER, start_compile_worker

Dim = int | tuple[int, ...]


@dataclass(frozen=True)
class Case:
    """One launch of an exercise: the sizes its inputs are made with, and the grid and block.

    ``case.n`` reads ``case.sizes["n"]``. Adding a case to an exercise (another shape, fewer threads than
    items, a grid that does not divide the size) needs no other change: the inputs and the reference are
    computed from the sizes. ``data`` gives a case's inputs as they are instead (a worked example, values a
    generator would rarely draw); a function exercise's case has no grid or block. ``label`` names a case of an
    exercise's ``realistic`` sizes in its messages ("LeNet's conv1 on a batch of 64").
    """

    grid: Dim | None = None
    block: Dim | None = None
    sizes: Mapping[str, int | float] = field(default_factory=dict)
    data: Mapping[str, object] | None = None
    label: str = ""

    def __getattr__(self, name: str) -> int | float:
        if name.startswith("__") or name in ("sizes", "data"):
            raise AttributeError(name)
        try:
            return self.sizes[name]
        except KeyError:
            raise AttributeError(f"this case has no size {name!r} (it has {sorted(self.sizes)})") from None

    @property
    def threads(self) -> int:
        """Threads in the whole launch (grid times block)."""
        return int(np.prod(self.grid)) * int(np.prod(self.block))


def square_grid(rows: int, cols: int, block: tuple[int, int]) -> tuple[int, int]:
    """A square grid of ``block``s with at least max(rows, cols) threads along both x and y.

    A check launched on it accepts every 2-D mapping of threads to a (rows, cols) output: x along the columns
    or along the rows, with or without a grid-stride loop; the surplus threads test the guard.
    """
    side = max(blocks_for(rows, block[1]), blocks_for(cols, block[0]))
    return side, side


def _dim_text(dim: Dim) -> str:
    """A grid or block as the messages write it: 3, or 4x4."""
    return "x".join(str(d) for d in dim) if isinstance(dim, tuple) else str(dim)


def realistic_sizes_run_here() -> bool:
    """Whether an exercise's ``realistic`` cases run in this process: only where launches are compiled (cpu and
    GPU mode); the simulator (sim mode) takes tens of seconds or more for a layer-sized launch."""
    from nbkit.core.mode import MODE

    return not MODE.slow_launches


def describe_case(case: Case) -> str:
    """A case in words for a message: its label, sizes and launch ("a vector (n = 1,000,003; 3,907 blocks of 256
    threads)")."""
    sizes = ", ".join(f"{k} = {v:,}" if isinstance(v, (int, np.integer)) else f"{k} = {v}" for k, v in case.sizes.items())
    def dims(dim: Dim) -> str:
        return "x".join(f"{d:,}" for d in dim) if isinstance(dim, tuple) else f"{dim:,}"

    launch = f"; {dims(case.grid)} blocks of {dims(case.block)} threads" if case.grid is not None else ""
    inner = sizes + launch
    return f"{case.label} ({inner})" if case.label else inner


class _NotCompiledHere(Exception):
    """A realistic case's launch would run on the simulator (cpu mode's fallback): too slow, so it is not run."""


@contextlib.contextmanager
def _compiled_only() -> Iterator[None]:
    """Inside (cpu mode): a launch the CPU executor cannot run raises :class:`_NotCompiledHere` instead of falling
    back to the simulator, which would take minutes at a realistic size. Elsewhere nothing changes."""
    from nbkit.core import launch as launching
    from nbkit.core import simulator
    from nbkit.core.mode import MODE

    if MODE.name != "cpu":
        yield
        return

    def refuse(kernel: object) -> Callable[[], None]:
        def simulate() -> None:
            raise _NotCompiledHere(launching.FALLBACKS.get(python_function(kernel), "the CPU executor cannot run it"))
        return simulate

    simulator.route_launches(lambda kernel, grid, block, dynamic, args, _simulate: launching.run_on_executor(
        kernel, grid, block, dynamic, args, refuse(kernel)))
    try:
        yield
    finally:
        simulator.route_launches(launching.run_on_executor)


def _not_run(case: Case, why: str) -> str:
    return (f"Not run at the size of a real layer, {describe_case(case)}: your kernel runs on the CUDA simulator here, "
            f"too slow for that size ({why.rstrip('.')}).")


def _realistic_sentence(ran: Sequence[str], not_run: str) -> str:
    """What the ✓ adds about the realistic cases: those that ran, then why one did not ('' for neither)."""
    said = f" Also right at the size of a real layer: {'; '.join(ran)}." if ran else ""
    return said + (f" {not_run}" if not_run else "")


def _fallback_reason(answer: object) -> str | None:
    """Why the answer (a kernel) runs on the simulator in this cpu-mode process, or None (it runs compiled)."""
    from nbkit.core import launch as launching

    try:
        return launching.FALLBACKS.get(python_function(answer))
    except Exception:  # noqa: BLE001 - not a kernel (a function exercise): nothing falls back
        return None


# --------------------------------------------------------------------------------------------------
# what a cause's predicate sees


@dataclass
class Attempt:
    """One case of one answer, as a cause's predicate and message see it (``run`` is None for a function).

    ``attempt.x`` reads the input ``x`` (then a size of the case); ``got`` is the learner's output being
    compared (named ``output``), ``want`` the reference's, in float64. ``outputs`` and ``wants`` hold all
    outputs of the launch by name; ``earlier`` the cases of this run that came out right before this one
    (for "right for K = 16, wrong for K = 21").
    """

    exercise: Exercise
    case: Case
    inputs: dict[str, object]
    run: KernelRun | None
    output: str
    got: np.ndarray
    want: np.ndarray
    outputs: dict[str, np.ndarray]
    wants: dict[str, np.ndarray]
    earlier: tuple[Case, ...] = ()

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
    def _scan(self) -> SharedScan:
        # the outputs start as in the checked launch: the sentinel, or an in-place output's starting value
        fresh = [np.array(self.inputs[name], dtype=dtype) if name in self.inputs else np.full(shape, SENTINEL, dtype)
                 for name, shape, dtype in zip(self.exercise.outputs, self.run.out_shapes, self.run.dtypes)]
        return scan_shared(self.run.kernel, self.case.grid, self.case.block, *self.run.inputs, *fresh, *self.run.extra)

    @property
    def races(self) -> list | None:
        """Shared-memory races of this launch, found by the tracer on a fresh run (None when it cannot run)."""
        return self._scan.races

    @property
    def uninitialised(self) -> list | None:
        """Reads of shared memory that no thread of the block had written (the tracer; None when it cannot run)."""
        return self._scan.uninitialised

    @property
    def poison_reached(self) -> bool:
        """Whether uninitialised shared memory reached this output: the traced run (shared memory starts as NaN)
        has NaN where the reference is finite, and the tracer saw reads of never-written shared memory. A read
        whose value is thrown away (a thread past the edge that computes but does not store) is harmless."""
        scan = self._scan
        if not scan.uninitialised or scan.arguments is None:
            return False
        traced = scan.arguments[len(self.run.inputs) + self.exercise.outputs.index(self.output)]
        try:
            got = np.asarray(traced, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        return got.shape == self.want.shape and bool(np.any(np.isnan(got) & np.isfinite(self.want)))

    @property
    def divergent_barriers(self) -> list | None:
        """Blocks whose threads did not all wait at the same cuda.syncthreads() (the tracer; None: not run)."""
        return self._scan.divergent

    @property
    def uses_shared_memory(self) -> bool:
        """Whether the kernel uses shared memory (seen by the tracer, or from its static allocation)."""
        return self._scan.uses_shared


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


DIVERGENT_BARRIER = Cause(lambda a: bool(a.divergent_barriers), lambda a: divergence_sentence(a.divergent_barriers))
"""Threads of a block did not all wait at the same cuda.syncthreads() (the tracer saw it)."""

UNINITIALISED_READ = Cause(lambda a: a.poison_reached, lambda a: uninitialised_sentence(a.uninitialised))
"""A thread read shared memory that no thread of its block had written, and that value reached the output (the
tracer saw the read; its run, with shared memory starting as NaN, gave NaN in the output)."""


@functools.lru_cache(maxsize=256)
def _source_of(fn: object) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def uses_barriers_or_shared(kernel: object) -> bool:
    """Whether the kernel's source calls a barrier or declares shared memory: then the tracer's findings apply."""
    source = _source_of(python_function(kernel))
    return "syncthreads" in source or ".shared." in source


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
    it was found ("call", "launch", "shape <name>", "before <name>" (a ``before`` cause), "output <name>",
    "proof <name>", "float32"), ``cause`` is the :class:`Cause` that was named (None when the mistake has
    no name) and ``case`` the case that failed.
    """

    status: Status
    message: str
    stage: str = ""
    cause: Cause | None = None
    case: Case | None = None

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
# what every exercise shares


def _not_compiled(fields: types.SimpleNamespace) -> str:
    """What the ✓ adds when a kernel could not be compiled though a compiler exists ('' otherwise)."""
    why = getattr(fields, "not_compiled", "")
    return f" Not compiled for a GPU: {why}." if why else ""


def _words(success: str | Callable[[types.SimpleNamespace], str], fields: types.SimpleNamespace) -> str:
    """The ✓ message: a ``str.format`` template filled from ``fields``, or a function of them."""
    return success(fields) if callable(success) else success.format_map(vars(fields))


@dataclass(frozen=True)
class Exercise(abc.ABC):
    """The engine shared by :class:`KernelExercise` and :class:`FunctionExercise`: cases, causes, verdict.

    Its fields are those every exercise declares (``number``, ``task``, ``call``, ``outputs``, ``inputs``,
    ``reference``, ``cases``, ``success``, ``causes``, ``rtol``, ``atol``, ``seed``, ``proofs``) and the
    optional refinements below; a subclass adds its own and defines :meth:`attempt` (run the answer on one case).

    Optional fields, for checks that need more than inputs, reference and causes:

    * ``before``: causes tried on every attempt *before* the comparison, whether the output is right or not;
      the first that holds is the whole verdict ("✗ " + its message, without "x is wrong at ..."): a
      requirement the output cannot show (no ``cuda.syncthreads()`` at all), or a mistake whose message
      stands alone ("forward returns the sum of each window");
    * ``names``: how a wrong-output message names an output, e.g. ``{"y": "forward y"}`` (default: its name);
    * ``tolerances``: ``{output: (rtol, atol)}`` for an output compared otherwise than the others (``(0, 0)``
      for an array the kernel must leave untouched);
    * ``order``: the order the outputs are compared in, when one feeds another (a momentum buffer before the
      parameter it updates); default: ``outputs``;
    * ``frame(message, stage, case)``: rewrites the message of a failure (e.g. says which launch, or which step
      of a sequence, it happened in); ``stage`` is the verdict's stage, ``case`` the case running then;
    * ``realistic``: cases at the size of a real layer (give each a ``label``), run after every case is right,
      and only where launches are compiled (cpu and GPU mode: :func:`realistic_sizes_run_here`); in sim mode
      they are skipped and the ✓ says nothing of them. Their reference must be fast (vectorised NumPy). A wrong
      output is "✗ right on the small cases, wrong at the size of a real layer, <label (sizes; launch)>: ...",
      with the first wrong index and a cause of the table (the tracer is not run at this size); a kernel that
      runs on the simulator in cpu mode (the executor cannot compile it) is not run at this size, and the ✓
      says so. They are not the last case: proofs and ✓ fields stay the small cases'.
    """

    number: str
    task: str
    call: str
    outputs: tuple[str, ...]
    inputs: Callable[[np.random.Generator, Case], Mapping[str, object]]
    reference: Callable[..., object]
    cases: tuple[Case, ...]
    success: str | Callable[[types.SimpleNamespace], str] = ""
    causes: tuple[Cause, ...] = ()
    rtol: float = 1e-6
    atol: float = 0.0
    seed: int = 0
    proofs: Mapping[str, Callable[[Attempt], str]] = field(default_factory=dict)
    before: tuple[Cause, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    tolerances: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    order: tuple[str, ...] | None = None
    frame: Callable[[str, str, Case], str] | None = None
    realistic: tuple[Case, ...] = ()

    @property
    def parameters(self) -> tuple[str, ...]:
        """The learner's parameters, in order."""
        return call_parameters(self.call)

    def case_inputs(self, case: Case, rng: np.random.Generator) -> dict[str, object]:
        """The inputs of one case: its fixed ``data``, or what ``inputs(rng, case)`` makes."""
        return dict(case.data) if case.data is not None else dict(self.inputs(rng, case))

    def expected(self, inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
        """The reference's outputs for ``inputs``, by output name, in float64."""
        result = self.reference(**inputs)
        arrays = result if isinstance(result, tuple) else (result,)
        if len(arrays) != len(self.outputs):
            raise ValueError(f"exercise {self.number}: the reference returned {len(arrays)} arrays for the outputs "
                             f"{self.outputs}")
        return {name: np.asarray(a, dtype=np.float64) for name, a in zip(self.outputs, arrays)}

    @abc.abstractmethod
    def attempt(self, answer: object, case: Case, rng: np.random.Generator, progress: _Progress) -> list[Attempt]:
        """Run ``answer`` on one case: the attempts (one per output), not yet compared; fail on a broken run."""

    def tolerance(self, output: str) -> tuple[float, float]:
        """(rtol, atol) of ``output``'s comparison (and of its :func:`equals` causes)."""
        return self.tolerances.get(output, (self.rtol, self.atol))

    def diagnose(self, attempt: Attempt, causes: Sequence[Cause] | None = None) -> Cause | None:
        """The first cause of the table (or of ``causes``) that holds for this attempt, or None."""
        for cause in self.causes if causes is None else causes:
            if cause.output not in (None, attempt.output):
                continue
            try:
                if cause.holds(attempt):
                    return cause
            except Exception:  # noqa: BLE001, S112 - a diagnosis that cannot be computed is simply not offered
                continue
        return None

    def cause_text(self, cause: Cause | None, attempt: Attempt) -> str:
        """What a wrong output's message says after "Likely cause:" ('' for none)."""
        return cause.text(attempt) if cause else ""

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
        try:
            got = np.asarray(attempt.got, dtype=np.float64)
        except (TypeError, ValueError):
            got = None  # compare() says what is wrong with it
        if got is not None and got.shape == attempt.want.shape and first_wrong(got, attempt.want, attempt.rtol,
                                                                                  attempt.atol) is None:
            return
        cause = progress.cause = self.diagnose(attempt)
        message = self.cause_text(cause, attempt)
        compare(self.names.get(attempt.output, attempt.output), attempt.got, attempt.want, rtol=attempt.rtol,
                atol=attempt.atol, causes=[(lambda got: True, message)] if message else [], run=attempt.run)

    def run(self, answer: object, cases: Sequence[Case] | None = None, *, pictures: bool = False,
            realistic: Sequence[Case] | None = None) -> Verdict:
        """Run the exercise on ``answer`` (all ``cases``, by default the declared ones) and return the verdict.

        Prints nothing. ``pictures=True`` lets a failure draw the launch picture (a notebook, via :meth:`check`).
        """
        return self.evaluate(answer, cases, pictures=pictures, realistic=realistic)[0]

    def evaluate(self, answer: object, cases: Sequence[Case] | None = None, *, pictures: bool = False,
                 realistic: Sequence[Case] | None = None) -> tuple[Verdict, types.SimpleNamespace | None]:
        """:meth:`run`, and for a pass the fields of the ✓ message too (an :class:`ExerciseGroup` words its own)."""
        if is_stub(answer):
            return not_solved_verdict(self.number, self.task), None
        progress = _Progress()
        try:
            if pictures:
                fields = self._run(answer, cases, progress, realistic)
            else:
                with no_pictures():
                    fields = self._run(answer, cases, progress, realistic)
        except NotImplementedError:
            return not_solved_verdict(self.number, self.task), None
        except CheckFailed as exc:
            message = str(exc)
            if self.frame is not None and progress.case is not None:
                message = self.frame(message, progress.stage, progress.case)
            return Verdict("failed", message, progress.stage, progress.cause, progress.case), None
        return Verdict("passed", "✓ " + _words(self.success, fields) + fields.realistic + _not_compiled(fields)), fields

    def _phrases(self, answer: object, last: Attempt, progress: _Progress) -> dict[str, str]:
        """The proofs' phrases for the ✓ message (each proof may fail instead)."""
        phrases = {}
        for name, proof in self.proofs.items():
            progress.stage = f"proof {name}"
            phrases[name] = proof(last)
        return phrases

    def _run(self, answer: object, cases: Sequence[Case] | None, progress: _Progress,
             realistic: Sequence[Case] | None = None) -> types.SimpleNamespace:
        rng = np.random.default_rng(self.seed)
        last: list[Attempt] = []
        every: list[types.SimpleNamespace] = []
        done: list[Case] = []
        for case in (self.cases if cases is None else cases):
            progress.stage, progress.case, progress.cause = "call", case, None
            last = self.attempt(answer, case, rng, progress)
            ordered = sorted(last, key=lambda a: self.order.index(a.output)) if self.order else last
            for attempt in ordered:
                attempt.earlier = tuple(done)
                self._refuse(attempt, progress)
            for attempt in ordered:
                self._compare(attempt, progress)
            done.append(case)
            fields = {**case.sizes, **last[0].inputs, "got": last[0].outputs, "want": last[0].wants}
            if case.grid is not None:
                fields.update(grid=_dim_text(case.grid), block=_dim_text(case.block), threads=case.threads)
            every.append(types.SimpleNamespace(**fields))
        if realistic is None:  # the declared ones, unless the caller chose its own cases
            realistic = self.realistic if cases is None else ()
        ran, not_run = self._run_realistic(answer, tuple(realistic), progress, tuple(done))
        phrases = self._phrases(answer, last[0], progress)
        return types.SimpleNamespace(**vars(every[-1]), cases=every, realistic=_realistic_sentence(ran, not_run),
                                     realistic_ran=ran, realistic_not_run=not_run, **phrases)

    def _run_realistic(self, answer: object, realistic: tuple[Case, ...], progress: _Progress,
                       done: tuple[Case, ...]) -> tuple[list[str], str]:
        """Run the ``realistic`` cases (where launches are compiled): (the cases that ran, in words; why they were not
        run, in words, or '' ), for the ✓ message. Sim mode: ([], ''), the ✓ says nothing of them.

        Their data comes from a generator of its own, so the small cases' data does not depend on the mode.
        """
        if not realistic or not realistic_sizes_run_here():
            return [], ""
        rng = np.random.default_rng(self.seed + 1_000_003)
        ran = []
        for case in realistic:
            why = _fallback_reason(answer)
            if why is not None:
                return ran, _not_run(case, why)
            progress.stage, progress.case, progress.cause = "call", case, None
            try:
                with no_pictures(), _compiled_only():
                    attempts = self.attempt(answer, case, rng, progress)
                    for attempt in attempts:  # the tracer would take minutes at this size: its findings are unknown
                        attempt.__dict__["_scan"] = SharedScan()
                        attempt.__dict__["_trace"] = None
                        attempt.earlier = done
                    ordered = sorted(attempts, key=lambda a: self.order.index(a.output)) if self.order else attempts
                    for attempt in ordered:
                        self._refuse(attempt, progress)
                    for attempt in ordered:
                        self._compare(attempt, progress)
            except _NotCompiledHere as exc:
                return ran, _not_run(case, str(exc))
            except CheckFailed as exc:
                message = str(exc).removeprefix("✗ ")
                raise CheckFailed(f"✗ right on the {len(done)} small cases, wrong at the size of a real layer, "
                                  f"{describe_case(case)}: {message}") from None
            ran.append(describe_case(case))
        return ran, ""

    def check(self, answer: object, cases: Sequence[Case] | None = None,
              realistic: Sequence[Case] | None = None) -> None:
        """The check cell's call: print ✓ or "not solved yet", or raise :class:`CheckFailed` (with a picture).

        ``realistic``: the cases at a real layer's size to run (default: the declared ones, none with ``cases``)."""
        self.run(answer, cases, pictures=True, realistic=realistic).report()


# --------------------------------------------------------------------------------------------------
# the kernel exercise


@dataclass(frozen=True)
class KernelExercise(Exercise):
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
    * ``float32``: the signature to compile the kernel with to prove float32 in the PTX (None: not asked; the
      kernel is still compiled, with its launch's signature); its phrase is ``{float32}`` in the ✓ message;
    * ``success``: the ✓ message, a ``str.format`` template or a function of the same fields (a namespace):
      the last case's sizes and inputs, ``grid``, ``block`` (as "4x4"), ``threads`` (the launch's total),
      ``got`` and ``want`` (dicts of the outputs by name), ``cases`` (those fields for every case, in order),
      the proofs' phrases and ``float32``;
    * ``explain_launch(message, case, inputs, kernel)``: when the launch itself fails (a crash, an access
      out of bounds, a stray write), returns the message with the likely cause added;
    * the optional fields every exercise may have (see :class:`Exercise`): ``before``, ``names``,
      ``tolerances``, ``order``, ``frame``.
    """

    float32: str | None = None
    out_dtypes: tuple[type, ...] | None = None
    explain_launch: Callable[[str, Case, Mapping[str, object], object], str] | None = None

    def __post_init__(self) -> None:
        params = call_parameters(self.call)
        positions = [params.index(o) for o in self.outputs if o in params]
        if not positions or len(positions) != len(self.outputs) or positions != list(
                range(positions[0], positions[0] + len(positions))):
            raise ValueError(f"exercise {self.number}: the outputs {self.outputs} must be contiguous parameters of "
                             f"{self.call}")

    def _split(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(inputs before the outputs, parameters after them)."""
        params = self.parameters
        first = params.index(self.outputs[0])
        return params[:first], params[first + len(self.outputs):]

    def attempt(self, kernel: object, case: Case, rng: np.random.Generator, progress: _Progress) -> list[Attempt]:
        """Launch ``kernel`` on one case; the attempts (one per output), not yet compared.

        Fails (:class:`CheckFailed`) when the launch itself goes wrong: parameters, a crash, a stray write.
        """
        inputs = self.case_inputs(case, rng)
        before, after = self._split()
        missing = [p for p in (*before, *after) if p not in inputs]
        if missing:
            raise ValueError(f"exercise {self.number}: inputs() gave no value for {missing}")
        wants = self.expected(inputs)
        progress.stage = "launch"
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
        """As :meth:`Exercise.diagnose`; for a kernel with barriers or shared memory, when no cause of the table
        holds, the tracer's findings (a divergent barrier, never-written shared memory that reached the output)."""
        if causes is None and uses_barriers_or_shared(attempt.run.kernel):
            causes = (*self.causes, DIVERGENT_BARRIER, UNINITIALISED_READ)
        return super().diagnose(attempt, causes)

    def cause_text(self, cause: Cause | None, attempt: Attempt) -> str:
        """The cause's text; when the table named one, the tracer's verified finding is added after it."""
        text = super().cause_text(cause, attempt)
        if cause in (DIVERGENT_BARRIER, UNINITIALISED_READ) or not uses_barriers_or_shared(attempt.run.kernel):
            return text
        for finding in (DIVERGENT_BARRIER, UNINITIALISED_READ):
            try:
                holds = finding.holds(attempt)
            except Exception:  # noqa: BLE001 - a finding that cannot be computed is not offered
                holds = False
            if holds:
                extra = finding.text(attempt)
                return f"{text} The memory-access tracer also found: {extra}" if text else extra
        return text

    @staticmethod
    def _attempts_of(last: Attempt) -> list[Attempt]:
        """The last case's attempt for every output, sharing ``last``'s traced run."""
        attempts = []
        for name in last.outputs:
            a = dataclasses.replace(last, output=name, got=last.outputs[name], want=last.wants[name])
            a.__dict__["_scan"] = last._scan  # one traced run for all outputs
            attempts.append(a)
        return attempts

    def _barrier_proof(self, kernel: object, last: Attempt, progress: _Progress) -> None:
        """Fail when the tracer finds a barrier not reached by the whole block, or never-written shared memory
        that reached an output: right outputs can hide both (the simulator's order, or luck on a GPU)."""
        if uses_barriers_or_shared(kernel):
            progress.stage = "proof barriers"
            if DIVERGENT_BARRIER.holds(last):
                progress.cause = DIVERGENT_BARRIER
                fail("the outputs are right in this run, but the memory-access tracer (which does not depend on the "
                     "order the simulator ran the threads in) found: " + DIVERGENT_BARRIER.text(last))
            for attempt in self._attempts_of(last):
                if UNINITIALISED_READ.holds(attempt):
                    progress.cause = UNINITIALISED_READ
                    fail(f"the outputs are right in this run, but not when shared memory starts as garbage (as on a "
                         f"GPU): the memory-access tracer ran your kernel with shared memory starting as NaN and "
                         f"{attempt.output} came out NaN. " + UNINITIALISED_READ.text(attempt))

    def signature(self, attempt: Attempt) -> str:
        """The signature the kernel is compiled with: ``float32``'s, else that of the attempt's launch."""
        if self.float32:
            return self.float32
        return signature_of([attempt.outputs[p] if p in attempt.outputs else attempt.inputs[p] for p in self.parameters])

    def _run(self, kernel: object, cases: Sequence[Case] | None, progress: _Progress,
             realistic: Sequence[Case] | None = None) -> types.SimpleNamespace:
        start_compile_worker(kernel, self.float32)  # starts while the cases run (unless cached); compiles after them
        return super()._run(kernel, cases, progress, realistic)

    def _phrases(self, kernel: object, last: Attempt, progress: _Progress) -> dict[str, str]:
        """Once every case is right: numba-cuda's compiler, which refuses what a GPU would refuse even where the
        simulator ran it (a shared array sized at launch, a Python feature numba lacks); then the proofs, float32.

        After the cases, so that a wrong answer gets the simulator's own diagnosis first, and only a right one
        pays for the compile (cached per kernel source: a second check costs nothing). Between the compile and the
        proofs: :meth:`_barrier_proof`.
        """
        progress.stage = "compile"
        compiled = require_compiles(kernel, self.signature(last))
        self._barrier_proof(kernel, last, progress)
        phrases = super()._phrases(kernel, last, progress)
        if compiled.skipped not in (None, NO_COMPILER) and not self.float32:  # float32's phrase says it otherwise
            phrases["not_compiled"] = compiled.skipped
        if self.float32:
            progress.stage = "float32"
            phrases["float32"] = require_float32(kernel, self.float32)
        return phrases


# --------------------------------------------------------------------------------------------------
# the function exercise (NumPy)


Hint = Callable[[BaseException, str, Mapping[str, object], Callable], str]


@dataclass(frozen=True)
class FunctionExercise(Exercise):
    """A Python/NumPy function exercise, declared like a :class:`KernelExercise` but called, not launched.

    ``call`` names the function's parameters (all inputs, passed in that order from the ``inputs`` dict);
    ``outputs`` names what it returns: one name for a single value, several for a tuple (a wrong count is
    its own verdict). Cases need no grid or block (``Case(sizes=...)``, or ``Case(data=...)`` for a worked
    example). Besides the fields of :class:`KernelExercise` (no ``float32``, no ``explain_launch``):

    * ``shapes``: for an output whose shape is wrong, what its shape means (a string, or a function of the
      attempt, which sees the wrong ``got``), added to "x has shape (3, 2), expected (2, 3): ...";
    * ``hint``: added to the verdict when the function raises: a string, or ``hint(exc, line, inputs, fn)``
      of the exception, the learner's line that raised, the inputs and the function ('' for none).
    """

    rtol: float = 1e-9  # NumPy answers are float64: tighter than a float32 kernel's default
    atol: float = 1e-12
    shapes: Mapping[str, str | Callable[[Attempt], str]] = field(default_factory=dict)
    hint: str | Hint = ""

    def attempt(self, fn: object, case: Case, rng: np.random.Generator, progress: _Progress) -> list[Attempt]:
        """Call ``fn`` on one case (copies of the inputs); the attempts, shapes checked, values not yet compared."""
        inputs = self.case_inputs(case, rng)
        wants = self.expected(inputs)
        hint = self.hint if isinstance(self.hint, str) else (
            lambda exc, line: self.hint(exc, line, inputs, fn))  # type: ignore[operator]
        result = call_answer(fn, *[inputs[p] for p in self.parameters], call=self.call, hint=hint)
        got = unpack(result, self.outputs, self.call) if len(self.outputs) > 1 else (result,)
        outputs = dict(zip(self.outputs, got))
        attempts = [Attempt(self, case, inputs, None, name, outputs[name], wants[name], outputs, wants)
                    for name in self.outputs]
        for a in attempts:
            progress.stage = f"shape {a.output}"
            meaning = self.shapes.get(a.output, "")
            if np.shape(a.got) != a.want.shape:
                shape_of(a.output, a.got, a.want.shape, meaning(a) if callable(meaning) else meaning)
            if a.got is None:  # np.asarray(None, float) is nan: keep None, so that a cause can say "returned None"
                continue
            try:  # the causes see an array; what cannot be one is told by compare()
                a.got = outputs[a.output] = np.asarray(a.got, dtype=np.float64)
            except (TypeError, ValueError):
                pass
        return attempts


# --------------------------------------------------------------------------------------------------
# an exercise in several parts


@dataclass(frozen=True)
class ExerciseGroup:
    """An exercise whose answer has several pieces (a forward and a backward kernel), each declared as a part.

    ``check(*answers)`` takes one answer per part, in order. If any piece is still a stub the whole
    exercise is "not solved yet" (with the group's number and task); otherwise the parts run in order and
    the first failure is the verdict. The ✓ message is the group's: ``success`` gets ``parts``, the fields
    of each part's ✓ message (see :class:`KernelExercise`), in order, and ``float32``, the parts' PTX phrases
    (once when they agree). Parts need no ``success`` of their own.
    """

    number: str
    task: str
    parts: tuple[Exercise, ...]
    success: str | Callable[[types.SimpleNamespace], str]

    def run(self, *answers: object, pictures: bool = False) -> Verdict:
        """The verdict on the answers (one per part), printing nothing."""
        if len(answers) != len(self.parts):
            raise TypeError(f"exercise {self.number} takes {len(self.parts)} answers, got {len(answers)}")
        if any(is_stub(a) for a in answers):
            return not_solved_verdict(self.number, self.task)
        fields = []
        for part, answer in zip(self.parts, answers):
            verdict, part_fields = part.evaluate(answer, pictures=pictures)
            if verdict.status == "not solved":
                return not_solved_verdict(self.number, self.task)
            if not verdict.passed:
                return verdict
            fields.append(part_fields)
        words = _words(self.success, types.SimpleNamespace(parts=fields, float32=self._float32(fields)))
        names = [part.call.split("(")[0] for part in self.parts]
        realistic = _realistic_sentence([f"{name}, {case}" for name, f in zip(names, fields) for case in f.realistic_ran],
                                        next((f.realistic_not_run for f in fields if f.realistic_not_run), ""))
        return Verdict("passed", "✓ " + words + realistic + "".join(_not_compiled(f) for f in fields))

    def _float32(self, fields: list[types.SimpleNamespace]) -> str:
        """The parts' PTX phrases for ``{float32}``: once when they agree, else each after its kernel's name."""
        said = [(part.call.split("(")[0], f.float32) for part, f in zip(self.parts, fields) if hasattr(f, "float32")]
        if len({phrase for _, phrase in said}) <= 1:
            return said[0][1] if said else ""
        return "; ".join(f"{name}: {phrase}" for name, phrase in said)

    def check(self, *answers: object) -> None:
        """The check cell's call: print ✓ or "not solved yet", or raise :class:`CheckFailed`."""
        self.run(*answers, pictures=True).report()
