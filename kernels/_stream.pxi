# Included by the kernel modules that write outputs larger than the caches (Cython `include`):
# streaming (non-temporal) stores and the threshold from which the kernels use them.

cdef extern from *:
    """
    #include <stddef.h>
    #include <string.h>
    /* Streaming (non-temporal) stores for outputs larger than the last-level cache: a written line
       then goes to memory without first being read into the cache (measured on a Zen 4 with a 32 MB
       L3, rows on 2 threads, in the VM's two memory states: at 48 MB 0.93 against 1.5 ms with plain
       stores, or a tie; at 36 MB a tie or 12% slower; below that plain stores win, the rows staying
       cached: hence from 1.5x the cache). They fill whole lines only when aligned, so the bytes up
       to the first and after the last 64-byte boundary are plain stores. Each thread ends its
       streaming stores with fe_store_fence() (sfence). */
    #include <stdint.h>
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    #define FE_STREAM_X86 1
    #else
    #define FE_STREAM_X86 0
    #endif
    #if FE_STREAM_X86
    static void fe_store_fence(void) { _mm_sfence(); }
    /* 512, 256 or 0: the widest streaming store this CPU runs. */
    static int fe_stream_isa(void) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return 512;
        if (__builtin_cpu_supports("avx")) return 256;
        return 0;
    }
    #else
    static void fe_store_fence(void) {}
    static int fe_stream_isa(void) { return 0; }
    #endif
    /* Bytes of the last-level cache as Linux's sysfs gives it for cpu0 (glibc's sysconf reported
       320 MB for a 32 MB L3 on a Zen 4 VM), else 32 MB. */
    #include <stdio.h>
    static long fe_last_level_cache(void) {
        long bytes = 32L << 20, size = 0;
        char unit = 0;
        FILE* f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
        if (f) {
            if (fscanf(f, "%ld%c", &size, &unit) >= 1 && size > 0)
                bytes = unit == 'K' ? size << 10 : unit == 'M' ? size << 20 : size;
            fclose(f);
        }
        return bytes;
    }
    /* dst[:n_bytes] = src[:n_bytes] (or 0 where src is NULL: the report's memory probe) with
       streaming stores of whole aligned lines (plain ones at both ends); dst and src share no byte. */
    #if FE_STREAM_X86
    __attribute__((target("avx"))) static void fe_stream_copy256(char* dst, const char* src, size_t n) {
        size_t j = 0, head = (64 - ((uintptr_t)dst & 63)) & 63;
        if (head > n) head = n;
        for (; j < head; j++) dst[j] = src ? src[j] : 0;
        for (; j + 32 <= n; j += 32)
            _mm256_stream_si256((__m256i*)(dst + j), src ? _mm256_loadu_si256((const __m256i*)(src + j)) : _mm256_setzero_si256());
        for (; j < n; j++) dst[j] = src ? src[j] : 0;
    }
    __attribute__((target("avx512f"))) static void fe_stream_copy512(char* dst, const char* src, size_t n) {
        size_t j = 0, head = (64 - ((uintptr_t)dst & 63)) & 63;
        if (head > n) head = n;
        for (; j < head; j++) dst[j] = src ? src[j] : 0;
        for (; j + 64 <= n; j += 64)
            _mm512_stream_si512((__m512i*)(dst + j), src ? _mm512_loadu_si512((const void*)(src + j)) : _mm512_setzero_si512());
        for (; j < n; j++) dst[j] = src ? src[j] : 0;
    }
    static void fe_stream_copy(void* dst, const void* src, size_t n, int isa) {
        if (isa >= 512) fe_stream_copy512((char*)dst, (const char*)src, n);
        else if (isa >= 256) fe_stream_copy256((char*)dst, (const char*)src, n);
        else if (src) memcpy(dst, src, n);
        else memset(dst, 0, n);
    }
    #else
    static void fe_stream_copy(void* dst, const void* src, size_t n, int isa) {
        if (src) memcpy(dst, src, n); else memset(dst, 0, n);
    }
    #endif
    """
    void fe_store_fence() noexcept nogil
    int fe_stream_isa() noexcept nogil
    long fe_last_level_cache() noexcept nogil
    void fe_stream_copy(void* dst, const void* src, size_t n_bytes, int isa) noexcept nogil


cdef int _STREAM_ISA = fe_stream_isa()
# A VM's sysfs gives its host's whole L3, which a few vCPUs do not get: an Intel Xeon VM with 2 vCPUs
# read 480 MB, and there streaming stores won from 12 MB (real-text lookups, 36 MB out: 2.42 against
# 2.66 ms; RoPE 48 MB: 3.37 against 3.71, 67 MB: 5.0 against 6.6). So the cache counts at most 32 MB,
# the Zen 4's L3 where the crossover above was measured.
DEF STREAM_CACHE_CAP = 32 * 1024 * 1024
cdef double _stream_min_bytes = 1.5 * min(fe_last_level_cache(), <long>STREAM_CACHE_CAP)


def stream_min_bytes(value=None):
    """The output size in bytes from which this module's kernels write with streaming
    stores (default: 1.5x the last-level cache's size, counted up to 32 MB); ``value`` sets it (tests force the streaming
    rows on small outputs with 0) and the previous value is returned."""
    global _stream_min_bytes
    previous = _stream_min_bytes
    if value is not None:
        _stream_min_bytes = float(value)
    return previous


def stream_isa(value=None):
    """The widest streaming store this module's kernels use: 512, 256 or 0 (plain stores; default
    the CPU's widest); ``value`` sets it, capped at what the CPU runs (tests run the 256-bit
    streaming kernels on an AVX-512 CPU with 256), and the previous value is returned."""
    global _STREAM_ISA
    previous = _STREAM_ISA
    if value is not None:
        if value not in (0, 256, 512):
            raise ValueError(f"stream_isa must be 0, 256 or 512, got {value!r}")
        _STREAM_ISA = min(int(value), fe_stream_isa())
    return previous


cdef inline int _stream_for(const void* out, double out_bytes, Py_ssize_t itemsize) noexcept nogil:
    """The streaming stores' ISA for an output of ``out_bytes`` at ``out``, 0 for plain stores: also
    when ``out`` is not aligned to its elements (a numpy view at an odd byte offset), since then no
    element starts on a line boundary for a streaming store to write from."""
    if <size_t>out % <size_t>itemsize:
        return 0
    return _STREAM_ISA if out_bytes >= _stream_min_bytes and out_bytes > 0 else 0
