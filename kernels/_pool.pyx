"""Bag kernels behind fastembed.pooled_lookup (mirrored in _pool_numba.py).

A bag is the run of tokens ``offsets[b] .. offsets[b + 1] - 1`` of the flat ids.
The caller (fastembed/_pooled.py) validates everything; the kernel still checks
every offset and index it reads, and skips (and counts) what is outside, so no
caller can make it read out of bounds. One OpenMP task per bag, guided schedule
(bags differ in length, and a busy core should not hold back the others).
"""

from cython.parallel cimport parallel, prange
from libc.math cimport sqrt, INFINITY
from libc.stdint cimport INT64_MAX, int8_t, int32_t, int64_t, uint16_t

include "_common.pxi"
include "_dequant.pxi"

cdef extern from *:
    """
    #include <stddef.h>
    /* Unit-stride accumulation, compiled for AVX-512, AVX2 and the baseline, picked at load time
       where GCC can (see _rows.pyx); the module is built with -ffp-contract=off, so every version
       rounds w * s and the sum separately, as the Numba mirror does. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define FE_POOL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define FE_POOL_CLONES
    #endif
    #define FE_DEFINE_POOL(SUFFIX, T)                                                               \
    FE_POOL_CLONES static void fe_add_##SUFFIX(T* o, const T* s, T w, ptrdiff_t d) {              \
        ptrdiff_t j;                                                                            \
        for (j = 0; j < d; j++) o[j] = o[j] + w * s[j];                                         \
    }                                                                                           \
    FE_POOL_CLONES static void fe_max_##SUFFIX(T* o, const T* s, T w, ptrdiff_t d) {              \
        ptrdiff_t j;                                                                            \
        for (j = 0; j < d; j++) { T v = w * s[j]; o[j] = (v > o[j] || v != v) ? v : o[j]; }      \
    }
    FE_DEFINE_POOL(f32, float)
    FE_DEFINE_POOL(f64, double)
    """
    void fe_add_f32(float* o, const float* s, float w, Py_ssize_t d) noexcept nogil
    void fe_add_f64(double* o, const double* s, double w, Py_ssize_t d) noexcept nogil
    void fe_max_f32(float* o, const float* s, float w, Py_ssize_t d) noexcept nogil
    void fe_max_f64(double* o, const double* s, double w, Py_ssize_t d) noexcept nogil


ctypedef fused table_t:
    float
    double
    int8_t
    uint16_t

cdef enum:
    MODE_SUM = 0
    MODE_MEAN = 1
    MODE_SQRTN = 2
    MODE_MAX = 3
    KIND_INT8 = 0
    KIND_FLOAT16 = 1


cdef inline void _accumulate(real* o, const table_t* row, Py_ssize_t step, Py_ssize_t d, real w,
                             bint take_max, int kind, float a, float b) noexcept nogil:
    # o = o + w * row, or o = max(o, w * row) (NaN propagates), elementwise; a compact row is
    # dequantized to float32 first (int8: code * a + b).
    cdef Py_ssize_t j
    cdef real v
    if (table_t is float and real is float) or (table_t is double and real is double):
        if step == 1:
            if take_max:
                if real is float:
                    fe_max_f32(o, <const float*>row, w, d)
                else:
                    fe_max_f64(o, <const double*>row, w, d)
            elif real is float:
                fe_add_f32(o, <const float*>row, w, d)
            else:
                fe_add_f64(o, <const double*>row, w, d)
            return
    for j in range(d):
        if table_t is int8_t:
            v = w * <real>(<float>row[j * step] * a + b)
        elif table_t is uint16_t:
            if kind == KIND_FLOAT16:
                v = w * <real>fastembed_half_to_float(row[j * step])
            else:
                v = w * <real>fastembed_bf16_to_float(row[j * step])
        else:
            v = w * <real>row[j * step]
        if take_max:
            if v > o[j] or v != v:
                o[j] = v
        else:
            o[j] = o[j] + v


cdef inline void _finish(real* o, Py_ssize_t d, real divide, real scale, const real* bias,
                         bint normalize) noexcept nogil:
    # o = (o / divide) * scale + bias, then o / ||o|| (norm in float64) when normalize and ||o|| > 0.
    cdef Py_ssize_t j
    cdef double norm = 0
    for j in range(d):
        o[j] = (o[j] / divide) * scale
    if bias != NULL:
        for j in range(d):
            o[j] = o[j] + bias[j]
    if normalize:
        for j in range(d):
            norm = norm + <double>o[j] * <double>o[j]
        if norm > 0:
            norm = sqrt(norm)
            for j in range(d):
                o[j] = <real>(o[j] / norm)


