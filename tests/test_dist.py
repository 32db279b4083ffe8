"""Data-parallel training: ring all-reduce in NumPy, and 2 gloo processes on 127.0.0.1 against one process.

The distributed tests start real processes (a few seconds for the first launch: every rank imports torch and numba,
or the fork server they come from does) on the loopback interface only, and every launch is bounded by its timeout.
"""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import ROOT

from nbkit.nn import dist

# ---------------------------------------------------------------- part 1: NumPy


def test_shard_splits_and_refuses_unequal_shards():
    assert [dist.shard(12, 3, r) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    with pytest.raises(dist.BatchSplitError, match="does not split over 2 ranks.*e.g. 8 or 10"):
        dist.shard(9, 2, 0)
    with pytest.raises(dist.WorldSizeError, match="rank 2 is not in a world of 2"):
        dist.shard(8, 2, 2)


@pytest.mark.parametrize("p, n", [(1, 5), (2, 7), (3, 9), (4, 13), (5, 1), (7, 100)])
def test_ring_allreduce_sums_and_counts_its_traffic(p, n):
    rng = np.random.default_rng(p * 100 + n)
    grads = rng.integers(-9, 9, size=(p, n)).astype(np.float64)  # integers: the sum is exact in any order
    trace = dist.ring_allreduce(grads, keep_states=True)
    np.testing.assert_array_equal(trace.result, np.broadcast_to(grads.sum(axis=0), (p, n)))
    m = trace.n_padded // p
    assert trace.n_padded % p == 0 and trace.n_padded - n < p
    np.testing.assert_array_equal(trace.sent_elements, 2 * (p - 1) * m)
    assert np.allclose(trace.sent_elements / trace.n_padded, dist.ring_sent_fraction(p))
    assert len(trace.states) == 1 + 2 * (p - 1)


def test_reduce_scatter_leaves_rank_r_with_the_sum_of_chunk_r_plus_1():
    p, m = 4, 3
    bufs = np.random.default_rng(1).standard_normal((p, p, m))
    out = bufs
    for s in range(p - 1):
        out = dist.reduce_scatter_step(out, s)
    for r in range(p):
        np.testing.assert_allclose(out[r, (r + 1) % p], bufs[:, (r + 1) % p].sum(axis=0))


def test_ring_allreduce_float32_matches_float64_sum():
    grads = np.random.default_rng(2).standard_normal((4, 1001)).astype(np.float32)
    out = dist.ring_allreduce(grads).result
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(grads.astype(np.float64).sum(0), out.shape), rtol=0, atol=1e-5)


def test_cost_model():
    # 1 GB over 4 ranks at 100 GB/s: 2*3/4 * 1e9 / 1e11 = 15 ms, plus 6 latencies of 10 us
    assert dist.ring_allreduce_time(1e9, 4, 100e9, 10e-6) == pytest.approx(15e-3 + 60e-6)
    assert dist.ring_allreduce_time(1e9, 1, 100e9, 10e-6) == 0
    with pytest.raises(ValueError, match="bandwidth > 0"):
        dist.ring_allreduce_time(1e9, 4, 0)
    speedup = dist.scaling_model(1e8, 0.1, [1, 2, 8], 32e9)
    assert speedup[0] == 1 and 1 < speedup[1] < 2 and speedup[2] < 8
    assert np.all(dist.scaling_model(1e8, 0.1, [2, 8], 32e9, overlap=True) >= speedup[1:])


def test_as_torch_shares_memory_and_refuses_strided_arrays():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = dist.as_torch(a)
    t.mul_(2)
    np.testing.assert_array_equal(a, [[0, 2, 4], [6, 8, 10]])
    with pytest.raises(ValueError, match="not contiguous"):
        dist.as_torch(a.T)


def test_data_parallel_gradient_is_the_mean_of_shard_gradients():
    net, _ = dist.lenet_pair(seed=3)
    x, y = dist.synthetic_batch(0, 6)
    net.loss_and_grads(x, y)
    full = [g.astype(np.float64) for g in net.grads()]
    shards = []
    for r in range(3):
        net.loss_and_grads(x[dist.shard(6, 3, r)], y[dist.shard(6, 3, r)])
        shards.append([g.astype(np.float64) for g in net.grads()])
    for i, g in enumerate(full):
        np.testing.assert_allclose(np.mean([s[i] for s in shards], axis=0), g, rtol=0, atol=1e-6)


