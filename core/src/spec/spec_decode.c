/*
 * spec_decode.c - parse and validate a received spec message.
 *
 * All-or-nothing: every field the kind requires is checked before the
 * caller sees anything; on error *out is empty and why says which field of
 * which message was wrong. Nothing here copies a string: out borrows from
 * msg (see gw/spec.h for how long). The only allocation is the entries
 * array of SUBSCRIBE/UNSUBSCRIBE/SUBSCRIPTIONS, made after the entry count
 * was bounded by GW_SPEC_MAX_ENTRIES.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>

#include "gw/mqtt.h"
#include "gw/spec.h"
#include "spec/spec_internal.h"

/* Topic checks without per-connection limits: the wire limit only. */
static const gw_mqtt_ctx_t topic_ctx = {0};

void gwi_spec_why(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (!why || whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    /* Keys and topics come from the peer: keep the reason on one line. */
    for (char *p = why; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
}

const char *gwi_spec_type_desc(pn_type_t type)
{
    switch (type) {
    case PN_NULL: return "null";
    case PN_BOOL: return "a bool";
    case PN_UBYTE: return "a ubyte";
    case PN_BYTE: return "a byte";
    case PN_USHORT: return "a ushort";
    case PN_SHORT: return "a short";
    case PN_UINT: return "a uint";
    case PN_INT: return "an int";
    case PN_CHAR: return "a char";
    case PN_ULONG: return "a ulong";
    case PN_LONG: return "a long";
    case PN_TIMESTAMP: return "a timestamp";
    case PN_FLOAT: return "a float";
    case PN_DOUBLE: return "a double";
    case PN_DECIMAL32:
    case PN_DECIMAL64:
    case PN_DECIMAL128: return "a decimal";
    case PN_UUID: return "a uuid";
    case PN_BINARY: return "a binary";
    case PN_STRING: return "a string";
    case PN_SYMBOL: return "a symbol";
    case PN_DESCRIBED: return "a described value";
    case PN_ARRAY: return "an array";
    case PN_LIST: return "a list";
    case PN_MAP: return "a map";
    default: return "an unknown type";
    }
}

bool gwi_spec_get_int(pn_data_t *data, int64_t *out)
{
    switch (pn_data_type(data)) {
    case PN_BYTE: *out = pn_data_get_byte(data); return true;
    case PN_UBYTE: *out = pn_data_get_ubyte(data); return true;
    case PN_SHORT: *out = pn_data_get_short(data); return true;
    case PN_USHORT: *out = pn_data_get_ushort(data); return true;
    case PN_INT: *out = pn_data_get_int(data); return true;
    case PN_UINT: *out = pn_data_get_uint(data); return true;
    case PN_LONG: *out = pn_data_get_long(data); return true;
    case PN_ULONG: {
        uint64_t v = pn_data_get_ulong(data);
        *out = v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
        return true;
    }
    default: return false;
    }
}

/* Enter the map of an annotations section (message- or delivery-): false
 * if the section is absent, or not a map (then *err says why). The caller
 * walks it with anno_next() and leaves it with pn_data_exit(). */
static bool anno_enter(pn_data_t *a, const char *name, gw_err_t *err, char *why, size_t whylen)
{
    *err = GW_OK;
    pn_data_rewind(a);
    if (!pn_data_next(a))
        return false;
    if (pn_data_type(a) != PN_MAP) {
        gwi_spec_why(why, whylen, "%s: annotations are %s, expected a map", name,
                     gwi_spec_type_desc(pn_data_type(a)));
        *err = GW_ERR_SPEC_FIELD;
        return false;
    }
    pn_data_enter(a);
    return true;
}

/* The next entry of an entered annotations map: its key (a symbol, or a
 * string; other types give an empty key) and a position on its value. */
static bool anno_next(pn_data_t *a, pn_bytes_t *key)
{
    if (!pn_data_next(a))
        return false;
    pn_type_t kt = pn_data_type(a);
    *key = kt == PN_SYMBOL ? pn_data_get_symbol(a)
         : kt == PN_STRING ? pn_data_get_string(a) : pn_bytes(0, NULL);
    return pn_data_next(a);
}

#define KEY_IS(key, k) ((key).size == sizeof(k) - 1 && memcmp((key).start, k, sizeof(k) - 1) == 0)

bool gw_spec_delivery_serial(pn_message_t *msg, uint64_t *serial)
{
    pn_data_t *a = pn_message_instructions(msg);
    pn_bytes_t key;
    gw_err_t err;
    bool found = false;
    if (!anno_enter(a, "delivery", &err, NULL, 0))
        return false;
    while (!found && anno_next(a, &key))
        if (KEY_IS(key, GW_SPEC_ANNO_CLIENT_SERIAL) && pn_data_type(a) == PN_ULONG) {
            *serial = pn_data_get_ulong(a);
            found = true;
        }
    pn_data_exit(a);
    return found;
}

static bool kind_of_subject(const char *subject, gw_spec_kind_t *kind)
{
    static const struct {
        const char *subject;
        gw_spec_kind_t kind;
    } table[] = {
        {GW_SPEC_SUBJECT_WILL, GW_SPEC_WILL},
        {GW_SPEC_SUBJECT_WILL_CLEAR, GW_SPEC_WILL_CLEAR},
        {GW_SPEC_SUBJECT_WILL_PUBLISH, GW_SPEC_WILL_PUBLISH},
        {GW_SPEC_SUBJECT_OFFLINE, GW_SPEC_OFFLINE},
        {GW_SPEC_SUBJECT_STOLEN, GW_SPEC_STOLEN},
        {GW_SPEC_SUBJECT_LIST, GW_SPEC_LIST},
        {GW_SPEC_SUBJECT_SUBSCRIPTIONS, GW_SPEC_SUBSCRIPTIONS},
        {GW_SPEC_SUBJECT_CLOSE, GW_SPEC_CLOSE},
        {GW_SPEC_SUBJECT_SUBSCRIBE, GW_SPEC_SUBSCRIBE},
        {GW_SPEC_SUBJECT_UNSUBSCRIBE, GW_SPEC_UNSUBSCRIBE},
        {GW_SPEC_SUBJECT_PUBREL, GW_SPEC_PUBREL},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(subject, table[i].subject) == 0) {
            *kind = table[i].kind;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Fields                                                              */
/* ------------------------------------------------------------------ */

/* `to` of PUBLISH/WILL: present, non-empty, a valid MQTT topic name. */
static gw_err_t get_topic(pn_message_t *msg, const char *name, gw_spec_str_t *topic, char *why,
                          size_t whylen)
{
    const char *to = pn_message_get_address(msg);
    gw_err_t err;

    if (!to) {
        gwi_spec_why(why, whylen, "%s: missing `to` (the topic name)", name);
        return GW_ERR_SPEC_FIELD;
    }
    topic->ptr = to;
    topic->len = strlen(to);
    if (topic->len == 0) {
        /* MQTT-4.7.3-1 */
        gwi_spec_why(why, whylen, "%s: `to` is empty, expected a topic name", name);
        return GW_ERR_MQTT_TOPIC_EMPTY;
    }
    err = gw_topic_name_validate(&topic_ctx, topic->ptr, topic->len);
    if (err != GW_OK) {
        gwi_spec_why(why, whylen, "%s: `to` \"%.*s\" is not a valid topic name (%s)", name,
                     topic->len > 100 ? 100 : (int)topic->len, topic->ptr, gw_err_name(err));
        return err;
    }
    return GW_OK;
}

/* x-opt-mqtt-qos (any integer type, 0..2) and x-opt-retain-message (bool).
 * Keys may be symbols (the AMQP type for annotation keys) or strings; other
 * keys are ignored. Without the QoS annotation QoS = durable ? 1 : 0. */
static gw_err_t get_annotations(pn_message_t *msg, const char *name, gw_spec_publish_t *p,
                                char *why, size_t whylen)
{
    pn_data_t *a = pn_message_annotations(msg);
    bool has_qos = false;
    gw_err_t err = GW_OK;

    p->durable = pn_message_is_durable(msg);
    p->retain = false;
    pn_bytes_t key;
    if (anno_enter(a, name, &err, why, whylen)) {
        while (anno_next(a, &key)) {
            if (KEY_IS(key, GW_SPEC_ANNO_QOS)) {
                int64_t v;
                if (!gwi_spec_get_int(a, &v)) {
                    gwi_spec_why(why, whylen, "%s: " GW_SPEC_ANNO_QOS " is %s, expected an integer QoS",
                                 name, gwi_spec_type_desc(pn_data_type(a)));
                    err = GW_ERR_SPEC_FIELD;
                    break;
                }
                if (v < 0 || v > 2) {
                    gwi_spec_why(why, whylen, "%s: " GW_SPEC_ANNO_QOS " %" PRId64 " out of range 0..2",
                                 name, v);
                    err = GW_ERR_SPEC_FIELD;
                    break;
                }
                p->qos = (uint8_t)v;
                has_qos = true;
            } else if (KEY_IS(key, GW_SPEC_ANNO_RETAIN)) {
                if (pn_data_type(a) != PN_BOOL) {
                    gwi_spec_why(why, whylen, "%s: " GW_SPEC_ANNO_RETAIN " is %s, expected a bool",
                                 name, gwi_spec_type_desc(pn_data_type(a)));
                    err = GW_ERR_SPEC_FIELD;
                    break;
                }
                p->retain = pn_data_get_bool(a);
            } else if (KEY_IS(key, GW_SPEC_ANNO_PUBLISHER)) {
                pn_bytes_t v = pn_data_type(a) == PN_STRING ? pn_data_get_string(a)
                                                            : pn_bytes(0, NULL);
                if (v.size == 0 || v.size > 65535 || memchr(v.start, 0, v.size)) {
                    gwi_spec_why(why, whylen,
                                 "%s: " GW_SPEC_ANNO_PUBLISHER " is %s, expected a client id",
                                 name, gwi_spec_type_desc(pn_data_type(a)));
                    err = GW_ERR_SPEC_FIELD;
                    break;
                }
                p->publisher.ptr = v.start;
                p->publisher.len = v.size;
            }
        }
        pn_data_exit(a);
    }
    if (err == GW_OK && !has_qos)
        p->qos = p->durable ? 1 : 0;
    return err;
}

/* x-opt-session-present on AMQP_SUBSCRIPTIONS: a bool, or absent. */
static gw_err_t get_session_present(pn_message_t *msg, const char *name, gw_spec_msg_t *out,
                                    char *why, size_t whylen)
{
    pn_data_t *a = pn_message_annotations(msg);
    pn_bytes_t key;
    gw_err_t err;

    if (!anno_enter(a, name, &err, why, whylen))
        return err;
    while (anno_next(a, &key)) {
        if (!KEY_IS(key, GW_SPEC_ANNO_SESSION_PRESENT))
            continue;
        if (pn_data_type(a) != PN_BOOL) {
            gwi_spec_why(why, whylen, "%s: " GW_SPEC_ANNO_SESSION_PRESENT " is %s, expected a bool",
                         name, gwi_spec_type_desc(pn_data_type(a)));
            err = GW_ERR_SPEC_FIELD;
            break;
        }
        out->has_session_present = true;
        out->session_present = pn_data_get_bool(a);
    }
    pn_data_exit(a);
    return err;
}

/* The shared-delivery registration (spec 3.12): all three annotations or
 * none (required: OFFLINE needs link and serial, no window). */
static gw_err_t get_delivery(pn_message_t *msg, const char *name, bool offline,
                             gw_spec_msg_t *out, char *why, size_t whylen)
{
    pn_data_t *a = pn_message_annotations(msg);
    bool has_link = false, has_window = false, has_serial = false;
    pn_bytes_t key;
    gw_err_t err;

    if (anno_enter(a, name, &err, why, whylen)) {
        while (err == GW_OK && anno_next(a, &key)) {
            if (KEY_IS(key, GW_SPEC_ANNO_DELIVERY_LINK)) {
                if (pn_data_type(a) != PN_STRING || pn_data_get_string(a).size == 0) {
                    gwi_spec_why(why, whylen, "%s: " GW_SPEC_ANNO_DELIVERY_LINK
                                 " is %s, expected a non-empty string", name,
                                 gwi_spec_type_desc(pn_data_type(a)));
                    err = GW_ERR_SPEC_FIELD;
                }
                out->delivery_link.ptr = pn_data_get_string(a).start;
                out->delivery_link.len = pn_data_get_string(a).size;
                has_link = true;
            } else if (KEY_IS(key, GW_SPEC_ANNO_WINDOW)) {
                int64_t v;
                if (!gwi_spec_get_int(a, &v) || v < 1 || v > 65535) {
                    gwi_spec_why(why, whylen, "%s: " GW_SPEC_ANNO_WINDOW
                                 " must be an integer 1..65535", name);
                    err = GW_ERR_SPEC_FIELD;
                }
                out->window = (uint32_t)v;
                has_window = true;
            } else if (KEY_IS(key, GW_SPEC_ANNO_CLIENT_SERIAL)) {
                if (pn_data_type(a) != PN_ULONG) {
                    gwi_spec_why(why, whylen, "%s: " GW_SPEC_ANNO_CLIENT_SERIAL
                                 " is %s, expected a ulong", name,
                                 gwi_spec_type_desc(pn_data_type(a)));
                    err = GW_ERR_SPEC_FIELD;
                }
                out->client_serial = pn_data_get_ulong(a);
                has_serial = true;
            }
        }
        pn_data_exit(a);
    }
    if (err != GW_OK)
        return err;
    if (offline ? (has_link && has_serial) : (has_link && has_window && has_serial)) {
        out->has_delivery = true;
        return GW_OK;
    }
    if (offline || has_link || has_window || has_serial) {
        gwi_spec_why(why, whylen, "%s: needs " GW_SPEC_ANNO_DELIVERY_LINK "%s and "
                     GW_SPEC_ANNO_CLIENT_SERIAL "%s", name,
                     offline ? "" : ", " GW_SPEC_ANNO_WINDOW, offline ? "" : " together");
        return GW_ERR_SPEC_FIELD;
    }
    return GW_OK;
}

/* Payload: Data section (normal case), or from native AMQP senders an
 * AmqpValue holding binary or string. */
static gw_err_t get_payload(pn_message_t *msg, const char *name, gw_spec_str_t *payload,
                            char *why, size_t whylen)
{
    pn_data_t *body = pn_message_body(msg);
    bool inferred = pn_message_is_inferred(msg);
    pn_type_t t;

    pn_data_rewind(body);
    if (!pn_data_next(body)) {
        gwi_spec_why(why, whylen, "%s: missing body, expected a Data section", name);
        return GW_ERR_SPEC_BODY;
    }
    t = pn_data_type(body);
    if (t == PN_BINARY) {
        pn_bytes_t b = pn_data_get_binary(body);
        payload->ptr = b.start;
        payload->len = b.size;
        return GW_OK;
    }
    if (t == PN_STRING && !inferred) {
        pn_bytes_t b = pn_data_get_string(body);
        payload->ptr = b.start;
        payload->len = b.size;
        return GW_OK;
    }
    if (inferred)
        gwi_spec_why(why, whylen, "%s: body is an AmqpSequence section, expected a Data section",
                     name);
    else
        gwi_spec_why(why, whylen,
                     "%s: body is an AmqpValue holding %s, expected a Data section (or an "
                     "AmqpValue binary/string)",
                     name, gwi_spec_type_desc(t));
    return GW_ERR_SPEC_BODY;
}

static gw_err_t get_correlation_id(pn_message_t *msg, const char *name, gw_spec_str_t *out,
                                   char *why, size_t whylen);

gw_err_t gw_spec_client_id(pn_message_t *msg, const char *name, gw_spec_str_t *out, char *why,
                           size_t whylen)
{
    gw_err_t err = get_correlation_id(msg, name, out, why, whylen);
    if (err != GW_OK)
        return err;
    if (out->len > 65535) {
        gwi_spec_why(why, whylen, "%s: correlation-id of %zu bytes exceeds 65535", name, out->len);
        return GW_ERR_SPEC_FIELD;
    }
    if (gw_utf8_validate(out->ptr, out->len) != GW_OK) {
        gwi_spec_why(why, whylen, "%s: correlation-id is not valid UTF-8", name);
        return GW_ERR_SPEC_FIELD;
    }
    return GW_OK;
}

static gw_err_t get_correlation_id(pn_message_t *msg, const char *name, gw_spec_str_t *out,
                                   char *why, size_t whylen)
{
    /* pn_message_get_correlation_id(), never pn_message_correlation_id():
     * the latter moves the id into a pn_data_t and frees the bytes that
     * out->ptr would point at. */
    pn_atom_t id = pn_message_get_correlation_id(msg);
    if (id.type == PN_NULL) {
        gwi_spec_why(why, whylen, "%s: missing correlation-id", name);
        return GW_ERR_SPEC_FIELD;
    }
    if (id.type != PN_STRING) {
        gwi_spec_why(why, whylen, "%s: correlation-id is %s, expected a string", name,
                     gwi_spec_type_desc(id.type));
        return GW_ERR_SPEC_FIELD;
    }
    if (id.u.as_bytes.size == 0) {
        gwi_spec_why(why, whylen, "%s: correlation-id is empty", name);
        return GW_ERR_SPEC_FIELD;
    }
    out->ptr = id.u.as_bytes.start;
    out->len = id.u.as_bytes.size;
    return GW_OK;
}

/* message-id as a ulong. proton itself turns a non-negative int/long id
 * into a ulong and drops ids of illegal types (uint, ushort...) on decode,
 * so those arrive here as absent. packet_id: require an MQTT packet
 * identifier 1..65535 (MQTT-2.3.1-1). */
static gw_err_t get_message_id(pn_message_t *msg, const char *name, bool packet_id,
                               uint64_t *out, char *why, size_t whylen)
{
    pn_atom_t id = pn_message_get_id(msg);
    if (id.type == PN_NULL) {
        gwi_spec_why(why, whylen, "%s: missing message-id", name);
        return GW_ERR_SPEC_FIELD;
    }
    if (id.type != PN_ULONG) {
        gwi_spec_why(why, whylen, "%s: message-id is %s, expected a ulong", name,
                     gwi_spec_type_desc(id.type));
        return GW_ERR_SPEC_FIELD;
    }
    if (packet_id && (id.u.as_ulong == 0 || id.u.as_ulong > 65535)) {
        gwi_spec_why(why, whylen, "%s: message-id %" PRIu64 " is not an MQTT packet id 1..65535",
                     name, id.u.as_ulong);
        return GW_ERR_SPEC_FIELD;
    }
    *out = id.u.as_ulong;
    return GW_OK;
}

/* ------------------------------------------------------------------ */
/* Bodies with entries                                                 */
/* ------------------------------------------------------------------ */

static gw_err_t body_value(pn_message_t *msg, const char *name, pn_type_t want,
                           const char *want_desc, char *why, size_t whylen)
{
    pn_data_t *body = pn_message_body(msg);
    pn_type_t t;

    pn_data_rewind(body);
    if (!pn_data_next(body)) {
        gwi_spec_why(why, whylen, "%s: missing body, expected an AmqpValue %s", name, want_desc);
        return GW_ERR_SPEC_BODY;
    }
    t = pn_data_type(body);
    if (pn_message_is_inferred(msg)) {
        gwi_spec_why(why, whylen, "%s: body is %s, expected an AmqpValue %s", name,
                     t == PN_BINARY ? "a Data section" : "an AmqpSequence section", want_desc);
        return GW_ERR_SPEC_BODY;
    }
    if (t != want) {
        gwi_spec_why(why, whylen, "%s: body is an AmqpValue holding %s, expected %s", name,
                     gwi_spec_type_desc(t), want_desc);
        return GW_ERR_SPEC_BODY;
    }
    return GW_OK;
}

static gw_err_t check_count(const char *name, size_t count, bool allow_empty, char *why,
                            size_t whylen)
{
    if (count > GW_SPEC_MAX_ENTRIES) {
        gwi_spec_why(why, whylen, "%s: %zu entries, more than the limit of %d", name, count,
                     GW_SPEC_MAX_ENTRIES);
        return GW_ERR_SPEC_BODY;
    }
    if (count == 0 && !allow_empty) {
        /* MQTT-3.8.3-3, MQTT-3.10.3-2 */
        gwi_spec_why(why, whylen, "%s: no topic filters", name);
        return GW_ERR_SPEC_BODY;
    }
    return GW_OK;
}

static gw_err_t check_filter(const char *name, pn_bytes_t f, char *why, size_t whylen)
{
    gw_err_t err;
    if (f.size == 0) {
        gwi_spec_why(why, whylen, "%s: empty topic filter", name);
        return GW_ERR_MQTT_TOPIC_EMPTY;
    }
    err = gw_topic_filter_validate(&topic_ctx, f.start, f.size);
    if (err != GW_OK)
        gwi_spec_why(why, whylen, "%s: \"%.*s\" is not a valid topic filter (%s)", name,
                     f.size > 100 ? 100 : (int)f.size, f.start, gw_err_name(err));
    return err;
}

/* Advance to the next element of an entered map or list; it must be a string
 * holding a valid topic filter. what names the position for the reason
 * ("map key", "list element"). On GW_OK *f borrows from body. */
static gw_err_t next_filter(pn_data_t *body, const char *name, const char *what, size_t i,
                            pn_bytes_t *f, char *why, size_t whylen)
{
    if (!pn_data_next(body) || pn_data_type(body) != PN_STRING) {
        gwi_spec_why(why, whylen, "%s: %s %zu is %s, expected a string topic filter", name, what,
                     i, gwi_spec_type_desc(pn_data_type(body)));
        return GW_ERR_SPEC_BODY;
    }
    *f = pn_data_get_string(body);
    return check_filter(name, *f, why, whylen);
}

/* AmqpValue map: topic filter (string) -> QoS (any integer type, 0..2). */
static gw_err_t get_filter_map(pn_message_t *msg, const char *name, bool allow_empty,
                               gw_spec_msg_t *out, char *why, size_t whylen)
{
    pn_data_t *body = pn_message_body(msg);
    size_t n, count;
    gw_err_t err;

    if ((err = body_value(msg, name, PN_MAP, "map of topic filter to QoS", why, whylen)) != GW_OK)
        return err;
    n = pn_data_get_map(body);
    if (n % 2 != 0) {
        gwi_spec_why(why, whylen, "%s: map with an odd number (%zu) of elements", name, n);
        return GW_ERR_SPEC_BODY;
    }
    count = n / 2;
    if ((err = check_count(name, count, allow_empty, why, whylen)) != GW_OK)
        return err;
    if (count > 0) {
        out->entries = calloc(count, sizeof(*out->entries));
        if (!out->entries)
            return GW_ERR_NOMEM;
    }
    pn_data_enter(body);
    for (size_t i = 0; i < count; i++) {
        pn_bytes_t key;
        int64_t qos;
        if ((err = next_filter(body, name, "map key", i, &key, why, whylen)) != GW_OK)
            break;
        if (!pn_data_next(body) || !gwi_spec_get_int(body, &qos)) {
            gwi_spec_why(why, whylen, "%s: value for key \"%.*s\" is %s, expected an integer QoS",
                         name, key.size > 100 ? 100 : (int)key.size, key.start,
                         gwi_spec_type_desc(pn_data_type(body)));
            err = GW_ERR_SPEC_BODY;
            break;
        }
        if (qos < 0 || qos > 2) {
            gwi_spec_why(why, whylen, "%s: QoS %" PRId64 " for key \"%.*s\" out of range 0..2",
                         name, qos, key.size > 100 ? 100 : (int)key.size, key.start);
            err = GW_ERR_SPEC_BODY;
            break;
        }
        out->entries[i].filter.ptr = key.start;
        out->entries[i].filter.len = key.size;
        out->entries[i].qos = (uint8_t)qos;
    }
    pn_data_exit(body);
    if (err == GW_OK)
        out->count = count;
    return err;
}

/* AmqpValue list of topic filters (strings). */
static gw_err_t get_filter_list(pn_message_t *msg, const char *name, gw_spec_msg_t *out,
                                char *why, size_t whylen)
{
    pn_data_t *body = pn_message_body(msg);
    size_t count;
    gw_err_t err;

    if ((err = body_value(msg, name, PN_LIST, "list of topic filters", why, whylen)) != GW_OK)
        return err;
    count = pn_data_get_list(body);
    if ((err = check_count(name, count, false, why, whylen)) != GW_OK)
        return err;
    out->entries = calloc(count, sizeof(*out->entries));
    if (!out->entries)
        return GW_ERR_NOMEM;
    pn_data_enter(body);
    for (size_t i = 0; i < count; i++) {
        pn_bytes_t f;
        if ((err = next_filter(body, name, "list element", i, &f, why, whylen)) != GW_OK)
            break;
        out->entries[i].filter.ptr = f.start;
        out->entries[i].filter.len = f.size;
    }
    pn_data_exit(body);
    if (err == GW_OK)
        out->count = count;
    return err;
}

/* ------------------------------------------------------------------ */
/* Entry points                                                        */
/* ------------------------------------------------------------------ */

static gw_err_t decode_kind(pn_message_t *msg, const gw_spec_decode_opts_t *opts,
                            gw_spec_msg_t *out, char *why, size_t whylen)
{
    const char *name = gw_spec_kind_name(out->kind);
    gw_err_t err = GW_OK;

    switch (out->kind) {
    case GW_SPEC_PUBLISH:
    case GW_SPEC_WILL: {
        gw_spec_publish_t *p = &out->publish;
        if (out->kind == GW_SPEC_PUBLISH && opts->topic) {
            /* spec 2.6: the link target wins over `to` */
            p->topic.ptr = opts->topic;
            p->topic.len = opts->topic_len;
            err = opts->topic_len == 0
                      ? GW_ERR_MQTT_TOPIC_EMPTY
                      : gw_topic_name_validate(&topic_ctx, opts->topic, opts->topic_len);
            if (err != GW_OK) {
                gwi_spec_why(why, whylen, "%s: link target \"%.*s\" is not a valid topic name (%s)",
                             name, opts->topic_len > 100 ? 100 : (int)opts->topic_len,
                             opts->topic, gw_err_name(err));
                return err;
            }
        } else if ((err = get_topic(msg, name, &p->topic, why, whylen)) != GW_OK) {
            return err;
        }
        if ((err = get_annotations(msg, name, p, why, whylen)) != GW_OK)
            return err;
        if ((err = get_payload(msg, name, &p->payload, why, whylen)) != GW_OK)
            return err;
        p->delivery_count = pn_message_get_delivery_count(msg);
        if (out->kind == GW_SPEC_PUBLISH) {
            /* Optional; ids that are not a ulong (a native application's
             * string or uuid id) are not MQTT packet ids: ignored. */
            pn_atom_t id = pn_message_get_id(msg);
            if (id.type == PN_ULONG) {
                p->has_message_id = true;
                p->message_id = id.u.as_ulong;
            }
        }
        return GW_OK;
    }
    case GW_SPEC_WILL_CLEAR:
    case GW_SPEC_WILL_PUBLISH:
        return GW_OK;
    case GW_SPEC_LIST: {
        const char *reply_to;
        if ((err = get_correlation_id(msg, name, &out->correlation_id, why, whylen)) != GW_OK)
            return err;
        reply_to = pn_message_get_reply_to(msg);
        if (!reply_to || !*reply_to) {
            gwi_spec_why(why, whylen, "%s: %s reply-to", name, reply_to ? "empty" : "missing");
            return GW_ERR_SPEC_FIELD;
        }
        out->reply_to.ptr = reply_to;
        out->reply_to.len = strlen(reply_to);
        return get_delivery(msg, name, false, out, why, whylen);
    }
    case GW_SPEC_SUBSCRIPTIONS:
        if ((err = get_session_present(msg, name, out, why, whylen)) != GW_OK)
            return err;
        if ((err = get_filter_map(msg, name, true, out, why, whylen)) != GW_OK)
            return err;
        /* spec 3.6: a peer following the older EnMasse design sends no
         * x-opt-session-present; then "the map is not empty" decides. */
        if (!out->has_session_present)
            out->session_present = out->count > 0;
        return GW_OK;
    case GW_SPEC_CLOSE:
    case GW_SPEC_OFFLINE:
        if ((err = get_correlation_id(msg, name, &out->correlation_id, why, whylen)) != GW_OK)
            return err;
        return get_delivery(msg, name, out->kind == GW_SPEC_OFFLINE, out, why, whylen);
    case GW_SPEC_STOLEN:
        return GW_OK;
    case GW_SPEC_SUBSCRIBE:
    case GW_SPEC_UNSUBSCRIBE:
        if ((err = get_message_id(msg, name, true, &out->message_id, why, whylen)) != GW_OK)
            return err;
        out->has_message_id = true;
        if ((err = get_correlation_id(msg, name, &out->correlation_id, why, whylen)) != GW_OK)
            return err;
        if (out->kind == GW_SPEC_SUBSCRIBE)
            return get_filter_map(msg, name, false, out, why, whylen);
        return get_filter_list(msg, name, out, why, whylen);
    case GW_SPEC_PUBREL:
        /* spec 3.10/3.11: the message-id is a packet id in both directions */
        if ((err = get_message_id(msg, name, true, &out->message_id, why, whylen)) != GW_OK)
            return err;
        out->has_message_id = true;
        return GW_OK;
    }
    return GW_ERR_INVAL;
}

gw_err_t gw_spec_decode_opts(pn_message_t *msg, const gw_spec_decode_opts_t *opts,
                             gw_spec_msg_t *out, char *why, size_t whylen)
{
    const char *subject;
    bool known = true;
    gw_err_t err;

    if (!out)
        return GW_ERR_INVAL;
    memset(out, 0, sizeof(*out));
    if (why && whylen)
        why[0] = '\0';
    if (!msg || !opts)
        return GW_ERR_INVAL;

    subject = pn_message_get_subject(msg);
    if (!subject)
        out->kind = GW_SPEC_PUBLISH;
    else
        known = kind_of_subject(subject, &out->kind);
    if ((!known || !(opts->allowed & GW_SPEC_KIND_BIT(out->kind))) && opts->others_are_publish &&
        (opts->allowed & GW_SPEC_KIND_BIT(GW_SPEC_PUBLISH))) {
        /* spec 3.2: on topic and publish addresses any other subject is
         * just a publication */
        out->kind = GW_SPEC_PUBLISH;
    } else if (!known) {
        gwi_spec_why(why, whylen, "unknown subject \"%.64s\"", subject);
        out->kind = GW_SPEC_PUBLISH;
        return GW_ERR_SPEC_SUBJECT;
    } else if (!(opts->allowed & GW_SPEC_KIND_BIT(out->kind))) {
        if (!subject)
            gwi_spec_why(why, whylen, "missing subject (an AMQP_PUBLISH is not accepted here)");
        else
            gwi_spec_why(why, whylen, "subject \"%s\" (%s) is not accepted here", subject,
                         gw_spec_kind_name(out->kind));
        out->kind = GW_SPEC_PUBLISH;
        return GW_ERR_SPEC_SUBJECT;
    }
    err = decode_kind(msg, opts, out, why, whylen);
    if (err == GW_OK && opts->need_correlation)
        err = gw_spec_client_id(msg, gw_spec_kind_name(out->kind), &out->correlation_id, why,
                                whylen);
    if (err != GW_OK) {
        if (err == GW_ERR_NOMEM)
            gwi_spec_why(why, whylen, "%s: out of memory", gw_spec_kind_name(out->kind));
        gw_spec_msg_clear(out);
    }
    return err;
}

gw_err_t gw_spec_decode_kinds(pn_message_t *msg, unsigned allowed, gw_spec_msg_t *out, char *why,
                              size_t whylen)
{
    gw_spec_decode_opts_t opts = {.allowed = allowed};
    return gw_spec_decode_opts(msg, &opts, out, why, whylen);
}

gw_err_t gw_spec_decode(pn_message_t *msg, gw_spec_msg_t *out, char *why, size_t whylen)
{
    gw_spec_decode_opts_t opts = {.allowed = GW_SPEC_KIND_ALL};
    return gw_spec_decode_opts(msg, &opts, out, why, whylen);
}

void gw_spec_msg_clear(gw_spec_msg_t *m)
{
    if (!m)
        return;
    free(m->entries);
    memset(m, 0, sizeof(*m));
}
