/*
 * disconnect.c - DISCONNECT (MQTT 3.1.1 section 3.14): no variable header,
 * no payload.
 */
#include "mqtt/mqtt-internal.h"

gw_err_t gw_mqtt__decode_disconnect(gw_mqtt_reader_t *r)
{
    return gw_mqtt__reader_end(r);
}
