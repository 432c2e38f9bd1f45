/*
 * spec_encode.c - build the spec messages into a caller-owned pn_message_t.
 *
 * Wire choices (documented in gw/spec.h): annotation keys are symbols,
 * x-opt-mqtt-qos is an AMQP int (as EnMasse sends it), x-opt-retain-message
 * a bool; map values (QoS) are ints; message-id is a ulong; correlation-id
 * a string. Payloads go into one Data section.
 *
 * Hot path (AMQP_PUBLISH): pn_message_clear() keeps every buffer of the
 * message, so re-encoding into the same pn_message_t does not allocate once
 * its buffers have grown to the largest message seen. The only allocation
 * of ours is for a topic or address longer than GWI_STACK_STR bytes, which
 * must be NUL-terminated for proton's setters.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>

#include "gw/spec.h"
#include "spec/spec_internal.h"

#define GWI_STACK_STR 512

typedef int (*pn_setter_fn)(pn_message_t *msg, const char *value);

static gw_err_t pn_rc(int rc)
{
    if (rc == 0)
        return GW_OK;
    return rc == PN_OUT_OF_MEMORY ? GW_ERR_NOMEM : GW_ERR_INVAL;
}

/* proton's string setters take a NUL-terminated C string; our topics are
 * length-delimited and borrowed from MQTT packets. Copy to the stack when
 * short (the common case), to the heap when long. Refuse an embedded NUL:
 * proton would silently truncate there (MQTT-1.5.3-2 forbids it anyway). */
static gw_err_t set_str(pn_message_t *msg, pn_setter_fn set, const char *s, size_t len)
{
    char stack[GWI_STACK_STR];
    char *buf = stack;
    gw_err_t err;

    if (len > 0 && (!s || memchr(s, '\0', len)))
        return GW_ERR_INVAL;
    if (len >= sizeof(stack)) {
        buf = malloc(len + 1);
        if (!buf)
            return GW_ERR_NOMEM;
    }
    if (len > 0)
        memcpy(buf, s, len);
    buf[len] = '\0';
    err = pn_rc(set(msg, buf));
    if (buf != stack)
        free(buf);
    return err;
}

static gw_err_t set_corr_str(pn_message_t *msg, const char *s, size_t len)
{
    pn_atom_t id;
    id.type = PN_STRING;
    id.u.as_bytes = pn_bytes(len, s);
    /* proton copies string ids (pni_msgid_validate_intern). */
    return pn_rc(pn_message_set_correlation_id(msg, id));
}

static gw_err_t set_msgid(pn_message_t *msg, uint64_t id)
{
    pn_atom_t atom;
    atom.type = PN_ULONG;
    atom.u.as_ulong = id;
    return pn_rc(pn_message_set_id(msg, atom));
}

static gw_err_t put_annotations(pn_message_t *msg, uint8_t qos, bool retain,
                                const gw_spec_str_t *publisher)
{
    pn_data_t *a = pn_message_annotations(msg);
    int rc = 0;
    rc |= pn_data_put_map(a);
    pn_data_enter(a);
    rc |= pn_data_put_symbol(a, pn_bytes(sizeof(GW_SPEC_ANNO_RETAIN) - 1, GW_SPEC_ANNO_RETAIN));
    rc |= pn_data_put_bool(a, retain);
    rc |= pn_data_put_symbol(a, pn_bytes(sizeof(GW_SPEC_ANNO_QOS) - 1, GW_SPEC_ANNO_QOS));
    rc |= pn_data_put_int(a, qos);
    if (publisher && publisher->len) {
        rc |= pn_data_put_symbol(
            a, pn_bytes(sizeof(GW_SPEC_ANNO_PUBLISHER) - 1, GW_SPEC_ANNO_PUBLISHER));
        rc |= pn_data_put_string(a, pn_bytes(publisher->len, publisher->ptr));
    }
    pn_data_exit(a);
    return rc ? GW_ERR_NOMEM : GW_OK;
}

static gw_err_t put_payload(pn_message_t *msg, const gw_spec_str_t *payload)
{
    pn_data_t *body = pn_message_body(msg);
    if (payload->len > 0 && !payload->ptr)
        return GW_ERR_INVAL;
    /* inferred + binary = one Data section (not an AmqpValue). */
    pn_message_set_inferred(msg, true);
    return pn_rc(pn_data_put_binary(body, pn_bytes(payload->len, payload->ptr)));
}

