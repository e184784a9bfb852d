/* edgesketch board-support interface: what firmware/core needs from a board. C99.
 *
 * One implementation per board family (firmware/bsp/, firmware/arduino/main.cpp); the core (es_app.c, es_main.c)
 * calls nothing else. Board facts come from boards/<name>.toml as -D flags, never from `#if board` code:
 *   ES_CORE_NAME          string for HELLO, e.g. "cortex-m4"                        (required)
 *   ES_COUNTER_KIND       0 none, 1 cycles, 2 instructions                            (default 0)
 *   ES_COUNTER_SCALE_NUM  cost = round(counter_delta * NUM / DEN), e.g. SysTick ticks (default 1)
 *   ES_COUNTER_SCALE_DEN  under QEMU -icount -> instructions                          (default 1)
 *   ES_COUNTER_<SOURCE>   which counter the BSP reads: SYSTICK, DWT, MINSTRET, MCYCLE, CCOUNT (none if absent)
 *   ES_STACK_FLOOR        linker symbol below which the stack never goes, e.g. _ebss (bare-metal builds: set for
 *                         every board whose linker script includes ld/sections.ld); the stack-painting window of
 *                         es_app.c (ES_STACK_PAINT bytes below sp, default 1024, 0 = off) stays above it
 */
#ifndef ES_BSP_H
#define ES_BSP_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ES_CORE_NAME
#error "ES_CORE_NAME is not defined: it comes from the board's toml (firmware.defines) via build_flags"
#endif
#ifndef ES_COUNTER_KIND
#define ES_COUNTER_KIND 0
#endif
#ifndef ES_COUNTER_SCALE_NUM
#define ES_COUNTER_SCALE_NUM 1
#endif
#ifndef ES_COUNTER_SCALE_DEN
#define ES_COUNTER_SCALE_DEN 1
#endif

/* Clocks, UART (with its RX interrupt), interrupt controller. Called once, first. */
void es_bsp_init(void);

/* Take one received byte out of the RX ring (filled by the UART RX interrupt). 1 if *byte was set, 0 if the ring
 * is empty. Never blocks. */
int es_bsp_rx(uint8_t *byte);

/* Queue n bytes for transmission; may wait for room in the UART, never for the host. */
void es_bsp_tx(const uint8_t *p, size_t n);

/* Wait until every queued byte has left the UART (before a reset). */
void es_bsp_tx_flush(void);

/* Sleep until an interrupt (WFI) if no received byte is waiting; return at once otherwise. */
void es_bsp_idle(void);

/* The cost counter. start() (re)starts it from a known state and, on bare-metal BSPs, masks interrupts so that
 * nothing else runs inside a measurement; read() returns its value counting up (modulo 2^32, or modulo the
 * counter's width); stop() stops it, unmasks interrupts and returns nonzero if the counter wrapped since start()
 * (the measurement is then void). A board without a counter returns 0 from read() and stop(). */
void es_bsp_counter_start(void);
uint32_t es_bsp_counter_read(void);
int es_bsp_counter_stop(void);

/* Reset the whole system; does not return. */
void es_bsp_reset(void);

#ifdef __cplusplus
}
#endif
#endif /* ES_BSP_H */
