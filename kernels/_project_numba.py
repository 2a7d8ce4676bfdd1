"""Numba mirror of _project.pyx: ``project_rows`` computes what its Cython twin
computes with ``simd=False`` (the portable loop): per output row, sums over k
ascending accumulated in the row itself, then scale, bias and position.

Tests (tests/test_parity.py) check it against the Cython kernel within float
rounding: whether a multiply-add is fused differs between compilers.
"""

import numba as nb
import numpy as np

from ._numba_jit import jit


@jit(parallel=True)
def project_rows(table, rows, proj, scale, bias, pos, pos_rows, out, simd, n_threads):
    """out[n, :] = (table[rows[n], :] @ proj) * scale + bias + pos[pos_rows[n], :]; mirrors _project.project_rows.

    ``rows`` None means rows[n] == n. Returns the number of out-of-range indices; when it is not 0
    nothing was written. ``simd`` is accepted for the shared signature and ignored (this is the
    portable loop); ``n_threads`` is set by the caller, see _rows_numba.py.
    """
    sc = out.dtype.type(scale)
    n, d = out.shape
    r = table.shape[1]
    bad = 0
    if rows is not None:
        for i in range(n):
            if rows[i] < 0 or rows[i] >= table.shape[0]:
                bad += 1
    if pos is not None:
        for i in range(n):
            if pos_rows[i] < 0 or pos_rows[i] >= pos.shape[0]:
                bad += 1
    if bad:
        return bad
    for i in nb.prange(n):
        e = table[i] if rows is None else table[rows[i]]
        o = out[i]
        o[:] = 0
        for k in range(r):
            x = e[k]
            p = proj[k]
            for j in range(d):
                o[j] = o[j] + x * p[j]
        for j in range(d):
            o[j] = o[j] * sc
        if bias is not None:
            for j in range(d):
                o[j] = o[j] + bias[j]
        if pos is not None:
            q = pos[pos_rows[i]]
            for j in range(d):
                o[j] = o[j] + q[j]
    return 0


def warm_up():
    """Compile the common signatures now (float32/float64, int32/int64 rows, with and without terms)."""
    for dtype in (np.float32, np.float64):
        table = np.zeros((2, 3), dtype)
        proj = np.zeros((3, 4), dtype)
        out = np.empty((2, 4), dtype)
        bias = np.zeros(4, dtype)
        pos = np.zeros((2, 4), dtype)
        pos_rows = np.zeros(2, np.int64)
        for itype in (np.int32, np.int64):
            rows = np.zeros(2, itype)
            project_rows(table, rows, proj, 1.0, None, None, None, out, 0, 1)
            project_rows(table, rows, proj, 1.0, bias, pos, pos_rows, out, 0, 1)
        project_rows(table, None, proj, 1.0, None, None, None, out, 0, 1)
