/* RX ring buffer shared by the interrupt-driven BSPs (see es_ring.h). */
#include "es_ring.h"
#include "es_bsp.h"

#if (ES_RX_RING_SIZE & (ES_RX_RING_SIZE - 1u)) != 0
#error "ES_RX_RING_SIZE must be a power of two"
#endif

static volatile uint8_t es_ring_buf[ES_RX_RING_SIZE];
static volatile uint32_t es_ring_head;   /* written by the interrupt only */
static volatile uint32_t es_ring_tail;   /* written by the main loop only */
static volatile uint32_t es_ring_drops;

void es_ring_push(uint8_t byte)
{
    uint32_t head = es_ring_head;
    if (head - es_ring_tail >= ES_RX_RING_SIZE) {
        es_ring_drops++;
        return;
    }
    es_ring_buf[head & (ES_RX_RING_SIZE - 1u)] = byte;
    es_ring_head = head + 1u;
}

int es_ring_empty(void)
{
    return es_ring_head == es_ring_tail;
}

uint32_t es_ring_dropped(void)
{
    return es_ring_drops;
}

int es_bsp_rx(uint8_t *byte)
{
    uint32_t tail = es_ring_tail;
    if (tail == es_ring_head)
        return 0;
    *byte = es_ring_buf[tail & (ES_RX_RING_SIZE - 1u)];
    es_ring_tail = tail + 1u;
    return 1;
}
