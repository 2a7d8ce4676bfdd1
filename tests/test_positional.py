"""Sinusoidal tables and learned-table positions against independent float64
computations of the published formulas, and against transformers / fairseq code."""

import math

import numpy as np
import pytest

import fastembed as fe
from fastembed import reference
from fastembed._positional import table_cache
from util import BACKENDS


def vaswani(positions, d, base=10000.0):
    return reference.sinusoidal(positions, d, "interleaved", base)


def marian(positions, d, base=10000.0):
    return reference.sinusoidal(positions, d, "concat", base)


def fairseq(positions, d, base=10000.0):
    return reference.sinusoidal(positions, d, "concat", base, endpoint=True)


CONVENTIONS = {
    ("interleaved", False): vaswani,
    ("concat", False): marian,
    ("concat", True): fairseq,
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("convention", list(CONVENTIONS), ids=lambda c: f"{c[0]}-endpoint{c[1]}")
@pytest.mark.parametrize("d", [1, 2, 3, 4, 7, 64, 65, 768])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_published_formula(backend, convention, d, dtype):
    layout, endpoint = convention
    positions = np.array([0, 1, 2, 5, 1023, 1024, 1025, 4097, 65535])
    expected = CONVENTIONS[convention](positions, d)
    got = fe.sinusoidal(positions, d, layout=layout, endpoint=endpoint, dtype=dtype, backend=backend)
    assert got.shape == (len(positions), d) and got.dtype == dtype
    # float32: half an ulp near 1; float64: the rounding of an angle of size p (~p * eps) plus sin's own
    tol = 6e-8 if dtype == np.float32 else 4 * np.finfo(np.float64).eps * np.maximum(positions, 8)[:, None]
    assert np.all(np.abs(got - expected) <= tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_count_equals_arange_and_shapes(backend):
    table = fe.sinusoidal(300, 16, backend=backend, cache=False)
    np.testing.assert_array_equal(table, fe.sinusoidal(np.arange(300), 16, backend=backend))
    grid = np.arange(12).reshape(3, 4)
    assert fe.sinusoidal(grid, 8, backend=backend).shape == (3, 4, 8)
    assert fe.sinusoidal(0, 8, backend=backend).shape == (0, 8)
    assert fe.sinusoidal(np.zeros((2, 0), int), 8, backend=backend).shape == (2, 0, 8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_accuracy_at_long_positions(backend):
    """float32 within 2e-6 of float64 truth up to 2**20, and within half a float32 ulp at 1.0."""
    d = 768
    positions = np.concatenate([np.arange(0, 2**20, 4099), np.arange(2**20 - 40, 2**20), [32768, 2**19]])
    got = fe.sinusoidal(positions, d, backend=backend).astype(np.float64)
    w = 10000.0 ** (-2.0 * (np.arange(d) // 2) / d)
    ang = positions[:, None].astype(np.float64) * w[None, :]
    truth = np.where(np.arange(d) % 2 == 0, np.sin(ang), np.cos(ang))
    err = np.abs(got - truth)
    assert err.max() <= 2e-6
    # in float32 ulps at 1.0 (the table's scale; near zeros, float64's own angle rounding,
    # ~p * 1e-16, dominates any per-value ulp). Measured: 2.98e-08 = 0.25 ulp.
    worst_ulps = float(err.max() / np.spacing(np.float32(1.0)))
    print(f"worst error: {err.max():.3g} absolute = {worst_ulps:.3f} float32 ulp at 1.0")
    assert worst_ulps <= 0.5


def test_float32_angles_would_fail_this_bar():
    """The reason for float64 angles: float32 angles miss by ~4e-3 at position 32768."""
    p = np.float32(32768)
    w = np.float32(10000.0 ** (-2 / 768))
    assert abs(float(np.sin(p * w)) - math.sin(32768 * 10000.0 ** (-2 / 768))) > 1e-4


def test_cache_is_bounded_and_read_only():
    table_cache.clear()
    a = fe.sinusoidal(1000, 64)
    b = fe.sinusoidal(1000, 64)
    assert a is b and not a.flags.writeable
    fresh = fe.sinusoidal(1000, 64, cache=False)
    assert fresh is not a and fresh.flags.writeable
    for n in range(1, 400):
        fe.sinusoidal(4096 + n, 256)  # ~4 MiB each, far past the bound
        assert table_cache.nbytes <= table_cache.max_bytes
    table_cache.clear()


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        (dict(positions=10, d=0), ValueError),
        (dict(positions=10, d=2.0), TypeError),  # a non-integer is a TypeError, as for every integer argument
        (dict(positions=10, d=4, layout="sideways"), ValueError),
        (dict(positions=10, d=4, layout="interleaved", endpoint=True), ValueError),
        (dict(positions=10, d=4, dtype=np.int32), ValueError),
        (dict(positions=10, d=4, base=-1.0), ValueError),
        (dict(positions=[1.5], d=4), TypeError),
        (dict(positions=[-1], d=4), IndexError),
        (dict(positions=[2**41], d=4), IndexError),
        (dict(positions=-3, d=4), ValueError),
    ],
)
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        fe.sinusoidal(**kwargs)


def test_transformers_tables_where_installed():
    torch = pytest.importorskip("torch")
    distilbert = pytest.importorskip("transformers.models.distilbert.modeling_distilbert")
    out = torch.empty(200, 30)
    distilbert._create_sinusoidal_embeddings(200, 30, out)
    np.testing.assert_allclose(fe.sinusoidal(200, 30), out.numpy(), atol=1e-6)
    marian = pytest.importorskip("transformers.models.marian.modeling_marian")
    emb = marian.MarianSinusoidalPositionalEmbedding(200, 31)
    np.testing.assert_allclose(fe.sinusoidal(200, 31, layout="concat"), emb.create_weight().numpy(), atol=1e-6)


def test_make_positions_is_fairseqs():
    pad = 1
    ids = np.array([[5, 6, 7, pad, pad], [pad, pad, 8, 9, 10]])
    expected = np.array([[2, 3, 4, 1, 1], [1, 1, 2, 3, 4]])
    np.testing.assert_array_equal(fe.make_positions(ids, pad), expected)
    torch = pytest.importorskip("torch")
    # fairseq.utils.make_positions, verbatim
    t = torch.from_numpy(ids)
    mask = t.ne(pad).int()
    ref = (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + pad
    np.testing.assert_array_equal(fe.make_positions(ids, pad), ref.numpy())


def test_positions_from_mask_left_padding_feeds_the_lookup():
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = fe.positions_from_mask(mask)
    np.testing.assert_array_equal(positions, [[1, 1, 0, 1, 2], [0, 1, 2, 3, 4]])
    rng = np.random.default_rng(0)
    table, pos = rng.standard_normal((10, 4)), rng.standard_normal((8, 4))
    ids = np.array([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    out = fe.lookup(ids, table, pos_table=pos, position_ids=positions)
    np.testing.assert_allclose(out[0, 2:], table[[3, 4, 5]] + pos[[0, 1, 2]])
    np.testing.assert_allclose(out[1], out[1] * 0 + table[ids[1]] + pos[:5])


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_buffers(backend):
    expected = fe.sinusoidal(50, 12, cache=False, backend=backend)
    buf = np.full((80, 12), np.nan, np.float32)
    view = buf[10:60]  # C-contiguous, but a view of a larger buffer
    assert fe.sinusoidal(50, 12, out=view, backend=backend) is view
    np.testing.assert_array_equal(view, expected)
    assert np.isnan(buf[:10]).all() and np.isnan(buf[60:]).all()
    strided = np.zeros((50, 24), np.float32)[:, ::2]
    np.testing.assert_array_equal(fe.sinusoidal(50, 12, out=strided, backend=backend), expected)
    with pytest.raises(ValueError):
        fe.sinusoidal(50, 12, out=np.zeros((50, 12), np.float64))
    readonly = np.zeros((50, 12), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        fe.sinusoidal(50, 12, out=readonly)
