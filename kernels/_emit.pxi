# Included by the kernel modules that write gathered rows (Cython `include`, after _common.pxi and
# _stream.pxi): the row epilogue o = s * scale + b + p, with plain or streaming stores.

cdef extern from *:
    """
    #include <stddef.h>
    /* The unit-stride row epilogue, compiled for AVX-512, AVX2 and the baseline and picked at load
       time where GCC can (ifunc on Linux x86-64); elsewhere one baseline version. The module is
       built with -ffp-contract=off, so every version rounds s * scale, + b, + p separately. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define FE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define FE_CLONES
    #endif
    #define FE_DEFINE_ROW(NAME, T)                                                                   \
    FE_CLONES static void NAME(T* o, const T* s, T scale, const T* b, const T* p, ptrdiff_t d) {    \
        ptrdiff_t j;                                                                                \
        if (b && p) { for (j = 0; j < d; j++) o[j] = s[j] * scale + b[j] + p[j]; }                  \
        else if (b) { for (j = 0; j < d; j++) o[j] = s[j] * scale + b[j]; }                         \
        else if (p) { for (j = 0; j < d; j++) o[j] = s[j] * scale + p[j]; }                         \
        else { for (j = 0; j < d; j++) o[j] = s[j] * scale; }                                       \
    }
    FE_DEFINE_ROW(fe_row_f32, float)
    FE_DEFINE_ROW(fe_row_f64, double)

    /* The same rows written with streaming stores (_stream.pxi): the same arithmetic in the same
       order as FE_DEFINE_ROW, so the same bits; plain stores up to the first and after the last
       64-byte boundary of the row. */
    #define FE_ROW_TERM(j) (b && p ? s[j] * scale + b[j] + p[j] : b ? s[j] * scale + b[j] : p ? s[j] * scale + p[j] : s[j] * scale)
    #define FE_DEFINE_STREAM(NAME, T, ISA, V, LANES, SET1, LOAD, MUL, ADD, STREAM)                     \
    __attribute__((target(ISA))) static void NAME(T* o, const T* s, T scale, const T* b, const T* p,  \
                                                  ptrdiff_t d) {                                       \
        ptrdiff_t j = 0, head = (ptrdiff_t)(((64 - ((uintptr_t)o & 63)) & 63) / sizeof(T));            \
        V vs = SET1(scale);                                                                            \
        if (head > d) head = d;                                                                        \
        for (; j < head; j++) o[j] = FE_ROW_TERM(j);                                                   \
        for (; j + LANES <= d; j += LANES) {                                                           \
            V v = MUL(LOAD(s + j), vs);                                                                \
            if (b) v = ADD(v, LOAD(b + j));                                                            \
            if (p) v = ADD(v, LOAD(p + j));                                                            \
            STREAM(o + j, v);                                                                          \
        }                                                                                              \
        for (; j < d; j++) o[j] = FE_ROW_TERM(j);                                                      \
    }
    #if FE_STREAM_X86
    FE_DEFINE_STREAM(fe_stream512_f32, float, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_add_ps, _mm512_stream_ps)
    FE_DEFINE_STREAM(fe_stream512_f64, double, "avx512f", __m512d, 8, _mm512_set1_pd, _mm512_loadu_pd, _mm512_mul_pd, _mm512_add_pd, _mm512_stream_pd)
    FE_DEFINE_STREAM(fe_stream256_f32, float, "avx", __m256, 8, _mm256_set1_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_add_ps, _mm256_stream_ps)
    FE_DEFINE_STREAM(fe_stream256_f64, double, "avx", __m256d, 4, _mm256_set1_pd, _mm256_loadu_pd, _mm256_mul_pd, _mm256_add_pd, _mm256_stream_pd)
    #else
    static void fe_stream512_f32(float* o, const float* s, float scale, const float* b, const float* p, ptrdiff_t d) {}
    static void fe_stream512_f64(double* o, const double* s, double scale, const double* b, const double* p, ptrdiff_t d) {}
    static void fe_stream256_f32(float* o, const float* s, float scale, const float* b, const float* p, ptrdiff_t d) {}
    static void fe_stream256_f64(double* o, const double* s, double scale, const double* b, const double* p, ptrdiff_t d) {}
    #endif
    static void fe_stream_row_f32(int isa, float* o, const float* s, float scale, const float* b, const float* p, ptrdiff_t d) {
        if (isa >= 512) fe_stream512_f32(o, s, scale, b, p, d); else fe_stream256_f32(o, s, scale, b, p, d);
    }
    static void fe_stream_row_f64(int isa, double* o, const double* s, double scale, const double* b, const double* p, ptrdiff_t d) {
        if (isa >= 512) fe_stream512_f64(o, s, scale, b, p, d); else fe_stream256_f64(o, s, scale, b, p, d);
    }
    """
    void fe_row_f32(float* o, const float* s, float scale, const float* b, const float* p,
                    Py_ssize_t d) noexcept nogil
    void fe_row_f64(double* o, const double* s, double scale, const double* b, const double* p,
                    Py_ssize_t d) noexcept nogil
    void fe_stream_row_f32(int isa, float* o, const float* s, float scale, const float* b, const float* p,
                           Py_ssize_t d) noexcept nogil
    void fe_stream_row_f64(int isa, double* o, const double* s, double scale, const double* b, const double* p,
                           Py_ssize_t d) noexcept nogil


