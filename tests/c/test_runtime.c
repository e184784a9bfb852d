/* Unit tests of the edgesketch runtime (firmware/model/) on hand-built descriptors, with no code generation (as
 * emlearn's test_net.c tests eml_net.h): every expected value below is worked out in the comment beside it.
 * Built and run by tests/test_runtime_c.py on the host, plain and under ASan/UBSan. Prints one line per check and
 * exits 1 on the first failure. */
#include <stdio.h>
#include <string.h>

#define ES_SK_OUTPUTS 2
#define ES_SK_PROJ_T int32_t
#define ES_SK_SCORE_T int32_t
#define ES_SK_PLANES 1
#define ES_SK_SRC 16
#define ES_SK_NEG 8
#define ES_SK_BITS 4
#define ES_SK_WORDS 2
#include "es_sketch_run.h"

static int failures;

static void check(const char *what, const int32_t *got, int32_t a, int32_t b)
{
    int ok = got[0] == a && got[1] == b;
    printf("%s %s: got %ld %ld, want %ld %ld\n", ok ? "ok  " : "FAIL", what, (long)got[0], (long)got[1], (long)a, (long)b);
    failures += !ok;
}

static void predict(const es_model_t *m, const es_branch_t *b, const int8_t *x, int32_t *scores, es_sk_hash_fn hash,
                    es_sk_read_fn read)
{
    es_sk_acc_t s;
    es_sk_begin(m, &s, scores);
    es_sketch_branch(m, b, x, &s, scores, hash, read);
    es_sk_finish(m, &s, scores);
}

/* ---------------------------------------------------------------- a flat branch: x = {10, -3, 5, 0}
 * h0 = x0 - x1 = 13 > 12: 1;  h1 = x2 + x3 = 5 > 5: 0 (a tie is 0);  h2 = -x0 = -10 > -11: 1
 * table 0 reads (h0, h1): bucket 1 + 0 * 2 = 1;  table 1 reads (h2, h0): bucket 1 + 1 * 2 = 3
 * cell c = l * 4 + bucket holds {c, -2c}: scores = cell 1 + cell 7 = {8, -16} */
static const int8_t x4[4] = {10, -3, 5, 0};
static const int8_t counts8[8 * 2 + 4] = {0, 0, 1, -2, 2, -4, 3, -6, 4, -8, 5, -10, 6, -12, 7, -14};
static const int16_t counts16[8 * 2] = {0, 0, 1000, -2000, 2, -4, 3, -6, 4, -8, 5, -10, 6, -12, 7000, -14000};
static const uint8_t off_split[5] = {0, 1, 2, 3, 0};          /* h0: +x0 -x1; h1: +x2 +x3; h2: -x0 */
static const uint8_t npos3[3] = {1, 2, 0};
static const uint8_t ntap3[3] = {2, 2, 1};
static const int32_t thr3[3] = {12, 5, -11};
static const uint8_t sel_bytes[4] = {0, 1, 2, 0};
static const es_model_t model8 = {.n_inputs = 4, .n_outputs = 2, .counts = ES_COUNTS_I8};
static const es_branch_t flat_split = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_SPLIT,
    .off_t = ES_T_U8, .off = off_split, .ntap = ntap3, .npos_ = npos3, .thr_t = ES_T_I32, .thr = thr3,
    .bits = ES_BITS_BYTES, .L = 2, .K = 2, .sel_t = ES_T_U8, .sel = sel_bytes, .cells = counts8};

/* The same hyperplanes reading a negated copy (~x = -x - 1 from byte 4 on): h0 = x0 - x1 = x0 + ~x1 + 1, so its
 * threshold drops by one (12 - 1 = 11); h2 = -x0 = ~x0 + 1: threshold -11 - 1 = -12. */
