"""Numba mirror of _positional.pyx: each function computes what its Cython twin
of the same name computes, in the same order of operations, from the same arguments
(``n_threads`` last, set by the caller with numba.set_num_threads: see _rows_numba.py)."""

import numba as nb

from ._numba_jit import jit


@jit(parallel=True)
def sincos_rows(out, hi, lo, sin_hi, cos_hi, sin_lo, cos_lo, n_sin, n_cos, sin_col, cos_col, step, n_threads):
    """Angle-addition sin/cos columns; mirrors _positional.sincos_rows."""
    skipped = 0
    for n in nb.prange(out.shape[0]):
        h = hi[n]
        j = lo[n]
        if h < 0 or h >= sin_hi.shape[0] or j < 0 or j >= sin_lo.shape[0]:
            skipped += 1
            continue
        for i in range(n_cos):
            out[n, sin_col + i * step] = sin_hi[h, i] * cos_lo[j, i] + cos_hi[h, i] * sin_lo[j, i]
            out[n, cos_col + i * step] = cos_hi[h, i] * cos_lo[j, i] - sin_hi[h, i] * sin_lo[j, i]
        for i in range(n_cos, n_sin):
            out[n, sin_col + i * step] = sin_hi[h, i] * cos_lo[j, i] + cos_hi[h, i] * sin_lo[j, i]
    return skipped


@jit(parallel=True)
def rope_rows(x, out, table_rows, cos, sin, half, neox, period, n_threads):
    """Rotary rotation of each row; mirrors _positional.rope_rows (``period`` orders the Cython
    kernel's rows only: each row is rotated alike in any order)."""
    skipped = 0
    width = x.shape[1]
    for n in nb.prange(x.shape[0]):
        t = table_rows[n]
        if t < 0 or t >= cos.shape[0]:
            skipped += 1
            continue
        for i in range(half):
            if neox:
                p, q = i, i + half
            else:
                p, q = 2 * i, 2 * i + 1
            a = x[n, p]
            b = x[n, q]
            c = cos[t, i]
            s = sin[t, i]
            out[n, p] = a * c - b * s
            out[n, q] = b * c + a * s
        for j in range(2 * half, width):
            out[n, j] = x[n, j]
    return skipped
