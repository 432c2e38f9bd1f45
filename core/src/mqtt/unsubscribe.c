/*
 * unsubscribe.c - UNSUBSCRIBE (MQTT 3.1.1 section 3.10). The topic list
 * itself is shared with SUBSCRIBE (subscribe.c), without QoS bytes.
 */
#include "mqtt/mqtt-internal.h"

gw_err_t gw_mqtt__decode_unsubscribe(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                     gw_mqtt_unsubscribe_t *out)
{
    gw_err_t err;

    out->packet_id = 0;
    memset(&out->topics, 0, sizeof(out->topics));
    if ((err = gw_mqtt__read_u16(r, &out->packet_id)) != GW_OK)
        return err;
    if (out->packet_id == 0)
        return GW_ERR_MQTT_PACKET_ID; /* MQTT-2.3.1-1 */
    return gw_mqtt__decode_topics(ctx, r, false, &out->topics);
}

gw_err_t gw_mqtt__unsubscribe_size(const gw_mqtt_unsubscribe_t *u, uint32_t *rem)
{
    gw_err_t err;

    if (u->packet_id == 0)
        return GW_ERR_INVAL;
    if ((err = gw_mqtt__topics_check(&u->topics, false)) != GW_OK)
        return err;
    if (u->topics.len > GW_MQTT_MAX_REMAINING_LENGTH - 2u)
        return GW_ERR_INVAL;
    *rem = 2 + u->topics.len;
    return GW_OK;
}

void gw_mqtt__unsubscribe_write(const gw_mqtt_unsubscribe_t *u, gw_mqtt_writer_t *w)
{
    gw_mqtt__write_u16(w, u->packet_id);
    gw_mqtt__write_bytes(w, u->topics.ptr, u->topics.len);
}
