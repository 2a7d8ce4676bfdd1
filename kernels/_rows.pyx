"""Row kernels behind fastembed's lookups (mirrored in _rows_numba.py).

Every function here trusts its caller (fastembed/_pipeline.py) for shapes and
dtypes; the only check kept is an index bound per row, so that a wrong index
from any caller skips the row and is counted instead of reading out of bounds.
The GIL is released around every loop; OpenMP threads when built with it.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport sqrt
from libc.stdint cimport int8_t, int32_t, int64_t, uint16_t
from libc.stdlib cimport free, malloc

import numpy as np

include "_common.pxi"
include "_buffers.pxi"
include "_stream.pxi"
include "_emit.pxi"

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTEMBED_HAVE_OPENMP 1
    #else
    #define FASTEMBED_HAVE_OPENMP 0
    #endif
    """
    int FASTEMBED_HAVE_OPENMP


def openmp_enabled():
    """True when this module was compiled with OpenMP."""
    return bool(FASTEMBED_HAVE_OPENMP)


def gather_rows(const real[:, :] src, const index_t[::1] rows, double scale,
                const real[::1] bias, const real[:, :] pos, const int64_t[::1] pos_rows,
                real[:, ::1] out, int n_threads):
    """out[n, :] = src[rows[n], :] * scale + bias + pos[pos_rows[n], :].

    ``bias`` and ``pos``/``pos_rows`` are optional (None). ``src`` and ``pos``
    may have any strides. Returns the number of rows skipped because an index
    was outside its table (the caller validates, so this is 0).
    """
    cdef Py_ssize_t n_out = out.shape[0], d = out.shape[1]
    cdef Py_ssize_t n_src = src.shape[0], n_pos = 0
    cdef Py_ssize_t s_rs = 0, s_cs = 1, p_rs = 0, p_cs = 1
    cdef const real* s0 = NULL
    cdef const real* p0 = NULL
    cdef const real* b0 = NULL
    cdef real sc = <real>scale
    cdef Py_ssize_t n, r, q
    cdef Py_ssize_t skipped = 0
    if n_out == 0 or d == 0:
        return 0
    if rows.shape[0] != n_out or src.shape[1] != d:
        raise ValueError("gather_rows: shape mismatch")
    s0 = &src[0, 0]
    s_rs = src.strides[0] // <Py_ssize_t>sizeof(real)
    s_cs = src.strides[1] // <Py_ssize_t>sizeof(real)
    _check_terms("gather_rows", bias, pos, pos_rows, n_out, d)
    if bias is not None:
        b0 = &bias[0]
    if pos is not None:
        n_pos = pos.shape[0]
        p0 = &pos[0, 0]
        p_rs = pos.strides[0] // <Py_ssize_t>sizeof(real)
        p_cs = pos.strides[1] // <Py_ssize_t>sizeof(real)
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    cdef int stream = _stream_for(&out[0, 0], <double>n_out * d * sizeof(real), sizeof(real))
    if stream and s_cs == 1 and (p0 == NULL or p_cs == 1):
        return _gather_runs(s0, s_rs, n_src, &rows[0], sc, b0, p0, p_rs, n_pos,
                            &pos_rows[0] if p0 != NULL else NULL, &out[0, 0], n_out, d, stream, n_threads)
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_out, schedule="guided"):
            r = rows[n]
            if r < 0 or r >= n_src:
                skipped += 1
                continue
            if p0 != NULL:
                q = pos_rows[n]
                if q < 0 or q >= n_pos:
                    skipped += 1
                    continue
                _emit_row(&out[n, 0], s0 + r * s_rs, s_cs, sc, b0, p0 + q * p_rs, p_cs, d, stream)
            else:
                _emit_row(&out[n, 0], s0 + r * s_rs, s_cs, sc, b0, <const real*>NULL, 1, d, stream)
        if stream:
            fe_store_fence()
    return skipped


DEF RUN_ROWS = 64  # output rows per streamed run


