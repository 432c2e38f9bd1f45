/*
 * hono_message.c - north-bound AMQP messages (telemetry, event, empty
 * notification, command response) and the south-bound command mapping
 * (AMQP command -> MQTT topic + payload).
 */
#include "gw/hono.h"

#include <stdio.h>
#include <string.h>

#include <proton/codec.h>
#include <proton/message.h>

#include "gw/mqtt.h"
#include "hono/hono_internal.h"

static gw_err_t fail(gw_hono_reason_t *reason, gw_hono_reason_t r, gw_err_t err)
{
    if (reason)
        *reason = r;
    return err;
}

static bool valid_id(gw_hono_str_t s)
{
    return s.len > 0 && s.len <= GW_HONO_MAX_ID;
}

/* Address "<prefix>/<tenant>" into buf (GW_HONO_MAX_ID + 32 bytes). */
static gw_err_t make_address(char *buf, size_t cap, const char *prefix, gw_hono_str_t tenant)
{
    int n;
    if (!valid_id(tenant))
        return GW_ERR_INVAL;
    n = snprintf(buf, cap, "%s/%.*s", prefix, (int)tenant.len, tenant.ptr);
    if (n < 0 || (size_t)n >= cap)
        return GW_ERR_INVAL;
    /* a NUL inside the tenant would silently cut the address short */
    if (memchr(tenant.ptr, '\0', tenant.len) != NULL)
        return GW_ERR_INVAL;
    return GW_OK;
}

static int put_str_key(pn_data_t *d, const char *key)
{
    return pn_data_put_string(d, pn_bytes(strlen(key), key));
}

static int put_str(pn_data_t *d, gw_hono_str_t s)
{
    return pn_data_put_string(d, pn_bytes(s.len, s.ptr));
}

/* The identity properties every message of ours carries. Caller has entered the map. */
static int put_identity(pn_data_t *p, gw_hono_str_t tenant, gw_hono_str_t device)
{
    int rc = 0;
    rc |= put_str_key(p, GW_HONO_PROP_DEVICE_ID);
    rc |= put_str(p, device);
    rc |= put_str_key(p, GW_HONO_PROP_TENANT_ID);
    rc |= put_str(p, tenant);
    rc |= put_str_key(p, GW_HONO_PROP_ORIG_ADAPTER);
    rc |= pn_data_put_string(p, pn_bytes(sizeof(GW_HONO_ORIG_ADAPTER) - 1, GW_HONO_ORIG_ADAPTER));
    return rc;
}

static int put_bag_props(pn_data_t *p, const gw_hono_topic_t *topic)
{
    int rc = 0;
    if (topic == NULL)
        return 0;
    for (size_t i = 0; i < topic->prop_count; i++) {
        rc |= put_str(p, topic->props[i].name);
        rc |= put_str(p, topic->props[i].value);
    }
    return rc;
}

static int put_body(pn_message_t *msg, const uint8_t *payload, size_t len)
{
    if (len == 0)
        return 0; /* no body section at all */
    /* inferred + binary = one Data section, as the Telemetry API demands
     * (not inferred would be an AmqpValue holding a binary) */
    pn_message_set_inferred(msg, true);
    return pn_data_put_binary(pn_message_body(msg), pn_bytes(len, (const char *)payload));
}