cdef int _check_terms(str kernel, const real[::1] bias, const real[:, :] pos, const int64_t[::1] pos_rows,
                      Py_ssize_t n, Py_ssize_t d) except -1:
    """ValueError("<kernel>: bias/position shape mismatch") unless ``bias`` (or None) holds d values
    and ``pos`` (or None) d columns, with a ``pos_rows`` entry for each of the n output rows."""
    if bias is not None and bias.shape[0] != d:
        raise ValueError(f"{kernel}: bias shape mismatch")
    if pos is not None and (pos_rows is None or pos_rows.shape[0] != n or pos.shape[1] != d):
        raise ValueError(f"{kernel}: position shape mismatch")
    return 0


cdef inline void _emit_row(real* o, const real* s, Py_ssize_t s_step, real scale,
                           const real* b, const real* p, Py_ssize_t p_step,
                           Py_ssize_t d, int stream=0) noexcept nogil:
    # o[j] = s[j] * scale + b[j] + p[j]; b and p may be NULL (absent). stream: _stream_for's ISA.
    cdef Py_ssize_t j
    if s_step == 1 and p_step == 1 and stream:
        if real is float:
            fe_stream_row_f32(stream, o, s, scale, b, p, d)
        else:
            fe_stream_row_f64(stream, o, s, scale, b, p, d)
    elif s_step == 1 and p_step == 1:
        if real is float:
            fe_row_f32(o, s, scale, b, p, d)
        else:
            fe_row_f64(o, s, scale, b, p, d)
    else:
        for j in range(d):
            o[j] = s[j * s_step] * scale
        if b != NULL:
            for j in range(d):
                o[j] = o[j] + b[j]
        if p != NULL:
            for j in range(d):
                o[j] = o[j] + p[j * p_step]


cdef inline const real* _from(const real* row, Py_ssize_t j) noexcept nogil:
    """row + j, or NULL for an absent row."""
    return row + j if row != NULL else NULL


cdef void _emit_run(real* out, Py_ssize_t n, Py_ssize_t d, const real** srows, const real** prows, real scale,
                    const real* b, int stream) noexcept nogil:
    """out[i, :] = srows[i][:d] * scale + b + prows[i][:d] for n rows lying one after the other
    (``prows`` or ``b`` NULL: absent), with streaming stores (``stream``: _stream_for's ISA) for every
    64-byte line of the run, including the lines two rows share: those are assembled first. Only the
    bytes before the run's first line boundary and after its last take plain stores. _emit_row
    streams a row's whole lines only and writes its partial ones with plain stores, each a read
    from memory first when rows start inside lines (numpy's large arrays start 16 bytes into one):
    on an Intel Xeon the real-text gather of 16384 rows of 3 KB took 1.69 ms so against 1.43
    into 64-byte-aligned rows. Every piece is written by _emit_row: the same values and bits."""
    cdef Py_ssize_t lanes = 64 // <Py_ssize_t>sizeof(real), i, k, a, m, start = -1
    cdef Py_ssize_t head = <Py_ssize_t>(((64 - (<size_t>out & 63)) & 63) // sizeof(real))
    cdef real line[16]
    cdef const real* s
    cdef const real* p
    for i in range(n):
        s, p, a = srows[i], (prows[i] if prows != NULL else NULL), i * d
        k = a
        if k < head:  # before the first line boundary: plain
            m = min(a + d, head) - k
            _emit_row(out + k, s, 1, scale, b, p, 1, m, 0)
            k += m
        if start >= 0 and k < a + d:  # completing a line the previous rows began
            m = min(a + d, start + lanes) - k
            _emit_row(line + (k - start), s + (k - a), 1, scale, _from(b, k - a), _from(p, k - a), 1, m, 0)
            k += m
            if k - start == lanes:
                fe_stream_copy(out + start, line, 64, stream)
                start = -1
        m = (a + d - k) // lanes * lanes  # whole lines
        if m:
            _emit_row(out + k, s + (k - a), 1, scale, _from(b, k - a), _from(p, k - a), 1, m, stream)
            k += m
        if k < a + d:  # the row's last elements begin a line
            start = k
            _emit_row(line, s + (k - a), 1, scale, _from(b, k - a), _from(p, k - a), 1, a + d - k, 0)
    if start >= 0:  # a line the run does not complete: plain
        for k in range(start, n * d):
            out[k] = line[k - start]
