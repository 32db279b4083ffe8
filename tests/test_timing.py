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


class _FakeEvent:
    def record(self):
        pass

    def synchronize(self):
        pass


def _fake_gpu(monkeypatch, gpu_ms_per_round: float, host_seconds_per_round: float):
    """GPU mode with CUDA events that report ``gpu_ms_per_round`` and a host clock that advances by the issue time."""
    import types

    import nbkit.core.timing as timing

    clock = {"t": 0.0}

    def perf_counter():
        clock["t"] += host_seconds_per_round  # consecutive readings bracket the issuing loop
        return clock["t"]

    monkeypatch.setattr(timing, "_mode", lambda: types.SimpleNamespace(name="gpu"))
    monkeypatch.setattr(timing.cuda, "event", lambda timing=True: _FakeEvent(), raising=False)
    monkeypatch.setattr(timing.cuda, "event_elapsed_time", lambda a, b: gpu_ms_per_round, raising=False)
    monkeypatch.setattr(timing.time, "perf_counter", perf_counter)
    monkeypatch.setattr(timing.cuda, "synchronize", lambda: None)
    return timing


def test_gpu_time_longer_than_dispatch_is_the_kernel_time(monkeypatch):
    timing = _fake_gpu(monkeypatch, gpu_ms_per_round=10.0, host_seconds_per_round=0.001)  # GPU 10 ms, issue 1 ms
    t = timing.time_it(lambda: None, repeat=10, warmup=0)
    assert t.median == pytest.approx(0.001) and not t.dispatch_bound
    assert "one pair of CUDA events" in str(t) and "DISPATCH-BOUND" not in str(t)


def test_gpu_time_equal_to_dispatch_is_labelled_dispatch_bound(monkeypatch):
    # 10 launches issued in 1 ms (100 µs each from Python) and the events also measure 1 ms: the GPU waited.
    timing = _fake_gpu(monkeypatch, gpu_ms_per_round=1.0, host_seconds_per_round=0.001)
    t = timing.time_it(lambda: None, repeat=10, warmup=0)
    assert t.dispatch_bound
    assert "DISPATCH-BOUND" in str(t) and "upper bound" in str(t)


def test_time_kernels_marks_dispatch_bound_kernels(monkeypatch):
    import types

    import nbkit.perf.steps as steps

    timing = _fake_gpu(monkeypatch, gpu_ms_per_round=1.0, host_seconds_per_round=0.001)
    monkeypatch.setattr(steps, "MODE", types.SimpleNamespace(is_simulator=False, probe=types.SimpleNamespace(usable=True)))
    monkeypatch.setattr(steps, "gpu_round", timing.gpu_round)
    monkeypatch.setattr(steps.cuda, "synchronize", lambda: None)

    class K:
        py_func = types.SimpleNamespace(__name__="tiny_kernel")

        def __getitem__(self, config):
            return lambda *args: None

    rec = steps.StepRecord(launches=[(K(), 1, 32, ())])
    monkeypatch.setattr(steps, "kernel_name", lambda k: "tiny_kernel")
    steps.time_kernels(rec, lambda: None, repeats=10)
    assert rec.dispatch_bound == {"tiny_kernel"}
    table = steps.kernel_table(rec)
    assert "≤" in table and "DISPATCH-BOUND" in table
