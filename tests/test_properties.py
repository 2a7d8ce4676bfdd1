"""Property tests: for random shapes, dtypes, layouts, ids (edges included) and options, every
backend returns the float64 reference or raises the documented exception with ``out`` untouched."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastembed as fe
from util import BACKENDS, LOOKUPS, assert_matches_reference, layouts

EDGE_IDS = [-1, 2**31, 2**63 - 1]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def lookup_cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    V, r, d = draw(st.integers(1, 30)), draw(st.integers(0, 5)), draw(st.integers(0, 7))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    size = int(np.prod(shape))
    bad = draw(st.booleans()) and size > 0
    values = draw(st.lists(st.integers(0, V - 1), min_size=size, max_size=size))
    if bad:
        values[draw(st.integers(0, size - 1))] = draw(st.sampled_from([V, *EDGE_IDS]))
    id_dtype = draw(st.sampled_from(["int64", "int32", "uint64", "list"]))
    if id_dtype == "int32" and any(not -(2**31) <= x < 2**31 for x in values):
        id_dtype = "int64"
    if id_dtype == "uint64" and any(x < 0 for x in values):
        id_dtype = "int64"
    ids = values if id_dtype == "list" else np.array(values, dtype=id_dtype).reshape(shape)
    if id_dtype == "list":
        ids = np.array(values, dtype=object).reshape(shape).tolist() if shape else values[0] if values else values
    L = shape[-1] if shape else 1
    use_pos = draw(st.booleans())
    n_pos = L + draw(st.integers(0, 3)) - (1 if draw(st.integers(0, 9)) == 0 else 0)  # sometimes one short
    offset = draw(st.integers(0, 3)) if use_pos else 0
    return dict(
        dtype=dtype,
        V=V,
        r=r,
        d=d,
        ids=ids,
        layout=draw(st.sampled_from(["C", "F", "strided"])),
        scale=draw(st.sampled_from([1.0, -0.5, 3.0])),
        bias=draw(st.booleans()),
        n_pos=max(n_pos, 0) if use_pos else None,
        offset=offset,
        with_out=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def _expected_error(case, ids_array):
    flat = np.asarray(ids_array, dtype=object).reshape(-1)
    if any(not 0 <= int(x) < case["V"] for x in flat):
        return IndexError
    if case["n_pos"] is not None:
        L = ids_array.shape[-1] if ids_array.ndim else 1
        if case["offset"] + L > case["n_pos"]:
            return IndexError
    return None


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=lookup_cases())
def test_lookup_is_reference_or_documented_error(lookup, backend, case):
    rng = np.random.default_rng(case["seed"])
    dtype, d = case["dtype"], case["d"]
    tables = lookup.tables(rng, case["V"], case["r"], d, dtype)
    tables = tuple(layouts(t, case["layout"]) for t in tables)
    kw = dict(scale=case["scale"])
    if case["bias"]:
        kw["bias"] = rng.standard_normal(d).astype(dtype)
    if case["n_pos"] is not None:
        kw["pos_table"] = rng.standard_normal((case["n_pos"], d)).astype(dtype)
        kw["offset"] = case["offset"]
    ids_array = np.array(case["ids"], dtype=object) if not isinstance(case["ids"], np.ndarray) else case["ids"]
    out_shape = tuple(ids_array.shape) + (d,)
    out = np.full(out_shape, 7.0, dtype) if case["with_out"] else None
    error = _expected_error(case, ids_array)
    if error is not None:
        with pytest.raises(error):
            lookup.call(case["ids"], tables, backend=backend, out=out, **kw)
        if out is not None:
            assert (out == 7.0).all()
        return
    result = lookup.call(case["ids"], tables, backend=backend, out=out, **kw)
    ref_ids = ids_array.astype(np.int64)
    assert_matches_reference(result, *lookup.expected(ref_ids, tables, **kw), dtype)
    if out is not None:
        assert result is out


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    positions=st.lists(st.integers(0, 2**24), min_size=0, max_size=40),
    d=st.integers(1, 33),
    layout=st.sampled_from([("interleaved", False), ("concat", False), ("concat", True)]),
)
def test_sinusoidal_property(backend, positions, d, layout):
    got = fe.sinusoidal(
        np.array(positions, dtype=np.int64), d, layout=layout[0], endpoint=layout[1], dtype=np.float64, backend=backend
    )
    assert got.shape == (len(positions), d)
    assert np.all(np.abs(got) <= 1.0)
    if positions:
        ref = fe.sinusoidal(
            np.array(positions, dtype=np.int64),
            d,
            layout=layout[0],
            endpoint=layout[1],
            dtype=np.float64,
            backend="numpy",
        )
        tol = 8 * np.finfo(np.float64).eps * np.maximum(np.array(positions), 8)[:, None]
        assert np.all(np.abs(got - ref) <= tol)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    lead=st.lists(st.integers(0, 3), min_size=0, max_size=2),
    L=st.integers(0, 9),
    half=st.integers(1, 6),
    extra=st.integers(0, 3),
    style=st.sampled_from(["neox", "gptj"]),
    offset=st.integers(0, 10**6),
    seed=st.integers(0, 1000),
)
def test_rope_property(backend, lead, L, half, extra, style, offset, seed):
    D = 2 * half + extra
    x = np.random.default_rng(seed).standard_normal((*lead, L, D))
    got = fe.apply_rope(x, offset=offset, style=style, rotary_dim=2 * half, backend=backend)
    ref = fe.apply_rope(x, offset=offset, style=style, rotary_dim=2 * half, backend="numpy")
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # a rotation keeps each pair's norm
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    V=st.integers(1, 40),
    d=st.integers(1, 12),
    seed=st.integers(0, 1000),
    weighted=st.booleans(),
    center=st.booleans(),
    data=st.data(),
)
def test_factorize_property(V, d, seed, weighted, center, data):
    rank = data.draw(st.integers(1, min(V, d)))
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((V, d))
    w = rng.uniform(0.1, 5, V) if weighted else None
    fac = fe.factorize(W, rank, row_weights=w, center=center)
    X = W - (np.average(W, axis=0, weights=w) if center else 0)
    ww = np.ones(V) if w is None else w
    s = np.linalg.svd(X * np.sqrt(ww)[:, None], compute_uv=False)
    optimum = np.sqrt((s[rank:] ** 2).sum() / (W**2 * ww[:, None]).sum())
    assert fac.report.weighted_relative_error == pytest.approx(optimum, rel=1e-6, abs=1e-9)