gw_err_t gw_hono_build_upload(pn_message_t *msg, const gw_hono_upload_t *u,
                              gw_hono_reason_t *reason)
{
    char addr[GW_HONO_MAX_ID + 32];
    char ctype[GW_HONO_MAX_BAG + 1];
    const char *ct = GW_HONO_CT_OCTET_STREAM;
    pn_data_t *p;
    gw_err_t err;
    int rc = 0;

    if (reason)
        *reason = GW_HONO_R_NONE;
    if (msg == NULL || u == NULL || u->qos > 2 || !valid_id(u->device) ||
        (u->kind != GW_HONO_TELEMETRY && u->kind != GW_HONO_EVENT) ||
        (u->payload_len > 0 && u->payload == NULL))
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    err = make_address(addr, sizeof addr, u->kind == GW_HONO_EVENT ? "event" : "telemetry",
                       u->tenant);
    if (err != GW_OK)
        return err;

    /* content-type rules of the MQTT adapter: an empty payload needs a
     * non-empty type; the empty-notification type needs an empty payload */
    if (u->topic != NULL && u->topic->has_content_type && u->topic->content_type.len > 0) {
        memcpy(ctype, u->topic->content_type.ptr, u->topic->content_type.len);
        ctype[u->topic->content_type.len] = '\0';
        ct = ctype;
        if (u->payload_len > 0 && strcmp(ct, GW_HONO_CT_EMPTY_NOTIFICATION) == 0)
            return fail(reason, GW_HONO_R_NOTIFICATION_PAYLOAD, GW_ERR_SPEC_BODY);
    } else if (u->payload_len == 0) {
        return fail(reason, GW_HONO_R_EMPTY_NO_CONTENT_TYPE, GW_ERR_SPEC_BODY);
    }

    rc |= pn_message_set_address(msg, addr);
    rc |= pn_message_set_durable(msg, u->kind == GW_HONO_EVENT);
    rc |= pn_message_set_content_type(msg, ct);
    rc |= pn_message_set_creation_time(msg, (pn_timestamp_t)u->now_ms);
    /* hono-ttl applies to events only (MqttContext ignores it for telemetry) */
    if (u->kind == GW_HONO_EVENT && u->topic != NULL && u->topic->has_ttl)
        rc |= pn_message_set_ttl(msg, (pn_millis_t)u->topic->ttl_s * 1000u);

    p = pn_message_properties(msg);
    rc |= pn_data_put_map(p);
    pn_data_enter(p);
    rc |= put_identity(p, u->tenant, u->device);
    if (u->orig_address.len > 0) {
        rc |= put_str_key(p, GW_HONO_PROP_ORIG_ADDRESS);
        rc |= put_str(p, u->orig_address);
    }
    rc |= put_str_key(p, GW_HONO_PROP_QOS);
    rc |= pn_data_put_int(p, u->qos);
    rc |= put_bag_props(p, u->topic);
    pn_data_exit(p);

    if (u->retain) {
        pn_data_t *a = pn_message_annotations(msg);
        rc |= pn_data_put_map(a);
        pn_data_enter(a);
        rc |= pn_data_put_symbol(a, pn_bytes(sizeof(GW_HONO_ANNO_RETAIN) - 1, GW_HONO_ANNO_RETAIN));
        rc |= pn_data_put_bool(a, true);
        pn_data_exit(a);
    }
    rc |= put_body(msg, u->payload, u->payload_len);
    if (rc != 0) {
        pn_message_clear(msg);
        return GW_ERR_NOMEM;
    }
    return GW_OK;
}

gw_err_t gw_hono_build_ttd(pn_message_t *msg, gw_hono_str_t tenant, gw_hono_str_t device,
                           int32_t ttd, uint64_t now_ms)
{
    char addr[GW_HONO_MAX_ID + 32];
    pn_data_t *p;
    gw_err_t err;
    int rc = 0;

    if (msg == NULL || !valid_id(device) || ttd < -1)
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    if ((err = make_address(addr, sizeof addr, "event", tenant)) != GW_OK)
        return err;
    rc |= pn_message_set_address(msg, addr);
    rc |= pn_message_set_durable(msg, true); /* Event API: events are durable */
    rc |= pn_message_set_content_type(msg, GW_HONO_CT_EMPTY_NOTIFICATION);
    rc |= pn_message_set_creation_time(msg, (pn_timestamp_t)now_ms);
    p = pn_message_properties(msg);
    rc |= pn_data_put_map(p);
    pn_data_enter(p);
    rc |= put_identity(p, tenant, device);
    rc |= put_str_key(p, GW_HONO_PROP_TTD);
    rc |= pn_data_put_int(p, ttd);
    pn_data_exit(p);
    if (rc != 0) {
        pn_message_clear(msg);
        return GW_ERR_NOMEM;
    }
    return GW_OK;
}

