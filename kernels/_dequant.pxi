# Included by the kernel modules that read compact tables: float16 and bfloat16 bits -> float32.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* IEEE half (binary16) bits -> float, exact (every half is a float). */
    static inline float fastembed_half_to_float(uint16_t h) {
        uint32_t sign = ((uint32_t)(h & 0x8000u)) << 16;
        uint32_t exp = (h >> 10) & 0x1fu;
        uint32_t mant = h & 0x3ffu;
        uint32_t bits;
        float f;
        if (exp == 0) {
            f = (float)mant * 5.9604644775390625e-08f;  /* subnormal or zero: mant * 2^-24 */
            memcpy(&bits, &f, 4);
            bits |= sign;
        } else if (exp == 31) {
            bits = sign | 0x7f800000u | (mant << 13);
        } else {
            bits = sign | ((exp + 112u) << 23) | (mant << 13);
        }
        memcpy(&f, &bits, 4);
        return f;
    }
    /* bfloat16 bits -> float: the top half of a float32. */
    static inline float fastembed_bf16_to_float(uint16_t h) {
        uint32_t bits = ((uint32_t)h) << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    """
    float fastembed_half_to_float(uint16_t h) noexcept nogil
    float fastembed_bf16_to_float(uint16_t h) noexcept nogil
