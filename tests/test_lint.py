"""The test command also lints: ruff, configured in pyproject.toml, over nbkit, coursekit and tests."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.subprocess
def test_ruff_finds_nothing():
    try:
        import ruff  # noqa: F401 - the PyPI package ships the binary
        command = [sys.executable, "-m", "ruff"]
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.skip("ruff is not installed (it comes with the [test] extra)")
        command = ["ruff"]
    result = subprocess.run([*command, "check", "--no-cache", "nbkit", "coursekit", "tests"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
