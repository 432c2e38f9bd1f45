/*
 * ping.c - PINGREQ and PINGRESP (MQTT 3.1.1 sections 3.12, 3.13): no
 * variable header, no payload.
 */
#include "mqtt/mqtt-internal.h"

gw_err_t gw_mqtt__decode_ping(gw_mqtt_reader_t *r)
{
    return gw_mqtt__reader_end(r);
}
