/* edgesketch runtime: the inference loop over a model's descriptors (es_sketch.h). Included once by each generated
 * model, after it defines the sizes below; every function here is inlined into the model's entry points, where the
 * descriptors are constants: the compiler folds their fields, drops the paths the model does not use and unrolls
 * over classes. C99, no malloc, no recursion, no floats.
 *
 * A model defines before including this file:
 *   ES_SK_OUTPUTS   its outputs (C)
 *   ES_SK_PROJ_T    the type of a hyperplane's sum minus its threshold (int_fast16_t when every sum fits, else int32_t)
 *   ES_SK_SCORE_T   the type of an int32 score while it is summed (int_fast16_t when every score fits, else int32_t)
 *   ES_SK_PLANES    4-bit counts: planes of nibbles (else 1)
 *   ES_SK_SRC       the largest padded input of a branch, in bytes (0: every branch reads the input itself)
 *   ES_SK_NEG       a flat branch's input and its negation (ES_TAPS_NEG), in bytes (0: none)
 *   ES_SK_BITS      the most hash bits (hyperplanes) of a branch hashed into bytes (compact layout), at least 1
 *   ES_SK_WORDS     the most 32-bit words of hash bits a position of a branch writes, at least 1
 *
 * The steps, per branch (es_sketch_branch):
 *   padding   copy the input into its padded grid once (es_sketch_pad)
 *   hashing   per position, by a generated straight-line function (unrolled layout) or by tap lists (compact:
 *             es_sketch_hash_bytes / es_sketch_hash_words); the bits of a read-out's pool block are OR-ed
 *   read-out  per table, the bucket's cell is added to the accumulators: int8 or int16 counts into int32 (or 16-bit)
 *             scores, int8 counts four at a time in 16-bit lanes on DSP cores (SXTAB16), 4-bit counts as nibbles in
 *             byte lanes (SIMD within a register), shared rows through their row number (codebook)
 *   flush     lanes are added into the scores often enough never to overflow
 */
#ifndef ES_SKETCH_RUN_H
#define ES_SKETCH_RUN_H
#include "es_sketch.h"

#if !defined(ES_SK_OUTPUTS) || !defined(ES_SK_PROJ_T) || !defined(ES_SK_SCORE_T)
#error "a model defines ES_SK_OUTPUTS, ES_SK_PROJ_T and ES_SK_SCORE_T before it includes es_sketch_run.h"
#endif
#ifndef ES_SK_PLANES
#define ES_SK_PLANES 1
#endif
#ifndef ES_SK_SRC
#define ES_SK_SRC 0
#endif
#ifndef ES_SK_NEG
#define ES_SK_NEG 0
#endif
#ifndef ES_SK_BITS
#define ES_SK_BITS 1
#endif
#ifndef ES_SK_WORDS
#define ES_SK_WORDS 1
#endif
/* Thumb-1 (Cortex-M0/M0+: eight low registers, signed byte and halfword loads only with a register offset) adds the
 * plain counts of an unrolled lookup class by class: each table's step (es_sketch_cell) only keeps its row's offset,
 * and es_sk_gathered then adds, one class after the other, the count at every kept offset (a load of the offset, a
 * load of the count and an add, one accumulator live). Table by table, the ten or so accumulators spill and each
 * count needs its offset built as a constant (qemu-m0, unrolled: mnist1d windowed default 32,001 -> 29,023
 * instructions, digits CNN windowed 75,406 -> 72,493, digits L16K6 int8 2,393 -> 2,281). ES_SK_GATHER is how many
 * rows are kept before they are added (at most 16): 0 is the table-by-table path (every other core); defining it as
 * 16 runs this path anywhere (tests/c/test_runtime.c does on the host). */
#ifndef ES_SK_GATHER
#if defined(__ARM_ARCH_6M__)
#define ES_SK_GATHER 16
#else
#define ES_SK_GATHER 0
#endif
#endif
ES_STATIC_ASSERT(ES_SK_GATHER >= 0 && ES_SK_GATHER <= 16, es_sk_gather_at_most_16);
#define ES_SK_LANEW ((ES_SK_OUTPUTS + 3) / 4)
#define ES_SK_NIBBLE_GROUP 17   /* cells a byte lane can sum: 17 * 15 = 255 */

/* A generated straight-line hash of one position (unrolled layout): the words of bucket bits, all ones where a bit is
 * 0 cleared, then (with all != 0) every hyperplane no table reads, for es_sketch_debug. */
typedef void (*es_sk_hash_fn)(const int8_t *win, uint32_t *w, int all);

/* The accumulators of one inference. Only what the model's path uses survives compilation. */
typedef struct {
    ES_SK_SCORE_T a[ES_SK_OUTPUTS];    /* plain counts: the scores; 4-bit counts: the flushed byte lanes */
#if ES_DSP
    uint32_t e[ES_SK_LANEW];           /* int8 counts on DSP cores: classes 4j, 4j + 2 in lane word e[j] */
    uint32_t o[ES_SK_LANEW];           /* ... and 4j + 1, 4j + 3 in o[j] */
#endif
    uint32_t lo[ES_SK_PLANES];         /* 4-bit counts: even classes of plane j in byte lanes of lo[j] */
    uint32_t hi[ES_SK_PLANES];         /* ... odd ones in hi[j] */
#if ES_SK_GATHER
    uint32_t at[ES_SK_GATHER];         /* plain counts on Thumb-1: byte offsets of the rows not yet added ... */
    unsigned n;                        /* ... and how many */
#endif
} es_sk_acc_t;

