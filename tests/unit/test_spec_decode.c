/*
 * test_spec_decode.c - messages built by hand with the raw proton API, the
 * way a native AMQP application or EnMasse would send them, decoded; and
 * every malformed variant refused with the right error and reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <proton/codec.h>
#include <proton/message.h>

#include "gw/spec.h"

#define STR(s) ((gw_spec_str_t){(s), sizeof(s) - 1})

static int setup(void **state)
{
    *state = pn_message();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    pn_message_free(*state);
    return 0;
}

/* Through the wire, so what we test is what a peer's bytes give us. */
static void wire(pn_message_t *m)
{
    pn_rwbytes_t buf = {0, NULL};
    char why[200];
    ssize_t n = pn_message_encode2(m, &buf);
    assert_true(n > 0);
    assert_int_equal(gw_spec_message_decode(m, buf.start, (size_t)n, why, sizeof why), GW_OK);
    free(buf.start);
}

static void expect_err(pn_message_t *m, gw_err_t want, const char *why_part)
{
    gw_spec_msg_t d;
    char why[256];
    memset(&d, 0x5a, sizeof d); /* out need not be initialised */
    wire(m);
    gw_err_t err = gw_spec_decode(m, &d, why, sizeof why);
    if (err != want || !strstr(why, why_part))
        fail_msg("got %s \"%s\", want %s \"...%s...\"", gw_err_name(err), why, gw_err_name(want),
                 why_part);
    /* refused: nothing of it is left in out */
    assert_null(d.entries);
    assert_int_equal(d.count, 0);
    assert_null(d.publish.topic.ptr);
    assert_null(d.correlation_id.ptr);
    /* why is optional */
    assert_int_equal(gw_spec_decode(m, &d, NULL, 0), want);
}

static void decode_ok(pn_message_t *m, gw_spec_msg_t *d)
{
    char why[256];
    wire(m);
    gw_err_t err = gw_spec_decode(m, d, why, sizeof why);
    if (err != GW_OK)
        fail_msg("decode failed: %s \"%s\"", gw_err_name(err), why);
}

static void put_data_body(pn_message_t *m, const char *s)
{
    pn_message_set_inferred(m, true);
    pn_data_put_binary(pn_message_body(m), pn_bytes(strlen(s), s));
}

static void put_anno_key(pn_data_t *a, const char *key)
{
    pn_data_put_symbol(a, pn_bytes(strlen(key), key));
}

static void set_corr(pn_message_t *m, const char *s)
{
    pn_atom_t id = {.type = PN_STRING};
    id.u.as_bytes = pn_bytes(strlen(s), s);
    pn_message_set_correlation_id(m, id);
}

static void set_id(pn_message_t *m, uint64_t v)
{
    pn_atom_t id = {.type = PN_ULONG};
    id.u.as_ulong = v;
    pn_message_set_id(m, id);
}

/* Begins an annotations map; caller puts pairs then pn_data_exit(). */
static pn_data_t *anno_begin(pn_message_t *m)
{
    pn_data_t *a = pn_message_annotations(m);
    pn_data_put_map(a);
    pn_data_enter(a);
    return a;
}

/* ------------------------------------------------------------------ */
/* Native senders                                                      */
/* ------------------------------------------------------------------ */

static void test_native_durable_only(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    pn_message_set_address(m, "sensors/temp");
    pn_message_set_durable(m, true);
    put_data_body(m, "21.5");
    decode_ok(m, &d);
    assert_int_equal(d.kind, GW_SPEC_PUBLISH);
    assert_int_equal(d.publish.qos, 1);
    assert_false(d.publish.retain);
    assert_true(d.publish.durable);
    assert_false(d.publish.has_message_id);
    assert_int_equal(d.publish.payload.len, 4);
    assert_memory_equal(d.publish.payload.ptr, "21.5", 4);
    assert_int_equal(d.publish.topic.len, strlen("sensors/temp"));

    pn_message_clear(m);
    pn_message_set_address(m, "sensors/temp");
    put_data_body(m, "x");
    decode_ok(m, &d);
    assert_int_equal(d.publish.qos, 0);
    assert_false(d.publish.durable);
}

