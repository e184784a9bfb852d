/* libFuzzer target for the whole firmware core on the host: es_app.c (dispatch) + es_proto.c (framing) + a generated
 * model (es_model.c from edgesketch.codegen, written by run.sh) + the stub board below. The input is the byte stream
 * the UART receives; a RESET longjmps back to a fresh es_app_start() and the rest of the input keeps coming, like a
 * reboot. Every byte the firmware sends goes through a checking receiver. Properties (abort on failure):
 *   - the firmware sends only well-formed frames (no COBS/CRC/length error at the host end);
 *   - only BOOT, NAK (reasons 1..ES_NAK_LAST) and replies 0x81..0x89, each with the body size docs/protocol.md gives;
 *   - LOAD, RUN and DEBUG of the loaded input follow the transfer rules of docs/protocol.md: a shadow of the device's
 *     state (its own receiver on the same bytes, reset with the device) predicts every LOAD reply (xfer, have) or NAK
 *     reason, every RUN's NAK or scores (es_predict_q on the shadow's copy of the input) and DEBUG's NAK 10;
 *   - STREAM (a model generated with a hop) follows the stream rules: the shadow's own stream (sid, base, have, the
 *     samples until the next scores, and a second es_stream_t the shadow pushes the same samples into) predicts every
 *     STREAM reply, sid, have, at, cost and scores, or its NAK reason;
 *   - at most one reply per 0x00 received (every frame, good or bad, gets at most one answer);
 *   - BOOT and HELLO bodies carry ES_PROTO_VERSION, the model's sizes and ES_PROTO_MAX_BODY; a BATCH reply's count is
 *     at least 1;
 *   - a STACK reply's peak is within its window (painting below sp really runs here, on the host's stack).
 * Build (run.sh does it): clang -fsanitize=fuzzer,address,undefined -DES_CORE_NAME='"fuzz-host"' -I<model dir> ... */
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_app.h"
#include "es_bsp.h"
#include "es_model.h"
#include "es_proto.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static const uint8_t *in_data;
static size_t in_size, in_pos;
static jmp_buf reset_jmp;
static es_rx_t host_rx;          /* the host end of the line */
static size_t replies, boots;

/* The shadow of the device's input transfer (docs/protocol.md), fed the frames the device receives. */
static es_rx_t shadow_rx;
static int8_t shadow_input[ES_N_INPUTS];
static uint8_t shadow_xfer;
static uint32_t shadow_have;
enum { EXPECT_ANY, EXPECT_NAK, EXPECT_LOAD, EXPECT_RUN, EXPECT_DEBUG };
static int expect;               /* what the reply to the frame just received must be */
static uint8_t expect_nak, expect_seq;
static int32_t expect_scores[ES_N_OUTPUTS];
#ifdef ES_STREAM_HOP
enum { EXPECT_STREAM = EXPECT_DEBUG + 1 };
static es_stream_t shadow_stream;
static uint8_t shadow_sid;
static uint32_t shadow_sbase, shadow_shave, shadow_sat, shadow_suntil;
static int32_t shadow_sscores[ES_N_OUTPUTS];
#define HELLO_STREAM 6           /* version 4: u16 hop, u16 window, u16 channels after max_body */
#else
#define ES_STREAM_HOP 0
#define ES_STREAM_LEN 0
#define ES_STREAM_CHANNELS 0
#define HELLO_STREAM 6
#endif
/* DEBUG reports as many of the model's hash bits and buckets as fit a reply (es_app.c) */
#ifndef ES_N_DEBUG_BITS
#define ES_N_DEBUG_BITS ES_N_HASHBITS
#define ES_N_DEBUG_BUCKETS ES_N_TABLES
#endif
#define DEBUG_BITS (ES_N_DEBUG_BITS < 8 * (ES_PROTO_MAX_BODY / 2) ? ES_N_DEBUG_BITS : 8 * (ES_PROTO_MAX_BODY / 2))
#define DEBUG_ROOM ((ES_PROTO_MAX_BODY - 4 - (DEBUG_BITS + 7) / 8) / 2)
#define DEBUG_BUCKETS (ES_N_DEBUG_BUCKETS < DEBUG_ROOM ? ES_N_DEBUG_BUCKETS : DEBUG_ROOM)

#ifdef ES_STREAM_HOP
static void shadow_stream_start(uint8_t sid, uint32_t pos)
{
    uint32_t i;
    CHECK(es_stream_init(&shadow_stream) == ES_OK);
    shadow_sid = sid;
    shadow_sbase = shadow_shave = pos;
    shadow_sat = 0;
    shadow_suntil = ES_STREAM_LEN;
    for (i = 0; i < ES_N_OUTPUTS; i++) shadow_sscores[i] = 0;
}