/* The hash state of one position or read-out. */
typedef union {
    uint32_t w[ES_SK_WORDS];
    uint8_t b[ES_SK_BITS];
} es_sk_bits_t;

/* ---------------------------------------------------------------- typed reads of const arrays */
ES_INLINE uint32_t es_sk_u(uint8_t t, const void *p, size_t i)
{
    switch (t) {
    case ES_T_U8: return ES_RD_U8((const uint8_t *)p + i);
    case ES_T_U16: return ES_RD_U16((const uint16_t *)p + i);
    default: return ES_RD_U32((const uint32_t *)p + i);
    }
}

ES_INLINE int32_t es_sk_i(uint8_t t, const void *p, size_t i)
{
    switch (t) {
    case ES_T_I8: return ES_RD_I8((const int8_t *)p + i);
    case ES_T_I16: return ES_RD_I16((const int16_t *)p + i);
    default: return ES_RD_I32((const int32_t *)p + i);
    }
}

/* p advanced by n elements of type t. */
ES_INLINE const void *es_sk_at(uint8_t t, const void *p, size_t n)
{
    return (const void *)((const uint8_t *)p + n * (t == ES_T_U8 || t == ES_T_I8 ? 1u : t == ES_T_U16 || t == ES_T_I16 ? 2u : 4u));
}

/* ---------------------------------------------------------------- accumulators */
/* Apply STEP(c) for every class c < ES_SK_OUTPUTS: unrolled up to 32 classes, a loop beyond. */
#define ES_SK_EACH_CLASS(STEP) do { \
        if (ES_SK_OUTPUTS > 0) { STEP(0) } if (ES_SK_OUTPUTS > 1) { STEP(1) } if (ES_SK_OUTPUTS > 2) { STEP(2) } \
        if (ES_SK_OUTPUTS > 3) { STEP(3) } if (ES_SK_OUTPUTS > 4) { STEP(4) } if (ES_SK_OUTPUTS > 5) { STEP(5) } \
        if (ES_SK_OUTPUTS > 6) { STEP(6) } if (ES_SK_OUTPUTS > 7) { STEP(7) } if (ES_SK_OUTPUTS > 8) { STEP(8) } \
        if (ES_SK_OUTPUTS > 9) { STEP(9) } if (ES_SK_OUTPUTS > 10) { STEP(10) } if (ES_SK_OUTPUTS > 11) { STEP(11) } \
        if (ES_SK_OUTPUTS > 12) { STEP(12) } if (ES_SK_OUTPUTS > 13) { STEP(13) } if (ES_SK_OUTPUTS > 14) { STEP(14) } \
        if (ES_SK_OUTPUTS > 15) { STEP(15) } if (ES_SK_OUTPUTS > 16) { STEP(16) } if (ES_SK_OUTPUTS > 17) { STEP(17) } \
        if (ES_SK_OUTPUTS > 18) { STEP(18) } if (ES_SK_OUTPUTS > 19) { STEP(19) } if (ES_SK_OUTPUTS > 20) { STEP(20) } \
        if (ES_SK_OUTPUTS > 21) { STEP(21) } if (ES_SK_OUTPUTS > 22) { STEP(22) } if (ES_SK_OUTPUTS > 23) { STEP(23) } \
        if (ES_SK_OUTPUTS > 24) { STEP(24) } if (ES_SK_OUTPUTS > 25) { STEP(25) } if (ES_SK_OUTPUTS > 26) { STEP(26) } \
        if (ES_SK_OUTPUTS > 27) { STEP(27) } if (ES_SK_OUTPUTS > 28) { STEP(28) } if (ES_SK_OUTPUTS > 29) { STEP(29) } \
        if (ES_SK_OUTPUTS > 30) { STEP(30) } if (ES_SK_OUTPUTS > 31) { STEP(31) } \
        if (ES_SK_OUTPUTS > 32) { unsigned c_; for (c_ = 32; c_ < ES_SK_OUTPUTS; ++c_) { STEP(c_) } } \
    } while (0)

/* Apply STEP(j) for every 16-bit lane word (DSP cores) j < ES_SK_LANEW, and for every 4-bit plane j < ES_SK_PLANES:
 * unrolled (constant indices keep the accumulators in registers), a loop beyond 8. */
#define ES_SK_EACH_(n, STEP) do { \
        if ((n) > 0) { STEP(0) } if ((n) > 1) { STEP(1) } if ((n) > 2) { STEP(2) } if ((n) > 3) { STEP(3) } \
        if ((n) > 4) { STEP(4) } if ((n) > 5) { STEP(5) } if ((n) > 6) { STEP(6) } if ((n) > 7) { STEP(7) } \
        if ((n) > 8) { unsigned j_; for (j_ = 8; j_ < (unsigned)(n); ++j_) { STEP(j_) } } \
    } while (0)

