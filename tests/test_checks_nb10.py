"""Checks of notebook 10 accept right answers (two ways each) and reject wrong ones with the likely cause."""

import numpy as np
import pytest

from nbkit.checks import CheckFailed, nb10

# ---------------------------------------------------------------- 10.1 reduce-scatter step

def rs_loop(bufs, step):
    p = bufs.shape[0]
    out = bufs.copy()
    for r in range(p):
        c = (r - step) % p
        out[(r + 1) % p, c] += bufs[r, c]
    return out


def rs_vectorised_in_place(bufs, step):
    """Alternative: gather all outgoing chunks first, then add them with fancy indexing, in place."""
    p = bufs.shape[0]
    src = np.arange(p)
    chunks = (src - step) % p
    outgoing = bufs[src, chunks].copy()
    bufs[(src + 1) % p, chunks] += outgoing
    return bufs


def rs_sequential_in_place(bufs, step):
    """Alternative: in place, rank after rank, no copy: right, as a rank sends and receives different chunks."""
    p = bufs.shape[0]
    for r in range(p):
        c = (r - step) % p
        bufs[(r + 1) % p, c] += bufs[r, c]
    return bufs


def rs_ignores_step(bufs, step):
    p = bufs.shape[0]
    out = bufs.copy()
    for r in range(p):
        out[(r + 1) % p, r] += bufs[r, r]
    return out


def rs_wrong_chunk(bufs, step):
    p = bufs.shape[0]
    out = bufs.copy()
    for r in range(p):
        c = (r + step) % p
        out[(r + 1) % p, c] += bufs[r, c]
    return out


def rs_replace(bufs, step):
    p = bufs.shape[0]
    out = bufs.copy()
    for r in range(p):
        c = (r - step) % p
        out[(r + 1) % p, c] = bufs[r, c]
    return out


def rs_off_by_one_element(bufs, step):
    out = rs_loop(bufs, step)
    out[..., -1] = bufs[..., -1]  # forgot the last element of every chunk
    return out


def rs_first_five_ranks(bufs, step):  # wrong: ranks past the fifth never send
    p = bufs.shape[0]
    out = bufs.copy()
    for r in range(min(p, 5)):
        c = (r - step) % p
        out[(r + 1) % p, c] += bufs[r, c]
    return out


def test_reduce_scatter_runs_more_ranks():
    with pytest.raises(CheckFailed, match="with p=7 ranks"):
        nb10.check_reduce_scatter_step(rs_first_five_ranks)


@pytest.mark.parametrize("fn", [rs_loop, rs_vectorised_in_place, rs_sequential_in_place])
def test_reduce_scatter_accepts(fn, capsys):
    nb10.check_reduce_scatter_step(fn)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("fn, cause", [
    (rs_ignores_step, "its own chunk r at every step"),
    (rs_wrong_chunk, "(r + s) mod p"),
    (rs_replace, "replaced its chunk"),
    (rs_off_by_one_element, "the first is"),
])
def test_reduce_scatter_rejects(fn, cause):
    with pytest.raises(CheckFailed) as e:
        nb10.check_reduce_scatter_step(fn)
    assert str(e.value).startswith("✗") and cause in str(e.value)


def test_reduce_scatter_rejects_none_and_shape():
    with pytest.raises(CheckFailed, match="returned None"):
        nb10.check_reduce_scatter_step(lambda bufs, step: None)
    with pytest.raises(CheckFailed, match="shape"):
        nb10.check_reduce_scatter_step(lambda bufs, step: bufs[0])


def test_unsolved_stub_is_not_a_failure(capsys):
    def stub(*args):
        raise NotImplementedError()
    nb10.check_reduce_scatter_step(stub)
    nb10.check_allreduce_seconds(stub)
    assert capsys.readouterr().out.count("not solved yet") == 2


# ---------------------------------------------------------------- 10.2 all-reduce time on a link

def t_formula(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    return 2 * (p - 1) * latency_us * 1e-6 + 2 * (p - 1) / p * n_params * bytes_per_param / (bandwidth_GBps * 1e9)


def t_by_steps(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    """Alternative: 2(p-1) steps, each moving one chunk of n/p values and paying the latency."""
    chunk_bytes = n_params * bytes_per_param / p
    return sum(latency_us / 1e6 + chunk_bytes / bandwidth_GBps / 1e9 for _ in range(2 * (p - 1)))


def t_no_factor_two(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    return (p - 1) * latency_us * 1e-6 + (p - 1) / p * n_params * bytes_per_param / (bandwidth_GBps * 1e9)


def t_gibibytes(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    return 2 * (p - 1) * latency_us * 1e-6 + 2 * (p - 1) / p * n_params * bytes_per_param / (bandwidth_GBps * 2**30)


def t_whole_gradient(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):
    return 2 * (p - 1) * latency_us * 1e-6 + 2 * (p - 1) * n_params * bytes_per_param / (bandwidth_GBps * 1e9)


def t_whole_values(n_params, bytes_per_param, p, bandwidth_GBps, latency_us):  # correct: chunks of whole values
    chunk = -(-n_params // p) * bytes_per_param
    return 2 * (p - 1) * (latency_us * 1e-6 + chunk / (bandwidth_GBps * 1e9))


@pytest.mark.parametrize("fn", [t_formula, t_by_steps, t_whole_values])
def test_allreduce_seconds_accepts(fn, capsys):
    nb10.check_allreduce_seconds(fn)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("fn, cause", [
    (t_no_factor_two, "factor 2"),
    (t_gibibytes, "GiB"),
    (t_whole_gradient, "2(p-1)/p"),
    (lambda n, b, p, bw, lat: "fast", "a number of seconds"),
])
def test_allreduce_seconds_rejects(fn, cause):
    with pytest.raises(CheckFailed) as e:
        nb10.check_allreduce_seconds(fn)
    assert str(e.value).startswith("✗") and cause in str(e.value)
