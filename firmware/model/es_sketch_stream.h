/* edgesketch runtime: streaming. A window of len samples (channels values each) hops over a live stream, hop samples
 * at a time; the scores of every window equal es_predict_q of it (edgesketch.sketch.stream_scores, int_scores) bit for
 * bit. Included by a model generated with a hop, after es_sketch_run.h; inlined into its {p}_stream_* entry points,
 * where the descriptors below are constants. C99, no malloc, no floats.
 *
 * With one read-out region a branch's scores are a sum over its read-outs, and when the window moves by whole
 * read-outs (hop = shift * stride * pool) a read-out that reads no padding reads the same samples in every window that
 * holds it. So each such interior read-out of the stream is hashed and looked up once, when its last sample arrives
 * (es_sketch_stream_step), and its scores are added to a running sum (acc); the read-outs that leave the window are
 * subtracted: their contributions are kept in a ring (keep mode: count x C values of ES_SK_KEEP_T a branch) or
 * hashed again from the samples at each hop (recompute mode: no RAM beyond a window of samples, twice the hashing).
 * Read-outs that read padding (their padding moves with the window) and flat branches (one read-out over the whole
 * window) are recomputed at every hop from the samples (es_sketch_stream_edges, es_sketch_stream_flat).
 *
 * The state (a generated {p}_stream_t, no malloc):
 *   ring   the last `ring` samples, each written twice (at slot i and slot i + ring), so that any ring samples in a row
 *          lie in one piece of memory whatever the slot: hashing reads them like an input. ring = span (the samples of
 *          one read-out) when nothing needs a whole window, else len. A few bytes of slack follow (DSP word reads).
 *   acc    int32[C]: the sum of the interior read-outs computed and not yet dropped
 *   keep   keep mode: the contributions of a window's interior read-outs, count x C per branch
 *   ctr    uint16: [0] the ring slot of the next sample, [1] samples until the next scores; per streamed branch three:
 *          samples until its next read-out completes, that read-out's slot in keep, its place in a hop
 *
 * A model defines before including this file: ES_SK_KEEP_T (int16_t or int32_t: one read-out's scores) and
 * ES_SK_STREAM_EDGE (bytes of the largest edge buffer, 0: no padding).
 */
#ifndef ES_SKETCH_STREAM_H
#define ES_SKETCH_STREAM_H
#include "es_sketch_run.h"

#ifndef ES_SK_KEEP_T
#define ES_SK_KEEP_T int32_t
#endif
#ifndef ES_SK_STREAM_EDGE
#define ES_SK_STREAM_EDGE 0
#endif

/* The stream of a model. */
typedef struct {
    uint16_t len;              /* samples a window holds (T) */
    uint16_t hop;              /* samples between two scores after the first window */
    uint16_t ring;             /* samples the ring holds (each twice) */
    uint16_t channels;         /* values a sample holds */
} es_sk_stream_t;

/* How one branch streams (edgesketch.sketch.StreamBranch): a window's read-outs 0 .. first - 1 read left padding,
 * first .. first + count - 1 none, right_at .. n_ro - 1 right padding. Offsets are in bytes of the window's padded
 * grid (pad bytes of padding, then the window's samples, then padding). */
typedef struct {
    uint16_t first, count;     /* the interior read-outs of a window */
    uint16_t shift;            /* read-outs a hop moves the window by */
    uint16_t every;            /* samples between two read-outs (stride * pool) */
    uint16_t span;             /* samples one read-out reads, first to last */
    uint16_t wait0;            /* samples pushed when the stream's first interior read-out completes */
    uint8_t keep;              /* 1: contributions kept (count x C); 0: the leaving ones recomputed at every hop */
    uint16_t n_ro;             /* read-outs of a window */
    uint16_t right_at;         /* first read-out reading right padding (n_ro: none) */
    uint16_t pad;              /* bytes of padding before the window's first sample */
    uint16_t step;             /* bytes between two read-outs: every * channels */
    uint16_t left_len;         /* bytes of padded grid the left edge read-outs read, from 0 */
    uint16_t right_from;       /* ... the right edge read-outs read, from this offset */
    uint16_t right_len;        /* ... this many */
    uint16_t win;              /* bytes of a window: len * channels */
} es_sk_stream_branch_t;

/* One read-out of a branch alone, its first position's window at src: out[c] = what it adds to score c. Generated per
 * branch (a thin wrapper of es_sketch_one, so that every caller shares one copy of its hashing and lookup). */
typedef void (*es_sk_one_fn)(const int8_t *src, int32_t *out);

/* The scores one read-out adds (region 0), its first position's window at src: hashed (its pool block OR-ed), its
 * tables looked up into accumulators of its own, then read out of them as int32. */
