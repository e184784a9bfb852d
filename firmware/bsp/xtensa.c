/* CPU half of the bare-metal BSP for the Xtensa lx106 core (call0 ABI) on QEMU's lx60 machine: level-1 interrupt
 * dispatch, WAITI idle, CCOUNT counter, reset through the board's FPGA reset register. See es_cpu.h. Vectors and the
 * register save/restore around es_xtensa_irq are in startup/xtensa_start.S. From the board's toml: ES_UART_IRQ (a core
 * interrupt number), ES_RESET_ADDR and ES_RESET_VALUE (xtfpga: 0xdead written to the register at 0x...d020010),
 * ES_COUNTER_CCOUNT. */
#include "es_bsp.h"
#include "es_cpu.h"
#include "es_ring.h"

#if !defined(ES_UART_IRQ) || !defined(ES_RESET_ADDR) || !defined(ES_RESET_VALUE)
#error "ES_UART_IRQ, ES_RESET_ADDR and ES_RESET_VALUE come from the board's toml"
#endif

void es_xtensa_irq(void);
void es_xtensa_fault(void);

static uint32_t es_saved_ps;           /* PS before es_bsp_counter_start masked interrupts */

/* Level-1 interrupts, called from the user exception vector with PS.EXCM = 1 (no nesting). The UART line is
 * level-triggered: its handler drains the receiver, which drops the line. */
void es_xtensa_irq(void)
{
    uint32_t pending, enabled;
    __asm__ volatile("rsr %0, interrupt" : "=r"(pending));
    __asm__ volatile("rsr %0, intenable" : "=r"(enabled));
    if (pending & enabled & (1u << ES_UART_IRQ))
        es_uart_irq_handler();
}

void es_xtensa_fault(void)
{
    es_bsp_reset();
}

void es_cpu_init(void)
{
    __asm__ volatile("rsil %0, 0" : "=r"(es_saved_ps) :: "memory");   /* PS.INTLEVEL 0: interrupts on */
}

void es_cpu_irq_enable(unsigned irq)
{
    uint32_t en;
    __asm__ volatile("rsr %0, intenable" : "=r"(en));
    en |= 1u << irq;
    __asm__ volatile("wsr %0, intenable\n\trsync" :: "r"(en) : "memory");
}

/* Level-1 interrupts are masked while the ring is checked; WAITI 0 then lowers the level and waits in one
 * instruction, so a byte arriving after the check still wakes the core (its handler runs before WAITI returns). */
void es_bsp_idle(void)
{
    uint32_t ps;
    __asm__ volatile("rsil %0, 1" : "=r"(ps) :: "memory");
    if (es_ring_empty())
        __asm__ volatile("waiti 0" ::: "memory");
    __asm__ volatile("wsr %0, ps\n\trsync" :: "r"(ps) : "memory");
}

void es_bsp_counter_start(void)
{
    __asm__ volatile("rsil %0, 15" : "=r"(es_saved_ps) :: "memory");
}

uint32_t es_bsp_counter_read(void)
{
    uint32_t v;
#if defined(ES_COUNTER_CCOUNT)
    __asm__ volatile("rsr %0, ccount" : "=r"(v) :: "memory");
#else
    v = 0;
#endif
    return v;
}

int es_bsp_counter_stop(void)
{
    __asm__ volatile("wsr %0, ps\n\trsync" :: "r"(es_saved_ps) : "memory");
    return 0;                          /* 32 bits, read modulo 2^32: no wrap within one call */
}

void es_bsp_reset(void)
{
    ES_REG32(ES_RESET_ADDR) = ES_RESET_VALUE;
    for (;;) {
    }
}
