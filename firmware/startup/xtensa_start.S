/* Xtensa lx106 start-up (call0 ABI, QEMU lx60 machine): exception vectors at VECBASE, the reset entry (stack, VECBASE,
 * PS, .data copied from its load address, .bss cleared, then main()) and the level-1 interrupt / user exception
 * handler. Symbols from ld/sections.ld. Interrupts are taken with PS.UM = 1, so a level-1 interrupt arrives at the
 * user exception vector (VECBASE + 0x50) with EXCCAUSE 4; es_xtensa_irq() (bsp/xtensa.c) serves it. Every other
 * exception calls es_xtensa_fault(), which resets the system (a device never hangs). */
#define PS_UM       0x20            /* user vector mode, INTLEVEL 0, EXCM 0 */
#define EXCCAUSE_LEVEL1_INTERRUPT 4
#define FRAME       64              /* a0, a2..a11, SAR; a multiple of 16 */

    .section .text.es_entry, "ax"
    .align 4
    .global es_vectors
es_vectors:                         /* VECBASE: placed first in .text, at the start of the code memory */
    .org es_vectors + 0x10          /* debug exception */
    j es_fatal_
    .org es_vectors + 0x20          /* NMI (level 3) */
    j es_fatal_
    .org es_vectors + 0x30          /* kernel exception (PS.UM = 0) */
    j es_fatal_
    .org es_vectors + 0x50          /* user exception: level-1 interrupts, exceptions */
    addi a1, a1, -FRAME
    s32i a0, a1, 0
    j es_user_exception_
    .org es_vectors + 0x70          /* double exception */
    j es_fatal_
    .org es_vectors + 0x80

    .literal_position
    .align 4
    .global es_reset_handler
    .type es_reset_handler, @function
es_reset_handler:
    movi a0, 0
    movi a1, _estack
    movi a2, 0
    wsr a2, intenable
    movi a2, es_vectors
    wsr a2, vecbase
    movi a2, PS_UM
    wsr a2, ps
    rsync
    movi a2, _sidata
    movi a3, _sdata
    movi a4, _edata
1:  bgeu a3, a4, 2f
    l32i a5, a2, 0
    s32i a5, a3, 0
    addi a2, a2, 4
    addi a3, a3, 4
    j 1b
2:  movi a3, _sbss
    movi a4, _ebss
3:  bgeu a3, a4, 4f
    s32i a0, a3, 0
    addi a3, a3, 4
    j 3b
4:  movi a0, main
    callx0 a0
5:  waiti 15
    j 5b
    .size es_reset_handler, . - es_reset_handler

    .align 4
es_user_exception_:                 /* a1 already lowered by FRAME, a0 saved at 0(a1) */
    s32i a2, a1, 4
    s32i a3, a1, 8
    s32i a4, a1, 12
    s32i a5, a1, 16
    s32i a6, a1, 20
    s32i a7, a1, 24
    s32i a8, a1, 28
    s32i a9, a1, 32
    s32i a10, a1, 36
    s32i a11, a1, 40
    rsr a2, sar
    s32i a2, a1, 44
    rsr a2, exccause
    bnei a2, EXCCAUSE_LEVEL1_INTERRUPT, es_fatal_
    movi a0, es_xtensa_irq          /* C, call0 ABI: preserves a12..a15 */
    callx0 a0
    l32i a2, a1, 44
    wsr a2, sar
    l32i a11, a1, 40
    l32i a10, a1, 36
    l32i a9, a1, 32
    l32i a8, a1, 28
    l32i a7, a1, 24
    l32i a6, a1, 20
    l32i a5, a1, 16
    l32i a4, a1, 12
    l32i a3, a1, 8
    l32i a2, a1, 4
    l32i a0, a1, 0
    addi a1, a1, FRAME
    rfe

es_fatal_:
    movi a0, es_xtensa_fault        /* resets; does not return */
    callx0 a0
6:  j 6b
