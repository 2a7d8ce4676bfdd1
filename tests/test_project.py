"""The fused gather-project-finish kernel (kernels/_project.pyx and its Numba mirror) against the
float64 reference: AVX-512 and AVX2 micro-tiles (those this CPU runs) and the portable loop, both
index types, table layouts, every term, shapes around the tile edges, thread counts; bad indices
are counted and nothing is written."""

import numpy as np
import pytest

from fastembed import backends
from util import COMPILED, DTYPES, FUSED_VARIANTS, RTOL, layouts

# (n rows, V, r, d): tile edges are 8 (AVX2: 4) rows and 48 / 24 / 12 columns (AVX-512 float32 /
# float32 AVX2 and float64 AVX-512 / float64 AVX2)
SHAPES = [
    (1, 1, 1, 1),
    (3, 5, 2, 7),
    (9, 40, 7, 49),
    (17, 64, 33, 100),
    (8, 10, 1, 48),
    (5, 20, 3, 12),
    (6, 30, 4, 25),
    (130, 300, 128, 768),
]
VARIANTS = FUSED_VARIANTS  # (backend, widest micro-tile allowed)


def _kernels(backend):
    if backend not in COMPILED:
        pytest.skip(f"{backend} not available")
    return backends.kernels(backend)


def _reference(table, rows, proj, scale, bias, pos, pos_rows):
    t = table.astype(np.float64)
    gathered = t if rows is None else t[rows]
    out = (gathered @ proj.astype(np.float64)) * scale
    magnitude = (np.abs(gathered) @ np.abs(proj.astype(np.float64))) * abs(scale)
    if bias is not None:
        out, magnitude = out + bias, magnitude + np.abs(bias)
    if pos is not None:
        out, magnitude = out + pos[pos_rows], magnitude + np.abs(pos[pos_rows])
    return out, magnitude


def _check(result, expected, magnitude, dtype):
    err = np.abs(result.astype(np.float64) - expected)
    assert np.all(err <= RTOL[np.dtype(dtype)] * magnitude + 1e-300), float(np.max(err / (magnitude + 1e-300)))


