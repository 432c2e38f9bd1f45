/*
 * hono_topic.c - Hono MQTT adapter topic names, property bags, command
 * subscription filters and user names. Only bounded reads over the given
 * bytes; nothing is allocated (bag values are decoded into the caller's
 * gw_hono_topic_t).
 */
#include "gw/hono.h"

#include <string.h>
#include <strings.h>

#include "gw/mqtt.h"
#include "hono/hono_internal.h"

static const char *const reason_names[GW_HONO_R__COUNT] = {
    [GW_HONO_R_NONE] = "none",
    [GW_HONO_R_NOT_HONO] = "not-hono",
    [GW_HONO_R_EMPTY_PATH] = "empty-path",
    [GW_HONO_R_LEVELS] = "levels",
    [GW_HONO_R_ID_TOO_LONG] = "id-too-long",
    [GW_HONO_R_RESPONSE_LEVEL] = "response-level",
    [GW_HONO_R_REQ_ID_EMPTY] = "req-id-empty",
    [GW_HONO_R_STATUS] = "status",
    [GW_HONO_R_FILTER] = "filter",
    [GW_HONO_R_BAG_TOO_LONG] = "bag-too-long",
    [GW_HONO_R_BAG_TOO_MANY] = "bag-too-many",
    [GW_HONO_R_BAG_ESCAPE] = "bag-escape",
    [GW_HONO_R_BAG_EMPTY_NAME] = "bag-empty-name",
    [GW_HONO_R_BAG_DUPLICATE] = "bag-duplicate",
    [GW_HONO_R_BAG_RESERVED] = "bag-reserved",
    [GW_HONO_R_BAG_UTF8] = "bag-utf8",
    [GW_HONO_R_TTL] = "ttl",
    [GW_HONO_R_CONTENT_TYPE] = "content-type",
    [GW_HONO_R_QOS] = "qos",
    [GW_HONO_R_EMPTY_NO_CONTENT_TYPE] = "empty-no-content-type",
    [GW_HONO_R_NOTIFICATION_PAYLOAD] = "notification-payload",
    [GW_HONO_R_CMD_ADDRESS] = "cmd-address",
    [GW_HONO_R_CMD_SUBJECT] = "cmd-subject",
    [GW_HONO_R_CMD_REPLY_TO] = "cmd-reply-to",
    [GW_HONO_R_CMD_CORRELATION] = "cmd-correlation",
    [GW_HONO_R_CMD_BODY] = "cmd-body",
    [GW_HONO_R_REQ_ID_UNKNOWN] = "req-id-unknown",
    [GW_HONO_R_REQ_ID_WRONG_DEVICE] = "req-id-wrong-device",
    [GW_HONO_R_TABLE_FULL] = "table-full",
};

const char *gw_hono_reason_name(gw_hono_reason_t r)
{
    if ((unsigned)r >= GW_HONO_R__COUNT || reason_names[r] == NULL)
        return "unknown";
    return reason_names[r];
}

