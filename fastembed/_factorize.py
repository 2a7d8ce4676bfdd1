"""Factorizing an embedding table: W (V x d) ~ 1 mu^T + E P, E (V x r), P (r x d).

The fit minimises ``sum_i w_i ||W_i - mu - (E P)_i||^2`` (w_i = 1 without
row weights). Its optimum (Eckart-Young, with weights inside the fit):

- ``mu`` is the weighted mean row (``center=True``), else 0;
- the rows of P span the top-r right singular vectors V_r of
  ``diag(sqrt(w)) (W - 1 mu^T)``;
- each row's best code is its projection, ``E = (W - 1 mu^T) V_r``, whatever
  its weight (so rows of weight 0 are still coded).

``method="svd"`` finds V_r from the d x d Gram matrix ``X^T diag(w) X`` with a
float64 symmetric eigensolver (tall tables: one BLAS syrk and a small eigh,
far faster than a full SVD); ``method="randomized"`` uses a randomized range
finder with power iterations (Halko, Martinsson & Tropp 2011).
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from ._eigen import leading_eigenpairs
from ._threads import blas_limit, resolve

SCALE_INTO = ("table", "proj", "both")
CHUNK_ROWS = 4096


@dataclass
class ErrorReport:
    """How well ``table @ proj (+ bias)`` reconstructs W.

    relative_error : ||W - R||_F / ||W||_F
    weighted_relative_error : the same with row weights (equal to relative_error without them)
    worst_row_error : max_i ||W_i - R_i|| / ||W_i|| over rows with ||W_i|| > 0
    mean_cosine : mean_i cos(W_i, R_i) over rows where both are nonzero
    optimal_relative_error : the Eckart-Young error at this rank (exact method), else None
    """

    relative_error: float
    weighted_relative_error: float
    worst_row_error: float
    mean_cosine: float
    optimal_relative_error: float | None = None


@dataclass
class Factorization:
    """W ~ bias + table @ proj.

    table : (V, r) ndarray, dtype of W
    proj : (r, d) ndarray, dtype of W
    singular_values : (r,) float64, of the (weighted, centered) table, descending
    bias : (d,) ndarray or None, the (weighted) mean row when ``center=True``
    relative_error : ||W - bias - table @ proj||_F / ||W||_F, computed from the factors
    report : ErrorReport
    """

    table: np.ndarray
    proj: np.ndarray
    singular_values: np.ndarray
    bias: np.ndarray | None
    relative_error: float
    report: ErrorReport
    method: str = "svd"
    scale_into: str = "table"
    all_singular_values: np.ndarray | None = field(default=None, repr=False)

    @property
    def rank(self):
        return self.table.shape[1]

    def to_dense(self):
        """bias + table @ proj, shape (V, d)."""
        dense = self.table @ self.proj
        if self.bias is not None:
            dense += self.bias
        return dense

    def n_parameters(self):
        return self.table.size + self.proj.size + (0 if self.bias is None else self.bias.size)


def _validated(W, rank, energy, max_error, method, row_weights, scale_into):
    W = np.asarray(v.as_numpy(W, "W"))
    v.table_to_factorize(W.shape)
    if W.dtype not in (np.float32, np.float64):
        if W.dtype.kind not in "iuf":
            raise ValueError(f"W must be a real float array, got {W.dtype}")
        W = W.astype(np.float64)
    if method != "svd":  # the exact method checks its Gram pass instead
        v.require_finite(math.isfinite(_peak(W)))
    v.factorize_arguments(W.shape, rank, energy, max_error, method)
    v.as_choice(scale_into, "scale_into", SCALE_INTO)
    if row_weights is not None:
        row_weights = np.asarray(row_weights, dtype=np.float64)
        v.row_weights_shape(row_weights.shape, W.shape[0])
        v.row_weights_values(row_weights.min(), row_weights.any())
    return W, row_weights


# Products of W's entries must stay clear of overflow and of the subnormal range in W's dtype (the
# Gram matrix sums squares; float32 overflows past 3e38 and underflows below 1e-38). A table whose
# largest row norm lies outside this range of powers of two is rescaled by an exact power of two
# first, and the factors are scaled back.
SAFE_EXPONENT = {np.dtype(np.float32): 40, np.dtype(np.float64): 300}


def _peak(W):
    """max |W| (NaN when W has a NaN, inf with an inf), by two reductions without a temporary."""
    return float(max(W.max(), -W.min()))


class _NeedsRescale(Exception):
    """W's magnitude is outside the range its dtype factorizes accurately: scale it by 2**shift."""

    def __init__(self, shift):
        super().__init__(shift)
        self.shift = shift