/* Shared by AMQP_PUBLISH and AMQP_WILL. */
static gw_err_t encode_content(pn_message_t *msg, const char *subject,
                               const gw_spec_publish_t *p, bool with_id)
{
    gw_err_t err;

    if (!msg || !p || p->qos > 2)
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    if (subject && (err = pn_rc(pn_message_set_subject(msg, subject))) != GW_OK)
        goto cleanup;
    if ((err = set_str(msg, pn_message_set_address, p->topic.ptr, p->topic.len)) != GW_OK)
        goto cleanup;
    pn_message_set_durable(msg, p->qos > 0);
    pn_message_set_delivery_count(msg, p->delivery_count);
    if (with_id && p->has_message_id && (err = set_msgid(msg, p->message_id)) != GW_OK)
        goto cleanup;
    if ((err = put_annotations(msg, p->qos, p->retain, with_id ? &p->publisher : NULL)) !=
        GW_OK)
        goto cleanup;
    err = put_payload(msg, &p->payload);
cleanup:
    if (err != GW_OK)
        pn_message_clear(msg);
    return err;
}

gw_err_t gw_spec_encode_publish(pn_message_t *msg, const gw_spec_publish_t *p)
{
    return encode_content(msg, NULL, p, true);
}

gw_err_t gw_spec_encode_will(pn_message_t *msg, const gw_spec_publish_t *will)
{
    return encode_content(msg, GW_SPEC_SUBJECT_WILL, will, false);
}

gw_err_t gw_spec_encode_will_clear(pn_message_t *msg)
{
    if (!msg)
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    return pn_rc(pn_message_set_subject(msg, GW_SPEC_SUBJECT_WILL_CLEAR));
}

gw_err_t gw_spec_encode_will_publish(pn_message_t *msg, const char *reason)
{
    if (!msg)
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    int rc = pn_message_set_subject(msg, GW_SPEC_SUBJECT_WILL_PUBLISH);
    if (rc == 0 && reason) {
        pn_data_t *props = pn_message_properties(msg);
        rc |= pn_data_put_map(props);
        pn_data_enter(props);
        rc |= pn_data_put_string(props, pn_bytes(6, "reason"));
        rc |= pn_data_put_string(props, pn_bytes(strlen(reason), reason));
        pn_data_exit(props);
    }
    return pn_rc(rc);
}

gw_err_t gw_spec_set_correlation_id(pn_message_t *msg, const char *id, size_t len)
{
    if (!msg || (!id && len))
        return GW_ERR_INVAL;
    pn_atom_t a;
    a.type = PN_STRING;
    a.u.as_bytes = pn_bytes(len, id);
    return pn_rc(pn_message_set_correlation_id(msg, a));
}

/* Builds a per-client address into stack (cap bytes) or, when longer, a
 * heap buffer returned in *heap (caller frees). */
static gw_err_t build_addr(const gw_spec_addrs_t *addrs, gw_spec_client_addr_t which,
                           const char *id, size_t id_len, char *stack, size_t cap,
                           const char **out, size_t *out_len, char **heap)
{
    gw_err_t err = gw_spec_addr_client(addrs, which, id, id_len, stack, cap);
    *heap = NULL;
    if (err == GW_ERR_NOSPACE) {
        const char *pre = which == GW_SPEC_ADDR_PUBREL ? addrs->pubrel_prefix : addrs->to_prefix;
        size_t need;
        if (id_len > SIZE_MAX / 2)
            return GW_ERR_INVAL;
        need = id_len + strlen(pre) + 16; /* suffix and NUL */
        *heap = malloc(need);
        if (!*heap)
            return GW_ERR_NOMEM;
        err = gw_spec_addr_client(addrs, which, id, id_len, *heap, need);
        *out = *heap;
    } else {
        *out = stack;
    }
    if (err == GW_OK)
        *out_len = strlen(*out);
    return err;
}