/* An id or name that will become part of an MQTT topic name. */
static bool topic_safe(gw_hono_str_t s, bool allow_slash)
{
    if (s.len == 0 || s.len > GW_HONO_MAX_ID || gw_utf8_validate(s.ptr, s.len) != GW_OK)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '+' || s.ptr[i] == '#' || (!allow_slash && s.ptr[i] == '/'))
            return false;
    return true;
}

static gw_hono_str_t cstr(const char *s)
{
    return s ? (gw_hono_str_t){s, strlen(s)} : (gw_hono_str_t){"", 0};
}

gw_err_t gw_hono_command_decode(pn_message_t *msg, gw_hono_command_t *out,
                                gw_hono_reason_t *reason)
{
    gw_hono_str_t to, rest;
    const char *slash;
    pn_data_t *body;

    if (reason)
        *reason = GW_HONO_R_NONE;
    if (msg == NULL || out == NULL)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    out->correlation_id.type = PN_NULL;

    /* to: command/<tenant>/<device> */
    to = cstr(pn_message_get_address(msg));
    if (to.len < 9 || memcmp(to.ptr, "command/", 8) != 0)
        return fail(reason, GW_HONO_R_CMD_ADDRESS, GW_ERR_SPEC_FIELD);
    rest = (gw_hono_str_t){to.ptr + 8, to.len - 8};
    slash = memchr(rest.ptr, '/', rest.len);
    if (slash == NULL)
        return fail(reason, GW_HONO_R_CMD_ADDRESS, GW_ERR_SPEC_FIELD);
    out->tenant = (gw_hono_str_t){rest.ptr, (size_t)(slash - rest.ptr)};
    out->device = (gw_hono_str_t){slash + 1, rest.len - out->tenant.len - 1};
    if (!topic_safe(out->tenant, false) || !topic_safe(out->device, false))
        return fail(reason, GW_HONO_R_CMD_ADDRESS, GW_ERR_SPEC_FIELD);

    /* subject: the command name, the last part of the device's topic */
    out->name = cstr(pn_message_get_subject(msg));
    if (!topic_safe(out->name, true))
        return fail(reason, GW_HONO_R_CMD_SUBJECT, GW_ERR_SPEC_FIELD);

    out->content_type = cstr(pn_message_get_content_type(msg));

    /* reply-to: command_response/<tenant>/<reply-id>; none = one-way */
    out->reply_to = cstr(pn_message_get_reply_to(msg));
    out->one_way = out->reply_to.len == 0;
    if (!out->one_way) {
        static const char pfx[] = "command_response/";
        size_t pl = sizeof pfx - 1;
        gw_hono_str_t r = out->reply_to;
        if (r.len <= pl + out->tenant.len + 1 || memcmp(r.ptr, pfx, pl) != 0 ||
            memcmp(r.ptr + pl, out->tenant.ptr, out->tenant.len) != 0 ||
            r.ptr[pl + out->tenant.len] != '/')
            return fail(reason, GW_HONO_R_CMD_REPLY_TO, GW_ERR_SPEC_FIELD);
        out->reply_id = (gw_hono_str_t){r.ptr + pl + out->tenant.len + 1,
                                        r.len - pl - out->tenant.len - 1};
        if (out->reply_id.len > GW_HONO_MAX_ID)
            return fail(reason, GW_HONO_R_CMD_REPLY_TO, GW_ERR_SPEC_FIELD);
    }

    /* C&C API: correlation-id, else message-id; one of them for a request */
    out->correlation_id = pn_message_get_correlation_id(msg);
    if (out->correlation_id.type == PN_NULL)
        out->correlation_id = pn_message_get_id(msg);
    if (!out->one_way && out->correlation_id.type == PN_NULL)
        return fail(reason, GW_HONO_R_CMD_CORRELATION, GW_ERR_SPEC_FIELD);
    if (out->correlation_id.type != PN_NULL && out->correlation_id.type != PN_STRING &&
        out->correlation_id.type != PN_BINARY && out->correlation_id.type != PN_ULONG &&
        out->correlation_id.type != PN_UUID)
        return fail(reason, GW_HONO_R_CMD_CORRELATION, GW_ERR_SPEC_FIELD);

    body = pn_message_body(msg);
    pn_data_rewind(body);
    if (pn_data_next(body)) {
        pn_bytes_t b;
        switch (pn_data_type(body)) {
        case PN_BINARY:
            b = pn_data_get_binary(body);
            break;
        case PN_STRING:
            b = pn_data_get_string(body);
            break;
        case PN_NULL:
            b = pn_bytes(0, NULL);
            break;
        default:
            pn_data_rewind(body);
            return fail(reason, GW_HONO_R_CMD_BODY, GW_ERR_SPEC_BODY);
        }
        out->payload = (const uint8_t *)b.start;
        out->payload_len = b.size;
        if (pn_data_next(body)) {
            pn_data_rewind(body);
            return fail(reason, GW_HONO_R_CMD_BODY, GW_ERR_SPEC_BODY);
        }
        pn_data_rewind(body);
    }
    return GW_OK;
}

