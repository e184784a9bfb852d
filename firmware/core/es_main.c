/* Bare-metal entry: initialise the board, then serve frames and sleep (WFI) whenever no byte is waiting. */
#include "es_app.h"
#include "es_bsp.h"

int main(void)
{
    es_bsp_init();
    es_app_start();
    for (;;) {
        es_app_poll();
        es_bsp_idle();
    }
}
