/*
 * connack.c - CONNACK (MQTT 3.1.1 section 3.2).
 */
#include "mqtt/mqtt-internal.h"

gw_err_t gw_mqtt__decode_connack(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                 gw_mqtt_connack_t *out)
{
    uint8_t ack_flags, rc;
    gw_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = gw_mqtt__read_u8(r, &ack_flags)) != GW_OK)
        return err;
    if ((err = gw_mqtt__read_u8(r, &rc)) != GW_OK)
        return err;
    if ((err = gw_mqtt__reader_end(r)) != GW_OK)
        return err;
    /* MQTT 3.2.2.1: bits 7-1 of the acknowledge flags are reserved, 0. */
    if (ack_flags & 0xfe)
        return GW_ERR_MQTT_PROTOCOL;
    /* MQTT 3.2.2.3: 6-255 are reserved return codes. */
    if (rc > GW_MQTT_CONNACK_NOT_AUTHORIZED)
        return GW_ERR_MQTT_PROTOCOL;
    out->session_present = ack_flags & 0x01;
    out->return_code = rc;
    /* MQTT-3.2.2-4: session present must be 0 with a non-zero return code
     * (3.1 had no session present bit at all). */
    if (out->session_present && rc != GW_MQTT_CONNACK_ACCEPTED)
        return GW_ERR_MQTT_PROTOCOL;
    return GW_OK;
}

gw_err_t gw_mqtt__connack_size(const gw_mqtt_ctx_t *ctx, const gw_mqtt_connack_t *c,
                               uint32_t *rem)
{
    if (c->return_code > GW_MQTT_CONNACK_NOT_AUTHORIZED)
        return GW_ERR_INVAL;
    if (c->session_present && c->return_code != GW_MQTT_CONNACK_ACCEPTED)
        return GW_ERR_INVAL;
    *rem = 2;
    return GW_OK;
}

void gw_mqtt__connack_write(const gw_mqtt_connack_t *c, gw_mqtt_writer_t *w)
{
    gw_mqtt__write_u8(w, c->session_present ? 0x01 : 0x00);
    gw_mqtt__write_u8(w, c->return_code);
}