ES_INLINE void es_sketch_one(const es_model_t *m, const es_branch_t *b, const int8_t *src, es_sk_hash_fn hash,
                             es_sk_read_fn read, int32_t *out)
{
    es_sk_acc_t s;
    es_sk_bits_t h;
#define ES_SK_ZERO_(c) s.a[c] = 0;
    ES_SK_EACH_CLASS(ES_SK_ZERO_);
#undef ES_SK_ZERO_
#if ES_DSP
    {
        es_sk_acc_t *sp = &s;
#define ES_SK_Z_(j) sp->e[j] = sp->o[j] = 0;
        ES_SK_EACH_(ES_SK_LANEW, ES_SK_Z_);
#undef ES_SK_Z_
    }
#endif
    {
        es_sk_acc_t *sp = &s;
#define ES_SK_Z_(j) sp->lo[j] = sp->hi[j] = 0;
        ES_SK_EACH_(ES_SK_PLANES, ES_SK_Z_);
#undef ES_SK_Z_
    }
    es_sketch_readout_bits(m, b, src, 0u, hash, &h, 0);
    es_sketch_tables(m, b, &h, 0u, &s, out, read);   /* flushes inside a read-out only move 4-bit lanes into s.a */
    if (m->counts == ES_COUNTS_I4) {
        es_sk_flush(m, &s, out);
#define ES_SK_OUT_(c) out[c] = (int32_t)s.a[c] - 8 * (int32_t)b->L;
        ES_SK_EACH_CLASS(ES_SK_OUT_);
#undef ES_SK_OUT_
        return;
    }
#if ES_DSP
    if (m->lanes) {   /* one read-out fits a 16-bit lane (the model's lanes are on only then) */
#define ES_SK_OUT_(c) out[c] = es_sk_lane(&s, c);
        ES_SK_EACH_CLASS(ES_SK_OUT_);
#undef ES_SK_OUT_
        return;
    }
#endif
#define ES_SK_OUT_(c) out[c] = (int32_t)s.a[c];
    ES_SK_EACH_CLASS(ES_SK_OUT_);
#undef ES_SK_OUT_
}

/* A fresh stream: nothing held, the first scores after len samples. ctr has 2 + 3 x (streamed branches) entries. */
ES_INLINE void es_sketch_stream_init(const es_sk_stream_t *d, int8_t *ring, unsigned ring_bytes, int32_t *acc,
                                     ES_SK_KEEP_T *keep, unsigned n_keep, uint16_t *ctr)
{
    unsigned i;
    for (i = 0; i < ring_bytes; ++i) ring[i] = 0;
    for (i = 0; i < ES_SK_OUTPUTS; ++i) acc[i] = 0;
    for (i = 0; i < n_keep; ++i) keep[i] = 0;
    ctr[0] = 0;
    ctr[1] = d->len;
}

/* A streamed branch's counters (three, from bc) at the start of a stream. */
ES_INLINE void es_sketch_stream_init_branch(const es_sk_stream_branch_t *sb, uint16_t *bc)
{
    bc[0] = sb->wait0;
    bc[1] = 0;
    bc[2] = 0;
}

/* Write one sample into the ring, twice, and advance its slot. */
ES_INLINE void es_sketch_stream_put(const es_sk_stream_t *d, int8_t *ring, uint16_t *ctr, const int8_t *x)
{
    unsigned c;
    int8_t *p = ring + (size_t)ctr[0] * d->channels;
    int8_t *q = p + (size_t)d->ring * d->channels;
    for (c = 0; c < d->channels; ++c) p[c] = q[c] = x[c];
    if (++ctr[0] == d->ring) ctr[0] = 0;
}

/* After a sample was put: if it completes the branch's next interior read-out (and some window holds that read-out),
 * hash and look it up from the ring and add it to acc; in keep mode its slot's previous contribution (the read-out
 * leaving the window) is subtracted and replaced. head: the ring slot of the next sample (ctr[0]). */
ES_INLINE void es_sketch_stream_step(const es_sk_stream_t *d, const es_sk_stream_branch_t *sb, const int8_t *ring,
                                     unsigned head, uint16_t *bc, ES_SK_KEEP_T *keep, int32_t *acc, es_sk_one_fn one)
{
    int32_t v[ES_SK_OUTPUTS];
    unsigned slot, start, wanted;
    if (--bc[0]) return;
    bc[0] = sb->every;
    wanted = sb->count >= sb->shift || bc[2] < sb->count;   /* a hop longer than the interior skips some read-outs */
    slot = sb->count >= sb->shift ? bc[1] : bc[2];
    if (++bc[2] == sb->shift) bc[2] = 0;
    if (!wanted) return;
    if (sb->count >= sb->shift && ++bc[1] == sb->count) bc[1] = 0;
    start = head >= sb->span ? head - sb->span : head + d->ring - sb->span;   /* its first sample's slot */
    one(ring + (size_t)start * d->channels, v);
    if (sb->keep) {
        ES_SK_KEEP_T *k = keep + (size_t)slot * ES_SK_OUTPUTS;
#define ES_SK_SWAP_(c) acc[c] += v[c] - (int32_t)k[c]; k[c] = (ES_SK_KEEP_T)v[c];
        ES_SK_EACH_CLASS(ES_SK_SWAP_);
#undef ES_SK_SWAP_
    } else {
#define ES_SK_ADD_(c) acc[c] += v[c];
        ES_SK_EACH_CLASS(ES_SK_ADD_);
#undef ES_SK_ADD_
    }
    (void)keep;
}

