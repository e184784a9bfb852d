/* The portable firmware core: command dispatch for docs/protocol.md (HELLO, INFER, BATCH, DEBUG, STACK, RESET, LOAD,
 * RUN, STREAM, NAK and the BOOT frame), with the cost of each es_predict_q call (and of each stream push) measured by
 * the BSP's counter and its peak stack by painting. C99, no malloc, static buffers only.
 *
 * RAM: the device holds one frame and one input. The receiver decodes each frame in place in its one buffer
 * (es_rx.buf), every reply body is built in that same buffer where the request's body was (ES_OUT) and is COBS-encoded
 * while it is sent, a few bytes at a time (es_tx_stream); es_input holds the input LOAD frames fill, so inputs of any
 * size (up to 65535 bytes) run with frames of ES_PROTO_MAX_BODY bytes. */
#include "es_app.h"
#include "es_bsp.h"
#include "es_model.h"
#include "es_proto.h"

#if ES_N_INPUTS < 1 || ES_N_INPUTS > 65535
#error "ES_N_INPUTS must be 1..65535 (LOAD offsets and HELLO's n_inputs are 16 bits)"
#endif
#if ES_PROTO_MAX_WIRE - 2 < ES_PROTO_MAX_BODY
#error "the receiver's buffer must hold a reply body at offset 2"
#endif
#if 4 + 4 * ES_N_OUTPUTS > ES_PROTO_MAX_BODY
#error "an INFER reply (u32 cost, i32[ES_N_OUTPUTS]) must fit ES_PROTO_MAX_BODY"
#endif
/* DEBUG reports every hash bit and bucket of the model (es_debug_q), or as many of the first ones as fit a reply:
 * models generated before windows define neither count, and then report one set of hyperplanes and tables. */
#ifndef ES_N_DEBUG_BITS
#define ES_N_DEBUG_BITS ES_N_HASHBITS
#define ES_N_DEBUG_BUCKETS ES_N_TABLES
#endif
#define ES_DEBUG_BITS_SENT (ES_N_DEBUG_BITS < 8 * (ES_PROTO_MAX_BODY / 2) ? ES_N_DEBUG_BITS : 8 * (ES_PROTO_MAX_BODY / 2))
#define ES_DEBUG_BUCKETS_ROOM ((ES_PROTO_MAX_BODY - 4 - (ES_DEBUG_BITS_SENT + 7) / 8) / 2)
#define ES_DEBUG_BUCKETS_SENT (ES_N_DEBUG_BUCKETS < ES_DEBUG_BUCKETS_ROOM ? ES_N_DEBUG_BUCKETS : ES_DEBUG_BUCKETS_ROOM)
/* The RAM DEBUG may take for es_debug_q's arrays (a board setting: the Uno's 2 KB cannot hold a windowed model's every
 * position); beyond it the firmware has no DEBUG and answers it with NAK "unknown command". */
#ifndef ES_DEBUG_RAM
#define ES_DEBUG_RAM 65535
#endif
#define ES_HAS_DEBUG (ES_N_DEBUG_BITS + 2 * ES_N_DEBUG_BUCKETS <= ES_DEBUG_RAM)
/* STREAM: a model generated with a hop (edgesketch export --hop) defines ES_STREAM_HOP and has es_stream_push_q; the
 * firmware then holds one stream (docs/protocol.md, STREAM). Without it STREAM is an unknown command. */
#ifdef ES_STREAM_HOP
#define ES_HAS_STREAM 1
#define ES_STREAM_REPLY (13 + 4 * ES_N_OUTPUTS)   /* u8 sid, u32 have, u32 at, u32 cost, i32 scores[] */
#if ES_STREAM_REPLY > ES_PROTO_MAX_BODY || 5 + ES_STREAM_CHANNELS > ES_PROTO_MAX_BODY
#error "a STREAM reply (and a frame of one sample) must fit ES_PROTO_MAX_BODY"
#endif
#else
#define ES_HAS_STREAM 0
#define ES_STREAM_HOP 0
#define ES_STREAM_LEN 0
#define ES_STREAM_CHANNELS 0
#endif