bool gw_hono__eq(gw_hono_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

bool gw_hono__str_eq(gw_hono_str_t a, gw_hono_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Split s on '/' into at most max levels; returns the number of levels,
 * or max + 1 if there are more. */
static size_t split_levels(const char *s, size_t len, gw_hono_str_t *lv, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (n == max)
                return max + 1;
            lv[n].ptr = s + start;
            lv[n].len = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

static gw_err_t fail(gw_hono_reason_t *reason, gw_hono_reason_t r, gw_err_t err)
{
    if (reason)
        *reason = r;
    return err;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* URL-decode (application/x-www-form-urlencoded: '+' is a space) src into
 * dst, NUL-terminate. dst has room for len + 1 bytes (decoding never grows). */
static gw_err_t url_decode(const char *src, size_t len, char *dst, size_t *out_len,
                           gw_hono_reason_t *reason)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (len - i < 3)
                return fail(reason, GW_HONO_R_BAG_ESCAPE, GW_ERR_MQTT_PROTOCOL);
            int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
            if (h < 0 || l < 0)
                return fail(reason, GW_HONO_R_BAG_ESCAPE, GW_ERR_MQTT_PROTOCOL);
            dst[o++] = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+') {
            dst[o++] = ' ';
        } else {
            dst[o++] = c;
        }
    }
    dst[o] = '\0';
    *out_len = o;
    /* MQTT-1.5.3 rules for AMQP strings too: no ill-formed UTF-8, no U+0000 */
    if (gw_utf8_validate(dst, o) != GW_OK)
        return fail(reason, GW_HONO_R_BAG_UTF8, GW_ERR_MQTT_UTF8);
    return GW_OK;
}

static bool name_is(gw_hono_str_t name, const char *lit)
{
    size_t n = strlen(lit);
    return name.len == n && strncasecmp(name.ptr, lit, n) == 0;
}

/* Names of properties the adapter itself sets: a device must not be able to
 * spoof them (device_id!) through its bag. */
static const char *const reserved_names[] = {
    GW_HONO_PROP_DEVICE_ID, GW_HONO_PROP_TENANT_ID, GW_HONO_PROP_ORIG_ADAPTER,
    GW_HONO_PROP_ORIG_ADDRESS, GW_HONO_PROP_QOS, GW_HONO_PROP_STATUS, GW_HONO_PROP_TTD,
};

static gw_err_t parse_ttl(gw_hono_str_t v, uint32_t *out, gw_hono_reason_t *reason)
{
    uint64_t n = 0;
    if (v.len == 0 || v.len > 10)
        return fail(reason, GW_HONO_R_TTL, GW_ERR_MQTT_PROTOCOL);
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return fail(reason, GW_HONO_R_TTL, GW_ERR_MQTT_PROTOCOL);
        n = n * 10 + (uint64_t)(v.ptr[i] - '0');
    }
    if (n > GW_HONO_MAX_TTL_S)
        return fail(reason, GW_HONO_R_TTL, GW_ERR_MQTT_PROTOCOL);
    *out = (uint32_t)n;
    return GW_OK;
}

static gw_err_t parse_bag(const char *bag, size_t len, gw_hono_topic_t *out,
                          gw_hono_reason_t *reason)
{
    /* names seen so far, for the duplicate check (bag entries incl. the
     * two that get their own fields) */
    gw_hono_str_t seen[GW_HONO_MAX_PROPS];
    size_t nseen = 0;
    size_t used = 0; /* bytes of out->bag_buf */
    size_t start = 0;

    if (len > GW_HONO_MAX_BAG)
        return fail(reason, GW_HONO_R_BAG_TOO_LONG, GW_ERR_LIMIT);
    for (size_t i = 0; i <= len; i++) {
        if (i < len && bag[i] != '&')
            continue;
        const char *seg = bag + start;
        size_t seglen = i - start;
        start = i + 1;
        if (seglen == 0)
            continue; /* "a=1&&b=2": empty pairs are skipped, as in query strings */
        if (nseen == GW_HONO_MAX_PROPS)
            return fail(reason, GW_HONO_R_BAG_TOO_MANY, GW_ERR_LIMIT);
        const char *eq = memchr(seg, '=', seglen);
        size_t nlen = eq ? (size_t)(eq - seg) : seglen;
        const char *val = eq ? eq + 1 : seg + seglen;
        size_t vlen = eq ? seglen - nlen - 1 : 0;
        gw_hono_str_t name, value;
        gw_err_t err;

        if (nlen == 0)
            return fail(reason, GW_HONO_R_BAG_EMPTY_NAME, GW_ERR_MQTT_PROTOCOL);
        /* room: nlen + 1 + vlen + 1 <= seglen + 2; the buffer holds
         * GW_HONO_MAX_BAG + 2 per entry (+2 spare) */
        name.ptr = out->bag_buf + used;
        if ((err = url_decode(seg, nlen, out->bag_buf + used, &name.len, reason)) != GW_OK)
            return err;
        used += name.len + 1;
        value.ptr = out->bag_buf + used;
        if ((err = url_decode(val, vlen, out->bag_buf + used, &value.len, reason)) != GW_OK)
            return err;
        used += value.len + 1;
        if (name.len == 0)
            return fail(reason, GW_HONO_R_BAG_EMPTY_NAME, GW_ERR_MQTT_PROTOCOL);
        for (size_t k = 0; k < nseen; k++)
            if (seen[k].len == name.len && strncasecmp(seen[k].ptr, name.ptr, name.len) == 0)
                return fail(reason, GW_HONO_R_BAG_DUPLICATE, GW_ERR_MQTT_PROTOCOL);
        seen[nseen++] = name;
        for (size_t k = 0; k < sizeof reserved_names / sizeof reserved_names[0]; k++)
            if (name_is(name, reserved_names[k]))
                return fail(reason, GW_HONO_R_BAG_RESERVED, GW_ERR_MQTT_PROTOCOL);
        if (name_is(name, GW_HONO_BAG_CONTENT_TYPE)) {
            for (size_t k = 0; k < value.len; k++)
                if ((unsigned char)value.ptr[k] < 0x20 || (unsigned char)value.ptr[k] > 0x7e)
                    return fail(reason, GW_HONO_R_CONTENT_TYPE, GW_ERR_MQTT_PROTOCOL);
            out->has_content_type = true;
            out->content_type = value;
        } else if (name_is(name, GW_HONO_BAG_TTL)) {
            if ((err = parse_ttl(value, &out->ttl_s, reason)) != GW_OK)
                return err;
            out->has_ttl = true;
        } else {
            out->props[out->prop_count].name = name;
            out->props[out->prop_count].value = value;
            out->prop_count++;
        }
    }
    return GW_OK;
}

