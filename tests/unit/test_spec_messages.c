/*
 * test_spec_messages.c - every spec message encoded, then inspected field
 * by field with the raw proton API, decoded back, and sent through the
 * wire path (pn_message_encode2 + decode into a fresh message).
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

/* Look an annotation up by key; checks the key is a symbol. Leaves the
 * annotations data positioned on the value. */
static pn_data_t *anno(pn_message_t *m, const char *key)
{
    pn_data_t *a = pn_message_annotations(m);
    pn_data_rewind(a);
    assert_true(pn_data_next(a));
    assert_int_equal(pn_data_type(a), PN_MAP);
    pn_data_enter(a);
    while (pn_data_next(a)) {
        assert_int_equal(pn_data_type(a), PN_SYMBOL);
        pn_bytes_t k = pn_data_get_symbol(a);
        assert_true(pn_data_next(a));
        if (k.size == strlen(key) && memcmp(k.start, key, k.size) == 0)
            return a;
    }
    return NULL;
}

static size_t anno_count(pn_message_t *m)
{
    pn_data_t *a = pn_message_annotations(m);
    pn_data_rewind(a);
    if (!pn_data_next(a))
        return 0;
    return pn_data_get_map(a) / 2;
}

static void assert_str_atom(pn_atom_t atom, const char *want)
{
    assert_int_equal(atom.type, PN_STRING);
    assert_int_equal(atom.u.as_bytes.size, strlen(want));
    assert_memory_equal(atom.u.as_bytes.start, want, strlen(want));
}

