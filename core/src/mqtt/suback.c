/*
 * suback.c - SUBACK (MQTT 3.1.1 section 3.9).
 */
#include "mqtt/mqtt-internal.h"

static inline bool gw_suback__code_valid(uint8_t c)
{
    return c <= 2 || c == GW_MQTT_SUBACK_FAILURE; /* MQTT-3.9.3-2 */
}

gw_err_t gw_mqtt__decode_suback(gw_mqtt_reader_t *r, gw_mqtt_suback_t *out)
{
    gw_mqtt_bin_t codes;
    gw_err_t err;

    out->packet_id = 0;
    out->codes = NULL;
    out->count = 0;
    if ((err = gw_mqtt__read_u16(r, &out->packet_id)) != GW_OK)
        return err;
    if (out->packet_id == 0)
        return GW_ERR_MQTT_PACKET_ID; /* MQTT-2.3.1-1 */
    gw_mqtt__read_rest(r, &codes);
    /* One code per filter of the SUBSCRIBE, which had at least one. */
    if (codes.len == 0)
        return GW_ERR_MQTT_EMPTY_PAYLOAD;
    if (codes.len > UINT16_MAX)
        return GW_ERR_MQTT_TOO_LARGE;
    for (uint32_t i = 0; i < codes.len; i++) {
        if (!gw_suback__code_valid(codes.ptr[i]))
            return GW_ERR_MQTT_PROTOCOL;
    }
    out->codes = codes.ptr;
    out->count = (uint16_t)codes.len;
    return GW_OK;
}

gw_err_t gw_mqtt__suback_size(const gw_mqtt_suback_t *s, uint32_t *rem)
{
    if (s->packet_id == 0 || s->count == 0 || s->codes == NULL)
        return GW_ERR_INVAL;
    for (uint32_t i = 0; i < s->count; i++) {
        if (!gw_suback__code_valid(s->codes[i]))
            return GW_ERR_INVAL;
    }
    *rem = 2u + s->count;
    return GW_OK;
}

void gw_mqtt__suback_write(const gw_mqtt_suback_t *s, gw_mqtt_writer_t *w)
{
    gw_mqtt__write_u16(w, s->packet_id);
    gw_mqtt__write_bytes(w, s->codes, s->count);
}
