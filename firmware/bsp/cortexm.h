/* Cortex-M system registers and the cycle/instruction counters, shared by the bare-metal CPU half (cortexm.c) and
 * the Arduino entry on ARM boards. Counter source from the board's toml: ES_COUNTER_DWT (DWT CYCCNT, real M3/M4/M7)
 * or ES_COUNTER_SYSTICK (24-bit SysTick on the core clock: the only counter QEMU models; under -icount its ticks
 * are exact virtual time, converted to instructions by ES_COUNTER_SCALE_NUM/DEN). C99, header-only. */
#ifndef ES_CORTEXM_H
#define ES_CORTEXM_H
#include <stdint.h>

#define ES_CM_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
#define ES_SCB_AIRCR   ES_CM_REG(0xE000ED0Cu)
#define ES_SCB_CPACR   ES_CM_REG(0xE000ED88u)
#define ES_NVIC_ISER(n) ES_CM_REG(0xE000E100u + 4u * (n))
#define ES_SYST_CSR    ES_CM_REG(0xE000E010u)
#define ES_SYST_RVR    ES_CM_REG(0xE000E014u)
#define ES_SYST_CVR    ES_CM_REG(0xE000E018u)
#define ES_DEMCR       ES_CM_REG(0xE000EDFCu)
#define ES_DWT_CTRL    ES_CM_REG(0xE0001000u)
#define ES_DWT_CYCCNT  ES_CM_REG(0xE0001004u)
#define ES_DWT_LAR     ES_CM_REG(0xE0001FB0u)

#define ES_SYST_ENABLE_CPUCLK 5u          /* ENABLE | CLKSOURCE (core clock), no interrupt */
#define ES_SYST_COUNTFLAG (1u << 16)
#define ES_SYST_MAX 0x00FFFFFFu

static inline void es_cm_counter_start(void)
{
#if defined(ES_COUNTER_SYSTICK)
    ES_SYST_CSR = 0;
    ES_SYST_RVR = ES_SYST_MAX;
    ES_SYST_CVR = 0;                      /* clears CVR and COUNTFLAG; reloads on the next tick */
    ES_SYST_CSR = ES_SYST_ENABLE_CPUCLK;
    while (ES_SYST_CVR == 0) {
    }
#elif defined(ES_COUNTER_DWT)
    ES_DEMCR |= 1u << 24;                 /* TRCENA */
    ES_DWT_LAR = 0xC5ACCE55u;             /* unlock (Cortex-M7); ignored elsewhere */
    ES_DWT_CTRL |= 1u;                    /* CYCCNTENA. CYCCNT is not zeroed: frameworks (Teensy) use it too */
#endif
}

static inline uint32_t es_cm_counter_read(void)
{
#if defined(ES_COUNTER_SYSTICK)
    return ES_SYST_MAX - ES_SYST_CVR;     /* counts up from 0 after es_cm_counter_start() */
#elif defined(ES_COUNTER_DWT)
    return ES_DWT_CYCCNT;
#else
    return 0;
#endif
}

/* Nonzero if the counter wrapped since start (SysTick: COUNTFLAG). DWT reads are differenced modulo 2^32. */
static inline int es_cm_counter_stop(void)
{
#if defined(ES_COUNTER_SYSTICK)
    int wrapped = (ES_SYST_CSR & ES_SYST_COUNTFLAG) != 0;
    ES_SYST_CSR = 0;                      /* stopped: no timer deadline while the core sleeps */
    return wrapped;
#else
    return 0;
#endif
}

static inline void es_cm_reset(void)
{
    __asm__ volatile("dsb" ::: "memory");
    ES_SCB_AIRCR = (0x05FAu << 16) | (1u << 2);   /* VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}
#endif