static gw_err_t parse_status(gw_hono_str_t s, uint16_t *out, gw_hono_reason_t *reason)
{
    unsigned v = 0;
    if (s.len != 3)
        return fail(reason, GW_HONO_R_STATUS, GW_ERR_MQTT_PROTOCOL);
    for (size_t i = 0; i < 3; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return fail(reason, GW_HONO_R_STATUS, GW_ERR_MQTT_PROTOCOL);
        v = v * 10 + (unsigned)(s.ptr[i] - '0');
    }
    /* Command & Control API: an HTTP status, 2xx success, 4xx/5xx errors */
    if (v < 200 || v > 599)
        return fail(reason, GW_HONO_R_STATUS, GW_ERR_MQTT_PROTOCOL);
    *out = (uint16_t)v;
    return GW_OK;
}

static bool is_command_level(gw_hono_str_t s, bool *is_short)
{
    if (gw_hono__eq(s, "command")) {
        *is_short = false;
        return true;
    }
    if (gw_hono__eq(s, "c")) {
        *is_short = true;
        return true;
    }
    return false;
}

gw_err_t gw_hono_topic_parse(const char *topic, size_t len, gw_hono_topic_t *out,
                             gw_hono_reason_t *reason)
{
    gw_hono_str_t lv[7];
    size_t n, path_len = len;
    const char *bag = NULL;
    size_t bag_len = 0;
    gw_err_t err;

    if (reason)
        *reason = GW_HONO_R_NONE;
    if (topic == NULL || out == NULL)
        return GW_ERR_INVAL;
    if (len == 0)
        return GW_ERR_MQTT_TOPIC_EMPTY;
    out->kind = 0;
    out->short_form = false;
    out->tenant = out->device = out->req_id = (gw_hono_str_t){topic, 0};
    out->status = 0;
    out->has_content_type = out->has_ttl = false;
    out->content_type = (gw_hono_str_t){"", 0};
    out->ttl_s = 0;
    out->prop_count = 0;

    /* the property bag starts at the last "/?" (Hono PropertyBag.fromTopic) */
    for (size_t i = len - 1; i > 0; i--) {
        if (topic[i] == '?' && topic[i - 1] == '/') {
            path_len = i - 1;
            bag = topic + i + 1;
            bag_len = len - i - 1;
            break;
        }
    }
    if (bag != NULL && path_len == 0)
        return fail(reason, GW_HONO_R_EMPTY_PATH, GW_ERR_MQTT_PROTOCOL);
    out->path = (gw_hono_str_t){topic, path_len};

    n = split_levels(topic, path_len, lv, 6);
    if (gw_hono__eq(lv[0], "telemetry") || gw_hono__eq(lv[0], "t")) {
        out->kind = GW_HONO_TELEMETRY;
        out->short_form = lv[0].len == 1;
    } else if (gw_hono__eq(lv[0], "event") || gw_hono__eq(lv[0], "e")) {
        out->kind = GW_HONO_EVENT;
        out->short_form = lv[0].len == 1;
    } else if (is_command_level(lv[0], &out->short_form)) {
        out->kind = GW_HONO_COMMAND_RESPONSE;
    } else {
        return fail(reason, GW_HONO_R_NOT_HONO, GW_ERR_NOT_FOUND);
    }

    if (out->kind == GW_HONO_COMMAND_RESPONSE) {
        /* command/<tenant>/<device>/res/<req-id>/<status> */
        if (n > 3 && !gw_hono__eq(lv[3], "res") && !gw_hono__eq(lv[3], "s"))
            return fail(reason, GW_HONO_R_RESPONSE_LEVEL, GW_ERR_MQTT_PROTOCOL);
        if (n != 6)
            return fail(reason, GW_HONO_R_LEVELS, GW_ERR_MQTT_PROTOCOL);
        if (lv[4].len == 0)
            return fail(reason, GW_HONO_R_REQ_ID_EMPTY, GW_ERR_MQTT_PROTOCOL);
        if ((err = parse_status(lv[5], &out->status, reason)) != GW_OK)
            return err;
        out->req_id = lv[4];
    } else if (n > 3) {
        /* telemetry[/<tenant>[/<device>]] */
        return fail(reason, GW_HONO_R_LEVELS, GW_ERR_MQTT_PROTOCOL);
    }
    if (n > 1)
        out->tenant = lv[1];
    if (n > 2)
        out->device = lv[2];
    if (out->tenant.len > GW_HONO_MAX_ID || out->device.len > GW_HONO_MAX_ID ||
        out->req_id.len > GW_HONO_MAX_ID)
        return fail(reason, GW_HONO_R_ID_TOO_LONG, GW_ERR_LIMIT);
    if (bag != NULL)
        return parse_bag(bag, bag_len, out, reason);
    return GW_OK;
}

