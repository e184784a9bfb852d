/* The portable firmware core: the protocol of docs/protocol.md on top of es_proto.h, es_bsp.h and es_model.h.
 * A bare-metal main (es_main.c) or an Arduino sketch (firmware/arduino/main.cpp) drives it. C99, no malloc. */
#ifndef ES_APP_H
#define ES_APP_H

#ifdef __cplusplus
extern "C" {
#endif

/* After es_bsp_init(): calibrate the cost counter and send the unsolicited BOOT frame. */
void es_app_start(void);
/* Handle every byte the BSP has received so far (replies are sent from here). Never blocks on the host. */
void es_app_poll(void);

#ifdef __cplusplus
}
#endif
#endif