static const uint8_t off_neg[5] = {0, 5, 2, 3, 4};
static const int32_t thr_neg[3] = {11, 5, -12};
static const es_branch_t flat_neg = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_NEG, .neg_at = 4,
    .off_t = ES_T_U8, .off = off_neg, .ntap = ntap3, .thr_t = ES_T_I32, .thr = thr_neg,
    .bits = ES_BITS_BYTES, .L = 2, .K = 2, .sel_t = ES_T_U8, .sel = sel_bytes, .cells = counts8};

/* Integer weights: h0 = 2 x0 - 3 x1 = 29 > 28: 1;  h1 = x2 + x3 = 5 > 5: 0;  h2 = -x0 = -10 > -11: 1: the same bits */
static const int8_t wt3[5] = {2, -3, 1, 1, -1};
static const int32_t thr_w[3] = {28, 5, -11};
static const es_branch_t flat_weights = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_WEIGHTS,
    .off_t = ES_T_U8, .off = off_split, .ntap = ntap3, .wt = wt3, .thr_t = ES_T_I32, .thr = thr_w,
    .bits = ES_BITS_BYTES, .L = 2, .K = 2, .sel_t = ES_T_U8, .sel = sel_bytes, .cells = counts8};

/* Packed words: table 0 reads bits 0, 1 (bucket 1), table 1 bits 1, 2 (bucket 0 + 1 * 2 = 2): cells 1 and 6 */
static const uint8_t bat_words[2] = {0, 1};
static const es_branch_t flat_words = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_SPLIT,
    .off_t = ES_T_U8, .off = off_split, .ntap = ntap3, .npos_ = npos3, .thr_t = ES_T_I32, .thr = thr3,
    .bits = ES_BITS_WORDS, .L = 2, .K = 2, .bat_t = ES_T_U8, .bat = bat_words, .cells = counts8};

/* Two thresholds a sum (T = 2): one sum x0 - x1 = 13 compared with 12 (1) and 13 (0) */
static const uint8_t off_t2[2] = {0, 1};
static const int16_t thr_t2[2] = {12, 13};
static const uint8_t sel_t2[2] = {0, 1};
static const es_branch_t flat_shared = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 2, .n_used = 2, .T = 2, .taps_kind = ES_TAPS_SPLIT, .off_t = ES_T_U8,
    .off = off_t2, .taps = 2, .npos = 1, .thr_t = ES_T_I16, .thr = thr_t2, .bits = ES_BITS_BYTES, .L = 1, .K = 2,
    .sel_t = ES_T_U8, .sel = sel_t2, .cells = counts8};

/* int16 counts: cells 1 and 7 hold {1000, -2000} and {7000, -14000} */
static const es_model_t model16 = {.n_inputs = 4, .n_outputs = 2, .counts = ES_COUNTS_I16};
static const es_branch_t flat16 = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_SPLIT,
    .off_t = ES_T_U8, .off = off_split, .ntap = ntap3, .npos_ = npos3, .thr_t = ES_T_I32, .thr = thr3,
    .bits = ES_BITS_BYTES, .L = 2, .K = 2, .sel_t = ES_T_U8, .sel = sel_bytes, .cells = counts16};

/* Shared rows: cells 1 and 7 hold rows 2 and 0 of the book: {5, -1} + {3, 4} = {8, 3} */
static const uint8_t rows8[8] = {1, 2, 1, 1, 1, 1, 1, 0};
static const int8_t book[3 * 2 + 4] = {3, 4, 9, 9, 5, -1};
static const es_model_t model_rows = {.n_inputs = 4, .n_outputs = 2, .counts = ES_COUNTS_I8, .row_t = ES_T_U8, .book = book};
static const es_branch_t flat_rows = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_SPLIT,
    .off_t = ES_T_U8, .off = off_split, .ntap = ntap3, .npos_ = npos3, .thr_t = ES_T_I32, .thr = thr3,
    .bits = ES_BITS_BYTES, .L = 2, .K = 2, .sel_t = ES_T_U8, .sel = sel_bytes, .cells = rows8};