#define ES_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ES_REPLY_REC (4 + 4 * ES_N_OUTPUTS)   /* one result in an INFER or BATCH reply */
/* 0 when one input and its count byte do not fit a frame: BATCH is then always NAKed and the host sends LOAD + RUN */
#ifndef ES_MAX_BATCH
#define ES_MAX_BATCH ES_MIN(255, ES_MIN((ES_PROTO_MAX_BODY - 1) / ES_N_INPUTS, (ES_PROTO_MAX_BODY - 1) / ES_REPLY_REC))
#endif
#if ES_MAX_BATCH < 0 || ES_MAX_BATCH > 255
#error "ES_MAX_BATCH must be 0..255 (both the BATCH request and its reply must fit ES_PROTO_MAX_BODY)"
#endif

#define ES_COST_VOID 0xFFFFFFFFu  /* reported when the counter wrapped during the call */

/* Peak stack: ES_STACK_PAINT bytes below the stack pointer are painted before each call and scanned after it (0: no
 * painting). The window never reaches below the linker symbol ES_STACK_FLOOR (bare-metal builds: _ebss, the end of
 * .bss); without one (Arduino) it is a fixed window below sp. */
#ifndef ES_STACK_PAINT
#define ES_STACK_PAINT 1024u
#endif
#if ES_STACK_PAINT % 4 != 0 || ES_STACK_PAINT > 65532
#error "ES_STACK_PAINT must be a multiple of 4 below 65536"
#endif
#define ES_STACK_FILL 0xA5A5A5A5u
/* ES_SP(v): v = the stack pointer of the function it is written in (an asm statement: no call, no frame of its own) */
#if defined(__GNUC__) && (defined(__arm__) || defined(__aarch64__))
#define ES_SP(v) __asm__ volatile("mov %0, sp" : "=r"(v))
#elif defined(__GNUC__) && defined(__riscv)
#define ES_SP(v) __asm__ volatile("mv %0, sp" : "=r"(v))
#elif defined(__GNUC__) && defined(__x86_64__)
#define ES_SP(v) __asm__ volatile("mov %%rsp, %0" : "=r"(v))
#elif defined(__GNUC__) && defined(__i386__)
#define ES_SP(v) __asm__ volatile("mov %%esp, %0" : "=r"(v))
#elif defined(__GNUC__) && defined(__XTENSA__)
#define ES_SP(v) __asm__ volatile("mov %0, a1" : "=r"(v))
#elif defined(__GNUC__) && defined(__AVR__)
#define ES_SP(v) __asm__ volatile("in %A0, __SP_L__\n\tin %B0, __SP_H__" : "=r"(v))
#else
#define ES_SP(v) ((v) = es_sp_below())   /* portable: a local of a callee, a few bytes below the caller's sp */
#define ES_SP_PORTABLE 1
#endif
#ifdef ES_STACK_FLOOR
extern uint32_t ES_STACK_FLOOR[];
#endif

typedef int (*es_predict_fn)(const int8_t *x, int32_t *scores);

static es_rx_t es_rx;
#define ES_OUT (es_rx.buf + 2)             /* reply bodies: built where the request's body was (es_proto.h) */
static int8_t es_input[ES_N_INPUTS];       /* the input LOAD frames fill (docs/protocol.md) */
static uint8_t es_xfer;                    /* the transfer es_input belongs to */
static uint16_t es_have;                   /* bytes of it held, in order: complete when ES_N_INPUTS */
static int32_t es_scores[ES_N_OUTPUTS];
#if ES_HAS_DEBUG
static uint8_t es_bits[ES_N_DEBUG_BITS];
static uint16_t es_buckets[ES_N_DEBUG_BUCKETS];
#endif
static uint32_t es_null_cost;              /* counter cost of calling es_null_predict, rounded like a real cost */
static volatile es_predict_fn es_target;   /* volatile: the compiler can neither inline nor specialise the call */
static uint32_t es_stack_peak;             /* deepest stack an es_predict_q call wrote, bytes below sp at the call */
static uint8_t es_stack_full;              /* some call overwrote its whole painted window: the peak is a lower bound */
#if ES_HAS_STREAM
typedef int (*es_push_fn)(es_stream_t *s, const int8_t *x, int32_t *scores);
static es_stream_t es_stream;              /* the one stream (docs/protocol.md, STREAM) */
static uint8_t es_sid;                     /* its id */
static uint32_t es_sbase, es_shave;        /* the position of its first sample, and after its last one */
static uint32_t es_sat;                    /* the position after the sample that made es_sscores ready (0: none yet) */
static uint16_t es_suntil;                 /* samples until its next scores */
static uint32_t es_shop_cost, es_scost;    /* the pushes since the last scores, counted; and those of es_sscores' hop */
static int32_t es_sscores[ES_N_OUTPUTS];   /* its latest scores */
static uint32_t es_push_null_cost;         /* counter cost of pushing through es_push_target with es_null_push */
static volatile es_push_fn es_push_target; /* volatile: the call is neither inlined nor specialised */
static int es_push_rc;
#endif

