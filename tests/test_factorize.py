"""factorize against the Eckart-Young optimum, on synthetic tables and on a real pretrained one."""

import numpy as np
import pytest

import fastembed as fe
from fastembed._factorize import error_report


def _low_rank_plus_noise(rng, V=400, d=48, rank=8, noise=0.05, dtype=np.float64):
    W = rng.standard_normal((V, rank)) @ rng.standard_normal((rank, d)) + noise * rng.standard_normal((V, d))
    return W.astype(dtype)


def _optimal_error(W, r, weights=None, center=False):
    X = np.asarray(W, dtype=np.float64)
    w = np.ones(X.shape[0]) if weights is None else weights
    if center:
        X = X - np.average(X, axis=0, weights=w)
    s = np.linalg.svd(X * np.sqrt(w)[:, None], compute_uv=False)
    norm2 = (np.asarray(W, dtype=np.float64) ** 2 * w[:, None]).sum()
    return np.sqrt((s[r:] ** 2).sum() / norm2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale_into", ["table", "proj", "both"])
@pytest.mark.parametrize("shape", [(400, 48), (30, 60)], ids=["tall", "wide"])
def test_svd_is_the_optimum_and_error_is_computed(dtype, scale_into, shape):
    rng = np.random.default_rng(0)
    W = _low_rank_plus_noise(rng, *shape, dtype=dtype)
    fac = fe.factorize(W, 10, scale_into=scale_into)
    assert fac.table.shape == (shape[0], 10) and fac.proj.shape == (10, shape[1])
    assert fac.table.dtype == dtype and fac.proj.dtype == dtype
    direct = np.linalg.norm(W.astype(np.float64) - fac.table.astype(np.float64) @ fac.proj) / np.linalg.norm(W)
    assert fac.relative_error == pytest.approx(direct, rel=1e-6 if dtype == np.float64 else 1e-4)
    assert fac.relative_error == pytest.approx(_optimal_error(W, 10), rel=1e-6 if dtype == np.float64 else 1e-4)
    np.testing.assert_allclose(
        fac.singular_values, np.linalg.svd(W.astype(np.float64), compute_uv=False)[:10], rtol=1e-5
    )


def test_scale_placement():
    rng = np.random.default_rng(1)
    W = _low_rank_plus_noise(rng)
    on_table = fe.factorize(W, 6, scale_into="table")
    on_proj = fe.factorize(W, 6, scale_into="proj")
    both = fe.factorize(W, 6, scale_into="both")
    np.testing.assert_allclose(on_table.proj @ on_table.proj.T, np.eye(6), atol=1e-10)
    np.testing.assert_allclose(on_proj.table.T @ on_proj.table, np.eye(6), atol=1e-10)
    for fac in (on_proj, both):
        np.testing.assert_allclose(fac.to_dense(), on_table.to_dense(), atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_randomized_within_two_percent(dtype):
    rng = np.random.default_rng(2)
    W = rng.standard_normal((2000, 96)).astype(dtype)  # flat spectrum: the hard case
    fac = fe.factorize(W, 24, method="randomized", seed=0)
    assert fac.relative_error <= 1.02 * _optimal_error(W, 24)
    assert fac.report.optimal_relative_error is None


def test_randomized_is_seeded():
    W = np.random.default_rng(3).standard_normal((300, 40))
    a = fe.factorize(W, 5, method="randomized", seed=7)
    b = fe.factorize(W, 5, method="randomized", seed=7)
    np.testing.assert_array_equal(a.table, b.table)


@pytest.mark.parametrize("method", ["svd", "randomized"])
def test_energy_and_max_error_choose_the_smallest_rank(method):
    rng = np.random.default_rng(4)
    W = _low_rank_plus_noise(rng, rank=8, noise=0.01)
    s2 = np.linalg.svd(W, compute_uv=False) ** 2
    cumulative = np.cumsum(s2) / s2.sum()
    for energy in (0.5, 0.9, 0.999):
        expected = int(np.argmax(cumulative >= energy)) + 1
        assert fe.factorize(W, energy=energy, method=method, seed=0).rank == expected
    fac = fe.factorize(W, max_error=0.1, method=method, seed=0)
    assert fac.relative_error <= 0.1 + 1e-9
    assert fe.factorize(W, fac.rank - 1).relative_error > 0.1


def test_row_weights_are_inside_the_fit():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((500, 32))
    counts = rng.zipf(1.3, 500).astype(float)
    plain = fe.factorize(W, 8)
    weighted = fe.factorize(W, 8, row_weights=counts)
    assert weighted.report.weighted_relative_error < plain.report.weighted_relative_error
    assert weighted.report.weighted_relative_error == pytest.approx(_optimal_error(W, 8, counts), rel=1e-6)
    centered = fe.factorize(W, 8, row_weights=counts, center=True)
    assert centered.report.weighted_relative_error == pytest.approx(_optimal_error(W, 8, counts, True), rel=1e-6)
    np.testing.assert_allclose(centered.bias, np.average(W, axis=0, weights=counts))


def test_zero_weight_rows_are_still_coded():
    rng = np.random.default_rng(6)
    W = _low_rank_plus_noise(rng, rank=4, noise=0.0)
    weights = np.ones(W.shape[0])
    weights[:10] = 0
    fac = fe.factorize(W, 4, row_weights=weights)
    np.testing.assert_allclose(fac.to_dense()[:10], W[:10], atol=1e-8)


def test_center_puts_the_mean_in_the_bias_and_the_lookup_adds_it():
    rng = np.random.default_rng(7)
    W = _low_rank_plus_noise(rng) + 5.0
    fac = fe.factorize(W, 8, center=True)
    assert fac.relative_error == pytest.approx(_optimal_error(W, 8, center=True), rel=1e-6)
    assert fac.relative_error < fe.factorize(W, 8).relative_error
    ids = rng.integers(0, W.shape[0], (3, 11))
    out = fe.factorized_lookup(ids, fac.table, fac.proj, bias=fac.bias)
    np.testing.assert_allclose(out, fac.to_dense()[ids], atol=1e-10)


def test_report_matches_a_direct_computation():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((9000, 20)).astype(np.float32)  # more rows than one report block
    fac = fe.factorize(W, 5)
    R = fac.table.astype(np.float64) @ fac.proj.astype(np.float64)
    W64 = W.astype(np.float64)
    rows = np.linalg.norm(W64 - R, axis=1) / np.linalg.norm(W64, axis=1)
    cos = (W64 * R).sum(1) / np.linalg.norm(W64, axis=1) / np.linalg.norm(R, axis=1)
    for backend in fe.backends.available():
        rep = error_report(W, fac.table, fac.proj, backend=backend)
        assert rep.worst_row_error == pytest.approx(rows.max(), rel=1e-5)
        assert rep.mean_cosine == pytest.approx(cos.mean(), rel=1e-5)
        assert rep.relative_error == pytest.approx(np.linalg.norm(W64 - R) / np.linalg.norm(W64), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        (dict(rank=0), ValueError),
        (dict(rank=49), ValueError),
        (dict(rank=2.0), TypeError),
        (dict(), ValueError),
        (dict(rank=3, energy=0.9), ValueError),
        (dict(energy=0.0), ValueError),
        (dict(energy=1.5), ValueError),
        (dict(max_error=1.0), ValueError),
        (dict(rank=3, method="qr"), ValueError),
        (dict(rank=3, row_weights=-np.ones(100)), ValueError),
        (dict(rank=3, row_weights=np.ones(99)), ValueError),
        (dict(rank=3, row_weights=np.zeros(100)), ValueError),
        (dict(rank=3, scale_into="middle"), ValueError),
    ],
)
def test_bad_arguments(kwargs, exc):
    W = np.random.default_rng(9).standard_normal((100, 48))
    with pytest.raises(exc):
        fe.factorize(W, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_tables_are_refused(bad):
    W = np.ones((10, 4))
    W[3, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        fe.factorize(W, 2)


def test_real_pretrained_table_holds_to_the_optimum(minilm_word_embeddings):
    W = minilm_word_embeddings
    exact = fe.factorize(W, 128)
    optimum = exact.report.optimal_relative_error
    # the optimum from numpy's own SVD, independently
    s = np.linalg.svd(W.astype(np.float64), compute_uv=False)
    assert optimum == pytest.approx(np.sqrt((s[128:] ** 2).sum() / (s**2).sum()), rel=1e-6)
    assert exact.relative_error <= 1.005 * optimum
    randomized = fe.factorize(W, 128, method="randomized", seed=0)
    assert randomized.relative_error <= 1.02 * optimum
    counts = np.random.default_rng(0).zipf(1.2, W.shape[0]).astype(float)
    weighted = fe.factorize(W, 128, row_weights=counts)
    plain_weighted_error = error_report(W, exact.table, exact.proj, row_weights=counts).weighted_relative_error
    assert weighted.report.weighted_relative_error < plain_weighted_error


@pytest.mark.parametrize("rank", [1, 5, 19, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthonormal_report_equals_the_explicit_reconstruction(rank, dtype):
    """The report from row norms (||W_i||^2 - ||code_i||^2) agrees with reconstructing W, including
    near-exact fits (rank = d), where rows are measured by reconstruction instead."""
    rng = np.random.default_rng(10)
    W = rng.standard_normal((5000, 6)) @ rng.standard_normal((6, 20)) + 0.01 * rng.standard_normal((5000, 20))
    W = W.astype(dtype)
    fac = fe.factorize(W, rank)
    explicit = error_report(W, fac.table, fac.proj)
    tol = 1e-9 if dtype == np.float64 else 2e-5
    for field in ("relative_error", "worst_row_error", "mean_cosine"):
        assert getattr(fac.report, field) == pytest.approx(getattr(explicit, field), rel=tol, abs=1e-7), field


def test_exact_method_detects_non_finite_through_its_gram_matrix():
    W = np.ones((50, 8), np.float32)
    W[7, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        fe.factorize(W, 2)
    W[7, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        fe.factorize(W.T.copy(), 2)  # the wide path
