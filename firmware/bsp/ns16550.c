/* UART half of the bare-metal BSP: NS16550A (QEMU riscv virt; xtfpga lx60 for Xtensa), FIFO on, RX-data interrupt.
 * From the board's toml: ES_UART_BASE, ES_UART_IRQ, ES_UART_CLOCK_HZ, ES_BAUD, and ES_UART_REG_SHIFT (registers
 * 1 << shift bytes apart: 0 on riscv virt, 2 on xtfpga; default 0). */
#include "es_bsp.h"
#include "es_cpu.h"
#include "es_ring.h"

#if !defined(ES_UART_BASE) || !defined(ES_UART_CLOCK_HZ) || !defined(ES_BAUD)
#error "ES_UART_BASE, ES_UART_CLOCK_HZ and ES_BAUD come from the board's toml"
#endif

#ifndef ES_UART_REG_SHIFT
#define ES_UART_REG_SHIFT 0
#endif
#define UART_REG(n) ES_REG8(ES_UART_BASE + ((n) << ES_UART_REG_SHIFT))
#define UART_RBR UART_REG(0u)   /* read, DLAB=0 */
#define UART_THR UART_REG(0u)   /* write, DLAB=0 */
#define UART_DLL UART_REG(0u)   /* DLAB=1 */
#define UART_IER UART_REG(1u)
#define UART_DLM UART_REG(1u)   /* DLAB=1 */
#define UART_FCR UART_REG(2u)
#define UART_LCR UART_REG(3u)
#define UART_MCR UART_REG(4u)
#define UART_LSR UART_REG(5u)

#define LSR_DR   0x01u
#define LSR_THRE 0x20u
#define LSR_TEMT 0x40u

void es_bsp_init(void)
{
    uint32_t div = ES_UART_CLOCK_HZ / (16u * ES_BAUD);
    es_cpu_init();
    UART_IER = 0;
    UART_LCR = 0x80u;                 /* DLAB */
    UART_DLL = (uint8_t)div;
    UART_DLM = (uint8_t)(div >> 8);
    UART_LCR = 0x03u;                 /* 8N1 */
    UART_FCR = 0x07u;                 /* FIFOs on and cleared, RX trigger at 1 byte */
    UART_MCR = 0x08u;                 /* OUT2: the interrupt output on PC-style wiring */
    while (UART_LSR & LSR_DR)
        (void)UART_RBR;
    UART_IER = 0x01u;                 /* received-data interrupt */
    es_cpu_irq_enable(ES_UART_IRQ);
}

void es_uart_irq_handler(void)
{
    while (UART_LSR & LSR_DR)         /* reading RBR until the FIFO is empty clears the interrupt */
        es_ring_push(UART_RBR);
}

void es_bsp_tx(const uint8_t *p, size_t n)
{
    while (n--) {
        while (!(UART_LSR & LSR_THRE)) {
        }
        UART_THR = *p++;
    }
}

void es_bsp_tx_flush(void)
{
    while (!(UART_LSR & LSR_TEMT)) {
    }
}
