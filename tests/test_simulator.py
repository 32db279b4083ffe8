"""nbkit.core.simulator, the one home of the CUDA simulator's internals, on whichever simulator is loaded here
(numba-cuda's in the main environment, numba's built-in one under ``course.sh test-numba-only``)."""

import re
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import cuda, float32, float64

from coursekit import numba_only
from nbkit.core import simulator

ROOT = Path(__file__).resolve().parent.parent


def test_which_names_the_loaded_simulator_and_its_versions():
    name = simulator.which()
    assert numba.__version__ in name
    redirected = "numba_cuda" in cuda.__file__
    assert name.startswith("numba-cuda " if redirected else "numba ") and name.endswith(")" if redirected else "built-in")
    assert simulator.internals().name == name


def test_numba_types_and_numpy_dtypes_become_numpy_dtypes():
    assert simulator.as_dtype(float32) == np.float32
    assert simulator.as_dtype(float64) == np.float64
    assert simulator.as_dtype(np.int32) == np.int32
    assert simulator.as_dtype("int16") == np.int16


def test_the_memory_of_a_simulator_device_array_is_its_numpy_array():
    d = cuda.to_device(np.zeros(4, dtype=np.float32))
    memory = simulator.device_array_memory(d)
    memory[2] = 7.0  # writing the memory is writing the device array
    assert d.copy_to_host().tolist() == [0.0, 0.0, 7.0, 0.0]
    assert simulator.device_array_memory(np.zeros(4)) is None


