/*
 * connect.c - CONNECT (MQTT 3.1.1 section 3.1, MQTT 3.1 "MQIsdp").
 */
#include "mqtt/mqtt-internal.h"

#define GW_CONNECT_RESERVED 0x01
#define GW_CONNECT_CLEAN 0x02
#define GW_CONNECT_WILL 0x04
#define GW_CONNECT_WILL_QOS_SHIFT 3
#define GW_CONNECT_WILL_RETAIN 0x20
#define GW_CONNECT_PASSWORD 0x40
#define GW_CONNECT_USERNAME 0x80

static const char gw_proto_v311[] = "MQTT";
static const char gw_proto_v31[] = "MQIsdp";

/*
 * Protocol name then level: a name we do not know is PROTOCOL_NAME
 * (MQTT-3.1.2-1, the server may just close); a known name with another
 * level is PROTOCOL_LEVEL, so the server can answer CONNACK 1
 * (MQTT-3.1.2-2).
 */
static gw_err_t gw_connect__protocol(const gw_mqtt_str_t *name, uint8_t level)
{
    if (name->len == 4 && memcmp(name->ptr, gw_proto_v311, 4) == 0)
        return level == GW_MQTT_PROTOCOL_V311 ? GW_OK : GW_ERR_MQTT_PROTOCOL_LEVEL;
    if (name->len == 6 && memcmp(name->ptr, gw_proto_v31, 6) == 0)
        return level == GW_MQTT_PROTOCOL_V31 ? GW_OK : GW_ERR_MQTT_PROTOCOL_LEVEL;
    return GW_ERR_MQTT_PROTOCOL_NAME;
}

gw_err_t gw_mqtt__decode_connect(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                 gw_mqtt_connect_t *out)
{
    gw_mqtt_str_t name;
    uint8_t flags;
    gw_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = gw_mqtt__read_lstr_raw(r, &name)) != GW_OK)
        return err;
    if ((err = gw_mqtt__read_u8(r, &out->protocol_level)) != GW_OK)
        return err;
    if ((err = gw_connect__protocol(&name, out->protocol_level)) != GW_OK)
        return err;
    if ((err = gw_mqtt__read_u8(r, &flags)) != GW_OK)
        return err;
    /* MQTT-3.1.2-3. MQTT 3.1 left bit 0 unused without a rule: not checked. */
    if ((flags & GW_CONNECT_RESERVED) && out->protocol_level == GW_MQTT_PROTOCOL_V311)
        return GW_ERR_MQTT_CONNECT_RESERVED;
    out->clean_session = flags & GW_CONNECT_CLEAN;
    out->will_flag = flags & GW_CONNECT_WILL;
    out->will_qos = (flags >> GW_CONNECT_WILL_QOS_SHIFT) & 0x3;
    out->will_retain = flags & GW_CONNECT_WILL_RETAIN;
    out->has_password = flags & GW_CONNECT_PASSWORD;
    out->has_username = flags & GW_CONNECT_USERNAME;
    /* MQTT-3.1.2-14: will QoS 3 is invalid. */
    if (out->will_qos == 3)
        return GW_ERR_MQTT_WILL_FLAGS;
    /* MQTT-3.1.2-11 / -13 / -15: no will QoS or retain without the will flag. */
    if (!out->will_flag && (out->will_qos != 0 || out->will_retain))
        return GW_ERR_MQTT_WILL_FLAGS;
    /* MQTT-3.1.2-22. MQTT 3.1 says the same ("It is not valid to supply a
     * password without supplying a user name"), so both levels reject it. */
    if (out->has_password && !out->has_username)
        return GW_ERR_MQTT_PASSWORD_FLAG;
    if ((err = gw_mqtt__read_u16(r, &out->keep_alive)) != GW_OK)
        return err;

    /* Payload order (MQTT 3.1.3): client id, will topic, will message, user
     * name, password. Client id length and characters are the gateway's
     * decision (MQTT-3.1.3-5 and 3.1's 23-character limit), only UTF-8 here. */
    if ((err = gw_mqtt__read_utf8(r, &out->client_id)) != GW_OK)
        return err;
    if (out->will_flag) {
        if ((err = gw_mqtt__read_lstr_raw(r, &out->will_topic)) != GW_OK)
            return err;
        /* MQTT-3.1.2-9 and 3.1.3-10: a valid topic name. */
        if ((err = gw_topic_name_validate(ctx, out->will_topic.ptr, out->will_topic.len)) != GW_OK)
            return err;
        if ((err = gw_mqtt__read_bin16(r, &out->will_payload)) != GW_OK)
            return err;
    }
    if (out->has_username && (err = gw_mqtt__read_utf8(r, &out->username)) != GW_OK)
        return err;
    if (out->has_password && (err = gw_mqtt__read_bin16(r, &out->password)) != GW_OK)
        return err;
    return gw_mqtt__reader_end(r);
}

