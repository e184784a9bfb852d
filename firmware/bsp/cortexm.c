/* CPU half of the bare-metal BSP for every Cortex-M (M0 ... M55): NVIC, WFI idle, counter, reset. See es_cpu.h. */
#include "cortexm.h"
#include "es_bsp.h"
#include "es_cpu.h"
#include "es_ring.h"

void es_cpu_init(void)
{
    __asm__ volatile("cpsie i" ::: "memory");
}

void es_cpu_irq_enable(unsigned irq)
{
    ES_NVIC_ISER(irq / 32u) = 1u << (irq % 32u);
}

/* Interrupts are masked while the ring is checked, so a byte arriving between the check and WFI still wakes the
 * core: WFI returns on a pending interrupt even with PRIMASK set, and the handler runs at cpsie. */
void es_bsp_idle(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
    if (es_ring_empty())
        __asm__ volatile("dsb\n\twfi" ::: "memory");
    __asm__ volatile("cpsie i" ::: "memory");
}

void es_bsp_counter_start(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
    es_cm_counter_start();
}

uint32_t es_bsp_counter_read(void)
{
    return es_cm_counter_read();
}

int es_bsp_counter_stop(void)
{
    int wrapped = es_cm_counter_stop();
    __asm__ volatile("cpsie i" ::: "memory");
    return wrapped;
}

void es_bsp_reset(void)
{
    es_cm_reset();
}