/* The value of class c in the 16-bit lanes (DSP cores). */
#if ES_DSP
ES_INLINE int32_t es_sk_lane(const es_sk_acc_t *s, unsigned c)
{
    uint32_t v = (c & 1u) ? s->o[c >> 2] : s->e[c >> 2];
    return (int16_t)((c & 2u) ? (v >> 16) : (v & 0xFFFFu));
}
#endif

/* The value of class c in the byte lanes of 4-bit counts: m->nib[c] is its plane * 16 + its place in the plane. */
ES_INLINE int32_t es_sk_nibble_lane(const es_model_t *m, const es_sk_acc_t *s, unsigned c)
{
    unsigned j = m->nib[c] >> 4u, i = m->nib[c] & 15u;   /* a plain read: the descriptor's constants fold */
    return (int32_t)((((i & 1u) ? s->hi[j] : s->lo[j]) >> (8u * (i >> 1))) & 0xFFu);
}

#define ES_SK_ZERO_LANES_(j) s->e[j] = s->o[j] = 0;
#define ES_SK_ZERO_PLANES_(j) s->lo[j] = s->hi[j] = 0;

ES_INLINE void es_sk_begin(const es_model_t *m, es_sk_acc_t *s, int32_t *scores)
{
#define ES_SK_ZERO_(c) s->a[c] = 0;
    ES_SK_EACH_CLASS(ES_SK_ZERO_);
#undef ES_SK_ZERO_
#if ES_DSP
    if (m->lanes) {
        ES_SK_EACH_(ES_SK_LANEW, ES_SK_ZERO_LANES_);
        if (!m->one_flush) {
#define ES_SK_ZERO_(c) scores[c] = 0;
            ES_SK_EACH_CLASS(ES_SK_ZERO_);
#undef ES_SK_ZERO_
        }
    }
#endif
    ES_SK_EACH_(ES_SK_PLANES, ES_SK_ZERO_PLANES_);
    (void)m;
    (void)scores;
}

/* 16-bit (DSP) or byte (4-bit) lanes into the scores, and clear them. */
ES_INLINE void es_sk_flush(const es_model_t *m, es_sk_acc_t *s, int32_t *scores)
{
    if (m->counts == ES_COUNTS_I4) {
#define ES_SK_FLUSH4_(c) s->a[c] += (ES_SK_SCORE_T)es_sk_nibble_lane(m, s, c);
        ES_SK_EACH_CLASS(ES_SK_FLUSH4_);
#undef ES_SK_FLUSH4_
        ES_SK_EACH_(ES_SK_PLANES, ES_SK_ZERO_PLANES_);
        return;
    }
#if ES_DSP
    if (m->lanes) {
        if (m->one_flush) {
#define ES_SK_FLUSH16_(c) scores[c] = es_sk_lane(s, c);
            ES_SK_EACH_CLASS(ES_SK_FLUSH16_);
#undef ES_SK_FLUSH16_
        } else {
#define ES_SK_FLUSH16_(c) scores[c] += es_sk_lane(s, c);
            ES_SK_EACH_CLASS(ES_SK_FLUSH16_);
#undef ES_SK_FLUSH16_
        }
        ES_SK_EACH_(ES_SK_LANEW, ES_SK_ZERO_LANES_);
    }
#endif
    (void)scores;
}

/* The scores of a finished inference (plain and 4-bit paths; the DSP lanes wrote theirs at their flushes). */
ES_INLINE void es_sk_finish(const es_model_t *m, es_sk_acc_t *s, int32_t *scores)
{
#if ES_DSP
    if (m->lanes && m->counts != ES_COUNTS_I4) return;
#endif
    if (m->counts == ES_COUNTS_I4) {
#define ES_SK_OUT_(c) scores[c] = (int32_t)s->a[c] - m->bias;
        ES_SK_EACH_CLASS(ES_SK_OUT_);
#undef ES_SK_OUT_
    } else {
#define ES_SK_OUT_(c) scores[c] = (int32_t)s->a[c];
        ES_SK_EACH_CLASS(ES_SK_OUT_);
#undef ES_SK_OUT_
    }
}

/* After each table of a straight-line lookup of one read-out (the unrolled layout's flat branches): avr-gcc would
 * otherwise reassociate every class's additions over all the tables and delay them to the end, keeping every count
 * read on the stack; an empty asm that reads and writes each accumulator makes it add them as it goes. Elsewhere (and
 * inside loops, where nothing can be delayed) nothing. */
#define ES_SK_KEEP_(c) __asm__("" : "+r"(s_->a[c]));
#define ES_SK_KEEP_ALL_(s) do { es_sk_acc_t *s_ = (s); ES_SK_EACH_CLASS(ES_SK_KEEP_); } while (0)
#if defined(__GNUC__) && defined(__AVR__)
#define ES_SK_SETTLE(s) ES_SK_KEEP_ALL_(s)
#else
#define ES_SK_SETTLE(s) ((void)(s))
#endif

/* Where the rows of plain counts are: the branch's cells, or the book of shared rows (codebook). */
ES_INLINE const int8_t *es_sk_rows(const es_model_t *m, const es_branch_t *b)
{
    return (const int8_t *)(m->row_t ? m->book : b->cells);
}

