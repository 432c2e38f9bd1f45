/*
 * codec.c - the one dispatcher: decode / encode switch on the packet type.
 * Per-type logic lives in one file per packet type.
 */
#include "mqtt/mqtt-internal.h"

static const char *const gw_mqtt_type_names[16] = {
    [GW_MQTT_CONNECT] = "CONNECT",         [GW_MQTT_CONNACK] = "CONNACK",
    [GW_MQTT_PUBLISH] = "PUBLISH",         [GW_MQTT_PUBACK] = "PUBACK",
    [GW_MQTT_PUBREC] = "PUBREC",           [GW_MQTT_PUBREL] = "PUBREL",
    [GW_MQTT_PUBCOMP] = "PUBCOMP",         [GW_MQTT_SUBSCRIBE] = "SUBSCRIBE",
    [GW_MQTT_SUBACK] = "SUBACK",           [GW_MQTT_UNSUBSCRIBE] = "UNSUBSCRIBE",
    [GW_MQTT_UNSUBACK] = "UNSUBACK",       [GW_MQTT_PINGREQ] = "PINGREQ",
    [GW_MQTT_PINGRESP] = "PINGRESP",       [GW_MQTT_DISCONNECT] = "DISCONNECT",
};

const char *gw_mqtt_type_name(gw_mqtt_type_t type)
{
    if ((unsigned)type >= 16 || gw_mqtt_type_names[type] == NULL)
        return "RESERVED";
    return gw_mqtt_type_names[type];
}

gw_err_t gw_mqtt_decode(const gw_mqtt_ctx_t *ctx, const gw_mqtt_frame_t *frame,
                        gw_mqtt_packet_t *out)
{
    gw_mqtt_type_t type = (gw_mqtt_type_t)(frame->header >> 4);
    uint8_t flags = frame->header & 0x0f;
    gw_mqtt_reader_t r;

    memset(out, 0, sizeof(*out));
    out->type = type;
    if (type < GW_MQTT_CONNECT || type > GW_MQTT_DISCONNECT)
        return GW_ERR_MQTT_BAD_TYPE;
    /* MQTT-2.2.2-1/2: only PUBLISH has meaningful flags. */
    if (type != GW_MQTT_PUBLISH && flags != gw_mqtt__required_flags(type))
        return GW_ERR_MQTT_RESERVED_FLAGS;
    gw_mqtt__reader_init(&r, frame->body, frame->body_len);

    switch (type) {
    case GW_MQTT_CONNECT:
        return gw_mqtt__decode_connect(ctx, &r, &out->u.connect);
    case GW_MQTT_CONNACK:
        return gw_mqtt__decode_connack(ctx, &r, &out->u.connack);
    case GW_MQTT_PUBLISH:
        return gw_mqtt__decode_publish(ctx, flags, &r, &out->u.publish);
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBREL:
    case GW_MQTT_PUBCOMP:
    case GW_MQTT_UNSUBACK:
        return gw_mqtt__decode_ack(&r, &out->u.ack);
    case GW_MQTT_SUBSCRIBE:
        return gw_mqtt__decode_subscribe(ctx, &r, &out->u.subscribe);
    case GW_MQTT_SUBACK:
        return gw_mqtt__decode_suback(&r, &out->u.suback);
    case GW_MQTT_UNSUBSCRIBE:
        return gw_mqtt__decode_unsubscribe(ctx, &r, &out->u.unsubscribe);
    case GW_MQTT_PINGREQ:
    case GW_MQTT_PINGRESP:
        return gw_mqtt__decode_ping(&r);
    case GW_MQTT_DISCONNECT:
        return gw_mqtt__decode_disconnect(&r);
    }
    return GW_ERR_MQTT_BAD_TYPE;
}

