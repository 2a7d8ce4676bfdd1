"""Every backend of every lookup against the float64 reference, over dtypes,
shapes, memory layouts and options."""

import numpy as np
import pytest

from util import (
    BACKENDS,
    COMPILED,
    DTYPES,
    FUSED_VARIANTS,
    LOOKUPS,
    SIMD_WIDTHS,
    assert_matches_reference,
    latency_path_option_declines,
    latency_path_position_id_declines,
    layouts,
)

# (ids shape, V, r, d)
SHAPES = [
    ((0,), 5, 3, 4),
    ((2, 0), 5, 3, 4),
    ((1, 1), 1, 1, 1),
    ((), 7, 3, 5),
    ((3, 129), 50, 8, 33),
    ((2, 3, 17), 11, 4, 16),
    ((4, 64), 30522, 128, 768),
]


def _ids(rng, shape, V):
    return rng.integers(0, V, size=shape)


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_shapes_plain_and_with_every_term(lookup, backend, dtype, shape):
    ids_shape, V, r, d = shape
    rng = np.random.default_rng(0)
    ids = _ids(rng, ids_shape, V)
    tables = lookup.tables(rng, V, r, d, dtype)
    L = ids_shape[-1] if ids_shape else 1
    terms = dict(
        scale=np.sqrt(d),
        bias=rng.standard_normal(d).astype(dtype),
        pos_table=rng.standard_normal((L + 3, d)).astype(dtype),
        offset=2,
    )
    for kw in ({}, terms):
        result = lookup.call(ids, tables, backend=backend, **kw)
        assert_matches_reference(result, *lookup.expected(ids, tables, **kw), dtype)


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("table_layout", ["C", "F", "strided"])
@pytest.mark.parametrize("other_layout", ["C", "F", "strided"])
def test_memory_layouts(lookup, backend, dtype, table_layout, other_layout):
    rng = np.random.default_rng(1)
    V, r, d = 40, 6, 10
    ids = _ids(rng, (3, 20), V)
    tables = lookup.tables(rng, V, r, d, dtype)
    tables = (layouts(tables[0], table_layout),) + tuple(layouts(t, other_layout) for t in tables[1:])
    pos = layouts(rng.standard_normal((25, d)).astype(dtype), other_layout)
    kw = dict(scale=0.5, pos_table=pos, offset=1)
    result = lookup.call(ids, tables, backend=backend, **kw)
    assert_matches_reference(result, *lookup.expected(ids, tables, **kw), dtype)