/* The row of plain counts of cell first + bucket: the cell's own, or the shared row its row number names. */
ES_INLINE const int8_t *es_sk_row(const es_model_t *m, const es_branch_t *b, size_t first, unsigned bucket)
{
    const size_t size = ES_SK_OUTPUTS * (m->counts == ES_COUNTS_I16 ? 2u : 1u);   /* bytes of a row of counts */
    if (m->row_t)
        return es_sk_rows(m, b) + (size_t)es_sk_u(m->row_t, es_sk_at(m->row_t, b->cells, first), bucket) * size;
    return (es_sk_rows(m, b) + first * size) + bucket * size;
}

/* Add the counts of cell first + bucket (its index into the branch's cells) to the accumulators, table by table. */
ES_INLINE void es_sk_add_cell(const es_model_t *m, const es_branch_t *b, es_sk_acc_t *s, size_t first, unsigned bucket)
{
    if (m->counts == ES_COUNTS_I4) {   /* a word of each plane: nibbles + 8, classes c0 + i at bits 4i */
#define ES_SK_PLANE_(j) if (m->n_planes > j) { \
        uint32_t v_ = es_sk_u(m->plane_t[j], es_sk_at(m->plane_t[j], b->planes[j], first), bucket); \
        uint32_t mask_ = m->plane_t[j] == ES_T_U32 ? 0x0F0F0F0Fu : m->plane_t[j] == ES_T_U16 ? 0x0F0Fu : 0x0Fu; \
        s->lo[j] += v_ & mask_; s->hi[j] += (v_ >> 4) & mask_; }
        ES_SK_EACH_(ES_SK_PLANES, ES_SK_PLANE_);
#undef ES_SK_PLANE_
        return;
    } else {
        const int8_t *row = es_sk_row(m, b, first, bucket);
#if ES_DSP
        if (m->lanes) {   /* four int8 counts a word: SXTAB16 adds bytes 0, 2 and 1, 3 into 16-bit lanes */
            const uint8_t *r = (const uint8_t *)row;
#define ES_SK_LANES_(j) { uint32_t v_ = es_ld32(r + 4 * (j)); \
        s->e[j] = es_sxtab16(s->e[j], v_); s->o[j] = es_sxtab16_ror8(s->o[j], v_); }
            ES_SK_EACH_(ES_SK_LANEW, ES_SK_LANES_);
#undef ES_SK_LANES_
            return;
        }
#endif
        if (m->counts == ES_COUNTS_I16) {
            const int16_t *r = (const int16_t *)(const void *)row;
#define ES_SK_ADD_(c) s->a[c] += ES_RD_I16(r + c);
            ES_SK_EACH_CLASS(ES_SK_ADD_);
#undef ES_SK_ADD_
        } else {
            const int8_t *r = row;
#define ES_SK_ADD_(c) s->a[c] += ES_RD_I8(r + c);
            ES_SK_EACH_CLASS(ES_SK_ADD_);
#undef ES_SK_ADD_
        }
    }
}

#if ES_SK_GATHER
/* The kept rows (es_sketch_cell on Thumb-1) added class by class: s->a[c] += the count of class c at every kept offset.
 * The unrolled lookup keeps a constant number of rows, so the tests on n fold and each class is a straight line. The
 * offsets are read through a volatile pointer, so each is loaded from the stack where a class uses it (one load with an
 * sp offset): gcc would otherwise keep them in registers across the classes, the high ones among them, which no load
 * can take as an offset (a move more for each count, measured +11% on the digits CNN's read-outs). */
ES_INLINE void es_sk_gathered(const es_model_t *m, const es_branch_t *b, es_sk_acc_t *s)
{
    const unsigned n = s->n;
    const volatile uint32_t *at = s->at;
    s->n = 0;
#define ES_SK_EACH_KEPT_(STEP) do { \
        if (n > 0) { STEP(0) } if (n > 1) { STEP(1) } if (n > 2) { STEP(2) } if (n > 3) { STEP(3) } \
        if (n > 4) { STEP(4) } if (n > 5) { STEP(5) } if (n > 6) { STEP(6) } if (n > 7) { STEP(7) } \
        if (n > 8) { STEP(8) } if (n > 9) { STEP(9) } if (n > 10) { STEP(10) } if (n > 11) { STEP(11) } \
        if (n > 12) { STEP(12) } if (n > 13) { STEP(13) } if (n > 14) { STEP(14) } if (n > 15) { STEP(15) } \
    } while (0)
    if (m->counts == ES_COUNTS_I16) {
#define ES_SK_KEPT_(k) v_ += ES_RD_I16((const int16_t *)(const void *)(p_ + at[k]));
#define ES_SK_CLASS_(c) { const int8_t *p_ = es_sk_rows(m, b) + 2 * (c); ES_SK_SCORE_T v_ = s->a[c]; \
        ES_SK_EACH_KEPT_(ES_SK_KEPT_); s->a[c] = v_; }
        ES_SK_EACH_CLASS(ES_SK_CLASS_);
#undef ES_SK_CLASS_
#undef ES_SK_KEPT_
    } else {
#define ES_SK_KEPT_(k) v_ += ES_RD_I8(p_ + at[k]);
#define ES_SK_CLASS_(c) { const int8_t *p_ = es_sk_rows(m, b) + (c); ES_SK_SCORE_T v_ = s->a[c]; \
        ES_SK_EACH_KEPT_(ES_SK_KEPT_); s->a[c] = v_; }
        ES_SK_EACH_CLASS(ES_SK_CLASS_);
