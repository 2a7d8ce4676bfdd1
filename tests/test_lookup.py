"""Every backend of every lookup against the float64 reference, over dtypes,
shapes, memory layouts and options."""

import numpy as np
import pytest

from util import BACKENDS, COMPILED, DTYPES, FUSED_VARIANTS, LOOKUPS, SIMD_WIDTHS, assert_matches_reference, layouts

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
    for shape, fused in (((1, 128), True), ((2, 512), True), ((4, 512), False)):
        ids = rng.permutation(30000)[: np.prod(shape)].reshape(shape)  # distinct: no dedupe
        fused_calls.clear()
        for extra in ({}, {"bias": bias}):  # without bias the latency path, with it the general one
            got = fe.factorized_lookup(ids, table, proj, backend="cython", **extra)
            ref = reference.factorized_lookup(ids, table, proj, **extra)
            magnitude = reference.factorized_lookup(
                ids, np.abs(table), np.abs(proj), **{k: np.abs(w) for k, w in extra.items()}
            )
            assert_matches_reference(got, ref, magnitude, np.float32)
        assert bool(fused_calls) == fused, (shape, fused_calls)
    assert k.fused_pays(fe.backends.FUSED_AVX2_MAX_FLOPS) and not k.fused_pays(2 * fe.backends.FUSED_AVX2_MAX_FLOPS)
