/* RV32 start-up (machine mode): global and stack pointers, .data copied from its load address, .bss cleared,
 * then main(). The symbols come from ld/sections.ld. */
    .section .text.es_entry, "ax"
    .globl es_reset_handler
    .type es_reset_handler, @function
es_reset_handler:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, _estack
    la a0, _sidata
    la a1, _sdata
    la a2, _edata
1:  bgeu a1, a2, 2f
    lw t0, 0(a0)
    sw t0, 0(a1)
    addi a0, a0, 4
    addi a1, a1, 4
    j 1b
2:  la a0, _sbss
    la a1, _ebss
3:  bgeu a0, a1, 4f
    sw zero, 0(a0)
    addi a0, a0, 4
    j 3b
4:  call main
5:  wfi
    j 5b
    .size es_reset_handler, . - es_reset_handler