#undef ES_SK_CLASS_
#undef ES_SK_KEPT_
    }
#undef ES_SK_EACH_KEPT_
}
#endif

/* Add the counts of cell first + bucket to the accumulators: the unrolled lookup's step for each table, which passes a
 * table's first cell as a constant, so that it folds into the address of the table's data. On Thumb-1, plain counts
 * only keep the row's offset, added by es_sk_gathered after the read-out's last table (es_sketch_tables). */
ES_INLINE void es_sketch_cell(const es_model_t *m, const es_branch_t *b, es_sk_acc_t *s, size_t first, unsigned bucket)
{
#if ES_SK_GATHER
    if (m->counts != ES_COUNTS_I4) {
        s->at[s->n++] = (uint32_t)(es_sk_row(m, b, first, bucket) - es_sk_rows(m, b));
        if (s->n == ES_SK_GATHER) es_sk_gathered(m, b, s);
        return;
    }
#endif
    es_sk_add_cell(m, b, s, first, bucket);
}

/* ---------------------------------------------------------------- windows */
/* The input copied into its padded grid: every value the channel's zero point, then the input's runs over it. */
ES_INLINE void es_sketch_pad(const es_branch_t *b, const int8_t *x, int8_t *xp)
{
    unsigned i, j;
    for (i = 0, j = 0; i < b->padn; ++i) {
        xp[i] = ES_RD_I8(b->fill + j);
        if (++j == b->n_fill) j = 0;
    }
    for (i = 0; i < 3u * b->n_runs; i += 3) {
        int8_t *d = xp + es_sk_u(b->run_t, b->runs, i);
        const int8_t *s = x + es_sk_u(b->run_t, b->runs, i + 1);
        for (j = es_sk_u(b->run_t, b->runs, i + 2); j > 0; --j) *d++ = *s++;
    }
}

/* ---------------------------------------------------------------- hashing by tap lists (compact layout) */
/* Apply TERM(k) to the n taps k = 0 .. n - 1 of one sum, read through op (the sum's first tap offset) and wp (its
 * first weight), both advanced past them: a count that is a constant (every sum has it) compiles to a straight line;
 * other counts jump into the run (a switch), runs longer than 16 loop. */
#define ES_SK_RUN_(n, TERM) do { \
        unsigned n_ = (n); \
        while (n_ > 16) { unsigned k_; for (k_ = 0; k_ < 16; ++k_) { TERM(k_) } \
                          op = es_sk_at(b->off_t, op, 16); if (b->wt) wp += 16; n_ -= 16; } \
        switch (n_) { \
        case 16: TERM(15) /* fallthrough */ \
        case 15: TERM(14) /* fallthrough */ \
        case 14: TERM(13) /* fallthrough */ \
        case 13: TERM(12) /* fallthrough */ \
        case 12: TERM(11) /* fallthrough */ \
        case 11: TERM(10) /* fallthrough */ \
        case 10: TERM(9) /* fallthrough */ \
        case 9: TERM(8) /* fallthrough */ \
        case 8: TERM(7) /* fallthrough */ \
        case 7: TERM(6) /* fallthrough */ \
        case 6: TERM(5) /* fallthrough */ \
        case 5: TERM(4) /* fallthrough */ \
        case 4: TERM(3) /* fallthrough */ \
        case 3: TERM(2) /* fallthrough */ \
        case 2: TERM(1) /* fallthrough */ \
        case 1: TERM(0) /* fallthrough */ \
        default: break; \
        } \
        op = es_sk_at(b->off_t, op, n_); \
        if (b->wt) wp += n_; \
    } while (0)
#define ES_SK_OFF_(k) es_sk_u(b->off_t, op, (k))
#define ES_SK_SUB_(k) acc -= (ES_SK_PROJ_T)win[ES_SK_OFF_(k)];
#define ES_SK_ADD_(k) acc += (ES_SK_PROJ_T)win[ES_SK_OFF_(k)];
#define ES_SK_MUL_(k) acc -= (ES_SK_PROJ_T)(ES_RD_I8(wp + (k)) * (ES_SK_PROJ_T)win[ES_SK_OFF_(k)]);

/* acc minus the sum of sum s, whose taps' offsets start at *op and weights at *wp (both advanced past them).
 * ES_TAPS_NEG: every tap subtracts (a negative tap reads the negated copy of the input: ~x = -x - 1, its -1 folded into
 * the threshold); ES_TAPS_SPLIT: positive taps subtract, then negative ones add; ES_TAPS_WEIGHTS: weight * value. */
ES_INLINE ES_SK_PROJ_T es_sketch_sum(const es_branch_t *b, const int8_t *win, const void **opp, const int8_t **wpp,
                                     unsigned s, ES_SK_PROJ_T acc)
{
    const void *op = *opp;
    const int8_t *wp = *wpp;
    unsigned n = b->ntap ? ES_RD_U8(b->ntap + s) : b->taps;
    if (b->taps_kind == ES_TAPS_WEIGHTS) {
        ES_SK_RUN_(n, ES_SK_MUL_);
    } else if (b->taps_kind == ES_TAPS_NEG) {
        ES_SK_RUN_(n, ES_SK_SUB_);
    } else {
        unsigned np = b->npos_ ? ES_RD_U8(b->npos_ + s) : b->npos;
        ES_SK_RUN_(np, ES_SK_SUB_);
        ES_SK_RUN_(n - np, ES_SK_ADD_);
    }
    *opp = op;
    *wpp = wp;
    return acc;
}
#undef ES_SK_MUL_
#undef ES_SK_ADD_
#undef ES_SK_SUB_

