/*
 * subscribe.c - SUBSCRIBE (MQTT 3.1.1 section 3.8) and the topic-list
 * payload it shares with UNSUBSCRIBE: decoding, iteration, building.
 */
#include "mqtt/mqtt-internal.h"

gw_err_t gw_mqtt__decode_topics(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r, bool with_qos,
                                gw_mqtt_topics_t *out)
{
    uint32_t start = r->off;
    uint32_t count = 0;
    gw_err_t err;

    out->ptr = NULL;
    out->len = 0;
    out->count = 0;
    out->with_qos = with_qos;
    /* MQTT-3.8.3-3, MQTT-3.10.3-2: at least one topic filter. */
    if (gw_mqtt__reader_left(r) == 0)
        return GW_ERR_MQTT_EMPTY_PAYLOAD;
    while (gw_mqtt__reader_left(r) > 0) {
        gw_mqtt_str_t filter;
        if ((err = gw_mqtt__read_lstr_raw(r, &filter)) != GW_OK)
            return err;
        /* MQTT-3.8.3-1, MQTT-4.7.1, MQTT-4.7.3-1 */
        if ((err = gw_topic_filter_validate(ctx, filter.ptr, filter.len)) != GW_OK)
            return err;
        if (with_qos) {
            uint8_t qos;
            if ((err = gw_mqtt__read_u8(r, &qos)) != GW_OK)
                return err;
            /* MQTT-3-8.3-4: reserved bits 7-2 zero and QoS 0, 1 or 2. */
            if (qos > 2)
                return GW_ERR_MQTT_REQUESTED_QOS;
        }
        /* The decoded form counts entries in 16 bits; a packet with more
         * entries than that is refused as too large to handle. */
        if (++count > UINT16_MAX)
            return GW_ERR_MQTT_TOO_LARGE;
    }
    out->ptr = r->base + start;
    out->len = r->off - start;
    out->count = (uint16_t)count;
    return GW_OK;
}

gw_err_t gw_mqtt__topics_check(const gw_mqtt_topics_t *t, bool with_qos)
{
    uint32_t off = 0;
    uint32_t count = 0;

    if (t->with_qos != with_qos || t->count == 0 || t->len == 0 || t->ptr == NULL)
        return GW_ERR_INVAL;
    while (off < t->len) {
        uint32_t n;
        if (t->len - off < 2)
            return GW_ERR_INVAL;
        n = (uint32_t)t->ptr[off] << 8 | t->ptr[off + 1];
        off += 2;
        if (n == 0 || t->len - off < n)
            return GW_ERR_INVAL;
        off += n;
        if (with_qos) {
            if (t->len - off < 1 || t->ptr[off] > 2)
                return GW_ERR_INVAL;
            off++;
        }
        count++;
    }
    return count == t->count ? GW_OK : GW_ERR_INVAL;
}

void gw_mqtt_topics_iter_init(gw_mqtt_topics_iter_t *it, const gw_mqtt_topics_t *topics)
{
    it->topics = topics;
    it->off = 0;
}

bool gw_mqtt_topics_next(gw_mqtt_topics_iter_t *it, gw_mqtt_str_t *filter, uint8_t *qos)
{
    const gw_mqtt_topics_t *t = it->topics;
    uint32_t n;

    /* The payload was validated by the decoder; the bounds are checked
     * again anyway so that a hand-built gw_mqtt_topics_t cannot overrun. */
    if (t == NULL || t->ptr == NULL || it->off >= t->len || t->len - it->off < 2)
        return false;
    n = (uint32_t)t->ptr[it->off] << 8 | t->ptr[it->off + 1];
    if (t->len - it->off - 2 < n + (t->with_qos ? 1u : 0u))
        return false;
    filter->ptr = (const char *)t->ptr + it->off + 2;
    filter->len = (uint16_t)n;
    it->off += 2 + n;
    if (qos)
        *qos = 0;
    if (t->with_qos) {
        if (qos)
            *qos = t->ptr[it->off];
        it->off++;
    }
    return true;
}

gw_err_t gw_mqtt_topics_build(const gw_mqtt_str_t *filters, const uint8_t *qos, uint16_t count,
                              uint8_t *buf, size_t cap, gw_mqtt_topics_t *out, size_t *written)
{
    gw_mqtt_writer_t w;
    uint64_t need = 0;

    *written = 0;
    if (count == 0 || filters == NULL)
        return GW_ERR_INVAL;
    for (uint16_t i = 0; i < count; i++) {
        if (filters[i].len == 0 || (qos && qos[i] > 2))
            return GW_ERR_INVAL;
        need += 2u + filters[i].len + (qos ? 1u : 0u);
    }
    if (need > GW_MQTT_MAX_REMAINING_LENGTH - 2u)
        return GW_ERR_INVAL;
    if (cap < need) {
        *written = (size_t)need;
        return GW_ERR_NOSPACE;
    }
    gw_mqtt__writer_init(&w, buf, cap);
    for (uint16_t i = 0; i < count; i++) {
        gw_mqtt__write_lbytes(&w, filters[i].ptr, filters[i].len);
        if (qos)
            gw_mqtt__write_u8(&w, qos[i]);
    }
    if (w.overflow)
        return GW_ERR_INVAL;
    out->ptr = buf;
    out->len = (uint32_t)w.off;
    out->count = count;
    out->with_qos = qos != NULL;
    *written = w.off;
    return GW_OK;
}

gw_err_t gw_mqtt__decode_id_topics(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r, bool with_qos,
                                   uint16_t *packet_id, gw_mqtt_topics_t *topics)
{
    gw_err_t err;

    *packet_id = 0;
    memset(topics, 0, sizeof(*topics));
    if ((err = gw_mqtt__read_u16(r, packet_id)) != GW_OK)
        return err;
    if (*packet_id == 0)
        return GW_ERR_MQTT_PACKET_ID; /* MQTT-2.3.1-1 */
    return gw_mqtt__decode_topics(ctx, r, with_qos, topics);
}

gw_err_t gw_mqtt__id_topics_size(uint16_t packet_id, const gw_mqtt_topics_t *topics,
                                 bool with_qos, uint32_t *rem)
{
    gw_err_t err;

    if (packet_id == 0)
        return GW_ERR_INVAL;
    if ((err = gw_mqtt__topics_check(topics, with_qos)) != GW_OK)
        return err;
    if (topics->len > GW_MQTT_MAX_REMAINING_LENGTH - 2u)
        return GW_ERR_INVAL;
    *rem = 2 + topics->len;
    return GW_OK;
}

void gw_mqtt__id_topics_write(uint16_t packet_id, const gw_mqtt_topics_t *topics,
                              gw_mqtt_writer_t *w)
{
    gw_mqtt__write_u16(w, packet_id);
    gw_mqtt__write_bytes(w, topics->ptr, topics->len);
}

/* SUBSCRIBE (MQTT 3.1.1 section 3.8): topic filters each followed by a QoS byte. */
gw_err_t gw_mqtt__decode_subscribe(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                   gw_mqtt_subscribe_t *out)
{
    return gw_mqtt__decode_id_topics(ctx, r, true, &out->packet_id, &out->topics);
}

gw_err_t gw_mqtt__subscribe_size(const gw_mqtt_subscribe_t *s, uint32_t *rem)
{
    return gw_mqtt__id_topics_size(s->packet_id, &s->topics, true, rem);
}

void gw_mqtt__subscribe_write(const gw_mqtt_subscribe_t *s, gw_mqtt_writer_t *w)
{
    gw_mqtt__id_topics_write(s->packet_id, &s->topics, w);
}
