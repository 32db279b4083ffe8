"""Exercises 10.1-10.2 (data parallel): answers written from the learner notebook."""

import math

import numpy as np

from ._answer import Answer

# ---- 10.1 reduce-scatter step


def rs_inplace(bufs, step):
    """Correct: in place (a rank never sends the chunk it receives in the same step)."""
    p = bufs.shape[0]
    for r in range(p):
        c = (r - step) % p
        bufs[(r + 1) % p, c] += bufs[r, c]
    return bufs


def rs_snapshot(bufs, step):
    """Correct: from a snapshot, into a new array."""
    p = bufs.shape[0]
    old = bufs.copy()
    new = bufs.copy()
    for r in range(p):
        c = (r - step) % p
        new[(r + 1) % p, c] = old[(r + 1) % p, c] + old[r, c]
    return new


def rs_vectorised(bufs, step):
    """Correct: vectorised with fancy indexing (receivers and chunks are all distinct)."""
    p = bufs.shape[0]
    r = np.arange(p)
    c = (r - step) % p
    out = bufs.copy()
    out[(r + 1) % p, c] += bufs[r, c]
    return out


def rs_plus_step(bufs, step):
    """Wrong: chunk (r + step) % p."""
    p = bufs.shape[0]
    for r in range(p):
        c = (r + step) % p
        bufs[(r + 1) % p, c] += bufs[r, c]
    return bufs


def rs_overwrite(bufs, step):
    """Wrong: the receiver overwrites its copy instead of adding."""
    p = bufs.shape[0]
    for r in range(p):
        c = (r - step) % p
        bufs[(r + 1) % p, c] = bufs[r, c]
    return bufs


def rs_to_left(bufs, step):
    """Wrong: sends to rank (r - 1) % p."""
    p = bufs.shape[0]
    for r in range(p):
        c = (r - step) % p
        bufs[(r - 1) % p, c] += bufs[r, c]
    return bufs


def rs_returns_none(bufs, step):
    """Wrong: updates in place but returns None (the statement: return the buffers)."""
    p = bufs.shape[0]
    for r in range(p):
        c = (r - step) % p
        bufs[(r + 1) % p, c] += bufs[r, c]


def rs_hardcoded_p(bufs, step):
    """Wrong: p hard-coded to 4."""
    p = 4
    for r in range(min(p, bufs.shape[0])):
        c = (r - step) % p
        if c < bufs.shape[0]:
            bufs[(r + 1) % p % bufs.shape[0], c] += bufs[r, c]
    return bufs


def rs_own_chunk(bufs, step):
    """Wrong: every rank sends chunk r (ignores the step)."""
    p = bufs.shape[0]
    for r in range(p):
        bufs[(r + 1) % p, r] += bufs[r, r]
    return bufs


# ---- 10.2 all-reduce time


def ar_ok(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Correct: 2(p - 1) steps of latency + one chunk each."""
    chunk = n_params / p * bytes_per_param
    return 2 * (p - 1) * (latency_us * 1e-6 + chunk / (bandwidth_GBps * 1e9))


def ar_factored(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Correct: the bandwidth term as 2 (p-1)/p * bytes / BW, latency separately."""
    total = n_params * bytes_per_param
    return 2 * (p - 1) / p * total / (bandwidth_GBps * 1e9) + 2 * (p - 1) * latency_us / 1e6


def ar_ceil_chunk(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Correct (a real ring sends whole values): chunks of ceil(n / p) values."""
    chunk = math.ceil(n_params / p) * bytes_per_param
    return 2 * (p - 1) * (latency_us * 1e-6 + chunk / (bandwidth_GBps * 1e9))


def ar_float32(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Correct: the same formula, returned as a NumPy float32 (7 significant digits of a MODEL time)."""
    chunk = n_params / p * bytes_per_param
    return np.float32(2 * (p - 1) * (latency_us * 1e-6 + chunk / (bandwidth_GBps * 1e9)))


def ar_half_steps(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Wrong: p - 1 steps (only the reduce-scatter)."""
    chunk = n_params / p * bytes_per_param
    return (p - 1) * (latency_us * 1e-6 + chunk / (bandwidth_GBps * 1e9))


def ar_gib(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Wrong: GB/s taken as 2**30 bytes/s."""
    chunk = n_params / p * bytes_per_param
    return 2 * (p - 1) * (latency_us * 1e-6 + chunk / (bandwidth_GBps * 2**30))


def ar_latency_ms(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Wrong: latency scaled by 1e-3 (as milliseconds)."""
    chunk = n_params / p * bytes_per_param
    return 2 * (p - 1) * (latency_us * 1e-3 + chunk / (bandwidth_GBps * 1e9))


def ar_whole_buffer(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Wrong: each step moves the whole buffer, not n / p."""
    total = n_params * bytes_per_param
    return 2 * (p - 1) * (latency_us * 1e-6 + total / (bandwidth_GBps * 1e9))


def ar_no_bytes(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Wrong: ignores bytes_per_param (counts values as bytes)."""
    chunk = n_params / p
    return 2 * (p - 1) * (latency_us * 1e-6 + chunk / (bandwidth_GBps * 1e9))


def ar_latency_once(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Wrong: pays the latency once, not per step."""
    chunk = n_params / p * bytes_per_param
    return latency_us * 1e-6 + 2 * (p - 1) * chunk / (bandwidth_GBps * 1e9)


ANSWERS = [
    Answer("10.1", "in-place", "check_reduce_scatter_step", (rs_inplace,), True),
    Answer("10.1", "snapshot", "check_reduce_scatter_step", (rs_snapshot,), True),
    Answer("10.1", "vectorised", "check_reduce_scatter_step", (rs_vectorised,), True),
    Answer("10.1", "chunk-r-plus-step", "check_reduce_scatter_step", (rs_plus_step,), False),
    Answer("10.1", "overwrite", "check_reduce_scatter_step", (rs_overwrite,), False),
    Answer("10.1", "send-left", "check_reduce_scatter_step", (rs_to_left,), False),
    Answer("10.1", "returns-none", "check_reduce_scatter_step", (rs_returns_none,), False),
    Answer("10.1", "p-hard-coded", "check_reduce_scatter_step", (rs_hardcoded_p,), False),
    Answer("10.1", "ignores-step", "check_reduce_scatter_step", (rs_own_chunk,), False),
    Answer("10.2", "per-step", "check_allreduce_seconds", (ar_ok,), True),
    Answer("10.2", "factored", "check_allreduce_seconds", (ar_factored,), True),
    Answer("10.2", "ceil-chunk", "check_allreduce_seconds", (ar_ceil_chunk,), True),
    Answer("10.2", "float32-result", "check_allreduce_seconds", (ar_float32,), True),
    Answer("10.2", "p-minus-1-steps", "check_allreduce_seconds", (ar_half_steps,), False),
    Answer("10.2", "GiB", "check_allreduce_seconds", (ar_gib,), False),
    Answer("10.2", "latency-as-ms", "check_allreduce_seconds", (ar_latency_ms,), False),
    Answer("10.2", "whole-buffer-per-step", "check_allreduce_seconds", (ar_whole_buffer,), False),
    Answer("10.2", "ignores-bytes", "check_allreduce_seconds", (ar_no_bytes,), False),
    Answer("10.2", "latency-once", "check_allreduce_seconds", (ar_latency_once,), False),
]