static void es_put_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void es_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void es_sink(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    es_bsp_tx(p, n);
}

/* Send the reply body ES_OUT[0 .. len), encoding it on the way out. */
static void es_send(uint8_t cmd, uint8_t seq, uint16_t len)
{
    (void)es_tx_stream(cmd, seq, ES_OUT, len, es_sink, NULL);
}

static void es_nak(uint8_t seq, uint8_t reason)
{
    ES_OUT[0] = reason;
    es_send(ES_MSG_NAK, seq, 1);
}

/* ---------------------------------------------------------------- the cost of one call */
static int es_null_predict(const int8_t *x, int32_t *scores)
{
    (void)x;
    (void)scores;
    return ES_OK;
}

/* Counter units -> cost units, rounded to nearest (exact when one instruction spans >= 2 counter units). When DEN is
 * a power of two, delta = q * DEN + r is scaled in two 32-bit parts, the same value modulo 2^32 as the 64-bit form
 * without its helpers (__muldi3 and __udivdi3 are missing from Debian's xtensa-lx106 libgcc, and large on AVR). */
#if ES_COUNTER_SCALE_NUM > 0xFFFFFFFF / ES_COUNTER_SCALE_DEN
#error "ES_COUNTER_SCALE_NUM * ES_COUNTER_SCALE_DEN must fit 32 bits"
#endif
static uint32_t es_scale(uint32_t delta)
{
#if ES_COUNTER_SCALE_NUM == 1 && ES_COUNTER_SCALE_DEN == 1
    return delta;
#elif (ES_COUNTER_SCALE_DEN & (ES_COUNTER_SCALE_DEN - 1)) == 0
    const uint32_t den = ES_COUNTER_SCALE_DEN, num = ES_COUNTER_SCALE_NUM;
    return (delta / den) * num + ((delta % den) * num + den / 2u) / den;
#else
    return (uint32_t)(((uint64_t)delta * ES_COUNTER_SCALE_NUM + ES_COUNTER_SCALE_DEN / 2) / ES_COUNTER_SCALE_DEN);
#endif
}

#ifdef ES_SP_PORTABLE
typedef uintptr_t (*es_sp_fn)(void);
static uintptr_t es_sp_local(void)
{
    volatile uint32_t here = 0;
    return (uintptr_t)&here + here;
}
static volatile es_sp_fn es_sp_below = es_sp_local;   /* called through a volatile pointer: never inlined */
#endif

/* Lowest address of the window painted below sp: sp - ES_STACK_PAINT, never below ES_STACK_FLOOR or address 0. */
static uintptr_t es_stack_low(uintptr_t sp)
{
    uintptr_t lo = sp > ES_STACK_PAINT ? sp - ES_STACK_PAINT : 0u;
#ifdef ES_STACK_FLOOR
    uintptr_t bottom = ((uintptr_t)ES_STACK_FLOOR + 3u) & ~(uintptr_t)3u;
    if (lo < bottom)
        lo = bottom < sp ? bottom : sp;
#endif
    return lo;
}

/* Run es_target(x, scores) between two counter reads. Both the real model and es_null_predict go through this same
 * code, so their difference is what the model's body costs beyond an empty function. Outside the two reads, with
 * interrupts masked (es_bsp_counter_start on bare metal), the stack below sp is painted before the call and scanned
 * from its far end after it: *stack = bytes from sp at the call to the deepest overwritten word, *full = 1 if even the
 * far end was overwritten (*stack is then a lower bound). Painting and scanning are written here, not in a callee,
 * whose own frame would lie in the window; volatile accesses keep the compiler from dropping or moving them. */
