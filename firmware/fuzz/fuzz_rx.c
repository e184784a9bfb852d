/* libFuzzer target for the frame receiver and encoder (firmware/core/es_proto.c), built by firmware/fuzz/run.sh:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I firmware/core firmware/fuzz/fuzz_rx.c firmware/core/es_proto.c
 * Input byte 0 is a flags byte: bit 0 starts the receiver synced (as if a 0x00 had been seen), bits 1-2 pick the
 * model shape the dispatch-like checks use. The rest is fed to es_rx_push one byte at a time. Every property
 * below aborts on failure, so a property violation counts as a crash, like an ASan/UBSan report:
 *   - errors only at a delimiter, reasons only CRC / TOO_LONG / COBS / SHORT, at most one event per delimiter;
 *   - a frame's body lies inside rx->buf (decoded in place, at buf + 2) and its length is at most ES_PROTO_MAX_RAW - 4;
 *   - every frame re-encoded with es_tx_encode decodes to the same cmd, seq and body in a fresh receiver,
 *     es_tx_stream hands the sink the same bytes in chunks of 1..ES_TX_CHUNK, and es_tx_encode into a buffer one
 *     byte short returns 0 without writing past it (ASan checks the bound);
 *   - the dispatch-like checks (the rules of edgesketch.protocol.request_error, LOAD, RUN and STREAM included) and the
 *     reply a device would build for the frame (a NAK or a reply of the right size) round-trip through the receiver
 *     too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_proto.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static const uint16_t shapes[4][4] = {   /* n_inputs, n_outputs, max_batch (0: inputs come in LOAD frames), stream
                                           channels (0: no stream) */
    {64, 10, 8, 1}, {1, 1, 255, 0}, {1500, 10, 0, 3}, {16, 3, 40, 2},
};

/* The NAK reason a device gives a well-framed request, 0 if valid (same rules as protocol.request_error). */
static uint8_t request_error(const es_frame_t *f, uint16_t n_inputs, uint16_t max_batch, uint16_t channels)
{
    switch (f->cmd) {
    case ES_CMD_STREAM:                       /* u8 sid, u32 pos, whole samples, at least one */
        if (channels == 0) return ES_NAK_UNKNOWN;
        return f->len >= 5u + channels && (f->len - 5u) % channels == 0 ? 0 : ES_NAK_LENGTH;
    case ES_CMD_HELLO:
    case ES_CMD_RESET:
        return f->len == 0 ? 0 : ES_NAK_LENGTH;
    case ES_CMD_INFER:
        return f->len == n_inputs ? 0 : ES_NAK_LENGTH;
    case ES_CMD_DEBUG:                        /* an input, or nothing: the loaded input */
        return f->len == n_inputs || f->len == 0 ? 0 : ES_NAK_LENGTH;
    case ES_CMD_LOAD:                         /* u8 xfer, u16 offset, at least one byte */
        return f->len >= 4 ? 0 : ES_NAK_LENGTH;
    case ES_CMD_RUN:                          /* u8 xfer */
        return f->len == 1 ? 0 : ES_NAK_LENGTH;
    case ES_CMD_BATCH:
        if (f->len < 1) return ES_NAK_LENGTH;
        if (f->body[0] < 1 || f->body[0] > max_batch) return ES_NAK_BATCH;
        return (size_t)f->len == 1u + (size_t)f->body[0] * n_inputs ? 0 : ES_NAK_LENGTH;
    default:
        return ES_NAK_UNKNOWN;
    }
}

/* Decode `wire` (one encoded frame with its delimiter) in a fresh synced receiver; expect exactly one frame. */
static void expect_roundtrip(const uint8_t *wire, size_t n, uint8_t cmd, uint8_t seq, const uint8_t *body,
                             uint16_t len)
{
    es_rx_t *rx = malloc(sizeof *rx);
    es_frame_t f;
    uint8_t reason = 0;
    size_t i;
    int frames = 0;
    CHECK(rx != NULL);
    es_rx_init(rx);
    CHECK(es_rx_push(rx, 0, &f, &reason) == ES_RX_NONE);
    for (i = 0; i < n; i++) {
        int r = es_rx_push(rx, wire[i], &f, &reason);
        CHECK(r != ES_RX_ERROR);
        if (r == ES_RX_FRAME) {
            CHECK(i == n - 1);
            CHECK(f.cmd == cmd && f.seq == seq && f.len == len);
            CHECK(len == 0 || memcmp(f.body, body, len) == 0);
            frames++;
        }
    }
    CHECK(frames == 1);
    free(rx);
}

typedef struct {            /* what es_tx_stream handed its sink */
    uint8_t b[ES_PROTO_MAX_WIRE];
    size_t n, calls;
} streamed_t;

static void stream_sink(void *ctx, const uint8_t *p, size_t n)
{
    streamed_t *s = (streamed_t *)ctx;
    CHECK(n >= 1 && n <= ES_TX_CHUNK && s->n + n <= sizeof s->b);
    memcpy(s->b + s->n, p, n);
    s->n += n;
    s->calls++;
}

