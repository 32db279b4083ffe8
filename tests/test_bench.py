"""The benchmark script runs and prints its ratios (a smoke test: no timing is asserted)."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

# the ratio of the medians, then the lowest and highest ratio of the rounds
RATIO = r"[\d.]+x \(rounds [\d.]+-[\d.]+x\)"


@pytest.mark.subprocess
def test_bench_prints_cpu_ratios():
    # In the simulator, as every test runs: the CPU ratios are measured, the GPU part is not.
    r = subprocess.run([sys.executable, "-m", "nbkit.perf.bench", "--quick"], capture_output=True, text=True, cwd=ROOT,
                       timeout=600, env={**os.environ, "NBKIT_MODE": "sim"})
    assert r.returncode == 0, r.stderr
    for batch in (4, 64):
        assert re.search(rf"CPU, batch +{batch}: CPU path +[\d.]+ img/s, PyTorch CPU +[\d.]+ img/s, ratio {RATIO}", r.stdout)
        assert re.search(rf"CPU, batch +{batch}: kernels +[\d.]+ img/s, PyTorch CPU +[\d.]+ img/s, ratio {RATIO}", r.stdout)
    assert re.search(r"^hardware: .*; nbkit mode sim; load average", r.stdout, re.M), r.stdout
    assert "  GPU, batch 64 and 256: not measured (no GPU in this run).\n" in r.stdout


def test_both_sides_are_timed_in_alternating_passes_and_each_round_gives_a_ratio(monkeypatch):
    """A load change in the middle of a run must reach both sides: passes alternate, ours first then theirs first."""
    from nbkit.perf import bench

    clock, order = [0.0], []

    def side(name, seconds):
        def step(x, y):
            order.append(name)
            clock[0] += seconds
        return step

    slept = []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench.time, "sleep", slept.append)
    batches = [(None, None)] * 2
    ours, theirs, rounds = bench._time_pair(side("o", 3.0), batches, side("t", 1.0), batches, warmup=1, rounds=4)
    assert order == ["o", "t"] + ["o", "o", "t", "t", "t", "t", "o", "o"] * 2
    assert (ours, theirs, rounds) == (3.0, 1.0, [1 / 3] * 4)
    assert slept == [0.2] * 8  # every pass starts after the other side's thread pools went quiet