/* Subject + correlation-id = $mqtt.to.<id>.publish (+ reply-to = control). */
static gw_err_t encode_client_ctrl(pn_message_t *msg, const char *subject,
                                   const gw_spec_addrs_t *addrs, const char *client_id,
                                   size_t id_len, bool with_reply_to)
{
    char stack[GWI_STACK_STR];
    char *heap = NULL;
    const char *addr;
    size_t addr_len;
    gw_err_t err;

    if (!msg)
        return GW_ERR_INVAL;
    if (!addrs)
        addrs = &gw_spec_default_addrs;
    pn_message_clear(msg);
    if ((err = pn_rc(pn_message_set_subject(msg, subject))) != GW_OK)
        goto cleanup;
    err = build_addr(addrs, GW_SPEC_ADDR_PUBLISH, client_id, id_len, stack, sizeof(stack),
                     &addr, &addr_len, &heap);
    if (err != GW_OK)
        goto cleanup;
    if ((err = set_corr_str(msg, addr, addr_len)) != GW_OK)
        goto cleanup;
    if (with_reply_to) {
        free(heap);
        err = build_addr(addrs, GW_SPEC_ADDR_CONTROL, client_id, id_len, stack, sizeof(stack),
                         &addr, &addr_len, &heap);
        if (err != GW_OK)
            goto cleanup;
        err = pn_rc(pn_message_set_reply_to(msg, addr));
    }
cleanup:
    free(heap);
    if (err != GW_OK)
        pn_message_clear(msg);
    return err;
}

gw_err_t gw_spec_encode_list(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                             const char *client_id, size_t id_len)
{
    return encode_client_ctrl(msg, GW_SPEC_SUBJECT_LIST, addrs, client_id, id_len, true);
}

gw_err_t gw_spec_encode_close(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                              const char *client_id, size_t id_len)
{
    return encode_client_ctrl(msg, GW_SPEC_SUBJECT_CLOSE, addrs, client_id, id_len, false);
}

static int put_key(pn_data_t *d, const char *key)
{
    return pn_data_put_symbol(d, pn_bytes(strlen(key), key));
}

/* The registration map of spec 3.12 into d (replaced): the delivery link
 * (NULL: left out), the window (0: left out) and the serial. pn_data_t
 * reuses its nodes: no allocation per message once warm. */
static gw_err_t put_registration(pn_data_t *d, const char *link, uint32_t window,
                                 uint64_t serial)
{
    int rc = 0;
    pn_data_clear(d);
    rc |= pn_data_put_map(d);
    pn_data_enter(d);
    if (link) {
        rc |= put_key(d, GW_SPEC_ANNO_DELIVERY_LINK);
        rc |= pn_data_put_string(d, pn_bytes(strlen(link), link));
    }
    if (window) {
        rc |= put_key(d, GW_SPEC_ANNO_WINDOW);
        rc |= pn_data_put_int(d, (int32_t)window);
    }
    rc |= put_key(d, GW_SPEC_ANNO_CLIENT_SERIAL);
    rc |= pn_data_put_ulong(d, serial);
    pn_data_exit(d);
    return pn_rc(rc);
}

gw_err_t gw_spec_add_delivery(pn_message_t *msg, const char *link, uint32_t window,
                              uint64_t serial)
{
    if (!msg || !link || !*link || window > 65535)
        return GW_ERR_INVAL;
    return put_registration(pn_message_annotations(msg), link, window, serial);
}

gw_err_t gw_spec_set_delivery_serial(pn_message_t *msg, uint64_t serial)
{
    if (!msg)
        return GW_ERR_INVAL;
    return put_registration(pn_message_instructions(msg), NULL, 0, serial);
}

gw_err_t gw_spec_encode_offline(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                const char *client_id, size_t id_len, const char *link,
                                uint64_t serial)
{
    gw_err_t err = encode_client_ctrl(msg, GW_SPEC_SUBJECT_OFFLINE, addrs, client_id, id_len, false);
    if (err == GW_OK)
        err = gw_spec_add_delivery(msg, link, 0, serial);
    return err;
}

static gw_err_t check_entries(const gw_spec_entry_t *entries, size_t count, bool with_qos)
{
    if (count > GW_SPEC_MAX_ENTRIES || (count > 0 && !entries))
        return GW_ERR_INVAL;
    for (size_t i = 0; i < count; i++) {
        if ((with_qos && entries[i].qos > 2) || (entries[i].filter.len > 0 && !entries[i].filter.ptr))
            return GW_ERR_INVAL;
    }
    return GW_OK;
}

/* AmqpValue map filter (string) -> QoS (int). */
static gw_err_t put_map(pn_message_t *msg, const gw_spec_entry_t *entries, size_t count)
{
    pn_data_t *body = pn_message_body(msg);
    int rc = 0;
    pn_message_set_inferred(msg, false);
    rc |= pn_data_put_map(body);
    pn_data_enter(body);
    for (size_t i = 0; i < count; i++) {
        rc |= pn_data_put_string(body, pn_bytes(entries[i].filter.len, entries[i].filter.ptr));
        rc |= pn_data_put_int(body, entries[i].qos);
    }
    pn_data_exit(body);
    return rc ? GW_ERR_NOMEM : GW_OK;
}

