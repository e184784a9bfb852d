/* libFuzzer target for the whole firmware core on the host: es_app.c (dispatch) + es_proto.c (framing) + a generated
 * model (es_model.c from edgesketch.codegen, written by run.sh) + the stub board below. The input is the byte stream
 * the UART receives; a RESET longjmps back to a fresh es_app_start() and the rest of the input keeps coming, like a
 * reboot. Every byte the firmware sends goes through a checking receiver. Properties (abort on failure):
 *   - the firmware sends only well-formed frames (no COBS/CRC/length error at the host end);
 *   - only BOOT, NAK (reasons 1..7) and replies 0x81..0x86, each with the body size docs/protocol.md gives;
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

void es_bsp_init(void) {}
void es_bsp_tx_flush(void) {}
void es_bsp_idle(void) {}
void es_bsp_counter_start(void) {}
uint32_t es_bsp_counter_read(void) { return 0; }
int es_bsp_counter_stop(void) { return 0; }
void es_bsp_reset(void) { longjmp(reset_jmp, 1); }

int es_bsp_rx(uint8_t *byte)
{
    if (in_pos >= in_size) return 0;
    *byte = in_data[in_pos++];
    return 1;
}

static void check_reply(const es_frame_t *f)
{
    const uint16_t rec = 4 + 4 * ES_N_OUTPUTS;
    switch (f->cmd) {
    case ES_MSG_BOOT:
    case ES_CMD_HELLO | ES_REPLY:
        CHECK(f->len >= 24 && f->len == 24 + f->body[21] && f->body[0] == ES_PROTO_VERSION);
        CHECK((f->body[f->len - 2] | f->body[f->len - 1] << 8) == ES_PROTO_MAX_BODY);   /* max_body, last */
        CHECK((f->body[9] | f->body[10] << 8) == ES_N_INPUTS && (f->body[16] | f->body[17] << 8) == ES_N_HASHBITS);
        if (f->cmd == ES_MSG_BOOT) { CHECK(f->seq == 0); boots++; return; }
        break;
    case ES_CMD_INFER | ES_REPLY: CHECK(f->len == rec); break;
    case ES_CMD_BATCH | ES_REPLY:
        CHECK(f->len >= 1 && f->body[0] >= 1 && f->len == 1 + f->body[0] * rec);
        break;
    case ES_CMD_DEBUG | ES_REPLY: CHECK(f->len == 4 + (ES_N_HASHBITS + 7) / 8 + 2 * ES_N_TABLES); break;
    case ES_CMD_RESET | ES_REPLY: CHECK(f->len == 0); break;
    case ES_CMD_STACK | ES_REPLY:
        CHECK(f->len == 5 && f->body[4] <= 1 && (f->body[0] | f->body[1] << 8) <= (f->body[2] | f->body[3] << 8));
        break;
    case ES_MSG_NAK: CHECK(f->len == 1 && f->body[0] >= 1 && f->body[0] <= 7); break;
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
    es_app_start();
    es_app_poll();
    CHECK(in_pos == size);
    CHECK(replies <= zeros);
    return 0;
}