static void test_native_amqpvalue_bodies(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    pn_message_set_address(m, "t");
    pn_message_set_inferred(m, false);
    pn_data_put_string(pn_message_body(m), pn_bytes(5, "hello"));
    decode_ok(m, &d);
    assert_int_equal(d.publish.payload.len, 5);
    assert_memory_equal(d.publish.payload.ptr, "hello", 5);

    pn_message_clear(m);
    pn_message_set_address(m, "t");
    pn_message_set_inferred(m, false);
    pn_data_put_binary(pn_message_body(m), pn_bytes(3, "\x01\x00\x02"));
    decode_ok(m, &d);
    assert_int_equal(d.publish.payload.len, 3);
    assert_memory_equal(d.publish.payload.ptr, "\x01\x00\x02", 3);
}

static void test_native_annotation_types(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    /* QoS as ubyte / long / ulong / short, keys as strings, unknown keys of
     * odd types around them; durable contradicting the annotation. */
    struct {
        pn_type_t type;
        int qos;
    } cases[] = {{PN_UBYTE, 2}, {PN_LONG, 1}, {PN_ULONG, 2}, {PN_SHORT, 0}, {PN_UINT, 1},
                 {PN_BYTE, 2}, {PN_USHORT, 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pn_message_clear(m);
        pn_message_set_address(m, "a/b");
        pn_message_set_durable(m, cases[i].qos == 0);
        pn_data_t *a = anno_begin(m);
        pn_data_put_ulong(a, 77); /* numeric key, allowed by AMQP, ignored */
        pn_data_put_string(a, pn_bytes(1, "v"));
        put_anno_key(a, "x-opt-other");
        pn_data_put_list(a);
        pn_data_put_string(a, pn_bytes(strlen(GW_SPEC_ANNO_QOS), GW_SPEC_ANNO_QOS));
        switch (cases[i].type) {
        case PN_UBYTE: pn_data_put_ubyte(a, (uint8_t)cases[i].qos); break;
        case PN_LONG: pn_data_put_long(a, cases[i].qos); break;
        case PN_ULONG: pn_data_put_ulong(a, (uint64_t)cases[i].qos); break;
        case PN_SHORT: pn_data_put_short(a, (int16_t)cases[i].qos); break;
        case PN_UINT: pn_data_put_uint(a, (uint32_t)cases[i].qos); break;
        case PN_BYTE: pn_data_put_byte(a, (int8_t)cases[i].qos); break;
        default: pn_data_put_ushort(a, (uint16_t)cases[i].qos); break;
        }
        put_anno_key(a, GW_SPEC_ANNO_RETAIN);
        pn_data_put_bool(a, true);
        pn_data_exit(a);
        put_data_body(m, "p");
        decode_ok(m, &d);
        assert_int_equal(d.publish.qos, cases[i].qos);
        assert_true(d.publish.retain);
        assert_int_equal(d.publish.durable, cases[i].qos == 0);
    }
}

static void test_native_message_ids(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    /* a string id (usual for native apps): not an MQTT packet id */
    pn_message_set_address(m, "t");
    pn_atom_t sid = {.type = PN_STRING};
    sid.u.as_bytes = pn_bytes(3, "abc");
    pn_message_set_id(m, sid);
    put_data_body(m, "x");
    decode_ok(m, &d);
    assert_false(d.publish.has_message_id);

    /* (int and long ids, which proton 0.37 cannot even send: see
     * test_spec_wire.c, which feeds them as raw bytes) */

    /* SUBSCRIBE with QoS values of mixed integer types (EnMasse style) */
    pn_message_clear(m);
    pn_message_set_subject(m, "subscribe");
    set_id(m, 300);
    set_corr(m, "$mqtt.to.c.publish");
    pn_data_t *b = pn_message_body(m);
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(3, "a/b"));
    pn_data_put_ubyte(b, 1);
    pn_data_put_string(b, pn_bytes(1, "#"));
    pn_data_put_long(b, 2);
    pn_data_exit(b);
    decode_ok(m, &d);
    assert_int_equal(d.kind, GW_SPEC_SUBSCRIBE);
    assert_int_equal(d.message_id, 300);
    assert_int_equal(d.count, 2);
    assert_int_equal(d.entries[0].qos, 1);
    assert_int_equal(d.entries[1].qos, 2);
    assert_int_equal(d.entries[1].filter.len, 1);
    gw_spec_msg_clear(&d);
}

