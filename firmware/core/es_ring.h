/* Single-producer (RX interrupt) / single-consumer (main loop) byte ring for interrupt-driven BSPs. C99.
 * es_ring.c also implements es_bsp_rx() on top of it. */
#ifndef ES_RING_H
#define ES_RING_H
#include <stdint.h>

#ifndef ES_RX_RING_SIZE
#define ES_RX_RING_SIZE 2048u   /* a power of two; holds a whole maximal frame (ES_PROTO_MAX_WIRE bytes) */
#endif

/* From the RX interrupt: store one byte; a byte that finds the ring full is dropped and counted. */
void es_ring_push(uint8_t byte);
/* 1 if no byte is waiting (es_bsp_idle calls it with interrupts masked before WFI). */
int es_ring_empty(void);
/* Bytes dropped because the ring was full, since start-up. */
uint32_t es_ring_dropped(void);
#endif