def test_bad_configurations_fail_before_any_process_starts(monkeypatch):
    import torch.distributed
    import torch.multiprocessing

    def started(*args, **kwargs):
        raise AssertionError("a process was started or a process group joined")

    monkeypatch.setattr(torch.multiprocessing, "start_processes", started)
    monkeypatch.setattr(torch.distributed, "init_process_group", started)
    with pytest.raises(dist.WorldSizeError, match="configured for 3 ranks but 2"):
        dist.spawn(dist.RunConfig(world_size=3), world=2)
    with pytest.raises(dist.BatchSplitError, match="batch of 9 does not split over 2 ranks"):
        dist.spawn(dist.RunConfig(global_batch=9), world=2)
    with pytest.raises(dist.WorldSizeError, match="rank 1: the run is configured for 4 ranks but 2"):
        dist.run_rank([dist.RunConfig(world_size=4)], 1, 2, "tcp://127.0.0.1:1")  # checked before joining a group
    with pytest.raises(dist.BatchSplitError, match="batch of 5"):
        dist.run_rank([dist.RunConfig(global_batch=5)], 0, 2, "tcp://127.0.0.1:1")


def test_course_model_builds_on_the_kernel_backend_and_its_forward_pass_matches_torch(monkeypatch):
    """``backend="kernels"`` (the NCCL path) must import and run: it once imported a name that no longer existed."""
    import torch

    from nbkit.nn import lenet

    made = {}
    twin_models = lenet.twin_models
    monkeypatch.setattr(lenet, "twin_models", lambda *a, **k: made.setdefault("twins", twin_models(*a, **k)))
    net, torch_model = dist.lenet_pair(seed=1, backend="kernels")
    model = made["twins"][0]
    monkeypatch.setattr(model, "backward", lambda: None)  # forward + loss only: a backward pass takes ~30 s here
    x, y = dist.synthetic_batch(0, 1)
    loss = net.loss_and_grads(x, y)
    expected = torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(y))
    assert loss == pytest.approx(float(expected.detach()), rel=1e-4)


def test_the_course_model_is_built_without_a_pytorch_optimiser(monkeypatch):
    """A course-model rank trains only the course's model; PyTorch's first optimiser would import torch._dynamo,
    about a second of CPU in every spawned rank, for nothing."""
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("lenet_pair built a PyTorch optimiser")

    monkeypatch.setattr(torch.optim, "SGD", refuse)
    net, torch_model = dist.lenet_pair(seed=0)
    assert len(net.state()) == len(list(torch_model.parameters())) == 10


def test_each_nccl_rank_gets_its_own_gpu(monkeypatch):
    """NCCL refuses two ranks on one GPU: rank r of a machine must select cuda:r, for torch and for Numba."""
    import torch
    from numba import cuda

    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: chosen.append(("torch", i)))
    monkeypatch.setattr(cuda, "select_device", lambda i: chosen.append(("numba", i)), raising=False)
    assert [dist.rank_device("nccl", r) for r in range(3)] == ["cuda:0", "cuda:1", "cuda:2"]
    assert chosen == [(lib, r) for r in range(3) for lib in ("torch", "numba")]
    assert dist.rank_device("gloo", 3) == "cpu"
    with pytest.raises(dist.WorldSizeError, match="local rank 4 has no GPU: this machine has 4"):
        dist.rank_device("nccl", 4)


