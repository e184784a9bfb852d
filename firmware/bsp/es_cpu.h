/* The two halves of a bare-metal BSP. A CPU half (cortexm.c, riscv.c) and a UART half (cmsdk_uart.c, nrf51_uart.c,
 * ns16550.c) together implement es_bsp.h; core/es_ring.c supplies es_bsp_rx(). C99. */
#ifndef ES_CPU_H
#define ES_CPU_H
#include <stdint.h>

/* CPU half: idle, counter, reset (es_bsp.h) and these two. */
void es_cpu_init(void);                 /* trap/vector set-up, then interrupts on globally */
void es_cpu_irq_enable(unsigned irq);   /* let one external interrupt line (NVIC or PLIC number) through */

/* UART half: es_bsp_init, es_bsp_tx, es_bsp_tx_flush and the RX interrupt handler, which the CPU half's vector
 * table or trap handler calls for line ES_UART_IRQ. It clears the interrupt, then moves every received byte into
 * the ring (es_ring_push). */
void es_uart_irq_handler(void);

#define ES_REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
#define ES_REG8(addr) (*(volatile uint8_t *)(uintptr_t)(addr))
#endif
