/* CPU half of the bare-metal BSP for RV32 in machine mode with a PLIC (QEMU riscv virt): trap handler, WFI idle,
 * minstret/mcycle counter, reset. See es_cpu.h. From the board's toml: ES_PLIC_BASE, ES_UART_IRQ, ES_RESET_ADDR and
 * ES_RESET_VALUE (the virt machine's sifive_test device: 0x7777 resets), ES_COUNTER_MINSTRET or ES_COUNTER_MCYCLE.
 *
 * CSR instructions are assembled with `.option arch,+zicsr`: building with -march=rv32imc_zicsr would make this
 * toolchain pick its rv64 library set. */
#include "es_bsp.h"
#include "es_cpu.h"
#include "es_ring.h"

#if !defined(ES_PLIC_BASE) || !defined(ES_UART_IRQ) || !defined(ES_RESET_ADDR) || !defined(ES_RESET_VALUE)
#error "ES_PLIC_BASE, ES_UART_IRQ, ES_RESET_ADDR and ES_RESET_VALUE come from the board's toml"
#endif

#define ES_CSR_READ(csr, v) \
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrr %0, " #csr "\n\t.option pop" : "=r"(v) :: "memory")
#define ES_CSR_WRITE(csr, v) \
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrw " #csr ", %0\n\t.option pop" :: "r"(v) : "memory")
#define ES_CSR_SET(csr, v) \
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrs " #csr ", %0\n\t.option pop" :: "r"(v) : "memory")
#define ES_CSR_CLEAR(csr, v) \
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrc " #csr ", %0\n\t.option pop" :: "r"(v) : "memory")

#define MSTATUS_MIE (1u << 3)
#define MIE_MEIE (1u << 11)
#define MCAUSE_IRQ 0x80000000u
#define MCAUSE_MEXT 11u

#define PLIC_PRIORITY(irq) ES_REG32(ES_PLIC_BASE + 4u * (irq))
#define PLIC_ENABLE(word)  ES_REG32(ES_PLIC_BASE + 0x2000u + 4u * (word))   /* context 0: hart 0, M-mode */
#define PLIC_THRESHOLD     ES_REG32(ES_PLIC_BASE + 0x200000u)
#define PLIC_CLAIM         ES_REG32(ES_PLIC_BASE + 0x200004u)

void es_trap_handler(void) __attribute__((interrupt("machine"), aligned(4)));

void es_trap_handler(void)
{
    uint32_t cause;
    ES_CSR_READ(mcause, cause);
    if (cause == (MCAUSE_IRQ | MCAUSE_MEXT)) {
        uint32_t irq = PLIC_CLAIM;
        if (irq == ES_UART_IRQ)
            es_uart_irq_handler();
        PLIC_CLAIM = irq;             /* complete */
    } else {
        es_bsp_reset();               /* an exception: start over rather than hang */
    }
}

void es_cpu_init(void)
{
    uint32_t v = (uint32_t)(uintptr_t)es_trap_handler;   /* direct mode */
    ES_CSR_WRITE(mtvec, v);
    PLIC_THRESHOLD = 0;
    v = MIE_MEIE;
    ES_CSR_SET(mie, v);
    v = MSTATUS_MIE;
    ES_CSR_SET(mstatus, v);
}

void es_cpu_irq_enable(unsigned irq)
{
    PLIC_PRIORITY(irq) = 1u;
    PLIC_ENABLE(irq / 32u) |= 1u << (irq % 32u);
}

/* WFI wakes on a pending enabled interrupt even with mstatus.MIE clear, so checking the ring with MIE clear and
 * then sleeping cannot miss a byte. */
void es_bsp_idle(void)
{
    uint32_t v = MSTATUS_MIE;
    ES_CSR_CLEAR(mstatus, v);
    if (es_ring_empty())
        __asm__ volatile("wfi" ::: "memory");
    ES_CSR_SET(mstatus, v);
}

void es_bsp_counter_start(void)
{
    uint32_t v = MSTATUS_MIE;
    ES_CSR_CLEAR(mstatus, v);
}

uint32_t es_bsp_counter_read(void)
{
    uint32_t v;
#if defined(ES_COUNTER_MINSTRET)
    ES_CSR_READ(minstret, v);
#elif defined(ES_COUNTER_MCYCLE)
    ES_CSR_READ(mcycle, v);
#else
    v = 0;
#endif
    return v;
}

int es_bsp_counter_stop(void)
{
    uint32_t v = MSTATUS_MIE;
    ES_CSR_SET(mstatus, v);
    return 0;                         /* 32 bits: no wrap within one call */
}

void es_bsp_reset(void)
{
    ES_REG32(ES_RESET_ADDR) = ES_RESET_VALUE;
    for (;;) {
    }
}