static void test_decode_kinds(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    unsigned lwt = GW_SPEC_KIND_BIT(GW_SPEC_WILL) | GW_SPEC_KIND_BIT(GW_SPEC_WILL_CLEAR);
    pn_message_set_subject(m, "will-clear");
    assert_int_equal(gw_spec_decode_kinds(m, lwt, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_WILL_CLEAR);

    /* no subject on a control link */
    pn_message_clear(m);
    pn_message_set_address(m, "t");
    put_data_body(m, "x");
    assert_int_equal(gw_spec_decode_kinds(m, lwt, &d, why, sizeof why), GW_ERR_SPEC_SUBJECT);
    assert_non_null(strstr(why, "missing subject"));

    pn_message_set_subject(m, "list");
    assert_int_equal(gw_spec_decode_kinds(m, lwt, &d, why, sizeof why), GW_ERR_SPEC_SUBJECT);
    assert_non_null(strstr(why, "\"list\" (AMQP_LIST) is not accepted here"));
}

static void test_decode_opts(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    gw_spec_decode_opts_t topic_addr = {.allowed = GW_SPEC_KIND_BIT(GW_SPEC_PUBLISH),
                                        .others_are_publish = true,
                                        .topic = "room/1/tempXX", .topic_len = 11};
    gw_spec_decode_opts_t l4 = {.allowed = GW_SPEC_KIND_BIT(GW_SPEC_PUBLISH) |
                                           GW_SPEC_KIND_BIT(GW_SPEC_PUBREL),
                                .others_are_publish = true};

    /* topic address: any subject is a publication, the link target wins */
    pn_message_set_subject(m, "subscribe");
    pn_message_set_address(m, "other/topic");
    put_data_body(m, "9");
    wire(m);
    assert_int_equal(gw_spec_decode_opts(m, &topic_addr, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_PUBLISH);
    assert_int_equal(d.publish.topic.len, 11);
    assert_memory_equal(d.publish.topic.ptr, "room/1/temp", 11);
    assert_null(d.entries);

    /* no `to` at all: fine with a link target */
    pn_message_clear(m);
    pn_message_set_subject(m, "made-up");
    put_data_body(m, "9");
    assert_int_equal(gw_spec_decode_opts(m, &topic_addr, &d, why, sizeof why), GW_OK);
    assert_memory_equal(d.publish.topic.ptr, "room/1/temp", 11);

    /* a link target that is not a topic name */
    gw_spec_decode_opts_t bad = topic_addr;
    bad.topic = "room/#";
    bad.topic_len = 6;
    assert_int_equal(gw_spec_decode_opts(m, &bad, &d, why, sizeof why), GW_ERR_MQTT_TOPIC_WILDCARD);
    assert_non_null(strstr(why, "link target \"room/#\""));

    /* L4: pubrel is a PUBREL, "will" is just a publication */
    pn_message_clear(m);
    pn_message_set_subject(m, "pubrel");
    set_id(m, 3);
    assert_int_equal(gw_spec_decode_opts(m, &l4, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_PUBREL);
    assert_int_equal(d.message_id, 3);
    pn_message_set_subject(m, "will");
    pn_message_set_address(m, "t");
    put_data_body(m, "x");
    assert_int_equal(gw_spec_decode_opts(m, &l4, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_PUBLISH);

    /* strict addresses refuse unknown subjects */
    gw_spec_decode_opts_t strict = {.allowed = GW_SPEC_KIND_BIT(GW_SPEC_PUBREL)};
    pn_message_set_subject(m, "nonsense");
    assert_int_equal(gw_spec_decode_opts(m, &strict, &d, why, sizeof why), GW_ERR_SPEC_SUBJECT);
    assert_int_equal(gw_spec_decode_opts(m, NULL, &d, why, sizeof why), GW_ERR_INVAL);
}

/* ------------------------------------------------------------------ */
/* Malformed                                                           */
/* ------------------------------------------------------------------ */

static void base_publish(pn_message_t *m, const char *to)
{
    pn_message_clear(m);
    if (to)
        pn_message_set_address(m, to);
    put_data_body(m, "payload");
}

static void test_bad_subject(void **state)
{
    pn_message_t *m = *state;
    base_publish(m, "t");
    pn_message_set_subject(m, "subscribe-all");
    expect_err(m, GW_ERR_SPEC_SUBJECT, "unknown subject \"subscribe-all\"");
    pn_message_set_subject(m, "");
    expect_err(m, GW_ERR_SPEC_SUBJECT, "unknown subject \"\"");
    pn_message_set_subject(m, "WILL");
    expect_err(m, GW_ERR_SPEC_SUBJECT, "unknown subject");
    /* a control message that lost its subject is a PUBLISH without `to` */
    pn_message_clear(m);
    set_corr(m, "$mqtt.to.c.publish");
    set_id(m, 1);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_PUBLISH: missing `to`");
}

static void test_bad_to(void **state)
{
    pn_message_t *m = *state;
    base_publish(m, NULL);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_PUBLISH: missing `to`");
    base_publish(m, "");
    expect_err(m, GW_ERR_MQTT_TOPIC_EMPTY, "AMQP_PUBLISH: `to` is empty");
    base_publish(m, "a/+/c");
    expect_err(m, GW_ERR_MQTT_TOPIC_WILDCARD, "`to` \"a/+/c\" is not a valid topic name");
    base_publish(m, "a/#");
    expect_err(m, GW_ERR_MQTT_TOPIC_WILDCARD, "not a valid topic name");
    base_publish(m, "bad\xff utf8");
    expect_err(m, GW_ERR_MQTT_UTF8, "not a valid topic name");
    base_publish(m, "a/#");
    pn_message_set_subject(m, "will");
    expect_err(m, GW_ERR_MQTT_TOPIC_WILDCARD, "AMQP_WILL: `to`");
    base_publish(m, NULL);
    pn_message_set_subject(m, "will");
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_WILL: missing `to`");
}

static void test_bad_annotations(void **state)
{
    pn_message_t *m = *state;
    pn_data_t *a;

    base_publish(m, "t");
    a = anno_begin(m);
    put_anno_key(a, GW_SPEC_ANNO_QOS);
    pn_data_put_int(a, 3);
    pn_data_exit(a);
    expect_err(m, GW_ERR_SPEC_FIELD, "x-opt-mqtt-qos 3 out of range 0..2");

    base_publish(m, "t");
    a = anno_begin(m);
    put_anno_key(a, GW_SPEC_ANNO_QOS);
    pn_data_put_long(a, -1);
    pn_data_exit(a);
    expect_err(m, GW_ERR_SPEC_FIELD, "x-opt-mqtt-qos -1 out of range");

    base_publish(m, "t");
    a = anno_begin(m);
    put_anno_key(a, GW_SPEC_ANNO_QOS);
    pn_data_put_ulong(a, UINT64_MAX);
    pn_data_exit(a);
    expect_err(m, GW_ERR_SPEC_FIELD, "out of range");

    base_publish(m, "t");
    a = anno_begin(m);
    put_anno_key(a, GW_SPEC_ANNO_QOS);
    pn_data_put_string(a, pn_bytes(1, "1"));
    pn_data_exit(a);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_PUBLISH: x-opt-mqtt-qos is a string, expected an integer QoS");

    base_publish(m, "t");
    pn_message_set_subject(m, "will");
    a = anno_begin(m);
    put_anno_key(a, GW_SPEC_ANNO_RETAIN);
    pn_data_put_int(a, 1);
    pn_data_exit(a);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_WILL: x-opt-retain-message is an int, expected a bool");
}

static void test_bad_payload_body(void **state)
{
    pn_message_t *m = *state;
    pn_data_t *b;

    pn_message_clear(m);
    pn_message_set_address(m, "t");
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_PUBLISH: missing body");

    pn_message_clear(m);
    pn_message_set_address(m, "t");
    b = pn_message_body(m);
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(1, "k"));
    pn_data_put_int(b, 1);
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "body is an AmqpValue holding a map, expected a Data section");

    pn_message_clear(m);
    pn_message_set_address(m, "t");
    pn_message_set_inferred(m, true);
    b = pn_message_body(m);
    pn_data_put_list(b);
    pn_data_enter(b);
    pn_data_put_int(b, 1);
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "body is an AmqpSequence section");

    pn_message_clear(m);
    pn_message_set_address(m, "t");
    pn_message_set_subject(m, "will");
    /* proton decodes an AmqpValue null body as no body at all */
    pn_data_put_null(pn_message_body(m));
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_WILL: missing body");

    pn_message_clear(m);
    pn_message_set_address(m, "t");
    pn_data_put_int(pn_message_body(m), 5);
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_PUBLISH: body is an AmqpValue holding an int");
}

/* SUBSCRIBE skeleton with a valid id and correlation-id, body by caller. */
static pn_data_t *base_subscribe(pn_message_t *m, const char *subject)
{
    pn_message_clear(m);
    pn_message_set_subject(m, subject);
    set_id(m, 10);
    set_corr(m, "$mqtt.to.c.publish");
    return pn_message_body(m);
}

static void test_bad_subscribe_body(void **state)
{
    pn_message_t *m = *state;
    pn_data_t *b;

    b = base_subscribe(m, "subscribe");
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_SUBSCRIBE: missing body");

    b = base_subscribe(m, "subscribe");
    pn_data_put_list(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(1, "a"));
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_SUBSCRIBE: body is an AmqpValue holding a list, expected map");

    b = base_subscribe(m, "subscribe");
    put_data_body(m, "a/b");
    expect_err(m, GW_ERR_SPEC_BODY, "body is a Data section, expected an AmqpValue map");

    b = base_subscribe(m, "subscribe");
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(3, "a/b"));
    pn_data_put_int(b, 1);
    pn_data_put_string(b, pn_bytes(3, "a/#"));
    pn_data_put_string(b, pn_bytes(1, "1"));
    pn_data_exit(b);
    /* the entries array is already allocated here: ASan checks it is freed */
    expect_err(m, GW_ERR_SPEC_BODY,
               "AMQP_SUBSCRIBE: value for key \"a/#\" is a string, expected an integer QoS");

    b = base_subscribe(m, "subscribe");
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_symbol(b, pn_bytes(3, "a/b"));
    pn_data_put_int(b, 1);
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "map key 0 is a symbol, expected a string topic filter");

    b = base_subscribe(m, "subscribe");
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(5, "a/#/b"));
    pn_data_put_int(b, 1);
    pn_data_exit(b);
    expect_err(m, GW_ERR_MQTT_TOPIC_FILTER, "\"a/#/b\" is not a valid topic filter");

    b = base_subscribe(m, "subscribe");
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(0, ""));
    pn_data_put_int(b, 1);
    pn_data_exit(b);
    expect_err(m, GW_ERR_MQTT_TOPIC_EMPTY, "empty topic filter");

    b = base_subscribe(m, "subscribe");
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(1, "a"));
    pn_data_put_ubyte(b, 3);
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "QoS 3 for key \"a\" out of range 0..2");

    b = base_subscribe(m, "subscribe");
    pn_data_put_map(b);
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_SUBSCRIBE: no topic filters");

    /* SUBSCRIPTIONS: same map rules */
    b = base_subscribe(m, "subscriptions");
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(2, "+x"));
    pn_data_put_int(b, 0);
    pn_data_exit(b);
    expect_err(m, GW_ERR_MQTT_TOPIC_FILTER, "AMQP_SUBSCRIPTIONS: \"+x\" is not a valid topic filter");
}