/* 4-bit counts, a byte plane of two classes (nibble = count + 8): cell 1 {3, -5} = 0x3B, cell 7 {-8, 7} = 0xF0;
 * scores = byte lanes - 8 per cell read: {11 + 0, 3 + 15} - 16 = {-5, 2} = {3 - 8, -5 + 7} */
static const uint8_t plane0[8] = {0x88, 0x3B, 0x88, 0x88, 0x88, 0x88, 0x88, 0xF0};
static const uint8_t nib2[2] = {0, 1};
static const es_model_t model4 = {.n_inputs = 4, .n_outputs = 2, .counts = ES_COUNTS_I4, .n_planes = 1,
                                  .plane_t = {ES_T_U8}, .nib = nib2, .bias = 16};
static const es_branch_t flat4 = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_SPLIT,
    .off_t = ES_T_U8, .off = off_split, .ntap = ntap3, .npos_ = npos3, .thr_t = ES_T_I32, .thr = thr3,
    .bits = ES_BITS_BYTES, .L = 2, .K = 2, .sel_t = ES_T_U8, .sel = sel_bytes, .planes = {plane0}, .flush_every = 1};

/* 20 tables of one bit, every cell {7, -8} (0x0F): a byte lane holds 17 cells of 15; the flush every 17 tables keeps
 * class 0's 20 * 15 = 300 from carrying into class 1. scores = {20 * 15, 0} - 8 * 20 = {140, -160} */
static const uint8_t plane_many[40] = {
    0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F,
    0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F};
static const uint8_t sel20[20] = {0};
static const es_model_t model4_many = {.n_inputs = 4, .n_outputs = 2, .counts = ES_COUNTS_I4, .n_planes = 1,
                                       .plane_t = {ES_T_U8}, .nib = nib2, .bias = 160};
static const es_branch_t flat4_many = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .n_used = 3, .T = 1, .taps_kind = ES_TAPS_SPLIT,
    .off_t = ES_T_U8, .off = off_split, .ntap = ntap3, .npos_ = npos3, .thr_t = ES_T_I32, .thr = thr3,
    .bits = ES_BITS_BYTES, .L = 20, .K = 1, .sel_t = ES_T_U8, .sel = sel20, .planes = {plane_many}, .flush_every = 1,
    .flush_within = 17};

/* ---------------------------------------------------------------- a windowed branch: x = {1, 2, 3, 4, 5, 6}, one
 * channel; windows of 3, stride 2, padding 1 (pad value 0): padded {0, 1, 2, 3, 4, 5, 6, 0}, positions at 0, 2, 4:
 * {0,1,2}, {2,3,4}, {4,5,6}. One hyperplane 2 w1 - w2 > 0: 2 - 2 = 0 (0), 6 - 4 = 2 (1), 10 - 6 = 4 (1).
 * One table of one bit: cells {10, 1} (bit 0) and {100, 2} (bit 1).
 *   pool 1: 10 + 100 + 100 = 210, 1 + 2 + 2 = 5;  pool 3 (one read-out, bits OR-ed): 100, 2;
 *   3 regions (a table each): cells (region * 2 + bit): c0 + c3 + c5 = {10, 1} + {30, 3} + {50, 5} = {90, 9} */
static const int8_t x6[6] = {1, 2, 3, 4, 5, 6};
static const uint8_t base3[3] = {0, 2, 4};
static const int8_t fill0[1] = {0};
static const uint8_t runs1[3] = {1, 0, 6};
static const uint8_t off_w[2] = {1, 2};
static const int8_t wt_w[2] = {2, -1};
static const int32_t thr0[1] = {0};
static const uint8_t sel1[1] = {0};
static const int8_t cells_w[2 * 2 + 4] = {10, 1, 100, 2};
static const es_model_t model_w = {.n_inputs = 6, .n_outputs = 2, .counts = ES_COUNTS_I8};
#define WINDOW3 .base_t = ES_T_U8, .base = base3, .padn = 8, .n_fill = 1, .fill = fill0, .run_t = ES_T_U8, \
    .n_runs = 1, .runs = runs1, .P = 1, .n_used = 1, .T = 1, .taps_kind = ES_TAPS_WEIGHTS, .off_t = ES_T_U8, \
    .off = off_w, .taps = 2, .wt = wt_w, .thr_t = ES_T_I32, .thr = thr0, .bits = ES_BITS_BYTES, .L = 1, .K = 1, \
    .sel_t = ES_T_U8, .sel = sel1