static void assert_spec_str(gw_spec_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

/* pn_message_encode2 into a buffer, pn_message_decode into a fresh message. */
static pn_message_t *wire_copy(pn_message_t *m)
{
    pn_rwbytes_t buf = {0, NULL};
    ssize_t n = pn_message_encode2(m, &buf);
    assert_true(n > 0);
    pn_message_t *copy = pn_message();
    assert_int_equal(pn_message_decode(copy, buf.start, (size_t)n), 0);
    free(buf.start);
    return copy;
}

/* Same through gw_spec_message_decode into a reused, dirty message. */
static void wire_reuse(pn_message_t *m, pn_message_t *into)
{
    pn_rwbytes_t buf = {0, NULL};
    char why[200];
    ssize_t n = pn_message_encode2(m, &buf);
    assert_true(n > 0);
    pn_message_set_subject(into, "stale");
    pn_message_set_reply_to(into, "stale");
    assert_int_equal(gw_spec_message_decode(into, buf.start, (size_t)n, why, sizeof why), GW_OK);
    free(buf.start);
}

static void check_publish_fields(pn_message_t *m, const char *subject, const char *topic,
                                 int qos, bool retain, uint32_t dc, bool with_id, uint64_t id,
                                 const char *payload, size_t plen)
{
    if (subject)
        assert_string_equal(pn_message_get_subject(m), subject);
    else
        assert_null(pn_message_get_subject(m));
    assert_string_equal(pn_message_get_address(m), topic);
    assert_int_equal(pn_message_is_durable(m), qos > 0);
    assert_int_equal(pn_message_get_delivery_count(m), dc);
    pn_atom_t mid = pn_message_get_id(m);
    if (with_id) {
        assert_int_equal(mid.type, PN_ULONG);
        assert_int_equal(mid.u.as_ulong, id);
    } else {
        assert_int_equal(mid.type, PN_NULL);
    }
    assert_int_equal(pn_message_get_correlation_id(m).type, PN_NULL);
    assert_null(pn_message_get_reply_to(m));
    assert_int_equal(anno_count(m), 2);
    pn_data_t *a = anno(m, GW_SPEC_ANNO_QOS);
    assert_non_null(a);
    assert_int_equal(pn_data_type(a), PN_INT);
    assert_int_equal(pn_data_get_int(a), qos);
    a = anno(m, GW_SPEC_ANNO_RETAIN);
    assert_non_null(a);
    assert_int_equal(pn_data_type(a), PN_BOOL);
    assert_int_equal(pn_data_get_bool(a), retain);
    /* body: one Data section = inferred + binary */
    assert_true(pn_message_is_inferred(m));
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    assert_true(pn_data_next(body));
    assert_int_equal(pn_data_type(body), PN_BINARY);
    pn_bytes_t b = pn_data_get_binary(body);
    assert_int_equal(b.size, plen);
    if (plen)
        assert_memory_equal(b.start, payload, plen);
    assert_false(pn_data_next(body));
}

static void check_publish_decoded(const gw_spec_msg_t *d, gw_spec_kind_t kind, const char *topic,
                                  int qos, bool retain, uint32_t dc, bool with_id, uint64_t id,
                                  const char *payload, size_t plen)
{
    assert_int_equal(d->kind, kind);
    assert_spec_str(d->publish.topic, topic);
    assert_int_equal(d->publish.qos, qos);
    assert_int_equal(d->publish.retain, retain);
    assert_int_equal(d->publish.durable, qos > 0);
    assert_int_equal(d->publish.delivery_count, dc);
    assert_int_equal(d->publish.has_message_id, with_id);
    if (with_id)
        assert_int_equal(d->publish.message_id, id);
    assert_int_equal(d->publish.payload.len, plen);
    if (plen)
        assert_memory_equal(d->publish.payload.ptr, payload, plen);
    assert_null(d->entries);
}

static void test_publish(void **state)
{
    pn_message_t *m = *state;
    /* topic not NUL-terminated: only 3 bytes of "a/bXYZ" */
    gw_spec_publish_t p = {.topic = {"a/bXYZ", 3}, .payload = STR("hello\0world"), .qos = 1,
                           .retain = true, .durable = false, .delivery_count = 1,
                           .has_message_id = true, .message_id = 42};
    gw_spec_msg_t d;
    char why[200];

    assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
    check_publish_fields(m, NULL, "a/b", 1, true, 1, true, 42, "hello\0world", 11);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    check_publish_decoded(&d, GW_SPEC_PUBLISH, "a/b", 1, true, 1, true, 42, "hello\0world", 11);
    gw_spec_msg_clear(&d);

    pn_message_t *copy = wire_copy(m);
    check_publish_fields(copy, NULL, "a/b", 1, true, 1, true, 42, "hello\0world", 11);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    check_publish_decoded(&d, GW_SPEC_PUBLISH, "a/b", 1, true, 1, true, 42, "hello\0world", 11);
    gw_spec_msg_clear(&d);

    /* reused message through gw_spec_message_decode: stale fields gone */
    wire_reuse(m, copy);
    check_publish_fields(copy, NULL, "a/b", 1, true, 1, true, 42, "hello\0world", 11);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    check_publish_decoded(&d, GW_SPEC_PUBLISH, "a/b", 1, true, 1, true, 42, "hello\0world", 11);
    gw_spec_msg_clear(&d);
    pn_message_free(copy);
}

/* x-opt-mqtt-publisher (spec 3.9): encoded as a string annotation when
 * set, decoded back; absent otherwise; an empty or non-string value is a
 * malformed message; AMQP_WILL never carries it. */
static void test_publish_publisher(void **state)
{
    pn_message_t *m = *state;
    gw_spec_publish_t p = {.topic = STR("q/2"), .payload = STR("x"), .qos = 2,
                           .has_message_id = true, .message_id = 9,
                           .publisher = {"dev-1XYZ", 5}};
    gw_spec_msg_t d;
    char why[200];

    assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
    assert_int_equal(anno_count(m), 3);
    pn_data_t *a = anno(m, GW_SPEC_ANNO_PUBLISHER);
    assert_non_null(a);
    assert_int_equal(pn_data_type(a), PN_STRING);
    pn_message_t *copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_spec_str(d.publish.publisher, "dev-1");
    assert_int_equal(d.publish.message_id, 9);
    gw_spec_msg_clear(&d);
    pn_message_free(copy);

    /* not on AMQP_WILL */
    assert_int_equal(gw_spec_encode_will(m, &p), GW_OK);
    assert_null(anno(m, GW_SPEC_ANNO_PUBLISHER));

    /* absent: length 0 */
    p.publisher.len = 0;
    assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
    assert_int_equal(anno_count(m), 2);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.publish.publisher.len, 0);
    gw_spec_msg_clear(&d);

    /* malformed values */
    for (int bad = 0; bad < 2; bad++) {
        assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
        pn_data_t *an = pn_message_annotations(m);
        pn_data_rewind(an);
        pn_data_next(an);
        pn_data_enter(an);
        while (pn_data_next(an))
            ;
        pn_data_put_symbol(an, pn_bytes(strlen(GW_SPEC_ANNO_PUBLISHER), GW_SPEC_ANNO_PUBLISHER));
        if (bad == 0)
            pn_data_put_string(an, pn_bytes(0, ""));
        else
            pn_data_put_int(an, 5);
        pn_data_exit(an);
        assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_ERR_SPEC_FIELD);
        assert_non_null(strstr(why, GW_SPEC_ANNO_PUBLISHER));
    }
}