/* The input (or its padded grid) and its negation, for ES_TAPS_NEG: xx[i] = v[i] for i < n, and ~v[i] = -v[i] - 1 four
 * at a time from word neg_at / 4 on. */
ES_INLINE void es_sketch_negate(const es_branch_t *b, uint32_t *xx)
{
    unsigned i, nw = b->neg_at / 4u;
    for (i = 0; i < nw; ++i) xx[nw + i] = ~xx[i];
}

/* Bits of the first n hyperplanes (stored order), a byte each: bits[p] = 1 when the sum exceeds threshold p. */
ES_INLINE void es_sketch_hash_bytes(const es_branch_t *b, const int8_t *win, uint8_t *bits, unsigned n)
{
    const void *op = b->off;
    const int8_t *wp = b->wt;
    unsigned p, k, s = 0;
    for (p = 0; p < n; p += b->T, ++s) {
        if (b->T == 1) {
            ES_SK_PROJ_T z = es_sketch_sum(b, win, &op, &wp, s, (ES_SK_PROJ_T)es_sk_i(b->thr_t, b->thr, p));
            bits[p] = (uint8_t)((uint32_t)z >> 31);   /* threshold - sum < 0 */
        } else {
            ES_SK_PROJ_T q = es_sketch_sum(b, win, &op, &wp, s, 0);   /* minus the shared sum */
            for (k = 0; k < b->T; ++k) {
                ES_SK_PROJ_T z = (ES_SK_PROJ_T)(es_sk_i(b->thr_t, b->thr, p + k) + q);
                bits[p + k] = (uint8_t)((uint32_t)z >> 31);
            }
        }
    }
}

/* Bits of every hyperplane packed into words in hyperplane order: bit p is bit p % 32 of word p / 32. */
ES_INLINE void es_sketch_hash_words(const es_branch_t *b, const int8_t *win, uint32_t *w)
{
    const void *op = b->off;
    const int8_t *wp = b->wt;
    unsigned p = 0, k, s = 0, end;
    while (p < b->P) {
        uint32_t acc = 0;
        end = p + 32u < b->P ? p + 32u : b->P;
        for (; p < end; p += b->T, ++s) {
            if (b->T == 1) {
                ES_SK_PROJ_T z = es_sketch_sum(b, win, &op, &wp, s, (ES_SK_PROJ_T)es_sk_i(b->thr_t, b->thr, p));
                acc = (acc >> 1) | ((uint32_t)z & 0x80000000u);
            } else {
                ES_SK_PROJ_T q = es_sketch_sum(b, win, &op, &wp, s, 0);
                for (k = 0; k < b->T; ++k)
                    acc = (acc >> 1) | ((uint32_t)(ES_SK_PROJ_T)(es_sk_i(b->thr_t, b->thr, p + k) + q) & 0x80000000u);
            }
        }
        *w++ = acc >> (31u - ((end - 1u) & 31u));
    }
}

/* ---------------------------------------------------------------- buckets */
/* Table l's bucket from byte bits: bit k is the bit of hyperplane sel[l * K + k] (stored order). */
ES_INLINE unsigned es_sketch_bucket_bytes(const es_branch_t *b, const uint8_t *bits, unsigned l)
{
    size_t at = (size_t)l * b->K;
    unsigned v = 0;
#define ES_SK_BIT_(k) if (b->K > k) v |= (unsigned)bits[es_sk_u(b->sel_t, b->sel, at + k)] << k;
    ES_SK_BIT_(0) ES_SK_BIT_(1) ES_SK_BIT_(2) ES_SK_BIT_(3) ES_SK_BIT_(4) ES_SK_BIT_(5) ES_SK_BIT_(6) ES_SK_BIT_(7)
    ES_SK_BIT_(8) ES_SK_BIT_(9) ES_SK_BIT_(10) ES_SK_BIT_(11) ES_SK_BIT_(12) ES_SK_BIT_(13) ES_SK_BIT_(14) ES_SK_BIT_(15)
#undef ES_SK_BIT_
    return v;
}

/* Table l's bucket from packed words: the K bits from bit bat[l] on (they lie in one word). */
ES_INLINE unsigned es_sketch_bucket_words(const es_branch_t *b, const uint32_t *w, unsigned l)
{
    unsigned q = es_sk_u(b->bat_t, b->bat, l);
    if (b->n_bucket_words == 1 || (!b->n_bucket_words && b->P <= 32))   /* one word: it stays in a register */
        return (unsigned)((w[0] >> q) & ((1u << b->K) - 1u));
    return (unsigned)((w[q >> 5] >> (q & 31u)) & ((1u << b->K) - 1u));
}

/* What branch b's windows read: the input itself, or its padded grid, built once per inference in buf. */
ES_INLINE const int8_t *es_sketch_source(const es_branch_t *b, const int8_t *x, uint32_t *buf)
{
    if (!b->padn) return x;
    es_sketch_pad(b, x, (int8_t *)buf);
    return (const int8_t *)buf;
}

