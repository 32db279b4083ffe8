import numpy as np
import pytest

import nbkit
from nbkit.timing import Timing, time_it
from nbkit.vector import add


def test_simulator_time_is_labelled_as_simulator_time():
    a = np.ones(64, dtype=np.float32)
    calls = []

    def work():
        calls.append(1)
        add(a, a)

    t = time_it(work, repeat=3, warmup=2)
    assert len(calls) == 5  # the warm-up calls ran but were not timed
    assert len(t.seconds) == 3 and all(s > 0 for s in t.seconds)
    assert t.mode == nbkit.MODE.name == "sim"
    assert "SIMULATOR wall-clock time" in str(t) and "nothing about GPU speed" in str(t)
    assert "after 2 warm-up calls" in str(t)


def test_gpu_label():
    t = Timing((0.001, 0.003, 0.002), "gpu", 1)
    assert t.median == 0.002
    assert str(t).startswith("2.000 ms per call") and "CUDA events" in str(t) and "SIMULATOR" not in str(t)


def test_bad_arguments():
    with pytest.raises(ValueError, match="repeat >= 1"):
        time_it(lambda: None, repeat=0)