static void test_publish_qos0_empty_payload_no_id(void **state)
{
    pn_message_t *m = *state;
    gw_spec_publish_t p = {.topic = STR("t"), .payload = {NULL, 0}, .qos = 0};
    gw_spec_msg_t d;
    char why[200];

    /* encode twice into the same message: no leftovers from the first */
    gw_spec_publish_t first = {.topic = STR("x/y"), .payload = STR("zz"), .qos = 2, .retain = true,
                               .delivery_count = 3, .has_message_id = true, .message_id = 7};
    assert_int_equal(gw_spec_encode_publish(m, &first), GW_OK);
    check_publish_fields(m, NULL, "x/y", 2, true, 3, true, 7, "zz", 2);
    assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
    check_publish_fields(m, NULL, "t", 0, false, 0, false, 0, NULL, 0);

    pn_message_t *copy = wire_copy(m);
    check_publish_fields(copy, NULL, "t", 0, false, 0, false, 0, NULL, 0);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    check_publish_decoded(&d, GW_SPEC_PUBLISH, "t", 0, false, 0, false, 0, NULL, 0);
    pn_message_free(copy);
}

static void test_publish_long_topic(void **state)
{
    pn_message_t *m = *state;
    size_t len = 5000; /* longer than the encoder's stack buffer */
    char *topic = malloc(len);
    gw_spec_msg_t d;
    char why[200];
    assert_non_null(topic);
    for (size_t i = 0; i < len; i++)
        topic[i] = (i % 10 == 9) ? '/' : (char)('a' + i % 26);
    gw_spec_publish_t p = {.topic = {topic, len}, .payload = STR("p"), .qos = 2};
    assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
    assert_int_equal(strlen(pn_message_get_address(m)), len);
    assert_memory_equal(pn_message_get_address(m), topic, len);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.publish.topic.len, len);
    assert_int_equal(d.publish.qos, 2);
    free(topic);
}

static void test_will(void **state)
{
    pn_message_t *m = *state;
    gw_spec_publish_t w = {.topic = STR("dev/1/status"), .payload = STR("offline"), .qos = 2,
                           .retain = false, .has_message_id = true, .message_id = 9};
    gw_spec_msg_t d;
    char why[200];

    assert_int_equal(gw_spec_encode_will(m, &w), GW_OK);
    /* AMQP_WILL carries no message-id even if the struct has one */
    check_publish_fields(m, GW_SPEC_SUBJECT_WILL, "dev/1/status", 2, false, 0, false, 0,
                         "offline", 7);
    pn_message_t *copy = wire_copy(m);
    check_publish_fields(copy, "will", "dev/1/status", 2, false, 0, false, 0, "offline", 7);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    check_publish_decoded(&d, GW_SPEC_WILL, "dev/1/status", 2, false, 0, false, 0, "offline", 7);
    pn_message_free(copy);

    w.qos = 0;
    w.retain = true;
    assert_int_equal(gw_spec_encode_will(m, &w), GW_OK);
    check_publish_fields(m, "will", "dev/1/status", 0, true, 0, false, 0, "offline", 7);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    check_publish_decoded(&d, GW_SPEC_WILL, "dev/1/status", 0, true, 0, false, 0, "offline", 7);
}