cdef Py_ssize_t _gather_runs(const real* s0, Py_ssize_t s_rs, Py_ssize_t n_src, const index_t* rows, real sc,
                             const real* b0, const real* p0, Py_ssize_t p_rs, Py_ssize_t n_pos,
                             const int64_t* pos_rows, real* out, Py_ssize_t n_out, Py_ssize_t d, int stream,
                             int n_threads) except -1:
    """gather_rows with streaming stores over unit-stride rows: blocks of RUN_ROWS output rows, each
    one run of _emit_run (its shared lines streamed too: the real-text gather of 16384 rows of 3 KB,
    16 bytes into a line, took 1.52-1.59 ms against 1.69 row by row on an Intel Xeon). A block with
    an index outside its table is skipped row by row, as gather_rows skips."""
    cdef Py_ssize_t n_blocks = (n_out + RUN_ROWS - 1) // RUN_ROWS, blk, i0, i1, n, r, q, skipped = 0, bad
    cdef const real** row_ptrs = <const real**>malloc(2 * RUN_ROWS * max(1, n_threads) * sizeof(real*))
    cdef const real** srows
    cdef const real** prows
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    if row_ptrs == NULL:
        raise MemoryError()
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        srows = row_ptrs + 2 * RUN_ROWS * threadid()  # each thread's own
        prows = srows + RUN_ROWS
        for blk in prange(n_blocks, schedule="guided"):
            i0 = blk * RUN_ROWS
            i1 = min(n_out, i0 + RUN_ROWS)
            bad = 0
            for n in range(i0, i1):
                r = rows[n]
                q = pos_rows[n] if p0 != NULL else 0
                srows[n - i0] = prows[n - i0] = NULL  # NULL source: a row skipped
                if r < 0 or r >= n_src or (p0 != NULL and (q < 0 or q >= n_pos)):
                    bad = bad + 1
                    continue
                srows[n - i0] = s0 + r * s_rs
                prows[n - i0] = p0 + q * p_rs if p0 != NULL else NULL
            if bad:
                skipped += bad
                for n in range(i0, i1):
                    if srows[n - i0] != NULL:
                        _emit_row(out + n * d, srows[n - i0], 1, sc, b0, prows[n - i0], 1, d, stream)
            else:
                _emit_run(out + i0 * d, i1 - i0, d, srows, prows if p0 != NULL else NULL, sc, b0, stream)
        fe_store_fence()
    free(row_ptrs)
    return skipped


# The latency path of fastembed.lookup (fastembed/_lookup.py::_fast_dense decides when it may run), as
# _project.pyx's project_call is factorized_lookup's: it accepts only calls it can prove valid from the
# buffers alone and returns None for every other one, which then takes the general path.