gw_err_t gw_hono_command_topic(const gw_hono_cmd_filter_t *sub, gw_hono_str_t subscriber_device,
                               const gw_hono_command_t *cmd, gw_hono_str_t req_id, char *buf,
                               size_t cap, size_t *written)
{
    const char *c, *q;
    gw_hono_str_t tenant = {"", 0}, device = {"", 0};
    size_t need;

    if (sub == NULL || cmd == NULL || written == NULL || (buf == NULL && cap > 0))
        return GW_ERR_INVAL;
    c = sub->short_command ? "c" : "command";
    q = sub->short_req ? "q" : "req";
    if (sub->tenant.len > 0)
        tenant = cmd->tenant;
    /* the device is named when the filter named it, or when a gateway gets
     * a command for one of its devices (not for itself) */
    if (sub->device.len > 0 || !gw_hono__str_eq(cmd->device, subscriber_device))
        device = cmd->device;
    need = strlen(c) + 1 + tenant.len + 1 + device.len + 1 + strlen(q) + 1 + req_id.len + 1 +
           cmd->name.len;
    *written = need;
    if (need + 1 > cap)
        return GW_ERR_NOSPACE;
    snprintf(buf, cap, "%s/%.*s/%.*s/%s/%.*s/%.*s", c, (int)tenant.len, tenant.ptr,
             (int)device.len, device.ptr, q, (int)req_id.len, req_id.ptr, (int)cmd->name.len,
             cmd->name.ptr);
    return GW_OK;
}

gw_err_t gw_hono_build_command_response(pn_message_t *msg, const gw_hono_request_t *req,
                                        uint16_t status, const gw_hono_topic_t *topic,
                                        const uint8_t *payload, size_t payload_len,
                                        uint64_t now_ms)
{
    char ctype[GW_HONO_MAX_BAG + 1];
    pn_data_t *p;
    int rc = 0;

    if (msg == NULL || req == NULL || status < 200 || status > 599 ||
        (payload_len > 0 && payload == NULL) || req->reply_to.len == 0)
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    rc |= pn_message_set_address(msg, req->reply_to.ptr);
    rc |= pn_message_set_correlation_id(msg, req->correlation_id);
    rc |= pn_message_set_creation_time(msg, (pn_timestamp_t)now_ms);
    if (topic != NULL && topic->has_content_type && topic->content_type.len > 0) {
        memcpy(ctype, topic->content_type.ptr, topic->content_type.len);
        ctype[topic->content_type.len] = '\0';
        rc |= pn_message_set_content_type(msg, ctype);
    }
    p = pn_message_properties(msg);
    rc |= pn_data_put_map(p);
    pn_data_enter(p);
    rc |= put_str_key(p, GW_HONO_PROP_STATUS);
    rc |= pn_data_put_int(p, status);
    rc |= put_identity(p, req->tenant, req->device);
    rc |= put_bag_props(p, topic);
    pn_data_exit(p);
    rc |= put_body(msg, payload, payload_len);
    if (rc != 0) {
        pn_message_clear(msg);
        return GW_ERR_NOMEM;
    }
    return GW_OK;
}