static void assert_no_content(pn_message_t *m)
{
    assert_null(pn_message_get_address(m));
    assert_false(pn_message_is_durable(m));
    assert_int_equal(anno_count(m), 0);
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    assert_false(pn_data_next(body));
}

static void test_will_clear(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    gw_spec_publish_t w = {.topic = STR("a"), .payload = STR("b"), .qos = 1};
    assert_int_equal(gw_spec_encode_will(m, &w), GW_OK);
    assert_int_equal(gw_spec_encode_will_clear(m), GW_OK);
    assert_string_equal(pn_message_get_subject(m), "will-clear");
    assert_no_content(m);
    assert_int_equal(pn_message_get_id(m).type, PN_NULL);
    assert_int_equal(pn_message_get_correlation_id(m).type, PN_NULL);
    pn_message_t *copy = wire_copy(m);
    assert_string_equal(pn_message_get_subject(copy), "will-clear");
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_WILL_CLEAR);
    pn_message_free(copy);
}

static void test_list(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    const char id[] = "dev.1.x";
    assert_int_equal(gw_spec_encode_list(m, NULL, id, strlen(id)), GW_OK);
    assert_string_equal(pn_message_get_subject(m), "list");
    assert_str_atom(pn_message_get_correlation_id(m), "$mqtt.to.dev.1.x.publish");
    assert_string_equal(pn_message_get_reply_to(m), "$mqtt.to.dev.1.x.control");
    assert_no_content(m);
    assert_int_equal(pn_message_get_id(m).type, PN_NULL);

    pn_message_t *copy = wire_copy(m);
    assert_str_atom(pn_message_get_correlation_id(copy), "$mqtt.to.dev.1.x.publish");
    assert_string_equal(pn_message_get_reply_to(copy), "$mqtt.to.dev.1.x.control");
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_LIST);
    assert_spec_str(d.correlation_id, "$mqtt.to.dev.1.x.publish");
    assert_spec_str(d.reply_to, "$mqtt.to.dev.1.x.control");
    pn_message_free(copy);

    /* custom address plan */
    gw_spec_addrs_t addrs = {"lwt", "sub", "to/", "rel/"};
    assert_int_equal(gw_spec_encode_list(m, &addrs, "c", 1), GW_OK);
    assert_str_atom(pn_message_get_correlation_id(m), "to/c.publish");
    assert_string_equal(pn_message_get_reply_to(m), "to/c.control");

    /* a client id longer than the encoder's stack buffer */
    size_t len = 3000;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, 'k', len);
    assert_int_equal(gw_spec_encode_list(m, NULL, big, len), GW_OK);
    assert_int_equal(strlen(pn_message_get_reply_to(m)), len + strlen("$mqtt.to..control"));
    assert_int_equal(pn_message_get_correlation_id(m).u.as_bytes.size,
                     len + strlen("$mqtt.to..publish"));
    free(big);
    assert_int_equal(gw_spec_encode_list(m, NULL, "", 0), GW_ERR_INVAL);
}

static void test_close(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    assert_int_equal(gw_spec_encode_close(m, NULL, "c1", 2), GW_OK);
    assert_string_equal(pn_message_get_subject(m), "close");
    assert_str_atom(pn_message_get_correlation_id(m), "$mqtt.to.c1.publish");
    assert_null(pn_message_get_reply_to(m));
    assert_no_content(m);
    pn_message_t *copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_CLOSE);
    assert_spec_str(d.correlation_id, "$mqtt.to.c1.publish");
    pn_message_free(copy);
}

