/* edgesketch runtime: the types every model is described with, and the helpers all models share. C99, no malloc.
 *
 * A model is generated as const data (docs/model-api.md): one es_model_t and one es_branch_t per branch, pointing at
 * const arrays. The inference loop is es_sketch_run.h, inlined into each model's entry points, so that the compiler
 * sees the descriptors' values as constants and a model links only the paths it uses. The integer path equals
 * edgesketch.sketch.int_scores bit for bit:
 *
 *   for every branch, at every position n of its window (elements w[n][e], padding = the channel's zero point):
 *   bit p     = (sum of weight * w[n][e] over the taps of hyperplane p) > threshold[p]
 *   read-out position r: bits OR-ed over its pool block of positions; bucket l = sum_k bit[sel[l][k]] << k
 *   scores[c] = sum over branches, read-out positions r and tables l of counts[region(r) * L + l][bucket l][c]
 *
 * Arrays whose element type varies between models (offsets, thresholds, row numbers...) carry a type tag (ES_T_*).
 */
#ifndef ES_SKETCH_H
#define ES_SKETCH_H
#include "es_port.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ES_SK_OK 0
#define ES_SK_ERR_NULL (-1)

enum { ES_T_U8 = 1, ES_T_U16 = 2, ES_T_U32 = 3, ES_T_I8 = 4, ES_T_I16 = 5, ES_T_I32 = 6 };
enum { ES_COUNTS_I8 = 1, ES_COUNTS_I16 = 2, ES_COUNTS_I4 = 3 };   /* what a table cell holds (4-bit: packed planes) */
enum { ES_BITS_BYTES = 1, ES_BITS_WORDS = 2 };                      /* how tap-list hashing keeps its bits */
enum { ES_TAPS_SPLIT = 1, ES_TAPS_NEG = 2, ES_TAPS_WEIGHTS = 3 };   /* how tap-list hashing adds a sum's taps */
#define ES_SK_MAX_PLANES 8                                          /* 4-bit planes: up to 64 classes */

