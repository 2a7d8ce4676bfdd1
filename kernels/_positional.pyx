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
DEF ROPE_TABLE_CACHED = 32768

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
    #define FE_ROPE_PLAIN_ROW(T, x, o, c, s, half)                                                  \
        if (o == x) {                                                                              \
            T* y = o;                                                                              \
            for (ptrdiff_t i = 0; i < half; i++) {                                                 \
                T a = y[i], b = y[i + half];                                                       \
                y[i] = a * c[i] - b * s[i];                                                        \
                y[i + half] = b * c[i] + a * s[i];                                                 \
            }                                                                                      \
        } else {                                                                                   \
            const T* __restrict xr = x;                                                            \
            T* __restrict orr = o;                                                                 \
            for (ptrdiff_t i = 0; i < half; i++) {                                                 \
                T a = xr[i], b = xr[i + half];                                                     \
                orr[i] = a * c[i] - b * s[i];                                                      \
                orr[i + half] = b * c[i] + a * s[i];                                               \
            }                                                                                      \
        }
    /* NAME##_neox_groups: the rows of ``groups`` heads (x_gs, o_gs, rows_gs apart) row index by
       row index, as the direct kernel below does and for the same reason (the table rows one head
       read are in L1 for the next). Zen 4, 2 threads, best of 30 interleaved, two runs: float32
       (1, 32, 1024, 128) in place 0.30-0.31 ms against 0.42-0.54 one head at a time, into a
       buffer 0.48-0.71 against 0.60-0.83; (1, 8, 4096, 128) 0.31 against 0.43-0.45 and 0.47-0.51
       against 0.60-0.63; float64 in place 1.15-1.26 against 1.37-1.45, into a buffer level
       (2.37-2.63 against 2.31-2.59); (1, 32, 256, 128), whose table stays in L1 anyway, level. */
    #define FE_DEFINE_ROPE(NAME, T)                                                                 \
    FE_CLONES static void NAME##_neox(const T* x, ptrdiff_t x_rs, T* o, ptrdiff_t o_rs,               \
                                      const int64_t* rows, const T* c0, const T* s0, ptrdiff_t t_rs, \
                                      ptrdiff_t half, ptrdiff_t n) {                                 \
        for (ptrdiff_t r = 0; r < n; r++, x += x_rs, o += o_rs) {                                  \
            const T* c = c0 + rows[r] * t_rs;                                                      \
            const T* s = s0 + rows[r] * t_rs;                                                      \
            FE_ROPE_PLAIN_ROW(T, x, o, c, s, half)                                                 \
        }                                                                                          \
    }                                                                                              \
    FE_CLONES static void NAME##_neox_groups(const T* x, ptrdiff_t x_rs, ptrdiff_t x_gs, T* o,       \
                                             ptrdiff_t o_rs, ptrdiff_t o_gs, const int64_t* rows,    \
                                             ptrdiff_t rows_gs, const T* c0, const T* s0,            \
                                             ptrdiff_t t_rs, ptrdiff_t half, ptrdiff_t n, int groups) { \
        for (ptrdiff_t r = 0; r < n; r++)                                                          \
            for (int g = 0; g < groups; g++) {                                                     \
                const T* xg = x + g * x_gs + r * x_rs;                                             \
                T* og = o + g * o_gs + r * o_rs;                                                   \
                const T* c = c0 + rows[g * rows_gs + r] * t_rs;                                    \
                const T* s = s0 + rows[g * rows_gs + r] * t_rs;                                    \
                FE_ROPE_PLAIN_ROW(T, xg, og, c, s, half)                                           \
            }                                                                                      \
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
    #define FE_ROPE_DIRECT_AHEAD 16384
    static inline void fe_prefetch_row(const void* row, ptrdiff_t row_bytes) {  /* each 64-byte line of a row of x */
        for (ptrdiff_t b = 0; b < row_bytes; b += 64) __builtin_prefetch((const char*)row + b);
    }
    static inline void fe_prefetch_row_l2(const void* row, ptrdiff_t row_bytes) {  /* the same into L2 (prefetcht2) */
        for (ptrdiff_t b = 0; b < row_bytes; b += 64) __builtin_prefetch((const char*)row + b, 0, 1);
    }
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
                fe_prefetch_row(x + q * x_rs, row_bytes);                                               \
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

    /* The same rows straight from the registers into contiguous output rows, for halves that are whole
       vectors: each vector's rotation is computed, and each aligned line of the output is put
       together from the two vectors it straddles (one permute) and written with one streaming
       store; the first and last partial lines take masked plain stores. The first halves of a row
       are computed in one pass and the second in another (the row is in L1 by then), so the vectors
       come out in the output's order. No stage: its stores and reloads cost more than the rotation
       on a Zen 4, whose stores are the scarce port (AVX-512, (4, 32, 1024, 128) float32, 2 threads,
       medians: 2.8-3.2 ms against 4.0-5.5 through the stage, a streamed copy of its bytes 2.5-2.6;
       one thread 5.0-5.6 against 7.4-10.5, the copy 3.6-4.1). x is prefetched FE_ROPE_DIRECT_AHEAD
       bytes ahead into L2 (prefetcht2; the Zen 4 again: 8 KB ahead, 2 threads 3.0-3.2 ms against
       3.1-3.9 into L1, one thread 5.3 against 6.0, prefetchnta slower than both; then, six runs of
       interleaved rounds, best of each, 16 KB ahead against 8: one thread 4.0-4.2 against 4.8-5.2, 2
       threads 2.75-3.3 against 2.8-3.3, a streamed copy of its bytes 2.6-2.8; 32 KB between). Rotating
       halves of up to 4 vectors from registers (the row and its table rows loaded once rather than
       once a pass) made no difference there (2 threads 3.0-3.1 ms either way, one thread 4.7 ->
       5.0). 512-bit vectors take 64-byte lines, 256-bit ones 32-byte halves of lines. Same
       products and sums as the strided loop (no contraction).
       Rows come in ``groups`` (up to FE_ROPE_GROUPS) of n consecutive rows each, x_gs, o_gs and
       rows_gs apart (heads, which read the same table rows at the same row index), rotated row
       index by row index, group by group, each group's output a stream of its own: the cos/sin
       rows, which a table of 1024 positions (512 KB) had to bring from L3 once a head, are then
       read from L1 by the other heads. One group takes its own loop (the general one, its state
       in arrays, ran 5-15% slower). Zen 4, AVX-512, (4, 32, 1024, 128) float32, time over a
       streamed copy of its bytes in the same rounds (the VM's memory swung between two speeds):
       one thread 1.07-1.09 in groups of 4 against 1.20-1.24 before (1.13-1.15 one head at a
       time), 2 threads 1.08-1.10 against 1.18-1.23; the 256-bit kernels 1.08-1.09 against
       1.10-1.16; float64 level (1.06-1.10). Groups of 2 to 8, or 4 to 64 KB ahead: no difference. */
    #define FE_ROPE_GROUPS 4
    #if FE_STREAM_X86
    /* One row: its first halves' rotations, then its second halves', each vector joined with the one
       before into an aligned line of the output and streamed (the first partial line: HEAD). */
    #define FE_ROPE_DIRECT_ROW(V, LANES, PFX, SFX, JOIN, HEAD, xr, c, s, o, line, prev, lead, first, half)   \
        for (int second = 0; second < 2; second++)                                                      \
            for (ptrdiff_t i = 0; i < half; i += LANES) {                                               \
                V a = PFX##loadu_##SFX(xr + i), b = PFX##loadu_##SFX(xr + i + half);                    \
                V cc = PFX##loadu_##SFX(c + i), ss = PFX##loadu_##SFX(s + i);                           \
                V v = second ? PFX##add_##SFX(PFX##mul_##SFX(b, cc), PFX##mul_##SFX(a, ss))             \
                             : PFX##sub_##SFX(PFX##mul_##SFX(a, cc), PFX##mul_##SFX(b, ss));            \
                if (!lead) PFX##stream_##SFX(line, v), line += LANES;                                   \
                else if (first) HEAD(o, v, lead);                                                       \
                else PFX##stream_##SFX(line, JOIN(prev, v, lead)), line += LANES;                        \
                prev = v;                                                                               \
                first = 0;                                                                              \
            }
    #define FE_DEFINE_ROPE_DIRECT(NAME, TARGET, T, V, LANES, PFX, SFX, JOIN, HEAD, TAIL)                  \
    __attribute__((target(TARGET))) static void NAME##_one(const T* x, ptrdiff_t x_rs, T* o,             \
                                                           const int64_t* rows, const T* c0, const T* s0, \
                                                           ptrdiff_t t_rs, ptrdiff_t half, ptrdiff_t n) { \
        const ptrdiff_t line_bytes = LANES * (ptrdiff_t)sizeof(T);                                      \
        int lead = (int)(((line_bytes - ((uintptr_t)o & (line_bytes - 1))) & (line_bytes - 1)) / sizeof(T)); \
        ptrdiff_t row_bytes = 2 * half * (ptrdiff_t)sizeof(T);                                          \
        ptrdiff_t ahead = (FE_ROPE_DIRECT_AHEAD + row_bytes - 1) / row_bytes;                           \
        T* line = o + lead;                                                                             \
        V prev;                                                                                         \
        memset(&prev, 0, sizeof prev);                                                                 \
        int first = 1;                                                                                  \
        for (ptrdiff_t r = 0; r < n; r++, x += x_rs) {                                                  \
            const T* c = c0 + rows[r] * t_rs;                                                           \
            const T* s = s0 + rows[r] * t_rs;                                                           \
            if (r + ahead < n) fe_prefetch_row_l2(x + ahead * x_rs, row_bytes);                         \
            FE_ROPE_DIRECT_ROW(V, LANES, PFX, SFX, JOIN, HEAD, x, c, s, o, line, prev, lead, first, half) \
        }                                                                                               \
        if (lead && !first) TAIL(line - lead, prev, lead);                                              \
    }                                                                                                   \
    __attribute__((target(TARGET))) static void NAME(const T* x, ptrdiff_t x_rs, ptrdiff_t x_gs, T* o,     \
                                                     ptrdiff_t o_gs, const int64_t* rows, ptrdiff_t rows_gs, \
                                                     const T* c0, const T* s0, ptrdiff_t t_rs,              \
                                                     ptrdiff_t half, ptrdiff_t n, int groups) {             \
        if (groups == 1) {                                                                              \
            NAME##_one(x, x_rs, o, rows, c0, s0, t_rs, half, n);                                        \
            return;                                                                                     \
        }                                                                                               \
        const ptrdiff_t line_bytes = LANES * (ptrdiff_t)sizeof(T);                                      \
        ptrdiff_t row_bytes = 2 * half * (ptrdiff_t)sizeof(T);                                          \
        ptrdiff_t ahead = (FE_ROPE_DIRECT_AHEAD + row_bytes - 1) / row_bytes;                           \
        T* lines[FE_ROPE_GROUPS];                                                                       \
        V prevs[FE_ROPE_GROUPS];                                                                        \
        int leads[FE_ROPE_GROUPS], firsts[FE_ROPE_GROUPS];                                              \
        for (int g = 0; g < groups; g++) {                                                              \
            T* og = o + g * o_gs;                                                                       \
            leads[g] = (int)(((line_bytes - ((uintptr_t)og & (line_bytes - 1))) & (line_bytes - 1)) / sizeof(T)); \
            lines[g] = og + leads[g];                                                                   \
            memset(&prevs[g], 0, sizeof prevs[g]);                                                      \
            firsts[g] = 1;                                                                              \
        }                                                                                               \
        for (ptrdiff_t r = 0; r < n; r++)                                                               \
            for (int g = 0; g < groups; g++) {                                                          \
                const T* xr = x + g * x_gs + r * x_rs;                                                  \
                const T* c = c0 + rows[g * rows_gs + r] * t_rs;                                         \
                const T* s = s0 + rows[g * rows_gs + r] * t_rs;                                         \
                T* og = o + g * o_gs;                                                                   \
                T* line = lines[g];                                                                     \
                V prev = prevs[g];                                                                      \
                int lead = leads[g], first = firsts[g];                                                 \
                if (r + ahead < n) fe_prefetch_row_l2(xr + ahead * x_rs, row_bytes);                    \
                FE_ROPE_DIRECT_ROW(V, LANES, PFX, SFX, JOIN, HEAD, xr, c, s, og, line, prev, lead, first, half) \
                lines[g] = line;                                                                        \
                prevs[g] = prev;                                                                        \
                firsts[g] = first;                                                                      \
            }                                                                                           \
        for (int g = 0; g < groups; g++)                                                                \
            if (leads[g] && !firsts[g]) TAIL(lines[g] - leads[g], prevs[g], leads[g]);                  \
    }

    /* AVX-512: a line is the last LANES - lead elements of prev and the first lead of v. */
    __attribute__((target("avx512f"))) static inline __m512 fe_join16(__m512 p, __m512 v, int lead) {
        __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(lead),
                                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        return _mm512_permutex2var_ps(p, idx, v);
    }
    __attribute__((target("avx512f"))) static inline __m512d fe_join8d(__m512d p, __m512d v, int lead) {
        __m512i idx = _mm512_add_epi64(_mm512_set1_epi64(lead), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
        return _mm512_permutex2var_pd(p, idx, v);
    }
    #define FE_HEAD16(o, v, lead) _mm512_mask_storeu_ps(o, (__mmask16)((1u << (lead)) - 1), v)
    #define FE_TAIL16(p, v, lead) _mm512_mask_storeu_ps(p, (__mmask16)(0xFFFFu << (lead)), v)
    #define FE_HEAD8D(o, v, lead) _mm512_mask_storeu_pd(o, (__mmask8)((1u << (lead)) - 1), v)
    #define FE_TAIL8D(p, v, lead) _mm512_mask_storeu_pd(p, (__mmask8)(0xFFu << (lead)), v)
    FE_DEFINE_ROPE_DIRECT(fe_rope_f32_neox_direct512, "avx512f", float, __m512, 16, _mm512_, ps, fe_join16, FE_HEAD16, FE_TAIL16)
    FE_DEFINE_ROPE_DIRECT(fe_rope_f64_neox_direct512, "avx512f", double, __m512d, 8, _mm512_, pd, fe_join8d, FE_HEAD8D, FE_TAIL8D)

    /* AVX2: the same join from two one-source permutes and a blend (no two-source permute there);
       doubles move as pairs of 32-bit lanes. Lanes below lead take from neither (never stored). */
    __attribute__((target("avx2"))) static inline __m256i fe_lane_mask8(int lo, int hi) {  /* lanes lo <= i < hi */
        __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(hi), i),
                                _mm256_cmpgt_epi32(i, _mm256_set1_epi32(lo - 1)));
    }
    __attribute__((target("avx2"))) static inline __m256 fe_join8(__m256 p, __m256 v, int lead) {
        __m256i idx = _mm256_and_si256(_mm256_add_epi32(_mm256_set1_epi32(lead), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                                       _mm256_set1_epi32(7));
        return _mm256_blendv_ps(_mm256_permutevar8x32_ps(p, idx), _mm256_permutevar8x32_ps(v, idx),
                                _mm256_castsi256_ps(fe_lane_mask8(8 - lead, 8)));
    }
    __attribute__((target("avx2"))) static inline __m256d fe_join4d(__m256d p, __m256d v, int lead) {
        __m256i pair = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
        __m256i idx = _mm256_add_epi32(
            _mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(_mm256_set1_epi32(lead), pair), _mm256_set1_epi32(3)), 1),
            _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1));
        __m256 joined = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_castpd_ps(p), idx),
                                         _mm256_permutevar8x32_ps(_mm256_castpd_ps(v), idx),
                                         _mm256_castsi256_ps(fe_lane_mask8(2 * (4 - lead), 8)));
        return _mm256_castps_pd(joined);
    }
    #define FE_HEAD8(o, v, lead) _mm256_maskstore_ps(o, fe_lane_mask8(0, lead), v)
    #define FE_TAIL8(p, v, lead) _mm256_maskstore_ps(p, fe_lane_mask8(lead, 8), v)
    #define FE_HEAD4D(o, v, lead) _mm256_maskstore_pd(o, fe_lane_mask8(0, 2 * (lead)), v)
    #define FE_TAIL4D(p, v, lead) _mm256_maskstore_pd(p, fe_lane_mask8(2 * (lead), 8), v)
    FE_DEFINE_ROPE_DIRECT(fe_rope_f32_neox_direct256, "avx2", float, __m256, 8, _mm256_, ps, fe_join8, FE_HEAD8, FE_TAIL8)
    FE_DEFINE_ROPE_DIRECT(fe_rope_f64_neox_direct256, "avx2", double, __m256d, 4, _mm256_, pd, fe_join4d, FE_HEAD4D, FE_TAIL4D)
    /* 1 when fe_rope_*_neox_direct runs rows of this half with streaming ISA isa (whole vectors). */
    static int fe_rope_direct_fits(ptrdiff_t half, size_t itemsize, int isa) {
        ptrdiff_t lanes = isa >= 512 ? 64 / (ptrdiff_t)itemsize : isa >= 256 ? 32 / (ptrdiff_t)itemsize : 0;
        return lanes > 0 && half > 0 && half % lanes == 0;
    }
    static void fe_rope_f32_neox_direct(const float* x, ptrdiff_t x_rs, ptrdiff_t x_gs, float* o, ptrdiff_t o_gs,
                                        const int64_t* rows, ptrdiff_t rows_gs, const float* c, const float* s,
                                        ptrdiff_t t_rs, ptrdiff_t half, ptrdiff_t n, int groups, int isa) {
        if (isa >= 512) fe_rope_f32_neox_direct512(x, x_rs, x_gs, o, o_gs, rows, rows_gs, c, s, t_rs, half, n, groups);
        else fe_rope_f32_neox_direct256(x, x_rs, x_gs, o, o_gs, rows, rows_gs, c, s, t_rs, half, n, groups);
    }
    static void fe_rope_f64_neox_direct(const double* x, ptrdiff_t x_rs, ptrdiff_t x_gs, double* o, ptrdiff_t o_gs,
                                        const int64_t* rows, ptrdiff_t rows_gs, const double* c, const double* s,
                                        ptrdiff_t t_rs, ptrdiff_t half, ptrdiff_t n, int groups, int isa) {
        if (isa >= 512) fe_rope_f64_neox_direct512(x, x_rs, x_gs, o, o_gs, rows, rows_gs, c, s, t_rs, half, n, groups);
        else fe_rope_f64_neox_direct256(x, x_rs, x_gs, o, o_gs, rows, rows_gs, c, s, t_rs, half, n, groups);
    }
    #else
    static int fe_rope_direct_fits(ptrdiff_t half, size_t itemsize, int isa) { return 0; }
    static void fe_rope_f32_neox_direct(const float* x, ptrdiff_t x_rs, ptrdiff_t x_gs, float* o, ptrdiff_t o_gs,
                                        const int64_t* rows, ptrdiff_t rows_gs, const float* c, const float* s,
                                        ptrdiff_t t_rs, ptrdiff_t half, ptrdiff_t n, int groups, int isa) {}
    static void fe_rope_f64_neox_direct(const double* x, ptrdiff_t x_rs, ptrdiff_t x_gs, double* o, ptrdiff_t o_gs,
                                        const int64_t* rows, ptrdiff_t rows_gs, const double* c, const double* s,
                                        ptrdiff_t t_rs, ptrdiff_t half, ptrdiff_t n, int groups, int isa) {}
    #endif
    """
    void fe_rope_f32_neox(const float* x, Py_ssize_t x_rs, float* o, Py_ssize_t o_rs, const int64_t* rows,
                          const float* c, const float* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n) noexcept nogil
    void fe_rope_f64_neox(const double* x, Py_ssize_t x_rs, double* o, Py_ssize_t o_rs, const int64_t* rows,
                          const double* c, const double* s, Py_ssize_t t_rs, Py_ssize_t half,
                          Py_ssize_t n) noexcept nogil
    void fe_rope_f32_neox_groups(const float* x, Py_ssize_t x_rs, Py_ssize_t x_gs, float* o, Py_ssize_t o_rs,
                                 Py_ssize_t o_gs, const int64_t* rows, Py_ssize_t rows_gs, const float* c,
                                 const float* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n,
                                 int groups) noexcept nogil
    void fe_rope_f64_neox_groups(const double* x, Py_ssize_t x_rs, Py_ssize_t x_gs, double* o, Py_ssize_t o_rs,
                                 Py_ssize_t o_gs, const int64_t* rows, Py_ssize_t rows_gs, const double* c,
                                 const double* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n,
                                 int groups) noexcept nogil
    void fe_rope_f32_neox_stream(const float* x, Py_ssize_t x_rs, float* o, const int64_t* rows, const float* c,
                                 const float* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n, int isa) noexcept nogil
    void fe_rope_f64_neox_stream(const double* x, Py_ssize_t x_rs, double* o, const int64_t* rows, const double* c,
                                 const double* s, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t n, int isa) noexcept nogil
    bint fe_rope_direct_fits(Py_ssize_t half, size_t itemsize, int isa) noexcept nogil
    enum: FE_ROPE_GROUPS
    void fe_rope_f32_neox_direct(const float* x, Py_ssize_t x_rs, Py_ssize_t x_gs, float* o, Py_ssize_t o_gs,
                                 const int64_t* rows, Py_ssize_t rows_gs, const float* c, const float* s, Py_ssize_t t_rs,
                                 Py_ssize_t half, Py_ssize_t n, int groups, int isa) noexcept nogil
    void fe_rope_f64_neox_direct(const double* x, Py_ssize_t x_rs, Py_ssize_t x_gs, double* o, Py_ssize_t o_gs,
                                 const int64_t* rows, Py_ssize_t rows_gs, const double* c, const double* s, Py_ssize_t t_rs,
                                 Py_ssize_t half, Py_ssize_t n, int groups, int isa) noexcept nogil


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
              const real[:, ::1] cos, const real[:, ::1] sin, Py_ssize_t half, bint neox, Py_ssize_t period,
              int n_threads):
    """Rotary embedding of each row: with c, s = cos/sin[table_rows[n]],

    neox (rotate halves): (x[i], x[i+half]) -> (x[i] c_i - x[i+half] s_i, x[i+half] c_i + x[i] s_i)
    gptj (rotate pairs):  (x[2i], x[2i+1]) -> (x[2i] c_i - x[2i+1] s_i, x[2i+1] c_i + x[2i] s_i)

    for i < half; columns from 2*half on are copied. ``out`` may be ``x`` (in place).
    Rows and columns may have any strides. ``period``: the rows come in groups of this many (heads
    of the sequence length; 0 if not) that read the same table rows in turn; it sets only the
    order in which rows are rotated. Returns the number of rows skipped (0).
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
        _rope_blocks(x, out, table_rows, cos, sin, half, period, n_threads)
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
                       const real[:, ::1] cos, const real[:, ::1] sin, Py_ssize_t half, Py_ssize_t period,
                       int n_threads):
    """The neox rotation over unit-stride rows in blocks of ROPE_BLOCK rows, one C call each
    (a call per row cost as much as the rotation of a 128-wide row); the tail columns copied.
    Rows in groups of ``period`` (heads) whose table rows outgrow L1 (ROPE_TABLE_CACHED) are
    rotated FE_ROPE_GROUPS heads at a time, a task being the same block of positions of each (see
    FE_DEFINE_ROPE_DIRECT), by the plain and the direct streaming kernels; otherwise (and for the
    staged streaming kernel) all rows are one group."""
    cdef Py_ssize_t n_rows = x.shape[0], width = x.shape[1], x_rs = x.strides[0] // <Py_ssize_t>sizeof(real)
    cdef Py_ssize_t o_rs = out.strides[0] // <Py_ssize_t>sizeof(real), t_rs = cos.shape[1]
    cdef Py_ssize_t blk, n_groups = 1, n_pb
    cdef bint copy_tail = 2 * half < width and &out[0, 0] != &x[0, 0]
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    cdef int stream = 0, groups = 1
    if 2 * half == width and o_rs == width and &out[0, 0] != &x[0, 0]:  # whole rows, one after the other
        stream = _stream_for(&out[0, 0], <double>n_rows * width * sizeof(real), sizeof(real))
    cdef bint direct = stream != 0 and fe_rope_direct_fits(half, sizeof(real), stream)
    cdef const real* x0 = &x[0, 0]
    cdef real* o0 = &out[0, 0]
    cdef const real* c0 = &cos[0, 0]
    cdef const real* s0 = &sin[0, 0]
    cdef const int64_t* rows0 = &table_rows[0]
    if ((direct or not stream) and period > 0 and n_rows % period == 0 and n_rows // period >= 2
            and 2 * period * half * <Py_ssize_t>sizeof(real) > ROPE_TABLE_CACHED):
        n_groups, groups = n_rows // period, FE_ROPE_GROUPS
    else:
        period = n_rows  # one group of every row, in blocks of ROPE_BLOCK
    n_pb = (period + ROPE_BLOCK - 1) // ROPE_BLOCK
    cdef Py_ssize_t n_blocks = (n_groups + groups - 1) // groups * n_pb
    if n_threads == 1:  # no parallel region: libgomp spends a futex call (0.3 us) on a team of one
        with nogil:
            for blk in range(n_blocks):
                _rope_block(x0, x_rs, o0, o_rs, rows0, c0, s0, t_rs, half, width, period, n_pb, n_groups, groups,
                            direct, stream, copy_tail, blk)
            if stream:
                fe_store_fence()
        return
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for blk in prange(n_blocks, schedule="guided"):
            _rope_block(x0, x_rs, o0, o_rs, rows0, c0, s0, t_rs, half, width, period, n_pb, n_groups, groups,
                        direct, stream, copy_tail, blk)
        if stream:
            fe_store_fence()