static void check_map_body(pn_message_t *m, const gw_spec_entry_t *e, size_t n)
{
    pn_data_t *body = pn_message_body(m);
    assert_false(pn_message_is_inferred(m)); /* AmqpValue */
    pn_data_rewind(body);
    assert_true(pn_data_next(body));
    assert_int_equal(pn_data_type(body), PN_MAP);
    assert_int_equal(pn_data_get_map(body), 2 * n);
    pn_data_enter(body);
    for (size_t i = 0; i < n; i++) {
        assert_true(pn_data_next(body));
        assert_int_equal(pn_data_type(body), PN_STRING);
        pn_bytes_t k = pn_data_get_string(body);
        assert_int_equal(k.size, e[i].filter.len);
        assert_memory_equal(k.start, e[i].filter.ptr, k.size);
        assert_true(pn_data_next(body));
        assert_int_equal(pn_data_type(body), PN_INT);
        assert_int_equal(pn_data_get_int(body), e[i].qos);
    }
    assert_false(pn_data_next(body));
    pn_data_exit(body);
}

static void check_entries(const gw_spec_msg_t *d, const gw_spec_entry_t *e, size_t n, bool qos)
{
    assert_int_equal(d->count, n);
    if (n)
        assert_non_null(d->entries);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(d->entries[i].filter.len, e[i].filter.len);
        assert_memory_equal(d->entries[i].filter.ptr, e[i].filter.ptr, e[i].filter.len);
        assert_int_equal(d->entries[i].qos, qos ? e[i].qos : 0);
    }
}

static const gw_spec_entry_t entries3[] = {
    {{"a/#", 3}, 0}, {{"+/b/+", 5}, 1}, {{"$SYS/x", 6}, 2}};

static void test_subscribe(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    assert_int_equal(gw_spec_encode_subscribe(m, NULL, "c.1", 3, 65535, entries3, 3), GW_OK);
    assert_string_equal(pn_message_get_subject(m), "subscribe");
    pn_atom_t id = pn_message_get_id(m);
    assert_int_equal(id.type, PN_ULONG);
    assert_int_equal(id.u.as_ulong, 65535);
    assert_str_atom(pn_message_get_correlation_id(m), "$mqtt.to.c.1.publish");
    assert_null(pn_message_get_address(m));
    assert_null(pn_message_get_reply_to(m));
    assert_false(pn_message_is_durable(m));
    assert_int_equal(anno_count(m), 0);
    check_map_body(m, entries3, 3);

    pn_message_t *copy = wire_copy(m);
    check_map_body(copy, entries3, 3);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_SUBSCRIBE);
    assert_true(d.has_message_id);
    assert_int_equal(d.message_id, 65535);
    assert_spec_str(d.correlation_id, "$mqtt.to.c.1.publish");
    check_entries(&d, entries3, 3, true);
    gw_spec_msg_clear(&d);
    assert_null(d.entries);
    assert_int_equal(d.count, 0);
    pn_message_free(copy);

    assert_int_equal(gw_spec_encode_subscribe(m, NULL, "c", 1, 0, entries3, 3), GW_ERR_INVAL);
    assert_int_equal(gw_spec_encode_subscribe(m, NULL, "c", 1, 1, entries3, 0), GW_ERR_INVAL);
    gw_spec_entry_t bad = {{"a", 1}, 3};
    assert_int_equal(gw_spec_encode_subscribe(m, NULL, "c", 1, 1, &bad, 1), GW_ERR_INVAL);
}