gw_err_t gw_mqtt__connect_size(const gw_mqtt_connect_t *c, uint32_t *rem)
{
    uint32_t n;

    if (c->protocol_level == GW_MQTT_PROTOCOL_V311)
        n = 2 + 4;
    else if (c->protocol_level == GW_MQTT_PROTOCOL_V31)
        n = 2 + 6;
    else
        return GW_ERR_INVAL;
    if (c->will_qos > 2 || (!c->will_flag && (c->will_qos || c->will_retain)))
        return GW_ERR_INVAL;
    if (c->has_password && !c->has_username)
        return GW_ERR_INVAL;
    if (c->will_flag && c->will_topic.len == 0)
        return GW_ERR_INVAL;
    if (c->will_flag && c->will_payload.len > UINT16_MAX)
        return GW_ERR_INVAL;
    if (c->has_password && c->password.len > UINT16_MAX)
        return GW_ERR_INVAL;
    n += 1 + 1 + 2;          /* level, flags, keep alive */
    n += 2 + c->client_id.len;
    if (c->will_flag)
        n += 2 + c->will_topic.len + 2 + c->will_payload.len;
    if (c->has_username)
        n += 2 + c->username.len;
    if (c->has_password)
        n += 2 + c->password.len;
    *rem = n; /* at most 5 * 65537 + 12: always below the wire maximum */
    return GW_OK;
}

void gw_mqtt__connect_write(const gw_mqtt_connect_t *c, gw_mqtt_writer_t *w)
{
    uint8_t flags = 0;

    if (c->protocol_level == GW_MQTT_PROTOCOL_V311)
        gw_mqtt__write_lbytes(w, gw_proto_v311, 4);
    else
        gw_mqtt__write_lbytes(w, gw_proto_v31, 6);
    gw_mqtt__write_u8(w, c->protocol_level);
    if (c->clean_session)
        flags |= GW_CONNECT_CLEAN;
    if (c->will_flag)
        flags |= GW_CONNECT_WILL | (uint8_t)(c->will_qos << GW_CONNECT_WILL_QOS_SHIFT) |
                 (c->will_retain ? GW_CONNECT_WILL_RETAIN : 0);
    if (c->has_password)
        flags |= GW_CONNECT_PASSWORD;
    if (c->has_username)
        flags |= GW_CONNECT_USERNAME;
    gw_mqtt__write_u8(w, flags);
    gw_mqtt__write_u16(w, c->keep_alive);
    gw_mqtt__write_lbytes(w, c->client_id.ptr, c->client_id.len);
    if (c->will_flag) {
        gw_mqtt__write_lbytes(w, c->will_topic.ptr, c->will_topic.len);
        gw_mqtt__write_lbytes(w, c->will_payload.ptr, (uint16_t)c->will_payload.len);
    }
    if (c->has_username)
        gw_mqtt__write_lbytes(w, c->username.ptr, c->username.len);
    if (c->has_password)
        gw_mqtt__write_lbytes(w, c->password.ptr, (uint16_t)c->password.len);
}