def _case(rng, shape, dtype, itype, layout, terms):
    n, V, r, d = shape
    table = layouts(rng.standard_normal((V, r)).astype(dtype), layout)
    rows = rng.integers(0, V, n).astype(itype)
    proj = rng.standard_normal((r, d)).astype(dtype)
    bias = rng.standard_normal(d).astype(dtype) if terms in ("bias", "both") else None
    pos = pos_rows = None
    if terms in ("pos", "both"):
        pos = layouts(rng.standard_normal((n + 5, d)).astype(dtype), "C")[::-1]  # negative row stride
        pos_rows = rng.integers(0, n + 5, n).astype(np.int64)
    return table, rows, proj, bias, pos, pos_rows


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("itype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("terms", ["none", "bias", "pos", "both"])
def test_project_rows_matches_reference(backend, simd, dtype, itype, shape, terms):
    k = _kernels(backend)
    rng = np.random.default_rng(sum(shape))
    for layout in ("C", "F", "strided"):
        table, rows, proj, bias, pos, pos_rows = _case(rng, shape, dtype, itype, layout, terms)
        out = np.full((shape[0], shape[3]), np.nan, dtype)
        assert k.project_rows(table, rows, proj, 1.7, bias, pos, pos_rows, out, 2, simd=simd) == 0
        _check(out, *_reference(table, rows, proj, 1.7, bias, pos, pos_rows), dtype)


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_rows_and_zero_rank(backend, simd, dtype):
    k = _kernels(backend)
    rng = np.random.default_rng(5)
    table, proj = rng.standard_normal((20, 6)).astype(dtype), rng.standard_normal((6, 50)).astype(dtype)
    out = np.empty((20, 50), dtype)
    assert k.project_rows(table, None, proj, 1.0, None, None, None, out, 2, simd=simd) == 0
    _check(out, *_reference(table, None, proj, 1.0, None, None, None), dtype)
    bias = rng.standard_normal(50).astype(dtype)
    out = np.full((4, 50), np.nan, dtype)
    empty = np.empty((3, 0), dtype)
    assert k.project_rows(empty, np.array([0, 2, 1, 0]), np.empty((0, 50), dtype), 3.0, bias, None, None, out, 1) == 0
    np.testing.assert_array_equal(out, np.broadcast_to(bias, out.shape))


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
def test_result_is_bitwise_the_same_for_every_thread_count(backend, simd):
    """Every output element is one multiply-add chain over k, whichever task computes it."""
    k = _kernels(backend)
    rng = np.random.default_rng(2)
    table, rows, proj, bias, pos, pos_rows = _case(rng, (203, 500, 40, 150), np.float32, np.int64, "C", "both")
    outs = []
    for n_threads in (1, 2, 3, 8):
        out = np.empty((203, 150), np.float32)
        k.project_rows(table, rows, proj, 0.5, bias, pos, pos_rows, out, n_threads, simd=simd)
        outs.append(out)
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
def test_bad_indices_are_counted_and_nothing_is_written(backend, simd):
    k = _kernels(backend)
    table, proj = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    pos = np.ones((2, 5), np.float32)
    for rows, pos_rows, bad in [
        (np.array([0, 4, -1, 3, 2**40]), None, 3),
        (np.array([0, 1, 2, 3, 3]), np.array([0, 1, 2, -1, 1]), 2),
        (np.array([0, 1, 2, 3, -(2**62)], np.int64), np.array([0, 1, 1, 0, 9]), 2),
    ]:
        out = np.full((5, 5), -7, np.float32)
        terms = (pos, pos_rows) if pos_rows is not None else (None, None)
        assert k.project_rows(table, rows, proj, 1.0, None, *terms, out, 2, simd=simd) == bad
        assert (out == -7).all()


@pytest.mark.skipif("cython" not in COMPILED, reason="needs the Cython kernels")
def test_cython_refuses_mismatched_shapes():
    k = backends.kernels("cython")
    table, proj, out = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32), np.empty((2, 5), np.float32)
    rows = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="proj shape"):
        k.project_rows(table, rows, np.ones((2, 5), np.float32), 1.0, None, None, None, out, 1)
    with pytest.raises(ValueError, match="rows shape"):
        k.project_rows(table, np.zeros(3, np.int64), proj, 1.0, None, None, None, out, 1)
    with pytest.raises(ValueError, match="bias shape"):
        k.project_rows(table, rows, proj, 1.0, np.ones(4, np.float32), None, None, out, 1)
    with pytest.raises(ValueError, match="unit column stride"):
        pos = np.ones((3, 10), np.float32)[:, ::2]
        k.project_rows(table, rows, proj, 1.0, None, pos, np.zeros(2, np.int64), out, 1)


def test_simd_switch_is_reported_and_honoured(monkeypatch):
    """FASTEMBED_DISABLE_SIMD=1 turns the micro-tiles off; --info and simd_width() say what runs."""
    if "cython" not in COMPILED:
        pytest.skip("needs the Cython kernels")
    import fastembed as fe
    from fastembed.__main__ import info

    k = backends.kernels("cython")
    assert fe.backends.simd_width() == k.simd_width == k.project.simd_width() in (0, 256, 512)
    assert (k.simd_width > 0) == k.project.simd_available()
    assert k.fused_simd == (k.simd_width >= 512)  # auto takes the fused plan with AVX-512 tiles only
    assert any(line.startswith("fused lookup micro-tiles on this CPU: ") for line in info())
    monkeypatch.setenv("FASTEMBED_DISABLE_SIMD", "1")
    fresh = backends.KernelSet("cython", k.rows, k.positional, k.project)
    assert fresh.simd_width == 0 and fresh.fused_simd is False