static uint32_t es_measure(const int8_t *x, int32_t *scores, uint32_t *stack, int *full, int paint)
{
    es_predict_fn fn;
    uint32_t t0, t1;
    uintptr_t sp, lo, a;
    int wrapped;

    es_bsp_counter_start();
    ES_SP(sp);
    sp &= ~(uintptr_t)3u;
    lo = ES_STACK_PAINT != 0 && paint ? es_stack_low(sp) : sp;
    for (a = lo; a < sp; a += 4u)
        *(volatile uint32_t *)a = ES_STACK_FILL;
    fn = es_target;
    t0 = es_bsp_counter_read();
    (void)fn(x, scores);
    t1 = es_bsp_counter_read();
    for (a = lo; a < sp && *(volatile uint32_t *)a == ES_STACK_FILL; a += 4u) {
    }
    wrapped = es_bsp_counter_stop();
    *stack = (uint32_t)(sp - a);
    *full = ES_STACK_PAINT != 0 && paint && a == lo;
    return wrapped ? ES_COST_VOID : es_scale(t1 - t0);
}

/* cost = counter around one es_predict_q call minus the same around an empty function (documented in
 * docs/protocol.md as "the counter around one es_predict_q call"; the call and return of the empty function,
 * 2 instructions on ARM and RISC-V, are not counted). */
static uint32_t es_predict_cost(const int8_t *x, int32_t *scores)
{
    uint32_t c, stack;
    int full;
    es_target = es_predict_q;
    c = es_measure(x, scores, &stack, &full, 1);
    if (stack > es_stack_peak)
        es_stack_peak = stack;
    es_stack_full |= (uint8_t)full;
    if (c == ES_COST_VOID)
        return c;
    return c > es_null_cost ? c - es_null_cost : 0u;
}

/* ---------------------------------------------------------------- replies */
static uint16_t es_hello_body(void)
{
    static const uint8_t id[8] = ES_MODEL_ID_BYTES;
    static const char core[] = ES_CORE_NAME;
    uint8_t *p = ES_OUT;
    size_t i, n = sizeof core - 1;

    if (n > 255)
        n = 255;
    if (n > ES_PROTO_MAX_BODY - 22u)   /* the fixed fields, the name's length byte, max_body and the stream: 22 bytes */
        n = ES_PROTO_MAX_BODY - 22u;
    *p++ = ES_PROTO_VERSION;
    for (i = 0; i < sizeof id; i++)
        *p++ = id[i];
    es_put_u16(p, ES_N_INPUTS);
    es_put_u16(p + 2, ES_N_OUTPUTS);
    es_put_u16(p + 4, ES_N_TABLES);
    p[6] = (uint8_t)ES_N_BITS;
    es_put_u16(p + 7, ES_N_HASHBITS);
    p[9] = (uint8_t)ES_COUNTER_KIND;
    es_put_u16(p + 10, ES_MAX_BATCH);
    p[12] = (uint8_t)n;
    p += 13;
    for (i = 0; i < n; i++)
        *p++ = (uint8_t)core[i];
    es_put_u16(p, ES_PROTO_MAX_BODY);
    es_put_u16(p + 2, ES_STREAM_HOP);          /* version 4: the stream (0: none) */
    es_put_u16(p + 4, ES_STREAM_LEN);
    es_put_u16(p + 6, ES_STREAM_CHANNELS);
    p += 8;
    return (uint16_t)(p - ES_OUT);
}

/* One result record (u32 cost, i32 scores[]) at dst, written after the call: dst may overlap x. */
static void es_infer_one(const int8_t *x, uint8_t *dst)
{
    uint32_t i, cost = es_predict_cost(x, es_scores);
    es_put_u32(dst, cost);
    for (i = 0; i < ES_N_OUTPUTS; i++)
        es_put_u32(dst + 4 + 4 * i, (uint32_t)es_scores[i]);
}