def _fill_with_thread_index(out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = i


def test_a_python_function_runs_as_a_simulator_kernel():
    kernel = simulator.simulated_kernel(_fill_with_thread_index)
    assert simulator.is_simulated_kernel(kernel) and not simulator.is_simulated_kernel(_fill_with_thread_index)
    out = np.zeros(40, dtype=np.int64)
    kernel[2, 32](out)
    assert out.tolist() == list(range(40))


def test_missing_internals_are_named_with_the_supported_versions(monkeypatch):
    from numba.cuda.simulator import kernel

    monkeypatch.delattr(kernel, "BlockManager")
    simulator.internals.cache_clear()
    try:
        with pytest.raises(simulator.SimulatorInternalsError) as info:
            simulator.internals()
    finally:
        monkeypatch.undo()
        simulator.internals.cache_clear()
    message = str(info.value)
    assert "numba.cuda.simulator.kernel.BlockManager" in message and simulator.which() in message
    assert simulator.SUPPORTED in message
    assert simulator.internals().BlockManager is kernel.BlockManager


def test_no_other_module_reaches_into_the_simulator():
    """One home each: only nbkit/core/simulator.py may import numba.cuda.simulator or numba(-cuda)'s private
    modules; the one exception is nbkit/perf/compiler.py, the compiler's home, which may use the compiler's own
    internals (its lock and NVVM, to lower a kernel once for every architecture) but nothing of the simulator's."""
    internal = re.compile(r"numba\.cuda\.(simulator|np|types|core|cudadrv)\b|\._ary\b|numba_cuda\.numba")
    compiler_side = re.compile(r"from numba\.cuda\.(core\.compiler_lock import global_compiler_lock|cudadrv import nvrtc, nvvm)$",
                               re.M)
    homes = {"nbkit/core/simulator.py", "tests/test_simulator.py"}
    offenders = []
    for folder in ("nbkit", "coursekit", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name, text = path.relative_to(ROOT).as_posix(), path.read_text()
            if name == "nbkit/perf/compiler.py":
                text = compiler_side.sub("", text)
            if name not in homes and internal.search(text):
                offenders.append(name)
    assert offenders == []


def test_the_numba_only_environment_is_the_main_one_less_numba_cuda():
    text = (ROOT / "pyproject.toml").read_text()
    reqs = numba_only.requirements(text)
    names = [numba_only._name(r) for r in reqs]
    assert "numba-cuda" not in names and "numba" in names
    assert {"pytest", "nbval", "ipykernel", "torch"} <= set(names)  # the test and lab extras are in
    fake = text.replace('"numba>=0.60",', '"numba>=0.60",\n    "Numba_CUDA[cu13]>=0.30",')
    assert numba_only.requirements(fake) == reqs  # any spelling of numba-cuda is left out


# ---------------------------------------------------------------- hardening: poisoned memory, locks, barriers
# nbkit hardens the simulator at start-up in sim and cpu mode (nbkit.core.launch calls simulator.harden()).

TREE = 64


@cuda.jit
def _reads_unwritten_memory(out_f, out_i, out_local):
    sf = cuda.shared.array(4, float32)
    si = cuda.shared.array(4, numba.int32)
    lf = cuda.local.array(3, float64)
    t = cuda.threadIdx.x
    out_f[t] = sf[t]
    out_i[t] = si[t]
    out_local[t] = lf[t % 3]


def test_uninitialised_shared_and_local_memory_reads_as_nan_or_a_sentinel():
    out_f, out_i, out_local = np.zeros(4, np.float32), np.zeros(4, np.int32), np.zeros(4)
    _reads_unwritten_memory[1, 4](out_f, out_i, out_local)
    assert np.isnan(out_f).all() and np.isnan(out_local).all()
    assert (out_i == np.iinfo(np.int32).min).all()


def test_poison_values_by_kind():
    assert np.isnan(simulator.poison_value(np.float16)) and np.isnan(simulator.poison_value(np.complex64))
    assert simulator.poison_value(np.int64) == np.iinfo(np.int64).min
    assert simulator.poison_value(np.uint8) == 255 and simulator.poison_value(np.bool_) is True
    assert np.isnan(simulator.poisoned((2, 3), float32)).all() and simulator.poisoned(2, float32).dtype == np.float32


@cuda.jit
def _second_block_reads_the_first_blocks_memory(out):
    buf = cuda.shared.array(8, float32)
    t = cuda.threadIdx.x
    if cuda.blockIdx.x == 0:
        buf[t] = 5.0
    cuda.syncthreads()
    out[cuda.blockIdx.x, t] = buf[t]


def test_every_block_starts_with_fresh_poisoned_shared_memory():
    # the simulator keeps one shared array per launch; on a GPU a block never sees another block's shared memory
    out = np.zeros((2, 8), np.float32)
    _second_block_reads_the_first_blocks_memory[2, 8](out)
    assert (out[0] == 5).all() and np.isnan(out[1]).all()


@cuda.jit
def _dynamic_shared(out):
    dyn = cuda.shared.array(0, float32)
    t = cuda.threadIdx.x
    if cuda.blockIdx.x == 0:
        dyn[t] = 1.0
    cuda.syncthreads()
    out[cuda.blockIdx.x, t] = dyn[t]


def test_dynamic_shared_memory_is_poisoned_for_every_block():
    out = np.zeros((2, 4), np.float32)
    _dynamic_shared[2, 4, 0, 16](out)
    assert (out[0] == 1).all() and np.isnan(out[1]).all()


@cuda.jit
def _block_total(out):
    buf = cuda.shared.array(TREE, numba.int64)
    t = cuda.threadIdx.x
    buf[t] = t + 1
    cuda.syncthreads()
    if t == 0:
        s = 0
        for k in range(cuda.blockDim.x):
            s += buf[k]
        out[cuda.blockIdx.x] = s


def test_every_thread_of_a_block_gets_the_same_shared_array(monkeypatch):
    # The simulator's own cuda.shared.array looks the array up, creates it and stores it without a lock: a thread
    # switch in between gives two threads two arrays. A slow np.empty in the simulator's threads widens that gap
    # (nbkit runs a block's threads on greenlets, which switch only at barriers, but the lock stays: cheap).
    real_empty = np.empty

    def slow_empty(*args, **kwargs):
        if hasattr(simulator.current_thread(), "blockIdx"):
            __import__("time").sleep(0.002)
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(np, "empty", slow_empty)
    for _ in range(3):
        out = np.zeros(6, np.int64)
        _block_total[6, TREE](out)
        assert out.tolist() == [TREE * (TREE + 1) // 2] * 6


@cuda.jit
def _barriers_at_two_call_sites(out):
    t = cuda.threadIdx.x
    if t < 16:
        cuda.syncthreads()
    else:
        cuda.syncthreads()
    out[t] = t


def test_threads_waiting_at_different_barriers_raise():
    with pytest.raises(simulator.DivergentBarrier, match=r"wait at different cuda.syncthreads\(\) calls: thread .* at "
                                                         r"line \d+, thread .* at line \d+ \(barrier number 1"):
        _barriers_at_two_call_sites[1, 32](np.zeros(32, np.int64))


@cuda.jit
def _uniform_barriers(out):
    t = cuda.threadIdx.x
    if cuda.blockIdx.x == 0:  # the same for the whole block: allowed
        cuda.syncthreads()
    for _ in range(3):
        cuda.syncthreads_count(t)
    out[cuda.blockIdx.x, t] = t


def test_barriers_reached_by_the_whole_block_pass():
    out = np.zeros((2, 8), np.int64)
    _uniform_barriers[2, 8](out)
    assert out.tolist() == [list(range(8))] * 2
    simulator.harden()  # idempotent
    _uniform_barriers[2, 8](out)


@cuda.jit
def _aligned_shared(out):
    buf = cuda.shared.array(4, float32, alignment=16)
    out[0] = buf[0]


def test_shared_alignment_is_refused_as_the_simulator_refuses_it():
    # numba-cuda's simulator: RuntimeError "Array alignment is not supported in cudasim"; numba's has no parameter
    with pytest.raises((RuntimeError, TypeError)):
        _aligned_shared[1, 1](np.zeros(1, np.float32))


def test_blocks_are_scheduled_by_nbkits_loop_with_the_simulators_barriers_and_errors():
    from nbkit.kernels.reduce import sum_tree_kernel

    assert simulator.internals().BlockManager.run is simulator._block_run  # installed by harden() at start-up
    x = np.arange(16, dtype=np.float32)
    partial = np.zeros(2, np.float32)
    sum_tree_kernel[2, 8](x, partial)  # a tree reduction: four barriers, three of them in a while loop
    assert partial.tolist() == [28.0, 92.0]
    with pytest.raises(IndexError):  # block 1's thread 0 writes partial[1], past the end, after its barriers
        sum_tree_kernel[2, 8](x, np.zeros(1, np.float32))


@cuda.jit
def _arrival_order(counter, before, after):
    per_block = cuda.blockDim.x * cuda.blockDim.y
    t = cuda.threadIdx.x + cuda.blockDim.x * cuda.threadIdx.y + per_block * cuda.blockIdx.x  # x fastest
    before[cuda.atomic.add(counter, 0, 1)] = t
    cuda.syncthreads()
    after[cuda.atomic.add(counter, 1, 1)] = t


def test_threads_run_in_order_until_they_wait_so_every_run_is_the_same():
    # nbkit.core.fibers: a block's threads are greenlets resumed in thread order, each until its barrier or its end
    runs = []
    for _ in range(3):
        counter, before, after = np.zeros(2, np.int64), np.full(20, -1, np.int64), np.full(20, -1, np.int64)
        _arrival_order[2, 10](counter, before, after)
        runs.append((before.tolist(), after.tolist()))
    assert runs[0] == (list(range(20)), list(range(20)))
    assert runs[1] == runs[0] and runs[2] == runs[0]
    counter, before, after = np.zeros(2, np.int64), np.full(12, -1, np.int64), np.full(12, -1, np.int64)
    _arrival_order[2, (3, 2)](counter, before, after)  # 2-D blocks: in thread-id order too, as a GPU numbers lanes
    assert before.tolist() == after.tolist() == list(range(12))


@cuda.jit
def _fails_while_others_wait(out, bad):
    t = cuda.threadIdx.x
    if t == bad:
        out[t + 100] = 1  # out of bounds, while the threads before it wait at the barrier
    cuda.syncthreads()
    out[t] = t


def test_a_failing_thread_stops_its_block_and_names_itself_and_the_next_launch_runs():
    out = np.zeros(8, np.int64)
    with pytest.raises(IndexError, match=r"tid=\[5, 0, 0\] ctaid=\[0, 0, 0\]"):
        _fails_while_others_wait[1, 8](out, 5)
    assert out.tolist() == [0] * 8  # nobody passed the barrier
    _fails_while_others_wait[1, 8](out, -1)
    assert out.tolist() == list(range(8))


@cuda.jit
def _early_return(out):
    t = cuda.threadIdx.x
    if t >= 4:
        return  # leaves the block: the barrier waits only for the threads still running
    out[t] = cuda.syncthreads_count(t % 2)
    cuda.syncthreads()
    out[t] += cuda.syncthreads_or(t == 3) * 10


def test_a_returned_thread_no_longer_holds_up_a_barrier_and_votes_count_the_live_threads():
    out = np.zeros(8, np.int64)
    _early_return[1, 8](out)
    assert out.tolist() == [12] * 4 + [0] * 4


def test_the_running_thread_is_a_fiber_inside_a_kernel_and_the_os_thread_outside():
    import threading

    from nbkit.core import fibers

    seen = []

    def who(out):
        seen.append(simulator.current_thread())
        out[cuda.threadIdx.x] = cuda.threadIdx.x  # the fake cuda module finds the thread through fibers too

    out = np.zeros(3, np.int64)
    simulator.simulated_kernel(who)[1, 3](out)
    assert out.tolist() == [0, 1, 2]
    assert [type(t) for t in seen] == [simulator.SimThread] * 3 and isinstance(seen[0], fibers.Fiber)
    assert [tuple(t.threadIdx) for t in seen] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    assert simulator.current_thread() is threading.current_thread() and not fibers.in_fiber()


def _interrupted(out, stop):
    t = cuda.threadIdx.x
    try:
        if t == stop:
            raise KeyboardInterrupt  # as Ctrl-C arrives while this thread runs
        cuda.syncthreads()
        out[t] = t
    finally:
        out[t] += 100


def test_an_interrupt_ends_every_thread_of_the_block_and_the_next_launch_runs():
    kernel = simulator.simulated_kernel(_interrupted)
    out = cuda.to_device(np.zeros(8, np.int64))  # device memory: a launch that raised copies nothing back
    with pytest.raises(KeyboardInterrupt):
        kernel[1, 8](out, 3)
    assert out.copy_to_host().tolist() == [100] * 4 + [0] * 4  # threads 0-2 left their barrier; 4-7 never began
    out = np.zeros(8, np.int64)
    kernel[1, 8](out, -1)
    assert out.tolist() == [100 + t for t in range(8)]


_LEFT_BY_THE_LAST_THREAD = None  # a context variable, made in the test


def _runners_seen(seen, barrier):
    def kernel(out):
        from greenlet import getcurrent

        t = cuda.threadIdx.x
        seen.append((cuda.blockIdx.x, t, id(getcurrent()), getcurrent().sim_thread is simulator.current_thread(),
                     _LEFT_BY_THE_LAST_THREAD.get(), np.geterr()["divide"]))
        _LEFT_BY_THE_LAST_THREAD.set(t)  # a fresh context per thread: the next thread must not see it
        np.seterr(divide="raise")  # numpy's error state lives in the context too
        if barrier:
            cuda.syncthreads()
        out[cuda.blockIdx.x, t] = t

    return simulator.simulated_kernel(kernel)


def test_threads_reuse_runners_and_each_starts_as_on_a_greenlet_of_its_own():
    """fibers runs one thread after another on a runner greenlet (a new greenlet per thread cost 6.5 µs, a reused one
    0.5 µs); a thread waiting at a barrier keeps its runner, so a block with a barrier needs one per thread, which the
    next block reuses. Each thread still sees a fresh context, and itself as sim_thread."""
    import contextvars
    import gc
    import weakref

    from nbkit.core import fibers

    global _LEFT_BY_THE_LAST_THREAD
    _LEFT_BY_THE_LAST_THREAD = contextvars.ContextVar("left", default=None)
    divide = np.geterr()["divide"]
    for barrier, runners in ((False, 1), (True, 8)):
        seen: list = []
        out = np.zeros((3, 8), np.int64)
        _runners_seen(seen, barrier)[3, 8](out)
        assert out.tolist() == [list(range(8))] * 3
        assert [(b, t) for b, t, *_ in seen] == [(b, t) for b in range(3) for t in range(8)]  # thread order
        assert len({g for _, _, g, *_ in seen}) == runners  # three blocks, the same runners
        assert {(me, left, err) for _, _, _, me, left, err in seen} == {(True, None, divide)}
    assert np.geterr()["divide"] == divide
    refs: list = []
    simulator.simulated_kernel(lambda out: refs.append(weakref.ref(simulator.current_thread())))[2, 4](np.zeros(4))
    gc.collect()
    assert len(refs) == 8 and all(r() is None for r in refs)  # an idle runner keeps no thread (nor its arrays) alive
    assert fibers._idle() and all(g.sim_thread is None for g in fibers._idle())
