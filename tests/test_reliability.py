"""Concurrency, big inputs, memory, and the install-level guarantees (light import, Numba cache fallback)."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastembed as fe
from util import BACKENDS, COMPILED

# Subprocesses run in tmp_path: started in the repository root, ``python -c`` would import the
# source tree's fastembed/ (no compiled kernels) instead of the installed package.

# ---------------------------------------------------------------- concurrency


def _workload(seed):
    rng = np.random.default_rng(seed)
    V, r, d = 300 + seed, 8, 24 + seed % 5
    E = rng.standard_normal((V, r)).astype(np.float32)
    P = rng.standard_normal((r, d)).astype(np.float32)
    pos = rng.standard_normal((700, d)).astype(np.float32)
    ids = rng.integers(0, V, (4, 600 + seed))
    return ids, E, P, pos


def _run_all(backend, seed, n_threads):
    ids, E, P, pos = _workload(seed)
    return (
        fe.factorized_lookup(ids, E, P, pos_table=pos, scale=2.0, backend=backend, n_threads=n_threads),
        fe.lookup(ids, E @ P, pos_table=pos, backend=backend, n_threads=n_threads),
        fe.sinusoidal(500 + seed, 16, cache=False, backend=backend, n_threads=n_threads),
        fe.apply_rope(pos[None, : 100 + seed, :16], backend=backend, n_threads=n_threads),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_threads_at_once_match_serial(backend):
    seeds = list(range(12))
    serial = {s: _run_all(backend, s, 2) for s in seeds}
    results, errors = {}, []
    start = threading.Barrier(len(seeds))

    def worker(seed):
        try:
            start.wait()
            for _ in range(5):
                results[seed] = _run_all(backend, seed, 2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for s in seeds:
        for got, want in zip(results[s], serial[s], strict=True):
            np.testing.assert_array_equal(got, want)


NUMBA_LAYER_SCRIPT = r"""
import threading, numpy as np, fastembed as fe
rng = np.random.default_rng(0)
E, P = rng.standard_normal((500, 8)).astype(np.float32), rng.standard_normal((8, 32)).astype(np.float32)
ids = rng.integers(0, 500, (8, 2000))
want = fe.factorized_lookup(ids, E, P, backend="numba")
errors = []
def work():
    try:
        for _ in range(20):
            np.testing.assert_allclose(fe.factorized_lookup(ids, E, P, backend="numba"), want, rtol=1e-6)
    except BaseException as exc:
        errors.append(exc)
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]; [t.join() for t in threads]
import numba
print("layer", numba.threading_layer(), "errors", len(errors))
assert not errors, errors
"""


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not available")
@pytest.mark.parametrize("layer", ["default", "workqueue", "omp"])
def test_numba_threading_layers_survive_concurrent_entry(layer, tmp_path):
    """workqueue aborts the process on concurrent parallel entry unless entry is serialised."""
    env = dict(os.environ)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run(
        [sys.executable, "-c", NUMBA_LAYER_SCRIPT], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    if layer == "omp" and "No threading layer could be loaded" in proc.stderr:
        pytest.skip("the omp layer is not available here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "errors 0" in proc.stdout


@pytest.mark.parametrize("backend", COMPILED)
def test_kernels_are_reentrant_with_distinct_thread_counts(backend):
    """Per-call thread counts in concurrent threads do not leak into each other."""
    out = {}

    def work(n):
        with fe.num_threads(n):
            out[n] = (fe.get_num_threads(), _run_all(backend, 3, None)[1])

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {n: v[0] for n, v in out.items()} == {1: 1, 2: 2, 3: 3, 4: 4}
    for n in (2, 3, 4):
        np.testing.assert_array_equal(out[n][1], out[1][1])


# ---------------------------------------------------------------- big inputs


@pytest.mark.parametrize("backend", COMPILED)
def test_output_of_more_than_2_31_elements(backend):
    """Index arithmetic in 64 bits: rows past element 2**31 land where they belong (8.6 GB of float32)."""
    n, d = 2**21, 1025
    assert n * d > 2**31
    table = np.arange(4 * d, dtype=np.float32).reshape(4, d)
    ids = (np.arange(n, dtype=np.int64) * 7) % 4
    out = fe.lookup(ids, table, backend=backend)
    for row in (0, 1, n // 2, n - 2, n - 1):
        np.testing.assert_array_equal(out[row], table[ids[row]])
    assert out[-1, -1] == table[ids[-1], -1]
    del out


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_ids_and_a_table_larger_than_the_cache(backend):
    rng = np.random.default_rng(0)
    E = rng.standard_normal((400_000, 16)).astype(np.float32)  # 25 MB: past L2/L3
    P = rng.standard_normal((16, 8)).astype(np.float32)
    base = rng.integers(0, 400_000, (6, 3000))
    ids = base[::2, ::3]
    got = fe.factorized_lookup(ids, E, P, backend=backend)
    np.testing.assert_allclose(got, E[ids] @ P, rtol=1e-5, atol=1e-5)


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_does_not_grow_over_10000_calls(backend):
    rng = np.random.default_rng(1)
    E, P = rng.standard_normal((1000, 8)).astype(np.float32), rng.standard_normal((8, 32)).astype(np.float32)
    pos = rng.standard_normal((64, 32)).astype(np.float32)
    ids = rng.integers(0, 1000, (2, 64))
    out = np.empty((2, 64, 32), np.float32)
    for _ in range(200):  # warm: JIT, caches, workspaces
        fe.factorized_lookup(ids, E, P, pos_table=pos, out=out, backend=backend)
        fe.lookup(ids, E, backend=backend)
    before = _rss_bytes()
    for _ in range(10_000):
        fe.factorized_lookup(ids, E, P, pos_table=pos, out=out, backend=backend)
        fe.lookup(ids, E, backend=backend)
    grown = _rss_bytes() - before
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 calls"


@pytest.mark.parametrize("backend", BACKENDS)
def test_unallocatable_output_is_a_memory_error(backend):
    wide = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(3, 2**40), strides=(0, 0))
    with pytest.raises(MemoryError):
        fe.lookup([0, 1, 2], wide, backend=backend)


# ---------------------------------------------------------------- install-level


def test_import_is_light(tmp_path):
    heavy = "('torch', 'numba', 'dask', 'transformers')"
    code = f"import sys, fastembed; print(sorted(m for m in {heavy} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_numba_cache_falls_back_when_no_cache_can_be_written(monkeypatch):
    numba = pytest.importorskip("numba")
    from fastembed._kernels import _numba_jit

    real = numba.njit
    calls = []

    def njit(*args, cache=False, **kw):
        calls.append(cache)
        if cache:
            raise RuntimeError("cannot cache function 'f': no locator available for file '/ro/x.py'")
        return real(*args, **kw)

    monkeypatch.setattr(_numba_jit.nb, "njit", njit)

    @_numba_jit.jit()
    def double(x):
        return 2 * x

    assert double(21) == 42
    assert calls == [True, False]


def test_numba_honours_numba_cache_dir(tmp_path):
    pytest.importorskip("numba")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = "import numpy as np, fastembed as fe; fe.lookup([0, 1], np.ones((2, 3)), backend='numba')"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path) for name in files)


def test_info_reports_openmp_and_backends():
    from fastembed.__main__ import info

    text = "\n".join(info())
    assert "backends available" in text and "OpenMP" in text and "BLAS" in text
    assert "exact factorize eigensolver: " in text


def test_torch_tensors_are_accepted_and_numpy_is_returned():
    torch = pytest.importorskip("torch")
    E, P = torch.randn(50, 4), torch.randn(4, 6)
    ids = torch.randint(0, 50, (2, 7))
    out = fe.factorized_lookup(ids, E, P)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, (E[ids] @ P).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_warm_up_then_call(backend):
    fe.backends.warm_up(backend)
    out = fe.factorized_lookup([[1, 2]], np.ones((3, 2), np.float32), np.ones((2, 4), np.float32), backend=backend)
    np.testing.assert_array_equal(out, 2.0)
    with pytest.raises(ValueError):
        fe.backends.warm_up("gpu")


def test_no_input_makes_fastembed_import_torch(tmp_path):
    code = (
        "import sys, numpy as np, fastembed as fe\n"
        "E = np.ones((4, 3), np.float32)\n"
        "fe.lookup([0, 1], fe.quantize_rows(E)); fe.lookup([0], E.astype(np.float16))\n"
        "fe.factorized_lookup([0], fe.quantize_rows(E), np.ones((3, 2), np.float32))\n"
        "fe.FactorizedEmbedding(E, np.ones((3, 2), np.float32)).quantize('int8')([0])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