static void test_too_many_entries(void **state)
{
    pn_message_t *m = *state;
    /* A map of more than 32767 pairs cannot even be built in a pn_data_t
     * (test_spec_wire.c feeds one as raw bytes); a list can. */
    pn_data_t *b = base_subscribe(m, "unsubscribe");
    pn_data_put_list(b);
    pn_data_enter(b);
    for (int i = 0; i < GW_SPEC_MAX_ENTRIES + 1; i++)
        assert_int_equal(pn_data_put_string(b, pn_bytes(1, "a")), 0);
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_UNSUBSCRIBE: 32768 entries, more than the limit of 32767");

    /* exactly the limit is fine, for a list and for a map */
    b = base_subscribe(m, "unsubscribe");
    pn_data_put_list(b);
    pn_data_enter(b);
    for (int i = 0; i < GW_SPEC_MAX_ENTRIES; i++)
        pn_data_put_string(b, pn_bytes(1, "a"));
    pn_data_exit(b);
    gw_spec_msg_t d;
    char why[200];
    wire(m);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.count, GW_SPEC_MAX_ENTRIES);
    gw_spec_msg_clear(&d);

    b = base_subscribe(m, "subscribe");
    pn_data_put_map(b);
    pn_data_enter(b);
    for (int i = 0; i < GW_SPEC_MAX_ENTRIES; i++) {
        assert_int_equal(pn_data_put_string(b, pn_bytes(3, "a/b")), 0);
        assert_int_equal(pn_data_put_int(b, i % 3), 0);
    }
    pn_data_exit(b);
    wire(m);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.count, GW_SPEC_MAX_ENTRIES);
    assert_int_equal(d.entries[GW_SPEC_MAX_ENTRIES - 1].qos, (GW_SPEC_MAX_ENTRIES - 1) % 3);
    gw_spec_msg_clear(&d);
}

