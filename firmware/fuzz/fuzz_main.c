/* A stand-alone driver for fuzz_rx.c where clang's libFuzzer is missing (gcc -fsanitize=address,undefined):
 *   fuzz_main [-runs=N | -max_total_time=S] [FILE...]
 * With files it replays them (e.g. a crash- file); otherwise it feeds random inputs built from valid frames
 * (es_tx_encode) mutated by bit flips, drops, insertions, truncation, noise and long runs. Prints the libFuzzer
 * statistics line run.sh reads: stat::number_of_executed_units. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static size_t make_input(uint8_t *buf, size_t cap)
{
    static uint8_t body[ES_PROTO_MAX_BODY];
    size_t n = 0, k;
    int segments = 1 + (int)(rnd() % 6);
    buf[n++] = (uint8_t)rnd();
    while (segments-- > 0 && n < cap) {
        uint32_t kind = rnd() % 8;
        if (kind <= 3) {                        /* a valid frame, maybe mutated */
            uint16_t len = (uint16_t)(rnd() % 4 == 0 ? rnd() % (ES_PROTO_MAX_BODY + 1) : rnd() % 80);
            uint8_t cmd = (uint8_t)(rnd() % 3 == 0 ? rnd() : 1 + rnd() % 8);
            uint32_t zero_odds = 1 + rnd() % 16;
            size_t m, start = n;
            for (k = 0; k < len; k++) body[k] = (uint8_t)(rnd() % zero_odds == 0 ? 0 : rnd());
            if (cmd == ES_CMD_BATCH && len > 0) body[0] = (uint8_t)(rnd() % 10);
            if ((cmd == ES_CMD_LOAD || cmd == ES_CMD_RUN) && len > 0) body[0] = (uint8_t)(rnd() % 3);   /* few xfers */
            if (cmd == ES_CMD_LOAD && len >= 3) {  /* offsets near the pieces a host sends: 0 or small */
                body[1] = (uint8_t)(rnd() % 2 ? 0 : rnd() % 24);
                body[2] = (uint8_t)(rnd() % 8 == 0 ? rnd() : 0);
                if (rnd() % 2) len = (uint16_t)(4 + rnd() % 16);
            }
            if (cmd == ES_CMD_RUN && rnd() % 2) len = 1;
            if (rnd() % 2) buf[n++] = 0;
            m = es_tx_encode(cmd, (uint8_t)rnd(), body, len, buf + n, cap - n);
            n += m;
            if (m > 0 && kind == 3) {           /* mutate inside the frame */
                int muts = 1 + (int)(rnd() % 3);
                while (muts-- > 0 && n > start + 1) {
                    size_t at = start + rnd() % (n - start);
                    switch (rnd() % 4) {
                    case 0: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
                    case 1: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
                    case 2: if (n < cap) { memmove(buf + at + 1, buf + at, n - at); buf[at] = (uint8_t)rnd(); n++; } break;
                    default: n = at; break;
                    }
                }
            }
        } else if (kind == 4) {                 /* noise */
            size_t len = rnd() % 40;
            for (k = 0; k < len && n < cap; k++) buf[n++] = (uint8_t)rnd();
        } else if (kind == 5) {                 /* a long non-zero run: overflow */
            size_t len = ES_PROTO_MAX_WIRE - 8 + rnd() % 16;
            for (k = 0; k < len && n < cap; k++) buf[n++] = (uint8_t)(1 + rnd() % 255);
        } else {                                /* delimiters */
            size_t len = 1 + rnd() % 3;
            for (k = 0; k < len && n < cap; k++) buf[n++] = 0;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    long long runs = -1, total_time = 10, done = 0;
    int i, files = 0;
    static uint8_t buf[16384];
    time_t t0 = time(NULL);
    for (i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0) runs = atoll(argv[i] + 6);
        else if (strncmp(argv[i], "-max_total_time=", 16) == 0) total_time = atoll(argv[i] + 16);
        else if (strncmp(argv[i], "-seed=", 6) == 0) rng_state = (uint64_t)atoll(argv[i] + 6) * 2654435761ull + 1;
        else if (argv[i][0] != '-') {
            FILE *fp = fopen(argv[i], "rb");
            size_t n;
            if (fp == NULL) { perror(argv[i]); return 2; }
            n = fread(buf, 1, sizeof buf, fp);
            fclose(fp);
            LLVMFuzzerTestOneInput(buf, n);
            files++;
            done++;
        }
    }
    if (files == 0) {
        while (runs < 0 ? (long long)(time(NULL) - t0) < total_time : done < runs) {
            size_t n = make_input(buf, sizeof buf);
            LLVMFuzzerTestOneInput(buf, n);
            done++;
        }
    }
    printf("stat::number_of_executed_units: %lld\n", done);
    return 0;
}