static void check_encode(uint8_t cmd, uint8_t seq, const uint8_t *body, uint16_t len)
{
    uint8_t *wire = malloc(ES_PROTO_MAX_WIRE), *shortbuf;
    streamed_t *st = malloc(sizeof *st);
    size_t n, m;
    CHECK(wire != NULL && st != NULL);
    n = es_tx_encode(cmd, seq, body, len, wire, ES_PROTO_MAX_WIRE);
    CHECK(n >= 6 && n <= ES_PROTO_MAX_WIRE && wire[n - 1] == 0);
    CHECK(memchr(wire, 0, n - 1) == NULL);
    expect_roundtrip(wire, n, cmd, seq, body, len);
    st->n = st->calls = 0;
    CHECK(es_tx_stream(cmd, seq, body, len, stream_sink, st) == n);
    CHECK(st->n == n && memcmp(st->b, wire, n) == 0 && st->calls == (n + ES_TX_CHUNK - 1) / ES_TX_CHUNK);
    free(st);
    shortbuf = malloc(n - 1);                  /* exactly one byte too small: ASan flags any write past it */
    CHECK(shortbuf != NULL);
    m = es_tx_encode(cmd, seq, body, len, shortbuf, n - 1);
    CHECK(m == 0);
    free(shortbuf);
    free(wire);
}

/* What a device would send back for frame f: a NAK, or a reply body of the size docs/protocol.md gives. */
static void check_dispatch(const es_frame_t *f, uint8_t flags)
{
    const uint16_t *s = shapes[(flags >> 1) & 3];
    uint8_t reply[ES_PROTO_MAX_BODY];
    uint16_t rlen = 0;
    uint8_t nak = request_error(f, s[0], s[2], s[3]);
    if (nak != 0) {
        reply[0] = nak;
        check_encode(ES_MSG_NAK, f->seq, reply, 1);
        return;
    }
    switch (f->cmd) {
    case ES_CMD_INFER:
    case ES_CMD_RUN:
        rlen = (uint16_t)(4u + 4u * s[1]);
        break;
    case ES_CMD_LOAD:                           /* u8 xfer, u16 have */
        rlen = 3;
        break;
    case ES_CMD_STREAM:                         /* u8 sid, u32 have, u32 at, u32 cost, i32 scores[] */
        rlen = (uint16_t)(13u + 4u * s[1]);
        break;
    case ES_CMD_BATCH: {
        size_t want = 1u + (size_t)f->body[0] * (4u + 4u * s[1]);
        if (want > ES_PROTO_MAX_BODY) {        /* a batch whose reply cannot fit: a device must reject it */
            reply[0] = ES_NAK_BATCH;
            check_encode(ES_MSG_NAK, f->seq, reply, 1);
            return;
        }
        rlen = (uint16_t)want;
        break;
    }
    default:
        rlen = (uint16_t)(f->len < 64 ? f->len : 64);
        break;
    }
    memset(reply, 0, rlen);                     /* zeros: the worst case for COBS */
    if (rlen > 0 && f->len > 0) memcpy(reply, f->body, f->len < rlen ? f->len : rlen);
    check_encode((uint8_t)(f->cmd | ES_REPLY), f->seq, reply, rlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    es_rx_t *rx;
    es_frame_t f;
    uint8_t reason, flags;
    size_t i;

    if (size == 0) return 0;
    flags = data[0];
    rx = malloc(sizeof *rx);
    CHECK(rx != NULL);
    es_rx_init(rx);
    if (flags & 1) CHECK(es_rx_push(rx, 0, &f, &reason) == ES_RX_NONE);
    for (i = 1; i < size; i++) {
        int r;
        memset(&f, 0xA5, sizeof f);
        reason = 0xEE;
        r = es_rx_push(rx, data[i], &f, &reason);
        CHECK(r == ES_RX_NONE || r == ES_RX_FRAME || r == ES_RX_ERROR);
        CHECK(r == ES_RX_NONE || data[i] == 0);
        if (r == ES_RX_ERROR) {
            CHECK(reason == ES_NAK_CRC || reason == ES_NAK_TOO_LONG || reason == ES_NAK_COBS || reason == ES_NAK_SHORT);
            CHECK(reason == ES_NAK_CRC || reason == ES_NAK_SHORT || f.seq == 0);
        } else if (r == ES_RX_FRAME) {
            CHECK(f.len <= ES_PROTO_MAX_RAW - 4);
            CHECK(f.body == rx->buf + 2);
            if (f.len <= ES_PROTO_MAX_BODY) check_encode(f.cmd, f.seq, f.body, f.len);
            check_dispatch(&f, flags);
        }
        CHECK(rx->n <= sizeof rx->buf);
    }
    free(rx);
    return 0;
}