/* One branch: a window sliding over the input, P hyperplanes hashing every position, regions x L tables. */
typedef struct {
    /* where the windows lie */
    uint16_t n_pos;            /* hashed positions */
    uint16_t n_ro;             /* read-out positions: n_pos / pool */
    uint16_t pool;             /* positions whose hash bits are OR-ed into one read-out */
    uint8_t base_t;            /* [n_pos] offset of each position's window in the (padded) input; NULL: at 0 */
    const void *base;
    uint8_t region_t;          /* [n_ro] first cell row (region * L * 2^K) of each read-out; NULL: one region */
    const void *region;
    uint16_t padn;             /* padded input: this many values (0: the window reads the input itself) */
    uint8_t n_fill;            /* pad value of each channel (the zero point) */
    const int8_t *fill;
    uint8_t run_t;             /* [3 n_runs] (padded offset, input offset, length): the input copied into its pads */
    uint16_t n_runs;
    const void *runs;
    /* hashing by tap lists (the compact layout; the unrolled one has a generated hash function instead) */
    uint16_t P;                /* hyperplanes */
    uint16_t n_used;           /* the first n_used, in stored order, are read by some table (the rest: debug only) */
    uint8_t T;                 /* consecutive hyperplanes sharing one sum, each with its own threshold */
    uint8_t taps_kind;         /* ES_TAPS_SPLIT: positive taps subtract from the threshold, then negative ones add;
                                  ES_TAPS_NEG: negative taps read a negated copy of the input, neg_at bytes on (every tap
                                  subtracts: one run a sum); ES_TAPS_WEIGHTS: integer weights, a multiply a tap */
    uint16_t neg_at;           /* ES_TAPS_NEG: where the negated copy starts (a multiple of 4) */
    uint8_t off_t;             /* tap offsets in the window, sum after sum, positive taps first */
    const void *off;
    uint8_t taps;              /* taps of every sum when ntap is NULL */
    const uint8_t *ntap;       /* [P / T] taps of each sum */
    uint8_t npos;              /* positive taps of every sum when npos_ is NULL (ternary taps) */
    const uint8_t *npos_;      /* [P / T] positive taps of each sum */
    const int8_t *wt;          /* tap weights, in off's order; NULL: ternary (+1 positive, -1 the rest) */
    uint8_t thr_t;             /* [P] thresholds: a bit is 1 when its sum is above */
    const void *thr;
    uint8_t bits;              /* ES_BITS_BYTES: a byte per bit, buckets gathered through sel [L * K];
                                  ES_BITS_WORDS: bit p at bit p of 32-bit words, bucket l is K bits from bit sel[l] */
    uint8_t rank_t;            /* debug: the stored place of hyperplane p; NULL: p */
    const void *rank;
    /* buckets and tables */
    uint16_t L;                /* tables per region */
    uint8_t K;                 /* bits per bucket: tables of 2^K cells */
    uint8_t sel_t;
    const void *sel;
    uint8_t n_words;           /* unrolled: 32-bit words of hash bits a position writes (with all != 0) */
    uint8_t n_bucket_words;    /* unrolled: the words tables read */
    uint8_t bat_t;             /* unrolled: [L] first bit of table l's bucket in the words */
    const void *bat;
    uint8_t src_t;             /* unrolled debug: [P] where hash bit p lies in the words (word * 32 + bit) */
    const void *bit_src;
    const void *cells;         /* int8 / int16 counts [cells * C] (padded by 4 bytes), or row numbers [cells] */
    const void *planes[ES_SK_MAX_PLANES];   /* 4-bit counts: [cells] words of each plane */
    uint16_t flush_every;      /* read-outs between flushes of 16-bit (DSP) or byte (4-bit) lanes; 0: at the end */
    uint16_t flush_within;     /* 4-bit: flush after every this many tables inside a read-out (L > 17); 0: never */
} es_branch_t;

/* The model: quantisation, what a cell holds, and the accumulator rules every branch shares. */
typedef struct {
    uint16_t n_inputs;
    uint16_t n_outputs;
    uint8_t counts;            /* ES_COUNTS_* */
    uint8_t row_t;             /* cells hold row numbers of book (codebook: ES_T_U8 or ES_T_U16); 0: counts */
    const void *book;          /* [rows * C] (padded by 4 bytes) */
    uint8_t lanes;             /* int8 counts: add them in 16-bit lanes with SXTAB16 on DSP cores */
    uint8_t one_flush;         /* one branch whose lanes hold every read-out: its final flush writes the scores */
    uint8_t n_planes;          /* 4-bit: planes of nibbles (words of ES_T_U32, U16 or U8) */
    uint8_t plane_t[ES_SK_MAX_PLANES];
    const uint8_t *nib;        /* 4-bit: [C] class c's plane * 16 + its place in the plane (nibble c0 + i at bits 4i) */
    int32_t bias;              /* 4-bit: counts are stored + 8; 8 per cell read */
} es_model_t;

/* xq[i] = saturate_int8(round_half_even(x[i] / scale[q] + zero[q])), q = i % n_q, for i < n: exactly as
 * edgesketch.sketch.quantize_inputs. scale and zero may lie in program memory (ES_ROM). */
void es_sketch_quantize(const float *x, int8_t *xq, unsigned n, const float *scale, const int32_t *zero, unsigned n_q);
/* out[c] = scores[c] * scale[c] + bias[c] for c < n (scale and bias may lie in program memory). */
void es_sketch_dequantize(const int32_t *scores, float *out, unsigned n, const float *scale, const float *bias);
/* Index of the largest of n scores (the first on ties). */
int es_sketch_argmax(const int32_t *scores, unsigned n);

#ifdef __cplusplus
}
#endif
#endif /* ES_SKETCH_H */
