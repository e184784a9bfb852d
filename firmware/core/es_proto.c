/* edgesketch serial protocol v2: COBS framing and CRC-16/CCITT-FALSE. See docs/protocol.md and es_proto.h.
 * The host twin is edgesketch/protocol.py: the receiver below and protocol.FrameDecoder give the same frames and
 * the same NAK reasons for every byte stream (tests/test_protocol.py checks it; firmware/fuzz/ fuzzes this file).
 *
 * Receiver rules, in this order, when a 0x00 delimiter arrives:
 *   - before the first 0x00 ever seen every byte is noise and is dropped (no NAK);
 *   - an empty frame (two 0x00 in a row) is idle filler: no frame, no NAK;
 *   - the encoded frame outgrew rx->wire (more than ES_PROTO_MAX_WIRE bytes)  -> ES_NAK_TOO_LONG, seq 0;
 *   - invalid COBS (a code byte points past the end of the frame)             -> ES_NAK_COBS, seq 0;
 *   - valid COBS that decodes to more than ES_PROTO_MAX_RAW bytes              -> ES_NAK_TOO_LONG, seq 0;
 *   - fewer than 4 decoded bytes                                               -> ES_NAK_SHORT, seq = raw[1] if there is one;
 *   - CRC mismatch                                                             -> ES_NAK_CRC, seq = raw[1];
 *   - otherwise a frame: cmd = raw[0], seq = raw[1], body = raw[2 .. n-2), len = n - 4.
 * Every malformed frame gives exactly one ES_RX_ERROR and the receiver waits for the next frame. Body length,
 * command and batch-count checks (ES_NAK_LENGTH, ES_NAK_UNKNOWN, ES_NAK_BATCH) belong to the dispatcher. */
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

/* Decode a frame already checked by cobs_decoded_len (whose result fits out). */
static void cobs_decode(const uint8_t *w, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0, k;
    while (i < n) {
        size_t code = w[i++];
        for (k = 1; k < code; k++) out[o++] = w[i++];
        if (code != 0xFFu && i < n) out[o++] = 0;
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
        if (rx->n < sizeof rx->wire) rx->wire[rx->n++] = byte;
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
        len = cobs_decoded_len(rx->wire, n);
        if (len == (size_t)-1) {
            reason = ES_NAK_COBS;
        } else if (len > sizeof rx->raw) {
            reason = ES_NAK_TOO_LONG;
        } else {
            cobs_decode(rx->wire, n, rx->raw);
            if (len >= 2) seq = rx->raw[1];
            if (len < 4) {
                reason = ES_NAK_SHORT;
            } else {
                crc = (uint16_t)(rx->raw[len - 2] | ((uint16_t)rx->raw[len - 1] << 8));
                if (crc != es_crc16(rx->raw, len - 2)) {
                    reason = ES_NAK_CRC;
                } else if (out != NULL) {
                    out->cmd = rx->raw[0];
                    out->seq = seq;
                    out->body = rx->raw + 2;
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

size_t es_tx_encode(uint8_t cmd, uint8_t seq, const uint8_t *body, uint16_t len, uint8_t *out, size_t cap)
{
    uint8_t hdr[2];
    uint16_t crc;
    size_t total, i, o, code_at;
    uint8_t code;

    if (out == NULL || len > ES_PROTO_MAX_BODY || (body == NULL && len > 0)) return 0;
    hdr[0] = cmd;
    hdr[1] = seq;
    crc = crc_update(es_crc16(hdr, 2), body, len);       /* body may be NULL only when len == 0 */
    total = (size_t)len + 4;

    /* COBS: a block is a code byte then up to 254 non-zero bytes; a block of 254 is not followed by a zero.
     * No trailing empty block is written after a final full block (the shorter, standard form). */
    if (cap < 1) return 0;
    code_at = 0;
    o = 1;
    code = 1;
    for (i = 0; i < total; i++) {
        uint8_t b = raw_byte(i, cmd, seq, body, len, crc);
        if (b == 0) {
            out[code_at] = code;
            if (o >= cap) return 0;
            code_at = o++;
            code = 1;
        } else {
            if (o >= cap) return 0;
            out[o++] = b;
            code++;
            if (code == 0xFFu) {
                out[code_at] = code;
                code = 1;
                if (i + 1 < total) {
                    if (o >= cap) return 0;
                    code_at = o++;
                } else {
                    code_at = (size_t)-1;                     /* ended exactly on a full block */
                }
            }
        }
    }
    if (code_at != (size_t)-1) out[code_at] = code;
    if (o >= cap) return 0;
    out[o++] = 0;
    return o;
}
