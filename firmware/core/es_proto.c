/* edgesketch serial protocol v4: COBS framing and CRC-16/CCITT-FALSE. See docs/protocol.md and es_proto.h.
 * The host twin is edgesketch/protocol.py: the receiver below and protocol.FrameDecoder give the same frames and
 * the same NAK reasons for every byte stream (tests/test_protocol.py checks it; firmware/fuzz/ fuzzes this file).
 *
 * Receiver rules, in this order, when a 0x00 delimiter arrives:
 *   - before the first 0x00 ever seen every byte is noise and is dropped (no NAK);
 *   - an empty frame (two 0x00 in a row) is idle filler: no frame, no NAK;
 *   - the encoded frame outgrew rx->buf (more than ES_PROTO_MAX_WIRE bytes)   -> ES_NAK_TOO_LONG, seq 0;
 *   - invalid COBS (a code byte points past the end of the frame)             -> ES_NAK_COBS, seq 0;
 *   - valid COBS that decodes to more than ES_PROTO_MAX_RAW bytes              -> ES_NAK_TOO_LONG, seq 0;
 *   - fewer than 4 decoded bytes                                               -> ES_NAK_SHORT, seq = raw[1] if there is one;
 *     (the frame is decoded in place: raw[] is rx->buf once the COBS checks have passed)
 *   - CRC mismatch                                                             -> ES_NAK_CRC, seq = raw[1];
 *   - otherwise a frame: cmd = raw[0], seq = raw[1], body = raw[2 .. n-2), len = n - 4.
 * Every malformed frame gives exactly one ES_RX_ERROR and the receiver waits for the next frame. Body length,
 * command, batch-count and input-transfer checks (ES_NAK_LENGTH, ES_NAK_UNKNOWN, ES_NAK_BATCH, ES_NAK_ORDER,
 * ES_NAK_TOO_MUCH, ES_NAK_INCOMPLETE) belong to the dispatcher (es_app.c). */
#include "es_proto.h"

static uint16_t crc_update(uint16_t crc, const uint8_t *p, size_t n)
{
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= (uint16_t)((uint16_t)p[i] << 8);
        for (b = 0; b < 8; b++)
            crc = (crc & 0x8000u) ? (uint16_t)(((unsigned)crc << 1) ^ 0x1021u) : (uint16_t)((unsigned)crc << 1);
    }
    return crc;
}

uint16_t es_crc16(const uint8_t *p, size_t n)
{
    return p == NULL ? 0xFFFFu : crc_update(0xFFFFu, p, n);
}

void es_rx_init(es_rx_t *rx)
{
    if (rx == NULL) return;
    rx->n = 0;
    rx->synced = 0;
    rx->overflow = 0;
}

/* Decoded length of a zero-free COBS frame, or (size_t)-1 if a code byte points past its end. */
static size_t cobs_decoded_len(const uint8_t *w, size_t n)
{
    size_t i = 0, len = 0;
    while (i < n) {
        size_t code = w[i];
        if (code == 0 || code > n - i) return (size_t)-1;   /* block of code-1 bytes must fit after the code */
        len += code - 1;
        i += code;
        if (code != 0xFFu && i < n) len += 1;                /* an implicit zero between blocks */
    }
    return len;
}

/* Decode, in place, a frame already checked by cobs_decoded_len. A block of code c takes c encoded bytes and gives at
 * most c decoded ones, so the write position o never passes the read position i: o <= i when a code byte is read (into
 * a local, before anything is written there) and o < i while a block's bytes are copied. A forward copy is safe. */
static void cobs_decode_in_place(uint8_t *w, size_t n)
{
    size_t i = 0, o = 0, k;
    while (i < n) {
        size_t code = w[i++];
        for (k = 1; k < code; k++) w[o++] = w[i++];
        if (code != 0xFFu && i < n) w[o++] = 0;
    }
}