def gather_call(ids, table, scale, pos, out, double max_bytes, threads_for, bias=None, offset=0, position_ids=None):
    """``out = table[ids] * scale + bias + pos[offset + l]`` (l the position along the last axis of
    ids), or ``+ pos[position_ids]`` when those are given, when every argument is a C-contiguous
    numpy array of the simple case, else None.

    The simple case: ids int32/int64 of at least one dimension, every id in [0, V); table (V, d) of
    a float dtype; bias None or (d,) of that dtype; pos None (and offset 0) or (n_pos, d) of that
    dtype with offset + L <= n_pos, offset a Python int >= 0; out None (a fresh array is returned)
    or writable, of shape ids.shape + (d,) and the table's dtype, sharing no memory with any input;
    ``scale`` a float or int; at most ``max_bytes`` of output (one kernel call, uninterruptible by
    Ctrl-C); position_ids None, or int32/int64 of ids' shape, every one in [0, n_pos), with pos
    given and offset 0. The rows are gather_rows' (the same values bit for bit). The ids and
    position ids are copied and checked before the kernel reads them. ``threads_for(n_elements)``
    gives the thread count (an int ``threads_for`` is the count itself). Anything else, or an out-of-range id: None, with nothing written.
    """
    cdef Py_buffer bi, bt, bq, bb, bo, bn
    cdef bint has_i = False, has_t = False, has_q = False, has_b = False, has_o = False, has_n = False
    cdef Py_ssize_t n, L, V, d, first
    cdef int64_t* rows = NULL
    cdef int64_t* q_rows = NULL
    cdef int kind, n_threads
    cdef double sc
    if not _simple_arguments(ids, table, pos, out, bias, scale, &sc):
        return None
    try:
        has_i = _get_buffer(ids, &bi, False)
        has_t = has_i and _get_buffer(table, &bt, False)
        if not has_t or not _get_term_buffers(pos, bias, out, &bq, &bb, &bo, &has_q, &has_b, &has_o):
            return None
        kind = _buffer_kind(&bt)
        if not _is_ids(&bi) or bt.ndim != 2 or (kind != FE_F32 and kind != FE_F64):
            return None
        V, d = bt.shape[0], bt.shape[1]
        L = bi.shape[bi.ndim - 1]
        n = bi.len // bi.itemsize
        if n == 0 or d == 0 or <double>n * d * bt.itemsize > max_bytes:
            return None
        first = _terms_fit(bias, offset, &bi, &bq, has_q, &bb, has_b, &bo, has_o, d, kind)
        if first < 0 or (has_o and not _apart(&bo, &bt)):
            return None
        if not _position_ids_fit(position_ids, offset, &bn, &has_n, &bi, has_q, &bo, has_o):
            return None
        rows = <int64_t*>malloc((2 if has_n else 1) * n * sizeof(int64_t))
        if rows == NULL or not _copy_ids(&bi, rows, n, V):
            return None
        if has_n:
            q_rows = rows + n
            if not _copy_ids(&bn, q_rows, n, bq.shape[0]):
                return None
        if not has_o:
            result = np.empty(tuple(bi.shape[k] for k in range(bi.ndim)) + (d,), dtype=table.dtype)
            PyObject_GetBuffer(result, &bo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
            has_o = True
        else:
            result = out
        n_threads = _thread_count(threads_for, n * d)
        if kind == FE_F64:
            _gather_simple(<const double*>bt.buf, rows, <double>sc, <const double*>bb.buf if has_b else NULL,
                           <const double*>bq.buf + first * d if has_q else NULL, q_rows, L, <double*>bo.buf, n, d,
                           n_threads)
        else:
            _gather_simple(<const float*>bt.buf, rows, <float>sc, <const float*>bb.buf if has_b else NULL,
                           <const float*>bq.buf + first * d if has_q else NULL, q_rows, L, <float*>bo.buf, n, d,
                           n_threads)
        return result
    finally:
        free(rows)
        _release(&bi, has_i)
        _release(&bt, has_t)
        _release(&bq, has_q)
        _release(&bo, has_o)
        _release(&bn, has_n)


cdef void _gather_simple(const real* table, const int64_t* rows, real scale, const real* bias, const real* pos,
                         const int64_t* q_rows, Py_ssize_t L, real* out, Py_ssize_t n, Py_ssize_t d,
                         int n_threads) noexcept:
    # out[i] = table[rows[i]] * scale + bias + pos[q_rows[i]] (q_rows NULL: pos[i % L]), unit
    # strides, rows and q_rows already checked
    cdef Py_ssize_t i
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    cdef int stream = _stream_for(out, <double>n * d * sizeof(real), sizeof(real))
    if n_threads == 1:  # no parallel region: libgomp spends a futex call (0.3 us) on a team of one
        with nogil:
            for i in range(n):
                _simple_row(table, rows, scale, bias, pos, q_rows, L, out, d, stream, i)
            if stream:
                fe_store_fence()
        return
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for i in prange(n, schedule="guided"):
            _simple_row(table, rows, scale, bias, pos, q_rows, L, out, d, stream, i)
        if stream:
            fe_store_fence()


cdef inline void _simple_row(const real* table, const int64_t* rows, real scale, const real* bias, const real* pos,
                             const int64_t* q_rows, Py_ssize_t L, real* out, Py_ssize_t d, int stream,
                             Py_ssize_t i) noexcept nogil:
    """Row i of _gather_simple."""
    _emit_row(out + i * d, table + rows[i] * d, 1, scale, bias,
              <const real*>NULL if pos == NULL else pos + (q_rows[i] if q_rows != NULL else i % L) * d,
              1, d, stream)


def finish_rows(real[:, ::1] out, double scale, const real[::1] bias,
                const real[:, :] pos, const int64_t[::1] pos_rows, int n_threads):
    """In place: out[n, :] = out[n, :] * scale + bias + pos[pos_rows[n], :].

    The epilogue of the direct path, where the projection was written
    straight into ``out``. Returns the number of rows skipped (see gather_rows).
    """
    cdef Py_ssize_t n_out = out.shape[0], d = out.shape[1], n_pos = 0
    cdef Py_ssize_t p_rs = 0, p_cs = 1, n, q
    cdef const real* p0 = NULL
    cdef const real* b0 = NULL
    cdef real sc = <real>scale
    cdef Py_ssize_t skipped = 0
    if n_out == 0 or d == 0:
        return 0
    _check_terms("finish_rows", bias, pos, pos_rows, n_out, d)
    if bias is not None:
        b0 = &bias[0]
    if pos is not None:
        n_pos = pos.shape[0]
        p0 = &pos[0, 0]
        p_rs = pos.strides[0] // <Py_ssize_t>sizeof(real)
        p_cs = pos.strides[1] // <Py_ssize_t>sizeof(real)
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_out, schedule="guided"):
            if p0 != NULL:
                q = pos_rows[n]
                if q < 0 or q >= n_pos:
                    skipped += 1
                    continue
                _emit_row(&out[n, 0], &out[n, 0], 1, sc, b0, p0 + q * p_rs, p_cs, d)
            else:
                _emit_row(&out[n, 0], &out[n, 0], 1, sc, b0, <const real*>NULL, 1, d)
    return skipped


