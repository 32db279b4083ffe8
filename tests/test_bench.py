"""The benchmark script runs and prints its ratios (a smoke test: no timing is asserted)."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.subprocess


def test_bench_prints_cpu_ratios():
    # In the simulator, as every test runs: the CPU ratios are measured, the GPU part is not.
    r = subprocess.run([sys.executable, "-m", "nbkit.perf.bench", "--quick"], capture_output=True, text=True, cwd=ROOT,
                       timeout=600, env={**os.environ, "NBKIT_MODE": "sim"})
    assert r.returncode == 0, r.stderr
    for batch in (4, 64):
        assert re.search(rf"CPU, batch +{batch}: CPU path +[\d.]+ img/s, PyTorch CPU +[\d.]+ img/s, ratio [\d.]+x", r.stdout)
        assert re.search(rf"CPU, batch +{batch}: kernels +[\d.]+ img/s, PyTorch CPU +[\d.]+ img/s, ratio [\d.]+x", r.stdout)
    assert re.search(r"^hardware: .*; nbkit mode sim; load average", r.stdout, re.M), r.stdout
    assert "  GPU, batch 64 and 256: not measured (no GPU in this run).\n" in r.stdout
