/* UART half of the bare-metal BSP: Nordic nRF51 UART (QEMU microbit). It has a small RX FIFO: every byte raises
 * EVENTS_RXDRDY. From the board's toml: ES_UART_BASE, ES_UART_IRQ, ES_NRF_BAUDRATE (the BAUDRATE register value). */
#include "es_bsp.h"
#include "es_cpu.h"
#include "es_ring.h"

#if !defined(ES_UART_BASE) || !defined(ES_NRF_BAUDRATE)
#error "ES_UART_BASE and ES_NRF_BAUDRATE come from the board's toml"
#endif

#define UART_STARTRX   ES_REG32(ES_UART_BASE + 0x000u)
#define UART_STARTTX   ES_REG32(ES_UART_BASE + 0x008u)
#define UART_RXDRDY    ES_REG32(ES_UART_BASE + 0x108u)
#define UART_TXDRDY    ES_REG32(ES_UART_BASE + 0x11Cu)
#define UART_ERROR     ES_REG32(ES_UART_BASE + 0x124u)
#define UART_INTENSET  ES_REG32(ES_UART_BASE + 0x304u)
#define UART_ERRORSRC  ES_REG32(ES_UART_BASE + 0x480u)
#define UART_ENABLE    ES_REG32(ES_UART_BASE + 0x500u)
#define UART_RXD       ES_REG32(ES_UART_BASE + 0x518u)
#define UART_TXD       ES_REG32(ES_UART_BASE + 0x51Cu)
#define UART_BAUDRATE  ES_REG32(ES_UART_BASE + 0x524u)

#define INT_RXDRDY (1u << 2)

void es_bsp_init(void)
{
    es_cpu_init();
    UART_BAUDRATE = ES_NRF_BAUDRATE;
    UART_ENABLE = 4u;
    UART_RXDRDY = 0;
    UART_TXDRDY = 0;
    UART_INTENSET = INT_RXDRDY;
    UART_STARTTX = 1u;
    UART_STARTRX = 1u;
    es_cpu_irq_enable(ES_UART_IRQ);
}

/* Clear the event first, then read RXD: reading pops the FIFO and raises the event again if bytes remain. */
void es_uart_irq_handler(void)
{
    if (UART_ERROR) {
        UART_ERROR = 0;
        UART_ERRORSRC = 0xFu;
    }
    while (UART_RXDRDY) {
        UART_RXDRDY = 0;
        es_ring_push((uint8_t)UART_RXD);
    }
}

void es_bsp_tx(const uint8_t *p, size_t n)
{
    while (n--) {
        UART_TXD = *p++;
        while (!UART_TXDRDY) {
        }
        UART_TXDRDY = 0;
    }
}

void es_bsp_tx_flush(void)
{
    /* es_bsp_tx returns only after TXDRDY of its last byte */
}
