/* 8-bit AVR (ATmega328P: Arduino Uno) support for the Arduino entry (arduino/main.cpp): the cost counter, a
 * receive fallback and transmit flush that QEMU needs, and the reset. C99/C++, header-only, avr-libc. Counter source
 * from the board's toml:
 *
 * ES_COUNTER_TIMER1 (a real Uno): Timer1 counts CPU clocks (prescaler 1, normal mode) from 0 during one measurement,
 * then gets the core's settings back (analogWrite on pins 9 and 10 uses it). It is 16 bits: a call longer than 65,535
 * clocks (4 ms at 16 MHz) sets TOV1 and its cost is void. Costs are CPU cycles. Two details keep this path working
 * under QEMU 7.2 as well (where its counts follow host time): QEMU sets TOV1 only while TOIE1 enables its interrupt, so
 * TOIE1 is on during the measurement (interrupts are masked, and main.cpp's empty handler catches the request QEMU
 * keeps pending), and a TIFR1 write stores the value there instead of clearing the flags written as 1, so
 * ES_AVR_CLEAR_TOV1 writes 1 (clears it on the chip) and then 0 (clears it in QEMU, no effect on the chip).
 *
 * ES_COUNTER_ICOUNT_PLUGIN (qemu-uno): QEMU 7.2's AVR has no counter that gives instruction counts. Under -icount it
 * stops with "Bad icount read" as soon as the core starts Timer1 (its AVR I/O helpers read the virtual clock outside
 * an I/O-safe instruction); without -icount Timer1 follows host time, so its counts are noise. The instruction count
 * comes instead from QEMU itself, through the TCG plugin firmware/qemu/es_icount_plugin.c that edgesketch loads: the
 * marker instruction MOV r1, r1 makes it write the instructions run so far into es_avr_icount.count, which the
 * firmware finds in memory by 8 magic bytes written at start-up. Costs are instructions, exact like minstret.
 *
 * Either way interrupts are masked during a measurement (the millis() tick and the UART would otherwise run inside
 * it; millis() may lose a tick per millisecond measured). */
#ifndef ES_AVR_H
#define ES_AVR_H
#include <avr/interrupt.h>
#include <avr/io.h>
#include <stdint.h>
#include <util/delay.h>

static uint8_t es_avr_sreg, es_avr_tccr1a, es_avr_tccr1b, es_avr_timsk1;

#if defined(ES_COUNTER_ICOUNT_PLUGIN)
static volatile struct {
    uint8_t magic[8];
    uint32_t count;
} es_avr_icount;

/* The plugin's magic bytes, "es-icnt!", stored one by one (no copy of them as a run in the program image). */
static inline void es_avr_icount_init(void)
{
    es_avr_icount.magic[0] = 0x65;
    es_avr_icount.magic[1] = 0x73;
    es_avr_icount.magic[2] = 0x2d;
    es_avr_icount.magic[3] = 0x69;
    es_avr_icount.magic[4] = 0x63;
    es_avr_icount.magic[5] = 0x6e;
    es_avr_icount.magic[6] = 0x74;
    es_avr_icount.magic[7] = 0x21;
}
#else
static inline void es_avr_icount_init(void) {}
#endif

#define ES_AVR_CLEAR_TOV1() do { TIFR1 = _BV(TOV1); TIFR1 = 0; } while (0)

static inline void es_avr_counter_start(void)
{
#if defined(ES_COUNTER_ICOUNT_PLUGIN)
    es_avr_sreg = SREG;
    cli();
#elif defined(ES_COUNTER_TIMER1)
    es_avr_sreg = SREG;
    cli();
    es_avr_tccr1a = TCCR1A;
    es_avr_tccr1b = TCCR1B;
    es_avr_timsk1 = TIMSK1;
    TCCR1B = 0;                       /* stopped while it is set up */
    TCCR1A = 0;                       /* normal mode */
    TIMSK1 = _BV(TOIE1);              /* see above: QEMU sets TOV1 only then; I = 0, so no handler runs */
    TCNT1 = 0;
    ES_AVR_CLEAR_TOV1();
    TCCR1B = _BV(CS10);               /* clk/1 */
#endif
}

static inline uint32_t es_avr_counter_read(void)
{
#if defined(ES_COUNTER_ICOUNT_PLUGIN)
    __asm__ volatile("mov r1, r1" ::: "memory");   /* the plugin writes the count now */
    return es_avr_icount.count;
#elif defined(ES_COUNTER_TIMER1)
    return TCNT1;
#else
    return 0;
#endif
}

/* Nonzero if Timer1 overflowed during the measurement (the cost is then void). */
static inline int es_avr_counter_stop(void)
{
#if defined(ES_COUNTER_ICOUNT_PLUGIN)
    SREG = es_avr_sreg;
    return 0;                         /* 32 bits: no wrap within one call */
#elif defined(ES_COUNTER_TIMER1)
    int wrapped = (TIFR1 & _BV(TOV1)) != 0;
    TCCR1B = 0;
    ES_AVR_CLEAR_TOV1();
    TIMSK1 = es_avr_timsk1;
    TCCR1A = es_avr_tccr1a;
    TCCR1B = es_avr_tccr1b;
    SREG = es_avr_sreg;
    return wrapped;
#else
    return 0;
#endif
}

/* A received byte whose interrupt never came: UDR0 holds it (RXC0 set) while Serial's ring is empty. On the chip this
 * does not happen (the interrupt is pending and runs at the next SEI); QEMU 7.2 at times loses the USART's receive
 * interrupt, and the byte would wait forever. With interrupts masked the handler cannot take a byte meanwhile, and
 * ring_empty() is asked again under that mask: the byte in UDR0 is then the next one in order (had the handler run
 * between the caller's Serial.read() and here, the ring would hold the earlier byte). -1 if there is none. */
static inline int es_avr_rx_stray(int (*ring_empty)(void))
{
    int c = -1;
    uint8_t sreg = SREG;
    cli();
    if ((UCSR0A & _BV(RXC0)) && ring_empty())
        c = UDR0;
    SREG = sreg;
    return c;
}

/* Wait until the bytes queued for the USART have left, before a reset. Serial.flush() waits for TXC0, which QEMU 7.2
 * never sets again once HardwareSerial::write has cleared it (QEMU transmits at the UDR0 write, before that clear), so
 * it would wait forever there: this waits for Serial's transmit ring to empty, then for two character times (UDR0
 * and the shift register) as counted instructions, with no timer (QEMU's ATmega328P has no Timer0 for millis()). */
#define ES_AVR_CHAR_US (10u * 1000000u / (ES_BAUD) + 1u)
static inline void es_avr_tx_flush(int (*room)(void), int empty_room)
{
    while (room() < empty_room) {
    }
    _delay_us(2 * ES_AVR_CHAR_US);
}

/* A jump to the reset vector: the C run-time starts over (.data copied, .bss cleared) and the core's init() and
 * Serial.begin() set the peripherals up again. The watchdog reset would be complete on a real Uno, but QEMU 7.2 does
 * not model the watchdog. */
static inline void es_avr_reset(void)
{
    cli();
    __asm__ volatile("jmp 0" ::: "memory");
    for (;;) {
    }
}
#endif