/* Remaining length of pkt, or GW_ERR_INVAL if it cannot be encoded. */
static gw_err_t gw_mqtt__body_size(const gw_mqtt_ctx_t *ctx, const gw_mqtt_packet_t *pkt,
                                   uint32_t *rem)
{
    switch (pkt->type) {
    case GW_MQTT_CONNECT:
        return gw_mqtt__connect_size(&pkt->u.connect, rem);
    case GW_MQTT_CONNACK:
        return gw_mqtt__connack_size(ctx, &pkt->u.connack, rem);
    case GW_MQTT_PUBLISH:
        return gw_mqtt__publish_size(ctx, &pkt->u.publish, pkt->u.publish.payload.len, rem);
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBREL:
    case GW_MQTT_PUBCOMP:
    case GW_MQTT_UNSUBACK:
        return gw_mqtt__ack_size(&pkt->u.ack, rem);
    case GW_MQTT_SUBSCRIBE:
        return gw_mqtt__subscribe_size(&pkt->u.subscribe, rem);
    case GW_MQTT_SUBACK:
        return gw_mqtt__suback_size(&pkt->u.suback, rem);
    case GW_MQTT_UNSUBSCRIBE:
        return gw_mqtt__unsubscribe_size(&pkt->u.unsubscribe, rem);
    case GW_MQTT_PINGREQ:
    case GW_MQTT_PINGRESP:
    case GW_MQTT_DISCONNECT:
        *rem = 0;
        return GW_OK;
    }
    return GW_ERR_INVAL;
}

size_t gw_mqtt_encoded_size(const gw_mqtt_ctx_t *ctx, const gw_mqtt_packet_t *pkt)
{
    uint32_t rem;

    if (gw_mqtt__body_size(ctx, pkt, &rem) != GW_OK || rem > GW_MQTT_MAX_REMAINING_LENGTH)
        return 0;
    return 1 + gw_mqtt__varint_size(rem) + rem;
}

gw_err_t gw_mqtt_encode(const gw_mqtt_ctx_t *ctx, const gw_mqtt_packet_t *pkt, uint8_t *buf,
                        size_t cap, size_t *written)
{
    gw_mqtt_writer_t w;
    uint32_t rem;
    uint8_t flags;
    size_t need;
    gw_err_t err;

    *written = 0;
    if ((err = gw_mqtt__body_size(ctx, pkt, &rem)) != GW_OK)
        return err;
    if (rem > GW_MQTT_MAX_REMAINING_LENGTH)
        return GW_ERR_INVAL;
    need = 1 + gw_mqtt__varint_size(rem) + rem;
    if (cap < need || buf == NULL) {
        *written = need;
        return GW_ERR_NOSPACE;
    }
    gw_mqtt__writer_init(&w, buf, cap);
    flags = pkt->type == GW_MQTT_PUBLISH ? gw_mqtt__publish_flags(&pkt->u.publish)
                                         : gw_mqtt__required_flags(pkt->type);
    gw_mqtt__write_u8(&w, (uint8_t)((unsigned)pkt->type << 4 | flags));
    gw_mqtt__write_varint(&w, rem);

    switch (pkt->type) {
    case GW_MQTT_CONNECT:
        gw_mqtt__connect_write(&pkt->u.connect, &w);
        break;
    case GW_MQTT_CONNACK:
        gw_mqtt__connack_write(&pkt->u.connack, &w);
        break;
    case GW_MQTT_PUBLISH:
        gw_mqtt__publish_write_varhdr(&pkt->u.publish, &w);
        gw_mqtt__write_bytes(&w, pkt->u.publish.payload.ptr, pkt->u.publish.payload.len);
        break;
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBREL:
    case GW_MQTT_PUBCOMP:
    case GW_MQTT_UNSUBACK:
        gw_mqtt__ack_write(&pkt->u.ack, &w);
        break;
    case GW_MQTT_SUBSCRIBE:
        gw_mqtt__subscribe_write(&pkt->u.subscribe, &w);
        break;
    case GW_MQTT_SUBACK:
        gw_mqtt__suback_write(&pkt->u.suback, &w);
        break;
    case GW_MQTT_UNSUBSCRIBE:
        gw_mqtt__unsubscribe_write(&pkt->u.unsubscribe, &w);
        break;
    case GW_MQTT_PINGREQ:
    case GW_MQTT_PINGRESP:
    case GW_MQTT_DISCONNECT:
        break;
    }
    /* The size was computed from the same fields: a mismatch is a codec bug
     * (or a NULL pointer with a non-zero length from the caller). */
    if (w.overflow || w.off != need)
        return GW_ERR_INVAL;
    *written = need;
    return GW_OK;
}