/* On AVR, a step whose buffer should not sit in its caller's frame: avr-gcc reaches a frame's first 63 bytes in one
 * instruction, so a large buffer there moves the accumulators' spill slots out of reach (four more instructions an
 * access). Elsewhere it is inlined like the rest. (unused: models that do not use it compile without a warning.) */
#if defined(__AVR__) && defined(__GNUC__)
#define ES_SK_OWN_FRAME static __attribute__((noinline, unused))
/* An empty asm naming the model (ES_SK_PREFIX): two models' copies of an own-frame step are the same source, and
 * link-time identical code folding would merge them into one that neither model's constants specialise (21 KB instead
 * of 0.8 KB each, measured with two 16-input models on avr-gcc 5.4 -Os -flto). The name keeps them apart. */
#define ES_SK_OWN_FRAME_TAG() __asm__ __volatile__("; edgesketch model " ES_SK_PREFIX ::)
#else
#define ES_SK_OWN_FRAME ES_INLINE
#define ES_SK_OWN_FRAME_TAG() ((void)0)
#endif
#ifndef ES_SK_PREFIX
#define ES_SK_PREFIX "es"
#endif

/* The hash bits of a flat branch with negative taps read from a negated copy (ES_TAPS_NEG: one position): the input
 * then ~input, from byte neg_at on, in a buffer of this step's own. */
ES_SK_OWN_FRAME void es_sketch_hash_negated(const es_model_t *m, const es_branch_t *b, const int8_t *x, es_sk_bits_t *h,
                                            int all)
{
    uint32_t buf[ES_SK_NEG > 0 ? (ES_SK_NEG + 3) / 4 : 1];
    int8_t *xx = (int8_t *)buf;
    unsigned i;
    ES_SK_OWN_FRAME_TAG();
    buf[b->neg_at / 4u - 1u] = 0;   /* bytes past the input in the last word */
    for (i = 0; i < m->n_inputs; ++i) xx[i] = x[i];
    es_sketch_negate(b, buf);
    ES_OPAQUE(xx);
    if (b->bits == ES_BITS_WORDS) es_sketch_hash_words(b, xx, h->w);
    else es_sketch_hash_bytes(b, xx, h->b, all ? b->P : b->n_used);
}

/* ---------------------------------------------------------------- one branch */
/* The bits of read-out ro: its positions hashed (a generated function, or tap lists), OR-ed over the pool block. */
ES_INLINE void es_sketch_readout_bits(const es_model_t *m, const es_branch_t *b, const int8_t *src, unsigned ro,
                                      es_sk_hash_fn hash, es_sk_bits_t *h, int all)
{
    unsigned q, i;
    if (!hash && b->taps_kind == ES_TAPS_NEG) {   /* flat: one position, src is the input */
        es_sketch_hash_negated(m, b, src, h, all);
        return;
    }
    for (q = 0; q < b->pool; ++q) {
        const int8_t *win = src + (b->base ? es_sk_u(b->base_t, b->base, (size_t)ro * b->pool + q) : 0u);
        es_sk_bits_t u;
        es_sk_bits_t *d = q ? &u : h;
        if (hash) hash(win, d->w, all);
        else if (b->bits == ES_BITS_WORDS) es_sketch_hash_words(b, win, d->w);
        else es_sketch_hash_bytes(b, win, d->b, all ? b->P : b->n_used);
        if (q) {
            if (hash || b->bits == ES_BITS_WORDS)
                for (i = 0; i < (unsigned)(hash ? (all ? b->n_words : b->n_bucket_words) : (b->P + 31u) / 32u); ++i)
                    h->w[i] |= u.w[i];
            else
                for (i = 0; i < (all ? b->P : b->n_used); ++i) h->b[i] |= u.b[i];
        }
    }
}

/* The tables' cells of one read-out, looked up in a loop (compact layout; the unrolled one generates this). */
ES_INLINE void es_sketch_lookup(const es_model_t *m, const es_branch_t *b, const es_sk_bits_t *h, size_t row0,
                                es_sk_acc_t *s, int32_t *scores)
{
    unsigned l;
    size_t R = (size_t)1 << b->K;
    const uint8_t *bits = h->b;
    ES_OPAQUE(bits);   /* bits[sel]: one load with a register offset, not an sp offset rebuilt for every bit */
    for (l = 0; l < b->L; ++l) {
        unsigned bucket = b->bits == ES_BITS_WORDS ? es_sketch_bucket_words(b, h->w, l) : es_sketch_bucket_bytes(b, bits, l);
        es_sk_add_cell(m, b, s, row0 + l * R, bucket);
        if (b->flush_within && l % b->flush_within == b->flush_within - 1u && l + 1u < b->L) es_sk_flush(m, s, scores);
    }
}

/* A generated straight-line lookup of one read-out's tables (unrolled layout): row0 is its region's first cell. */
typedef void (*es_sk_read_fn)(const uint32_t *w, size_t row0, es_sk_acc_t *s, int32_t *scores);

/* One read-out's tables: the generated straight-line lookup (`read`; on Thumb-1 the rows it kept are added after it) or
 * the loop (`read` NULL). */