cdef void _rope_block(const real* x0, Py_ssize_t x_rs, real* o0, Py_ssize_t o_rs, const int64_t* rows0,
                      const real* c0, const real* s0, Py_ssize_t t_rs, Py_ssize_t half, Py_ssize_t width,
                      Py_ssize_t period, Py_ssize_t n_pb, Py_ssize_t n_groups, int groups, bint direct,
                      int stream, bint copy_tail, Py_ssize_t blk) noexcept nogil:
    """Task ``blk`` of _rope_blocks: block blk % n_pb of the positions of up to ``groups`` groups."""
    cdef Py_ssize_t g0 = (blk // n_pb) * groups, r0 = (blk % n_pb) * ROPE_BLOCK, base, n, j, g
    cdef int gt = <int>min(<Py_ssize_t>groups, n_groups - g0)
    cdef Py_ssize_t m = min(<Py_ssize_t>ROPE_BLOCK, period - r0)
    base = g0 * period + r0
    if real is float and direct:
        fe_rope_f32_neox_direct(x0 + base * x_rs, x_rs, period * x_rs, o0 + base * o_rs, period * o_rs,
                                rows0 + base, period, c0, s0, t_rs, half, m, gt, stream)
    elif real is double and direct:
        fe_rope_f64_neox_direct(x0 + base * x_rs, x_rs, period * x_rs, o0 + base * o_rs, period * o_rs,
                                rows0 + base, period, c0, s0, t_rs, half, m, gt, stream)
    elif real is float and stream:  # the staged kernel: one group
        fe_rope_f32_neox_stream(x0 + base * x_rs, x_rs, o0 + base * o_rs, rows0 + base, c0, s0,
                                t_rs, half, m, stream)
    elif real is double and stream:
        fe_rope_f64_neox_stream(x0 + base * x_rs, x_rs, o0 + base * o_rs, rows0 + base, c0, s0,
                                t_rs, half, m, stream)
    elif real is float and gt == 1:
        fe_rope_f32_neox(x0 + base * x_rs, x_rs, o0 + base * o_rs, o_rs, rows0 + base, c0, s0, t_rs, half, m)
    elif real is double and gt == 1:
        fe_rope_f64_neox(x0 + base * x_rs, x_rs, o0 + base * o_rs, o_rs, rows0 + base, c0, s0, t_rs, half, m)
    elif real is float:
        fe_rope_f32_neox_groups(x0 + base * x_rs, x_rs, period * x_rs, o0 + base * o_rs, o_rs,
                                period * o_rs, rows0 + base, period, c0, s0, t_rs, half, m, gt)
    elif real is double:
        fe_rope_f64_neox_groups(x0 + base * x_rs, x_rs, period * x_rs, o0 + base * o_rs, o_rs,
                                period * o_rs, rows0 + base, period, c0, s0, t_rs, half, m, gt)
    if copy_tail:  # unit column strides (the caller's condition)
        for g in range(gt):
            for n in range(base + g * period, base + g * period + m):
                for j in range(2 * half, width):
                    o0[n * o_rs + j] = x0[n * x_rs + j]


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
