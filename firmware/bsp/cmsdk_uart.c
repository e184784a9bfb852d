/* UART half of the bare-metal BSP: ARM CMSDK APB UART (QEMU mps2-an385/an386/an500, mps3-an547).
 * From the board's toml: ES_UART_BASE, ES_UART_IRQ (the RX line), ES_UART_CLOCK_HZ, ES_BAUD. */
#include "es_bsp.h"
#include "es_cpu.h"
#include "es_ring.h"

#if !defined(ES_UART_BASE) || !defined(ES_UART_CLOCK_HZ) || !defined(ES_BAUD)
#error "ES_UART_BASE, ES_UART_CLOCK_HZ and ES_BAUD come from the board's toml"
#endif

#define UART_DATA      ES_REG32(ES_UART_BASE + 0x00u)
#define UART_STATE     ES_REG32(ES_UART_BASE + 0x04u)
#define UART_CTRL      ES_REG32(ES_UART_BASE + 0x08u)
#define UART_INTCLEAR  ES_REG32(ES_UART_BASE + 0x0Cu)
#define UART_BAUDDIV   ES_REG32(ES_UART_BASE + 0x10u)

#define STATE_TXFULL   (1u << 0)
#define STATE_RXFULL   (1u << 1)
#define CTRL_TX_EN     (1u << 0)
#define CTRL_RX_EN     (1u << 1)
#define CTRL_RX_INTEN  (1u << 3)
#define INT_RX         (1u << 1)

void es_bsp_init(void)
{
    es_cpu_init();
    UART_CTRL = 0;
    UART_BAUDDIV = ES_UART_CLOCK_HZ / ES_BAUD;   /* QEMU ignores the rate but wants a divider >= 16 */
    UART_INTCLEAR = 0xFu;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INTEN;
    es_cpu_irq_enable(ES_UART_IRQ);
}

/* INTCLEAR before draining DATA: clearing after can lose the edge of a byte that arrived while draining, and with a
 * one-byte RX register the UART then accepts nothing more (no new interrupt, deadlock). */
void es_uart_irq_handler(void)
{
    UART_INTCLEAR = INT_RX;
    while (UART_STATE & STATE_RXFULL)
        es_ring_push((uint8_t)UART_DATA);
}

void es_bsp_tx(const uint8_t *p, size_t n)
{
    while (n--) {
        while (UART_STATE & STATE_TXFULL) {
        }
        UART_DATA = *p++;
    }
}

void es_bsp_tx_flush(void)
{
    while (UART_STATE & STATE_TXFULL) {
    }
}