static void shadow_stream_frame(const es_frame_t *f)
{
    uint32_t pos, k, i;
    int fresh, rc;
    if (f->len < 5u + ES_STREAM_CHANNELS || (f->len - 5u) % ES_STREAM_CHANNELS != 0) return;   /* NAK 2: any */
    pos = (uint32_t)f->body[1] | (uint32_t)f->body[2] << 8 | (uint32_t)f->body[3] << 16 | (uint32_t)f->body[4] << 24;
    k = (f->len - 5u) / ES_STREAM_CHANNELS;
    expect = EXPECT_STREAM;
    if (f->body[0] == shadow_sid && shadow_sbase <= pos && pos <= shadow_shave && k <= shadow_shave - pos) return;
    fresh = f->body[0] != shadow_sid;
    if (!fresh && pos != shadow_shave) {
        expect = EXPECT_NAK;
        expect_nak = ES_NAK_ORDER;
        return;
    }
    if (k > (fresh ? (uint32_t)ES_STREAM_LEN : shadow_suntil) || k > 0xFFFFFFFFu - pos) {
        expect = EXPECT_NAK;
        expect_nak = ES_NAK_TOO_MUCH;
        return;
    }
    if (fresh) shadow_stream_start(f->body[0], pos);
    for (i = 0; i < k; i++) {
        rc = es_stream_push_q(&shadow_stream, (const int8_t *)(f->body + 5u + i * ES_STREAM_CHANNELS), shadow_sscores);
        shadow_shave++;
        CHECK(rc == (--shadow_suntil == 0 ? ES_STREAM_READY : ES_OK));   /* ready exactly where the protocol says */
        if (shadow_suntil == 0) {
            shadow_suntil = ES_STREAM_HOP;
            shadow_sat = shadow_shave;
        }
    }
}
#endif

static void shadow_reset(void)
{
    es_rx_init(&shadow_rx);
    shadow_xfer = 0;
    shadow_have = 0;
    expect = EXPECT_ANY;
#ifdef ES_STREAM_HOP
    shadow_stream_start(0, 0);
#endif
}

static void shadow_frame(const es_frame_t *f)
{
    uint32_t off, n, i;
    expect = EXPECT_ANY;
    expect_seq = f->seq;
    if (f->cmd == ES_CMD_LOAD && f->len >= 4) {
        off = (uint32_t)f->body[1] | (uint32_t)f->body[2] << 8;
        n = f->len - 3u;
        expect = EXPECT_LOAD;
        if (!(f->body[0] == shadow_xfer && off + n <= shadow_have)) {
            if (off != 0 && !(f->body[0] == shadow_xfer && off == shadow_have)) {
                expect = EXPECT_NAK;
                expect_nak = ES_NAK_ORDER;
            } else if (off + n > ES_N_INPUTS) {
                expect = EXPECT_NAK;
                expect_nak = ES_NAK_TOO_MUCH;
            } else {
                for (i = 0; i < n; i++) shadow_input[off + i] = (int8_t)f->body[3 + i];
                shadow_xfer = f->body[0];
                shadow_have = off + n;
            }
        }
    } else if (f->cmd == ES_CMD_RUN && f->len == 1) {
        if (f->body[0] != shadow_xfer || shadow_have != ES_N_INPUTS) {
            expect = EXPECT_NAK;
            expect_nak = ES_NAK_INCOMPLETE;
        } else {
            expect = EXPECT_RUN;
            CHECK(es_predict_q(shadow_input, expect_scores) == ES_OK);
        }
    } else if (f->cmd == ES_CMD_DEBUG && f->len == 0) {
        expect = shadow_have != ES_N_INPUTS ? EXPECT_NAK : EXPECT_DEBUG;
        expect_nak = ES_NAK_INCOMPLETE;
    }
#ifdef ES_STREAM_HOP
    else if (f->cmd == ES_CMD_STREAM) {
        shadow_stream_frame(f);
    }
#endif
}

void es_bsp_init(void) {}
void es_bsp_tx_flush(void) {}
void es_bsp_idle(void) {}
void es_bsp_counter_start(void) {}
uint32_t es_bsp_counter_read(void) { return 0; }
int es_bsp_counter_stop(void) { return 0; }
void es_bsp_reset(void) { longjmp(reset_jmp, 1); }

