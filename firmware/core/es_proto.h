/* edgesketch serial protocol v4: framing only (COBS + CRC-16/CCITT-FALSE), no I/O. See docs/protocol.md.
 * The host twin is edgesketch/protocol.py. C99, no malloc; fuzzed in a host build (firmware/fuzz/). */
#ifndef ES_PROTO_H
#define ES_PROTO_H
#include <stddef.h>
#include <stdint.h>

#define ES_PROTO_VERSION   4
/* The most body bytes one frame may carry, either way: 1024 unless the board's toml sets less (boards with little RAM:
 * the receiver's one buffer, which es_app.c also builds its replies in, is ES_PROTO_MAX_BODY + 8 bytes of .bss, and
 * an input larger than a frame arrives in several LOAD frames). HELLO reports it (docs/protocol.md). */
#ifndef ES_PROTO_MAX_BODY
#define ES_PROTO_MAX_BODY  1024
#endif
#if ES_PROTO_MAX_BODY < 32 || ES_PROTO_MAX_BODY > 1024
#error "ES_PROTO_MAX_BODY must be 32..1024 (1024 is the host's limit)"
#endif
#define ES_PROTO_MAX_RAW   (ES_PROTO_MAX_BODY + 6)               /* cmd, seq, body, crc16, 2 spare */
#define ES_PROTO_MAX_WIRE  (ES_PROTO_MAX_RAW + ES_PROTO_MAX_RAW / 254 + 2)  /* COBS overhead + delimiter */

enum { ES_CMD_HELLO = 0x01, ES_CMD_INFER = 0x02, ES_CMD_BATCH = 0x03, ES_CMD_DEBUG = 0x04, ES_CMD_RESET = 0x05,
       ES_CMD_STACK = 0x06, ES_CMD_LOAD = 0x07, ES_CMD_RUN = 0x08, ES_CMD_STREAM = 0x09,
       ES_REPLY = 0x80, ES_MSG_BOOT = 0xB0,
       ES_MSG_NAK = 0x7F };
enum { ES_NAK_CRC = 1, ES_NAK_LENGTH = 2, ES_NAK_UNKNOWN = 3, ES_NAK_TOO_LONG = 4, ES_NAK_COBS = 5,
       ES_NAK_BATCH = 6, ES_NAK_SHORT = 7, ES_NAK_ORDER = 8, ES_NAK_TOO_MUCH = 9, ES_NAK_INCOMPLETE = 10 };
#define ES_NAK_LAST ES_NAK_INCOMPLETE

typedef struct {            /* one decoded, CRC-checked frame; body points into the receiver's buffer (buf + 2) */
    uint8_t cmd;
    uint8_t seq;
    const uint8_t *body;
    uint16_t len;
} es_frame_t;

typedef struct {            /* receiver state: caller-owned, no hidden globals */
    uint8_t buf[ES_PROTO_MAX_WIRE];  /* the encoded frame, then (decoded in place) the raw one: cmd, seq, body, crc */
    size_t n;               /* bytes of the current encoded frame */
    uint8_t synced;         /* 0 until the first 0x00: bytes before it are noise */
    uint8_t overflow;       /* the current frame outgrew the buffer: NAK it at its delimiter */
} es_rx_t;
/* Between two es_rx_push calls the caller may use buf as scratch (es_app.c builds its replies at buf + 2, where the
 * request's body was): a frame's bytes are only written there again once the next byte is pushed. */

/* Where an encoder's output goes, a few bytes at a time (es_tx_stream). */
typedef void (*es_tx_sink_fn)(void *ctx, const uint8_t *p, size_t n);
#ifndef ES_TX_CHUNK
#define ES_TX_CHUNK 32      /* bytes es_tx_stream collects (on its stack) before each call of the sink */
#endif
#if ES_TX_CHUNK < 1 || ES_TX_CHUNK > 256
#error "ES_TX_CHUNK must be 1..256"
#endif

enum { ES_RX_NONE = 0, ES_RX_FRAME = 1, ES_RX_ERROR = 2 };

uint16_t es_crc16(const uint8_t *p, size_t n);
void es_rx_init(es_rx_t *rx);
/* Feed one received byte. Returns ES_RX_FRAME with *out filled, ES_RX_ERROR with *nak_reason and out->seq
 * (0 if unknown) filled, or ES_RX_NONE. Never reads or writes outside rx, out and nak_reason. */
int es_rx_push(es_rx_t *rx, uint8_t byte, es_frame_t *out, uint8_t *nak_reason);
/* Encode cmd, seq and body (COBS, then 0x00) and hand the bytes to sink in chunks of at most ES_TX_CHUNK: no
 * encoded copy of the frame is kept. Returns the bytes sent, 0 (nothing sent) if len > ES_PROTO_MAX_BODY. */
size_t es_tx_stream(uint8_t cmd, uint8_t seq, const uint8_t *body, uint16_t len, es_tx_sink_fn sink, void *ctx);
/* The same bytes into out. Returns bytes written, or 0 if cap is too small or len > ES_PROTO_MAX_BODY (out may then
 * hold a partial frame; nothing is written past out + cap). */
size_t es_tx_encode(uint8_t cmd, uint8_t seq, const uint8_t *body, uint16_t len, uint8_t *out, size_t cap);
#endif