#if ES_HAS_DEBUG
static void es_do_debug(uint8_t seq, const int8_t *x)
{
    uint32_t i, nb = (ES_DEBUG_BITS_SENT + 7) / 8;
    uint8_t *p = ES_OUT;

    (void)es_debug_q(x, es_bits, es_buckets);   /* x (maybe in ES_OUT) is read before the reply is written */
    es_put_u16(p, ES_DEBUG_BITS_SENT);
    p += 2;
    for (i = 0; i < nb; i++)
        p[i] = 0;
    for (i = 0; i < ES_DEBUG_BITS_SENT; i++)
        if (es_bits[i])
            p[i / 8] |= (uint8_t)(1u << (i % 8));
    p += nb;
    es_put_u16(p, ES_DEBUG_BUCKETS_SENT);
    p += 2;
    for (i = 0; i < ES_DEBUG_BUCKETS_SENT; i++)
        es_put_u16(p + 2 * i, es_buckets[i]);
    p += 2 * ES_DEBUG_BUCKETS_SENT;
    es_send(ES_CMD_DEBUG | ES_REPLY, seq, (uint16_t)(p - ES_OUT));
}
#endif

/* STACK reply: u16 peak, u16 window, u8 full (docs/protocol.md) */
static uint16_t es_stack_body(void)
{
    es_put_u16(ES_OUT, es_stack_peak);           /* <= ES_STACK_PAINT < 65536 */
    es_put_u16(ES_OUT + 2, ES_STACK_PAINT);
    ES_OUT[4] = es_stack_full;
    return 5;
}

/* BATCH, in place (body is ES_OUT): result record i replaces input row i. Records no longer than rows go first to
 * last (record i ends before row i + 1 starts), longer ones last to first (record i starts after row i - 1 ends), so
 * no row is overwritten before it has run. */
static void es_do_batch(uint8_t seq, const uint8_t *body, uint16_t len)
{
    uint32_t i, k, n;
    if (len < 1) {
        es_nak(seq, ES_NAK_LENGTH);
        return;
    }
    n = body[0];
    if (n < 1 || n > ES_MAX_BATCH) {
        es_nak(seq, ES_NAK_BATCH);
        return;
    }
    if (len != 1u + n * ES_N_INPUTS) {
        es_nak(seq, ES_NAK_LENGTH);
        return;
    }
    for (k = 0; k < n; k++) {
        i = ES_REPLY_REC <= ES_N_INPUTS ? k : n - 1 - k;
        es_infer_one((const int8_t *)(body + 1 + i * ES_N_INPUTS), ES_OUT + 1 + i * ES_REPLY_REC);
    }
    ES_OUT[0] = (uint8_t)n;
    es_send(ES_CMD_BATCH | ES_REPLY, seq, (uint16_t)(1 + n * ES_REPLY_REC));
}

/* LOAD: u8 xfer, u16 offset, data[n >= 1] into es_input (docs/protocol.md). In this order: a piece of the current
 * transfer already held (a resent or duplicated frame) is acknowledged again and changes nothing; offset 0 starts
 * transfer xfer; the current transfer's next piece (offset == have) is appended; anything else is out of order. A
 * piece that would pass ES_N_INPUTS is too much input. No NAK changes the state. Reply: u8 xfer, u16 have. */
static void es_do_load(uint8_t seq, const uint8_t *body, uint16_t len)
{
    uint32_t off, n, i;
    uint8_t xfer;
    if (len < 4) {
        es_nak(seq, ES_NAK_LENGTH);
        return;
    }
    xfer = body[0];
    off = (uint32_t)body[1] | ((uint32_t)body[2] << 8);
    n = (uint32_t)len - 3u;
    if (!(xfer == es_xfer && off + n <= es_have)) {
        if (off != 0 && !(xfer == es_xfer && off == es_have)) {
            es_nak(seq, ES_NAK_ORDER);
            return;
        }
        if (off + n > ES_N_INPUTS) {
            es_nak(seq, ES_NAK_TOO_MUCH);
            return;
        }
        for (i = 0; i < n; i++)
            es_input[off + i] = (int8_t)body[3 + i];
        es_xfer = xfer;
        es_have = (uint16_t)(off + n);
    }
    ES_OUT[0] = es_xfer;
    es_put_u16(ES_OUT + 1, es_have);
    es_send(ES_CMD_LOAD | ES_REPLY, seq, 3);
}

/* The loaded input is complete (and, for RUN, belongs to transfer xfer). */
static int es_loaded(void)
{
    return es_have == ES_N_INPUTS;
}

#if ES_HAS_STREAM
/* ---------------------------------------------------------------- STREAM */
static int es_null_push(es_stream_t *s, const int8_t *x, int32_t *scores)
{
    (void)s;
    (void)x;
    (void)scores;
    return ES_OK;
}