int es_bsp_rx(uint8_t *byte)
{
    es_frame_t f;
    uint8_t reason;
    if (in_pos >= in_size) return 0;
    *byte = in_data[in_pos++];
    expect = EXPECT_ANY;
    if (es_rx_push(&shadow_rx, *byte, &f, &reason) == ES_RX_FRAME) shadow_frame(&f);
    return 1;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void check_expected(const es_frame_t *f)
{
    uint32_t i, have;
    if (f->cmd == ES_MSG_BOOT || expect == EXPECT_ANY) return;
    CHECK(f->seq == expect_seq);
    switch (expect) {
    case EXPECT_NAK: CHECK(f->cmd == ES_MSG_NAK && f->len == 1 && f->body[0] == expect_nak); break;
    case EXPECT_LOAD:
        have = (uint32_t)f->body[1] | (uint32_t)f->body[2] << 8;
        CHECK(f->cmd == (ES_CMD_LOAD | ES_REPLY) && f->body[0] == shadow_xfer && have == shadow_have);
        break;
    case EXPECT_RUN:
        CHECK(f->cmd == (ES_CMD_RUN | ES_REPLY));
        for (i = 0; i < ES_N_OUTPUTS; i++)
            CHECK((int32_t)((uint32_t)f->body[4 + 4 * i] | (uint32_t)f->body[5 + 4 * i] << 8 |
                            (uint32_t)f->body[6 + 4 * i] << 16 | (uint32_t)f->body[7 + 4 * i] << 24) == expect_scores[i]);
        break;
#ifdef ES_STREAM_HOP
    case EXPECT_STREAM:
        CHECK(f->cmd == (ES_CMD_STREAM | ES_REPLY) && f->len == 13 + 4 * ES_N_OUTPUTS && f->body[0] == shadow_sid);
        CHECK(get32(f->body + 1) == shadow_shave && get32(f->body + 5) == shadow_sat && get32(f->body + 9) == 0);
        for (i = 0; i < ES_N_OUTPUTS; i++) CHECK((int32_t)get32(f->body + 13 + 4 * i) == shadow_sscores[i]);
        break;
#endif
    default: CHECK(f->cmd == (ES_CMD_DEBUG | ES_REPLY)); break;
    }
    expect = EXPECT_ANY;           /* one reply per frame */
}

static void check_reply(const es_frame_t *f)
{
    const uint16_t rec = 4 + 4 * ES_N_OUTPUTS;
    check_expected(f);
    switch (f->cmd) {
    case ES_MSG_BOOT:
    case ES_CMD_HELLO | ES_REPLY:
        CHECK(f->len >= 24 + HELLO_STREAM && f->len == 24 + HELLO_STREAM + f->body[21] && f->body[0] == ES_PROTO_VERSION);
        CHECK((f->body[f->len - 8] | f->body[f->len - 7] << 8) == ES_PROTO_MAX_BODY);   /* max_body, then the stream */
        CHECK((f->body[f->len - 6] | f->body[f->len - 5] << 8) == ES_STREAM_HOP);
        CHECK((f->body[f->len - 4] | f->body[f->len - 3] << 8) == ES_STREAM_LEN);
        CHECK((f->body[f->len - 2] | f->body[f->len - 1] << 8) == ES_STREAM_CHANNELS);
        CHECK((f->body[9] | f->body[10] << 8) == ES_N_INPUTS && (f->body[16] | f->body[17] << 8) == ES_N_HASHBITS);
        if (f->cmd == ES_MSG_BOOT) { CHECK(f->seq == 0); boots++; return; }
        break;
    case ES_CMD_INFER | ES_REPLY:
    case ES_CMD_RUN | ES_REPLY: CHECK(f->len == rec); break;
    case ES_CMD_LOAD | ES_REPLY:
        CHECK(f->len == 3 && (f->body[1] | f->body[2] << 8) >= 1 && (f->body[1] | f->body[2] << 8) <= ES_N_INPUTS);
        break;
    case ES_CMD_BATCH | ES_REPLY:
        CHECK(f->len >= 1 && f->body[0] >= 1 && f->len == 1 + f->body[0] * rec);
        break;
    case ES_CMD_DEBUG | ES_REPLY: CHECK(f->len == 4 + (DEBUG_BITS + 7) / 8 + 2 * DEBUG_BUCKETS); break;
    case ES_CMD_STREAM | ES_REPLY: CHECK(f->len == 13 + 4 * ES_N_OUTPUTS && ES_STREAM_HOP > 0); break;
    case ES_CMD_RESET | ES_REPLY: CHECK(f->len == 0); break;
    case ES_CMD_STACK | ES_REPLY:
        CHECK(f->len == 5 && f->body[4] <= 1 && (f->body[0] | f->body[1] << 8) <= (f->body[2] | f->body[3] << 8));
        break;
    case ES_MSG_NAK: CHECK(f->len == 1 && f->body[0] >= 1 && f->body[0] <= ES_NAK_LAST); break;
    default: CHECK(0);
    }
    replies++;
}

void es_bsp_tx(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        es_frame_t f;
        uint8_t reason = 0;
        int r = es_rx_push(&host_rx, p[i], &f, &reason);
        CHECK(r != ES_RX_ERROR);
        if (r == ES_RX_FRAME) check_reply(&f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static volatile size_t zeros;   /* volatile: survives the longjmp */
    size_t i;
    in_data = data;
    in_size = size;
    in_pos = 0;
    replies = boots = 0;
    zeros = 0;
    for (i = 0; i < size; i++) zeros += data[i] == 0;
    es_rx_init(&host_rx);
    (void)es_rx_push(&host_rx, 0, NULL, NULL);  /* the host is synced */
    setjmp(reset_jmp);                          /* a RESET comes back here: boot again, keep reading */
    shadow_reset();                             /* the device forgets its transfer and its receiver waits for 0x00 */
    es_app_start();
    es_app_poll();
    CHECK(in_pos == size);
    CHECK(replies <= zeros);
    return 0;
}