static void put_one_filter_map(pn_data_t *b)
{
    pn_data_put_map(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(1, "a"));
    pn_data_put_int(b, 1);
    pn_data_exit(b);
}

static void test_bad_message_id(void **state)
{
    pn_message_t *m = *state;
    pn_data_t *b;

    b = base_subscribe(m, "subscribe");
    put_one_filter_map(b);
    pn_message_set_id(m, (pn_atom_t){.type = PN_NULL});
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_SUBSCRIBE: missing message-id");

    b = base_subscribe(m, "subscribe");
    put_one_filter_map(b);
    set_id(m, 0);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_SUBSCRIBE: message-id 0 is not an MQTT packet id 1..65535");

    b = base_subscribe(m, "subscribe");
    put_one_filter_map(b);
    set_id(m, 65536);
    expect_err(m, GW_ERR_SPEC_FIELD, "message-id 65536 is not an MQTT packet id");

    b = base_subscribe(m, "unsubscribe");
    pn_data_put_list(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(1, "a"));
    pn_data_exit(b);
    pn_atom_t sid = {.type = PN_STRING};
    sid.u.as_bytes = pn_bytes(2, "10");
    pn_message_set_id(m, sid);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_UNSUBSCRIBE: message-id is a string, expected a ulong");

    pn_message_clear(m);
    pn_message_set_subject(m, "pubrel");
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_PUBREL: missing message-id");
    set_id(m, 70000);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_PUBREL: message-id 70000 is not an MQTT packet id");

    /* x-opt-session-present must be a bool */
    pn_message_clear(m);
    pn_message_set_subject(m, "subscriptions");
    pn_data_t *a = anno_begin(m);
    put_anno_key(a, GW_SPEC_ANNO_SESSION_PRESENT);
    pn_data_put_int(a, 1);
    pn_data_exit(a);
    pn_data_put_map(pn_message_body(m));
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_SUBSCRIPTIONS: x-opt-session-present is an int, expected a bool");
}