static const es_branch_t win_sum = {.n_pos = 3, .n_ro = 3, .pool = 1, WINDOW3, .cells = cells_w};
static const es_branch_t win_pool = {.n_pos = 3, .n_ro = 1, .pool = 3, WINDOW3, .cells = cells_w};
static const uint8_t region3[3] = {0, 2, 4};
static const int8_t cells_r[6 * 2 + 4] = {10, 1, 20, 2, 0, 0, 30, 3, 0, 0, 50, 5};
static const es_branch_t win_regions = {.n_pos = 3, .n_ro = 3, .pool = 1, WINDOW3, .region_t = ES_T_U8, .region = region3,
                                        .cells = cells_r};

/* ---------------------------------------------------------------- the unrolled layout's callbacks, written by hand
 * as the generator would: the flat branch's three hyperplanes into a word that starts all ones (bucket bits of table 0
 * at bits 0-1, table 1 at 2-3), and its two lookups */
static const uint8_t src3[3] = {0, 1, 2};   /* debug: hash bit p at bit p of the word... */
static const uint8_t bat2[2] = {0, 2};      /* ... and table l's bucket from bit bat[l] */
static const es_branch_t flat_unrolled = {
    .n_pos = 1, .n_ro = 1, .pool = 1, .P = 3, .L = 2, .K = 2, .n_words = 1, .n_bucket_words = 1,
    .bat_t = ES_T_U8, .bat = bat2, .src_t = ES_T_U8, .bit_src = src3, .cells = counts8};

static void hand_hash(const int8_t *b, uint32_t *w, int all)
{
    int32_t z;
    uint32_t t, w0 = 0xFFFFFFFFu;
    (void)all;
    z = b[0] - b[1] - 13; t = (uint32_t)z >> 31; w0 &= ~(t << 0); w0 &= ~(t << 3);   /* h0: table 0 bit 0, table 1 bit 1 */
    z = b[2] + b[3] - 6; t = (uint32_t)z >> 31; w0 &= ~(t << 1);                    /* h1: table 0 bit 1 */
    z = -b[0] + 10; t = (uint32_t)z >> 31; w0 &= ~(t << 2);                         /* h2: table 1 bit 0 */
    w[0] = w0;
}

static void hand_read(const uint32_t *w, size_t row0, es_sk_acc_t *s, int32_t *scores)
{
    (void)scores;
    es_sketch_cell(&model8, &flat_unrolled, s, row0 + 0u, (unsigned)(w[0] >> 0) & 3u);
    es_sketch_cell(&model8, &flat_unrolled, s, row0 + 4u, (unsigned)(w[0] >> 2) & 3u);
}