def test_spawned_processes_pass_their_index_as_local_rank(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(dist, "run_rank", lambda cfgs, rank, world, init, local_rank=0: seen.append(local_rank) or [])
    for r in range(3):
        dist._spawned(r, 3, 1234, [dist.RunConfig(backend="nccl")], str(tmp_path))
    assert seen == [0, 1, 2]


class _Exited(Exception):
    pass


def _fake_exit(calls):
    def fake(code):
        calls.append(("os._exit", code))
        raise _Exited
    return fake


def test_a_spawned_rank_ends_with_os_exit_only_after_its_results_are_written(monkeypatch, tmp_path):
    """The interpreter's teardown of torch and numba cost over a second of CPU per rank: a rank that wrote its
    results ends with os._exit(0); a rank that raised ends with os._exit(1) after writing its traceback where spawn
    reads it (the failing rank and its peers paid the teardown too, 3.5 s of CPU per failed two-rank run)."""
    calls = []
    monkeypatch.setattr(dist.os, "_exit", _fake_exit(calls))
    monkeypatch.setattr(dist, "_spawned", lambda *args: calls.append(("results written", args)))
    with pytest.raises(_Exited):
        dist._spawned_then_exit(1, 2, 1234, ["cfg"], str(tmp_path))
    assert calls == [("results written", (1, 2, 1234, ["cfg"], str(tmp_path))), ("os._exit", 0)]
    assert not dist._error_file(tmp_path, 1).exists()

    calls.clear()
    monkeypatch.setattr(dist, "_spawned", lambda *args: (_ for _ in ()).throw(RuntimeError("rank failed")))
    with pytest.raises(_Exited):
        dist._spawned_then_exit(1, 2, 1234, ["cfg"], str(tmp_path))
    assert calls == [("os._exit", 1)]
    trace = dist._error_file(tmp_path, 1).read_text(encoding="utf-8")
    assert trace.startswith("Traceback (most recent call last):") and trace.rstrip().endswith("RuntimeError: rank failed")

    monkeypatch.setattr(dist, "_spawned", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # the parent stopping the ranks: torch.multiprocessing handles it
        dist._spawned_then_exit(0, 2, 1234, ["cfg"], str(tmp_path))
    assert calls == [("os._exit", 1)] and not dist._error_file(tmp_path, 0).exists()


def test_a_torchrun_rank_ends_with_os_exit_and_mains_exit_code(monkeypatch):
    calls = []
    monkeypatch.setattr(dist.os, "_exit", _fake_exit(calls))
    for code in (0, 1, 2):
        monkeypatch.setattr(dist, "main", lambda argv=None, code=code: calls.append(("main", argv)) or code)
        with pytest.raises(_Exited):
            dist._main_then_exit(["--model", "torch"])
    assert calls == [("main", ["--model", "torch"]), ("os._exit", 0), ("main", ["--model", "torch"]), ("os._exit", 1),
                     ("main", ["--model", "torch"]), ("os._exit", 2)]
    assert "_main_then_exit()" in (ROOT / "nbkit" / "nn" / "dist.py").read_text().split('if __name__ == "__main__":')[1]


def test_spawn_starts_the_ranks_that_end_with_os_exit(monkeypatch):
    import torch.multiprocessing

    started = []

    def fake_start(fn, args, nprocs, join, start_method):
        started.append((fn, nprocs, start_method))
        raise _Exited

    asked = []
    monkeypatch.setattr(torch.multiprocessing, "start_processes", fake_start)
    monkeypatch.setattr(dist, "_start_method", lambda backend, env: asked.append((backend, env)) or "chosen")
    with pytest.raises(_Exited):
        dist.spawn(dist.RunConfig(threads=2), world=2)
    assert started == [(dist._spawned_then_exit, 2, "chosen")]
    assert asked == [("gloo", {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"})]


def test_gloo_ranks_fork_from_one_server_started_in_their_environment_else_spawn(monkeypatch):
    """A fork server imports torch, numba and nbkit once for every rank of every launch (a spawned rank spends
    about 2 s of CPU on them); it must run in the ranks' environment, and never hand a GPU's driver state on."""
    import multiprocessing.forkserver as forkserver

    from nbkit.core.mode import MODE

    preload = []
    monkeypatch.setattr(dist.sys, "platform", "linux")
    monkeypatch.setattr(forkserver, "set_forkserver_preload", preload.append)
    monkeypatch.setattr(forkserver._forkserver, "_forkserver_pid", None)
    monkeypatch.setattr(dist, "_forkserver_env", None)
    one, two = {"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "2"}
    assert MODE.is_simulator
    assert dist._start_method("nccl", one) == "spawn"
    assert dist._forkserver_env is None and preload == []
    assert dist._start_method("gloo", one) == "forkserver"
    assert preload == [dist._PRELOAD] and "torch" in dist._PRELOAD and "nbkit.nn.dist" in dist._PRELOAD
    assert dist._start_method("gloo", dict(one)) == "forkserver"  # a later launch reuses the server
    assert dist._start_method("gloo", two) == "spawn"  # the server's children would get the first environment
    monkeypatch.setattr(dist.sys, "platform", "darwin")
    assert dist._start_method("gloo", one) == "spawn"  # not Linux
    monkeypatch.setattr(dist.sys, "platform", "linux")
    monkeypatch.setattr(type(MODE), "is_simulator", property(lambda self: False))
    assert dist._start_method("gloo", one) == "spawn"  # a GPU in use
    monkeypatch.undo()

    monkeypatch.setattr(dist.sys, "platform", "linux")
    monkeypatch.setattr(forkserver, "set_forkserver_preload", preload.append)
    monkeypatch.setattr(forkserver._forkserver, "_forkserver_pid", 12345)  # something else started one
    monkeypatch.setattr(dist, "_forkserver_env", None)
    assert dist._start_method("gloo", one) == "spawn" and len(preload) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server runs on Linux only")
def test_the_fork_server_ends_without_teardown_and_its_ranks_keep_their_exit_codes():
    """Imported last by the fork server: at its exit it skips the teardown of torch and numba (os._exit), and a
    process forked from it (a rank) still ends with its own exit code."""
    assert dist._PRELOAD[-1] == "nbkit.nn._forkserver_exit"
    code = textwrap.dedent(f"""
        import importlib.util, os, sys
        spec = importlib.util.spec_from_file_location("fse", {str(ROOT / "nbkit" / "nn" / "_forkserver_exit.py")!r})
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        pid = os.fork()
        if pid == 0:
            sys.exit(3)  # a rank that failed
        print("rank exit code", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
        sys.exit(5)  # the server's own exit: os._exit(0) in the handler, before any teardown
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "rank exit code 3\n"), r.stderr


def test_comm_time_waits_for_the_gpu_before_and_after_the_all_reduce(monkeypatch):
    """comm_s on a GPU: kernels finished before the clock starts, the queued NCCL collective finished before it stops."""
    calls = []

    def log(name, value=None):
        return lambda *a, **k: calls.append(name) or value

    grads = [np.zeros(3, dtype=np.float32)]
    net = dist.Net(log("loss and gradients", 1.0), lambda: grads, log("optimiser step"), lambda: grads)
    monkeypatch.setattr(dist, "lenet_pair", lambda seed, backend="cpu": (net, None))
    monkeypatch.setattr(dist, "make_bucket", log("make bucket", "bucket"))
    monkeypatch.setattr(dist, "allreduce_mean_", log("all-reduce"))
    monkeypatch.setattr(dist, "_sync_numba", log("numba synchronize"))
    monkeypatch.setattr(dist, "_sync_torch", log("torch synchronize"))
    monkeypatch.setattr(dist, "time", type("Clock", (), {"perf_counter": staticmethod(log("clock", 0.0))}))
    step, _, _ = dist._train_course(dist.RunConfig(backend="nccl"), 0, 2, distributed=True, kernels=True)
    step(None, None)
    assert calls == ["loss and gradients", "numba synchronize", "clock", "make bucket", "all-reduce",
                     "torch synchronize", "clock", "optimiser step"]


# ---------------------------------------------------------------- part 2: real processes (loopback, bounded)

TOL = 1e-6  # float32: the parameters (|w| < 0.6) after 3 SGD steps; observed differences are ~1e-8


@pytest.mark.multiprocess
def test_two_ranks_at_batch_b_equal_one_process_at_batch_2b():
    cfgs = [dist.RunConfig(model=m, batch=4, steps=3, timeout_s=60) for m in ("course", "torch")]
    t0 = time.perf_counter()
    runs = dist.spawn(cfgs, world=2)
    assert time.perf_counter() - t0 < 180
    for cfg, ranks in zip(cfgs, runs):
        ref = dist.train(dist.RunConfig(model=cfg.model, batch=8, steps=3))
        for out in ranks:
            diff = dist.max_param_diff(out["params"], ref["params"])
            assert diff <= TOL, f"{cfg.model} rank {out['rank']}: max |param difference| {diff:.2e} > {TOL}"
        assert dist.max_param_diff(ranks[0]["params"], ranks[1]["params"]) == 0  # the ranks agree bit for bit
        assert not np.allclose(ranks[0]["losses"], ranks[1]["losses"])  # ... though they saw different data


# The fault is injected before the model's step (dist.train), and the surviving rank sees the same thing either way:
# its peer's process ends during a collective (DDP's all-reduce in the backward pass, or the course model's own
# allreduce_mean_). So each model carries one case: a PyTorch rank imports torch._dynamo (DDP, its optimiser),
# about a second more per rank than a course rank, whose compiled loops are in numba's cache by now (the in-process
# test above compiled them).
@pytest.mark.multiprocess
@pytest.mark.parametrize("fault, model, expected", [
    ("raise", "course", r"rank 1 of 2 failed: RuntimeError: injected fault on rank 1 at step 1"),
    ("exit", "torch", r"rank 1 of 2 died: it exited with code 3"),
])
def test_a_failing_rank_stops_the_run_and_is_named(fault, model, expected):
    cfg = dist.RunConfig(model=model, batch=2, steps=3, fault=fault, fault_rank=1, timeout_s=20)
    t0 = time.perf_counter()
    with pytest.raises(dist.RankFailed, match=expected) as e:
        dist.spawn(cfg, world=2)
    assert e.value.rank == 1
    assert time.perf_counter() - t0 < 90  # start-up + a few seconds: the surviving rank does not wait for gloo's timeout


@pytest.mark.multiprocess
def test_torchrun_launch_line():
    port = dist.free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "nbkit.nn.dist", "--model", "course", "--batch", "2", "--steps", "2",
           "--timed-steps", "0", "--timeout", "30"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stdout.splitlines() if "sum|params|" in line]
    assert len(lines) == 2
    digests = {line.split("sum|params|")[1].split(",")[0] for line in lines}
    assert len(digests) == 1, lines  # both ranks hold the same parameters