static void test_bad_correlation_reply_to(void **state)
{
    pn_message_t *m = *state;
    pn_data_t *b;

    b = base_subscribe(m, "subscribe");
    put_one_filter_map(b);
    pn_message_set_correlation_id(m, (pn_atom_t){.type = PN_NULL});
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_SUBSCRIBE: missing correlation-id");

    pn_message_clear(m);
    pn_message_set_subject(m, "close");
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_CLOSE: missing correlation-id");

    pn_message_clear(m);
    pn_message_set_subject(m, "close");
    set_id(m, 1);
    pn_atom_t uid = {.type = PN_ULONG};
    uid.u.as_ulong = 5;
    pn_message_set_correlation_id(m, uid);
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_CLOSE: correlation-id is a ulong, expected a string");

    pn_message_clear(m);
    pn_message_set_subject(m, "list");
    set_corr(m, "$mqtt.to.c.publish");
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_LIST: missing reply-to");
    pn_message_set_reply_to(m, "");
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_LIST: empty reply-to");

    pn_message_clear(m);
    pn_message_set_subject(m, "list");
    pn_message_set_reply_to(m, "$mqtt.to.c.control");
    expect_err(m, GW_ERR_SPEC_FIELD, "AMQP_LIST: missing correlation-id");
}

static void test_bad_unsubscribe_body(void **state)
{
    pn_message_t *m = *state;
    pn_data_t *b;

    b = base_subscribe(m, "unsubscribe");
    put_one_filter_map(b);
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_UNSUBSCRIBE: body is an AmqpValue holding a map, expected list");

    b = base_subscribe(m, "unsubscribe");
    pn_data_put_list(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(1, "a"));
    pn_data_put_int(b, 7);
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "list element 1 is an int, expected a string topic filter");

    b = base_subscribe(m, "unsubscribe");
    pn_data_put_list(b);
    expect_err(m, GW_ERR_SPEC_BODY, "AMQP_UNSUBSCRIBE: no topic filters");

    b = base_subscribe(m, "unsubscribe");
    pn_message_set_inferred(m, true);
    pn_data_put_list(b);
    pn_data_enter(b);
    pn_data_put_string(b, pn_bytes(1, "a"));
    pn_data_exit(b);
    expect_err(m, GW_ERR_SPEC_BODY, "body is an AmqpSequence section, expected an AmqpValue list");
}

static void test_why_is_one_line_and_bounded(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[16];
    pn_message_set_subject(m, "evil\nsubject");
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_ERR_SPEC_SUBJECT);
    assert_int_equal(strlen(why), sizeof why - 1);
    assert_null(strchr(why, '\n'));
    char big[200];
    assert_int_equal(gw_spec_decode(m, &d, big, sizeof big), GW_ERR_SPEC_SUBJECT);
    assert_string_equal(big, "unknown subject \"evil?subject\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_native_durable_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_amqpvalue_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_annotation_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_message_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_opts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_to, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_annotations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_payload_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_subscribe_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_message_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_correlation_reply_to, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_unsubscribe_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_why_is_one_line_and_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
