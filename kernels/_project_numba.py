"""Numba mirror of _project.pyx: ``project_rows``, ``project_distinct``,
``project_gather`` and ``gram_rows`` compute what their Cython twins compute
with ``simd=0`` (the portable loop): per output row, sums over k ascending
accumulated in the row itself, then scale, bias and position; the Gram
matrix's upper triangle by chunks of rows. ``project_gather`` runs its two
passes one after the other (the Cython kernel pipelines them).

Tests (tests/test_parity.py) check it against the Cython kernel within float
rounding: whether a multiply-add is fused differs between compilers.
"""

import numba as nb
import numpy as np

from ._numba_jit import given, jit
from ._rows_numba import _emit_row, _sq_sum


@jit()
def _count_outside(index, limit):
    """How many entries of ``index`` lie outside [0, limit)."""
    bad = 0
    for i in range(index.shape[0]):
        if index[i] < 0 or index[i] >= limit:
            bad += 1
    return bad


@jit()
def _project_row(e, proj, sc, bias, o):
    """o = (e @ proj) * sc + bias, summed over k ascending in ``o`` itself (the portable loop)."""
    d = o.shape[0]
    o[:] = 0
    for k in range(proj.shape[0]):
        x = e[k]
        p = proj[k]
        for j in range(d):
            o[j] = o[j] + x * p[j]
    for j in range(d):
        o[j] = o[j] * sc
    if bias is not None and given(bias):
        for j in range(d):
            o[j] = o[j] + bias[j]


@jit(parallel=True)
def project_rows(table, rows, proj, scale, bias, pos, pos_rows, out, whole_bytes, simd, n_threads):
    """out[n, :] = (table[rows[n], :] @ proj) * scale + bias + pos[pos_rows[n], :]; mirrors _project.project_rows.

    ``rows`` None means rows[n] == n. Returns the number of out-of-range indices; when it is not 0
    nothing was written. ``whole_bytes`` (the size streaming stores are chosen by) and ``simd`` are
    accepted for the shared signature and ignored (this is the portable loop, with plain stores);
    ``n_threads`` is set by the caller, see _rows_numba.py.
    """
    sc = out.dtype.type(scale)
    n, d = out.shape
    bad = 0
    if rows is not None:
        bad += _count_outside(rows, table.shape[0])
    if pos is not None and given(pos):
        bad += _count_outside(pos_rows, pos.shape[0])
    if bad:
        return bad
    for i in nb.prange(n):
        o = out[i]
        _project_row(table[i] if rows is None else table[rows[i]], proj, sc, bias, o)
        if pos is not None and given(pos):
            q = pos[pos_rows[i]]
            for j in range(d):
                o[j] = o[j] + q[j]
    return 0


@jit(parallel=True)
def project_distinct(table, uniq, remap, proj, scale, bias, pos, pos_rows, out, simd, n_threads):
    """out[n, :] = (table[uniq[remap[n]], :] @ proj) * scale + bias + pos[pos_rows[n], :], each
    distinct row projected once; mirrors _project.project_distinct.

    ``uniq`` None means uniq[u] == u. Rows n with remap[n] outside [0, U) are left untouched.
    Returns the number of out-of-range indices (uniq or pos_rows); when it is not 0 nothing was
    written. Each distinct row is summed as project_rows sums a row, then copied to its rows.
    """
    sc = out.dtype.type(scale)
    n, d = out.shape
    n_distinct = table.shape[0] if uniq is None else uniq.shape[0]
    if n == 0 or d == 0 or n_distinct == 0:
        return 0
    bad = 0
    if uniq is not None:
        bad += _count_outside(uniq, table.shape[0])
    if pos is not None and given(pos):
        bad += _count_outside(pos_rows, pos.shape[0])
    if bad:
        return bad
    projected = np.zeros((n_distinct, d), out.dtype)
    for u in nb.prange(n_distinct):
        _project_row(table[u] if uniq is None else table[uniq[u]], proj, sc, bias, projected[u])
    for i in nb.prange(n):
        u = remap[i]
        if u < 0 or u >= n_distinct:
            continue
        o = out[i]
        y = projected[u]
        if pos is not None and given(pos):
            q = pos[pos_rows[i]]
            for j in range(d):
                o[j] = y[j] + q[j]
        else:
            for j in range(d):
                o[j] = y[j]
    return 0


@jit(parallel=True)
def project_gather(table, uniq, remap, proj, scale, bias, pos, pos_rows, projected, out, simd, n_threads):
    """projected[u, :] = table[uniq[u], :] @ proj, then out[n, :] = projected[remap[n], :] * scale
    + bias + pos[pos_rows[n], :]; mirrors _project.project_gather (as two passes).

    Returns the number of out-of-range indices (uniq, remap or pos_rows); when it is not 0 nothing
    was written.
    """
    sc = out.dtype.type(scale)
    one = out.dtype.type(1.0)
    n, d = out.shape
    if n == 0 or d == 0:
        return 0
    bad = _count_outside(uniq, table.shape[0]) + _count_outside(remap, uniq.shape[0])
    if pos is not None and given(pos):
        bad += _count_outside(pos_rows, pos.shape[0])
    if bad:
        return bad
    for u in nb.prange(uniq.shape[0]):
        _project_row(table[uniq[u]], proj, one, None, projected[u])
    for i in nb.prange(n):
        if pos is None or not given(pos):
            _emit_row(out[i], projected[remap[i]], sc, bias, None)
        else:
            _emit_row(out[i], projected[remap[i]], sc, bias, pos[pos_rows[i]])
    return 0


GRAM_CHUNK = 256  # as _project.pyx


@jit(parallel=True)
def gram_rows(x, gram, row_norms, simd, n_threads):
    """gram += x^T x (d x d, float64); mirrors _project.gram_rows: the upper triangle summed over
    chunks of GRAM_CHUNK rows in x's dtype (k ascending), each chunk's sums added in float64,
    then mirrored; ``row_norms`` (unless None) receives each row's sum of squares as
    row_sq_norms sums it. ``simd`` is accepted for the shared signature and ignored."""
    n, d = x.shape
    if row_norms is not None:
        for i in nb.prange(n):
            row_norms[i] = _sq_sum(x[i])
    for c in range(0, n, GRAM_CHUNK):
        stop = min(c + GRAM_CHUNK, n)
        for i in nb.prange(d):
            for j in range(i, d):
                s = x.dtype.type(0)
                for k in range(c, stop):
                    s = s + x[k, i] * x[k, j]
                gram[i, j] += s
    for i in range(d):
        for j in range(i):
            gram[i, j] = gram[j, i]
    return 0


def warm_up():
    """Compile the common signatures now (float32/float64; absent terms reach the kernels as empty
    arrays of the same types, see _numba_jit.ABSENT_AS_EMPTY, and index arrays as int64, see
    fastembed.backends._one_index_type)."""
    for dtype in (np.float32, np.float64):
        table = np.zeros((2, 3), dtype)
        proj = np.zeros((3, 4), dtype)
        out = np.empty((2, 4), dtype)
        bias = np.zeros(4, dtype)
        pos = np.zeros((2, 4), dtype)
        rows = pos_rows = np.zeros(2, np.int64)
        project_rows(table, rows, proj, 1.0, bias, pos, pos_rows, out, 0.0, 0, 1)
        project_distinct(table, rows, rows, proj, 1.0, bias, pos, pos_rows, out, 0, 1)
        project_gather(table, rows, rows, proj, 1.0, bias, pos, pos_rows, out.copy(), out, 0, 1)
        project_rows(table, None, proj, 1.0, bias, pos, pos_rows, out, 0.0, 0, 1)