static void test_unsubscribe(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    assert_int_equal(gw_spec_encode_unsubscribe(m, NULL, "c", 1, 1, entries3, 3), GW_OK);
    assert_string_equal(pn_message_get_subject(m), "unsubscribe");
    pn_atom_t id = pn_message_get_id(m);
    assert_int_equal(id.type, PN_ULONG);
    assert_int_equal(id.u.as_ulong, 1);
    assert_str_atom(pn_message_get_correlation_id(m), "$mqtt.to.c.publish");
    assert_false(pn_message_is_inferred(m));
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    assert_true(pn_data_next(body));
    assert_int_equal(pn_data_type(body), PN_LIST);
    assert_int_equal(pn_data_get_list(body), 3);
    pn_data_enter(body);
    for (size_t i = 0; i < 3; i++) {
        assert_true(pn_data_next(body));
        assert_int_equal(pn_data_type(body), PN_STRING);
        pn_bytes_t s = pn_data_get_string(body);
        assert_int_equal(s.size, entries3[i].filter.len);
        assert_memory_equal(s.start, entries3[i].filter.ptr, s.size);
    }
    pn_data_exit(body);

    pn_message_t *copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_UNSUBSCRIBE);
    assert_int_equal(d.message_id, 1);
    assert_spec_str(d.correlation_id, "$mqtt.to.c.publish");
    check_entries(&d, entries3, 3, false);
    gw_spec_msg_clear(&d);
    pn_message_free(copy);
}

static void test_subscriptions(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    assert_int_equal(gw_spec_encode_subscriptions(m, entries3, 3), GW_OK);
    assert_string_equal(pn_message_get_subject(m), "subscriptions");
    assert_int_equal(pn_message_get_id(m).type, PN_NULL);
    assert_int_equal(pn_message_get_correlation_id(m).type, PN_NULL);
    check_map_body(m, entries3, 3);
    pn_message_t *copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_SUBSCRIPTIONS);
    check_entries(&d, entries3, 3, true);
    gw_spec_msg_clear(&d);
    pn_message_free(copy);

    /* the empty session: an empty map, valid */
    assert_int_equal(gw_spec_encode_subscriptions(m, NULL, 0), GW_OK);
    check_map_body(m, NULL, 0);
    copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_SUBSCRIPTIONS);
    assert_int_equal(d.count, 0);
    assert_null(d.entries);
    pn_message_free(copy);
}

static void test_session(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    for (int sp = 0; sp <= 1; sp++) {
        assert_int_equal(gw_spec_encode_session(m, sp, entries3, sp ? 3 : 0), GW_OK);
        assert_string_equal(pn_message_get_subject(m), "subscriptions");
        assert_int_equal(anno_count(m), 1);
        pn_data_t *a = anno(m, GW_SPEC_ANNO_SESSION_PRESENT);
        assert_non_null(a);
        assert_int_equal(pn_data_type(a), PN_BOOL);
        assert_int_equal(pn_data_get_bool(a), sp);
        check_map_body(m, entries3, sp ? 3 : 0);
        pn_message_t *copy = wire_copy(m);
        assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
        assert_int_equal(d.kind, GW_SPEC_SUBSCRIPTIONS);
        assert_true(d.has_session_present);
        assert_int_equal(d.session_present, sp);
        check_entries(&d, entries3, sp ? 3 : 0, true);
        gw_spec_msg_clear(&d);
        pn_message_free(copy);
    }
    /* a session that existed but holds no subscriptions (MQTT-3.2.2-2) */
    assert_int_equal(gw_spec_encode_session(m, true, NULL, 0), GW_OK);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_true(d.session_present);
    assert_int_equal(d.count, 0);
    /* the older form: no annotation, "map not empty" decides */
    assert_int_equal(gw_spec_encode_subscriptions(m, entries3, 1), GW_OK);
    assert_int_equal(anno_count(m), 0);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_false(d.has_session_present);
    assert_true(d.session_present);
    gw_spec_msg_clear(&d);
    assert_int_equal(gw_spec_encode_subscriptions(m, NULL, 0), GW_OK);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_false(d.has_session_present);
    assert_false(d.session_present);
}

static void test_pubrel(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    assert_int_equal(gw_spec_encode_pubrel(m, 513), GW_OK);
    assert_string_equal(pn_message_get_subject(m), "pubrel");
    pn_atom_t id = pn_message_get_id(m);
    assert_int_equal(id.type, PN_ULONG);
    assert_int_equal(id.u.as_ulong, 513);
    assert_no_content(m);
    pn_message_t *copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_PUBREL);
    assert_true(d.has_message_id);
    assert_int_equal(d.message_id, 513);
    pn_message_free(copy);
    assert_int_equal(gw_spec_encode_pubrel(m, 0), GW_ERR_INVAL);
    assert_int_equal(gw_spec_encode_pubrel(m, 65536), GW_ERR_INVAL);
    assert_int_equal(gw_spec_encode_pubrel(m, 65535), GW_OK);
}

