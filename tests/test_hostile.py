"""Hostile use: aliasing between any input and ``out``, absurd thread counts, racing threads,
fork after threads ran, Ctrl-C, re-entrant calls, extreme magnitudes and resource blow-ups.
Each test keeps one finding of the reliability review as a regression test; the property
tests search the same space systematically. Anything that could crash the interpreter runs in
a subprocess, so a regression fails the test instead of killing the run."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastembed as fe
from fastembed import _pipeline, _threads, _workspace, reference
from util import BACKENDS, COMPILED, assert_matches_reference, run_against_a_vandal, run_python

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLANS = [None, "dedupe", "direct", "fused"]


# ---------------------------------------------------------------- one overlap rule


def _overlapping(shape_a, dtype_a, shape_b, dtype_b, shift, step=1):
    """Two arrays over one buffer, ``b`` starting ``shift`` bytes into ``a`` (so they overlap),
    ``b`` taking every ``step``-th element (a strided layout) and reversed when step < 0."""
    bytes_a = int(np.prod(shape_a)) * np.dtype(dtype_a).itemsize
    bytes_b = int(np.prod(shape_b)) * np.dtype(dtype_b).itemsize * abs(step)
    raw = np.zeros(bytes_a + bytes_b + 64, np.uint8)
    start = shift % max(bytes_a, 1) // 8 * 8
    a = raw[:bytes_a].view(dtype_a).reshape(shape_a)
    b = raw[start : start + bytes_b].view(dtype_b)[::step].reshape(shape_b)
    return raw, a, b


ALIASED = ["ids", "position_ids", "table", "proj", "bias", "pos_table", "codes", "scale", "offset"]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    target=st.sampled_from(ALIASED),
    shift=st.integers(0, 4096),
    step=st.sampled_from([1, 2, -1, -3]),
    n=st.integers(1, 40),
    seed=st.integers(0, 99),
)
def test_out_overlapping_any_input_is_refused_and_nothing_is_written(backend, plan, target, shift, step, n, seed):
    if plan is not None and backend == "numpy":
        return
    rng = np.random.default_rng(seed)
    V, r, d, n_pos = 7, 3, 5, n + 2
    quantized = target in ("codes", "scale", "offset")
    dtype = np.float32
    arrays = {
        "ids": ((1, n), np.int64),
        "position_ids": ((1, n), np.int64),
        "table": ((V, r), dtype),
        "proj": ((r, d), dtype),
        "bias": ((d,), dtype),
        "pos_table": ((n_pos, d), dtype),
        "codes": ((V, r), np.int8),
        "scale": ((V,), np.float32),
        "offset": ((V,), np.float32),
    }
    raw, out, victim = _overlapping((1, n, d), dtype, *arrays[target], shift, step)
    assume(np.shares_memory(out, victim))  # a strided view can step past the end of out
    values = {
        "ids": rng.integers(0, V, (1, n)),
        "position_ids": rng.integers(0, n_pos, (1, n)),
        "table": rng.standard_normal((V, r)),
        "proj": rng.standard_normal((r, d)),
        "bias": rng.standard_normal(d),
        "pos_table": rng.standard_normal((n_pos, d)),
        "codes": rng.integers(-128, 128, (V, r)),
        "scale": rng.random(V),
        "offset": rng.random(V),
    }
    victim[...] = values[target]
    args = {name: (victim if name == target else values[name].astype(arrays[name][1])) for name in arrays}
    table = fe.QuantizedRows(args["codes"], args["scale"], args["offset"]) if quantized else args["table"]
    if quantized and not any(np.shares_memory(victim, getattr(table, f)) for f in ("codes", "scale", "offset")):
        return  # QuantizedRows keeps contiguous copies of strided arrays: nothing is aliased then
    kw = dict(bias=args["bias"], pos_table=args["pos_table"], position_ids=args["position_ids"], out=out)
    before = raw.copy()
    with pytest.raises(ValueError, match="out overlaps"):
        fe.factorized_lookup(args["ids"], table, args["proj"], backend=backend, plan=plan, **kw)
    np.testing.assert_array_equal(raw, before)


def test_position_ids_aliasing_out_is_refused_for_the_fused_plan():
    # the fused plan read position ids the kernel was overwriting (a segfault before)
    raw = np.zeros(4096 * 8, np.uint8)
    out = raw.view(np.float32)[: 64 * 8].reshape(1, 64, 8)
    position_ids = raw.view(np.int64)[:64].reshape(1, 64)
    E, P, pos = np.ones((10, 4), np.float32), np.ones((4, 8), np.float32), np.ones((64, 8), np.float32)
    for backend in COMPILED:
        with pytest.raises(ValueError, match="out overlaps position_ids"):
            fe.factorized_lookup(
                np.zeros((1, 64), np.int64),
                E,
                P,
                pos_table=pos,
                position_ids=position_ids,
                out=out,
                plan="fused",
                backend=backend,
            )


@pytest.mark.parametrize("backend", BACKENDS)
def test_sinusoidal_out_sharing_the_positions_is_refused(backend):
    raw = np.zeros((3 << 20) * 8, np.uint8)
    positions = raw.view(np.int64)[: 3 << 20]
    positions[:] = np.arange(3 << 20)
    out = raw.view(np.float32)[: (3 << 20) * 2].reshape(3 << 20, 2)
    with pytest.raises(ValueError, match="out overlaps positions"):
        fe.sinusoidal(positions, 2, out=out, backend=backend)
    np.testing.assert_array_equal(positions, np.arange(3 << 20))


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_rope_out_may_be_x_but_no_other_view_of_it(backend):
    x = np.random.default_rng(0).standard_normal((2, 6, 8))
    expected = fe.apply_rope(x, backend=backend)
    with pytest.raises(ValueError, match="out overlaps x"):
        fe.apply_rope(x, out=x[:, :, ::-1], backend=backend)
    with pytest.raises(ValueError, match="out overlaps positions"):
        raw = np.zeros(2 * 6 * 8, np.float64)
        fe.apply_rope(x, positions=raw.view(np.int64)[:6], out=raw.reshape(2, 6, 8), backend=backend)
    assert fe.apply_rope(x, out=x, backend=backend) is x
    np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- threads


def _os_threads():
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_threads", [10**5, 20_000, 2**31 - 1])
def test_absurd_thread_counts_are_clamped_to_the_cores(backend, n_threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8)).astype(np.float32)
    E, P = rng.standard_normal((50, 8)).astype(np.float32), rng.standard_normal((8, 16)).astype(np.float32)
    ids = rng.integers(0, 50, (4, 700))
    W = rng.standard_normal((200, 16))
    before = _os_threads()
    results = [
        fe.apply_rope(x, backend=backend, n_threads=n_threads),
        fe.factorized_lookup(ids, E, P, backend=backend, n_threads=n_threads),
        fe.lookup(ids, E, backend=backend, n_threads=n_threads),
        fe.sinusoidal(5000, 8, cache=False, backend=backend, n_threads=n_threads),
        fe.factorize(W, rank=4, n_threads=n_threads).table,
    ]
    with fe.num_threads(n_threads):
        results.append(fe.factorized_lookup(ids, E, P, backend=backend))
    np.testing.assert_array_equal(results[1], results[-1])
    if before:
        assert _os_threads() <= max(before, 1) + _threads.available_cores() + 2


def test_absurd_thread_count_from_the_environment_runs(tmp_path):
    code = """
    import numpy as np, fastembed as fe
    fe.set_num_threads(10**5)
    x = fe.apply_rope(np.ones((1, 4, 8)))
    f = fe.factorize(np.random.default_rng(0).standard_normal((100, 8)), rank=2)
    print("ok", fe.get_num_threads(), fe._threads.resolve(None))
    """
    rc, out, err = run_python(code, tmp_path, env={"FASTEMBED_NUM_THREADS": "100000"})
    assert rc == 0, err
    assert out.split()[:2] == ["ok", "100000"] and int(out.split()[2]) == _threads.available_cores()


def test_a_bad_thread_count_in_the_environment_names_the_variable(tmp_path):
    code = "import fastembed as fe; fe.get_num_threads()"
    rc, _, err = run_python(code, tmp_path, env={"FASTEMBED_NUM_THREADS": "abc"})
    assert rc != 0 and "FASTEMBED_NUM_THREADS must be a whole number >= 1, got 'abc'" in err


@pytest.mark.parametrize("start", ["fork", "os.fork"])
@pytest.mark.parametrize("backend", COMPILED)
def test_a_child_forked_after_threads_ran_computes_serially(backend, start, tmp_path):
    code = f"""
    import multiprocessing as mp, os, numpy as np, fastembed as fe
    rng = np.random.default_rng(0)
    E = rng.standard_normal((1000, 64)).astype(np.float32); P = rng.standard_normal((64, 256)).astype(np.float32)
    ids = rng.integers(0, 1000, (64, 512))
    expected = fe.factorized_lookup(ids, E, P, backend="{backend}", n_threads=2)   # the pool runs here
    fe.apply_rope(np.ones((4, 512, 64)), backend="{backend}", n_threads=2)
    wordpiece = fe.WordPiece.from_tokens(["[UNK]", "a", "##b", "c"])
    texts = ["ab c, abb " * 50] * 2000
    tokens = wordpiece.encode_batch(texts, n_threads=2)[0]

    def work(plan):
        got = fe.factorized_lookup(ids, E, P, backend="{backend}", plan=plan)
        rope = fe.apply_rope(np.ones((4, 512, 64)), backend="{backend}")
        same = np.array_equal(wordpiece.encode_batch(texts)[0], tokens)
        return float(np.abs(got - expected).max()) if same else 1.0, fe._threads.serial_reason() is not None

    if "{start}" == "fork":
        with mp.get_context("fork").Pool(2) as pool:
            print(pool.map(work, [None, "dedupe", "direct", "fused"]))
    else:
        pid = os.fork()
        if pid == 0:
            print([work(None)], flush=True)
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
    print("parent", fe._threads.serial_reason())
    """
    rc, out, err = run_python(code, tmp_path, timeout=300)
    assert rc == 0, err
    results = eval(out.splitlines()[0])  # noqa: S307 - our own child's repr of a list of tuples
    assert all(diff < 1e-3 and serial for diff, serial in results), results
    assert out.splitlines()[1] == "parent None"


def test_info_says_why_a_forked_child_runs_serially(tmp_path):
    code = """
    import os, numpy as np, fastembed as fe, fastembed.__main__ as cli
    fe.factorized_lookup(np.zeros((8, 4096), np.int64), np.ones((3, 64), np.float32),
                         np.ones((64, 512), np.float32), n_threads=2)
    fe._threads.note_pool_start()
    pid = os.fork()
    if pid == 0:
        print(cli.info(), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    """
    rc, out, err = run_python(code, tmp_path)
    assert rc == 0, err
    assert "serial kernels: this process was forked" in out


@pytest.mark.parametrize("backend", COMPILED)
def test_another_thread_rewriting_the_ids_never_crashes(backend, tmp_path):
    setup = """
    import numpy as np, fastembed as fe
    rng = np.random.default_rng(0)
    V = 500
    E = rng.standard_normal((V, 32)).astype(np.float32); P = rng.standard_normal((32, 96)).astype(np.float32)
    pos = rng.standard_normal((4096, 96)).astype(np.float32)
    ids = rng.integers(0, V, (8, 512)); position_ids = rng.integers(0, 4096, (8, 512))
    good_ids, good_pos = ids.copy(), position_ids.copy()
    bad = np.int64(2**40)
    """
    rewrite = """
    ids.flat[::7] = bad; position_ids.flat[::5] = -bad
    ids[...] = good_ids; position_ids[...] = good_pos
    """
    call = f"""
    kw = dict(pos_table=pos, position_ids=position_ids, plan={PLANS}[i % 4], backend="{backend}")
    fe.factorized_lookup(ids, E, P, **kw)
    fe.lookup(ids, E, pos_table=pos[:, :32], position_ids=position_ids, backend="{backend}")
    """
    rc, out, err = run_against_a_vandal(tmp_path, setup, rewrite, call)
    assert rc == 0, err  # a segfault is rc -11
    assert "'ok'" in out


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("case", ["fused", "dense", "pooled", "wordpiece"])
@pytest.mark.parametrize("backend", COMPILED)
def test_ctrl_c_interrupts_a_long_kernel_call_inside_it(backend, case, tmp_path):
    if case == "wordpiece" and backend != "cython":
        pytest.skip("the tokenizer kernel is Cython only")
    # the call would run for minutes; the interrupt must surface from inside fastembed's call
    code = f"""
    import os, signal, sys, threading, traceback, numpy as np, fastembed as fe
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a parent started in the background ignores SIGINT
    rng = np.random.default_rng(0)
    if "{case}" == "fused":
        E = rng.standard_normal((64, 2048)).astype(np.float32); P = rng.standard_normal((2048, 1024)).astype(np.float32)
        ids = rng.integers(0, 64, 1 << 18)
        call = lambda: fe.factorized_lookup(ids, E, P, plan="fused", backend="{backend}")
        warm = lambda: fe.factorized_lookup(ids[:8], E, P, plan="fused", backend="{backend}")
    elif "{case}" == "dense":
        E = rng.standard_normal((64, 4096)).astype(np.float32)
        ids = np.broadcast_to(rng.integers(0, 64, 1 << 12), (16, 1 << 12))
        out = np.empty(ids.shape + (4096,), np.float32)
        call = lambda: [fe.lookup(ids, E, out=out, backend="{backend}") for _ in range(1000)]
        warm = lambda: fe.lookup(ids[:1, :8], E, backend="{backend}")
    elif "{case}" == "pooled":
        E = rng.standard_normal((64, 2048)).astype(np.float32)
        ids = rng.integers(0, 64, 1 << 24).astype(np.int32)
        offsets = np.linspace(0, ids.size, 1025).astype(np.int64)
        call = lambda: [fe.pooled_lookup(ids, E, offsets=offsets, backend="{backend}") for _ in range(100)]
        warm = lambda: fe.pooled_lookup(ids[:8], E, offsets=np.array([0, 8]), backend="{backend}")
    else:
        words = ["alpha", "Beta,", "gamma!", "Δέλτα", "中文", "epsilon"] * 20
        texts = [" ".join(words[i % 7 :]) for i in range(20000)]  # ~17 MB
        wordpiece = fe.WordPiece.from_tokens(["[UNK]", "alpha", "beta", ",", "gamma", "!", "##a"])
        call = lambda: [wordpiece.encode_batch(texts) for _ in range(1000)]
        warm = lambda: wordpiece.encode_batch(texts[:2])
    warm()  # compiled first, so that the interrupt lands in the kernel calls, not in Numba's compiler
    threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    try:
        call()
        print("finished")
    except KeyboardInterrupt:
        frames = [f.filename for f in traceback.extract_tb(sys.exc_info()[2])]
        print("interrupted in", "fastembed" if any("fastembed" in f for f in frames[1:]) else frames)
    """
    rc, out, err = run_python(code, tmp_path, timeout=120)
    assert rc == 0, err
    assert out.strip() == "interrupted in fastembed", out


# ---------------------------------------------------------------- re-entrancy and scratch


@pytest.mark.parametrize("backend", COMPILED)
def test_a_nested_call_on_the_same_thread_keeps_the_outer_scratch(backend, monkeypatch):
    # a signal handler or callback calling fastembed between two kernels of an outer call
    rng = np.random.default_rng(1)
    E, P = rng.standard_normal((300, 128)), rng.standard_normal((128, 24))
    ids = rng.integers(0, 40, (8, 200))  # repeats: the dedupe plan keeps uniq/remap in scratch
    E2, P2 = rng.standard_normal((900, 128)), rng.standard_normal((128, 24))
    ids2 = rng.integers(500, 530, (2, 300))  # fits the outer call's buffers: it would reuse them
    nested = []

    def after_a_nested_call(step):
        def call(*args, **kwargs):
            result = step(*args, **kwargs)  # the outer call's scratch is in use from here on
            if not nested:
                nested.append(None)
                nested[0] = fe.factorized_lookup(ids2, E2, P2, plan="dedupe", backend=backend)
            return result

        return call

    monkeypatch.setattr(_pipeline, "gather", after_a_nested_call(_pipeline.gather))
    monkeypatch.setattr(_pipeline, "distinct", after_a_nested_call(_pipeline.distinct))
    for plan in ("dedupe", "direct"):
        nested.clear()
        got = fe.factorized_lookup(ids, E, P, plan=plan, backend=backend)
        ref, mag = reference.factorized_lookup(ids, E, P), reference.factorized_lookup(ids, np.abs(E), np.abs(P))
        assert_matches_reference(got, ref, mag, np.float64)
        assert_matches_reference(nested[0], *_ref(ids2, E2, P2), np.float64)


def _ref(ids, E, P):
    return reference.factorized_lookup(ids, E, P), reference.factorized_lookup(ids, np.abs(E), np.abs(P))


@pytest.mark.parametrize("backend", COMPILED)
def test_one_huge_lookup_does_not_leave_its_scratch_resident(backend):
    rng = np.random.default_rng(0)
    V = 12_000_000  # the dedupe marker alone: 96 MB of int64
    E = np.zeros((V, 2), np.float32)
    P = np.ones((2, 4), np.float32)
    ids = np.concatenate([rng.integers(0, V, 200_000), np.zeros(200_000, np.int64)])
    fe.factorized_lookup(ids, E, P, plan="dedupe", backend=backend)
    kept = [
        b.nbytes for level in (_workspace._local.buffers, _workspace._local.markers) for d in level for b in d.values()
    ]
    assert max(kept) <= _workspace.KEEP_BYTES


def test_a_broadcast_ids_view_is_not_copied_before_the_output_is_known_to_fit():
    ids = np.broadcast_to(np.arange(5), (2 * 10**11, 5))  # 10**12 ids, 8 TB as a copy
    with pytest.raises(MemoryError):
        fe.lookup(ids, np.ones((5, 64), np.float32))
    bad = np.broadcast_to(np.array([0, 9]), (5 * 10**11, 2))  # a bad id is found without a pass over 10**12
    with pytest.raises(IndexError):
        fe.lookup(bad, np.ones((5, 64)), out=np.empty((1, 1, 64)))


# ---------------------------------------------------------------- scalars and subclasses


@pytest.mark.parametrize("backend", BACKENDS)
def test_offsets_near_2_63_are_index_errors(backend):
    x = np.ones((1, 4, 8))
    for offset in (np.int64(2**63 - 1), np.uint64(2**64 - 1), 2**63 - 1, 2**70):
        with pytest.raises(IndexError):
            fe.apply_rope(x, offset=offset, backend=backend)
        with pytest.raises(IndexError):
            fe.lookup([[0, 1]], np.ones((2, 3)), pos_table=np.ones((4, 3)), offset=offset, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_np_matrix_input_is_rotated_as_an_array(backend):
    m = np.matrix(np.random.default_rng(0).standard_normal((6, 8)))
    got = fe.apply_rope(m, backend=backend)
    assert type(got) is np.ndarray
    np.testing.assert_allclose(got, reference.rope(np.asarray(m), np.arange(6)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "scaling, message",
    [
        ({"rope_type": "linear", "factor": 0}, "factor must be > 0"),
        ({"rope_type": "linear", "factor": float("nan")}, "factor must be finite"),
        ({"rope_type": "linear", "factor": "2"}, "factor must be a real number"),
        ({"rope_type": "dynamic", "factor": 2.0, "max_position_embeddings": 0}, "max_position_embeddings must be"),
        ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": -1}, "must be > 0"),
        ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096, "beta_fast": -1}, "beta_fast"),
        (
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096, "attention_factor": 0},
            "attention",
        ),
        (
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 4.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            "high_freq_factor must be > 4.0",
        ),
    ],
)
def test_rope_scaling_parameters_are_validated(scaling, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fe.apply_rope(np.ones((1, 4, 16)), scaling=scaling)


@pytest.mark.parametrize("backend", BACKENDS)
def test_far_apart_rope_positions_table_only_the_positions_used(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2048, 16))
    positions = np.tile(np.arange(2048), (4, 1))
    positions[3, -1] = 10**11  # one far position: a table from 0 to 1e11 would be terabytes
    got = fe.apply_rope(x, positions=positions, backend=backend)
    np.testing.assert_allclose(got, reference.rope(x, positions), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- numerics at the edges of the range


@pytest.mark.parametrize("method", ["svd", "randomized"])
@pytest.mark.parametrize("magnitude", [1e20, 1e30, 1e-25, 1e-35])
@pytest.mark.parametrize("scale_into", ["table", "proj", "both"])
def test_factorize_works_at_any_finite_float32_magnitude(method, magnitude, scale_into):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 48)) + 0.05 * rng.standard_normal((400, 48))
    base = fe.factorize(W.astype(np.float32), rank=4, method=method, seed=0, scale_into=scale_into)
    fac = fe.factorize((W * magnitude).astype(np.float32), rank=4, method=method, seed=0, scale_into=scale_into)
    truth = (W * magnitude).astype(np.float32).astype(np.float64)
    err = np.linalg.norm(fac.to_dense().astype(np.float64) - truth) / np.linalg.norm(truth)
    assert np.isfinite(fac.table).all() and np.isfinite(fac.proj).all()
    assert err == pytest.approx(base.relative_error, rel=1e-3)
    assert fac.relative_error == pytest.approx(err, rel=1e-3)
    np.testing.assert_allclose(fac.singular_values / magnitude, base.singular_values, rtol=1e-3)
    if method == "svd":
        assert fac.report.optimal_relative_error == pytest.approx(base.report.optimal_relative_error, rel=1e-3)
        assert fac.report.optimal_relative_error > 0.01


def test_factorize_still_refuses_nan_and_inf():
    for bad in (np.nan, np.inf):
        W = np.ones((50, 8), np.float32)
        W[3, 2] = bad
        for method in ("svd", "randomized"):
            with pytest.raises(ValueError, match="NaN or inf"):
                fe.factorize(W, rank=2, method=method)


@pytest.mark.parametrize(
    "rows",
    [
        lambda rng: rng.standard_normal((40, 16)),
        lambda rng: 1e6 + 1e-3 * rng.standard_normal((40, 16)),  # large offset, tiny spread
        lambda rng: 1e30 * rng.standard_normal((40, 16)),  # float64 rows far beyond float16
        lambda rng: rng.standard_normal((40, 16)) + 1e4 * rng.integers(-5, 5, (40, 1)),
        lambda rng: np.full((3, 5), -7.25),
    ],
)
def test_quantize_rows_error_bound_holds_at_any_magnitude(rows):
    E = rows(np.random.default_rng(0))
    q = fe.quantize_rows(E)
    scale = q.scale.astype(np.float64)[:, None]
    exact = q.codes * scale + q.offset.astype(np.float64)[:, None]
    assert (np.abs(exact - E) <= scale / 2 * (1 + 1e-12)).all()
    bound = scale / 2 + 2.0**-24 * (np.abs(E) + 128 * scale)
    for got in (q.dequantize(), *(fe.lookup(np.arange(E.shape[0]), q, backend=b) for b in BACKENDS)):
        assert (np.abs(got.astype(np.float64) - E) <= bound * (1 + 1e-9)).all()


def test_quantize_rows_refuses_what_it_cannot_store():
    with pytest.raises(ValueError, match="float32"):
        fe.quantize_rows(np.full((2, 3), 1e39))
    with pytest.raises(TypeError, match="complex"):
        fe.quantize_rows(np.ones((2, 3), np.complex128))


# ---------------------------------------------------------------- compact tables everywhere


def test_compact_layers_convert_and_count():
    rng = np.random.default_rng(0)
    layer = fe.FactorizedEmbedding(
        rng.standard_normal((30, 4)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32)
    )
    for kind in ("int8", "float16", "bfloat16"):
        compact = layer.quantize(kind)
        assert compact.n_parameters() == layer.n_parameters()
        back = compact.astype_float32()
        assert back.quantization == "none" and back.table.dtype == np.float32
        ids = rng.integers(0, 30, (2, 5))
        np.testing.assert_allclose(back(ids), compact(ids), rtol=1e-6, atol=1e-6)
    dense = fe.Embedding(rng.standard_normal((30, 8)).astype(np.float16))
    assert dense.n_parameters() == 240


def test_dask_takes_the_compact_tables_the_local_api_takes():
    pytest.importorskip("dask.array")
    import fastembed.dask as fed

    rng = np.random.default_rng(0)
    E, P = rng.standard_normal((50, 6)).astype(np.float32), rng.standard_normal((6, 10)).astype(np.float32)
    ids = rng.integers(0, 50, (6, 9))
    for table in (fe.quantize_rows(E), E.astype(np.float16)):
        expected = fe.factorized_lookup(ids, table, P)
        got = fed.factorized_lookup(ids, table, P).compute(scheduler="sync")
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(fed.lookup(ids, table).compute(scheduler="sync"), fe.lookup(ids, table))


# ---------------------------------------------------------------- a first run that cannot mislead


def test_commands_refuse_to_run_from_a_source_tree_without_kernels(tmp_path):
    import shutil

    tree = tmp_path / "checkout"
    shutil.copytree(os.path.dirname(fe.__file__), tree / "fastembed", ignore=shutil.ignore_patterns("_kernels", "*.so"))
    (tree / "kernels").mkdir()
    (tree / "setup.py").write_text("")
    for command in (["-m", "fastembed", "--info"], ["-m", "fastembed", "demo"], ["-m", "fastembed.bench", "--quick"]):
        proc = subprocess.run([sys.executable, *command], cwd=tree, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "no compiled kernels" in proc.stderr and "pip install ." in proc.stderr


@pytest.mark.skipif("cython" not in COMPILED, reason="the streaming stores are the Cython kernels'")
def test_outputs_at_an_odd_byte_offset_are_written_without_streaming_stores():
    """A numpy view at an odd byte offset has no element on a line boundary: the kernels that stream
    large outputs write it with plain stores (a streaming store there faulted) and the same values."""
    from fastembed._kernels import _positional, _project, _rows

    rng = np.random.default_rng(4)
    table, proj = rng.standard_normal((100, 8)).astype(np.float32), rng.standard_normal((8, 64)).astype(np.float32)
    ids = rng.integers(0, 100, (3, 50))
    x = rng.standard_normal((2, 2, 50, 64)).astype(np.float32)

    def odd(shape):
        raw = np.zeros(int(np.prod(shape)) * 4 + 1, np.uint8)
        return np.frombuffer(raw.data, np.float32, int(np.prod(shape)), offset=1).reshape(shape)

    modules = (_rows, _project, _positional)
    previous = [m.stream_min_bytes() for m in modules]
    try:
        for m in modules:
            m.stream_min_bytes(0)
        for plan in ("direct", "dedupe", "fused"):
            out = odd((3, 50, 64))
            fe.factorized_lookup(ids, table, proj, out=out, plan=plan)
            np.testing.assert_allclose(out, fe.factorized_lookup(ids, table, proj, backend="numpy"), rtol=1e-5)
        out = odd((3, 50, 64))
        fe.lookup(ids, table @ proj, out=out)
        np.testing.assert_array_equal(out, (table @ proj)[ids])
        y = odd(x.shape)
        fe.apply_rope(x, out=y)
        np.testing.assert_array_equal(y, fe.apply_rope(x))
    finally:
        for m, value in zip(modules, previous, strict=True):
            m.stream_min_bytes(value)