int main(void)
{
    int32_t s[2];
    uint8_t bits[16];
    uint16_t buckets[8], *kp;
    uint8_t *bp;

    predict(&model8, &flat_split, x4, s, NULL, NULL);
    check("flat, positive then negative taps, byte bits", s, 8, -16);
    predict(&model8, &flat_neg, x4, s, NULL, NULL);
    check("flat, negated copy", s, 8, -16);
    predict(&model8, &flat_weights, x4, s, NULL, NULL);
    check("flat, integer weights", s, 8, -16);
    predict(&model8, &flat_words, x4, s, NULL, NULL);
    check("flat, packed words", s, 1 + 6, -2 - 12);
    predict(&model8, &flat_shared, x4, s, NULL, NULL);
    check("one sum, two thresholds", s, 1, -2);
    predict(&model16, &flat16, x4, s, NULL, NULL);
    check("int16 counts", s, 8000, -16000);
    predict(&model_rows, &flat_rows, x4, s, NULL, NULL);
    check("shared rows", s, 8, 3);
    predict(&model4, &flat4, x4, s, NULL, NULL);
    check("4-bit counts", s, -5, 2);
    predict(&model4_many, &flat4_many, x4, s, NULL, NULL);
    check("4-bit counts, 20 tables (a flush after 17)", s, 140, -160);
    predict(&model8, &flat_unrolled, x4, s, hand_hash, hand_read);
    check("generated-style hash and lookup", s, 8, -16);

    predict(&model_w, &win_sum, x6, s, NULL, NULL);
    check("window 3, stride 2, padding 1", s, 210, 5);
    predict(&model_w, &win_pool, x6, s, NULL, NULL);
    check("... bits OR-pooled over 3 positions", s, 100, 2);
    predict(&model_w, &win_regions, x6, s, NULL, NULL);
    check("... 3 regions", s, 90, 9);

    /* debug: every hash bit and bucket */
    bp = bits;
    kp = buckets;
    es_sketch_debug_branch(&model8, &flat_neg, x4, &bp, &kp, NULL);
    s[0] = (int32_t)(bits[0] * 100 + bits[1] * 10 + bits[2]);
    s[1] = (int32_t)(buckets[0] * 10 + buckets[1]);
    check("debug bits 1,0,1 and buckets 1,3", s, 101, 13);
    bp = bits;
    kp = buckets;
    es_sketch_debug_branch(&model8, &flat_unrolled, x4, &bp, &kp, hand_hash);
    s[0] = (int32_t)((bp - bits) * 1000 + bits[0] * 100 + bits[1] * 10 + bits[2]);
    s[1] = (int32_t)((kp - buckets) * 100 + buckets[0] * 10 + buckets[1]);
    check("debug of a generated hash: 3 bits 1,0,1, 2 buckets 1,3", s, 3101, 213);
    bp = bits;
    kp = buckets;
    es_sketch_debug_branch(&model_w, &win_pool, x6, &bp, &kp, NULL);
    s[0] = (int32_t)(bits[0] * 100 + bits[1] * 10 + bits[2]);
    s[1] = (int32_t)buckets[0];
    check("windowed debug: bits 0,1,1, pooled bucket 1", s, 11, 1);

    {   /* the shared helpers */
        static const float scale[2] = {0.5f, 2.0f};
        static const int32_t zero[2] = {1, -3};
        static const float bias[2] = {1.0f, -1.0f};
        const float xf[4] = {1.25f, 3.0f, -1000.0f, 1000.0f};
        int8_t q[4];
        float out[2];
        int32_t sc[2] = {4, -2};
        es_sketch_quantize(xf, q, 4, scale, zero, 2);
        /* rint(1.25 / 0.5 + 1) = rint(3.5) = 4 (half to even);  rint(3 / 2 - 3) = rint(-1.5) = -2;
         * -2000 + 1 saturates to -128;  500 - 3 to 127 */
        s[0] = q[0] * 1000 + q[1];
        s[1] = q[2] * 1000 + q[3];
        check("es_sketch_quantize (half to even, saturated)", s, 4 * 1000 - 2, -128 * 1000 + 127);
        es_sketch_dequantize(sc, out, 2, scale, bias);
        s[0] = (int32_t)(out[0] * 4);
        s[1] = (int32_t)(out[1] * 4);
        check("es_sketch_dequantize", s, 12, -20);
        sc[0] = 7;
        sc[1] = 7;
        s[0] = es_sketch_argmax(sc, 2);
        sc[1] = 8;
        s[1] = es_sketch_argmax(sc, 2);
        check("es_sketch_argmax (first on ties)", s, 0, 1);
    }
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
