"""Checks for notebook 10 (data-parallel training): one ring step, and the time of an all-reduce on a link.

10.2 is declared (:data:`ALLREDUCE_SECONDS`). 10.1 stays a procedure: its verdicts are worded per step
("p=3, step 1: likely cause: ...", a wrong shape as "with p=3 ranks and chunks of 1, expected ..."), and its
last test calls the answer p - 1 times in a chain (after the reduce-scatter rank r holds the full sum of
chunk r + 1), which a case with one reference does not express.
"""

from __future__ import annotations

import numpy as np

from nbkit.checks._core import CheckFailed, compare, exercise, fail, passed
from nbkit.checks.exercise import Attempt, Case, Cause, FunctionExercise
from nbkit.nn.dist import all_gather_step, reduce_scatter_step, ring_allreduce_time


def _wrong_variants(bufs: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """Answers that the usual mistakes give, each with the mistake that explains it."""
    p = bufs.shape[0]
    same = bufs.copy()
    for r in range(p):
        same[(r + 1) % p, r] += bufs[r, r]
    plus = bufs.copy()
    for r in range(p):
        c = (r + step) % p
        plus[(r + 1) % p, c] += bufs[r, c]
    left = bufs.copy()
    for r in range(p):
        c = (r - step) % p
        left[(r - 1) % p, c] += bufs[r, c]
    return {
        "every rank sent its own chunk r at every step; at step s it must send chunk (r - s) mod p, the one it "
        "received (and added to) in the step before": same,
        "rank r sent chunk (r + s) mod p; at step s it must send chunk (r - s) mod p": plus,
        "the chunks went to rank r - 1; the ring sends to rank (r + 1) mod p": left,
        "the receiving rank replaced its chunk instead of adding to it (that is the all-gather step)":
            all_gather_step(bufs, (step + 1) % p),
    }


# (ranks p, elements per chunk m): 2 to 7 ranks, chunks of one element too
RING_SIZES = ((2, 3), (3, 1), (4, 5), (5, 2), (7, 4), (6, 1))


@exercise("10.1", "reduce_scatter_step(bufs, step): one step of the ring's reduce-scatter")
def check_reduce_scatter_step(fn) -> None:
    """Exercise 10.1: ``fn(bufs, step)`` returns the buffers after step ``step`` of the reduce-scatter.

    ``bufs[r, c]`` is rank r's copy of chunk c, shape (p, p, m); rank r sends chunk (r - step) mod p to rank
    (r + 1) mod p, which adds it. The answer may change ``bufs`` in place or not: only what it returns counts.
    """
    rng = np.random.default_rng(10)
    for p, m in RING_SIZES:
        bufs = rng.integers(-50, 50, size=(p, p, m)).astype(np.float64)  # integers: sums are exact in any order
        for step in range(p - 1):
            want = reduce_scatter_step(bufs, step)
            got = fn(bufs.copy(), step)
            if got is None:
                fail("the function returned None: return the buffers after the step (a (p, p, m) array).")
            got = np.asarray(got)
            if got.shape != bufs.shape:
                fail(f"with p={p} ranks and chunks of {m}, expected an array of shape {bufs.shape} "
                     f"(rank, chunk, element), got shape {got.shape}.")
            if np.array_equal(got, want):
                bufs = want
                continue
            for cause, wrong in _wrong_variants(bufs, step).items():
                if np.array_equal(got, wrong):
                    fail(f"p={p}, step {step}: likely cause: {cause}.")
            try:
                compare(f"buffers after step {step} with p={p} ranks (rank, chunk, element)", got, want, 0.0, 0.0)
            except CheckFailed as e:
                raise CheckFailed(f"{e} Rank r must add the chunk (r - 1 - step) mod p that rank r - 1 sends; "
                                  "nothing else changes.") from None
            fail(f"p={p}, step {step}: the buffers differ from the expected ones.")  # compare always flags a difference
        total = rng.integers(-50, 50, size=(p, p, m)).astype(np.float64)
        done = total.copy()
        for step in range(p - 1):
            done = np.asarray(fn(done.copy(), step))
        for r in range(p):
            if not np.array_equal(done[r, (r + 1) % p], total[:, (r + 1) % p].sum(axis=0)):
                fail(f"after all {p - 1} steps with p={p}, rank {r} should hold the full sum of chunk {(r + 1) % p}.")
    passed(f"reduce_scatter_step is right for {min(p for p, _ in RING_SIZES)} to {max(p for p, _ in RING_SIZES)} ranks, "
           "every step; after p-1 steps rank r holds the sum of chunk (r+1) mod p.")


def _number(value: object) -> bool:
    """Whether ``float(value)`` works: the answer is a number of seconds."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _seconds_call(a: Attempt) -> str:
    return (f"allreduce_seconds(n_params={a.n_params}, bytes_per_param={a.bytes_per_param}, p={a.p}, "
            f"bandwidth_GBps={a.bandwidth_GBps}, latency_us={a.latency_us}) = {float(a.got):.10g} s, expected "
            f"{float(a.want):.10g} s")


def _ring(a: Attempt, nbytes: float, bandwidth: float, latency: float) -> float:
    return ring_allreduce_time(nbytes, a.p, bandwidth, latency)


# The usual mistakes: what each computes, from the case's inputs (bandwidth in GB/s, latency in µs).
_SECONDS_MISTAKES = {
    "bandwidth given in GB/s was used as GiB/s (2^30)":
        lambda a: _ring(a, a.n_params * a.bytes_per_param, a.bandwidth_GBps * 2**30, a.latency_us * 1e-6),
    "the factor 2 is missing: a ring all-reduce is a reduce-scatter AND an all-gather":
        lambda a: _ring(a, a.n_params * a.bytes_per_param, a.bandwidth_GBps * 1e9, a.latency_us * 1e-6) / 2,
    "each rank sends 2(p-1)/p of the gradient, not 2(p-1) times all of it":
        lambda a: 2 * (a.p - 1) * a.latency_us * 1e-6 + 2 * (a.p - 1) * a.n_params * a.bytes_per_param / (
            a.bandwidth_GBps * 1e9),
    "the latency is paid once per step: 2(p-1) times, not once":
        lambda a: a.latency_us * 1e-6 + 2 * (a.p - 1) / a.p * a.n_params * a.bytes_per_param / (a.bandwidth_GBps * 1e9),
    "the latency is in microseconds: multiply by 1e-6":
        lambda a: _ring(a, a.n_params * a.bytes_per_param, a.bandwidth_GBps * 1e9, a.latency_us),
    "bytes were divided by a bandwidth in bits (GB/s is bytes)":
        lambda a: _ring(a, a.n_params * a.bytes_per_param, a.bandwidth_GBps * 1e9 / 8, a.latency_us * 1e-6),
    "the number of parameters was used instead of bytes (multiply by bytes_per_param)":
        lambda a: _ring(a, a.n_params, a.bandwidth_GBps * 1e9, a.latency_us * 1e-6),
}


def _mistake(cause: str) -> Cause:
    """A wrong time that equals what the mistake computes (where the mistake changes the time at all)."""
    value = _SECONDS_MISTAKES[cause]

    def holds(a: Attempt) -> bool:
        wrong = not np.isclose(float(a.got), float(a.want), rtol=a.rtol, atol=a.atol)
        return wrong and value(a) != float(a.want) and bool(np.isclose(float(a.got), value(a), rtol=a.rtol,
                                                                           atol=a.atol))

    return Cause(holds, lambda a: f"{_seconds_call(a)}. Likely cause: {cause}.")


_SECONDS_CASES = ((62_006, 4, 2, 32.0, 0.0), (25_557_032, 4, 8, 300.0, 0.0), (25_557_032, 2, 4, 450.0, 5.0),
                  (1_000_000, 4, 3, 32.0, 10.0), (7, 4, 1, 32.0, 5.0))

ALLREDUCE_SECONDS = FunctionExercise(
    number="10.2", task="allreduce_seconds(n_params, bytes_per_param, p, bandwidth_GBps, latency_us)",
    call="allreduce_seconds(n_params, bytes_per_param, p, bandwidth_GBps, latency_us)", outputs=("seconds",),
    inputs=lambda rng, c: dict(c.sizes),
    reference=lambda n_params, bytes_per_param, p, bandwidth_GBps, latency_us: ring_allreduce_time(
        n_params * bytes_per_param, p, bandwidth_GBps * 1e9, latency_us * 1e-6),
    # 1 to 8 ranks, PCIe and NVLink bandwidths, with and without latency
    cases=tuple(Case(sizes=dict(zip(("n_params", "bytes_per_param", "p", "bandwidth_GBps", "latency_us"), c)))
                for c in _SECONDS_CASES),
    # a MODEL of seconds: chunks of ceil(n / p) whole values (0.3 ppm more here) are as right as n / p
    rtol=1e-4, atol=1e-15,
    # every wrong time is worded as the call and its two values; the table names the mistake where it can
    before=(
        Cause(lambda a: not _number(a.got),
              lambda a: f"allreduce_seconds({a.n_params}, {a.bytes_per_param}, {a.p}, {a.bandwidth_GBps}, "
                        f"{a.latency_us}) returned {a.got!r}: expected a number of seconds."),
        *(_mistake(cause) for cause in _SECONDS_MISTAKES),
        Cause(lambda a: not np.isclose(float(a.got), float(a.want), rtol=a.rtol, atol=a.atol),
              lambda a: f"{_seconds_call(a)} = 2(p-1)·latency + 2(p-1)/p · n·b / bandwidth."),
    ),
    success=lambda f: (f"allreduce_seconds matches the ring model on {len(f.cases)} cases (1 to 8 ranks, PCIe and "
                       "NVLink bandwidths, with and without latency)."),
)


def check_allreduce_seconds(fn) -> None:
    """Exercise 10.2: MODEL time of a ring all-reduce: 2(p-1) latency + 2(p-1)/p * bytes / bandwidth.

    ``bandwidth_GBps`` in GB/s (10^9 bytes per second, one direction), ``latency_us`` in microseconds.
    """
    ALLREDUCE_SECONDS.check(fn)
