/*
 * ack.c - the 2-byte acknowledgements: PUBACK, PUBREC, PUBREL, PUBCOMP
 * (MQTT 3.1.1 sections 3.4-3.7) and UNSUBACK (3.11). Same body: a packet
 * identifier and nothing else.
 */
#include "mqtt/mqtt-internal.h"

gw_err_t gw_mqtt__decode_ack(gw_mqtt_reader_t *r, gw_mqtt_ack_t *out)
{
    gw_err_t err;

    out->packet_id = 0;
    if ((err = gw_mqtt__read_u16(r, &out->packet_id)) != GW_OK)
        return err;
    if ((err = gw_mqtt__reader_end(r)) != GW_OK)
        return err;
    if (out->packet_id == 0)
        return GW_ERR_MQTT_PACKET_ID; /* MQTT-2.3.1-1 */
    return GW_OK;
}

gw_err_t gw_mqtt__ack_size(const gw_mqtt_ack_t *a, uint32_t *rem)
{
    if (a->packet_id == 0)
        return GW_ERR_INVAL;
    *rem = 2;
    return GW_OK;
}

void gw_mqtt__ack_write(const gw_mqtt_ack_t *a, gw_mqtt_writer_t *w)
{
    gw_mqtt__write_u16(w, a->packet_id);
}

void gw_mqtt_encode_ack(gw_mqtt_type_t type, uint16_t packet_id, uint8_t out[4])
{
    out[0] = (uint8_t)((unsigned)type << 4 | gw_mqtt__required_flags(type));
    out[1] = 2;
    out[2] = (uint8_t)(packet_id >> 8);
    out[3] = (uint8_t)packet_id;
}