def dedupe(const index_t[::1] ids, index_t[::1] marker, index_t[::1] uniq, index_t[::1] remap):
    """First-seen order dedupe in O(N): uniq[:U] are the distinct ids, ids[n] == uniq[remap[n]].

    ``marker`` has one slot per table row and must hold -1 everywhere on entry;
    it is restored to -1 on return so a caller may reuse it. Returns U, or -1
    if an id is outside the marker (nothing is then guaranteed about uniq/remap).
    """
    cdef Py_ssize_t n_ids = ids.shape[0], n_rows = marker.shape[0]
    cdef Py_ssize_t n, k, u = 0
    cdef index_t i, m
    if uniq.shape[0] < n_ids or remap.shape[0] < n_ids:
        raise ValueError("dedupe: output too small")
    with nogil:
        for n in range(n_ids):
            i = ids[n]
            if i < 0 or i >= n_rows:
                u = -1
                break
            m = marker[i]
            if m < 0:
                m = <index_t>u
                marker[i] = m
                uniq[u] = i
                u += 1
            remap[n] = m
        if u < 0:
            for k in range(n_rows):
                marker[k] = -1
        else:
            for k in range(u):
                marker[uniq[k]] = -1
    return u


def row_error_stats(const real[:, ::1] orig, const real[:, ::1] recon, double[:, ::1] stats, int n_threads):
    """Per row, in float64: stats[n] = (||o - r||^2, ||o||^2, ||r||^2, o . r), o = orig[n], r = recon[n]."""
    cdef Py_ssize_t n_rows = orig.shape[0], d = orig.shape[1], n, j
    cdef double e, a, b, c, x, y
    if recon.shape[0] != n_rows or recon.shape[1] != d or stats.shape[0] != n_rows or stats.shape[1] != 4:
        raise ValueError("row_error_stats: shape mismatch")
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_rows, schedule="guided"):
            e = 0
            a = 0
            b = 0
            c = 0
            for j in range(d):
                x = orig[n, j]
                y = recon[n, j]
                e = e + (x - y) * (x - y)
                a = a + x * x
                b = b + y * y
                c = c + x * y
            stats[n, 0] = e
            stats[n, 1] = a
            stats[n, 2] = b
            stats[n, 3] = c