def _shift_for(peak):
    """An even power of two (so that "both" splits it exactly) that brings ``peak`` near 1."""
    exponent = math.frexp(peak)[1]
    return -exponent + exponent % 2


def _check_magnitude(peak, dtype):
    """Raise _NeedsRescale when ``peak`` (a largest |entry| or row norm) is outside the safe range."""
    if peak == 0 or not math.isfinite(peak):
        return
    if abs(math.frexp(peak)[1]) > SAFE_EXPONENT[np.dtype(dtype)]:
        raise _NeedsRescale(_shift_for(peak))


def rank_for_energy(s2, energy):
    """Smallest r with sum(s2[:r]) >= energy * sum(s2)."""
    total = s2.sum()
    if total == 0:
        return 1
    cumulative = np.cumsum(s2) / total
    return int(min(np.searchsorted(cumulative, energy * (1 - 1e-12)) + 1, s2.size))


def _row_chunks(X, w, mu, rows=CHUNK_ROWS):
    """Row blocks of diag(sqrt(w)) (X - mu), in X's dtype, without a full-size temporary."""
    for start in range(0, X.shape[0], rows):
        block = X[start : start + rows]
        if mu is not None:
            block = block - mu
        if w is not None:
            block = block * np.sqrt(w[start : start + rows]).astype(X.dtype)[:, None]
        yield block


GRAM_BLOCK_ROWS = 8192
GRAM_BLOCK_FLOPS = 1 << 33  # rows x d x d: 58254 rows at d = 384, ~50 ms on the Zen 4's 2 cores


def _unit_columns(a):
    """Whether a's columns lie one element apart, as gram_rows's tiles read them."""
    return a.shape[1] <= 1 or a.strides[1] == a.itemsize


