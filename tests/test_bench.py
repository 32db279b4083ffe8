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
def test_bench_prints_cpu_ratios(capsys):
    # In the simulator, as every test runs: the CPU ratios are measured, the GPU part is not. In this process when it
    # runs in the simulator already (as `course.sh test` does): a fresh interpreter took 7.5-8 s of CPU, 4.5 s of
    # them importing torch (with torch._dynamo), numba and nbkit again; main() is what `python -m` runs.
    from nbkit.core.mode import MODE
    from nbkit.perf import bench

    if MODE.name == "sim":
        assert bench.main(["--quick"]) == 0
        out = capsys.readouterr().out
    else:
        r = subprocess.run([sys.executable, "-m", "nbkit.perf.bench", "--quick"], capture_output=True, text=True,
                           cwd=ROOT, timeout=600, env={**os.environ, "NBKIT_MODE": "sim"})
        assert r.returncode == 0, r.stderr
        out = r.stdout
    for batch in (4, 64):
        assert re.search(rf"CPU, batch +{batch}: CPU path +[\d.]+ img/s, PyTorch CPU +[\d.]+ img/s, ratio {RATIO}", out)
        assert re.search(rf"CPU, batch +{batch}: kernels +[\d.]+ img/s, PyTorch CPU +[\d.]+ img/s, ratio {RATIO}", out)
    assert re.search(r"^hardware: .*; nbkit mode sim; load average", out, re.M), out
    assert "  GPU, batch 64 and 256: not measured (no GPU in this run).\n" in out
    main_block = (ROOT / "nbkit" / "perf" / "bench.py").read_text().split('if __name__ == "__main__":')[1]
    assert main_block.strip() == "raise SystemExit(main())"


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


@pytest.mark.parametrize("torch_threads, env, cores, spins", [
    (2, {}, 2, True),                                                  # PyTorch's own pool
    (1, {"OMP_NUM_THREADS": "1"}, 2, False),                           # course.sh test: one thread per pool
    (1, {"OMP_NUM_THREADS": "2"}, 2, True),
    (1, {"OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "1"}, 2, True),  # OpenBLAS reads its own variable first
    (1, {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, 2, False),
    (1, {}, 2, True),                                                  # OpenBLAS's default: one thread per core
    (1, {}, 1, False),
])
def test_pools_may_spin_reads_torch_and_openblas_thread_counts(monkeypatch, torch_threads, env, cores, spins):
    import torch

    from nbkit.perf import bench

    for var in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    monkeypatch.setattr(bench.os, "cpu_count", lambda: cores)
    assert bench.pools_may_spin() is spins


@pytest.mark.parametrize("spins, settle", [(True, 0.2), (False, 0.0)])
def test_cpu_ratios_waits_between_passes_only_where_a_pool_may_spin(monkeypatch, spins, settle):
    from nbkit.perf import bench

    seen = []

    def fake_pair(*args, settle, **kwargs):
        seen.append(settle)
        return 1.0, 1.0, [1.0]

    monkeypatch.setattr(bench, "pools_may_spin", lambda: spins)
    monkeypatch.setattr(bench, "_time_pair", fake_pair)
    bench.cpu_ratios(batch_sizes=(4,), steps={4: 1})
    bench.cpu_ratios(batch_sizes=(4,), steps={4: 1}, settle=0.5)  # a figure given is kept
    assert seen == [settle, 0.5]
