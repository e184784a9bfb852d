/* edgesketch port layer: what differs between compilers and cores, in one place (as CMSIS-NN's arm_nn_compiler.h).
 * Shared by the sketch runtime (es_sketch.h) and the bench's int8 kernels. C99; GCC and Clang get the fast forms,
 * other compilers the plain ones.
 *
 *   ES_INLINE            a function the compiler must inline (the runtime's per-position and per-table steps)
 *   ES_BARRIER()         a compiler barrier between hyperplanes and between tables: without it gcc keeps each x[i]
 *                        loaded once for every hyperplane that reads it and spills them (a store and a reload cost more
 *                        than a second load)
 *   ES_OPAQUE(p)         hide where a pointer points, so gcc addresses a stack buffer as base + index register
 *   ES_ROM, ES_RD_*(p)   const data in program memory: on AVR (Harvard) PROGMEM and pgm_read_*, elsewhere plain reads
 *   ES_DSP               1 on cores with the DSP extension and unaligned loads (Cortex-M4/M7/M33...); define ES_NO_DSP
 *                        to force plain C. Then es_sxtab16 / es_sxtab16_ror8 / es_sxtb16 / es_sxtb16_ror8 / es_smlad /
 *                        es_smuad and es_ld32 (an unaligned 32-bit load) are available.
 */
#ifndef ES_PORT_H
#define ES_PORT_H
#include <stddef.h>
#include <stdint.h>   /* (freestanding targets have no string.h: it is included only for the DSP path's memcpy) */

#if defined(__GNUC__)
#define ES_INLINE static inline __attribute__((always_inline))
#define ES_BARRIER() __asm__ __volatile__("" ::: "memory")
#define ES_OPAQUE(ptr) __asm__("" : "+r"(ptr))
#else
#define ES_INLINE static inline
#define ES_BARRIER() ((void)0)
#define ES_OPAQUE(ptr) ((void)0)
#endif

/* Between the tables of an unrolled lookup: on 32-bit cores the barrier keeps gcc from computing every bucket first
 * and spilling the accumulators; avr-gcc, with 8-bit registers, then delays every addition to the end and spills the
 * counts instead, and Thumb-1 (Cortex-M0, eight low registers) spills the accumulators either way and is faster
 * without it, so there it is left out. */
#if defined(__AVR__) || defined(__ARM_ARCH_6M__)
#define ES_TABLE_BARRIER() ((void)0)
#else
#define ES_TABLE_BARRIER() ES_BARRIER()
#endif

/* After each hyperplane of a straight-line hash, on Thumb-1: an empty asm that reads and writes the hash word makes gcc
 * set the hyperplane's bit at once. Without it gcc delays every bit-set to the end of the hash and keeps each bit until
 * then, which on eight low registers means a store and a reload a hyperplane (qemu-m0, digits L16K4 int4 window
 * balanced, unrolled: 1,563 -> 1,517 instructions, 92 bytes less). The generator writes it where the words are at most
 * two and the taps are read from memory; with more live words the sums spill instead. Elsewhere nothing. */
#if defined(__GNUC__) && defined(__ARM_ARCH_6M__)
#define ES_HASH_KEEP(w) __asm__("" : "+r"(w))
#else
#define ES_HASH_KEEP(w) ((void)0)
#endif

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define ES_STATIC_ASSERT(cond, name) _Static_assert(cond, #name)
#else
#define ES_STATIC_ASSERT(cond, name) typedef char es_static_assert_##name[(cond) ? 1 : -1]
#endif

/* ---------------------------------------------------------------- program memory */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define ES_ROM PROGMEM
#define ES_RD_I8(ptr)  ((int8_t)pgm_read_byte(ptr))
#define ES_RD_U8(ptr)  ((uint8_t)pgm_read_byte(ptr))
#define ES_RD_I16(ptr) ((int16_t)pgm_read_word(ptr))
#define ES_RD_U16(ptr) ((uint16_t)pgm_read_word(ptr))
#define ES_RD_I32(ptr) ((int32_t)pgm_read_dword(ptr))
#define ES_RD_U32(ptr) ((uint32_t)pgm_read_dword(ptr))
#define ES_RD_F32(ptr) (pgm_read_float(ptr))
#else
#define ES_ROM
#define ES_RD_I8(ptr)  (*(const int8_t *)(ptr))
#define ES_RD_U8(ptr)  (*(const uint8_t *)(ptr))
#define ES_RD_I16(ptr) (*(const int16_t *)(ptr))
#define ES_RD_U16(ptr) (*(const uint16_t *)(ptr))
#define ES_RD_I32(ptr) (*(const int32_t *)(ptr))
#define ES_RD_U32(ptr) (*(const uint32_t *)(ptr))
#define ES_RD_F32(ptr) (*(const float *)(ptr))
#endif

/* ---------------------------------------------------------------- the DSP extension (Arm) */
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_UNALIGNED) && !defined(ES_NO_DSP)
#define ES_DSP 1
#include <string.h>
#include <arm_acle.h>
/* acc + sign-extended bytes 0 and 2 of v, in two 16-bit lanes */
ES_INLINE uint32_t es_sxtab16(uint32_t acc, uint32_t v) { return __sxtab16(acc, v); }
/* acc + sign-extended bytes 1 and 3 of v, in two 16-bit lanes (gcc does not fold a rotate into __sxtab16) */
ES_INLINE uint32_t es_sxtab16_ror8(uint32_t acc, uint32_t v)
{
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(acc) : "r"(acc), "r"(v));
    return acc;
}
/* sign-extended bytes 0 and 2 of v, in two 16-bit lanes */
ES_INLINE int32_t es_sxtb16(uint32_t v) { return (int32_t)__sxtb16(v); }
/* sign-extended bytes 1 and 3 of v, in two 16-bit lanes */
ES_INLINE int32_t es_sxtb16_ror8(uint32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
ES_INLINE int32_t es_smuad(int32_t a, int32_t b) { return __smuad(a, b); }
ES_INLINE int32_t es_smlad(int32_t a, int32_t b, int32_t acc) { return __smlad(a, b, acc); }
/* a 32-bit load from any address (the core allows unaligned word loads) */
ES_INLINE uint32_t es_ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
#else
#define ES_DSP 0
#endif

#endif /* ES_PORT_H */