static void test_encode_inval(void **state)
{
    pn_message_t *m = *state;
    gw_spec_publish_t p = {.topic = STR("a"), .payload = STR("b"), .qos = 3};
    assert_int_equal(gw_spec_encode_publish(m, &p), GW_ERR_INVAL);
    p.qos = 1;
    p.topic = (gw_spec_str_t){"a\0b", 3};
    assert_int_equal(gw_spec_encode_publish(m, &p), GW_ERR_INVAL);
    /* the message is left cleared after a failure */
    assert_null(pn_message_get_address(m));
    assert_int_equal(gw_spec_encode_publish(NULL, &p), GW_ERR_INVAL);
    assert_int_equal(gw_spec_encode_will_clear(NULL), GW_ERR_INVAL);
    assert_int_equal(gw_spec_encode_subscriptions(m, NULL, 1), GW_ERR_INVAL);
    assert_int_equal(gw_spec_encode_subscriptions(m, entries3, GW_SPEC_MAX_ENTRIES + 1),
                     GW_ERR_INVAL);
}

/* spec 3.12: the registration annotations on AMQP_CLOSE / AMQP_LIST, and
 * AMQP_OFFLINE; all three together or none. */
static void test_delivery_registration(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    assert_int_equal(gw_spec_encode_close(m, NULL, "c1", 2), GW_OK);
    assert_int_equal(gw_spec_add_delivery(m, "$mqtt.to.$mqtt.delivery.g1", 32, 77), GW_OK);
    pn_data_t *a = anno(m, GW_SPEC_ANNO_DELIVERY_LINK);
    assert_non_null(a);
    assert_int_equal(pn_data_type(a), PN_STRING);
    a = anno(m, GW_SPEC_ANNO_CLIENT_SERIAL);
    assert_non_null(a);
    assert_int_equal(pn_data_type(a), PN_ULONG);
    pn_message_t *copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_CLOSE);
    assert_true(d.has_delivery);
    assert_spec_str(d.delivery_link, "$mqtt.to.$mqtt.delivery.g1");
    assert_int_equal(d.window, 32);
    assert_int_equal(d.client_serial, 77);
    pn_message_free(copy);

    assert_int_equal(gw_spec_encode_list(m, NULL, "c1", 2), GW_OK);
    assert_int_equal(gw_spec_add_delivery(m, "L", 65535, UINT64_MAX), GW_OK);
    copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_LIST);
    assert_true(d.has_delivery);
    assert_int_equal(d.window, 65535);
    assert_true(d.client_serial == UINT64_MAX);
    pn_message_free(copy);

    /* none: a per-client L4 gateway */
    assert_int_equal(gw_spec_encode_close(m, NULL, "c1", 2), GW_OK);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_false(d.has_delivery);

    /* the link without window and serial: refused */
    assert_int_equal(gw_spec_encode_close(m, NULL, "c1", 2), GW_OK);
    assert_int_equal(gw_spec_add_delivery(m, "L", 0, 5), GW_OK); /* no window */
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_ERR_SPEC_FIELD);
    assert_non_null(strstr(why, GW_SPEC_ANNO_WINDOW));
    /* a window of 0 or above 65535: refused */
    pn_data_t *an = pn_message_annotations(m);
    pn_data_clear(an);
    pn_data_put_map(an);
    pn_data_enter(an);
    pn_data_put_symbol(an, pn_bytes(strlen(GW_SPEC_ANNO_DELIVERY_LINK), GW_SPEC_ANNO_DELIVERY_LINK));
    pn_data_put_string(an, pn_bytes(1, "L"));
    pn_data_put_symbol(an, pn_bytes(strlen(GW_SPEC_ANNO_WINDOW), GW_SPEC_ANNO_WINDOW));
    pn_data_put_long(an, 70000);
    pn_data_put_symbol(an, pn_bytes(strlen(GW_SPEC_ANNO_CLIENT_SERIAL), GW_SPEC_ANNO_CLIENT_SERIAL));
    pn_data_put_ulong(an, 1);
    pn_data_exit(an);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_ERR_SPEC_FIELD);
    assert_int_equal(gw_spec_add_delivery(m, "", 5, 1), GW_ERR_INVAL);

    /* AMQP_OFFLINE: link and serial required, no window */
    assert_int_equal(gw_spec_encode_offline(m, NULL, "c1", 2, "L", 9), GW_OK);
    assert_string_equal(pn_message_get_subject(m), GW_SPEC_SUBJECT_OFFLINE);
    assert_null(anno(m, GW_SPEC_ANNO_WINDOW));
    copy = wire_copy(m);
    assert_int_equal(gw_spec_decode(copy, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_OFFLINE);
    assert_spec_str(d.correlation_id, "$mqtt.to.c1.publish");
    assert_spec_str(d.delivery_link, "L");
    assert_int_equal(d.client_serial, 9);
    pn_message_free(copy);
    assert_int_equal(gw_spec_encode_close(m, NULL, "c1", 2), GW_OK);
    pn_message_set_subject(m, GW_SPEC_SUBJECT_OFFLINE);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_ERR_SPEC_FIELD);
}

