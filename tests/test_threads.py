"""Thread counts: results do not depend on them; settings are per call or per thread."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastembed as fe
from util import BACKENDS, COMPILED, LOOKUPS


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_result_does_not_depend_on_thread_count(lookup, backend):
    rng = np.random.default_rng(0)
    V, r, d = 2000, 32, 96
    ids = rng.integers(0, V, (8, 300))
    tables = lookup.tables(rng, V, r, d, np.float32)
    kw = dict(
        scale=2.0,
        bias=rng.standard_normal(d).astype(np.float32),
        pos_table=rng.standard_normal((300, d)).astype(np.float32),
    )
    results = [lookup.call(ids, tables, backend=backend, n_threads=n, **kw) for n in (1, 2, 3, 4)]
    for other in results[1:]:
        if lookup.factorized:
            # the projection is one BLAS call, whose summation order follows its thread count
            np.testing.assert_allclose(other, results[0], rtol=1e-5, atol=1e-5 * np.abs(results[0]).max())
        else:
            np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_kernels_are_exact_whatever_the_thread_count(backend):
    from fastembed import backends

    k = backends.kernels(backend)
    rng = np.random.default_rng(1)
    src = rng.standard_normal((500, 64)).astype(np.float32)
    rows = rng.integers(0, 500, 5000)
    pos = rng.standard_normal((50, 64)).astype(np.float32)
    pos_rows = rng.integers(0, 50, 5000)
    outs = []
    for n in (1, 2, 3, 8):
        out = np.empty((5000, 64), np.float32)
        k.gather_rows(src, rows, 0.7, None, pos, pos_rows, out, n)
        outs.append(out)
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])


def test_precedence_call_then_block_then_default():
    default = fe.get_num_threads()
    fe.set_num_threads(3)
    try:
        assert fe.get_num_threads() == 3
        with fe.num_threads(1):
            assert fe.get_num_threads() == 1
            from fastembed._threads import resolve

            assert resolve(2) == 2
        assert fe.get_num_threads() == 3
    finally:
        fe.set_num_threads(None)
    assert fe.get_num_threads() == default


def test_num_threads_block_is_local_to_its_thread():
    seen = {}
    inside = threading.Event()
    leave = threading.Event()

    def worker():
        with fe.num_threads(1):
            inside.set()
            leave.wait(5)
            seen["worker"] = fe.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    seen["main"] = fe.get_num_threads()
    leave.set()
    t.join()
    assert seen["worker"] == 1
    assert seen["main"] == fe.get_num_threads() != 1 or fe._threads.available_cores() == 1


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_thread_counts(bad, exc):
    with pytest.raises(exc):
        fe.factorized_lookup([0], np.ones((1, 1)), np.ones((1, 1)), n_threads=bad)
    with pytest.raises(exc):
        fe.set_num_threads(bad)


def test_small_passes_use_the_pool_only_while_calls_come_back_to_back(monkeypatch):
    """A pass too small to pay for waking an idle worker runs on one thread, unless an OpenMP kernel
    ended moments ago (its workers are still spinning); large passes always get the threads."""
    from fastembed import _threads

    clock = [100.0]
    monkeypatch.setattr(_threads.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(_threads, "WARM_POOL_SECONDS", 30e-6)
    small = 4 * _threads.MIN_ELEMENTS_PER_THREAD_WARM
    big = 4 * _threads.MIN_ELEMENTS_PER_THREAD
    monkeypatch.setattr(_threads, "_last_openmp_kernel_end", float("-inf"))
    assert _threads.for_work(4, small, openmp=True) == 1
    assert _threads.for_work(4, big, openmp=True) == 4
    _threads.note_openmp_kernel_end()
    clock[0] += 10e-6
    assert _threads.for_work(4, small, openmp=True) == 4
    assert _threads.for_work(4, small) == 1  # not an OpenMP pool (Numba's keeps its own policy)
    clock[0] += 1e-3
    assert _threads.for_work(4, small, openmp=True) == 1
    assert _threads.for_flops(4, 10 * _threads.MIN_FLOPS_PER_THREAD, openmp=True) == 1  # idle pool
    assert _threads.for_flops(4, 4 * _threads.MIN_FLOPS_PER_THREAD_COLD, openmp=True) == 4
    _threads.note_openmp_kernel_end()
    assert _threads.for_flops(4, 10 * _threads.MIN_FLOPS_PER_THREAD, openmp=True) == 4  # warm pool
    assert _threads.for_flops(4, 2 * _threads.MIN_FLOPS_PER_THREAD_WARM, openmp=True) == 2
    assert _threads.for_flops(4, 2 * _threads.MIN_FLOPS_PER_THREAD_WARM) == 1  # Numba's pool: its own threshold
    assert _threads.for_flops(4, 2 * _threads.MIN_FLOPS_PER_THREAD) == 2
    assert _threads.for_flops(4, _threads.MIN_FLOPS_PER_THREAD_WARM, openmp=True) == 1


@pytest.mark.parametrize("count", [1, 2, 3, 0, -4])
@pytest.mark.parametrize("path", ["project_call", "gather_call"])
def test_latency_paths_take_a_thread_count_given_as_an_int(path, count):
    """A latency kernel's threads_for given as an int is the count itself (at least 1): the bits
    of a call whose policy gave two threads, on one thread without a parallel region as on a team."""
    from fastembed import backends

    k = backends.kernels("cython") if "cython" in COMPILED else None
    if k is None or (path == "project_call" and k.simd_width < 256):
        pytest.skip("the latency paths are the Cython kernels' (project_call runs the SIMD tiles)")
    rng = np.random.default_rng(9)
    table, proj = rng.standard_normal((40, 24)).astype(np.float32), rng.standard_normal((24, 70)).astype(np.float32)
    pos = rng.standard_normal((20, 70 if path == "project_call" else 24)).astype(np.float32)
    ids = rng.integers(0, 40, (3, 17))

    def call(threads):
        if path == "project_call":
            return k.project.project_call(ids, table, proj, 0.5, pos, None, k.simd_width, 2.0**31, threads, None, 2)
        return k.rows.gather_call(ids, table, 0.5, pos, None, 2.0**31, threads, None, 2)

    expected = call(lambda work: 2)
    assert expected is not None
    np.testing.assert_array_equal(call(count), expected)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity API")
def test_no_thread_is_left_pinned_by_the_unstacking():
    """Kernels may move an OpenMP worker off the caller's CPU (kernels/_common.pxi), but every
    thread of the process keeps the affinity the process had."""
    import time
    from pathlib import Path

    allowed = os.sched_getaffinity(0)
    rng = np.random.default_rng(0)
    E, P = rng.standard_normal((3000, 64)).astype(np.float32), rng.standard_normal((64, 256)).astype(np.float32)
    ids = rng.integers(0, 3000, (4, 256))
    for i in range(40):
        if i % 4 == 0:
            time.sleep(0.003)  # idle CPUs: the pattern after which workers were found stacked
        fe.factorized_lookup(ids, E, P, n_threads=2)
        fe.lookup(ids, E, n_threads=2)
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        assert os.sched_getaffinity(int(task.name)) == allowed, task.name


def test_beside_torch_two_openmp_runtimes_neither_crash_nor_oversubscribe(tmp_path):
    """torch (with its own OpenMP runtime) imported first, then fastembed: both compute right, no
    pool is larger than the cores, and fastembed leaves torch's thread setting alone."""
    pytest.importorskip("torch")
    code = textwrap.dedent(
        """
        import torch
        torch.set_num_threads(2)
        import numpy as np, fastembed as fe
        from threadpoolctl import threadpool_info
        from fastembed._threads import available_cores
        rng = np.random.default_rng(0)
        E, P = rng.standard_normal((5000, 64)).astype(np.float32), rng.standard_normal((64, 256)).astype(np.float32)
        ids = rng.integers(0, 5000, (16, 512))
        for _ in range(3):
            got = fe.factorized_lookup(ids, E, P, n_threads=2)
            fe.apply_rope(np.ones((4, 512, 64), np.float32), n_threads=2)
            t = torch.from_numpy(E[ids]) @ torch.from_numpy(P)
        assert np.allclose(got, t.numpy(), atol=1e-4)
        assert torch.get_num_threads() == 2
        pools = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
        assert all(n <= max(available_cores(), 2) for _, n in pools), pools
        print("ok", sorted({api for api, _ in pools}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok"), result.stdout


def test_one_thread_calls_finish_where_blas_has_more_threads(tmp_path):
    """n_threads=1 where BLAS runs more threads: the BLAS limit is taken again inside a limited block
    (factorize limits BLAS, then its eigh limits it to one thread). With a non-reentrant lock that
    hung for good; in a child process with a timeout, so that a regression fails rather than hangs."""
    code = textwrap.dedent(
        """
        import numpy as np, fastembed as fe, fastembed._threads as threads
        threads._blas_threads = max(threads.blas_num_threads() or 1, 4)  # the limit applies on any machine
        rng = np.random.default_rng(0)
        W = rng.standard_normal((300, 24))
        for method in ("svd", "randomized"):
            fac = fe.factorize(W, 6, method=method, n_threads=1)
            assert fac.table.shape == (300, 6), fac.table.shape
        E, P = W[:, :8].astype(np.float32), W[:8, :16].astype(np.float32)
        for backend in fe.backends.available():
            got = fe.factorized_lookup([[3, 1, 4]], E, P, backend=backend, n_threads=1)
            assert np.allclose(got[0], E[[3, 1, 4]] @ P, atol=1e-5)
            fe.pooled_lookup([[3, 1], [4]], E, proj=P, backend=backend, n_threads=1)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok"), result.stdout


def test_multi_pass_kernels_are_exact_with_one_core_busy():
    """Kernels with several parallel loops in one region (the Gram pass's chunks, the fused kernel's
    packing then tiles, the pipelined projection and gather) give one thread's bits while another
    process takes a core and preempts a worker mid-loop: no loop may start on data that a late
    thread is still writing."""
    from fastembed import backends
    from fastembed.bench import one_core_busy

    if "cython" not in backends.available():
        pytest.skip("the Cython kernels' OpenMP regions")
    k = backends.kernels("cython")
    if not k.openmp or k.simd_width < 256:
        pytest.skip("needs the OpenMP build and the SIMD tiles")
    rng = np.random.default_rng(21)
    x = rng.standard_normal((30000, 48)).astype(np.float32)
    table = rng.standard_normal((500, 64)).astype(np.float32)
    rows = rng.integers(0, 500, 6000)
    projs = [rng.standard_normal((64, 200)).astype(np.float32) for _ in range(2)]  # a stale strip shows
    uniq, remap = np.unique(rows, return_inverse=True)  # the pipeline reads rows another thread projects
    expected_gram = np.zeros((48, 48))
    k.gram_rows(x, expected_gram, None, k.simd_width, 1)
    expected = []
    for proj in projs:  # 6000 rows: proj is packed into strips first
        expected.append(np.empty((6000, 200), np.float32))
        k.project.project_rows(table, rows, proj, 1.0, None, None, None, expected[-1], 0.0, k.simd_width, 1)
    with one_core_busy():
        for i in range(40):
            gram = np.zeros((48, 48))
            k.gram_rows(x, gram, None, k.simd_width, 8)
            np.testing.assert_array_equal(gram, expected_gram)
            out = np.empty_like(expected[0])
            time.sleep(0.002)  # the pool's worker goes to sleep: it starts late in the next region
            k.project.project_rows(table, rows, projs[i % 2], 1.0, None, None, None, out, 0.0, k.simd_width, 8)
            np.testing.assert_array_equal(out, expected[i % 2])
            projected = np.empty((len(uniq), 200), np.float32)
            k.project.project_gather(
                table, uniq, remap, projs[i % 2], 1.0, None, None, None, projected, out, k.simd_width, 8
            )
            np.testing.assert_array_equal(out, expected[i % 2])