/* Count one sample towards the next scores: 1 when they are due now (the window filled, then every hop). */
ES_INLINE int es_sketch_stream_due(const es_sk_stream_t *d, uint16_t *ctr)
{
    if (--ctr[1]) return 0;
    ctr[1] = d->hop;
    return 1;
}

/* The window that just filled, in one piece: its first sample is the oldest in the ring (the ring holds len samples
 * whenever something reads a whole window). */
ES_INLINE const int8_t *es_sketch_stream_window(const es_sk_stream_t *d, const int8_t *ring, const uint16_t *ctr)
{
    return ring + (size_t)ctr[0] * d->channels;
}

/* scores = acc: the interior read-outs of the window that just filled. */
ES_INLINE void es_sketch_stream_scores(const int32_t *acc, int32_t *scores)
{
#define ES_SK_CP_(c) scores[c] = acc[c];
    ES_SK_EACH_CLASS(ES_SK_CP_);
#undef ES_SK_CP_
}

/* scores += what one read-out adds, its first position's window at src. */
ES_INLINE void es_sketch_stream_add(const int8_t *src, int32_t *scores, es_sk_one_fn one)
{
    int32_t v[ES_SK_OUTPUTS];
    one(src, v);
#define ES_SK_ADD_(c) scores[c] += v[c];
    ES_SK_EACH_CLASS(ES_SK_ADD_);
#undef ES_SK_ADD_
}

/* byte i of the window's padded grid: a sample of the window, or the pad value of its channel */
ES_INLINE int8_t es_sketch_stream_padded(const es_branch_t *b, const es_sk_stream_branch_t *sb, const int8_t *win,
                                         unsigned i)
{
    return i >= sb->pad && i - sb->pad < sb->win ? win[i - sb->pad] : ES_RD_I8(b->fill + i % b->n_fill);
}

/* The read-outs of the window win that read padding, recomputed: each edge's part of the padded grid is built in a
 * buffer on the stack (ES_SK_STREAM_EDGE bytes), and its read-outs read it. */
ES_INLINE void es_sketch_stream_edges(const es_branch_t *b, const es_sk_stream_branch_t *sb, const int8_t *win,
                                      int32_t *scores, es_sk_one_fn one)
{
    uint32_t buf[ES_SK_STREAM_EDGE > 0 ? (ES_SK_STREAM_EDGE + 3) / 4 : 1];
    int8_t *e = (int8_t *)buf;
    unsigned i, r;
    if (sb->first) {
        for (i = 0; i < sb->left_len; ++i) e[i] = es_sketch_stream_padded(b, sb, win, i);
        for (r = 0; r < sb->first; ++r) es_sketch_stream_add(e + (size_t)r * sb->step, scores, one);
    }
    if (sb->right_at < sb->n_ro) {
        for (i = 0; i < sb->right_len; ++i) e[i] = es_sketch_stream_padded(b, sb, win, sb->right_from + i);
        for (r = sb->right_at; r < sb->n_ro; ++r)
            es_sketch_stream_add(e + ((size_t)r * sb->step - sb->right_from), scores, one);
    }
}

/* Recompute mode, after the scores of the window win: subtract the interior read-outs that will have left the next
 * window (the first min(count, shift) of this one), hashed again from its samples. */
ES_INLINE void es_sketch_stream_drop(const es_sk_stream_branch_t *sb, const int8_t *win, int32_t *acc, es_sk_one_fn one)
{
    int32_t v[ES_SK_OUTPUTS];
    unsigned i, n = sb->count < sb->shift ? sb->count : sb->shift;
    const int8_t *src = win + ((size_t)sb->first * sb->step - sb->pad);
    for (i = 0; i < n; ++i, src += sb->step) {
        one(src, v);
#define ES_SK_SUB_(c) acc[c] -= v[c];
        ES_SK_EACH_CLASS(ES_SK_SUB_);
#undef ES_SK_SUB_
    }
}

#endif /* ES_SKETCH_STREAM_H */