/* es_measure's target for a push: the same code around es_null_push calibrates it */
static int es_push_one(const int8_t *x, int32_t *scores)
{
    es_push_rc = es_push_target(&es_stream, x, scores);
    return es_push_rc;
}

/* One push, counted (no stack painting): the scores go into es_sscores when ready. Returns the cost. */
static uint32_t es_push_cost(const int8_t *x)
{
    uint32_t c, stack;
    int full;
    es_push_target = es_stream_push_q;
    es_target = es_push_one;
    c = es_measure(x, es_sscores, &stack, &full, 0);
    if (c == ES_COST_VOID)
        return c;
    return c > es_push_null_cost ? c - es_push_null_cost : 0u;
}

/* A fresh stream sid whose first sample has position pos. */
static void es_stream_start(uint8_t sid, uint32_t pos)
{
    uint32_t i;
    (void)es_stream_init(&es_stream);
    es_sid = sid;
    es_sbase = es_shave = pos;
    es_sat = 0;
    es_suntil = ES_STREAM_LEN;
    es_shop_cost = es_scost = 0;
    for (i = 0; i < ES_N_OUTPUTS; i++)
        es_sscores[i] = 0;
}

/* STREAM: u8 sid, u32 pos, k >= 1 samples of ES_STREAM_CHANNELS int8 (docs/protocol.md). In this order: samples of the
 * stream held that were all pushed already (a resent or duplicated frame) change nothing; another sid starts that
 * stream at pos; the stream held takes its next samples (pos == have); anything else is out of order. A frame that
 * would pass the next scores, or position 2^32 - 1, is too much input. No NAK changes the state. Reply: u8 sid, u32
 * have, u32 at, u32 cost, i32 scores[]: the latest scores, the position after the sample that made them ready and the
 * counter over the pushes of their hop. */
static void es_do_stream(uint8_t seq, const uint8_t *body, uint16_t len)
{
    uint32_t pos, k, i, c;
    uint8_t sid;
    int fresh;
    if (len < 5u + ES_STREAM_CHANNELS || (len - 5u) % ES_STREAM_CHANNELS != 0) {
        es_nak(seq, ES_NAK_LENGTH);
        return;
    }
    sid = body[0];
    pos = (uint32_t)body[1] | (uint32_t)body[2] << 8 | (uint32_t)body[3] << 16 | (uint32_t)body[4] << 24;
    k = (uint32_t)(len - 5u) / ES_STREAM_CHANNELS;
    if (!(sid == es_sid && es_sbase <= pos && pos <= es_shave && k <= es_shave - pos)) {
        fresh = sid != es_sid;
        if (!fresh && pos != es_shave) {
            es_nak(seq, ES_NAK_ORDER);
            return;
        }
        if (k > (fresh ? (uint32_t)ES_STREAM_LEN : (uint32_t)es_suntil) || k > 0xFFFFFFFFu - pos) {
            es_nak(seq, ES_NAK_TOO_MUCH);
            return;
        }
        if (fresh)
            es_stream_start(sid, pos);
        for (i = 0; i < k; i++) {   /* body (in ES_OUT's buffer) is read before the reply is written */
            c = es_push_cost((const int8_t *)(body + 5u + i * ES_STREAM_CHANNELS));
            es_shop_cost = c == ES_COST_VOID || es_shop_cost == ES_COST_VOID || c > ES_COST_VOID - 1u - es_shop_cost
                               ? ES_COST_VOID : es_shop_cost + c;
            es_shave++;
            if (--es_suntil == 0) {   /* the push wrote es_sscores */
                es_suntil = ES_STREAM_HOP;
                es_sat = es_shave;
                es_scost = es_shop_cost;
                es_shop_cost = 0;
            }
        }
    }
    ES_OUT[0] = es_sid;
    es_put_u32(ES_OUT + 1, es_shave);
    es_put_u32(ES_OUT + 5, es_sat);
    es_put_u32(ES_OUT + 9, es_scost);
    for (i = 0; i < ES_N_OUTPUTS; i++)
        es_put_u32(ES_OUT + 13 + 4 * i, (uint32_t)es_sscores[i]);
    es_send(ES_CMD_STREAM | ES_REPLY, seq, ES_STREAM_REPLY);
}
#endif