def gram(X, w=None, mu=None, row_norms=None, n_threads=None):
    """(X - mu)^T diag(w) (X - mu) as float64: one product per row block, summed in float64.

    Where the fused kernel's SIMD tiles run, its ``gram_rows`` computes the upper triangle only
    (half BLAS's multiply-adds; chunks of 256 rows summed in X's dtype, then in float64); else
    one BLAS product per block. NaN or inf anywhere in X reaches the result, so checking the
    (d x d) result checks X. ``row_norms`` (V,), when given, receives ||X_i||^2 in float64 (X
    itself, without mu and w): from the Gram pass while each chunk is in cache when the blocks are
    X's rows, else in a pass of its own.
    """
    from . import backends

    k = backends.kernels("auto")
    tiles = k is not None and k.simd_width >= 256
    threads = resolve(n_threads)
    total = np.zeros((X.shape[1], X.shape[1]))
    fused_norms = row_norms is not None and tiles and w is None and mu is None
    # The tiles read X's own rows (no temporary) in blocks of up to GRAM_BLOCK_FLOPS multiply-adds,
    # between which Ctrl-C is seen: each call forms a team, deals the tiles and mirrors the
    # triangle (MiniLM's 30522 rows in four calls took 1-2 ms more than in one). BLAS's float32
    # products keep their blocks, whose sums join in float64.
    block_rows = GRAM_BLOCK_ROWS
    if tiles and _unit_columns(X) and w is None and mu is None:
        block_rows = max(GRAM_BLOCK_ROWS, GRAM_BLOCK_FLOPS // max(X.shape[1] ** 2, 1))
    starts = range(0, X.shape[0], block_rows)
    for start, block in zip(starts, _row_chunks(X, w, mu, block_rows), strict=True):
        if tiles and _unit_columns(block):
            norms = row_norms[start : start + block.shape[0]] if fused_norms else None
            k.gram_rows(block, total, norms, k.simd_width, threads)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # the caller checks the result and rescales
                total += block.T @ block
            if fused_norms:
                row_norms[start : start + block.shape[0]] = _row_sq_norms(block, n_threads=threads)
    if row_norms is not None and not fused_norms:
        row_norms[:] = _row_sq_norms(X, n_threads=threads)
    return total


def _right_vectors_exact(X, w, mu, choose_rank, row_norms=None, n_threads=None):
    """The leading right singular vectors (columns; r = choose_rank(s^2)) and all s^2 of
    diag(sqrt(w)) (X - mu), descending."""
    if X.shape[0] >= X.shape[1]:
        if row_norms is None:
            row_norms = np.empty(X.shape[0])
        g = gram(X, w, mu, row_norms, n_threads)
        peak = math.sqrt(float(row_norms.max()))  # NaN or inf exactly when X has one
        v.require_finite(math.isfinite(peak))
        if not np.isfinite(g).all():  # finite rows whose products overflowed
            raise _NeedsRescale(_shift_for(peak))
        _check_magnitude(peak, X.dtype)
        # One BLAS thread: the d x d eigensolver gains little from a second (10.9 vs 14.3 ms at d =
        # 384 on the Zen 4), and OpenBLAS's threads spin after a parallel call, which slowed the
        # OpenMP kernels that follow (the next Gram pass, the codes) by 20-30 ms.
        with blas_limit(1):
            return leading_eigenpairs(g, choose_rank, resolve(n_threads))
    Xw = np.vstack(list(_row_chunks(X.astype(np.float64), w, mu)))
    v.require_finite(math.isfinite(_peak(X)))
    _check_magnitude(_peak(X), X.dtype)
    _, s, vt = np.linalg.svd(Xw, full_matrices=False)
    s2 = s**2
    return vt[: choose_rank(s2)].T, s2


def _orthonormal(A):
    """An orthonormal basis of A's columns: CholeskyQR2 (two Gram + Cholesky passes,
    BLAS-3 throughout), falling back to Householder QR if A is too ill-conditioned."""
    Q = A
    try:
        for _ in range(2):
            g = (Q.T @ Q).astype(np.float64)
            r = np.linalg.cholesky(g + np.eye(g.shape[0]) * (np.trace(g) * 1e-14 / g.shape[0])).T
            Q = Q @ np.linalg.inv(r).astype(A.dtype)
        if np.all(np.isfinite(Q)):
            return Q
    except np.linalg.LinAlgError:
        pass
    return np.linalg.qr(A)[0].astype(A.dtype, copy=False)


def _right_vectors_randomized(X, w, mu, k, seed, n_iter=3, oversample=10):
    """Top-k right singular vectors and s^2 of diag(sqrt(w)) (X - mu) by a randomized range finder.

    The large products run in X's dtype; the small factorizations in float64.
    """
    rng = np.random.default_rng(seed)
    Xw = X if w is None and mu is None else np.vstack(list(_row_chunks(X, w, mu)))
    width = min(k + oversample, min(Xw.shape))
    Q = _orthonormal(Xw @ rng.standard_normal((Xw.shape[1], width)).astype(Xw.dtype))
    for _ in range(n_iter):
        Q = _orthonormal(Xw @ _orthonormal(Xw.T @ Q))
    B = (Q.T @ Xw).astype(np.float64)
    _, s, vt = np.linalg.svd(B, full_matrices=False)
    return vt[:k].T, s[:k] ** 2


def factorize(
    W: ArrayLike,
    rank: int | None = None,
    *,
    energy: float | None = None,
    max_error: float | None = None,
    method: Literal["svd", "randomized"] = "svd",
    row_weights: ArrayLike | None = None,
    center: bool = False,
    scale_into: Literal["table", "proj", "both"] = "table",
    seed: int | None = None,
    n_threads: int | None = None,
) -> Factorization:
    """Factorize an embedding table: ``W ~ bias + table @ proj``.

    Minimises ``sum_i w_i ||W_i - bias - (table @ proj)_i||^2`` over rank-r
    factors (Eckart-Young with row weights inside the fit).

    Parameters
    ----------
    W : array_like, shape (V, d)
        The trained table (float32 or float64; others are read as float64).
    rank : int, optional
        r, in [1, min(V, d)].
    energy : float in (0, 1], optional
        Choose the smallest r keeping this fraction of sum(s_k^2).
    max_error : float in [0, 1), optional
        Choose the smallest r with relative Frobenius error <= max_error
        (energy = 1 - max_error**2). Exactly one of rank, energy, max_error.
    method : {"svd", "randomized"}
        Exact (float64 Gram eigensolver) or randomized range finder.
    row_weights : array_like, shape (V,), optional
        w_i >= 0, e.g. token counts: frequent rows are reconstructed best.
    center : bool
        Fit ``W ~ 1 mu^T + E P``; mu (the weighted mean row) is returned as ``bias``.
    scale_into : {"table", "proj", "both"}
        Where the singular values go: ``table = U S, proj = V^T`` ("table"),
        ``table = U, proj = S V^T`` ("proj") or sqrt(S) on each ("both").
        U here is ``X V_r S^-1``; columns for s = 0 are left at 0.
    seed : int, optional
        Seed of the randomized method.
    n_threads : int, optional
        BLAS threads for this call.

    Returns
    -------
    Factorization
        table (V, r), proj (r, d), singular_values (r,), bias, relative_error, report.

    Raises
    ------
    ValueError
        Bad rank/energy/max_error (none or several given, out of range),
        NaN/inf in W, negative or misshaped weights, unknown method.
    """
    W, w = _validated(W, rank, energy, max_error, method, row_weights, scale_into)
    if max_error is not None:
        energy = 1.0 - max_error**2
    args = (w, rank, energy, method, center, scale_into, seed, n_threads)
    with blas_limit(resolve(n_threads)):
        try:
            return _factorize(W, *args)
        except _NeedsRescale as rescale:
            # W * 2**shift is exact; its factors, scaled back by 2**-shift, are W's.
            return _scaled(_factorize(np.ldexp(W, rescale.shift), *args), -rescale.shift)


def _factorize(W, w, rank, energy, method, center, scale_into, seed, n_threads):
    if method == "randomized":
        _check_magnitude(_peak(W), W.dtype)
    mu = np.average(W, axis=0, weights=w).astype(W.dtype) if center else None
    all_s2 = None
    w_norm2 = np.full(W.shape[0], np.nan)  # filled by the Gram pass where there is one
    if method == "svd":
        vr, all_s2 = _right_vectors_exact(W, w, mu, rank_chooser(rank, energy), w_norm2, n_threads)
        s2 = all_s2[: vr.shape[1]]
    elif rank is not None:
        vr, s2 = _right_vectors_randomized(W, w, mu, rank, seed)
    else:
        vr, s2 = _randomized_for_energy(W, w, mu, energy, seed)
    code = _codes(W, mu, vr, resolve(n_threads))
    c_norm2, s2 = _code_norms(code, w, n_threads)
    table, proj = _split_scale(code, vr, np.sqrt(s2), scale_into)
    tail = tail_energy(all_s2, s2)
    if mu is None:
        stats = orthonormal_row_stats(W, code, table, proj, n_threads=n_threads, w_norm2=w_norm2, c_norm2=c_norm2)
        report = report_from_stats(stats, w, tail)
    else:
        report = error_report(W, table, proj, mu, w, tail_energy=tail, n_threads=n_threads)
    return assemble(table, proj, s2, all_s2, mu, report, method, scale_into)


def rank_chooser(rank, energy):
    """s^2 (descending) -> the rank kept: ``rank`` when given, else the least reaching ``energy``."""
    return lambda s2: rank if rank is not None else rank_for_energy(s2, energy)


def tail_energy(all_s2, s2):
    """The energy a rank-r fit drops (the spectrum's sum past the kept s^2), None without the spectrum."""
    return None if all_s2 is None else max(float(all_s2.sum() - s2.sum()), 0.0)


def assemble(table, proj, s2, all_s2, bias, report, method, scale_into):
    """The Factorization of factors whose kept squared singular values are ``s2`` (``all_s2``: the
    whole spectrum when the method computed it), as ``fastembed.factorize`` and
    ``fastembed.dask.factorize`` both return it."""
    return Factorization(
        table=table,
        proj=proj,
        singular_values=np.sqrt(s2),
        bias=bias,
        relative_error=report.relative_error,
        report=report,
        method=method,
        scale_into=scale_into,
        all_singular_values=None if all_s2 is None else np.sqrt(all_s2),
    )


def _scaled(fac, shift):
    """``fac`` with W's scale multiplied by 2**shift (exact); relative errors are unchanged."""
    table_shift = {"table": shift, "proj": 0, "both": shift // 2}[fac.scale_into]
    return dataclasses.replace(
        fac,
        table=np.ldexp(fac.table, table_shift).astype(fac.table.dtype),
        proj=np.ldexp(fac.proj, shift - table_shift).astype(fac.proj.dtype),
        singular_values=np.ldexp(fac.singular_values, shift),
        bias=None if fac.bias is None else np.ldexp(fac.bias, shift).astype(fac.bias.dtype),
        all_singular_values=None if fac.all_singular_values is None else np.ldexp(fac.all_singular_values, shift),
    )


def _randomized_for_energy(X, w, mu, energy, seed):
    """Grow the randomized rank until the captured energy reaches ``energy`` of the (weighted) total."""
    total = float(np.trace(gram(X, w, mu)))
    limit = min(X.shape)
    k = min(32, limit)
    while True:
        vr, s2 = _right_vectors_randomized(X, w, mu, k, seed)
        cumulative = np.cumsum(s2) / total if total else np.ones_like(s2)
        if cumulative[-1] >= energy * (1 - 1e-12) or k == limit:
            r = int(min(np.searchsorted(cumulative, energy * (1 - 1e-12)) + 1, k))
            return vr[:, :r], s2[:r]
        k = min(2 * k, limit)


def _codes(W, mu, vr, n_threads=1):
    """(W - mu) @ V_r in W's dtype, centred by a rank-1 correction (no V x d temporary)."""
    from . import _pipeline, backends
    from ._workspace import fresh

    basis = np.ascontiguousarray(vr, dtype=W.dtype)
    code = fresh((W.shape[0], basis.shape[1]), W.dtype, n_threads)
    k = backends.kernels("auto")
    if k is not None and k.simd_width >= 256:
        # The fused kernel's AVX-512 tiles run this tall-skinny product about 2x faster than BLAS
        # (see KernelSet.fused_simd). The AVX2 tiles tie with it (Intel Xeon, FASTEMBED_SIMD=avx2,
        # MiniLM rank 128: 19-21 ms against OpenBLAS's Haswell kernels' 20-24), but OpenBLAS's
        # threads spin on after the call and slowed the OpenMP passes that follow: the whole exact
        # factorize took 120-130 ms with the codes from BLAS, 76-82 from the tiles.
        _pipeline.fused_rows(k, W, basis, code, n_threads)
    else:
        with blas_limit(n_threads):
            np.matmul(W, basis, out=code)
    if mu is not None:
        code -= mu @ basis
    return code


def _code_norms(code, w, n_threads=None, backend="auto"):
    """(||code_i||^2 per row, s_k^2 = sum_i w_i code_ik^2 per column), float64, in one pass."""
    from . import backends

    k = backends.kernels(backend)
    if k is None:
        return np.einsum("ij,ij->i", code, code, dtype=np.float64), _rayleigh_s2(code, w)
    n_threads = resolve(n_threads)
    rows = np.empty(code.shape[0])
    partial = np.zeros((n_threads, code.shape[1]))
    k.sq_norms(
        np.ascontiguousarray(code),
        None if w is None else np.ascontiguousarray(w, dtype=np.float64),
        rows,
        partial,
        n_threads,
    )
    return rows, partial.sum(axis=0)


def _rayleigh_s2(code, w):
    """s_k^2 = sum_i w_i code_ik^2: the Rayleigh quotients of the kept vectors, in float64.

    Their error is quadratic in the eigenvectors' error, so they are accurate
    even where a float32 Gram matrix blurred the small eigenvalues.
    """
    if w is None:
        return np.einsum("ij,ij->j", code, code, dtype=np.float64)
    return np.einsum("ij,ij,i->j", code, code, w, dtype=np.float64)


def _split_scale(code, vr, s, scale_into):
    """(table, proj) in the code's dtype with the singular values placed as ``scale_into`` says."""
    dtype = code.dtype
    if scale_into == "table":
        return code, np.ascontiguousarray(vr.T, dtype=dtype)
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    if scale_into == "proj":
        return code * inv.astype(dtype), np.ascontiguousarray(s[:, None] * vr.T, dtype=dtype)
    root = np.sqrt(s)
    return code * (inv * root).astype(dtype), np.ascontiguousarray(root[:, None] * vr.T, dtype=dtype)


def _row_stats_numpy(orig, recon, stats, n_threads):
    diff = orig.astype(np.float64) - recon
    stats[:, 0] = np.einsum("ij,ij->i", diff, diff)
    stats[:, 1] = np.einsum("ij,ij->i", orig, orig, dtype=np.float64)
    stats[:, 2] = np.einsum("ij,ij->i", recon, recon, dtype=np.float64)
    stats[:, 3] = np.einsum("ij,ij->i", orig, recon, dtype=np.float64)


def row_stats(W, table, proj, bias=None, backend="auto", n_threads=None):
    """(V, 4) float64: per row ||W_i - R_i||^2, ||W_i||^2, ||R_i||^2, W_i . R_i, with R = bias + table @ proj
    reconstructed by row blocks in the factors' dtype (what a lookup returns)."""
    from . import backends

    k = backends.kernels(backend)
    stats_of = _row_stats_numpy if k is None else k.row_error_stats
    n_threads = resolve(n_threads)
    W = np.asarray(W)
    table = np.asarray(table, dtype=W.dtype)
    proj = np.asarray(proj, dtype=W.dtype)
    n = W.shape[0]
    stats = np.empty((n, 4))
    recon = np.empty((min(CHUNK_ROWS, n), W.shape[1]), dtype=W.dtype)
    for start in range(0, n, CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        block = recon[: min(CHUNK_ROWS, n - start)]
        np.matmul(table[rows], proj, out=block)
        if bias is not None:
            block += bias
        stats_of(np.ascontiguousarray(W[rows]), block, stats[rows], n_threads)
    return stats


CANCELLATION_RATIO = 1e-3  # rows with ||W_i - R_i||^2 below this share of ||W_i||^2 are reconstructed


def orthonormal_row_stats(W, code, table, proj, backend="auto", n_threads=None, w_norm2=None, c_norm2=None):
    """:func:`row_stats` for factors whose projection has orthonormal rows up to a per-row scale
    (``table @ proj == code @ V^T`` with ``code = W @ V``, V orthonormal columns), without
    reconstructing W:

    ``||W_i - R_i||^2 = ||W_i||^2 - ||code_i||^2``, ``||R_i|| = ||code_i||``, ``W_i . R_i = ||code_i||^2``

    exact in exact arithmetic; in float64 from float32 data it is good to ~1e-7 of ||W_i||^2, so
    rows whose error is below 1e-3 of their norm (where that matters) are reconstructed and
    measured directly, and so is everything when more than a quarter of the rows are such.
    """
    if w_norm2 is None or np.isnan(w_norm2).any():
        w_norm2 = _row_sq_norms(W, backend, n_threads)
    if c_norm2 is None:
        c_norm2 = _row_sq_norms(code, backend, n_threads)
    stats = np.stack([np.maximum(w_norm2 - c_norm2, 0.0), w_norm2, c_norm2, c_norm2], axis=1)
    close = np.flatnonzero(stats[:, 0] < CANCELLATION_RATIO * w_norm2)
    if close.size > W.shape[0] // 4:
        return row_stats(W, table, proj, None, backend, n_threads)
    if close.size:
        stats[close] = row_stats(W[close], table[close], proj, None, backend, n_threads)
    return stats


def _row_sq_norms(x, backend="auto", n_threads=None):
    """Squared row norms accumulated in float64 (without a float64 copy of x)."""
    from . import backends

    k = backends.kernels(backend)
    x = np.ascontiguousarray(x)
    if k is None:
        return np.einsum("ij,ij->i", x, x, dtype=np.float64)
    out = np.empty(x.shape[0])
    k.row_sq_norms(x, out, resolve(n_threads))
    return out


def report_from_stats(stats, row_weights=None, tail_energy=None):
    """An ErrorReport from :func:`row_stats` (``tail_energy``: the dropped s^2, for the optimum)."""
    row_err2, row_norm2, recon_norm2, dots = np.asarray(stats).T
    weights = np.ones(row_err2.shape[0]) if row_weights is None else np.asarray(row_weights)
    norm2 = float(row_norm2.sum())
    weighted_norm2 = float((row_norm2 * weights).sum())
    nonzero = row_norm2 > 0
    both = nonzero & (recon_norm2 > 0)
    return ErrorReport(
        relative_error=_ratio(row_err2.sum(), norm2),
        weighted_relative_error=_ratio((row_err2 * weights).sum(), weighted_norm2),
        worst_row_error=float(np.sqrt((row_err2[nonzero] / row_norm2[nonzero]).max())) if nonzero.any() else 0.0,
        mean_cosine=float((dots[both] / np.sqrt(row_norm2[both] * recon_norm2[both])).mean())
        if both.any()
        else float("nan"),
        optimal_relative_error=None if tail_energy is None else _ratio(tail_energy, weighted_norm2),
    )


def error_report(
    W: ArrayLike,
    table: np.ndarray,
    proj: np.ndarray,
    bias: np.ndarray | None = None,
    row_weights: np.ndarray | None = None,
    tail_energy: float | None = None,
    backend: str = "auto",
    n_threads: int | None = None,
) -> ErrorReport:
    """Reconstruction errors of ``bias + table @ proj`` against W.

    By row blocks: the reconstruction in the factors' dtype (what a lookup
    returns), then one pass per block for the squared error, both squared
    norms and the dot product of each row, accumulated in float64.
    ``tail_energy`` (sum of the dropped s^2) gives ``optimal_relative_error``.
    """
    return report_from_stats(row_stats(W, table, proj, bias, backend, n_threads), row_weights, tail_energy)


def _ratio(err2, norm2):
    return float(np.sqrt(max(err2, 0.0) / norm2)) if norm2 else 0.0