gw_err_t gw_hono_check_qos(gw_hono_kind_t kind, uint8_t qos, gw_hono_reason_t *reason)
{
    if (reason)
        *reason = GW_HONO_R_NONE;
    if (qos > 2)
        return GW_ERR_INVAL;
    switch (kind) {
    case GW_HONO_TELEMETRY:
    case GW_HONO_COMMAND_RESPONSE:
        return GW_OK;
    case GW_HONO_EVENT:
        return qos == 0 ? fail(reason, GW_HONO_R_QOS, GW_ERR_MQTT_QOS) : GW_OK;
    }
    return GW_ERR_INVAL;
}

gw_err_t gw_hono_cmd_filter_parse(const char *filter, size_t len, gw_hono_cmd_filter_t *out,
                                  gw_hono_reason_t *reason)
{
    gw_hono_str_t lv[5];
    size_t n;

    if (reason)
        *reason = GW_HONO_R_NONE;
    if (filter == NULL || out == NULL)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof *out);
    n = split_levels(filter, len, lv, 5);
    if (!is_command_level(lv[0], &out->short_command))
        return fail(reason, GW_HONO_R_NOT_HONO, GW_ERR_NOT_FOUND);
    if (n != 5 || !gw_hono__eq(lv[4], "#"))
        return fail(reason, GW_HONO_R_FILTER, GW_ERR_MQTT_PROTOCOL);
    if (gw_hono__eq(lv[3], "q"))
        out->short_req = true;
    else if (!gw_hono__eq(lv[3], "req"))
        return fail(reason, GW_HONO_R_FILTER, GW_ERR_MQTT_PROTOCOL);
    if (lv[1].len > GW_HONO_MAX_ID || lv[2].len > GW_HONO_MAX_ID)
        return fail(reason, GW_HONO_R_ID_TOO_LONG, GW_ERR_LIMIT);
    /* a wildcard inside a level ("a+b") was already refused by the MQTT
     * filter validation; "#" in the middle too */
    out->tenant = gw_hono__eq(lv[1], "+") ? (gw_hono_str_t){lv[1].ptr, 0} : lv[1];
    if (gw_hono__eq(lv[2], "+")) {
        out->all_devices = true;
        out->device = (gw_hono_str_t){lv[2].ptr, 0};
    } else {
        out->device = lv[2];
    }
    return GW_OK;
}

gw_err_t gw_hono_username_split(const char *user, size_t len, gw_hono_str_t *auth_id,
                                gw_hono_str_t *tenant)
{
    size_t at = len;
    if (user == NULL || auth_id == NULL || tenant == NULL)
        return GW_ERR_INVAL;
    for (size_t i = len; i > 0; i--) {
        if (user[i - 1] == '@') {
            at = i - 1;
            break;
        }
    }
    if (at == len || at == 0 || at + 1 == len)
        return GW_ERR_NOT_FOUND;
    if (at > GW_HONO_MAX_ID || len - at - 1 > GW_HONO_MAX_ID)
        return GW_ERR_LIMIT;
    *auth_id = (gw_hono_str_t){user, at};
    *tenant = (gw_hono_str_t){user + at + 1, len - at - 1};
    return GW_OK;
}