static void es_dispatch(const es_frame_t *f)
{
    switch (f->cmd) {
    case ES_CMD_HELLO:
        if (f->len != 0)
            break;
        es_send(ES_CMD_HELLO | ES_REPLY, f->seq, es_hello_body());
        return;
    case ES_CMD_INFER:
        if (f->len != ES_N_INPUTS)
            break;
        es_infer_one((const int8_t *)f->body, ES_OUT);
        es_send(ES_CMD_INFER | ES_REPLY, f->seq, ES_REPLY_REC);
        return;
    case ES_CMD_BATCH:
        es_do_batch(f->seq, f->body, f->len);
        return;
    case ES_CMD_LOAD:
        es_do_load(f->seq, f->body, f->len);
        return;
    case ES_CMD_RUN:
        if (f->len != 1)
            break;
        if (f->body[0] != es_xfer || !es_loaded()) {
            es_nak(f->seq, ES_NAK_INCOMPLETE);
            return;
        }
        es_infer_one(es_input, ES_OUT);
        es_send(ES_CMD_RUN | ES_REPLY, f->seq, ES_REPLY_REC);
        return;
    case ES_CMD_DEBUG:
#if ES_HAS_DEBUG
        if (f->len == 0) {                       /* the loaded input */
            if (!es_loaded()) {
                es_nak(f->seq, ES_NAK_INCOMPLETE);
                return;
            }
            es_do_debug(f->seq, es_input);
            return;
        }
        if (f->len != ES_N_INPUTS)
            break;
        es_do_debug(f->seq, (const int8_t *)f->body);
#else
        es_nak(f->seq, ES_NAK_UNKNOWN);
#endif
        return;
    case ES_CMD_STREAM:
#if ES_HAS_STREAM
        es_do_stream(f->seq, f->body, f->len);
#else
        es_nak(f->seq, ES_NAK_UNKNOWN);
#endif
        return;
    case ES_CMD_STACK:
        if (f->len != 0)
            break;
        es_send(ES_CMD_STACK | ES_REPLY, f->seq, es_stack_body());
        return;
    case ES_CMD_RESET:
        if (f->len != 0)
            break;
        es_send(ES_CMD_RESET | ES_REPLY, f->seq, 0);
        es_bsp_tx_flush();
        es_bsp_reset();
        return;
    default:
        es_nak(f->seq, ES_NAK_UNKNOWN);
        return;
    }
    es_nak(f->seq, ES_NAK_LENGTH);   /* a known command with a body of the wrong length */
}

/* ---------------------------------------------------------------- entry points */
void es_app_start(void)
{
    uint32_t stack;
    int i, full;
    es_rx_init(&es_rx);
    es_xfer = 0;
    es_have = 0;
    es_stack_peak = 0;
    es_stack_full = 0;
    es_target = es_null_predict;
    es_null_cost = ES_COST_VOID;
    for (i = 0; i < 3; i++) {   /* the smallest of three: the first call may pay for cold caches on real boards */
        uint32_t c = es_measure(es_input, es_scores, &stack, &full, 1);
        if (c < es_null_cost)
            es_null_cost = c;
    }
    if (es_null_cost == ES_COST_VOID)
        es_null_cost = 0;
#if ES_HAS_STREAM
    es_stream_start(0, 0);                     /* stream 0 at position 0, nothing pushed */
    es_target = es_push_one;
    es_push_target = es_null_push;
    es_push_null_cost = ES_COST_VOID;
    for (i = 0; i < 3; i++) {
        uint32_t c = es_measure(es_input, es_scores, &stack, &full, 0);
        if (c < es_push_null_cost)
            es_push_null_cost = c;
    }
    if (es_push_null_cost == ES_COST_VOID)
        es_push_null_cost = 0;
#endif
    es_send(ES_MSG_BOOT, 0, es_hello_body());
}

void es_app_poll(void)
{
    uint8_t byte, reason;
    es_frame_t f;

    while (es_bsp_rx(&byte)) {
        int r = es_rx_push(&es_rx, byte, &f, &reason);
        if (r == ES_RX_FRAME)
            es_dispatch(&f);
        else if (r == ES_RX_ERROR)
            es_nak(f.seq, reason);
    }
}
