"""leading_eigenpairs: LAPACK's dsytrd, dstedc and dormtr on the kept vectors against np.linalg.eigh."""

import os

import numpy as np
import pytest

from fastembed import _eigen

PATHS = ["lapacke", "eigh"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    if request.param == "lapacke":
        if _eigen.lapacke() is None:
            pytest.skip("no OpenBLAS exporting LAPACKE's 64-bit-integer functions is loaded")
    else:
        monkeypatch.setattr(_eigen, "lapacke", lambda: None)
    return request.param


def _symmetric(kind, d, rng):
    if kind == "random":
        a = rng.standard_normal((d, d))
        return a + a.T
    if kind == "gram":  # positive semidefinite, a spectrum like a table's
        x = rng.standard_normal((3 * d + 1, d)) * np.linspace(1, 0.05, d)
        return x.T @ x
    if kind == "low rank":  # repeated zero eigenvalues
        x = rng.standard_normal((3, d))
        return x.T @ x
    if kind == "repeated":  # every eigenvalue twice
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        return (q * np.repeat(np.arange(d // 2 + 1, 0, -1), 2)[:d]) @ q.T
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["random", "gram", "low rank", "repeated"])
@pytest.mark.parametrize("d", [1, 2, 7, 64, 200])
def test_leading_eigenpairs_are_eighs_on_either_path(path, kind, d):
    """The eigenvalues are eigh's (descending, clipped at 0); the kept vectors are orthonormal,
    eigenvectors of g, and span eigh's leading subspace where a gap separates it."""
    g = _symmetric(kind, d, np.random.default_rng(d))
    expected = np.clip(np.linalg.eigvalsh(g)[::-1], 0, None)
    for r in sorted({0, 1, d // 2, d}):
        seen = []
        vectors, s2 = _eigen.leading_eigenpairs(g, lambda s, r=r, seen=seen: seen.append(s.copy()) or r)
        scale = max(float(np.abs(g).max()), 1.0)
        np.testing.assert_allclose(s2, expected, rtol=0, atol=1e-12 * scale * d)
        np.testing.assert_array_equal(seen[0], s2)  # the rank was chosen from these values
        assert vectors.shape == (d, r) and vectors.dtype == np.float64
        np.testing.assert_allclose(vectors.T @ vectors, np.eye(r), rtol=0, atol=1e-12 * d)
        with np.errstate(all="ignore"):
            top = np.sort(np.linalg.eigvalsh(g))[::-1][:r]
        np.testing.assert_allclose(g @ vectors, vectors * top, rtol=0, atol=1e-11 * scale * d)
        if 0 < r < d and expected[r - 1] - expected[r] > 1e-6 * scale:
            _, reference = np.linalg.eigh(g)
            lead = reference[:, ::-1][:, :r]
            assert np.linalg.norm(vectors - lead @ (lead.T @ vectors)) < 1e-9 * d


def test_empty_matrix(path):
    vectors, s2 = _eigen.leading_eigenpairs(np.zeros((0, 0)), lambda s: 0)
    assert vectors.shape == (0, 0) and s2.shape == (0,)


def test_a_failed_step_falls_back_to_eigh(monkeypatch):
    steps = _eigen.lapacke()
    if steps is None:
        pytest.skip("no OpenBLAS exporting LAPACKE's 64-bit-integer functions is loaded")

    class Failing:
        path = steps.path
        sytrd, ormtr = steps.sytrd, steps.ormtr

        @staticmethod
        def stedc(*args):
            return 1  # "failed to converge"

    monkeypatch.setattr(_eigen, "lapacke", lambda: Failing)
    g = _symmetric("gram", 20, np.random.default_rng(0))
    vectors, s2 = _eigen.leading_eigenpairs(g, lambda s: 5)
    np.testing.assert_allclose(s2, np.linalg.eigvalsh(g)[::-1], rtol=1e-12)
    np.testing.assert_allclose(g @ vectors, vectors * s2[:5], rtol=0, atol=1e-10 * np.abs(g).max())


def test_numpys_own_openblas_is_used_where_it_exports_the_steps():
    """numpy's wheels bundle an OpenBLAS with LAPACKE's 64-bit-integer functions (numpy 1.x's
    openblas64_, numpy 2's scipy-openblas): found there, the steps are not silently skipped."""
    from threadpoolctl import threadpool_info

    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    bundled = [
        i["filepath"]
        for i in threadpool_info()
        if i.get("internal_api") == "openblas" and i["filepath"].startswith(numpy_dir) and "64_" in i["filepath"]
    ]
    if not bundled:
        pytest.skip("this numpy does not bundle a 64-bit-integer OpenBLAS")
    assert _eigen.lapacke() is not None


@pytest.mark.parametrize("n_threads", [2, 3, 1000])
def test_the_vectors_do_not_depend_on_the_thread_count(path, n_threads):
    g = _symmetric("gram", 150, np.random.default_rng(3))
    for r in (1, 40, 100, 150):
        one = _eigen.leading_eigenpairs(g, lambda s, r=r: r, 1)
        many = _eigen.leading_eigenpairs(g, lambda s, r=r: r, n_threads)
        np.testing.assert_array_equal(many[1], one[1])
        np.testing.assert_allclose(many[0], one[0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_matrices_get_eighs_answer(monkeypatch, bad):
    """A matrix with inf or NaN goes to eigh whatever library is loaded (no LAPACK step sees it)."""
    g = np.eye(6)
    g[1, 2] = g[2, 1] = bad
    ours = _eigen.leading_eigenpairs(g, lambda s: 3)
    monkeypatch.setattr(_eigen, "lapacke", lambda: None)
    theirs = _eigen.leading_eigenpairs(g, lambda s: 3)
    np.testing.assert_array_equal(ours[1], theirs[1])
    np.testing.assert_array_equal(ours[0], theirs[0])
