/* Cortex-M start-up (M0 ... M55): vector table, reset handler (.data copied from flash, .bss cleared, FPU on when
 * the build uses one), then main(). The UART interrupt goes to es_uart_irq_handler; every other exception resets
 * the system (a device never hangs). From the board's toml: ES_UART_IRQ. Symbols from ld/sections.ld. */
#include <stdint.h>
#include "cortexm.h"
#include "es_bsp.h"
#include "es_cpu.h"

#ifndef ES_UART_IRQ
#error "ES_UART_IRQ comes from the board's toml"
#endif
#define ES_N_EXT_IRQ 48
#if ES_UART_IRQ >= ES_N_EXT_IRQ
#error "ES_UART_IRQ is past the vector table: raise ES_N_EXT_IRQ"
#endif

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int main(void);
void es_reset_handler(void);
void es_fault_handler(void);

void es_reset_handler(void)
{
    const uint32_t *src = _sidata;
    uint32_t *dst;
    for (dst = _sdata; dst < _edata; )
        *dst++ = *src++;
    for (dst = _sbss; dst < _ebss; )
        *dst++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    ES_SCB_CPACR |= 0xFu << 20;       /* CP10, CP11: full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    (void)main();
    for (;;) {
    }
}

void es_fault_handler(void)
{
    es_bsp_reset();
}

typedef void (*es_vector_t)(void);
#define ES_IRQ(n) ((n) == ES_UART_IRQ ? es_uart_irq_handler : es_fault_handler)
#define ES_IRQ8(n) ES_IRQ(n), ES_IRQ(n + 1), ES_IRQ(n + 2), ES_IRQ(n + 3), \
                   ES_IRQ(n + 4), ES_IRQ(n + 5), ES_IRQ(n + 6), ES_IRQ(n + 7)

__attribute__((section(".isr_vector"), used))
const es_vector_t es_vectors[16 + ES_N_EXT_IRQ] = {
    (es_vector_t)(uintptr_t)_estack, es_reset_handler,
    es_fault_handler, es_fault_handler, es_fault_handler, es_fault_handler, es_fault_handler,   /* NMI ... UsageFault, SecureFault */
    0, 0, 0, 0,
    es_fault_handler, es_fault_handler, 0, es_fault_handler, es_fault_handler,   /* SVC, DebugMon, -, PendSV, SysTick */
    ES_IRQ8(0), ES_IRQ8(8), ES_IRQ8(16), ES_IRQ8(24), ES_IRQ8(32), ES_IRQ8(40)
};