def pool_rows(real[:, ::1] out, const table_t[:, :] table, const float[::1] row_scale,
              const float[::1] row_offset, int kind, const index_t[::1] ids, const int64_t[::1] offsets,
              bint per_token_rows, const real[::1] weights, const real[::1] token_weights,
              const int64_t[::1] token_map, int64_t padding_idx, int mode, double scale,
              const real[::1] bias, bint normalize, int n_threads):
    """Pool the rows of each bag into out[b] (``out`` comes first: Cython picks the dtype of
    the fused ``real`` arguments from it, the others may be None).

    For bag b, over its tokens n (offsets[b] <= n < offsets[b + 1]) whose id ``ids[n]`` is not
    ``padding_idx`` (-1: none), with ``w_n = weights[n] * token_weights[ids[n]]`` (each optional)
    and ``row_n = table[n]`` if ``per_token_rows`` else ``table[token_map[ids[n]]]`` (or
    ``table[ids[n]]`` without a map), count = the number of such tokens:

    - mode 0 (sum): s = sum of w_n * row_n; 1 (mean): s / count; 2 (sqrtn): s / sqrt(count);
      3 (max): the elementwise max of w_n * row_n (0 for an empty bag);
    - out[b] = s * scale + bias, then divided by its L2 norm when ``normalize`` (and nonzero).

    ``table``: float32/float64 rows, or compact rows (kind 0: int8 codes * row_scale + row_offset;
    1: float16 bits; 2: bfloat16 bits). Accumulation is in the output dtype. Returns the number of
    bags skipped for an offset, id or row outside its range (0 after validation): their rows are 0.
    """
    cdef Py_ssize_t n_bags = out.shape[0], d = out.shape[1], n_ids = ids.shape[0]
    cdef Py_ssize_t n_rows = table.shape[0]
    # the bound of the ids where they index something: the token map, the token weights, the table
    cdef int64_t n_vocab = token_map.shape[0] if token_map is not None else n_rows
    cdef Py_ssize_t t_rs = table.strides[0] // <Py_ssize_t>sizeof(table_t)
    cdef Py_ssize_t t_cs = table.strides[1] // <Py_ssize_t>sizeof(table_t)
    cdef const table_t* t0 = NULL
    cdef const real* b0 = NULL
    cdef const real* w0 = NULL
    cdef const real* tw0 = NULL
    cdef const int64_t* map0 = NULL
    cdef const float* rs0 = NULL
    cdef const float* ro0 = NULL
    cdef bint take_max = mode == MODE_MAX
    cdef Py_ssize_t b, n, j, start, end, count, row, bad
    cdef int64_t token
    cdef real w, divide
    cdef float qa, qb
    cdef Py_ssize_t skipped = 0
    if n_bags == 0 or d == 0:
        return 0
    if offsets.shape[0] != n_bags + 1 or table.shape[1] != d:
        raise ValueError("pool_rows: shape mismatch")
    if per_token_rows:
        n_vocab = INT64_MAX  # row n is table[n]: the ids only decide padding and token weights
        if token_map is not None or n_rows < n_ids:
            raise ValueError("pool_rows: per-token rows need one table row per id and no token map")
    if token_weights is not None and token_weights.shape[0] < n_vocab:
        n_vocab = token_weights.shape[0]
    if weights is not None:
        if weights.shape[0] != n_ids:
            raise ValueError("pool_rows: weights shape mismatch")
        w0 = &weights[0] if n_ids else NULL
    if table_t is int8_t:
        if row_scale is None or row_offset is None or row_scale.shape[0] != n_rows or row_offset.shape[0] != n_rows:
            raise ValueError("pool_rows: int8 rows need a scale and an offset per row")
        if n_rows:
            rs0 = &row_scale[0]
            ro0 = &row_offset[0]
    if n_rows:
        t0 = &table[0, 0]
    if bias is not None:
        if bias.shape[0] != d:
            raise ValueError("pool_rows: bias shape mismatch")
        b0 = &bias[0]
    if token_weights is not None and token_weights.shape[0]:
        tw0 = &token_weights[0]
    if token_map is not None and token_map.shape[0]:
        map0 = &token_map[0]
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for b in prange(n_bags, schedule="guided"):
            start = offsets[b]
            end = offsets[b + 1]
            bad = start < 0 or end < start or end > n_ids
            for j in range(d):
                out[b, j] = -INFINITY if take_max else 0
            count = 0
            n = start
            while n < end and not bad:
                token = ids[n]
                if token == padding_idx:
                    n = n + 1
                    continue
                if token < 0 or token >= n_vocab:
                    bad = 1
                    break
                row = n if per_token_rows else (map0[token] if map0 != NULL else token)
                if row < 0 or row >= n_rows:
                    bad = 1
                    break
                w = 1
                if w0 != NULL:
                    w = w0[n]
                if tw0 != NULL:
                    w = w * tw0[token]
                qa = 1
                qb = 0
                if table_t is int8_t:
                    qa = rs0[row]
                    qb = ro0[row]
                _accumulate(&out[b, 0], t0 + row * t_rs, t_cs, d, w, take_max, kind, qa, qb)
                count = count + 1
                n = n + 1
            if bad:
                skipped += 1
                for j in range(d):
                    out[b, j] = 0
                continue
            divide = 1
            if count == 0:
                for j in range(d):
                    out[b, j] = 0
            elif mode == MODE_MEAN:
                divide = <real>count
            elif mode == MODE_SQRTN:
                divide = <real>sqrt(<double>count)
            _finish(&out[b, 0], d, divide, <real>scale, b0, normalize)
    return skipped


def finish_pooled(real[:, ::1] out, double scale, const real[::1] bias, bint normalize, int n_threads):
    """In place, per row: out[b] = out[b] * scale + bias, then L2-normalized when ``normalize``
    (the epilogue of a factorized bag, after its pooled r-wide row was projected)."""
    cdef Py_ssize_t n_bags = out.shape[0], d = out.shape[1], b
    cdef const real* b0 = NULL
    if n_bags == 0 or d == 0:
        return
    if bias is not None:
        if bias.shape[0] != d:
            raise ValueError("finish_pooled: bias shape mismatch")
        b0 = &bias[0]
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for b in prange(n_bags, schedule="guided"):
            _finish(&out[b, 0], d, 1, <real>scale, b0, normalize)
