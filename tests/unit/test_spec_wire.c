/*
 * test_spec_wire.c - gw_spec_message_decode() on raw bytes: what proton
 * 0.37's pn_message_decode() alone gets wrong (stale fields, several Data
 * sections, truncated big maps, int message-ids), malformed and cut input,
 * and interoperability with python-qpid-proton both ways.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <proton/codec.h>
#include <proton/message.h>

#include "gw/spec.h"

/* A growable byte buffer for hand-built AMQP encodings. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb_t;

static void bb_put(bb_t *b, const void *data, size_t len)
{
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void bb_u8(bb_t *b, uint8_t v) { bb_put(b, &v, 1); }

static void bb_u32(bb_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    bb_put(b, x, 4);
}

static void bb_section(bb_t *b, uint8_t code)
{
    bb_u8(b, 0x00);
    bb_u8(b, 0x53);
    bb_u8(b, code);
}

/* properties: [message-id (raw encoded), user-id null, to] */
static void bb_properties(bb_t *b, const uint8_t *id, size_t idlen, const char *to)
{
    size_t tl = strlen(to);
    bb_section(b, 0x73);
    bb_u8(b, 0xc0);
    bb_u8(b, (uint8_t)(1 + idlen + 1 + 2 + tl));
    bb_u8(b, 3);
    bb_put(b, id, idlen);
    bb_u8(b, 0x40);
    bb_u8(b, 0xa1);
    bb_u8(b, (uint8_t)tl);
    bb_put(b, to, tl);
}

static void bb_data8(bb_t *b, const char *s)
{
    bb_section(b, 0x75);
    bb_u8(b, 0xa0);
    bb_u8(b, (uint8_t)strlen(s));
    bb_put(b, s, strlen(s));
}

static void bb_data32(bb_t *b, const char *s)
{
    bb_section(b, 0x75);
    bb_u8(b, 0xb0);
    bb_u32(b, (uint32_t)strlen(s));
    bb_put(b, s, strlen(s));
}

static const uint8_t id_null[] = {0x40};

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

static void test_several_data_sections_joined(void **state)
{
    pn_message_t *m = *state;
    bb_t b = {0};
    gw_spec_msg_t d;
    char why[200];

    bb_section(&b, 0x70); /* header: durable */
    bb_u8(&b, 0xc0);
    bb_u8(&b, 2);
    bb_u8(&b, 1);
    bb_u8(&b, 0x41);
    bb_properties(&b, id_null, sizeof id_null, "a/b");
    bb_data8(&b, "abc");
    bb_data8(&b, "");
    bb_data32(&b, "def");
    /* a stale subject in the reused message must not survive */
    pn_message_set_subject(m, "will");
    assert_int_equal(gw_spec_message_decode(m, (char *)b.p, b.n, why, sizeof why), GW_OK);
    assert_null(pn_message_get_subject(m));
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_PUBLISH);
    assert_int_equal(d.publish.qos, 1);
    assert_int_equal(d.publish.payload.len, 6);
    assert_memory_equal(d.publish.payload.ptr, "abcdef", 6);

    gw_spec_sections_t sec;
    assert_int_equal(gw_spec_scan_sections((char *)b.p, b.n, &sec), GW_OK);
    assert_int_equal(sec.data_sections, 3);
    assert_int_equal(sec.data_bytes, 6);
    free(b.p);
}

