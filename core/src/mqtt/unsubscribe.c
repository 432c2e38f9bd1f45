/*
 * unsubscribe.c - UNSUBSCRIBE (MQTT 3.1.1 section 3.10): a packet id and a
 * topic list without QoS bytes; the form is shared with SUBSCRIBE
 * (gw_mqtt__*_id_topics in subscribe.c).
 */
#include "mqtt/mqtt-internal.h"

gw_err_t gw_mqtt__decode_unsubscribe(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                     gw_mqtt_unsubscribe_t *out)
{
    return gw_mqtt__decode_id_topics(ctx, r, false, &out->packet_id, &out->topics);
}

gw_err_t gw_mqtt__unsubscribe_size(const gw_mqtt_unsubscribe_t *u, uint32_t *rem)
{
    return gw_mqtt__id_topics_size(u->packet_id, &u->topics, false, rem);
}

void gw_mqtt__unsubscribe_write(const gw_mqtt_unsubscribe_t *u, gw_mqtt_writer_t *w)
{
    gw_mqtt__id_topics_write(u->packet_id, &u->topics, w);
}
