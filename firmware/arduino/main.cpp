// edgesketch firmware entry for boards with the Arduino framework (ESP32, ESP8266, STM32, nRF52, RP2040, Teensy, the
// AVR Uno; qemu-uno runs it on Arduino's own AVR core under QEMU). The protocol core is firmware/core (es_app.c); this
// file is its board-support half on top of `Serial`, which already buffers received bytes from its interrupt. Board
// facts come from boards/<name>.toml as -D flags.
#include <Arduino.h>

#include "es_app.h"
#include "es_bsp.h"
#if defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK) || defined(__arm__)
#include "cortexm.h"
#endif
#if defined(__AVR__)
#include "avr.h"
#endif

#ifndef ES_BAUD
#define ES_BAUD 115200
#endif

// ES_SERIAL_RX_WHOLE_FRAME (a board fact, e.g. qemu-uno's toml): bytes may arrive faster than loop() drains them, so
// Serial's receive ring must hold a whole frame: the host's leading 0x00 and up to ES_PROTO_MAX_WIRE encoded bytes (the
// ring holds SERIAL_RX_BUFFER_SIZE - 1). A real UART at 115200 baud is slow enough for the core's 64 bytes.
#if defined(ES_SERIAL_RX_WHOLE_FRAME)
#include "es_proto.h"
#if !defined(SERIAL_RX_BUFFER_SIZE) || SERIAL_RX_BUFFER_SIZE < ES_PROTO_MAX_WIRE + 2
#error "SERIAL_RX_BUFFER_SIZE must be at least ES_PROTO_MAX_WIRE + 2 (a whole frame): raise it or lower ES_PROTO_MAX_BODY in the board's toml"
#endif
#endif

extern "C" void es_bsp_init(void)
{
    Serial.begin(ES_BAUD);
    const unsigned long t0 = millis();
    while (!Serial && millis() - t0 < 2000) {  // USB CDC boards: give the host a moment to open the port
    }
#if defined(__AVR__)
    es_avr_icount_init();
#endif
}

#if defined(__AVR__)
static int es_rx_ring_empty(void) { return Serial.available() == 0; }
#endif

extern "C" int es_bsp_rx(uint8_t *byte)
{
    int c = Serial.read();
#if defined(__AVR__)
    if (c < 0)
        c = es_avr_rx_stray(es_rx_ring_empty);  // a byte QEMU did not raise the interrupt for (avr.h)
#endif
    if (c < 0)
        return 0;
    *byte = (uint8_t)c;
    return 1;
}

extern "C" void es_bsp_tx(const uint8_t *p, size_t n) { Serial.write(p, n); }
#if defined(__AVR__)
static int es_tx_room(void) { return Serial.availableForWrite(); }
extern "C" void es_bsp_tx_flush(void) { es_avr_tx_flush(es_tx_room, SERIAL_TX_BUFFER_SIZE - 1); }  // not flush(): avr.h
#else
extern "C" void es_bsp_tx_flush(void) { Serial.flush(); }
#endif
extern "C" void es_bsp_idle(void) {}  // loop() returns to the core, which may yield or sleep itself

// Cycle counter (interrupts stay on: the framework needs them; AVR masks them for the measurement, see avr.h).
extern "C" void es_bsp_counter_start(void)
{
#if defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK)
    es_cm_counter_start();
#elif defined(__AVR__)
    es_avr_counter_start();
#endif
}

extern "C" uint32_t es_bsp_counter_read(void)
{
#if defined(ES_COUNTER_ESP_CYCLE_COUNT)
    return ESP.getCycleCount();
#elif defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK)
    return es_cm_counter_read();
#elif defined(__AVR__)
    return es_avr_counter_read();
#else
    return 0;
#endif
}

extern "C" int es_bsp_counter_stop(void)
{
#if defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK)
    return es_cm_counter_stop();
#elif defined(__AVR__)
    return es_avr_counter_stop();
#else
    return 0;
#endif
}

#if defined(__AVR__) && defined(ES_COUNTER_TIMER1)
ISR(TIMER1_OVF_vect) {}  // QEMU keeps an overflow of the measurement pending after TOIE1 is off again (avr.h)
#endif

extern "C" void es_bsp_reset(void)
{
#if defined(__AVR__)
    es_avr_reset();                           // no delay(): QEMU's ATmega328P has no Timer0, so millis() stands still
#endif
    delay(20);
#if defined(ARDUINO_ARCH_ESP32) || defined(ARDUINO_ARCH_ESP8266)
    ESP.restart();
#elif defined(__arm__)
    es_cm_reset();
#endif
    for (;;) {
    }
}

void setup()
{
    es_bsp_init();
    es_app_start();
}

void loop()
{
    es_app_poll();
}
