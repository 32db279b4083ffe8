import numpy as np
import pytest

import nbkit
from nbkit.core.timing import Timing, time_it
from nbkit.kernels.vector import add


def test_simulator_time_is_labelled_as_simulator_time():
    a = np.ones(64, dtype=np.float32)
    calls = []

    def work():
        calls.append(1)
        add(a, a)

    t = time_it(work, repeat=3, warmup=2)
    assert len(calls) == 5  # the warm-up calls ran but were not timed
    assert len(t.seconds) == 1 and t.seconds[0] > 0 and t.calls_per_round == 3
    assert t.mode == nbkit.MODE.name == "sim"
    assert "SIMULATOR wall-clock time" in str(t) and "nothing about GPU speed" in str(t)
    assert "3 back-to-back calls timed together" in str(t) and "after 2 warm-up calls" in str(t)


def test_many_calls_per_round_give_a_per_call_time():
    calls = []
    clock = iter([0.0, 1.0, 1.0, 3.0])  # two rounds of 4 calls: 1 s and 2 s

    import nbkit.core.timing as timing

    real = timing.time.perf_counter
    timing.time.perf_counter = lambda: next(clock)
    try:
        t = time_it(lambda: calls.append(1), repeat=4, warmup=1, rounds=2)
    finally:
        timing.time.perf_counter = real
    assert len(calls) == 1 + 2 * 4
    assert t.seconds == (0.25, 0.5) and t.median == 0.375
    assert "median of 2 rounds" in str(t) and "SIMULATOR" in str(t)


def test_gpu_label():
    t = Timing((0.001, 0.003, 0.002), "gpu", 1, 20)
    assert t.median == 0.002
    assert str(t).startswith("2.000 ms per call (20 back-to-back calls timed together, median of 3 rounds")
    assert "one pair of CUDA events" in str(t) and "SIMULATOR" not in str(t)


def test_bad_arguments():
    with pytest.raises(ValueError, match="repeat >= 1"):
        time_it(lambda: None, repeat=0)
    with pytest.raises(ValueError, match="rounds >= 1"):
        time_it(lambda: None, rounds=0)
