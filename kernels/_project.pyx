"""Fused gather-project-finish kernel behind fastembed's factorized lookups
(mirrored in _project_numba.py).

    out[n, :] = (table[rows[n], :] @ proj) * scale + bias + pos[pos_rows[n], :]

in one pass: the projected rows never leave registers before the epilogue
writes them. The work is a grid of (row block, column block) tasks run by
OpenMP threads; each task walks micro-tiles of FE_MR (8) rows by strips of
proj up to FE_NV512_ROWS8 (3) AVX-512 vectors wide with 8-row AVX-512 tiles,
FE_NV512 (6) with 4-row ones (tile_rows512), or FE_NV256 (3) AVX2 vectors (the
4-row tiles take the 8 rows as two halves of FE_MR256 (4)), copied
first into contiguous panels when enough rows read them. On x86 CPUs the
micro-tile is an intrinsics kernel, AVX-512F or AVX2 + FMA, the widest the
CPU runs (chosen at run time, so one wheel runs everywhere); elsewhere, or
with ``simd=0``, a portable loop computes the same sums in the same order
(k ascending; the tiles fuse each multiply-add, the loop rounds the product
and the sum separately). ``project_distinct`` runs the same tiles over the
distinct rows and writes each tile to every occurrence; ``gram_rows`` runs
their k loop, its sums carried in memory between blocks of rows, over the
upper triangle of x^T x.

The caller (fastembed/_pipeline.py) validates; the only check kept here is a
pass over the indices before anything is written, so that a wrong index from
any caller is counted and nothing is read out of bounds.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

import numpy as np

include "_common.pxi"
include "_buffers.pxi"
include "_stream.pxi"
include "_emit.pxi"

cdef extern from *:
    """
    #include <stddef.h>
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #define FE_X86 1
    #include <immintrin.h>
    #else
    #define FE_X86 0
    #endif

    #define FE_MR 8
    #define FE_MR256 4
    /* A tile's last rows, up to this many, run in 1-row tiles (FE_ROWS_BY_ONE). Each 1-row tile
       reads the whole strip of proj for one row: two rows so took as long as one 4-row tile with
       AVX-512 (ALBERT-base, Zen 4: 12.8 against 12.6 us a call) and longer with AVX2 (16.6 against
       14.9), while one row took 9.1 and 11.6. */
    #define FE_ROW_TILE_ROWS 1

    /* Memory for proj's packed panels, 64-byte aligned: a buffer of the calling thread's, kept
       between calls up to FE_PACK_KEEP bytes and released when the thread exits, since fresh memory
       costs a page fault per 4 KiB (packing ALBERT-base's 393 KB proj into new memory took ~50 us,
       a third of a 1 x 128 lookup). *owned is what the caller frees afterwards (NULL: the cache).
       A kernel call on a thread ends before that thread can start another, so one buffer a thread
       suffices. */
    #define FE_PACK_KEEP ((size_t)16 << 20)
    #define FE_ALIGN64(p) ((void*)(((size_t)(p) + 64) & ~(size_t)63))
    #if defined(__unix__) || defined(__APPLE__)
    #include <pthread.h>
    typedef struct { void* raw; size_t size; } fe_pack_cache;
    static pthread_key_t fe_pack_key;
    static int fe_pack_key_ok = 0;
    static pthread_once_t fe_pack_once = PTHREAD_ONCE_INIT;
    static void fe_pack_release(void* p) {
        if (p) { free(((fe_pack_cache*)p)->raw); free(p); }
    }
    static void fe_pack_init(void) { fe_pack_key_ok = pthread_key_create(&fe_pack_key, fe_pack_release) == 0; }
    static void* fe_pack_take(size_t size, void** owned) {
        fe_pack_cache* c = NULL;
        *owned = NULL;
        pthread_once(&fe_pack_once, fe_pack_init);
        if (size <= FE_PACK_KEEP && fe_pack_key_ok) {
            c = (fe_pack_cache*)pthread_getspecific(fe_pack_key);
            if (c == NULL && (c = (fe_pack_cache*)calloc(1, sizeof *c)) != NULL && pthread_setspecific(fe_pack_key, c) != 0) {
                free(c);
                c = NULL;
            }
            if (c != NULL) {
                if (c->size < size) {
                    free(c->raw);
                    c->raw = malloc(size + 64);
                    c->size = c->raw ? size : 0;
                }
                if (c->raw) return FE_ALIGN64(c->raw);
            }
        }
        *owned = malloc(size + 64);
        return *owned ? FE_ALIGN64(*owned) : NULL;
    }
    #else
    static void* fe_pack_take(size_t size, void** owned) {
        *owned = malloc(size + 64);
        return *owned ? FE_ALIGN64(*owned) : NULL;
    }
    #endif
    #define FE_NV512 6          /* the most vectors of an AVX-512 strip: 6 in tiles of 4 rows, */
    #define FE_NV512_ROWS8 3    /* 3 in tiles of 8 */
    #define FE_NV256 3

    /* Rows of the AVX-512 tiles, 8 (8 x 3) or 4 (4 x 6), chosen once at import by what was measured
       on each kind of CPU (see FE_DEFINE_TILE512): 4 on AMD's (the Zen 4 runs AVX-512 on 256-bit
       units), 8 elsewhere. */
    static int fe_rows512 = 8;
    static int fe_default_rows512(void) {
    #if FE_X86
        __builtin_cpu_init();
        if (__builtin_cpu_is("amd")) return 4;
    #endif
        return 8;
    }

    /* The size of the calling OpenMP team and a barrier of it (1 and nothing in a serial build). */
    #ifdef _OPENMP
    #include <omp.h>
    static int fe_team_size(void) { return omp_get_num_threads(); }
    static void fe_team_barrier(void) {
        #pragma omp barrier
    }
    #else
    static int fe_team_size(void) { return 1; }
    static void fe_team_barrier(void) {}
    #endif

    /* Tasks 0..n-1 in one contiguous range a thread, each range taken front to back through its
       atomic counter: a thread takes the tasks of its own range (``home``) first, the same ones call
       after call, then what is left of the others'. Each task is taken once, by the fetch-add that
       returns it, whatever the team's size (the ranges of threads that never start are taken by the
       others). One range a 64-byte line, so that the counters share no line. */
    typedef struct { ptrdiff_t next; ptrdiff_t end; char pad[64 - 2 * sizeof(ptrdiff_t)]; } fe_task_range;
    static void fe_task_ranges(fe_task_range* ranges, int n_ranges, ptrdiff_t n_tasks) {
        for (int t = 0; t < n_ranges; t++) {
            ranges[t].next = n_tasks * t / n_ranges;
            ranges[t].end = n_tasks * (t + 1) / n_ranges;
        }
    }
    static ptrdiff_t fe_take_task(fe_task_range* ranges, int n_ranges, int home) {
        for (int i = 0; i < n_ranges; i++) {
            fe_task_range* r = &ranges[(home + i) % n_ranges];
            if (__atomic_load_n(&r->next, __ATOMIC_RELAXED) >= r->end) continue;
            ptrdiff_t t = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
            if (t < r->end) return t;
        }
        return -1;
    }

    /* Widest micro-tile this CPU runs: 512 (AVX-512F), 256 (AVX2 + FMA) or 0 (the portable loop). */
    static int fe_simd_width(void) {
    #if FE_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return 512;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 256;
    #endif
        return 0;
    }

    /* One FE_MR x (NV * LANES) tile, y[i][:w] = (sum_k a[i][k*a_cs] * p[k*p_rs][:w]) * scale
       + bias[:w] for i < m, with (NV - 1) * LANES < w <= NV * LANES, written to every output row
       of tile row i: out[o][:w] = y[i][:w] + pos[pos_rows[o]][:w] for o = order[x], starts[i] <=
       x < starts[i + 1] (out, bias and pos start at the strip's first column). a[i] for i >= m
       must point at readable rows (results dropped); bias and pos may be NULL. ``padded``: every p
       row holds NV * LANES readable values (a packed strip), so all loads are full ones; otherwise
       the last vector's loads are masked to w. ``lead`` (< LANES) columns before the strip's first
       are neither stored nor read from bias or pos: p, out, bias and pos point ``lead`` columns
       before it, so that p's vectors start on an aligned address (p's loads are not masked there:
       an aligned vector holding p's first column lies in one cache line with it). ``stage``: with
       FE_ACC_IN the sums start from ``acc`` (FE_MR rows of NV * LANES sums) rather than 0; with
       FE_ACC_OUT they are stored there rather than finished and written, so that a sum over k
       carried through acc from block to block of k has the bits of one unbroken sum. */
    #define FE_ACC_IN 1
    #define FE_ACC_OUT 2
    #define FE_TILE_ARGS(T) const T* const* a, ptrdiff_t a_cs, int m, const T* p, ptrdiff_t p_rs,       \\
        int padded, ptrdiff_t r, int w, int lead, T scale, const T* bias, const T* pos,                 \\
        ptrdiff_t pos_rs,                                                                               \\
        const int64_t* pos_rows, T* out, ptrdiff_t d, const ptrdiff_t* starts, const ptrdiff_t* order,  \\
        T* acc, int stage
    #if FE_X86
    #define FE_LD512_full(SFX, ptr) _mm512_loadu_##SFX(ptr)
    #define FE_LD512_mask(SFX, ptr) _mm512_maskz_loadu_##SFX(last, ptr)
    #define FE_K_LOOP512(VEC, LANES, SFX, NV, KIND, MR)                                                 \\
        _Pragma("GCC unroll 4") for (ptrdiff_t k = 0; k < r; k++) {                                     \\
            VEC b[NV];                                                                                  \\
            _Pragma("GCC unroll 8") for (int v = 0; v < NV - 1; v++)                                    \\
                b[v] = _mm512_loadu_##SFX(p + k * p_rs + v * LANES);                                    \\
            b[NV - 1] = FE_LD512_##KIND(SFX, p + k * p_rs + (NV - 1) * LANES);                          \\
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                      \\
                VEC x = _mm512_set1_##SFX(a[i][k * a_cs]);                                              \\
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                    \\
                    c[i][v] = _mm512_fmadd_##SFX(x, b[v], c[i][v]);                                     \\
            }                                                                                           \\
        }
    /* AVX-512 (32 registers): MR x NV accumulators, 8 x 3 (3 loads and 8 broadcasts per k) or 4 x 6
       (6 loads and 4 broadcasts), the k loop unrolled 4 times (GCC otherwise steps each row's
       pointer every k, spilling some to the stack). On an Intel Xeon (2 FMA units) 8 x 3 won: in a C
       microbenchmark (proj's strip in L1) 4 x 6 took 16.6 cycles a k for its 24 FMAs (12 at the FMA
       peak), 8 x 3 15.3; in the kernel, 2 threads, 4096 x 128 x 768 at 320 GFLOP/s against 299,
       d = 4096 r = 256 248 against 198, the 1 x 128 call 87 us against 94 (8 rows also halve the
       passes over proj's strips). On a Zen 4, whose AVX-512 runs on 256-bit units, 4 x 6 (half the
       broadcasts) took the 16384 x 128 x 768 projection from 70% to 82-91% of the FMA peak. The 4 x
       6 tiles run a task's 8-row tiles as two halves (FE_DEFINE_HALVES). */
    #define FE_DEFINE_TILE512(NAME, T, VEC, MASK, LANES, SFX, NV, MR)                                   \\
    __attribute__((target("avx512f"))) static void NAME(                                                \\
        FE_TILE_ARGS(T))                                                                                \\
    {                                                                                                   \\
        VEC c[MR][NV];                                                                                  \\
        const int left = w - (NV - 1) * LANES;                                                          \\
        const MASK last = left >= LANES ? (MASK)~0 : (MASK)((1u << left) - 1u);                         \\
        const MASK first = (MASK)(~0u << lead);                                                         \\
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                            \\
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                        \\
                c[i][v] = stage & FE_ACC_IN ? _mm512_loadu_##SFX(acc + (i * NV + v) * LANES)            \\
                                            : _mm512_setzero_##SFX();                                   \\
        if (padded || left >= LANES) {                                                                  \\
            FE_K_LOOP512(VEC, LANES, SFX, NV, full, MR)                                                 \\
        } else {                                                                                        \\
            FE_K_LOOP512(VEC, LANES, SFX, NV, mask, MR)                                                 \\
        }                                                                                               \\
        if (stage & FE_ACC_OUT) {                                                                       \\
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                        \\
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                    \\
                    _mm512_storeu_##SFX(acc + (i * NV + v) * LANES, c[i][v]);                           \\
            return;                                                                                     \\
        }                                                                                               \\
        VEC s = _mm512_set1_##SFX(scale);                                                               \\
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                          \\
            if (i >= m) break;                                                                          \\
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) {                                      \\
                MASK mk = (v == NV - 1 ? last : (MASK)~0) & (v == 0 ? first : (MASK)~0);                \\
                c[i][v] = _mm512_mul_##SFX(c[i][v], s);                                                 \\
                if (bias) c[i][v] = _mm512_add_##SFX(c[i][v], _mm512_maskz_loadu_##SFX(mk, bias + v * LANES)); \\
            }                                                                                           \\
            for (ptrdiff_t x = starts[i]; x < starts[i + 1]; x++) {                                     \\
                T* o = out + order[x] * d;                                                              \\
                const T* q = pos ? pos + pos_rows[order[x]] * pos_rs : NULL;                            \\
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) {                                  \\
                    MASK mk = (v == NV - 1 ? last : (MASK)~0) & (v == 0 ? first : (MASK)~0);            \\
                    VEC y = c[i][v];                                                                    \\
                    if (q) y = _mm512_add_##SFX(y, _mm512_maskz_loadu_##SFX(mk, q + v * LANES));        \\
                    _mm512_mask_storeu_##SFX(o + v * LANES, mk, y);                                     \\
                }                                                                                       \\
            }                                                                                           \\
        }                                                                                               \\
    }

    /* A tile of FE_MR rows run as halves of 4 rows by the 4-row tile NAME##_half, the second only
       when it holds rows below m; a last part of at most FE_ROW_TILE_ROWS rows runs row by row in
       the 1-row tile ROW (FE_ROWS_BY_ONE). */
    #define FE_DEFINE_HALVES(NAME, T, LANES, NV, TARGET, ROW)                                           \\
    __attribute__((target(TARGET))) static void NAME(FE_TILE_ARGS(T)) {                                 \\
        for (int h = 0; h < m; h += 4) {                                                                \\
            if (m - h <= FE_ROW_TILE_ROWS) {                                                            \\
                FE_ROWS_BY_ONE(ROW, h, NV * LANES)                                                      \\
                break;                                                                                  \\
            }                                                                                           \\
            NAME##_half(a + h, a_cs, m - h, p, p_rs, padded, r, w, lead, scale, bias, pos, pos_rs,      \\
                        pos_rows, out, d, starts ? starts + h : NULL, order,                            \\
                        acc ? acc + h * NV * LANES : NULL, stage);                                      \\
        }                                                                                               \\
    }
    /* Rows h .. m - 1 of a tile, each by the 1-row tile ROW: a tile of MR rows spends MR rows' FMAs
       whatever m is, so a task's last row and a call of one token (a decoding step) paid for 4 or 8
       (Zen 4, AVX-512 4 x 6 tiles: ALBERT-base's projection of one token took 9.9 us a call in the
       4-row tile, 5.9 in the 1-row one). The same sums, k ascending: the same bits. */
    #define FE_ROWS_BY_ONE(ROW, h, ROW_SIZE)                                                            \\
        for (int i = (h); i < m; i++)                                                                   \\
            ROW(a + i, a_cs, 1, p, p_rs, padded, r, w, lead, scale, bias, pos, pos_rs, pos_rows, out, d, \\
                starts ? starts + i : NULL, order, acc ? acc + i * (ROW_SIZE) : NULL, stage);

    /* AVX2 (16 registers): 4 x 3 accumulators, 3 loads and 4 broadcasts per k; masks are vectors. A
       tile's FE_MR rows are two halves of FE_MR256, the second only when it holds rows below m. The
       k loop unrolled 4 times: ALBERT-base 1 x 128 on the Zen 4 with FASTEMBED_SIMD=avx2, interleaved,
       0.161-0.162 ms against 0.164-0.166 on 2 threads, 0.285-0.287 against 0.289-0.293 on one. */
    #define FE_MASK256_ps(left) _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    #define FE_MASK256_pd(left) _mm256_cmpgt_epi64(_mm256_set1_epi64x(left), _mm256_setr_epi64x(0, 1, 2, 3))
    #define FE_FIRST256_ps(lead) _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((lead) - 1))
    #define FE_FIRST256_pd(lead) _mm256_cmpgt_epi64(_mm256_setr_epi64x(0, 1, 2, 3), _mm256_set1_epi64x((lead) - 1))
    #define FE_ALL256 _mm256_set1_epi32(-1)
    #define FE_AND256(x, y) _mm256_and_si256(x, y)
    #define FE_LD256_full(SFX, ptr) _mm256_loadu_##SFX(ptr)
    #define FE_LD256_mask(SFX, ptr) _mm256_maskload_##SFX(ptr, last)
    #define FE_K_LOOP256(VEC, LANES, SFX, NV, KIND, MR)                                                 \\
        _Pragma("GCC unroll 4") for (ptrdiff_t k = 0; k < r; k++) {                                     \\
            VEC b[NV];                                                                                  \\
            _Pragma("GCC unroll 4") for (int v = 0; v < NV - 1; v++)                                    \\
                b[v] = _mm256_loadu_##SFX(p + k * p_rs + v * LANES);                                    \\
            b[NV - 1] = FE_LD256_##KIND(SFX, p + k * p_rs + (NV - 1) * LANES);                          \\
            _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {                                      \\
                VEC x = _mm256_set1_##SFX(a[i][k * a_cs]);                                              \\
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                    \\
                    c[i][v] = _mm256_fmadd_##SFX(x, b[v], c[i][v]);                                     \\
            }                                                                                           \\
        }
    #define FE_DEFINE_TILE256_MR(FNAME, T, VEC, LANES, SFX, NV, MR)                                     \\
    __attribute__((target("avx2,fma"))) static inline void FNAME(                                       \\
        FE_TILE_ARGS(T))                                                                                \\
    {                                                                                                   \\
        VEC c[MR][NV];                                                                                  \\
        const int left = w - (NV - 1) * LANES;                                                          \\
        const int full = left >= LANES;                                                                 \\
        const __m256i last = FE_MASK256_##SFX(left);                                                    \\
        const __m256i first = FE_FIRST256_##SFX(lead);                                                  \\
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)                                            \\
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                        \\
                c[i][v] = stage & FE_ACC_IN ? _mm256_loadu_##SFX(acc + (i * NV + v) * LANES)            \\
                                            : _mm256_setzero_##SFX();                                   \\
        if (padded || full) {                                                                           \\
            FE_K_LOOP256(VEC, LANES, SFX, NV, full, MR)                                                 \\
        } else {                                                                                        \\
            FE_K_LOOP256(VEC, LANES, SFX, NV, mask, MR)                                                 \\
        }                                                                                               \\
        if (stage & FE_ACC_OUT) {                                                                       \\
            _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)                                        \\
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                    \\
                    _mm256_storeu_##SFX(acc + (i * NV + v) * LANES, c[i][v]);                           \\
            return;                                                                                     \\
        }                                                                                               \\
        VEC s = _mm256_set1_##SFX(scale);                                                               \\
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) {                                          \\
            if (i >= m) break;                                                                          \\
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                      \\
                const int whole = (v < NV - 1 || full) && (v > 0 || !lead);                             \\
                const __m256i mk = FE_AND256(v < NV - 1 ? FE_ALL256 : last, v == 0 ? first : FE_ALL256); \\
                c[i][v] = _mm256_mul_##SFX(c[i][v], s);                                                 \\
                if (bias) c[i][v] = _mm256_add_##SFX(c[i][v], whole ? _mm256_loadu_##SFX(bias + v * LANES) \\
                                                                    : _mm256_maskload_##SFX(bias + v * LANES, mk)); \\
            }                                                                                           \\
            for (ptrdiff_t x = starts[i]; x < starts[i + 1]; x++) {                                     \\
                T* o = out + order[x] * d;                                                              \\
                const T* q = pos ? pos + pos_rows[order[x]] * pos_rs : NULL;                            \\
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                  \\
                    const int whole = (v < NV - 1 || full) && (v > 0 || !lead);                         \\
                    const __m256i mk = FE_AND256(v < NV - 1 ? FE_ALL256 : last, v == 0 ? first : FE_ALL256); \\
                    VEC y = c[i][v];                                                                    \\
                    if (q) y = _mm256_add_##SFX(y, whole ? _mm256_loadu_##SFX(q + v * LANES)            \\
                                                         : _mm256_maskload_##SFX(q + v * LANES, mk));   \\
                    if (whole) _mm256_storeu_##SFX(o + v * LANES, y);                                   \\
                    else _mm256_maskstore_##SFX(o + v * LANES, mk, y);                                  \\
                }                                                                                       \\
            }                                                                                           \\
        }                                                                                               \\
    }
    #define FE_DEFINE_TILE256(NAME, T, VEC, LANES, SFX, NV)                                             \\
    FE_DEFINE_TILE256_MR(NAME##_half, T, VEC, LANES, SFX, NV, FE_MR256)                                 \\
    FE_DEFINE_TILE256_MR(NAME##_row, T, VEC, LANES, SFX, NV, 1)                                         \\
    FE_DEFINE_HALVES(NAME, T, LANES, NV, "avx2,fma", NAME##_row)

    /* The 4 x NV AVX-512 tile and the tile of FE_MR rows that runs it as halves. */
    #define FE_DEFINE_TILE512_R4(T, SFX, NV)                                                            \\
    FE_DEFINE_TILE512(fe_t512r4_##T##_##NV##_half, T, FE_V512_##T, FE_M512_##T, 64 / sizeof(T), SFX, NV, 4) \\
    FE_DEFINE_TILE512(fe_t512r1_##T##_##NV, T, FE_V512_##T, FE_M512_##T, 64 / sizeof(T), SFX, NV, 1)    \\
    FE_DEFINE_HALVES(fe_t512r4_##T##_##NV, T, 64 / sizeof(T), NV, "avx512f", fe_t512r1_##T##_##NV)

    typedef void (*fe_tile_f32_fn)(FE_TILE_ARGS(float));
    typedef void (*fe_tile_f64_fn)(FE_TILE_ARGS(double));
    #define FE_DEFINE_TILES(T, SFX)                                                                     \\
    FE_DEFINE_TILE512(fe_t512r8_##T##_1, T, FE_V512_##T, FE_M512_##T, 64 / sizeof(T), SFX, 1, 8)        \\
    FE_DEFINE_TILE512(fe_t512r8_##T##_2, T, FE_V512_##T, FE_M512_##T, 64 / sizeof(T), SFX, 2, 8)        \\
    FE_DEFINE_TILE512(fe_t512r8_##T##_3, T, FE_V512_##T, FE_M512_##T, 64 / sizeof(T), SFX, 3, 8)        \\
    FE_DEFINE_TILE512_R4(T, SFX, 1)                                                                     \\
    FE_DEFINE_TILE512_R4(T, SFX, 2)                                                                     \\
    FE_DEFINE_TILE512_R4(T, SFX, 3)                                                                     \\
    FE_DEFINE_TILE512_R4(T, SFX, 4)                                                                     \\
    FE_DEFINE_TILE512_R4(T, SFX, 5)                                                                     \\
    FE_DEFINE_TILE512_R4(T, SFX, 6)                                                                     \\
    FE_DEFINE_TILE256(fe_t256_##T##_1, T, FE_V256_##T, 32 / sizeof(T), SFX, 1)                          \\
    FE_DEFINE_TILE256(fe_t256_##T##_2, T, FE_V256_##T, 32 / sizeof(T), SFX, 2)                          \\
    FE_DEFINE_TILE256(fe_t256_##T##_3, T, FE_V256_##T, 32 / sizeof(T), SFX, 3)
    #define FE_V512_float __m512
    #define FE_V512_double __m512d
    #define FE_M512_float __mmask16
    #define FE_M512_double __mmask8
    #define FE_V256_float __m256
    #define FE_V256_double __m256d
    FE_DEFINE_TILES(float, ps)
    FE_DEFINE_TILES(double, pd)
    static const fe_tile_f32_fn fe_tiles512r8_f32[FE_NV512_ROWS8 + 1] = {
        0, fe_t512r8_float_1, fe_t512r8_float_2, fe_t512r8_float_3};
    static const fe_tile_f64_fn fe_tiles512r8_f64[FE_NV512_ROWS8 + 1] = {
        0, fe_t512r8_double_1, fe_t512r8_double_2, fe_t512r8_double_3};
    /* {0, the tiles of 1 .. FE_NV512 vectors} of a family (fe_t512r4_float_, ...) */
    #define FE_TILES_BY_NV512(FAMILY) {0, FAMILY##1, FAMILY##2, FAMILY##3, FAMILY##4, FAMILY##5, FAMILY##6}
    static const fe_tile_f32_fn fe_tiles512r4_f32[FE_NV512 + 1] = FE_TILES_BY_NV512(fe_t512r4_float_);
    static const fe_tile_f64_fn fe_tiles512r4_f64[FE_NV512 + 1] = FE_TILES_BY_NV512(fe_t512r4_double_);
    static const fe_tile_f32_fn fe_tiles256_f32[FE_NV256 + 1] = {0, fe_t256_float_1, fe_t256_float_2, fe_t256_float_3};
    static const fe_tile_f64_fn fe_tiles256_f64[FE_NV256 + 1] = {0, fe_t256_double_1, fe_t256_double_2, fe_t256_double_3};
    static const fe_tile_f32_fn fe_tiles512r1_f32[FE_NV512 + 1] = FE_TILES_BY_NV512(fe_t512r1_float_);
    static const fe_tile_f64_fn fe_tiles512r1_f64[FE_NV512 + 1] = FE_TILES_BY_NV512(fe_t512r1_double_);
    /* The tile of ``nv`` vectors for a strip (1 <= nv <= FE_NV512, FE_NV512_ROWS8 or FE_NV256 by
       ``width`` and fe_rows512). */
    static void fe_tile_f32(int width, int nv, FE_TILE_ARGS(float)) {
        /* A tile of 8 rows holding at most FE_ROW_TILE_ROWS: row by row (the 4-row tiles' halves do
           it themselves). */
        if (width == 512 && fe_rows512 == 8 && m <= FE_ROW_TILE_ROWS) {
            FE_ROWS_BY_ONE(fe_tiles512r1_f32[nv], 0, nv * 16)
            return;
        }
        (width == 512 ? (fe_rows512 == 8 ? fe_tiles512r8_f32 : fe_tiles512r4_f32) : fe_tiles256_f32)[nv](a, a_cs, m, p, p_rs, padded, r, w, lead, scale, bias, pos, pos_rs, pos_rows, out, d, starts, order, acc, stage);
    }
    static void fe_tile_f64(int width, int nv, FE_TILE_ARGS(double)) {
        if (width == 512 && fe_rows512 == 8 && m <= FE_ROW_TILE_ROWS) {
            FE_ROWS_BY_ONE(fe_tiles512r1_f64[nv], 0, nv * 8)
            return;
        }
        (width == 512 ? (fe_rows512 == 8 ? fe_tiles512r8_f64 : fe_tiles512r4_f64) : fe_tiles256_f64)[nv](a, a_cs, m, p, p_rs, padded, r, w, lead, scale, bias, pos, pos_rs, pos_rows, out, d, starts, order, acc, stage);
    }
    /* A Gram tile's sums into acc (gram_rows): the tile of ``mr`` rows itself (4: AVX2 or the Zen 4's
       AVX-512; 8: AVX-512 elsewhere, fe_tile's own tiles), without fe_tile's dispatch and the 4-row
       tiles' halves' loop, whose calls and copied arguments cost ~10% of the Gram pass in 64-row
       calls. */
    #define FE_GRAM_TILE(T, SFX)                                                                        \
    static void fe_gram_tile_##SFX(int width, int nv, const T* const* a, ptrdiff_t a_cs, const T* p,    \
                                   ptrdiff_t p_rs, ptrdiff_t r, int w, T* acc, int stage) {             \
        static const fe_tile_##SFX##_fn r4[FE_NV512 + 1] = FE_TILES_BY_NV512_HALF(fe_t512r4_##T##_);     \
        static const fe_tile_##SFX##_fn t256[FE_NV256 + 1] = {                                          \
            0, fe_t256_##T##_1_half, fe_t256_##T##_2_half, fe_t256_##T##_3_half};                        \
        (width == 512 ? (fe_rows512 == 8 ? fe_tiles512r8_##SFX : r4) : t256)[nv](                      \
            a, a_cs, FE_MR, p, p_rs, 0, r, w, 0, 1, NULL, NULL, 0, NULL, NULL, 0, NULL, NULL, acc, stage); \
    }
    #define FE_TILES_BY_NV512_HALF(FAMILY) {0, FAMILY##1_half, FAMILY##2_half, FAMILY##3_half,          \
        FAMILY##4_half, FAMILY##5_half, FAMILY##6_half}
    FE_GRAM_TILE(float, f32)
    FE_GRAM_TILE(double, f64)
    /* fe_gram_tile's sums for a whole tile (MR rows below d, w a multiple of LANES) read through one
       pointer, x's row k: its broadcasts are row[i0 + i], its loads row[j0 + v * LANES]. The same
       FMAs in the same order as fe_gram_tile, so the same bits, without its row pointers, masks and
       20 arguments: in 64-row calls their setup and the generic loop's pointer steps cost ~15% of
       the Gram pass with the AVX2 tiles. */
    #define FE_DEFINE_GRAM_FAST(NAME, TARGET, T, VEC, LANES, SFX, PFX, MR, NV)                          \
    __attribute__((target(TARGET))) static void NAME(const T* x, ptrdiff_t x_rs, ptrdiff_t kc,          \
                                                     ptrdiff_t i0, ptrdiff_t j0, T* acc, int zero) {    \
        VEC c[MR][NV];                                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                        \
                c[i][v] = zero ? PFX##_setzero_##SFX() : PFX##_loadu_##SFX(acc + (i * NV + v) * LANES); \
        const T* row = x;                                                                               \
        _Pragma("GCC unroll 4") for (ptrdiff_t k = 0; k < kc; k++, row += x_rs) {                       \
            VEC b[NV];                                                                                  \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                        \
                b[v] = PFX##_loadu_##SFX(row + j0 + v * LANES);                                         \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                      \
                VEC a = PFX##_set1_##SFX(row[i0 + i]);                                                  \
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                    \
                    c[i][v] = PFX##_fmadd_##SFX(a, b[v], c[i][v]);                                      \
            }                                                                                           \
        }                                                                                               \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                        \
                PFX##_storeu_##SFX(acc + (i * NV + v) * LANES, c[i][v]);                                \
    }
    #define FE_G256(T, SFX, NV)                                                                         \
        FE_DEFINE_GRAM_FAST(fe_g256_##T##_##NV, "avx2,fma", T, FE_V256_##T, 32 / sizeof(T), SFX, _mm256, 4, NV)
    #define FE_G512(T, SFX, MR, NV)                                                                     \
        FE_DEFINE_GRAM_FAST(fe_g512r##MR##_##T##_##NV, "avx512f", T, FE_V512_##T, 64 / sizeof(T), SFX, _mm512, MR, NV)
    #define FE_DEFINE_GRAM_FAST_ALL(T, SFX)                                                             \
    FE_G256(T, SFX, 1) FE_G256(T, SFX, 2) FE_G256(T, SFX, 3)                                            \
    FE_G512(T, SFX, 4, 1) FE_G512(T, SFX, 4, 2) FE_G512(T, SFX, 4, 3)                                   \
    FE_G512(T, SFX, 4, 4) FE_G512(T, SFX, 4, 5) FE_G512(T, SFX, 4, 6)                                   \
    FE_G512(T, SFX, 8, 1) FE_G512(T, SFX, 8, 2) FE_G512(T, SFX, 8, 3)                                   \
    typedef void (*fe_gram_fast_##SFX##_fn)(const T*, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, T*, int); \
    static int fe_gram_fast_##SFX(int width, int nv, const T* x, ptrdiff_t x_rs, ptrdiff_t kc,         \
                                  ptrdiff_t i0, ptrdiff_t j0, T* acc, int zero) {                       \
        static const fe_gram_fast_##SFX##_fn t256[FE_NV256 + 1] = {                                     \
            0, fe_g256_##T##_1, fe_g256_##T##_2, fe_g256_##T##_3};                                      \
        static const fe_gram_fast_##SFX##_fn r4[FE_NV512 + 1] = {0, fe_g512r4_##T##_1, fe_g512r4_##T##_2, \
            fe_g512r4_##T##_3, fe_g512r4_##T##_4, fe_g512r4_##T##_5, fe_g512r4_##T##_6};                  \
        static const fe_gram_fast_##SFX##_fn r8[FE_NV512_ROWS8 + 1] = {                                 \
            0, fe_g512r8_##T##_1, fe_g512r8_##T##_2, fe_g512r8_##T##_3};                                \
        (width == 512 ? (fe_rows512 == 8 ? r8 : r4) : t256)[nv](x, x_rs, kc, i0, j0, acc, zero);        \
        return 1;                                                                                       \
    }
    FE_DEFINE_GRAM_FAST_ALL(float, ps)
    FE_DEFINE_GRAM_FAST_ALL(double, pd)
    /* g[j] += acc[j] in float64, j < n (a row of a Gram tile's float32 sums joining the Gram matrix):
       the same bits as the scalar loop, four at a time. */
    __attribute__((target("avx2"))) static void fe_add_widened_avx2(const float* acc, double* g, ptrdiff_t n) {
        ptrdiff_t j = 0;
        for (; j + 4 <= n; j += 4)
            _mm256_storeu_pd(g + j, _mm256_add_pd(_mm256_loadu_pd(g + j), _mm256_cvtps_pd(_mm_loadu_ps(acc + j))));
        for (; j < n; j++)
            g[j] += (double)acc[j];
    }
    /* _sq_sum (_common.pxi) of a float32 row with its four float64 accumulators (j mod 4) as the
       lanes of one vector: the same products and sums, in the same order, so the same bits. */
    __attribute__((target("avx2"))) static double fe_sq_sum_f32_avx2(const float* row, ptrdiff_t d) {
        __m256d acc = _mm256_setzero_pd();
        ptrdiff_t j, d4 = d - d % 4;
        double lane[4];
        for (j = 0; j < d4; j += 4) {
            __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(row + j));
            acc = _mm256_add_pd(acc, _mm256_mul_pd(v, v));
        }
        _mm256_storeu_pd(lane, acc);
        for (j = d4; j < d; j++)
            lane[0] = lane[0] + (double)row[j] * (double)row[j];
        return (lane[0] + lane[1]) + (lane[2] + lane[3]);
    }
    /* Peak multiply-add throughput of one core: CHAINS independent chains of n steps; returns their
       sum (so the work cannot be optimised away). The chains and the two constants must fit the
       registers: 16 of AVX-512's 32, but 12 of AVX2's 16 (16 chains there spilled one to memory and
       the probe read 135 GFLOP/s on a Zen 4 whose AVX2 tiles ran at 170 and OpenBLAS's AVX2 sgemm at
       209). 12 chains cover the 2 ports x 4-5 cycles of latency of the cores seen here. */
    #define FE_PROBE_CHAINS512 16
    #define FE_PROBE_CHAINS256 12
    #define FE_DEFINE_PROBE(NAME, TARGET, VEC, SET1, FMA, STORE, LANES, CHAINS)                          \
    __attribute__((target(TARGET))) static double NAME(long n) {                         \
        VEC c[CHAINS], b = SET1(0.999999f), a = SET1(1e-6f);                                            \
        float lanes[LANES];                                                                             \
        double total = 0;                                                                               \
        _Pragma("GCC unroll 16") for (int i = 0; i < CHAINS; i++) c[i] = SET1((float)i);                \
        for (long k = 0; k < n; k++) {                                                                  \
            _Pragma("GCC unroll 16") for (int i = 0; i < CHAINS; i++) c[i] = FMA(c[i], b, a);           \
        }                                                                                               \
        for (int i = 0; i < CHAINS; i++) {                                                              \
            STORE(lanes, c[i]);                                                                         \
            for (int j = 0; j < LANES; j++) total += lanes[j];                                          \
        }                                                                                               \
        return total;                                                                                   \
    }
    FE_DEFINE_PROBE(fe_probe_avx512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, 16,
                    FE_PROBE_CHAINS512)
    FE_DEFINE_PROBE(fe_probe_avx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, 8,
                    FE_PROBE_CHAINS256)
    #else
    static double fe_probe_avx512(long n) { return 0; }
    static double fe_probe_avx2(long n) { return 0; }
    /* Never called: fe_simd_width() is 0 off x86, so the tiles only need to link. */
    static void fe_tile_f32(int width, int nv, FE_TILE_ARGS(float)) {}
    static void fe_tile_f64(int width, int nv, FE_TILE_ARGS(double)) {}
    static void fe_gram_tile_f32(int width, int nv, const float* const* a, ptrdiff_t a_cs, const float* p,
                                 ptrdiff_t p_rs, ptrdiff_t r, int w, float* acc, int stage) {}
    static void fe_gram_tile_f64(int width, int nv, const double* const* a, ptrdiff_t a_cs, const double* p,
                                 ptrdiff_t p_rs, ptrdiff_t r, int w, double* acc, int stage) {}
    static int fe_gram_fast_ps(int width, int nv, const float* x, ptrdiff_t x_rs, ptrdiff_t kc, ptrdiff_t i0,
                               ptrdiff_t j0, float* acc, int zero) { return 0; }
    static int fe_gram_fast_pd(int width, int nv, const double* x, ptrdiff_t x_rs, ptrdiff_t kc, ptrdiff_t i0,
                               ptrdiff_t j0, double* acc, int zero) { return 0; }
    static void fe_add_widened_avx2(const float* acc, double* g, ptrdiff_t n) {}
    static double fe_sq_sum_f32_avx2(const float* row, ptrdiff_t d) { return 0; }
    #endif
    """
    int FE_MR
    int FE_MR256
    void* FE_ALIGN64(void* p) noexcept nogil
    int FE_ACC_IN
    int FE_ACC_OUT
    void* fe_pack_take(size_t size, void** owned) noexcept nogil
    ctypedef struct fe_task_range:
        Py_ssize_t next
        Py_ssize_t end
    void fe_task_ranges(fe_task_range* ranges, int n_ranges, Py_ssize_t n_tasks) noexcept nogil
    Py_ssize_t fe_take_task(fe_task_range* ranges, int n_ranges, int home) noexcept nogil
    int FE_NV512
    int FE_NV512_ROWS8
    int fe_rows512
    int fe_default_rows512() noexcept nogil
    int FE_NV256
    int fe_team_size() noexcept nogil
    void fe_team_barrier() noexcept nogil
    int fe_simd_width() noexcept nogil
    void fe_prefetch "__builtin_prefetch"(const void* p) noexcept nogil
    void fe_prefetch_write "__builtin_prefetch"(const void* p, int rw) noexcept nogil
    double fe_probe_avx512(long n) noexcept nogil
    double fe_probe_avx2(long n) noexcept nogil
    int FE_PROBE_CHAINS512
    int FE_PROBE_CHAINS256
    void fe_tile_f32(int width, int nv, const float* const* a, Py_ssize_t a_cs, int m, const float* p,
                     Py_ssize_t p_rs, int padded, Py_ssize_t r, int w, int lead, float scale, const float* bias,
                     const float* pos, Py_ssize_t pos_rs, const int64_t* pos_rows, float* out, Py_ssize_t d,
                     const Py_ssize_t* starts, const Py_ssize_t* order, float* acc, int stage) noexcept nogil
    void fe_tile_f64(int width, int nv, const double* const* a, Py_ssize_t a_cs, int m, const double* p,
                     Py_ssize_t p_rs, int padded, Py_ssize_t r, int w, int lead, double scale, const double* bias,
                     const double* pos, Py_ssize_t pos_rs, const int64_t* pos_rows, double* out, Py_ssize_t d,
                     const Py_ssize_t* starts, const Py_ssize_t* order, double* acc, int stage) noexcept nogil
    void fe_gram_tile_f32(int width, int nv, const float* const* a, Py_ssize_t a_cs, const float* p,
                          Py_ssize_t p_rs, Py_ssize_t r, int w, float* acc, int stage) noexcept nogil
    void fe_gram_tile_f64(int width, int nv, const double* const* a, Py_ssize_t a_cs, const double* p,
                          Py_ssize_t p_rs, Py_ssize_t r, int w, double* acc, int stage) noexcept nogil
    int fe_gram_fast_ps(int width, int nv, const float* x, Py_ssize_t x_rs, Py_ssize_t kc, Py_ssize_t i0,
                        Py_ssize_t j0, float* acc, int zero) noexcept nogil
    int fe_gram_fast_pd(int width, int nv, const double* x, Py_ssize_t x_rs, Py_ssize_t kc, Py_ssize_t i0,
                        Py_ssize_t j0, double* acc, int zero) noexcept nogil
    void fe_add_widened_avx2(const float* acc, double* g, Py_ssize_t n) noexcept nogil
    double fe_sq_sum_f32_avx2(const float* row, Py_ssize_t d) noexcept nogil

DEF MAX_MR = 8

ctypedef fused remap_t:  # project_distinct's remap, apart from uniq (which may be None)
    int32_t
    int64_t

DEF ROWS_PER_TASK = 16  # with AVX-512's 8-row tiles; see _run_grid
DEF ROWS_PER_TASK_BIG_PROJ = 64
DEF EMIT_RUN_ROWS = ROWS_PER_TASK_BIG_PROJ  # _emit_rows's runs: a task's rows
DEF PROJ_L2_BYTES = 1048576
DEF PACK_MIN_ROWS = 256  # see _packed_proj
DEF PACK_MIN_ROWS_4K = 64
DEF GRAM_CHUNK = 256  # rows summed in the input dtype before their sums join the float64 Gram matrix
DEF GRAM_L1_BYTES = 24576  # see gram_rows
DEF GRAM_SUB_ROWS = 64  # see gram_rows
DEF TASK_FIELDS = 5  # gram_rows's task records


def simd_width():
    """Vector width in bits of the widest micro-tile this CPU runs: 512 (AVX-512F), 256 (AVX2 + FMA)
    or 0 (none: only the portable loop)."""
    return fe_simd_width()


def simd_available():
    """True when a SIMD micro-tile runs on this CPU."""
    return fe_simd_width() > 0


fe_rows512 = fe_default_rows512()


def tile_rows512(value=None):
    """Rows of the AVX-512 micro-tiles: 8 (8 x 3 vectors) or 4 (4 x 6), chosen at import for this
    CPU; ``value`` (4 or 8) sets them for every later call (tests run both: they sum in the same
    order, so they give the same bits). Returns the value in force before the call."""
    global fe_rows512
    cdef int previous = fe_rows512
    if value is not None:
        if value not in (4, 8):
            raise ValueError("tile_rows512: 4 or 8")
        fe_rows512 = value
    return previous


cdef inline int _nv512() noexcept nogil:
    """Vectors of the widest strip the AVX-512 tiles in force run: FE_NV512_ROWS8 with 8 rows,
    FE_NV512 with 4."""
    return FE_NV512_ROWS8 if fe_rows512 == 8 else FE_NV512


def tile_shape512():
    """(rows, vectors) of the AVX-512 micro-tiles in force (tile_rows512): (8, FE_NV512_ROWS8) or
    (4, FE_NV512), the widest strip each runs."""
    return fe_rows512, _nv512()


cdef inline int _effective_width(int requested) noexcept nogil:
    cdef int here = fe_simd_width()
    if requested >= 512 and here >= 512:
        return 512
    if requested >= 256 and here >= 256:
        return 256
    return 0


def fma_probe(long n_steps, int n_threads, int width=512):
    """Run ``n_steps`` of independent vector multiply-add chains (16 of AVX-512, 12 of AVX2: what
    the registers hold) on each of ``n_threads`` threads (AVX-512 where available and ``width``
    allows, else AVX2+FMA): returns (flops done, instruction set), or (0.0, None) where neither
    runs. Timed by the caller, it measures the cores' peak float32 FMA throughput at the tiles'
    width, the compute bound that every projection here is compared with."""
    cdef int t
    cdef double sink = 0, per_thread = 0
    width = _effective_width(width)
    cdef bint wide = width == 512
    if width == 0:
        return 0.0, None
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    # fe_unstack as in the kernels: a worker the VM stacked on the caller's CPU halved the probe
    # (117 against 235 GFLOP/s on the Zen 4, below numpy's sgemm rate, every bound doubled)
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for t in prange(n_threads, schedule="static", chunksize=1):
            if wide:
                sink += fe_probe_avx512(n_steps)
            else:
                sink += fe_probe_avx2(n_steps)
    per_thread = 2.0 * (FE_PROBE_CHAINS512 * 16 if wide else FE_PROBE_CHAINS256 * 8) * n_steps
    return (per_thread * n_threads if sink == sink else 0.0), ("avx512f" if wide else "avx2")


cdef inline Py_ssize_t _row(const index_t* rows, Py_ssize_t n) noexcept nogil:
    return n if rows == NULL else <Py_ssize_t>rows[n]


cdef inline void _finish_copy(const real* src, real* dst, Py_ssize_t w, const real* q) noexcept nogil:
    """dst[:w] = src[:w] + q[:w] (q None: a copy): the position term of one occurrence."""
    cdef Py_ssize_t j
    if q == NULL:
        for j in range(w):
            dst[j] = src[j]
    else:
        for j in range(w):
            dst[j] = src[j] + q[j]


cdef struct _Strips:
    # proj's columns [0, dv) cut into n strips of whole vectors: the first n_big hold ``big`` vectors,
    # the others big - 1 (see _strips)
    Py_ssize_t lanes  # columns a vector
    Py_ssize_t big
    Py_ssize_t n_big
    Py_ssize_t n


cdef _Strips _strips(Py_ssize_t dv, int width, Py_ssize_t itemsize) noexcept nogil:
    """As few strips as the ISA's widest tile allows, their vector counts differing by at most one
    (AVX-512, d = 64 floats: two strips of 2 vectors rather than 3 + 1, whose narrow tile spends a
    broadcast per FMA). Strips of one width and a narrow last one took longer: AVX2, rank-128
    outputs (16 vectors) as 3,3,3,3,3,1 rather than 3,3,3,3,2,2: factorize's codes of MiniLM (30522
    x 384 @ 384 x 128) 17.4-18.0 ms against 16.6-17.4 on 2 threads, 34.6-35.1 against 32.5-33.1 on
    one (Zen 4, FASTEMBED_SIMD=avx2, interleaved). The portable loop only uses them as column
    blocks."""
    cdef _Strips st
    cdef Py_ssize_t n_vec, most
    st.lanes = (32 if width == 256 else 64) // itemsize
    n_vec = (dv + st.lanes - 1) // st.lanes
    most = FE_NV256 if width == 256 else _nv512()
    st.n = max(1, (n_vec + most - 1) // most)
    st.big = (n_vec + st.n - 1) // st.n
    st.n_big = n_vec - st.n * (st.big - 1)
    return st


cdef Py_ssize_t _strip_width(Py_ssize_t d, int width, Py_ssize_t itemsize) noexcept nogil:
    """Columns of _strips's widest strip (gram_rows's strips are all that wide but the last)."""
    cdef _Strips st = _strips(d, width, itemsize)
    return st.big * st.lanes


cdef inline Py_ssize_t _strip_start(const _Strips* st, Py_ssize_t s) noexcept nogil:
    """The first column of strip s (0 <= s <= n; strip n's is the strips' end)."""
    return st.lanes * (s * st.big - max(0, s - st.n_big))


cdef void _task_simd(const real* t0, Py_ssize_t t_rs, Py_ssize_t t_cs, const index_t* rows,
                     const real* p0, Py_ssize_t p_rs, const real* packed, Py_ssize_t r, Py_ssize_t d,
                     real scale, const real* b0, const real* q0, Py_ssize_t q_rs, const int64_t* q_rows,
                     const Py_ssize_t* starts, const Py_ssize_t* order,
                     real* out, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t s0, Py_ssize_t s1,
                     const _Strips* st, int width, int shift, int stream) noexcept nogil:
    cdef const real* a[MAX_MR]
    cdef Py_ssize_t own_starts[MAX_MR + 1]
    cdef Py_ssize_t own_order[MAX_MR]
    cdef const Py_ssize_t* tile_starts = own_starts
    cdef const Py_ssize_t* tile_order = own_order
    cdef const real* bj
    cdef const real* pj
    cdef Py_ssize_t ii, i, j, jn, end, s, t, pj_rs
    cdef Py_ssize_t j0 = _strip_start(st, s0), j1 = min(_strip_start(st, s1), d + shift)
    cdef Py_ssize_t lanes = width // 8 // <Py_ssize_t>sizeof(real)
    cdef int m, w, nv, lead
    cdef void* raw = NULL
    cdef real* buf = NULL
    cdef real* dst = out
    cdef real tile_scale = scale
    cdef const real* tile_b0 = b0
    cdef const real* tile_q0 = q0
    cdef bint scatter  # the tiles write each distinct row's occurrences themselves
    cdef Py_ssize_t c0 = 0, c1 = d, ld = d  # the output columns dst holds, and its row stride
    cdef bint whole_rows = j0 == 0 and j1 - shift >= d  # the task covers its rows' every column
    # Column strips outside, row tiles inside: a strip of proj (r x its width), packed or in place, is read
    # by every row tile of the task from L1 or L2. Tile row i is output row ii + i, or with ``starts``
    # distinct row ii + i, written to each of its occurrences. The task's strips s0..s1 cover columns
    # j0..j1, which count from ``shift`` columns before the first (see _lead); p0, out, b0 and q0 point at
    # column 0. With ``stream`` (an output past the streaming threshold; a task of whole rows, or of a
    # column block of strips that start on column 0) the tiles write their raw sums to a buffer of the
    # task's rows (columns c0..c1), which _emit_rows or _emit_segments then finishes into the output with
    # streaming stores: the tiles' own stores wrote a strip of each row at a time, each line read from
    # memory first. The sums times 1 are the sums, and the finish rounds s * scale, + b, + p as the tile
    # does: the same bits.
    if stream and (whole_rows or shift == 0):
        if not whole_rows:
            c0, c1 = j0, min(j1, d)
            ld = c1 - c0
        raw = malloc((i1 - i0) * ld * sizeof(real) + 64)
        if raw != NULL:
            buf = <real*>FE_ALIGN64(raw)
            dst, tile_scale, tile_b0, tile_q0 = buf, 1, NULL, NULL
        else:
            c0, c1, ld = 0, d, d
    for i in range(FE_MR):
        own_starts[i] = i
    own_starts[FE_MR] = FE_MR
    scatter = starts != NULL and buf == NULL
    if scatter:
        tile_order = order
    j = j0
    for s in range(s0, s1):
        end = _strip_start(st, s + 1)
        jn = min(end, j1)
        w = <int>(jn - j)
        nv = <int>((w + lanes - 1) // lanes)
        lead = shift if j == 0 else 0
        bj = tile_b0 + (j - shift) if tile_b0 != NULL else NULL
        if packed != NULL:
            pj = packed + j * r
            pj_rs = end - j
        else:
            pj = p0 + (j - shift)
            pj_rs = p_rs
        ii = i0
        while ii < i1:
            m = <int>min(<Py_ssize_t>FE_MR, i1 - ii)
            for i in range(FE_MR):
                t = ii + (i if i < m else 0)
                a[i] = t0 + _row(rows, t) * t_rs
                own_order[i] = t if buf == NULL else t - i0
            if scatter:
                tile_starts = starts + ii
            if j == j0 and ii + FE_MR < i1:
                _prefetch_rows(t0, t_rs, t_cs, rows, ii + FE_MR, min(ii + 2 * FE_MR, i1), r)
            if ii + FE_MR < i1 and buf == NULL:
                if starts != NULL:
                    _prefetch_writes(out + (j - shift), d, w, order, starts[ii + FE_MR], starts[min(ii + 2 * FE_MR, i1)])
                else:
                    _prefetch_writes(out + (j - shift), d, w, NULL, ii + FE_MR, min(ii + 2 * FE_MR, i1))
            if real is float:
                fe_tile_f32(width, nv, a, t_cs, m, pj, pj_rs, packed != NULL, r, w, lead, tile_scale, bj,
                            tile_q0 + (j - shift) if tile_q0 != NULL else NULL, q_rs, q_rows, dst + (j - shift - c0), ld,
                            tile_starts, tile_order, NULL, 0)
            else:
                fe_tile_f64(width, nv, a, t_cs, m, pj, pj_rs, packed != NULL, r, w, lead, tile_scale, bj,
                            tile_q0 + (j - shift) if tile_q0 != NULL else NULL, q_rs, q_rows, dst + (j - shift - c0), ld,
                            tile_starts, tile_order, NULL, 0)
            ii += FE_MR
        j = jn
    if buf != NULL and ld == d:
        _emit_rows(buf, out, i0, i1, d, scale, b0, q0, q_rs, q_rows, starts, order, stream)
    elif buf != NULL:
        _emit_segments(buf, out, i0, i1, d, c0, c1, scale, b0, q0, q_rs, q_rows, starts, order, stream)
    free(raw)


cdef void _emit_segments(const real* buf, real* out, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t d,
                         Py_ssize_t c0, Py_ssize_t c1, real scale, const real* b0, const real* q0,
                         Py_ssize_t q_rs, const int64_t* q_rows, const Py_ssize_t* starts,
                         const Py_ssize_t* order, int stream) noexcept nogil:
    """_emit_rows for a task of columns c0..c1 (buf's rows hold c1 - c0 sums): each output row's
    segment o[c0:c1] = buf[t - i0] * scale + b0[c0:c1] + q0[q_rows[o]][c0:c1], with streaming
    stores for its whole lines (_emit_row)."""
    cdef Py_ssize_t t, x, o, w = c1 - c0
    cdef const real* s
    for t in range(i0, i1):
        s = buf + (t - i0) * w
        for x in range(starts[t] if starts != NULL else t, starts[t + 1] if starts != NULL else t + 1):
            o = order[x] if starts != NULL else x
            _emit_row(out + o * d + c0, s, 1, scale, _from(b0, c0),
                      q0 + q_rows[o] * q_rs + c0 if q0 != NULL else NULL, 1, w, stream)
    fe_store_fence()


cdef void _emit_rows(const real* buf, real* out, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t d, real scale,
                     const real* b0, const real* q0, Py_ssize_t q_rs, const int64_t* q_rows,
                     const Py_ssize_t* starts, const Py_ssize_t* order, int stream) noexcept nogil:
    """out[o] = buf[t - i0] * scale + b0 + q0[q_rows[o]] for the rows t of a task, o = t (one run of
    consecutive rows: _emit_run) or with ``starts`` each occurrence o = order[x] of distinct row t,
    with streaming stores."""
    cdef Py_ssize_t t, c, e
    cdef const real* srows[EMIT_RUN_ROWS]
    cdef const real* prows[EMIT_RUN_ROWS]
    if starts != NULL:  # occurrences lie anywhere: row by row
        _emit_segments(buf, out, i0, i1, d, 0, d, scale, b0, q0, q_rs, q_rows, starts, order, stream)
        return
    c = i0
    while c < i1:  # one run of a task's rows (at most EMIT_RUN_ROWS: see _run_grid)
        e = min(i1, c + EMIT_RUN_ROWS)
        for t in range(c, e):
            srows[t - c] = buf + (t - i0) * d
            prows[t - c] = q0 + q_rows[t] * q_rs if q0 != NULL else NULL
        _emit_run(out + c * d, e - c, d, srows, prows if q0 != NULL else NULL, scale, b0, stream)
        c = e
    fe_store_fence()


cdef inline void _prefetch_rows(const real* t0, Py_ssize_t t_rs, Py_ssize_t t_cs, const index_t* rows,
                                Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t r) noexcept nogil:
    """Ask for the table rows of tile rows [i0, i1) ahead of the tile that reads them: gathered
    rows of a large table come from memory, in an order no hardware prefetcher predicts."""
    cdef Py_ssize_t i, k, step = 64 // <Py_ssize_t>sizeof(real)
    cdef const real* row
    if t_cs != 1:
        return
    for i in range(i0, i1):
        row = t0 + _row(rows, i) * t_rs
        k = 0
        while k < r:
            fe_prefetch(row + k)
            k += step


cdef inline void _prefetch_writes(real* out, Py_ssize_t d, Py_ssize_t w, const Py_ssize_t* order,
                                  Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    """Ask for the output rows order[x0:x1] (x0:x1 for order NULL; w columns from ``out``) ahead of
    the tile that writes them: a distinct row's occurrences lie anywhere in the output, and even
    consecutive rows are written a strip at a time, too sparse for the hardware prefetchers."""
    cdef Py_ssize_t x, k, step = 64 // <Py_ssize_t>sizeof(real)
    cdef real* row
    for x in range(x0, x1):
        row = out + (order[x] if order != NULL else x) * d
        k = 0
        while k < w:
            fe_prefetch_write(row + k, 1)
            k += step


cdef void _pack_strip(const real* p0, Py_ssize_t p_rs, Py_ssize_t r, Py_ssize_t d, Py_ssize_t s,
                      const _Strips* st, real* packed) noexcept nogil:
    """Copy strip s of proj (r x d; columns j0 .. j0 + nw, j0 = _strip_start(st, s)) to ``packed +
    r*j0`` as r rows of nw, zero past column d."""
    cdef Py_ssize_t j0 = _strip_start(st, s), nw = _strip_start(st, s + 1) - j0, k, j
    cdef Py_ssize_t w = min(nw, d - j0)
    cdef real* dst = packed + r * j0
    cdef const real* src
    for k in range(r):
        src = p0 + k * p_rs + j0
        for j in range(w):
            dst[j] = src[j]
        for j in range(w, nw):
            dst[j] = 0
        dst += nw


cdef void _task_loop(const real* t0, Py_ssize_t t_rs, Py_ssize_t t_cs, const index_t* rows,
                     const real* p0, Py_ssize_t p_rs, Py_ssize_t r, Py_ssize_t d, real scale,
                     const real* b0, const real* q0, Py_ssize_t q_rs, const int64_t* q_rows,
                     const Py_ssize_t* starts, const Py_ssize_t* order,
                     real* out, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    # Accumulates in the output row itself: o[j] += e[k] * p[k, j] over k ascending, then the epilogue.
    # With ``starts``, row i is distinct row i, accumulated in its first occurrence's row; its other
    # occurrences copy that row (scale and bias applied) before the first adds its own position.
    cdef Py_ssize_t i, j, k, x, first
    cdef const real* e
    cdef const real* p
    cdef const real* qi
    cdef real* o
    cdef real v
    for i in range(i0, i1):
        if starts != NULL and starts[i] == starts[i + 1]:
            continue  # a distinct row no output row refers to (another block's, or an unused one)
        e = t0 + _row(rows, i) * t_rs
        first = order[starts[i]] if starts != NULL else i
        o = out + first * d
        for j in range(j0, j1):
            o[j] = 0
        for k in range(r):
            v = e[k * t_cs]
            p = p0 + k * p_rs
            for j in range(j0, j1):
                o[j] = o[j] + v * p[j]
        for j in range(j0, j1):
            o[j] = o[j] * scale
        if b0 != NULL:
            for j in range(j0, j1):
                o[j] = o[j] + b0[j]
        if starts != NULL:
            for x in range(starts[i] + 1, starts[i + 1]):
                _finish_copy(o + j0, out + order[x] * d + j0, j1 - j0,
                             q0 + q_rows[order[x]] * q_rs + j0 if q0 != NULL else NULL)
        qi = q0 + q_rows[first] * q_rs if q0 != NULL else NULL
        if qi != NULL:
            for j in range(j0, j1):
                o[j] = o[j] + qi[j]


cdef Py_ssize_t _streamed_calls = 0


def streamed_calls():
    """How many calls of project_rows and project_distinct have chosen streaming stores so far in
    this process (the tests' view of that choice, which changes no value)."""
    return _streamed_calls


def project_rows(const real[:, :] table, const index_t[::1] rows, const real[:, ::1] proj, double scale,
                 const real[::1] bias, const real[:, :] pos, const int64_t[::1] pos_rows,
                 real[:, ::1] out, double whole_bytes, int simd, int n_threads):
    """out[n, :] = (table[rows[n], :] @ proj) * scale + bias + pos[pos_rows[n], :], fused.

    ``rows`` None means rows[n] == n. ``bias`` and ``pos``/``pos_rows`` are
    optional (None). ``table`` may have any strides; ``proj`` is C-contiguous
    and ``pos`` needs unit column stride. ``whole_bytes``: the bytes of the whole output when
    ``out`` is one block of it (a caller cutting a long call into blocks), else 0 (out's own);
    streaming stores are chosen by that size, so that every block stores as one call would.
    ``simd`` is the widest micro-tile allowed in bits (512, 256; 0 for the portable loop); the CPU
    may allow less. Returns the number of out-of-range indices (rows or pos_rows); when it is not 0
    nothing was written.
    """
    if rows is None and out.shape[0] > table.shape[0]:
        raise ValueError("project_rows: without rows, table needs one row per output row")
    if rows is not None and rows.shape[0] != out.shape[0]:
        raise ValueError("project_rows: rows shape mismatch")
    return _project(table, rows, False, <int64_t*>NULL, proj, scale, bias, pos, pos_rows, out, whole_bytes, simd,
                    n_threads)


def project_distinct(const real[:, :] table, const index_t[::1] uniq, const remap_t[::1] remap,
                     const real[:, ::1] proj, double scale, const real[::1] bias, const real[:, :] pos,
                     const int64_t[::1] pos_rows, real[:, ::1] out, int simd, int n_threads):
    """out[n, :] = (table[uniq[remap[n]], :] @ proj) * scale + bias + pos[pos_rows[n], :], each
    distinct row projected once (the tiles of project_rows, whose epilogue writes every occurrence).

    ``uniq`` None means uniq[u] == u (U = table rows). Rows n with remap[n] outside [0, U) are
    left untouched (a caller covers a long uniq in blocks by shifting remap). Returns the number
    of out-of-range indices (uniq or pos_rows); when it is not 0 nothing was written. The rest as
    project_rows.
    """
    if remap.shape[0] != out.shape[0]:
        raise ValueError("project_distinct: remap shape mismatch")
    return _project(table, uniq, True, &remap[0] if remap.shape[0] else NULL, proj, scale, bias, pos,
                    pos_rows, out, 0, simd, n_threads)


cdef object _project(const real[:, :] table, const index_t[::1] rows, bint distinct, const remap_t* remap,
                     const real[:, ::1] proj, double scale, const real[::1] bias, const real[:, :] pos,
                     const int64_t[::1] pos_rows, real[:, ::1] out, double whole_bytes, int simd, int n_threads):
    """project_rows or (``distinct``) project_distinct: checks, then the task grid over the source
    rows (every output row, or the distinct rows)."""
    global _streamed_calls
    cdef Py_ssize_t n = out.shape[0], d = out.shape[1], r = table.shape[1]
    cdef Py_ssize_t n_src = table.shape[0], n_pos = 0, bad = 0, n_grid = n
    cdef Py_ssize_t t_rs, t_cs, q_rs = 0, p_rs
    cdef const real* t0
    cdef const real* p0
    cdef const real* b0 = NULL
    cdef const real* q0 = NULL
    cdef const int64_t* q_rows = NULL
    cdef const index_t* rows0 = NULL
    cdef Py_ssize_t* starts = NULL
    cdef Py_ssize_t* order = NULL
    cdef real sc = <real>scale
    cdef Py_ssize_t x
    cdef int width = _effective_width(simd), stream
    if proj.shape[0] != r or proj.shape[1] != d:
        raise ValueError("project_rows: proj shape mismatch")
    _check_terms("project_rows", bias, pos, pos_rows, n, d)
    if bias is not None:
        b0 = &bias[0]
    if pos is not None:
        if d > 1 and pos.strides[1] != <Py_ssize_t>sizeof(real):
            raise ValueError("project_rows: pos needs unit column stride")
        n_pos = pos.shape[0]
    if distinct:
        n_grid = rows.shape[0] if rows is not None else n_src
    if n == 0 or d == 0 or n_grid == 0:
        return 0
    if rows is not None:
        rows0 = &rows[0]
        with nogil:
            for x in range(n_grid):
                if rows0[x] < 0 or rows0[x] >= n_src:
                    bad += 1
    if pos is not None:
        q_rows = &pos_rows[0]
        with nogil:
            for x in range(n):
                if q_rows[x] < 0 or q_rows[x] >= n_pos:
                    bad += 1
    if bad:
        return bad
    if distinct:
        starts = <Py_ssize_t*>malloc((2 * n_grid + 1 + n) * sizeof(Py_ssize_t))
        if starts == NULL:
            raise MemoryError()
        order = starts + n_grid + 1
        with nogil:
            _occurrences(remap, n, n_grid, starts, order, order + n)
    if pos is not None and n_pos:
        q0 = &pos[0, 0]
        q_rs = pos.strides[0] // <Py_ssize_t>sizeof(real)
    if r == 0:
        t0 = p0 = NULL
    else:
        t0 = &table[0, 0]
        p0 = &proj[0, 0]
    t_rs = table.strides[0] // <Py_ssize_t>sizeof(real)
    t_cs = table.strides[1] // <Py_ssize_t>sizeof(real)
    p_rs = proj.strides[0] // <Py_ssize_t>sizeof(real)
    stream = _stream_for(&out[0, 0], max(whole_bytes, <double>n * d * sizeof(real)), sizeof(real)) if width else 0
    _streamed_calls += stream != 0
    try:
        _run_grid(t0, t_rs, t_cs, rows0, p0, p_rs, r, n_grid, d, sc, b0, q0, q_rs, q_rows, starts, order,
                  &out[0, 0], width, n_threads, stream)
    finally:
        free(starts)
    return 0


cdef void _occurrences(const remap_t* remap, Py_ssize_t n, Py_ssize_t n_distinct, Py_ssize_t* starts,
                       Py_ssize_t* order, Py_ssize_t* cursor) noexcept nogil:
    """The rows of each distinct row, ascending: order[starts[u]:starts[u + 1]] = {n : remap[n] == u}
    (rows whose remap is outside [0, n_distinct) appear nowhere). ``cursor`` has n_distinct slots."""
    cdef Py_ssize_t x, u
    for u in range(n_distinct + 1):
        starts[u] = 0
    for x in range(n):
        u = remap[x]
        if 0 <= u < n_distinct:
            starts[u + 1] += 1
    for u in range(n_distinct):
        starts[u + 1] += starts[u]
        cursor[u] = starts[u]
    for x in range(n):
        u = remap[x]
        if 0 <= u < n_distinct:
            order[cursor[u]] = x
            cursor[u] += 1


cdef int _lead(const void* p0, Py_ssize_t p_rs, int width, Py_ssize_t itemsize) noexcept nogil:
    """Columns by which proj's strips start before its first column, so that the tiles' vector loads
    of proj (read in place) start on addresses aligned to the vector width: 0 when they already
    do, or when the rows are not all aligned alike. numpy aligns arrays to 16 bytes only, and a
    misaligned 64-byte load spans two cache lines: on an Intel Xeon with AVX-512 (2 FMA units) the
    1 x 128 ALBERT-base lookup took 133 us against 98 aligned, xxlarge 52-54 ms against 41."""
    cdef Py_ssize_t vector = width // 8, off
    if not width or (p_rs * itemsize) % vector:
        return 0
    off = <Py_ssize_t>(<size_t>p0 % <size_t>vector)
    return <int>(off // itemsize) if off % itemsize == 0 else 0


cdef real* _packed_proj(const real* p0, Py_ssize_t p_rs, Py_ssize_t r, Py_ssize_t d, const _Strips* st,
                        Py_ssize_t n_rows, int width, int n_threads, int caller_cpu, void** raw) noexcept:
    """proj copied strip by strip into contiguous panels (strip s: r rows of its width, from
    ``r * _strip_start(st, s)``), aligned (fe_pack_take's memory:
    free(raw[0]) afterwards), or NULL when the tiles read it in place. Read in place, a strip's
    rows lie d apart, and for d a multiple of 256 bytes they share a few cache sets and miss L1; for
    a multiple of 4 KiB they share one set per column vector. The copy is one more pass over proj,
    paid back by enough rows: PACK_MIN_ROWS, or PACK_MIN_ROWS_4K for rows 4 KiB apart (except with
    the 4 x 6 AVX-512 tiles: see below). Measured with 2 threads, the AVX2 tiles on a Zen 4 (r =
    128..256, d = 384..4096) ran 1.3-2x faster packed from 512 rows and broke even at 128; the
    AVX-512 tiles on an Intel Xeon (2 FMA units, misaligned proj read with _lead's shift) at
    ALBERT-base shapes 0.88x the time from 1024 rows, 1.01x at 256, 1.19x at 128;
    at r = 256, d = 4096 0.79x from 128 rows, 0.58x from 1024 (on the Zen 4 they had gained 2-5%
    from 8192 rows). The packing is a parallel region of its own: its end is the barrier the tiles
    need before they read the strips."""
    cdef Py_ssize_t n_pack, s
    cdef real* packed
    raw[0] = NULL
    # The AVX-512 4 x 6 tiles (AMD's) read even 4 KiB-strided strips faster in place: Zen 4, 2 threads,
    # interleaved, GFLOP/s in place against packed from 64 rows: r = 128 d = 1024 192 vs 134 at 64
    # rows, 195 vs 175 at 200; r = 256 d = 2048 207 vs 185 and d = 4096 196 vs 159-174 at 128 (the
    # AVX2 tiles there lost in place: 117 vs 140 at d = 1024, 128 rows).
    cdef bint early_4k = (p_rs * sizeof(real)) % 4096 == 0 and not (width == 512 and fe_rows512 == 4)
    if not width or r == 0 or n_rows < (PACK_MIN_ROWS_4K if early_4k else PACK_MIN_ROWS):
        return NULL
    n_pack = st.n
    packed = <real*>fe_pack_take(r * _strip_start(st, n_pack) * sizeof(real), raw)
    if packed == NULL:
        return NULL
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for s in prange(n_pack, schedule="static"):
            _pack_strip(p0, p_rs, r, d, s, st, packed)
    return packed


cdef real* _proj_strips(const real* p0, Py_ssize_t p_rs, Py_ssize_t r, Py_ssize_t d, Py_ssize_t n_rows,
                        int width, int n_threads, int caller_cpu, void** raw, _Strips* st,
                        int* shift) noexcept:
    """How the tiles read proj for n_rows rows: its packed panels (_packed_proj; NULL when read in
    place), the strips ``st`` and the ``shift`` that aligns the in-place strips (_lead; 0 when
    packed). The strips then cover columns [0, d + shift) (see _task_simd)."""
    st[0] = _strips(d, width, sizeof(real))
    cdef real* packed = _packed_proj(p0, p_rs, r, d, st, n_rows, width, n_threads, caller_cpu, raw)
    shift[0] = 0 if packed != NULL or r == 0 else _lead(p0, p_rs, width, sizeof(real))
    if shift[0]:
        st[0] = _strips(d + shift[0], width, sizeof(real))
    return packed


cdef void _run_grid(const real* t0, Py_ssize_t t_rs, Py_ssize_t t_cs, const index_t* rows0,
                    const real* p0, Py_ssize_t p_rs, Py_ssize_t r, Py_ssize_t n, Py_ssize_t d, real sc,
                    const real* b0, const real* q0, Py_ssize_t q_rs, const int64_t* q_rows,
                    const Py_ssize_t* starts, const Py_ssize_t* order,
                    real* out0, int width, int n_threads, int stream) noexcept:
    """The task grid of ``project_rows`` (``project_distinct`` with ``starts``: n is then the
    number of distinct rows) over checked arguments, on ``n_threads`` OpenMP threads; ``stream``:
    _stream_for's ISA for the whole output (see _task_simd)."""
    cdef Py_ssize_t want, rows_per_task, n_rb, n_cb, cb_strips, n_tasks
    cdef _Strips st
    cdef bint cb_major
    cdef fe_task_range one_range
    cdef fe_task_range* ranges
    cdef void* ranges_raw
    cdef int n_ranges
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1, shift
    cdef void* raw
    cdef real* packed = _proj_strips(p0, p_rs, r, d, n, width, n_threads, caller_cpu, &raw, &st, &shift)
    cdef Py_ssize_t dv = d + shift  # the columns the strips cover
    # Tasks: row blocks of ROWS_PER_TASK; few rows are split into smaller blocks, then by columns,
    # so that every thread gets about four tasks. A task runs its strips one after the other over its
    # rows, so a proj larger than PROJ_L2_BYTES, whose strips come from L3 each time, is read by
    # blocks of ROWS_PER_TASK_BIG_PROJ rows. Intel Xeon, AVX-512, 8 x 3 tiles, 2 threads: ALBERT-base
    # uniform 32 x 512 (dedupe, positions) took 11.0-11.8 ms in blocks of 16 rows, 13.3 in 32, 15.3
    # in 48 (old 4 x 6 tiles in 64: 11.7-11.9); d = 4096, r = 256 37-40 ms in 32-64, 41-46 in 16, 56
    # in 8. Such a proj is also cut into column blocks of at most PROJ_L2_BYTES, the tasks taken
    # block by block (cb_major), so that both threads read one block, from their L2s, while it lasts;
    # their streamed rows are then segments of the block's columns (_task_simd). Same machine, 4096
    # rows with positions, medians of interleaved runs: r = 256, d = 4096 31.9 ms against 35.3 (1
    # thread 63.7 against 67.8), r = 512 0.96x, d = 2048 0.98x, float64 0.97x, 512 rows 0.95x; with
    # the AVX2 tiles forced 1.00x and 0.97x, the 4 x 6 tiles 0.97x and 1.00x.
    want = 4 * max(1, n_threads)
    # The 4 x 6 tiles keep the blocks of 64 rows they were measured with on the Zen 4.
    rows_per_task = ROWS_PER_TASK_BIG_PROJ
    if width == 512 and fe_rows512 == 8 and r * dv * sizeof(real) <= PROJ_L2_BYTES:
        rows_per_task = ROWS_PER_TASK
    n_rb = (n + rows_per_task - 1) // rows_per_task
    if n_rb < want:
        rows_per_task = max(FE_MR, ((n + want - 1) // want + FE_MR - 1) // FE_MR * FE_MR)
        n_rb = (n + rows_per_task - 1) // rows_per_task
    n_cb = 1
    cb_major = False
    if n_rb < want and st.n > 1:
        n_cb = min(st.n, (want + n_rb - 1) // n_rb)
    elif width and r * dv * sizeof(real) > PROJ_L2_BYTES:
        n_cb = (r * dv * sizeof(real) + PROJ_L2_BYTES - 1) // PROJ_L2_BYTES
        cb_major = True
    cb_strips = (st.n + n_cb - 1) // n_cb
    n_cb = (st.n + cb_strips - 1) // cb_strips
    n_tasks = n_rb * n_cb
    # Without cb_major, the tasks are taken by home range (fe_take_task): each thread first runs the
    # same tasks call after call, so that the output and position rows it writes and reads are still
    # in its own caches from the call before, then takes what is left of the others' ranges, as
    # dynamic scheduling would (a thread that starts late, its core busy, is not waited for). Zen 4,
    # 2 threads, ALBERT-base 1 x 128, interleaved medians: AVX2 tiles 0.147-0.149 ms against
    # 0.152-0.157 with schedule="dynamic", AVX-512 0.129-0.130 against 0.131-0.133; with one core busy
    # level (0.142 vs 0.147 and 0.126 vs 0.125 ms). cb_major's tasks are one range, taken in order
    # by whichever thread is free (dynamic scheduling): both threads should read one column block of
    # proj at a time, not one each.
    n_ranges = 1 if cb_major else n_threads  # one range: every thread takes the next task, in order
    ranges_raw = malloc(n_ranges * sizeof(fe_task_range) + 64) if n_ranges > 1 else NULL
    ranges = <fe_task_range*>FE_ALIGN64(ranges_raw) if ranges_raw != NULL else &one_range
    if ranges_raw == NULL:
        n_ranges = 1
    fe_task_ranges(ranges, n_ranges, n_tasks)
    if n_threads == 1:  # no parallel region: libgomp spends a futex call (0.3 us) on a team of one
        with nogil:
            _grid_tasks(t0, t_rs, t_cs, rows0, p0, p_rs, packed, r, n, d, sc, b0, q0, q_rs, q_rows, starts, order,
                        out0, width, shift, stream, &st, rows_per_task, n_rb, n_cb, cb_strips, cb_major, ranges,
                        n_ranges, 0)
    else:
        with nogil, parallel(num_threads=n_threads):
            fe_unstack(caller_cpu)
            _grid_tasks(t0, t_rs, t_cs, rows0, p0, p_rs, packed, r, n, d, sc, b0, q0, q_rs, q_rows, starts, order,
                        out0, width, shift, stream, &st, rows_per_task, n_rb, n_cb, cb_strips, cb_major, ranges,
                        n_ranges, threadid() % n_ranges)
    free(ranges_raw)
    free(raw)


cdef void _grid_tasks(const real* t0, Py_ssize_t t_rs, Py_ssize_t t_cs, const index_t* rows0,
                      const real* p0, Py_ssize_t p_rs, const real* packed, Py_ssize_t r, Py_ssize_t n,
                      Py_ssize_t d, real sc, const real* b0, const real* q0, Py_ssize_t q_rs,
                      const int64_t* q_rows, const Py_ssize_t* starts, const Py_ssize_t* order, real* out0,
                      int width, int shift, int stream, const _Strips* st, Py_ssize_t rows_per_task,
                      Py_ssize_t n_rb, Py_ssize_t n_cb, Py_ssize_t cb_strips, bint cb_major,
                      fe_task_range* ranges, int n_ranges, int home) noexcept nogil:
    """One thread's part of _run_grid: the tasks it takes, from its home range first."""
    cdef Py_ssize_t rb, cb
    cdef Py_ssize_t task = fe_take_task(ranges, n_ranges, home)
    while task >= 0:
        if cb_major:
            cb = task // n_rb
            rb = task - cb * n_rb
        else:
            rb = task // n_cb
            cb = task - rb * n_cb
        if width:
            _task_simd(t0, t_rs, t_cs, rows0, p0, p_rs, packed, r, d, sc, b0, q0, q_rs, q_rows,
                       starts, order, out0,
                       rb * rows_per_task, min(n, (rb + 1) * rows_per_task),
                       cb * cb_strips, min(st.n, (cb + 1) * cb_strips), st, width, shift, stream)
        else:
            _task_loop(t0, t_rs, t_cs, rows0, p0, p_rs, r, d, sc, b0, q0, q_rs, q_rows, starts, order, out0,
                       rb * rows_per_task, min(n, (rb + 1) * rows_per_task),
                       _strip_start(st, cb * cb_strips), min(d, _strip_start(st, (cb + 1) * cb_strips)))
        task = fe_take_task(ranges, n_ranges, home)


# project_gather: the dedupe plan's two passes (project the distinct rows into a buffer, then gather
# the output rows from it) run as one pipeline, so that the memory-bound gather of some rows runs
# beside the compute-bound projection of others instead of after it (mirrored, as two passes, by
# _project_numba.project_gather).

cdef extern from *:
    """
    /* Shared counters of the project_gather pipeline. Built without GCC/clang atomics only where
       setup.py builds serially (one thread), so plain accesses then suffice. */
    #if defined(__GNUC__) || defined(__clang__)
    static ptrdiff_t fe_load(ptrdiff_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static void fe_store(ptrdiff_t* p, ptrdiff_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static ptrdiff_t fe_fetch_add(ptrdiff_t* p, ptrdiff_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
    static int fe_claim(ptrdiff_t* p, ptrdiff_t expected) {
        return __atomic_compare_exchange_n(p, &expected, expected + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    #else
    static ptrdiff_t fe_load(ptrdiff_t* p) { return *p; }
    static void fe_store(ptrdiff_t* p, ptrdiff_t v) { *p = v; }
    static ptrdiff_t fe_fetch_add(ptrdiff_t* p, ptrdiff_t v) { ptrdiff_t old = *p; *p += v; return old; }
    static int fe_claim(ptrdiff_t* p, ptrdiff_t expected) { if (*p != expected) return 0; *p += 1; return 1; }
    #endif
    /* A thread with nothing to do until another finishes a block: a few pause instructions, then
       it gives its CPU away (another process's work, or the thread it waits for, may be on it). */
    #if defined(__unix__) || defined(__APPLE__)
    #include <sched.h>
    #define FE_YIELD() sched_yield()
    #else
    #define FE_YIELD() ((void)0)
    #endif
    static void fe_wait(ptrdiff_t round) {
    #if FE_X86
        if (round < 64) { _mm_pause(); return; }
    #endif
        FE_YIELD();
    }
    """
    Py_ssize_t fe_load(Py_ssize_t* p) noexcept nogil
    void fe_store(Py_ssize_t* p, Py_ssize_t v) noexcept nogil
    Py_ssize_t fe_fetch_add(Py_ssize_t* p, Py_ssize_t v) noexcept nogil
    bint fe_claim(Py_ssize_t* p, Py_ssize_t expected) noexcept nogil
    void fe_wait(Py_ssize_t round) noexcept nogil

# Block sizes: on the Zen 4 (real text 32 x 512, ALBERT-base shapes) 8..32 distinct rows by 16..64
# output rows all ran within 3% (2.11-2.16 ms, interleaved).
DEF PIPE_PROJECT_ROWS = 16  # distinct rows per projection block
DEF PIPE_GATHER_ROWS = 64  # output rows per gather block


cdef struct _Pipe:
    Py_ssize_t next_project  # the next projection block to claim
    Py_ssize_t next_gather  # the next gather block to claim
    Py_ssize_t n_project
    Py_ssize_t n_gather
    Py_ssize_t* done  # done[b] = 1 once projection block b is in the buffer
    Py_ssize_t* need  # need[g]: gather block g reads projection blocks [0, need[g])
    Py_ssize_t* starts  # the output rows of each distinct row (_occurrences) ...
    Py_ssize_t* order  # ... in the order the gather blocks take them (unless in_order)
    bint in_order  # the gather blocks take the output rows in order, streaming each block as one run


def project_gather(const real[:, :] table, const index_t[::1] uniq, const index_t[::1] remap,
                   const real[:, ::1] proj, double scale, const real[::1] bias, const real[:, :] pos,
                   const int64_t[::1] pos_rows, real[:, ::1] projected, real[:, ::1] out, int simd,
                   int n_threads):
    """projected[u, :] = table[uniq[u], :] @ proj, then out[n, :] = projected[remap[n], :] * scale
    + bias + pos[pos_rows[n], :]: the values (and bits) of project_rows into ``projected`` followed
    by gather_rows into ``out``, run as one pipeline.

    Projection blocks of distinct rows and gather blocks of output rows are claimed from shared
    counters: thread 0 gathers whenever the rows its next block reads are projected and projects
    otherwise; the other threads project first and gather once nothing is left to project. The
    gather takes the output rows in the order of their distinct rows (remap ascending, each row
    written whole), so a gather block needs the projection blocks up to its last row's only: with
    real text, the many rows of the frequent tokens are written while the rare ones are projected
    (Zen 4, real text 32 x 512 at ALBERT-base shapes, 2 threads: 2.1 ms against 2.8-3.0 for the two
    passes one after the other, interleaved). Outputs written with streaming stores are gathered in
    output order instead (uniq is in first-seen order, so a block needs the projection blocks up to
    the largest remap so far), each block one run of _emit_run: the lines two rows share are
    streamed too (Intel Xeon, real text: 2.4 ms against 2.6, rows 16 bytes into a line). ``bias`` and ``pos``/``pos_rows`` are optional (None);
    ``pos`` and ``table`` may have any strides. Returns the number of out-of-range indices (uniq,
    remap or pos_rows); when it is not 0 nothing was written.
    """
    cdef Py_ssize_t n = out.shape[0], d = out.shape[1], r = table.shape[1], n_uniq = uniq.shape[0]
    cdef Py_ssize_t n_src = table.shape[0], n_pos = 0, bad = 0, x, g, top
    cdef int stream
    cdef Py_ssize_t q_rs = 0, q_cs = 1
    cdef const real* b0 = NULL
    cdef const real* q0 = NULL
    cdef const int64_t* q_rows = NULL
    cdef int width = _effective_width(simd)
    if proj.shape[0] != r or proj.shape[1] != d or projected.shape[0] != n_uniq or projected.shape[1] != d:
        raise ValueError("project_gather: proj or projected shape mismatch")
    if remap.shape[0] != n:
        raise ValueError("project_gather: remap shape mismatch")
    _check_terms("project_gather", bias, pos, pos_rows, n, d)
    if bias is not None:
        b0 = &bias[0]
    if pos is not None:
        n_pos = pos.shape[0]
    if n == 0 or d == 0:
        return 0
    cdef _Pipe pipe
    pipe.n_project = (n_uniq + PIPE_PROJECT_ROWS - 1) // PIPE_PROJECT_ROWS
    pipe.n_gather = (n + PIPE_GATHER_ROWS - 1) // PIPE_GATHER_ROWS
    pipe.next_project = pipe.next_gather = 0
    pipe.done = <Py_ssize_t*>calloc(pipe.n_project + pipe.n_gather + 2 * n_uniq + 1 + n, sizeof(Py_ssize_t))
    if pipe.done == NULL:
        raise MemoryError()
    pipe.need = pipe.done + pipe.n_project
    pipe.starts = pipe.need + pipe.n_gather
    pipe.order = pipe.starts + n_uniq + 1
    try:
        with nogil:
            for x in range(n_uniq):
                if uniq[x] < 0 or uniq[x] >= n_src:
                    bad += 1
            for x in range(n):
                if remap[x] < 0 or remap[x] >= n_uniq:
                    bad += 1
            if pos is not None:
                for x in range(n):
                    if pos_rows[x] < 0 or pos_rows[x] >= n_pos:
                        bad += 1
        if bad:
            return bad
        stream = _stream_for(&out[0, 0], <double>n * d * sizeof(real), sizeof(real))
        pipe.in_order = stream != 0 and (pos is None or pos.shape[1] <= 1 or pos.strides[1] == sizeof(real))
        with nogil:
            if pipe.in_order:
                top = 0
                for g in range(pipe.n_gather):
                    for x in range(g * PIPE_GATHER_ROWS, min(n, (g + 1) * PIPE_GATHER_ROWS)):
                        top = max(top, <Py_ssize_t>remap[x])
                    pipe.need[g] = top // PIPE_PROJECT_ROWS + 1
            else:
                _occurrences(&remap[0], n, n_uniq, pipe.starts, pipe.order, pipe.order + n)
                for g in range(pipe.n_gather):
                    pipe.need[g] = remap[pipe.order[min(n, (g + 1) * PIPE_GATHER_ROWS) - 1]] // PIPE_PROJECT_ROWS + 1
        if pos is not None and n_pos:
            q0 = &pos[0, 0]
            q_rows = &pos_rows[0]
            q_rs = pos.strides[0] // <Py_ssize_t>sizeof(real)
            q_cs = pos.strides[1] // <Py_ssize_t>sizeof(real)
        _run_pipeline(&pipe, &table[0, 0] if r else NULL, table.strides[0] // <Py_ssize_t>sizeof(real),
                      table.strides[1] // <Py_ssize_t>sizeof(real), &uniq[0], &proj[0, 0] if r else NULL,
                      proj.strides[0] // <Py_ssize_t>sizeof(real), r, n_uniq, &projected[0, 0], &remap[0], n, d,
                      <real>scale, b0, q0, q_rs, q_cs, q_rows, &out[0, 0], width, stream, n_threads)
    finally:
        free(pipe.done)
    return 0


cdef void _run_pipeline(_Pipe* pipe, const real* t0, Py_ssize_t t_rs, Py_ssize_t t_cs, const index_t* uniq,
                        const real* p0, Py_ssize_t p_rs, Py_ssize_t r, Py_ssize_t n_uniq, real* projected,
                        const index_t* remap, Py_ssize_t n, Py_ssize_t d, real sc, const real* b0,
                        const real* q0, Py_ssize_t q_rs, Py_ssize_t q_cs, const int64_t* q_rows, real* out,
                        int width, int stream, int n_threads) noexcept:
    cdef _Strips st
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1, shift
    cdef void* raw
    cdef real* packed = _proj_strips(p0, p_rs, r, d, n_uniq, width, n_threads, caller_cpu, &raw, &st, &shift)
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        _pipeline_worker(pipe, threadid() == 0, t0, t_rs, t_cs, uniq, p0, p_rs, packed, r, n_uniq, &st, width,
                         shift, projected, remap, n, d, sc, b0, q0, q_rs, q_cs, q_rows, out, stream)
    free(raw)


cdef void _pipeline_worker(_Pipe* pipe, bint gatherer, const real* t0, Py_ssize_t t_rs, Py_ssize_t t_cs,
                           const index_t* uniq, const real* p0, Py_ssize_t p_rs, const real* packed,
                           Py_ssize_t r, Py_ssize_t n_uniq, const _Strips* st, int width, int shift, real* projected,
                           const index_t* remap, Py_ssize_t n, Py_ssize_t d, real sc, const real* b0,
                           const real* q0, Py_ssize_t q_rs, Py_ssize_t q_cs, const int64_t* q_rows,
                           real* out, int stream) noexcept nogil:
    """One thread's part of project_gather. A thread waits only when every projection block is
    claimed and the next gather block reads one that another thread is still projecting."""
    cdef Py_ssize_t ready = 0, rounds = 0, b, g, x, o, i0, i1
    cdef bint project_first = not gatherer
    cdef const real* srows[PIPE_GATHER_ROWS]
    cdef const real* prows[PIPE_GATHER_ROWS]
    while True:
        if project_first and fe_load(&pipe.next_project) < pipe.n_project:
            b = fe_fetch_add(&pipe.next_project, 1)
            if b < pipe.n_project:
                i0, i1 = b * PIPE_PROJECT_ROWS, min(n_uniq, (b + 1) * PIPE_PROJECT_ROWS)
                if width:
                    _task_simd(t0, t_rs, t_cs, uniq, p0, p_rs, packed, r, d, 1, <const real*>NULL,
                               <const real*>NULL, 0, NULL, NULL, NULL, projected, i0, i1, 0, st.n, st, width,
                               shift, 0)
                else:
                    _task_loop(t0, t_rs, t_cs, uniq, p0, p_rs, r, d, 1, <const real*>NULL, <const real*>NULL,
                               0, NULL, NULL, NULL, projected, i0, i1, 0, d)
                fe_store(&pipe.done[b], 1)
                project_first = not gatherer
                rounds = 0
                continue
        g = fe_load(&pipe.next_gather)
        if g >= pipe.n_gather:
            break
        while ready < pipe.n_project and fe_load(&pipe.done[ready]):
            ready += 1
        if ready >= pipe.need[g]:
            if fe_claim(&pipe.next_gather, g):
                i0, i1 = g * PIPE_GATHER_ROWS, min(n, (g + 1) * PIPE_GATHER_ROWS)
                if pipe.in_order:
                    for x in range(i0, i1):
                        srows[x - i0] = projected + remap[x] * d
                        prows[x - i0] = q0 + q_rows[x] * q_rs if q0 != NULL else NULL
                    _emit_run(out + i0 * d, i1 - i0, d, srows, prows if q0 != NULL else NULL, sc, b0, stream)
                else:
                    for x in range(i0, i1):
                        o = pipe.order[x]
                        _emit_row(out + o * d, projected + remap[o] * d, 1, sc, b0,
                                  q0 + q_rows[o] * q_rs if q0 != NULL else NULL, q_cs if q0 != NULL else 1, d,
                                  stream)
                rounds = 0
            continue
        project_first = True
        if fe_load(&pipe.next_project) >= pipe.n_project:
            fe_wait(rounds)
            rounds += 1
    if stream:
        fe_store_fence()


cdef void _gram_tile(const real* x0, Py_ssize_t x_rs, Py_ssize_t k_rows, Py_ssize_t d, Py_ssize_t i0,
                     Py_ssize_t j0, int w, int nv, int whole, int zero, real* acc, int width,
                     int mr) noexcept nogil:
    """acc = (zero ? 0 : acc) + sum over the k_rows rows of x from x0 of x[:, i0 + i] x[:, j0:j0 + w]
    (i < mr, at most FE_MR), in x's dtype by one Gram micro-tile (its broadcasts are x[k, i0 + i],
    its loads x[k, j0:j0 + w]), the project tiles' k loop; acc holds mr rows of nv * lanes sums.
    ``nv`` = ceil(w / lanes) and ``whole`` (the tile has mr rows below d and w is a multiple of
    lanes) come from the task table: two integer divisions here took ~2% of the Gram pass."""
    cdef const real* a[MAX_MR]
    cdef Py_ssize_t i
    cdef Py_ssize_t m = min(<Py_ssize_t>mr, d - i0)
    if whole:
        if real is float:
            if fe_gram_fast_ps(width, nv, x0, x_rs, k_rows, i0, j0, acc, zero):
                return
        else:
            if fe_gram_fast_pd(width, nv, x0, x_rs, k_rows, i0, j0, acc, zero):
                return
    for i in range(mr):
        a[i] = x0 + i0 + (i if i < m else 0)
    cdef int stage = FE_ACC_OUT | (0 if zero else FE_ACC_IN)
    if real is float:
        fe_gram_tile_f32(width, nv, a, x_rs, x0 + j0, x_rs, k_rows, w, acc, stage)
    else:
        fe_gram_tile_f64(width, nv, a, x_rs, x0 + j0, x_rs, k_rows, w, acc, stage)


cdef void _gram_add(const real* acc, Py_ssize_t d, Py_ssize_t i0, Py_ssize_t j0, int w, Py_ssize_t lanes,
                    int mr, double* gram) noexcept nogil:
    """gram[i0 + i, j0 + j] += acc[i, j] in float64, on and above the diagonal only."""
    cdef Py_ssize_t row = ((w + lanes - 1) // lanes) * lanes, i, j, j1
    for i in range(min(<Py_ssize_t>mr, d - i0)):
        j1 = max(<Py_ssize_t>0, i0 + i - j0)
        if real is float:
            fe_add_widened_avx2(acc + i * row + j1, gram + (i0 + i) * d + j0 + j1, w - j1)
        else:
            for j in range(j1, w):
                gram[(i0 + i) * d + j0 + j] += acc[i * row + j]


def gram_rows(const real[:, :] x, double[:, ::1] gram, double[::1] row_norms, int simd, int n_threads):
    """gram += x^T x (d x d, float64), x of shape (n, d) with unit column stride; ``row_norms`` (n,),
    unless None, receives sum_j x[i, j]^2 in float64 (as row_sq_norms sums it), each chunk's rows
    summed by the threads while the chunk is in cache.

    The upper triangle is summed over chunks of GRAM_CHUNK rows (each chunk's sums in x's dtype,
    k ascending, added to ``gram`` in float64), then mirrored, so the result is exactly symmetric.
    Tiles of ``mr`` rows of gram (FE_MR with AVX-512's 8-row tiles, FE_MR256 otherwise) by a strip of columns
    run strip by strip through sub-chunks of rows whose part of the strip stays in L1 while every
    tile reads it, their sums carried between sub-chunks in memory (same bits as one unbroken sum).
    Without SIMD tiles (``simd`` 0 or a CPU without them) the same chunks are summed by a portable
    loop.
    """
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], x_rs, c, k_rows, s, kc, sub, t, u, u0, i0, vs, end
    cdef int width = _effective_width(simd), team, me, caller_cpu
    # AVX2 tiles run 4 rows at a time, and a tile of 8 spans more of the triangle's diagonal blocks:
    # MiniLM's Gram took 47 ms in tiles of 8 rows against 37 in tiles of 4 (Intel Xeon, AVX2 tiles).
    cdef int mr = FE_MR if width == 512 and fe_rows512 == 8 else FE_MR256
    cdef Py_ssize_t lanes = width // 8 // <Py_ssize_t>sizeof(real) if width else 1
    cdef Py_ssize_t nr = (FE_NV256 * 32 if width == 256 else FE_NV512 * 64) // <Py_ssize_t>sizeof(real)
    cdef Py_ssize_t n_strips, n_tasks = 0, per_strip
    cdef Py_ssize_t* tasks = NULL  # TASK_FIELDS a task: i0, j0, w, nv, whole
    cdef Py_ssize_t* strip_first = NULL
    cdef Py_ssize_t* owner = NULL
    cdef Py_ssize_t* mine_all = NULL
    cdef Py_ssize_t* mine
    cdef Py_ssize_t* mine_first
    cdef Py_ssize_t q
    cdef Py_ssize_t* task
    cdef void* scratch = NULL
    cdef real* accs
    cdef real* acc
    cdef void* copies_raw = NULL
    cdef real* copies = NULL  # each thread's copy of the chunk, rows ld apart (see below)
    cdef const real* src
    cdef Py_ssize_t ld = 0, src_rs, m64
    if gram.shape[0] != d or gram.shape[1] != d:
        raise ValueError("gram_rows: gram shape mismatch")
    per_strip = (d + mr - 1) // mr
    if d > 1 and x.strides[1] != <Py_ssize_t>sizeof(real):
        raise ValueError("gram_rows: x needs unit column stride")
    if row_norms is not None and row_norms.shape[0] != n:
        raise ValueError("gram_rows: row_norms shape mismatch")
    cdef double* norms = &row_norms[0] if row_norms is not None and n > 0 else NULL
    if d == 0 and norms != NULL:
        for t in range(n):
            norms[t] = 0
    if n == 0 or d == 0:
        return 0
    x_rs = x.strides[0] // <Py_ssize_t>sizeof(real)
    if width:
        nr = _strip_width(d, width, sizeof(real))
    n_strips = (d + nr - 1) // nr
    # A strip's rows of one sub-chunk, read by every tile of the strip, fit in GRAM_L1_BYTES. Summing
    # MiniLM (30522 x 384, float32) on an Intel Xeon with AVX-512 took 32-33 ms when each tile read
    # its strip from L2 for a whole chunk. At most GRAM_SUB_ROWS rows: the tiles' broadcasts read a
    # cache line of each row too, and the AVX2 tiles' narrow strips (24 floats) fit whole 256-row
    # chunks, strip and lines overflowing L1 (MiniLM on the Zen 4 with FASTEMBED_SIMD=avx2, medians of
    # interleaved runs: 30.0 ms in sub-chunks of 64 rows against 32.5 in 256, one thread 58.5 against
    # 65.1; 32 and 128 rows fell between; the AVX-512 tiles' sub-chunks were 64 rows already).
    sub = min(<Py_ssize_t>GRAM_SUB_ROWS, max(<Py_ssize_t>1, GRAM_L1_BYTES // (nr * <Py_ssize_t>sizeof(real))))
    if not width:
        sub = GRAM_CHUNK
    # Tasks, strip by strip: the tile of rows i0..i0 + mr of gram by the strip's columns from the
    # vector holding column i0 on (upper triangle): (i0, first column j0, width). Aligning the strips'
    # loads as _lead does for proj's made no difference here but a slower 2-thread run at some offsets
    # (again with the AVX2 tiles on the Zen 4, MiniLM 16 bytes into a line: 61.1 against 60.2 ms on one
    # thread, 35.9 against 31.9 on two), nor did copying each sub-chunk's strip to an aligned buffer
    # (60.4 / 34.2) or packing the broadcast columns (slower: the copy cost more than it saved).
    for u0 in range(0, d, nr):
        n_tasks += min(per_strip, (min(u0 + nr, d) + mr - 1) // mr)
    # Rows a multiple of 128 bytes apart share few L1 sets: a sub-chunk's 64 rows of a strip, read by
    # every tile of the strip, then miss L1 (rows 2 KiB apart fall in 2 sets' worth of lines). With
    # the AVX2 tiles each thread copies such a chunk to its own buffer, rows an odd number of cache
    # lines apart. Zen 4, FASTEMBED_SIMD=avx2, 30000 rows, float32, interleaved medians: d = 384
    # (MiniLM's shape) 48.4 ms against 55.1 on one thread, 26.5 against 30.5 on two; d = 512 88
    # against 121 on one; d = 768 192 against 273 on one, 101 against 133 on two. The AVX-512 4 x 6
    # tiles gained nothing (d = 384 47.8 against 46.9 on one thread, 768 194 against 182).
    if width == 256 and (x_rs * <Py_ssize_t>sizeof(real)) % 128 == 0:
        m64 = (d * <Py_ssize_t>sizeof(real) + 63) // 64
        ld = (m64 + 1 - m64 % 2) * 64 // <Py_ssize_t>sizeof(real)
    try:
        if ld:
            copies_raw = malloc(n_threads * GRAM_CHUNK * ld * sizeof(real) + 64)
            if copies_raw == NULL:
                raise MemoryError()
            copies = <real*>FE_ALIGN64(copies_raw)
        tasks = <Py_ssize_t*>malloc(TASK_FIELDS * n_tasks * sizeof(Py_ssize_t))
        strip_first = <Py_ssize_t*>malloc((n_strips + 1) * sizeof(Py_ssize_t))
        owner = <Py_ssize_t*>malloc(n_tasks * sizeof(Py_ssize_t))
        mine_all = <Py_ssize_t*>malloc(n_threads * (n_tasks + n_strips + 1) * sizeof(Py_ssize_t))
        scratch = malloc(n_threads * per_strip * mr * nr * sizeof(real) + 64)
        if tasks == NULL or strip_first == NULL or owner == NULL or mine_all == NULL or scratch == NULL:
            raise MemoryError()
        accs = <real*>FE_ALIGN64(scratch)
        t = 0
        for u in range(n_strips):
            u0 = u * nr
            end = min(u0 + nr, d)
            strip_first[u] = t
            for i0 in range(0, d, mr):
                if i0 >= end:
                    break
                vs = max(u0, i0 // lanes * lanes)
                task = tasks + TASK_FIELDS * t
                task[0], task[1], task[2] = i0, vs, end - vs
                task[3] = (end - vs + lanes - 1) // lanes
                task[4] = i0 + mr <= d and (end - vs) % lanes == 0
                t += 1
        strip_first[n_strips] = t
        caller_cpu = fe_current_cpu() if n_threads > 1 else -1
        # Each tile of gram belongs to one thread for every chunk, so the threads run through the
        # chunks without waiting for each other and never add into one tile (a prange per chunk would
        # not do: inside a parallel block it ends without a barrier, omp for nowait). The tiles are
        # dealt by their widths among the team OpenMP forms: a round-robin deal gave one thread 56% of
        # the columns (MiniLM on the Zen 4, interleaved: 25.6 ms dealt by width, 28.0 round-robin).
        with nogil, parallel(num_threads=n_threads):
            fe_unstack(caller_cpu)
            me = threadid()
            team = fe_team_size()
            if me == 0:
                _deal_tiles(tasks, n_tasks, team, owner)
            fe_team_barrier()
            # this thread's tiles, strip by strip: mine[mine_first[u]:mine_first[u + 1]]
            mine = mine_all + me * (n_tasks + n_strips + 1)
            mine_first = mine + n_tasks
            q = 0
            for u in range(n_strips):
                mine_first[u] = q
                for t in range(strip_first[u], strip_first[u + 1]):
                    if owner[t] == me:
                        mine[q] = t
                        q = q + 1
            mine_first[n_strips] = q
            acc = accs + me * per_strip * mr * nr
            c = 0
            while c < n:
                k_rows = min(<Py_ssize_t>GRAM_CHUNK, n - c)
                if norms != NULL:
                    kc = (k_rows + team - 1) // team
                    for t in range(c + me * kc, min(c + (me + 1) * kc, c + k_rows)):
                        if real is float and width:
                            norms[t] = fe_sq_sum_f32_avx2(&x[t, 0], d)
                        else:
                            norms[t] = _sq_sum(&x[t, 0], d)
                src, src_rs = &x[c, 0], x_rs
                if copies != NULL:
                    src, src_rs = copies + me * GRAM_CHUNK * ld, ld
                    for t in range(k_rows):
                        memcpy(<real*>src + t * ld, &x[c + t, 0], d * sizeof(real))
                for u in range(n_strips):
                    s = 0
                    while s < k_rows:
                        kc = min(sub, k_rows - s)
                        for q in range(mine_first[u], mine_first[u + 1]):
                            t = mine[q]
                            task = tasks + TASK_FIELDS * t
                            if width:
                                _gram_tile(src + s * src_rs, src_rs, kc, d, task[0], task[1], <int>task[2],
                                           <int>task[3], <int>task[4], s == 0,
                                           acc + (t - strip_first[u]) * mr * nr, width, mr)
                            else:
                                _gram_loop(&x[c, 0], x_rs, k_rows, d, task[0], task[1], task[2], mr,
                                           &gram[0, 0])
                        s = s + sub
                    if width:
                        for q in range(mine_first[u], mine_first[u + 1]):
                            t = mine[q]
                            task = tasks + TASK_FIELDS * t
                            _gram_add(acc + (t - strip_first[u]) * mr * nr, d, task[0], task[1], <int>task[2],
                                      lanes, mr, &gram[0, 0])
                c = c + GRAM_CHUNK
    finally:
        free(tasks)
        free(strip_first)
        free(owner)
        free(mine_all)
        free(scratch)
        free(copies_raw)
    for i0 in range(d):
        for t in range(i0):
            gram[i0, t] = gram[t, i0]
    return 0


cdef void _deal_tiles(const Py_ssize_t* tasks, Py_ssize_t n_tasks, int team, Py_ssize_t* owner) noexcept nogil:
    """owner[t]: tiles dealt in order, each to the thread whose columns so far are fewest (a
    tile's work is its width, tasks[TASK_FIELDS * t + 2])."""
    cdef Py_ssize_t* load = <Py_ssize_t*>calloc(team, sizeof(Py_ssize_t))
    cdef Py_ssize_t t, best
    cdef int i
    for t in range(n_tasks):
        best = t % team
        if load != NULL:
            for i in range(team):
                if load[i] < load[best]:
                    best = i
            load[best] += tasks[TASK_FIELDS * t + 2]
        owner[t] = best
    free(load)


cdef void _gram_loop(const real* x0, Py_ssize_t x_rs, Py_ssize_t k_rows, Py_ssize_t d, Py_ssize_t i0,
                     Py_ssize_t j0, Py_ssize_t w, int mr, double* gram) noexcept nogil:
    """_gram_task's sums with a portable loop (k ascending, per element)."""
    cdef Py_ssize_t i, j, k
    cdef real s
    for i in range(i0, min(i0 + mr, d)):
        for j in range(j0, j0 + w):
            s = 0
            for k in range(k_rows):
                s = s + x0[k * x_rs + i] * x0[k * x_rs + j]
            gram[i * d + j] += s


# The latency path of fastembed.factorized_lookup (fastembed/_lookup.py::_fast decides when it may run). It
# accepts only calls it can prove valid from the buffers alone and returns None for every other one,
# which then takes the general path: validation and its messages live in fastembed/_validation.py only.

cdef void _fast_grid(Py_buffer* bt, Py_buffer* bp, Py_buffer* bq, Py_buffer* bb, Py_buffer* bo,
                     const int64_t* rows, const int64_t* q_rows, Py_ssize_t n, Py_ssize_t r, Py_ssize_t d,
                     double scale, bint f64, int width, int n_threads) noexcept:
    cdef const float* q32 = <const float*>bq.buf if bq != NULL else NULL
    cdef const double* q64 = <const double*>bq.buf if bq != NULL else NULL
    cdef const float* b32 = <const float*>bb.buf if bb != NULL else NULL
    cdef const double* b64 = <const double*>bb.buf if bb != NULL else NULL
    if f64:
        _run_grid(<const double*>bt.buf, r, 1, rows, <const double*>bp.buf, d, r, n, d, <double>scale,
                  b64, q64, d, q_rows if bq != NULL else NULL, NULL, NULL, <double*>bo.buf, width, n_threads, 0)
    else:
        _run_grid(<const float*>bt.buf, r, 1, rows, <const float*>bp.buf, d, r, n, d, <float>scale,
                  b32, q32, d, q_rows if bq != NULL else NULL, NULL, NULL, <float*>bo.buf, width, n_threads, 0)


def project_call(ids, table, proj, scale, pos, out, int simd, double max_flops, threads_for, bias=None, offset=0,
                 position_ids=None):
    """``out = (table[ids] @ proj) * scale + bias + pos[offset + l]`` (l the position along the
    last axis of ids), or ``+ pos[position_ids]`` when those are given, when every argument is a
    C-contiguous numpy array of the simple case, else None.

    The simple case: ids int32/int64 of at least one dimension, every id in [0, V); table (V, r)
    and proj (r, d) of one float dtype; bias None or (d,) of that dtype; pos None (and offset 0) or
    (n_pos, d) with offset + L <= n_pos, offset a Python int >= 0; out None (a fresh array is
    returned) or writable, of shape ids.shape + (d,) and the table's dtype, sharing no memory with
    any input; ``scale`` a float or int; at most ``max_flops`` multiply-adds x 2 (one kernel call,
    uninterruptible by Ctrl-C); position_ids None, or int32/int64 of ids' shape, every one in
    [0, n_pos), with pos given and offset 0. The ids and position ids are copied (and checked)
    before the kernel reads them, so another thread writing to them cannot put an unchecked index
    in front of it.
    ``threads_for(flops)`` gives the thread count (an int ``threads_for`` is the count itself).
    Anything else, or an out-of-range id: None, with nothing written.
    """
    cdef Py_buffer bi, bt, bp, bq, bb, bo, bn
    cdef bint has_i = False, has_t = False, has_p = False, has_q = False, has_b = False, has_o = False
    cdef bint has_n = False
    cdef Py_ssize_t n, L, V, r, d, first
    cdef int64_t* rows = NULL
    cdef int64_t* q_rows = NULL
    cdef int kind, n_threads
    cdef double sc
    if type(proj) is not _ndarray or not _simple_arguments(ids, table, pos, out, bias, scale, &sc):
        return None
    try:
        has_i = _get_buffer(ids, &bi, False)
        has_t = has_i and _get_buffer(table, &bt, False)
        has_p = has_t and _get_buffer(proj, &bp, False)
        if not has_p or not _get_term_buffers(pos, bias, out, &bq, &bb, &bo, &has_q, &has_b, &has_o):
            return None
        kind = _buffer_kind(&bt)
        if not _is_ids(&bi) or bt.ndim != 2 or bp.ndim != 2 or kind == 0 or _buffer_kind(&bp) != kind:
            return None
        V, r, d = bt.shape[0], bt.shape[1], bp.shape[1]
        L = bi.shape[bi.ndim - 1]
        n = bi.len // bi.itemsize
        if bp.shape[0] != r or n == 0 or r == 0 or d == 0 or 2.0 * n * r * d > max_flops:
            return None
        first = _terms_fit(bias, offset, &bi, &bq, has_q, &bb, has_b, &bo, has_o, d, kind)
        if first < 0 or (has_o and not (_apart(&bo, &bt) and _apart(&bo, &bp))):
            return None
        if not _position_ids_fit(position_ids, offset, &bn, &has_n, &bi, has_q, &bo, has_o):
            return None
        rows = <int64_t*>malloc(2 * n * sizeof(int64_t))
        if rows == NULL:
            return None
        q_rows = rows + n
        if not _copy_ids(&bi, rows, n, V):
            return None
        if has_n:
            if not _copy_ids(&bn, q_rows, n, bq.shape[0]):
                return None
        elif has_q:
            _sequence_positions(q_rows, n, L, first)
        if not has_o:
            result = np.empty(tuple(bi.shape[k] for k in range(bi.ndim)) + (d,), dtype=table.dtype)
            PyObject_GetBuffer(result, &bo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
            has_o = True
        else:
            result = out
        n_threads = _thread_count(threads_for, 2.0 * n * r * d)
        _fast_grid(&bt, &bp, &bq if has_q else NULL, &bb if has_b else NULL, &bo, rows, q_rows, n, r, d, sc,
                   kind == FE_F64, _effective_width(simd), n_threads)
        return result
    finally:
        free(rows)
        _release(&bi, has_i)
        _release(&bt, has_t)
        _release(&bp, has_p)
        _release(&bq, has_q)
        _release(&bb, has_b)
        _release(&bo, has_o)
        _release(&bn, has_n)
