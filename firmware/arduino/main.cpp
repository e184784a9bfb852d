// edgesketch firmware entry for real boards with the Arduino framework (ESP32, STM32, nRF52, RP2040, Teensy).
// The protocol core is firmware/core (es_app.c); this file is its board-support half on top of `Serial`, which
// already buffers received bytes from its interrupt. Board facts come from boards/<name>.toml as -D flags.
#include <Arduino.h>

#include "es_app.h"
#include "es_bsp.h"
#if defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK) || defined(__arm__)
#include "cortexm.h"
#endif

#ifndef ES_BAUD
#define ES_BAUD 115200
#endif

extern "C" void es_bsp_init(void)
{
    Serial.begin(ES_BAUD);
    const unsigned long t0 = millis();
    while (!Serial && millis() - t0 < 2000) {  // USB CDC boards: give the host a moment to open the port
    }
}

extern "C" int es_bsp_rx(uint8_t *byte)
{
    const int c = Serial.read();
    if (c < 0)
        return 0;
    *byte = (uint8_t)c;
    return 1;
}

extern "C" void es_bsp_tx(const uint8_t *p, size_t n) { Serial.write(p, n); }
extern "C" void es_bsp_tx_flush(void) { Serial.flush(); }
extern "C" void es_bsp_idle(void) {}  // loop() returns to the core, which may yield or sleep itself

// Cycle counter (interrupts stay on: the framework needs them).
extern "C" void es_bsp_counter_start(void)
{
#if defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK)
    es_cm_counter_start();
#endif
}

extern "C" uint32_t es_bsp_counter_read(void)
{
#if defined(ES_COUNTER_ESP_CYCLE_COUNT)
    return ESP.getCycleCount();
#elif defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK)
    return es_cm_counter_read();
#else
    return 0;
#endif
}

extern "C" int es_bsp_counter_stop(void)
{
#if defined(ES_COUNTER_DWT) || defined(ES_COUNTER_SYSTICK)
    return es_cm_counter_stop();
#else
    return 0;
#endif
}

extern "C" void es_bsp_reset(void)
{
    delay(20);
#if defined(ARDUINO_ARCH_ESP32)
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
