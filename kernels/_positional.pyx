"""Positional-encoding kernels (mirrored in _positional_numba.py).

sincos_rows fills sin/cos columns by angle addition: with p = hi*B + lo,
sin(p w) = sin(hi B w) cos(lo w) + cos(hi B w) sin(lo w), from small float64
tables computed exactly by the caller, so every value is float64-accurate at
any position and the pass is bound by memory writes. rope_rows applies the
rotary rotation in one read and one write per element.
"""

from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t

include "_common.pxi"


def sincos_rows(real[:, ::1] out, const int64_t[::1] hi, const int64_t[::1] lo,
                const double[:, ::1] sin_hi, const double[:, ::1] cos_hi,
                const double[:, ::1] sin_lo, const double[:, ::1] cos_lo,
                Py_ssize_t n_sin, Py_ssize_t n_cos, Py_ssize_t sin_col, Py_ssize_t cos_col,
                Py_ssize_t step, int n_threads):
    """out[n, sin_col + i*step] = sin(p_n w_i) for i < n_sin, out[n, cos_col + i*step] = cos(p_n w_i) for i < n_cos,
    where the tables hold sin/cos(hi B w) at row hi[n] and sin/cos(lo w) at row lo[n].

    Returns the number of rows skipped for a table index out of range (the caller validates: 0).
    """
    cdef Py_ssize_t n_rows = out.shape[0], width = out.shape[1], n, i, h, l
    cdef Py_ssize_t n_hi = sin_hi.shape[0], n_lo = sin_lo.shape[0]
    cdef Py_ssize_t skipped = 0
    cdef const double* sh
    cdef const double* ch
    cdef const double* sl
    cdef const double* cl
    cdef real* o
    if n_rows == 0:
        return 0
    if (hi.shape[0] != n_rows or lo.shape[0] != n_rows
            or sin_hi.shape[1] < n_sin or sin_lo.shape[1] < n_sin or n_cos > n_sin
            or cos_hi.shape[0] != n_hi or cos_lo.shape[0] != n_lo
            or (n_sin > 0 and sin_col + (n_sin - 1) * step >= width)
            or (n_cos > 0 and cos_col + (n_cos - 1) * step >= width)):
        raise ValueError("sincos_rows: shape mismatch")
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_rows, schedule="guided"):
            h = hi[n]
            l = lo[n]
            if h < 0 or h >= n_hi or l < 0 or l >= n_lo:
                skipped += 1
                continue
            sh = &sin_hi[h, 0]
            ch = &cos_hi[h, 0]
            sl = &sin_lo[l, 0]
            cl = &cos_lo[l, 0]
            o = &out[n, 0]
            for i in range(n_cos):
                o[sin_col + i * step] = <real>(sh[i] * cl[i] + ch[i] * sl[i])
                o[cos_col + i * step] = <real>(ch[i] * cl[i] - sh[i] * sl[i])
            for i in range(n_cos, n_sin):
                o[sin_col + i * step] = <real>(sh[i] * cl[i] + ch[i] * sl[i])
    return skipped


def rope_rows(const real[:, :] x, real[:, :] out, const int64_t[::1] table_rows,
              const real[:, ::1] cos, const real[:, ::1] sin, Py_ssize_t half, bint neox, int n_threads):
    """Rotary embedding of each row: with c, s = cos/sin[table_rows[n]],

    neox (rotate halves): (x[i], x[i+half]) -> (x[i] c_i - x[i+half] s_i, x[i+half] c_i + x[i] s_i)
    gptj (rotate pairs):  (x[2i], x[2i+1]) -> (x[2i] c_i - x[2i+1] s_i, x[2i+1] c_i + x[2i] s_i)

    for i < half; columns from 2*half on are copied. ``out`` may be ``x`` (in place).
    Rows and columns may have any strides. Returns the number of rows skipped (0).
    """
    cdef Py_ssize_t n_rows = x.shape[0], width = x.shape[1], n, i, j, t
    cdef Py_ssize_t n_table = cos.shape[0]
    cdef Py_ssize_t skipped = 0
    cdef real a, b, c, s
    if n_rows == 0:
        return 0
    if (out.shape[0] != n_rows or out.shape[1] != width or table_rows.shape[0] != n_rows
            or 2 * half > width or cos.shape[1] < half or sin.shape[1] < half or sin.shape[0] != n_table):
        raise ValueError("rope_rows: shape mismatch")
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_rows, schedule="guided"):
            t = table_rows[n]
            if t < 0 or t >= n_table:
                skipped += 1
                continue
            if neox:
                for i in range(half):
                    a = x[n, i]
                    b = x[n, i + half]
                    c = cos[t, i]
                    s = sin[t, i]
                    out[n, i] = a * c - b * s
                    out[n, i + half] = b * c + a * s
            else:
                for i in range(half):
                    a = x[n, 2 * i]
                    b = x[n, 2 * i + 1]
                    c = cos[t, i]
                    s = sin[t, i]
                    out[n, 2 * i] = a * c - b * s
                    out[n, 2 * i + 1] = b * c + a * s
            if &out[n, 0] != &x[n, 0]:
                for j in range(2 * half, width):
                    out[n, j] = x[n, j]
    return skipped
