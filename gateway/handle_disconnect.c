/*
 * handle_disconnect.c - DISCONNECT: the clean way out. The will is cleared
 * (AMQP_WILL_CLEAR, will link closed without error: MQTT-3.14.4-3) and every
 * link and session is closed cleanly.
 */
#include "gateway.h"

gw_err_t gw_handle_disconnect(gw_client_t *c)
{
    gw_client_close(c, GW_CLOSE_CLEAN, "DISCONNECT");
    return GW_OK;
}