static gw_err_t encode_subscriptions(pn_message_t *msg, const gw_spec_entry_t *entries,
                                     size_t count, int session_present)
{
    gw_err_t err;
    if (!msg || check_entries(entries, count, true) != GW_OK)
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    if ((err = pn_rc(pn_message_set_subject(msg, GW_SPEC_SUBJECT_SUBSCRIPTIONS))) != GW_OK)
        goto cleanup;
    if (session_present >= 0) {
        pn_data_t *a = pn_message_annotations(msg);
        int rc = pn_data_put_map(a);
        pn_data_enter(a);
        rc |= pn_data_put_symbol(a, pn_bytes(sizeof(GW_SPEC_ANNO_SESSION_PRESENT) - 1,
                                             GW_SPEC_ANNO_SESSION_PRESENT));
        rc |= pn_data_put_bool(a, session_present > 0);
        pn_data_exit(a);
        if (rc) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
    }
    err = put_map(msg, entries, count);
cleanup:
    if (err != GW_OK)
        pn_message_clear(msg);
    return err;
}

gw_err_t gw_spec_encode_subscriptions(pn_message_t *msg, const gw_spec_entry_t *entries,
                                      size_t count)
{
    return encode_subscriptions(msg, entries, count, -1);
}

gw_err_t gw_spec_encode_session(pn_message_t *msg, bool session_present,
                                const gw_spec_entry_t *entries, size_t count)
{
    return encode_subscriptions(msg, entries, count, session_present ? 1 : 0);
}

gw_err_t gw_spec_encode_subscribe(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                  const char *client_id, size_t id_len, uint16_t packet_id,
                                  const gw_spec_entry_t *entries, size_t count)
{
    gw_err_t err;
    /* MQTT-2.3.1-1 (packet id != 0), MQTT-3.8.3-3 (at least one filter). */
    if (packet_id == 0 || count == 0 || check_entries(entries, count, true) != GW_OK)
        return GW_ERR_INVAL;
    err = encode_client_ctrl(msg, GW_SPEC_SUBJECT_SUBSCRIBE, addrs, client_id, id_len, false);
    if (err != GW_OK)
        return err;
    if ((err = set_msgid(msg, packet_id)) != GW_OK)
        goto cleanup;
    err = put_map(msg, entries, count);
cleanup:
    if (err != GW_OK)
        pn_message_clear(msg);
    return err;
}

gw_err_t gw_spec_encode_unsubscribe(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                    const char *client_id, size_t id_len, uint16_t packet_id,
                                    const gw_spec_entry_t *entries, size_t count)
{
    pn_data_t *body;
    gw_err_t err;
    int rc = 0;

    /* MQTT-2.3.1-1, MQTT-3.10.3-2. */
    if (packet_id == 0 || count == 0 || check_entries(entries, count, false) != GW_OK)
        return GW_ERR_INVAL;
    err = encode_client_ctrl(msg, GW_SPEC_SUBJECT_UNSUBSCRIBE, addrs, client_id, id_len, false);
    if (err != GW_OK)
        return err;
    if ((err = set_msgid(msg, packet_id)) != GW_OK)
        goto cleanup;
    body = pn_message_body(msg);
    pn_message_set_inferred(msg, false);
    rc |= pn_data_put_list(body);
    pn_data_enter(body);
    for (size_t i = 0; i < count; i++)
        rc |= pn_data_put_string(body, pn_bytes(entries[i].filter.len, entries[i].filter.ptr));
    pn_data_exit(body);
    err = rc ? GW_ERR_NOMEM : GW_OK;
cleanup:
    if (err != GW_OK)
        pn_message_clear(msg);
    return err;
}

gw_err_t gw_spec_encode_pubrel(pn_message_t *msg, uint64_t message_id)
{
    gw_err_t err;
    /* spec 3.10/3.11: a packet id (MQTT-2.3.1-1) */
    if (!msg || message_id == 0 || message_id > 65535)
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    if ((err = pn_rc(pn_message_set_subject(msg, GW_SPEC_SUBJECT_PUBREL))) != GW_OK)
        goto cleanup;
    err = set_msgid(msg, message_id);
cleanup:
    if (err != GW_OK)
        pn_message_clear(msg);
    return err;
}