ID_FORMS = {
    "int32": lambda ids: ids.astype(np.int32),
    "uint16": lambda ids: ids.astype(np.uint16),
    "uint64": lambda ids: ids.astype(np.uint64),
    "int8": lambda ids: ids.astype(np.int8),
    "list": lambda ids: ids.tolist(),
    "noncontiguous": lambda ids: np.repeat(ids, 2, axis=1)[:, ::2],
    "transposed": lambda ids: np.ascontiguousarray(ids.T).T,
    "readonly": lambda ids: np.lib.stride_tricks.as_strided(ids, writeable=False),
}


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", list(ID_FORMS))
def test_id_forms(lookup, backend, form):
    rng = np.random.default_rng(2)
    V, r, d = 100, 5, 9
    base = _ids(rng, (4, 13), V)
    ids = ID_FORMS[form](base)
    tables = lookup.tables(rng, V, r, d, np.float32)
    kw = dict(pos_table=rng.standard_normal((13, d)).astype(np.float32))
    result = lookup.call(ids, tables, backend=backend, **kw)
    assert_matches_reference(result, *lookup.expected(base, tables, **kw), np.float32)


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_table_index_edges(lookup, backend):
    """Ids at 0 and V-1 of a table taller than 2**16 rows, with int32 and int64 ids."""
    rng = np.random.default_rng(3)
    V, r, d = 70000, 2, 3
    tables = lookup.tables(rng, V, r, d, np.float64)
    for dtype in (np.int32, np.int64):
        ids = np.array([[0, V - 1, 65536, V - 1, 0]], dtype=dtype)
        result = lookup.call(ids, tables, backend=backend)
        assert_matches_reference(result, *lookup.expected(ids, tables), np.float64)


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "position_ids",
    [np.arange(7)[::-1], np.array([[0, 1, 2, 2, 1, 0, 3]]), np.array([[5], [0], [1]]), np.zeros((3, 7), np.int32)],
    ids=["reversed", "row", "column", "int32-zeros"],
)
def test_position_ids_broadcast(lookup, backend, position_ids):
    rng = np.random.default_rng(4)
    V, r, d = 30, 4, 6
    ids = _ids(rng, (3, 7), V)
    tables = lookup.tables(rng, V, r, d, np.float32)
    kw = dict(pos_table=rng.standard_normal((8, d)).astype(np.float32), position_ids=position_ids)
    result = lookup.call(ids, tables, backend=backend, **kw)
    assert_matches_reference(result, *lookup.expected(ids, tables, **kw), np.float32)


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("out_form", ["C", "noncontiguous"])
def test_out_is_written_and_returned(lookup, backend, out_form):
    rng = np.random.default_rng(5)
    V, r, d = 30, 4, 6
    ids = _ids(rng, (2, 5), V)
    tables = lookup.tables(rng, V, r, d, np.float64)
    out = np.full((2, 5, d), np.nan) if out_form == "C" else np.full((2, 5, 2 * d), np.nan)[..., ::2]
    kw = dict(bias=rng.standard_normal(d), scale=3.0)
    result = lookup.call(ids, tables, backend=backend, out=out, **kw)
    assert result is out
    assert_matches_reference(out, *lookup.expected(ids, tables, **kw), np.float64)


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_only_to_rows_that_use_it(lookup, backend):
    rng = np.random.default_rng(6)
    V, r, d = 10, 4, 5
    tables = lookup.tables(rng, V, r, d, np.float32)
    tables[0][3, 1] = np.nan
    ids = np.array([[3, 1, 2, 3, 0, 9] * 20])
    result = lookup.call(ids, tables, backend=backend)
    assert np.isnan(result[ids == 3]).any(axis=-1).all()
    assert not np.isnan(result[ids != 3]).any()


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("plan", ["dedupe", "direct", "fused"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("repeat", ["all-distinct", "few-distinct"])
def test_factorized_plans(backend, plan, dtype, repeat):
    """Every plan of the compiled pipeline, on ids with and without repeats."""
    rng = np.random.default_rng(7)
    V, r, d = 500, 16, 48
    lookup = LOOKUPS[0]
    tables = lookup.tables(rng, V, r, d, dtype)
    ids = rng.permutation(V)[:400].reshape(4, 100) if repeat == "all-distinct" else rng.integers(0, 9, (4, 100))
    kw = dict(
        scale=2.0, bias=rng.standard_normal(d).astype(dtype), pos_table=rng.standard_normal((100, d)).astype(dtype)
    )
    result = lookup.call(ids, tables, backend=backend, plan=plan, **kw)
    assert_matches_reference(result, *lookup.expected(ids, tables, **kw), dtype)


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
def test_backends_agree_with_each_other(lookup):
    rng = np.random.default_rng(8)
    V, r, d = 300, 12, 40
    ids = _ids(rng, (5, 31), V)
    tables = lookup.tables(rng, V, r, d, np.float64)
    kw = dict(scale=1.5, pos_table=rng.standard_normal((31, d)))
    results = [lookup.call(ids, tables, backend=b, **kw) for b in BACKENDS]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("backend", "simd"), FUSED_VARIANTS, ids=str)
@pytest.mark.parametrize("plan", ["dedupe", "direct", "fused"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_factorized_plans_on_awkward_shapes(backend, simd, plan, shape, monkeypatch):
    """Every plan, with each width of the fused kernel's micro-tiles and without them, over the awkward shapes."""
    from fastembed import backends

    monkeypatch.setattr(backends.kernels(backend), "simd_width", simd)
    ids_shape, V, r, d = shape
    rng = np.random.default_rng(11)
    lookup = LOOKUPS[0]
    ids = _ids(rng, ids_shape, V)
    for dtype in DTYPES:
        tables = lookup.tables(rng, V, r, d, dtype)
        L = ids_shape[-1] if ids_shape else 1
        kw = dict(scale=0.5, bias=rng.standard_normal(d).astype(dtype), pos_table=rng.standard_normal((L, d))[::-1])
        kw["pos_table"] = np.asfortranarray(kw["pos_table"].astype(dtype))  # column stride > 1
        result = lookup.call(ids, tables, backend=backend, plan=plan, **kw)
        assert_matches_reference(result, *lookup.expected(ids, tables, **kw), dtype)


def test_plan_choice_follows_the_cost_model():
    """Dedupe where the remap is cheap and skipping repeated rows can pay; fused where its SIMD
    tiles run; the BLAS direct plan otherwise."""
    from fastembed._pipeline import (
        DEDUPE_MAX_UNIQUE_FRACTION,
        FUSED_DEDUPE_MAX_UNIQUE_FRACTION,
        choose_plan,
        dedupe_limit,
    )

    albert, tiny = 2.0 * 128 * 768, 2.0 * 8 * 32
    assert choose_plan(16384, 30000) == "dedupe"
    assert choose_plan(128, 30000) == "direct"
    assert choose_plan(128, 30000, fused=True, token_flops=albert) == "fused"
    assert choose_plan(16384, 30000, fused=True, token_flops=albert) == "dedupe"
    assert choose_plan(16384, 30000, fused=True, token_flops=tiny) == "fused"  # projecting costs less than the remap
    assert choose_plan(600, 10**6, fused=True, token_flops=albert) == "fused"  # a table-sized marker costs too much
    assert dedupe_limit(albert, fused=False) == DEDUPE_MAX_UNIQUE_FRACTION
    assert dedupe_limit(albert, fused=True) == FUSED_DEDUPE_MAX_UNIQUE_FRACTION
    assert dedupe_limit(albert, fused=True) > dedupe_limit(2.0 * 32 * 128, fused=True) > dedupe_limit(tiny, fused=True)


@pytest.mark.skipif("cython" not in BACKENDS, reason="the Cython kernels are the default here")
def test_the_default_backend_does_not_import_the_others(tmp_path):
    """backend="auto" takes the first importable backend without importing the ones after it: the
    first call of a process must not pay Numba's ~0.2 s import (or its JIT) when Cython runs."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, fastembed as fe\n"
        "fe.factorized_lookup([[1, 2]], np.ones((5, 3), np.float32), np.ones((3, 4), np.float32))\n"
        "fe.lookup([[1, 2]], np.ones((5, 3), np.float32))\n"
        "fe.pooled_lookup([[1, 2]], np.ones((5, 3), np.float32))\n"
        "fe.apply_rope(np.ones((2, 4, 8), np.float32)); fe.sinusoidal(100, 8, cache=False)\n"
        "assert 'numba' not in sys.modules, 'numba was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=120)


@pytest.mark.skipif(256 not in SIMD_WIDTHS, reason="needs the AVX2 tiles")
def test_avx2_tiles_take_the_fused_plan_for_small_calls_only(monkeypatch):
    """On a CPU whose widest tiles are AVX2, the automatic plan fuses calls up to
    FUSED_AVX2_MAX_FLOPS (the latency path included) and leaves larger ones to BLAS."""
    import fastembed as fe
    from fastembed import _pipeline, reference

    k = fe.backends.kernels("cython")
    monkeypatch.setattr(k, "simd_width", 256)  # as an AVX2-only CPU reports it
    fused_calls = []
    real_fused = _pipeline._fused
    monkeypatch.setattr(_pipeline, "_fused", lambda *a: fused_calls.append(a[1].size) or real_fused(*a))
    rng = np.random.default_rng(5)
    table = rng.standard_normal((30000, 128)).astype(np.float32)
    proj = rng.standard_normal((128, 768)).astype(np.float32)
    bias = rng.standard_normal(768).astype(np.float32)
    pos = rng.standard_normal((12000, 768)).astype(np.float32)
    for shape, fused in (((1, 128), True), ((4, 512), True), ((2, 12000), False)):
        ids = rng.permutation(30000)[: np.prod(shape)].reshape(shape)  # distinct: no dedupe
        fused_calls.clear()
        # the latency path, then position_ids: the general path
        explicit = {"bias": bias, "pos_table": pos, "position_ids": np.arange(shape[-1])[::-1]}
        for extra in ({"bias": bias}, explicit):
            got = fe.factorized_lookup(ids, table, proj, backend="cython", **extra)
            ref = reference.factorized_lookup(ids, table, proj, **extra)
            magnitude = reference.factorized_lookup(
                ids,
                np.abs(table),
                np.abs(proj),
                **{k: np.abs(w) if k != "position_ids" else w for k, w in extra.items()},
            )
            assert_matches_reference(got, ref, magnitude, np.float32)
        assert bool(fused_calls) == fused, (shape, fused_calls)
    assert k.fused_pays(fe.backends.FUSED_AVX2_MAX_FLOPS) and not k.fused_pays(2 * fe.backends.FUSED_AVX2_MAX_FLOPS)


# ---------------------------------------------------------------- the dense latency path (gather_call)


def _gather_call_kernels():
    from fastembed import backends

    k = backends.kernels("cython") if "cython" in COMPILED else None
    if k is None:
        pytest.skip("the latency path is the Cython gather kernel's")
    return k


def _gather_call(k, ids, table, scale, pos, out, max_bytes=2.0**31, bias=None, offset=0, position_ids=None):
    return k.rows.gather_call(ids, table, scale, pos, out, max_bytes, lambda n_elements: 2, bias, offset, position_ids)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ids_shape", [(1,), (1, 128), (3, 17), (2, 2, 9)])
@pytest.mark.parametrize(("with_pos", "offset"), [(False, 0), (True, 0), (True, 2), (True, "position ids")])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_out", [False, True])
def test_dense_latency_path_is_gather_rows_bit_for_bit(
    dtype, id_dtype, ids_shape, with_pos, offset, with_bias, with_out
):
    """lookup's simple case runs gather_call: gather_rows' values bit for bit, and the float64
    reference's, with a bias and positions from an offset (a decoding step) or given as position
    ids of the ids' shape too."""
    k = _gather_call_kernels()
    rng = np.random.default_rng(11)
    V, d = 40, 37
    table = rng.standard_normal((V, d)).astype(dtype)
    pos = rng.standard_normal((ids_shape[-1] + 2, d)).astype(dtype) if with_pos else None
    bias = rng.standard_normal(d).astype(dtype) if with_bias else None
    ids = rng.integers(0, V, ids_shape).astype(id_dtype)
    out = np.full(ids_shape + (d,), np.nan, dtype) if with_out else None
    flat = ids.reshape(-1).astype(np.int64)
    if offset == "position ids":
        position_ids, offset = rng.integers(0, pos.shape[0], ids_shape).astype(id_dtype), 0
        rows = position_ids.reshape(-1).astype(np.int64)
    else:
        position_ids = None
        rows = offset + np.tile(np.arange(ids_shape[-1]), flat.size // ids_shape[-1])
    got = _gather_call(k, ids, table, 1.5, pos, out, bias=bias, offset=offset, position_ids=position_ids)
    assert got is not None and got.shape == ids_shape + (d,) and got.dtype == dtype
    assert not with_out or got is out
    general = np.empty((flat.size, d), dtype)
    k.rows.gather_rows(table, flat, 1.5, bias, pos, rows if with_pos else None, general, 2)
    np.testing.assert_array_equal(got.reshape(-1, d), general)
    expected = table[flat].astype(np.float64) * 1.5 + (pos[rows] if with_pos else 0.0) + (bias if with_bias else 0.0)
    np.testing.assert_allclose(got.reshape(-1, d), expected, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


def test_dense_latency_path_declines_what_it_cannot_prove_valid():
    """Every case outside the simple one returns None with out untouched: the general path then
    checks the call and raises its own messages."""
    k = _gather_call_kernels()
    rng = np.random.default_rng(12)
    table = rng.standard_normal((20, 16)).astype(np.float32)
    pos = np.zeros((10, 16), np.float32)
    ids = rng.integers(0, 20, (2, 5))
    out = np.full((2, 5, 16), -3.0, np.float32)
    assert _gather_call(k, ids, table, 1.0, pos, out) is out  # the simple case runs
    out[...] = -3.0
    big = np.zeros(4096, np.float32)
    too_big, negative = ids.copy(), ids.copy()
    too_big[1, 3], negative[0, 2] = 20, -1
    declined = {
        "float ids": (ids.astype(np.float64), table, 1.0, pos, out),
        "bool ids": (ids > 3, table, 1.0, pos, out),
        "uint64 ids": (ids.astype(np.uint64), table, 1.0, pos, out),
        "an id == V": (too_big, table, 1.0, pos, out),
        "a negative id": (negative, table, 1.0, pos, out),
        "int32 id == V": (too_big.astype(np.int32), table, 1.0, pos, out),
        "0-d ids": (np.array(3), table, 1.0, pos, np.zeros(16, np.float32)),
        "empty ids": (ids[:, :0], table, 1.0, pos, out[:, :0]),
        "list ids": (ids.tolist(), table, 1.0, pos, out),
        "strided ids": (np.repeat(ids, 2, axis=1)[:, ::2], table, 1.0, pos, out),
        "Fortran table": (ids, np.asfortranarray(table), 1.0, pos, out),
        "1-d table": (ids, table.reshape(-1), 1.0, pos, out),
        "float16 table": (ids, table.astype(np.float16), 1.0, pos, out),
        "pos too short": (ids, table, 1.0, pos[:4], out),
        "pos too narrow": (ids, table, 1.0, pos[:, :15], out),
        "pos float64": (ids, table, 1.0, pos.astype(np.float64), out),
        "out float64": (ids, table, 1.0, pos, out.astype(np.float64)),
        "out misshaped": (ids, table, 1.0, pos, out.reshape(5, 2, 16)),
        "out read-only": (ids, table, 1.0, pos, np.broadcast_to(out, out.shape)),
        "out strided": (ids, table, 1.0, pos, np.zeros((2, 5, 32), np.float32)[..., ::2]),
        "bool scale": (ids, table, True, pos, out),
        "numpy scale": (ids, table, np.float32(1.0), pos, out),
        "out over table": (ids, big[:320].reshape(20, 16), 1.0, pos, big[300:460].reshape(2, 5, 16)),
        "out over pos": (ids, table, 1.0, big[:160].reshape(10, 16), big[150:310].reshape(2, 5, 16)),
        "out over ids": (big[:10].view(np.int32).reshape(2, 5), table, 1.0, pos, big[:160].reshape(2, 5, 16)),
    }
    bias = np.ones(16, np.float32)
    assert _gather_call(k, ids, table, 1.0, pos, out, bias=bias, offset=5) is out  # the last rows of pos
    out[...] = -3.0
    for name, (b, offset, p, o) in latency_path_option_declines(pos, out, big).items():
        declined[name] = (ids, table, 1.0, p, o, 2.0**31, b, offset)
    position_ids = rng.integers(0, 10, (2, 5))
    assert _gather_call(k, ids, table, 1.0, pos, out, position_ids=position_ids) is out  # they run
    out[...] = -3.0
    for name, (p, offset, given, o) in latency_path_position_id_declines(pos, out, big, position_ids).items():
        declined[name] = (ids, table, 1.0, p, o, 2.0**31, None, offset, given)
    for name, args in declined.items():
        before = np.array(args[4], copy=True)
        assert _gather_call(k, *args) is None, name
        np.testing.assert_array_equal(args[4], before, err_msg=name)
    # more output than one uninterruptible kernel call may write (10 rows x 16 x 4 bytes here)
    assert _gather_call(k, ids, table, 1.0, pos, out, max_bytes=639.0) is None
    np.testing.assert_array_equal(out, -3.0)
    assert _gather_call(k, ids, table, 1.0, pos, out, max_bytes=640.0) is out


def test_dense_latency_calls_of_one_thread_skip_the_thread_policy(monkeypatch):
    """A call below ONE_THREAD_ELEMENTS (a decoding step) runs on one thread without the policy's
    Python; a bigger one asks the policy, with the elements the kernel counts."""
    import fastembed as fe
    from fastembed import _threads

    k = _gather_call_kernels()
    asked = []
    policy = k.for_work
    monkeypatch.setattr(k, "for_work", lambda n, n_elements: asked.append(n_elements) or policy(n, n_elements))
    table = np.random.default_rng(13).standard_normal((1000, 256)).astype(np.float32)
    small, big = np.array([[5], [7]]), np.arange(256).reshape(1, 256)
    assert small.size * 256 < _threads.ONE_THREAD_ELEMENTS <= big.size * 256
    got = [fe.lookup(ids, table, scale=2.0) for ids in (small, big)]
    assert asked == [big.size * 256]
    for ids, result in zip((small, big), got, strict=True):
        np.testing.assert_array_equal(result, table[ids] * np.float32(2.0))


def test_lookup_takes_the_dense_latency_path_only_for_the_simple_case(monkeypatch):
    import fastembed as fe

    k = _gather_call_kernels()
    calls = []
    original = k.rows.gather_call
    monkeypatch.setattr(k.rows, "gather_call", lambda *a: calls.append(1) or original(*a))
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    fe.lookup(np.array([[1, 2]]), table)
    fe.lookup(np.array([[1, 2]], np.int32), table, pos_table=np.zeros((4, 4), np.float32), scale=2.0)
    fe.lookup([[1, 2]], table)  # a list: the general path converts and checks it
    fe.lookup(np.array([[1, 0, 2]])[:, ::2], table)  # strided ids: declined inside
    assert len(calls) == 3
    pos = np.arange(16, dtype=np.float32).reshape(4, 4)
    got = fe.lookup(np.array([[1]]), table, bias=np.ones(4, np.float32), pos_table=pos, offset=3)  # a decoding step
    np.testing.assert_array_equal(got[0, 0], table[1] + 1 + pos[3])
    assert len(calls) == 4
    for kwargs in ({"backend": "numpy"}, {"position_ids": [0, 1]}):
        got = fe.lookup(np.array([[1, 2]]), table, **kwargs, pos_table=pos)
        np.testing.assert_array_equal(got[0, :, :], table[[1, 2]] + pos[:2])
    assert len(calls) == 4
    with pytest.raises(IndexError):
        fe.lookup(np.array([[1, 10]]), table)  # declined inside; the general path reports it
    with pytest.raises(IndexError, match="outside"):
        fe.lookup(np.array([[1, 2]]), table, pos_table=pos, offset=3)  # past pos: declined, then reported
    assert len(calls) == 6
    got = fe.lookup(np.array([[1], [2]]), table, pos_table=pos, position_ids=np.array([[3], [0]]))
    np.testing.assert_array_equal(got[:, 0], table[[1, 2]] + pos[[3, 0]])  # a step with position ids takes it
    with pytest.raises(IndexError, match="outside"):
        fe.lookup(np.array([[1]]), table, pos_table=pos, position_ids=np.array([[4]]))  # declined, then reported
    assert len(calls) == 8


@pytest.mark.parametrize("d", [1, 5, 16, 100])
def test_streamed_gather_skips_the_rows_of_bad_indices_as_plain_stores_do(d):
    """Streamed, gather_rows writes blocks of rows as runs; a block holding an index outside its
    table is written row by row: the same count of skipped rows, the same rows written."""
    k = _gather_call_kernels()
    rng = np.random.default_rng(d)
    n, V = 200, 30
    table, pos = rng.standard_normal((V, d)).astype(np.float32), rng.standard_normal((5, d)).astype(np.float32)
    rows, pos_rows = rng.integers(0, V, n), rng.integers(0, 5, n)
    rows[[3, 150]], pos_rows[[70]] = [-1, V], [5]
    previous = k.rows.stream_min_bytes()
    try:
        results = []
        for threshold in (float("inf"), 0):
            k.rows.stream_min_bytes(threshold)
            out = np.zeros((n, d), np.float32)
            assert k.rows.gather_rows(table, rows, 2.0, None, pos, pos_rows, out, 2) == 3
            results.append(out)
    finally:
        k.rows.stream_min_bytes(previous)
    np.testing.assert_array_equal(results[1], results[0])
    assert not results[0][[3, 70, 150]].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 16, 17, 33, 100, 768])
@pytest.mark.parametrize("misaligned", [False, True])
def test_streaming_rows_are_the_plain_rows_bit_for_bit(dtype, d, misaligned):
    """Outputs past the streaming threshold are written with non-temporal stores (whole aligned
    lines, plain stores at the row ends): the same values as plain stores, for every row length and
    alignment, with and without bias and positions, through gather_rows and the latency path."""
    k = _gather_call_kernels()
    rng = np.random.default_rng(13)
    n, V = 37, 50
    table = rng.standard_normal((V, d)).astype(dtype)
    bias, pos = rng.standard_normal(d).astype(dtype), rng.standard_normal((9, d)).astype(dtype)
    rows = rng.integers(0, V, n)
    pos_rows = rng.integers(0, 9, n)
    ids = rng.integers(0, V, (1, 9))

    def outputs():
        base = np.zeros(n * d + 1, dtype)
        return base[int(misaligned) : int(misaligned) + n * d].reshape(n, d)

    previous = k.rows.stream_min_bytes()
    try:
        results = []
        for threshold in (float("inf"), 0):
            k.rows.stream_min_bytes(threshold)
            for terms in ((None, None, None), (bias, None, None), (None, pos, pos_rows), (bias, pos, pos_rows)):
                out = outputs()
                assert k.rows.gather_rows(table, rows, 1.25, *terms, out, 2) == 0
                results.append(out)
            out = np.zeros(ids.shape + (d,), dtype)
            assert _gather_call(k, ids, table, 0.5, pos, out) is out
            results.append(out)
    finally:
        k.rows.stream_min_bytes(previous)
    half = len(results) // 2
    for plain, streamed in zip(results[:half], results[half:], strict=True):
        np.testing.assert_array_equal(streamed, plain)
    np.testing.assert_array_equal(results[0], table[rows] * dtype(1.25))
