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
include "_stream.pxi"

DEF ROPE_BLOCK = 512

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    /* One rotary row with unit column strides, compiled for AVX-512, AVX2 and the baseline and
       picked at load time where GCC can (as _rows.pyx's row epilogue); the module is built with
       -ffp-contract=off, so every version rounds each product and sum as the strided loop does.
       Rows r < n of x and o (row strides x_rs, o_rs elements) with table rows rows[r] of c and s
       (row stride t_rs); ``o`` is ``x`` (in place) or shares no element with it. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define FE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define FE_CLONES
    #endif
    #define FE_DEFINE_ROPE(NAME, T)                                                                 \
    FE_CLONES static void NAME##_neox(const T* x, ptrdiff_t x_rs, T* o, ptrdiff_t o_rs,               \
                                      const int64_t* rows, const T* c0, const T* s0, ptrdiff_t t_rs, \
                                      ptrdiff_t half, ptrdiff_t n) {                                 \
        for (ptrdiff_t r = 0; r < n; r++, x += x_rs, o += o_rs) {                                  \
            const T* c = c0 + rows[r] * t_rs;                                                      \
            const T* s = s0 + rows[r] * t_rs;                                                      \
            if (o == x) {                                                                          \
                T* y = o;                                                                          \
                for (ptrdiff_t i = 0; i < half; i++) {                                             \
                    T a = y[i], b = y[i + half];                                                   \
                    y[i] = a * c[i] - b * s[i];                                                    \
                    y[i + half] = b * c[i] + a * s[i];                                             \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            const T* __restrict xr = x;                                                            \
            T* __restrict orr = o;                                                                 \
            for (ptrdiff_t i = 0; i < half; i++) {                                                 \
                T a = xr[i], b = xr[i + half];                                                     \
                orr[i] = a * c[i] - b * s[i];                                                      \
                orr[i + half] = b * c[i] + a * s[i];                                               \
            }                                                                                      \
        }                                                                                          \
    }
    FE_DEFINE_ROPE(fe_rope_f32, float)
    FE_DEFINE_ROPE(fe_rope_f64, double)

    /* The same rows into contiguous output rows (o_rs = 2 half) with streaming stores: a few rows at
       a time rotated into a 4 KB stage that stays in L1, then streamed out (_stream.pxi), so the
       output's lines are not read first. Only whole 64-byte lines of the output are streamed from
       the stage; the bytes of a line the stage does not complete wait at its front for the next
       rows (numpy's large arrays start 16 bytes into a line: cut at row boundaries, every 4 KB
       stage left a line written by plain stores, each read from memory first, and RoPE (4, 32,
       1024, 128) took 4.8-5.5 ms against 2.3 for a streamed copy of its bytes on an Intel Xeon).
       Only the first and last line of the n rows take plain stores. Rows wider than FE_ROPE_STAGE_MAX take
       the plain path. */
    #define FE_ROPE_STAGE_MAX 4096
    /* A stage holds the rows of about FE_ROPE_STAGE bytes (at least one, of up to FE_ROPE_STAGE_MAX),
       and the x rows FE_ROPE_AHEAD bytes ahead are prefetched while it is rotated: the hardware
       prefetchers alone left the reads of x waiting behind the bursts of streaming stores (Intel
       Xeon, AVX-512, (4, 32, 1024, 128) float32, medians of interleaved runs: 2 threads 3.69 ms
       against 4.51 with 4 KB stages and no prefetch, a streamed copy of its bytes 3.32; one thread
       7.08 against 7.75, the copy 5.02; 4 KB ahead of 1 KB stages 3.81 / 6.80, 8 KB ahead of 2 KB
       stages 4.54 / 7.77). */
    #define FE_ROPE_STAGE 1024
    #define FE_ROPE_AHEAD 8192
    #define FE_DEFINE_ROPE_STREAM(NAME, T)                                                          \
    static void NAME##_neox_stream(const T* x, ptrdiff_t x_rs, T* o, const int64_t* rows,           \
                                   const T* c0, const T* s0, ptrdiff_t t_rs, ptrdiff_t half,         \
                                   ptrdiff_t n, int isa) {                                          \
        T stage[(FE_ROPE_STAGE_MAX + 64) / sizeof(T)] __attribute__((aligned(64)));                 \
        ptrdiff_t w = 2 * half, row_bytes = w * (ptrdiff_t)sizeof(T);                               \
        if (w < 1 || row_bytes > FE_ROPE_STAGE_MAX) { NAME##_neox(x, x_rs, o, w, rows, c0, s0, t_rs, half, n); return; } \
        ptrdiff_t per = row_bytes < FE_ROPE_STAGE ? FE_ROPE_STAGE / row_bytes : 1;                  \
        ptrdiff_t ahead = (FE_ROPE_AHEAD + row_bytes - 1) / row_bytes;                              \
        char* out = (char*)o;                                                                       \
        size_t lead = (64 - ((uintptr_t)out & 63)) & 63, written = 0, held = 0;                     \
        for (ptrdiff_t r = 0; r < n; r += per) {                                                    \
            ptrdiff_t k = n - r < per ? n - r : per;                                                \
            for (ptrdiff_t q = r + ahead; q < r + ahead + k && q < n; q++)                            \
                for (ptrdiff_t b = 0; b < row_bytes; b += 64)                                           \
                    __builtin_prefetch((const char*)(x + q * x_rs) + b);                                \
            NAME##_neox(x + r * x_rs, x_rs, (T*)((char*)stage + held), w, rows + r, c0, s0, t_rs,   \
                        half, k);                                                                   \
            held += (size_t)(k * w) * sizeof(T);                                                    \
            size_t upto = written + held;                                                           \
            if (r + k < n)                                                                          \
                upto = upto > lead ? lead + (upto - lead) / 64 * 64 : written;                      \
            if (upto > written) {                                                                   \
                fe_stream_copy(out + written, stage, upto - written, isa);                          \
                held -= upto - written;                                                             \
                memmove(stage, (char*)stage + (upto - written), held);                              \
                written = upto;                                                                     \
            }                                                                                       \
        }                                                                                           \
    }
    FE_DEFINE_ROPE_STREAM(fe_rope_f32, float)
    FE_DEFINE_ROPE_STREAM(fe_rope_f64, double)
    """
    void fe_rope_f32_neox(const float* x, Py_ssize_t x_rs, float* o, Py_ssize_t o_rs, const int64_t* rows,
                          const float* c, const float* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n) noexcept nogil
    void fe_rope_f64_neox(const double* x, Py_ssize_t x_rs, double* o, Py_ssize_t o_rs, const int64_t* rows,
                          const double* c, const double* s, Py_ssize_t t_rs, Py_ssize_t half,
                          Py_ssize_t n) noexcept nogil
    void fe_rope_f32_neox_stream(const float* x, Py_ssize_t x_rs, float* o, const int64_t* rows, const float* c,
                                 const float* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n, int isa) noexcept nogil
    void fe_rope_f64_neox_stream(const double* x, Py_ssize_t x_rs, double* o, const int64_t* rows, const double* c,
                                 const double* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n, int isa) noexcept nogil


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
    cdef bint unit = (width <= 1 or (x.strides[1] == sizeof(real) and out.strides[1] == sizeof(real)))
    cdef bint apart = True
    if unit and width > 0:  # rows of out and x either coincide or share no element
        apart = (&out[0, 0] == &x[0, 0] and out.strides[0] == x.strides[0]) or _disjoint_rows(x, out)
    if neox and unit and apart and half > 0 and cos.shape[1] == sin.shape[1]:
        with nogil:
            for n in range(n_rows):
                if table_rows[n] < 0 or table_rows[n] >= n_table:
                    skipped += 1
        if skipped:
            return skipped
        _rope_blocks(x, out, table_rows, cos, sin, half, n_threads)
        return 0
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


cdef void _rope_blocks(const real[:, :] x, real[:, :] out, const int64_t[::1] table_rows,
                       const real[:, ::1] cos, const real[:, ::1] sin, Py_ssize_t half, int n_threads):
    """The neox rotation over unit-stride rows in blocks of ROPE_BLOCK rows, one C call each
    (a call per row cost as much as the rotation of a 128-wide row); the tail columns copied."""
    cdef Py_ssize_t n_rows = x.shape[0], width = x.shape[1], x_rs = x.strides[0] // <Py_ssize_t>sizeof(real)
    cdef Py_ssize_t o_rs = out.strides[0] // <Py_ssize_t>sizeof(real), t_rs = cos.shape[1]
    cdef Py_ssize_t n_blocks = (n_rows + ROPE_BLOCK - 1) // ROPE_BLOCK, blk, r0, m, n, j
    cdef bint copy_tail = 2 * half < width and &out[0, 0] != &x[0, 0]
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    cdef int stream = 0
    if 2 * half == width and o_rs == width and &out[0, 0] != &x[0, 0]:  # whole rows, one after the other
        stream = _stream_for(&out[0, 0], <double>n_rows * width * sizeof(real), sizeof(real))
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for blk in prange(n_blocks, schedule="guided"):
            r0 = blk * ROPE_BLOCK
            m = min(<Py_ssize_t>ROPE_BLOCK, n_rows - r0)
            if real is float and stream:
                fe_rope_f32_neox_stream(&x[r0, 0], x_rs, &out[r0, 0], &table_rows[r0], &cos[0, 0], &sin[0, 0],
                                        t_rs, half, m, stream)
            elif real is float:
                fe_rope_f32_neox(&x[r0, 0], x_rs, &out[r0, 0], o_rs, &table_rows[r0], &cos[0, 0], &sin[0, 0],
                                 t_rs, half, m)
            elif stream:
                fe_rope_f64_neox_stream(&x[r0, 0], x_rs, &out[r0, 0], &table_rows[r0], &cos[0, 0], &sin[0, 0],
                                        t_rs, half, m, stream)
            else:
                fe_rope_f64_neox(&x[r0, 0], x_rs, &out[r0, 0], o_rs, &table_rows[r0], &cos[0, 0], &sin[0, 0],
                                 t_rs, half, m)
            if copy_tail:
                for n in range(r0, r0 + m):
                    for j in range(2 * half, width):
                        out[n, j] = x[n, j]
        if stream:
            fe_store_fence()


cdef bint _disjoint_rows(const real[:, :] x, real[:, :] out) noexcept:
    """True when no row of ``out`` overlaps a row of ``x`` other than in the same place: the
    two blocks of memory are apart."""
    cdef const char* x0 = <const char*>&x[0, 0]
    cdef const char* o0 = <const char*>&out[0, 0]
    cdef const char* x_lo = x0 + min(0, (x.shape[0] - 1) * x.strides[0])
    cdef const char* x_hi = x0 + max(0, (x.shape[0] - 1) * x.strides[0]) + x.shape[1] * sizeof(real)
    cdef const char* o_lo = o0 + min(0, (out.shape[0] - 1) * out.strides[0])
    cdef const char* o_hi = o0 + max(0, (out.shape[0] - 1) * out.strides[0]) + out.shape[1] * sizeof(real)
    return x_hi <= o_lo or o_hi <= x_lo