/* spec 3.4a: AMQP_WILL_PUBLISH and the correlation-id every L1s message needs. */
static void test_shared_will_messages(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;
    char why[200];
    gw_spec_decode_opts_t o = {
        .allowed = GW_SPEC_KIND_BIT(GW_SPEC_WILL) | GW_SPEC_KIND_BIT(GW_SPEC_WILL_CLEAR) |
                   GW_SPEC_KIND_BIT(GW_SPEC_WILL_PUBLISH),
        .need_correlation = true};
    assert_int_equal(gw_spec_encode_will_publish(m, "keep-alive expired"), GW_OK);
    assert_int_equal(gw_spec_set_correlation_id(m, "dev-1", 5), GW_OK);
    assert_string_equal(pn_message_get_subject(m), GW_SPEC_SUBJECT_WILL_PUBLISH);
    pn_message_t *copy = wire_copy(m);
    assert_int_equal(gw_spec_decode_opts(copy, &o, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_WILL_PUBLISH);
    assert_spec_str(d.correlation_id, "dev-1");
    pn_data_t *p = pn_message_properties(copy);
    pn_data_rewind(p);
    assert_true(pn_data_next(p));
    assert_int_equal(pn_data_type(p), PN_MAP);
    pn_message_free(copy);

    assert_int_equal(gw_spec_encode_will_clear(m), GW_OK);
    assert_int_equal(gw_spec_decode_opts(m, &o, &d, why, sizeof why), GW_ERR_SPEC_FIELD);
    assert_non_null(strstr(why, "correlation-id"));
    pn_atom_t num = {.type = PN_ULONG, .u.as_ulong = 4};
    pn_message_set_correlation_id(m, num);
    assert_int_equal(gw_spec_decode_opts(m, &o, &d, why, sizeof why), GW_ERR_SPEC_FIELD);
    /* per-client L1: no correlation-id needed */
    o.need_correlation = false;
    assert_int_equal(gw_spec_encode_will_clear(m), GW_OK);
    assert_int_equal(gw_spec_decode_opts(m, &o, &d, why, sizeof why), GW_OK);
    assert_int_equal(gw_spec_encode_will_publish(m, NULL), GW_OK);
    assert_int_equal(gw_spec_decode_opts(m, &o, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_WILL_PUBLISH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_publisher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_qos0_empty_payload_no_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_long_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_will, setup, teardown),
        cmocka_unit_test_setup_teardown(test_will_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubrel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_inval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_registration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_will_messages, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
