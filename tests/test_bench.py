"""The benchmark script runs and prints its ratios (a smoke test: no timing is asserted)."""

import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.subprocess


def test_bench_prints_cpu_ratios():
    r = subprocess.run([sys.executable, "-m", "nbkit.perf.bench", "--quick"], capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    for batch in (4, 64):
        assert re.search(rf"CPU, batch +{batch}: CPU path +[\d.]+ img/s, PyTorch CPU +[\d.]+ img/s, ratio [\d.]+x", r.stdout)
    assert "hardware:" in r.stdout and ("GPU, batch 64 and 256: not measured" in r.stdout or "GPU, batch 256" in r.stdout)
