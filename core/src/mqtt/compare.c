/*
 * compare.c - field-by-field equality of decoded packets, for the unit
 * tests and the fuzzer's round-trip check.
 */
#include "mqtt/mqtt-internal.h"

static bool gw_mqtt__str_eq(gw_mqtt_str_t a, gw_mqtt_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool gw_mqtt__bin_eq(gw_mqtt_bin_t a, gw_mqtt_bin_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool gw_mqtt__topics_eq(const gw_mqtt_topics_t *a, const gw_mqtt_topics_t *b)
{
    return a->count == b->count && a->with_qos == b->with_qos && a->len == b->len &&
           (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

bool gw_mqtt__packet_equal(const gw_mqtt_packet_t *a, const gw_mqtt_packet_t *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case GW_MQTT_CONNECT: {
        const gw_mqtt_connect_t *x = &a->u.connect, *y = &b->u.connect;
        return x->protocol_level == y->protocol_level && x->clean_session == y->clean_session &&
               x->keep_alive == y->keep_alive && gw_mqtt__str_eq(x->client_id, y->client_id) &&
               x->will_flag == y->will_flag && x->will_qos == y->will_qos &&
               x->will_retain == y->will_retain && gw_mqtt__str_eq(x->will_topic, y->will_topic) &&
               gw_mqtt__bin_eq(x->will_payload, y->will_payload) &&
               x->has_username == y->has_username && gw_mqtt__str_eq(x->username, y->username) &&
               x->has_password == y->has_password && gw_mqtt__bin_eq(x->password, y->password);
    }
    case GW_MQTT_CONNACK:
        return a->u.connack.session_present == b->u.connack.session_present &&
               a->u.connack.return_code == b->u.connack.return_code;
    case GW_MQTT_PUBLISH: {
        const gw_mqtt_publish_t *x = &a->u.publish, *y = &b->u.publish;
        return x->dup == y->dup && x->qos == y->qos && x->retain == y->retain &&
               gw_mqtt__str_eq(x->topic, y->topic) && x->packet_id == y->packet_id &&
               gw_mqtt__bin_eq(x->payload, y->payload);
    }
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBREL:
    case GW_MQTT_PUBCOMP:
    case GW_MQTT_UNSUBACK:
        return a->u.ack.packet_id == b->u.ack.packet_id;
    case GW_MQTT_SUBSCRIBE:
        return a->u.subscribe.packet_id == b->u.subscribe.packet_id &&
               gw_mqtt__topics_eq(&a->u.subscribe.topics, &b->u.subscribe.topics);
    case GW_MQTT_UNSUBSCRIBE:
        return a->u.unsubscribe.packet_id == b->u.unsubscribe.packet_id &&
               gw_mqtt__topics_eq(&a->u.unsubscribe.topics, &b->u.unsubscribe.topics);
    case GW_MQTT_SUBACK:
        return a->u.suback.packet_id == b->u.suback.packet_id &&
               a->u.suback.count == b->u.suback.count &&
               (a->u.suback.count == 0 ||
                memcmp(a->u.suback.codes, b->u.suback.codes, a->u.suback.count) == 0);
    case GW_MQTT_PINGREQ:
    case GW_MQTT_PINGRESP:
    case GW_MQTT_DISCONNECT:
        return true;
    }
    return false;
}