ES_INLINE void es_sketch_tables(const es_model_t *m, const es_branch_t *b, const es_sk_bits_t *h, size_t row0,
                                es_sk_acc_t *s, int32_t *scores, es_sk_read_fn read)
{
    if (!read) {
        es_sketch_lookup(m, b, h, row0, s, scores);
        return;
    }
#if ES_SK_GATHER
    s->n = 0;
#endif
    read(h->w, row0, s, scores);
#if ES_SK_GATHER
    if (s->n) es_sk_gathered(m, b, s);
#endif
}

/* Every read-out of branch b: hash it (`hash`: generated, or NULL for tap lists), look its tables up (`read`:
 * generated, or NULL for the loop), and flush the lanes before they could overflow. */
ES_INLINE void es_sketch_branch(const es_model_t *m, const es_branch_t *b, const int8_t *x, es_sk_acc_t *s,
                                int32_t *scores, es_sk_hash_fn hash, es_sk_read_fn read)
{
    unsigned ro, since = 0;
    uint32_t buf[ES_SK_SRC > 0 ? (ES_SK_SRC + 3) / 4 : 1];
    const int8_t *src = es_sketch_source(b, x, buf);
    for (ro = 0; ro < b->n_ro; ++ro) {
        es_sk_bits_t h;
        size_t row0 = b->region ? es_sk_u(b->region_t, b->region, ro) : 0u;
        es_sketch_readout_bits(m, b, src, ro, hash, &h, 0);
        es_sketch_tables(m, b, &h, row0, s, scores, read);
        if (b->flush_every && ++since == b->flush_every) {
            es_sk_flush(m, s, scores);
            since = 0;
        }
    }
    if (b->flush_every != 1u) es_sk_flush(m, s, scores);   /* the last read-outs (or all of them) */
}

/* ---------------------------------------------------------------- debug */
/* Every hash bit (position by position, hyperplane by hyperplane, in hyperplane order) and every bucket (read-out by
 * read-out, table by table) of branch b, in the order of edgesketch.sketch.int_hash_bits / int_buckets. Returns the
 * advanced output pointers through *bits and *buckets. */
ES_INLINE void es_sketch_debug_branch(const es_model_t *m, const es_branch_t *b, const int8_t *x, uint8_t **bits,
                                      uint16_t **buckets, es_sk_hash_fn hash)
{
    unsigned ro, q, p, l, i;
    uint8_t *ob = *bits;
    uint16_t *ok = *buckets;
    uint32_t buf[ES_SK_SRC > 0 ? (ES_SK_SRC + 3) / 4 : 1];
    const int8_t *src = es_sketch_source(b, x, buf);
    for (ro = 0; ro < b->n_ro; ++ro) {
        es_sk_bits_t h;
        for (i = 0; i < ES_SK_WORDS; ++i) h.w[i] = 0;
        for (i = 0; i < ES_SK_BITS; ++i) h.b[i] = 0;
        for (q = 0; q < b->pool; ++q) {
            const int8_t *win = src + (b->base ? es_sk_u(b->base_t, b->base, (size_t)ro * b->pool + q) : 0u);
            es_sk_bits_t u;
            if (hash) {
                hash(win, u.w, 1);
                for (p = 0; p < b->P; ++p) {
                    unsigned at = es_sk_u(b->src_t, b->bit_src, p);
                    *ob++ = (uint8_t)((u.w[at >> 5] >> (at & 31u)) & 1u);
                }
                for (i = 0; i < b->n_words; ++i) h.w[i] |= u.w[i];
            } else if (b->taps_kind == ES_TAPS_NEG) {   /* flat */
                es_sketch_hash_negated(m, b, win, &u, 1);
                for (p = 0; p < b->P; ++p)
                    *ob++ = b->bits == ES_BITS_WORDS ? (uint8_t)((u.w[p >> 5] >> (p & 31u)) & 1u)
                                                     : u.b[b->rank ? es_sk_u(b->rank_t, b->rank, p) : p];
                for (i = 0; i < ES_SK_WORDS; ++i) h.w[i] |= u.w[i];
                for (i = 0; i < ES_SK_BITS; ++i) h.b[i] |= u.b[i];
            } else if (b->bits == ES_BITS_WORDS) {
                es_sketch_hash_words(b, win, u.w);
                for (p = 0; p < b->P; ++p) *ob++ = (uint8_t)((u.w[p >> 5] >> (p & 31u)) & 1u);
                for (i = 0; i < (b->P + 31u) / 32u; ++i) h.w[i] |= u.w[i];
            } else {
                es_sketch_hash_bytes(b, win, u.b, b->P);
                for (p = 0; p < b->P; ++p) *ob++ = u.b[b->rank ? es_sk_u(b->rank_t, b->rank, p) : p];
                for (i = 0; i < b->P; ++i) h.b[i] |= u.b[i];
            }
        }
        for (l = 0; l < b->L; ++l)
            *ok++ = (uint16_t)(hash || b->bits == ES_BITS_WORDS ? es_sketch_bucket_words(b, h.w, l)
                                                                : es_sketch_bucket_bytes(b, h.b, l));
    }
    *bits = ob;
    *buckets = ok;
}

#endif /* ES_SKETCH_RUN_H */