static void test_integer_message_ids(void **state)
{
    pn_message_t *m = *state;
    struct {
        uint8_t enc[9];
        size_t len;
        bool has;
        uint64_t want;
    } cases[] = {
        {{0x54, 7}, 2, true, 7},                                   /* smallint */
        {{0x71, 0, 1, 0x11, 0x70}, 5, true, 70000},                 /* int */
        {{0x81, 0, 0, 0, 0, 0, 0, 1, 0}, 9, true, 256},             /* long */
        {{0x70, 0, 0, 0xff, 0xff}, 5, true, 65535},                 /* uint */
        {{0x60, 0x01, 0x02}, 3, true, 258},                         /* ushort */
        {{0x43}, 1, true, 0},                                       /* uint0 */
        {{0x53, 9}, 2, true, 9},                                    /* smallulong */
        {{0x71, 0xff, 0xff, 0xff, 0xfe}, 5, false, 0},              /* int -2 */
        {{0x54, 0xff}, 2, false, 0},                                /* smallint -1 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bb_t b = {0};
        gw_spec_msg_t d;
        char why[200];
        bb_properties(&b, cases[i].enc, cases[i].len, "t");
        bb_data8(&b, "x");
        assert_int_equal(gw_spec_message_decode(m, (char *)b.p, b.n, why, sizeof why), GW_OK);
        assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
        if (d.publish.has_message_id != cases[i].has)
            fail_msg("case %zu: has_message_id %d", i, d.publish.has_message_id);
        if (cases[i].has)
            assert_int_equal(d.publish.message_id, cases[i].want);
        free(b.p);
    }
}

/* AmqpValue map of `pairs` "a" -> uint0 (as map32). */
static void bb_big_map(bb_t *b, uint32_t pairs)
{
    bb_section(b, 0x77);
    bb_u8(b, 0xd1);
    bb_u32(b, 4 + pairs * 4);
    bb_u32(b, pairs * 2);
    for (uint32_t i = 0; i < pairs; i++) {
        static const uint8_t kv[] = {0xa1, 1, 'a', 0x43};
        bb_put(b, kv, sizeof kv);
    }
}

static void test_map_proton_would_truncate(void **state)
{
    pn_message_t *m = *state;
    static const uint8_t props_subscriptions[] = {
        0x00, 0x53, 0x73, 0xc0, 0x13, 0x04, 0x40, 0x40, 0x40,
        0xa1, 0x0d, 's', 'u', 'b', 's', 'c', 'r', 'i', 'p', 't', 'i', 'o', 'n', 's'};
    gw_spec_msg_t d;
    char why[200];

    /* 32767 pairs: 65535 nodes, the most a pn_data_t holds */
    bb_t b = {0};
    bb_put(&b, props_subscriptions, sizeof props_subscriptions);
    bb_big_map(&b, 32767);
    assert_int_equal(gw_spec_message_decode(m, (char *)b.p, b.n, why, sizeof why), GW_OK);
    assert_int_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
    assert_int_equal(d.kind, GW_SPEC_SUBSCRIPTIONS);
    assert_int_equal(d.count, 32767);
    gw_spec_msg_clear(&d);
    free(b.p);

    /* one more pair: proton would silently drop it; we refuse */
    b = (bb_t){0};
    bb_put(&b, props_subscriptions, sizeof props_subscriptions);
    bb_big_map(&b, 32768);
    pn_message_set_subject(m, "stale");
    assert_int_equal(gw_spec_message_decode(m, (char *)b.p, b.n, why, sizeof why),
                     GW_ERR_SPEC_BODY);
    assert_non_null(strstr(why, "more than 65535 values"));
    assert_null(pn_message_get_subject(m)); /* left cleared */
    free(b.p);

    /* the exact edge: a list of 65535 elements needs 65536 nodes */
    for (uint32_t count = 65534; count <= 65535; count++) {
        b = (bb_t){0};
        bb_section(&b, 0x77);
        bb_u8(&b, 0xd0);
        bb_u32(&b, 4 + count);
        bb_u32(&b, count);
        for (uint32_t i = 0; i < count; i++)
            bb_u8(&b, 0x40);
        assert_int_equal(gw_spec_message_decode(m, (char *)b.p, b.n, why, sizeof why),
                         count == 65534 ? GW_OK : GW_ERR_SPEC_BODY);
        free(b.p);
    }
}

static void expect_refused(pn_message_t *m, const bb_t *b, const char *why_part)
{
    char why[200];
    gw_err_t err = gw_spec_message_decode(m, (const char *)b->p, b->n, why, sizeof why);
    if (err != GW_ERR_SPEC_BODY || !strstr(why, why_part))
        fail_msg("got %s \"%s\", want spec-body \"...%s...\"", gw_err_name(err), why, why_part);
}

static void test_malformed(void **state)
{
    pn_message_t *m = *state;
    bb_t b = {0};
    char why[200];

    assert_int_equal(gw_spec_message_decode(m, "", 0, why, sizeof why), GW_ERR_SPEC_BODY);
    assert_string_equal(why, "empty message");

    bb_u8(&b, 0x53); /* not a described section */
    expect_refused(m, &b, "malformed");
    b.n = 0;

    bb_data8(&b, "x"); /* Data + AmqpValue */
    bb_section(&b, 0x77);
    bb_u8(&b, 0x41);
    expect_refused(m, &b, "invalid body: 1 AmqpValue, 1 Data");
    b.n = 0;

    bb_section(&b, 0x77); /* two AmqpValue sections */
    bb_u8(&b, 0x41);
    bb_section(&b, 0x77);
    bb_u8(&b, 0x42);
    expect_refused(m, &b, "invalid body: 2 AmqpValue");
    b.n = 0;

    bb_section(&b, 0x75); /* a Data section holding a string */
    bb_u8(&b, 0xa1);
    bb_u8(&b, 1);
    bb_u8(&b, 'x');
    expect_refused(m, &b, "malformed");
    b.n = 0;

    bb_u8(&b, 0x00); /* a section described by a symbol */
    bb_u8(&b, 0xa3);
    bb_u8(&b, 16);
    bb_put(&b, "amqp:data:binary", 16);
    bb_u8(&b, 0xa0);
    bb_u8(&b, 1);
    bb_u8(&b, 'x');
    expect_refused(m, &b, "symbolic descriptors");
    b.n = 0;

    bb_section(&b, 0x77); /* nesting deeper than 32 lists */
    for (int i = 0; i < 40; i++) {
        bb_u8(&b, 0xc0);
        bb_u8(&b, (uint8_t)(2 * (40 - i) - 1));
        bb_u8(&b, 1);
    }
    bb_u8(&b, 0x45);
    expect_refused(m, &b, "malformed");
    b.n = 0;

    bb_section(&b, 0x77); /* list claiming more elements than bytes */
    bb_u8(&b, 0xd0);
    bb_u32(&b, 5);
    bb_u32(&b, 0xffffffffu);
    bb_u8(&b, 0x40);
    expect_refused(m, &b, "malformed");
    b.n = 0;

    bb_section(&b, 0x75); /* binary32 length past the end */
    bb_u8(&b, 0xb0);
    bb_u32(&b, 0x7fffffffu);
    bb_u8(&b, 'x');
    expect_refused(m, &b, "malformed");
    free(b.p);
}

/* Every prefix of a valid message: refused, or accepted exactly at section
 * boundaries, never read past the cut (ASan), never crash; then every
 * single-byte corruption. */
static void test_cuts_and_corruption(void **state)
{
    pn_message_t *m = *state;
    pn_rwbytes_t buf = {0, NULL};
    gw_spec_publish_t p = {.topic = {"x/y", 3}, .payload = {"0123456789", 10}, .qos = 2,
                           .retain = true, .delivery_count = 2, .has_message_id = true,
                           .message_id = 99};
    assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
    ssize_t n = pn_message_encode2(m, &buf);
    assert_true(n > 0);
    size_t accepted = 0;
    for (ssize_t cut = 1; cut < n; cut++) {
        char *copy = malloc((size_t)cut); /* exact size: ASan catches over-reads */
        gw_spec_msg_t d;
        char why[200];
        assert_non_null(copy);
        memcpy(copy, buf.start, (size_t)cut);
        gw_err_t err = gw_spec_message_decode(m, copy, (size_t)cut, why, sizeof why);
        assert_true(err == GW_OK || err == GW_ERR_SPEC_BODY);
        if (err == GW_OK) {
            accepted++;
            /* a cut message lacks the body: refused by the spec decoder */
            assert_int_not_equal(gw_spec_decode(m, &d, why, sizeof why), GW_OK);
        }
        free(copy);
    }
    /* header | annotations | properties | body: 3 inner boundaries */
    assert_int_equal(accepted, 3);

    for (ssize_t i = 0; i < n; i++) {
        for (int v = 0; v < 256; v += 37) {
            char *copy = malloc((size_t)n);
            gw_spec_msg_t d;
            char why[200];
            assert_non_null(copy);
            memcpy(copy, buf.start, (size_t)n);
            copy[i] = (char)(copy[i] ^ (char)(v + 1));
            if (gw_spec_message_decode(m, copy, (size_t)n, why, sizeof why) == GW_OK &&
                gw_spec_decode(m, &d, why, sizeof why) == GW_OK)
                gw_spec_msg_clear(&d);
            free(copy);
        }
    }
    free(buf.start);
}

/* ------------------------------------------------------------------ */
/* python-qpid-proton                                                  */
/* ------------------------------------------------------------------ */

static int hexval(int c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

/* Run python code that prints one hex-encoded AMQP message; decode it. */
static bool from_python(const char *code, pn_message_t *m, gw_spec_msg_t *d)
{
    char cmd[2048], line[4096], why[200];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys\ntry:\n from proton import Message, symbol, "
             "int32, ubyte\nexcept ImportError:\n sys.exit(77)\n%s\nprint(m.encode().hex())' 2>&1",
             code);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char *got = fgets(line, sizeof line, f);
    int rc = pclose(f);
    if (WEXITSTATUS(rc) == 77)
        return false;
    assert_non_null(got);
    assert_int_equal(rc, 0);
    size_t len = strcspn(line, "\n") / 2;
    char *bytes = malloc(len);
    assert_non_null(bytes);
    for (size_t i = 0; i < len; i++)
        bytes[i] = (char)(hexval(line[2 * i]) << 4 | hexval(line[2 * i + 1]));
    assert_int_equal(gw_spec_message_decode(m, bytes, len, why, sizeof why), GW_OK);
    gw_err_t err = gw_spec_decode(m, d, why, sizeof why);
    free(bytes);
    if (err != GW_OK)
        fail_msg("python message refused: %s \"%s\"", gw_err_name(err), why);
    return true;
}

static void test_python_native_senders(void **state)
{
    pn_message_t *m = *state;
    gw_spec_msg_t d;

    /* the simplest native sender: address + str body (AmqpValue string) */
    if (!from_python("m = Message(address=\"sensors/1\", body=\"hi\")", m, &d))
        skip();
    assert_int_equal(d.kind, GW_SPEC_PUBLISH);
    assert_int_equal(d.publish.qos, 0);
    assert_int_equal(d.publish.payload.len, 2);
    assert_memory_equal(d.publish.payload.ptr, "hi", 2);
    assert_int_equal(d.publish.topic.len, 9);

    /* durable, bytes body, python-side annotations with str keys and
     * python ints (proton picks the AMQP types) */
    from_python("m = Message(address=\"a/b\", body=b\"\\x00\\x01\", durable=True, id=5, "
                "annotations={\"x-opt-retain-message\": True, \"x-opt-mqtt-qos\": 2})",
                m, &d);
    assert_int_equal(d.publish.qos, 2);
    assert_true(d.publish.retain);
    assert_true(d.publish.durable);
    assert_true(d.publish.has_message_id);
    assert_int_equal(d.publish.message_id, 5);
    assert_int_equal(d.publish.payload.len, 2);
    assert_memory_equal(d.publish.payload.ptr, "\x00\x01", 2);

    /* a Data section (inferred) and an explicit ubyte QoS */
    from_python("m = Message(address=\"t\", body=b\"raw\", inferred=True, "
                "annotations={symbol(\"x-opt-mqtt-qos\"): ubyte(1)})",
                m, &d);
    assert_int_equal(d.publish.qos, 1);
    assert_memory_equal(d.publish.payload.ptr, "raw", 3);

    /* a SUBSCRIBE as a python service would build it */
    from_python("m = Message(subject=\"subscribe\", id=17, "
                "correlation_id=\"$mqtt.to.py.publish\", body={\"a/+\": 1, \"#\": int32(2)})",
                m, &d);
    assert_int_equal(d.kind, GW_SPEC_SUBSCRIBE);
    assert_int_equal(d.message_id, 17);
    assert_int_equal(d.count, 2);
    gw_spec_msg_clear(&d);
}

/* Our AMQP_PUBLISH read by python-qpid-proton: types as documented. */
static void test_python_reads_ours(void **state)
{
    pn_message_t *m = *state;
    pn_rwbytes_t buf = {0, NULL};
    char cmd[4096], out[1024];
    gw_spec_publish_t p = {.topic = {"x/y", 3}, .payload = {"pay", 3}, .qos = 1, .retain = true,
                           .delivery_count = 1, .has_message_id = true, .message_id = 4};
    assert_int_equal(gw_spec_encode_publish(m, &p), GW_OK);
    ssize_t n = pn_message_encode2(m, &buf);
    assert_true(n > 0 && (size_t)n * 2 < 1500);
    int off = snprintf(cmd, sizeof cmd,
                       "/usr/bin/python3 -c 'import sys\ntry:\n from proton import Message\n"
                       "except ImportError:\n sys.exit(77)\nm = Message()\nm.decode(bytes.fromhex("
                       "\"");
    for (ssize_t i = 0; i < n; i++)
        off += snprintf(cmd + off, sizeof cmd - (size_t)off, "%02x", (unsigned char)buf.start[i]);
    snprintf(cmd + off, sizeof cmd - (size_t)off,
             "\"))\nprint(m.address, m.durable, m.delivery_count, type(m.id).__name__, m.id, m.inferred, "
             "repr(m.body), sorted((type(k).__name__, k, type(v).__name__, v) for k, v in "
             "m.annotations.items()))' 2>&1");
    free(buf.start);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char *got = fgets(out, sizeof out, f);
    int rc = pclose(f);
    if (WEXITSTATUS(rc) == 77)
        skip();
    assert_non_null(got);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "x/y True 1 int 4 True b'pay' "
                             "[('symbol', symbol('x-opt-mqtt-qos'), 'int32', int32(1)), "
                             "('symbol', symbol('x-opt-retain-message'), 'bool', True)]\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_several_data_sections_joined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer_message_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_proton_would_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cuts_and_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_native_senders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_reads_ours, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