int es_rx_push(es_rx_t *rx, uint8_t byte, es_frame_t *out, uint8_t *nak_reason)
{
    size_t n, len;
    uint8_t reason = 0, seq = 0;
    uint16_t crc;

    if (rx == NULL) return ES_RX_NONE;
    if (byte != 0) {
        if (!rx->synced) return ES_RX_NONE;                  /* noise before the first delimiter */
        if (rx->n < sizeof rx->buf) rx->buf[rx->n++] = byte;
        else rx->overflow = 1;                               /* too long: drop the rest, NAK at the delimiter */
        return ES_RX_NONE;
    }

    /* a delimiter */
    n = rx->n;
    rx->n = 0;
    if (!rx->synced) {
        rx->synced = 1;
        rx->overflow = 0;
        return ES_RX_NONE;
    }
    if (rx->overflow) {
        rx->overflow = 0;
        reason = ES_NAK_TOO_LONG;
    } else if (n == 0) {
        return ES_RX_NONE;                                    /* idle filler */
    } else {
        len = cobs_decoded_len(rx->buf, n);
        if (len == (size_t)-1) {
            reason = ES_NAK_COBS;
        } else if (len > ES_PROTO_MAX_RAW) {
            reason = ES_NAK_TOO_LONG;
        } else {
            cobs_decode_in_place(rx->buf, n);
            if (len >= 2) seq = rx->buf[1];
            if (len < 4) {
                reason = ES_NAK_SHORT;
            } else {
                crc = (uint16_t)(rx->buf[len - 2] | ((uint16_t)rx->buf[len - 1] << 8));
                if (crc != es_crc16(rx->buf, len - 2)) {
                    reason = ES_NAK_CRC;
                } else if (out != NULL) {
                    out->cmd = rx->buf[0];
                    out->seq = seq;
                    out->body = rx->buf + 2;
                    out->len = (uint16_t)(len - 4);
                    return ES_RX_FRAME;
                } else {
                    return ES_RX_NONE;
                }
            }
        }
    }
    if (nak_reason != NULL) *nak_reason = reason;
    if (out != NULL) {
        out->cmd = 0;
        out->seq = seq;
        out->body = NULL;
        out->len = 0;
    }
    return ES_RX_ERROR;
}

/* The raw frame (cmd, seq, body, crc lo, crc hi) seen one byte at a time, so no raw copy is needed. */
static uint8_t raw_byte(size_t i, uint8_t cmd, uint8_t seq, const uint8_t *body, uint16_t len, uint16_t crc)
{
    if (i == 0) return cmd;
    if (i == 1) return seq;
    if (i < (size_t)len + 2) return body[i - 2];
    return (i == (size_t)len + 2) ? (uint8_t)(crc & 0xFFu) : (uint8_t)(crc >> 8);
}

typedef struct {            /* the chunk es_tx_stream fills before each call of the sink */
    uint8_t b[ES_TX_CHUNK];
    size_t n, total;
    es_tx_sink_fn sink;
    void *ctx;
} tx_chunk_t;

static void tx_put(tx_chunk_t *c, uint8_t byte)
{
    if (c->n == sizeof c->b) {
        c->sink(c->ctx, c->b, c->n);
        c->n = 0;
    }
    c->b[c->n++] = byte;
    c->total++;
}

size_t es_tx_stream(uint8_t cmd, uint8_t seq, const uint8_t *body, uint16_t len, es_tx_sink_fn sink, void *ctx)
{
    uint8_t hdr[2];
    uint16_t crc;
    size_t total, i, j, k;
    tx_chunk_t c;

    if (sink == NULL || len > ES_PROTO_MAX_BODY || (body == NULL && len > 0)) return 0;
    hdr[0] = cmd;
    hdr[1] = seq;
    crc = crc_update(es_crc16(hdr, 2), body, len);       /* body may be NULL only when len == 0 */
    total = (size_t)len + 4;
    c.n = c.total = 0;
    c.sink = sink;
    c.ctx = ctx;

    /* COBS, one block at a time: a code byte, then the block's up to 254 non-zero bytes (looked ahead in the raw
     * frame, which is why no encoded copy is needed). A block of 254 is not followed by an implied zero, and no empty
     * block is written after a final full one (the shorter, standard form); a zero at the very end gives a final
     * empty block (code 1). */
    i = 0;
    for (;;) {
        j = i;
        while (j < total && j - i < 254u && raw_byte(j, cmd, seq, body, len, crc) != 0) j++;
        tx_put(&c, (uint8_t)(j - i + 1));
        for (k = i; k < j; k++) tx_put(&c, raw_byte(k, cmd, seq, body, len, crc));
        if (j - i == 254u) {                                  /* a full block: the group goes on, no zero skipped */
            i = j;
            if (i == total) break;
        } else {
            if (j == total) break;
            i = j + 1;                                        /* skip the zero the next block's code implies */
        }
    }
    tx_put(&c, 0);                                            /* the delimiter */
    sink(ctx, c.b, c.n);
    return c.total;
}

typedef struct {            /* es_tx_encode's sink: a bounded copy */
    uint8_t *out;
    size_t cap, n;
    int overflow;
} tx_buf_t;

static void buf_sink(void *ctx, const uint8_t *p, size_t n)
{
    tx_buf_t *t = (tx_buf_t *)ctx;
    size_t i;
    for (i = 0; i < n; i++) {
        if (t->n >= t->cap) {
            t->overflow = 1;
            return;
        }
        t->out[t->n++] = p[i];
    }
}

size_t es_tx_encode(uint8_t cmd, uint8_t seq, const uint8_t *body, uint16_t len, uint8_t *out, size_t cap)
{
    tx_buf_t t;
    size_t n;
    if (out == NULL) return 0;
    t.out = out;
    t.cap = cap;
    t.n = 0;
    t.overflow = 0;
    n = es_tx_stream(cmd, seq, body, len, buf_sink, &t);
    return (t.overflow || n != t.n) ? 0 : n;
}