def gather_sum_layernorm(const real[:, :] word, const index_t[::1] ids,
                         const real[:, :] token_type, const int64_t[::1] type_rows,
                         const real[:, :] pos, const int64_t[::1] pos_rows,
                         const real[::1] gamma, const real[::1] beta, double eps,
                         real[:, ::1] out, int n_threads):
    """BERT/ALBERT embedding block, one pass per row:

    v = (word[ids[n]] + token_type[type_rows[n]]) + pos[pos_rows[n]]
    out[n] = (v - mean(v)) / sqrt(var(v) + eps) * gamma + beta

    (the order of the additions is transformers'; mean and variance accumulate
    in float64). Returns the number of rows skipped for an index out of range (0).
    """
    cdef Py_ssize_t n_out = out.shape[0], d = out.shape[1], n, j, r, t, q
    cdef Py_ssize_t skipped = 0
    cdef double mean, var, inv, x
    if n_out == 0 or d == 0:
        return 0
    if (ids.shape[0] != n_out or type_rows.shape[0] != n_out or pos_rows.shape[0] != n_out
            or word.shape[1] != d or token_type.shape[1] != d or pos.shape[1] != d
            or gamma.shape[0] != d or beta.shape[0] != d):
        raise ValueError("gather_sum_layernorm: shape mismatch")
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_out, schedule="guided"):
            r = ids[n]
            t = type_rows[n]
            q = pos_rows[n]
            if r < 0 or r >= word.shape[0] or t < 0 or t >= token_type.shape[0] or q < 0 or q >= pos.shape[0]:
                skipped += 1
                continue
            mean = 0
            for j in range(d):
                out[n, j] = (word[r, j] + token_type[t, j]) + pos[q, j]
                mean = mean + out[n, j]
            mean = mean / d
            var = 0
            for j in range(d):
                x = out[n, j] - mean
                var = var + x * x
            inv = 1.0 / sqrt(var / d + eps)
            for j in range(d):
                out[n, j] = <real>((out[n, j] - mean) * inv) * gamma[j] + beta[j]
    return skipped


include "_dequant.pxi"


ctypedef fused compact_t:
    int8_t
    uint16_t


def gather_dequant(const compact_t[:, :] src, const index_t[::1] rows, const float[::1] row_scale,
                   const float[::1] row_offset, int kind, float[:, ::1] out, int n_threads):
    """out[n, :] = dequant(src[rows[n], :]) in float32.

    kind 0 (int8 codes): code * row_scale[r] + row_offset[r]; kind 1: float16 bits;
    kind 2: bfloat16 bits. Returns the number of rows skipped for an index out of range (0).
    """
    cdef Py_ssize_t n_out = out.shape[0], d = out.shape[1], n_src = src.shape[0], n, j, r
    cdef Py_ssize_t skipped = 0
    cdef float a, b
    if n_out == 0 or d == 0:
        return 0
    if rows.shape[0] != n_out or src.shape[1] != d:
        raise ValueError("gather_dequant: shape mismatch")
    if compact_t is int8_t:
        if kind != 0 or row_scale is None or row_offset is None or row_scale.shape[0] != n_src \
                or row_offset.shape[0] != n_src:
            raise ValueError("gather_dequant: int8 codes need a scale and offset per row")
    elif kind != 1 and kind != 2:
        raise ValueError("gather_dequant: uint16 tables are float16 (1) or bfloat16 (2)")
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_out, schedule="guided"):
            r = rows[n]
            if r < 0 or r >= n_src:
                skipped += 1
                continue
            if compact_t is int8_t:
                a = row_scale[r]
                b = row_offset[r]
                for j in range(d):
                    out[n, j] = <float>src[r, j] * a + b
            else:
                if kind == 1:
                    for j in range(d):
                        out[n, j] = fastembed_half_to_float(src[r, j])
                else:
                    for j in range(d):
                        out[n, j] = fastembed_bf16_to_float(src[r, j])
    return skipped


