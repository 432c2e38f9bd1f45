/*
 * publish.c - PUBLISH (MQTT 3.1.1 section 3.3).
 */
#include "mqtt/mqtt-internal.h"

#define GW_PUBLISH_DUP 0x08
#define GW_PUBLISH_RETAIN 0x01

gw_err_t gw_mqtt__decode_publish(const gw_mqtt_ctx_t *ctx, uint8_t flags, gw_mqtt_reader_t *r,
                                 gw_mqtt_publish_t *out)
{
    gw_err_t err;

    out->dup = flags & GW_PUBLISH_DUP;
    out->qos = (flags >> 1) & 0x3;
    out->retain = flags & GW_PUBLISH_RETAIN;
    out->packet_id = 0;
    out->payload.ptr = NULL;
    out->payload.len = 0;
    out->topic.ptr = "";
    out->topic.len = 0;
    if (out->qos == 3)
        return GW_ERR_MQTT_QOS; /* MQTT-3.3.1-4 */
    /* MQTT-3.3.1-2: DUP must be 0 for QoS 0. MQTT 3.1 only said DUP is
     * meaningless for QoS 0, so level 3 tolerates it. */
    if (out->dup && out->qos == 0 && gw_mqtt__level(ctx) == GW_MQTT_PROTOCOL_V311)
        return GW_ERR_MQTT_PROTOCOL;
    if ((err = gw_mqtt__read_lstr_raw(r, &out->topic)) != GW_OK)
        return err;
    /* MQTT-3.3.2-1/2, MQTT-4.7.3-1 */
    if ((err = gw_topic_name_validate(ctx, out->topic.ptr, out->topic.len)) != GW_OK)
        return err;
    if (out->qos > 0) {
        if ((err = gw_mqtt__read_u16(r, &out->packet_id)) != GW_OK)
            return err;
        if (out->packet_id == 0)
            return GW_ERR_MQTT_PACKET_ID; /* MQTT-2.3.1-1 */
    }
    gw_mqtt__read_rest(r, &out->payload);
    return GW_OK;
}

uint8_t gw_mqtt__publish_flags(const gw_mqtt_publish_t *p)
{
    return (uint8_t)((p->dup ? GW_PUBLISH_DUP : 0) | (p->qos << 1) |
                     (p->retain ? GW_PUBLISH_RETAIN : 0));
}

gw_err_t gw_mqtt__publish_size(const gw_mqtt_ctx_t *ctx, const gw_mqtt_publish_t *p,
                               uint32_t payload_len, uint32_t *rem)
{
    uint64_t n;

    if (p->qos > 2)
        return GW_ERR_INVAL;
    if (p->dup && p->qos == 0 && gw_mqtt__level(ctx) == GW_MQTT_PROTOCOL_V311)
        return GW_ERR_INVAL;
    if (p->qos > 0 && p->packet_id == 0)
        return GW_ERR_INVAL;
    if (p->topic.len == 0)
        return GW_ERR_INVAL;
    n = 2u + (uint64_t)p->topic.len + (p->qos ? 2u : 0u) + payload_len;
    if (n > GW_MQTT_MAX_REMAINING_LENGTH)
        return GW_ERR_INVAL;
    *rem = (uint32_t)n;
    return GW_OK;
}

void gw_mqtt__publish_write_varhdr(const gw_mqtt_publish_t *p, gw_mqtt_writer_t *w)
{
    gw_mqtt__write_lbytes(w, p->topic.ptr, p->topic.len);
    if (p->qos > 0)
        gw_mqtt__write_u16(w, p->packet_id);
}

gw_err_t gw_mqtt_encode_publish_header(const gw_mqtt_publish_t *pub, uint32_t payload_len,
                                       uint8_t *buf, size_t cap, size_t *written)
{
    gw_mqtt_writer_t w;
    uint32_t rem;
    size_t need;
    gw_err_t err;

    *written = 0;
    if ((err = gw_mqtt__publish_size(NULL, pub, payload_len, &rem)) != GW_OK)
        return err;
    need = 1 + gw_mqtt__varint_size(rem) + (rem - payload_len);
    if (cap < need) {
        *written = need;
        return GW_ERR_NOSPACE;
    }
    gw_mqtt__writer_init(&w, buf, cap);
    gw_mqtt__write_u8(&w, (uint8_t)(GW_MQTT_PUBLISH << 4 | gw_mqtt__publish_flags(pub)));
    gw_mqtt__write_varint(&w, rem);
    gw_mqtt__publish_write_varhdr(pub, &w);
    if (w.overflow)
        return GW_ERR_INVAL;
    *written = w.off;
    return GW_OK;
}