def stream_probe(unsigned char[::1] dst, const unsigned char[::1] src, int n_threads):
    """dst[:] = src[:] (or 0 where ``src`` is None) with streaming stores, dst cut into one part
    per thread: timed by the caller, the memory probe of the report's write and copy bounds (a
    streamed line goes to memory without first being read, as the kernels write large outputs).
    Returns the streaming ISA (512, 256, or 0 for plain stores)."""
    cdef Py_ssize_t n = dst.shape[0], part, t, lo
    if src is not None and src.shape[0] != n:
        raise ValueError("stream_probe: shape mismatch")
    if n == 0:
        return _STREAM_ISA
    cdef unsigned char* d0 = &dst[0]
    cdef const unsigned char* s0 = &src[0] if src is not None else NULL
    part = (n + n_threads - 1) // n_threads
    for t in prange(n_threads, nogil=True, schedule="static", chunksize=1, num_threads=n_threads):
        lo = t * part
        if lo < n:
            fe_stream_copy(d0 + lo, s0 + lo if s0 != NULL else NULL, <size_t>min(part, n - lo), _STREAM_ISA)
            fe_store_fence()
    return _STREAM_ISA


def row_sq_norms(const real[:, ::1] x, double[::1] out, int n_threads):
    """out[n] = sum_j x[n, j]^2, accumulated in float64 (four interleaved partial sums)."""
    cdef Py_ssize_t n_rows = x.shape[0], d = x.shape[1], n
    if out.shape[0] != n_rows:
        raise ValueError("row_sq_norms: shape mismatch")
    if n_rows == 0:
        return
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for n in prange(n_rows, schedule="guided"):
            out[n] = _sq_sum(&x[n, 0], d) if d > 0 else 0


def sq_norms(const real[:, ::1] x, const double[::1] weights, double[::1] row_out, double[:, ::1] col_partial,
             int n_threads):
    """One pass over x: row_out[n] = sum_j x[n, j]^2 and, per thread t, col_partial[t, j] =
    sum over its rows of w[n] * x[n, j]^2 (w = 1 when ``weights`` is None), in float64.

    ``col_partial`` has one zeroed row per thread; the caller sums it over axis 0.
    """
    cdef Py_ssize_t n_rows = x.shape[0], d = x.shape[1], n, j, t, lo, hi, chunk
    cdef Py_ssize_t n_parts = col_partial.shape[0]
    cdef double v, w
    cdef double* cols
    cdef const real* row
    if row_out.shape[0] != n_rows or col_partial.shape[1] != d or n_parts < 1:
        raise ValueError("sq_norms: shape mismatch")
    if weights is not None and weights.shape[0] != n_rows:
        raise ValueError("sq_norms: weights shape mismatch")
    if d == 0:
        row_out[:] = 0
        return
    chunk = (n_rows + n_parts - 1) // n_parts
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for t in prange(n_parts, schedule="static"):
            lo = t * chunk
            hi = lo + chunk
            if hi > n_rows:
                hi = n_rows
            # The row's sum as _sq_sum adds it (four chains: one chain waits on each addition), the
            # columns' in a loop of independent lanes: MiniLM's 30522 x 128 codes 1.9-3.0 -> 1.3-1.5
            # ms (Zen 4)
            cols = &col_partial[t, 0]
            for n in range(lo, hi):
                w = 1.0 if weights is None else weights[n]
                row = &x[n, 0]
                row_out[n] = _sq_sum(row, d)
                for j in range(d):
                    v = row[j]
                    cols[j] = cols[j] + w * (v * v)
