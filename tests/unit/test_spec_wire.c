/*
 * test_spec_wire.c - gw_spec_message_decode() on raw bytes: what proton
 * 0.37's pn_message_decode() alone gets wrong (stale fields, several Data
 * sections, truncated big maps, int message-ids), malformed and cut input,
 * interoperability with python-qpid-proton both ways, the messages proton
 * reads differently from their bytes (one case per rule of the scanner),
 * and the fuzz seed corpus (valid seeds decode, reproducers are refused).
 */
#include <dirent.h>
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
    expect_refused(m, &b, "not a described section");
    b.n = 0;

    bb_data8(&b, "x"); /* Data + AmqpValue */
    bb_section(&b, 0x77);
    bb_u8(&b, 0x41);
    expect_refused(m, &b, "amqp-value section after data section");
    b.n = 0;

    bb_section(&b, 0x77); /* two AmqpValue sections */
    bb_u8(&b, 0x41);
    bb_section(&b, 0x77);
    bb_u8(&b, 0x42);
    expect_refused(m, &b, "amqp-value section repeated");
    b.n = 0;

    bb_section(&b, 0x75); /* a Data section holding a string */
    bb_u8(&b, 0xa1);
    bb_u8(&b, 1);
    bb_u8(&b, 'x');
    expect_refused(m, &b, "data section does not hold a binary");
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
        bb_u8(&b, (uint8_t)(3 * (40 - i) - 1)); /* well-framed */
        bb_u8(&b, 1);
    }
    bb_u8(&b, 0x45);
    expect_refused(m, &b, "nested deeper than 32 levels");
    b.n = 0;

    bb_section(&b, 0x77); /* list claiming more elements than bytes */
    bb_u8(&b, 0xd0);
    bb_u32(&b, 5);
    bb_u32(&b, 0xffffffffu);
    bb_u8(&b, 0x40);
    expect_refused(m, &b, "list/map count larger than its size");
    b.n = 0;

    bb_section(&b, 0x75); /* binary32 length past the end */
    bb_u8(&b, 0xb0);
    bb_u32(&b, 0x7fffffffu);
    bb_u8(&b, 'x');
    expect_refused(m, &b, "longer than its container");
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


/* ------------------------------------------------------------------ */
/* Messages proton 0.37 reads differently from their bytes             */
/* (tests/fuzz/repro/README.md): refused with a precise reason          */
/* ------------------------------------------------------------------ */

static size_t from_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *h = hex; *h; h++) {
        if (*h == ' ')
            continue;
        assert_true(h[1] != '\0' && n < cap);
        out[n++] = (uint8_t)(hexval(h[0]) << 4 | hexval(h[1]));
        h++;
    }
    return n;
}

typedef struct {
    const char *hex;  /* the message, spaces ignored */
    const char *why;  /* expected part of the reason; NULL: accepted */
} wire_case_t;

static const wire_case_t g_wire_cases[] = {
    /* descriptors: ulong or symbol only (AMQP 1.0 1.5) */
    {"005377 00 005301 40 40", "a descriptor is not a ulong or symbol"}, /* described descriptor */
    {"005377 00 a10161 40", "a descriptor is not a ulong or symbol"},     /* string descriptor */
    {"005377 00 7100000001 40", "a descriptor is not a ulong or symbol"}, /* int descriptor */
    {"00 005370 40 45", "a descriptor is not a ulong or symbol"},        /* section's own */
    {"005377 c00601 00a10161 40", "a descriptor is not a ulong or symbol"}, /* inside a list */
    {"005377 00a30161 40", NULL},         /* symbol-described value: fine */
    {"005377 0080000000000000000140", NULL}, /* ulong-described value: fine */
    {"005377 00 44 40", NULL},               /* ulong0 descriptor: fine */
    /* section codes: 0x70..0x78 only (AMQP 1.0 3.2) */
    {"005379 40", "not an AMQP 1.0 message section"},
    {"00536f 45", "not an AMQP 1.0 message section"},
    {"0044 45", "not an AMQP 1.0 message section"},
    {"0080 0000000100000077 40", "not an AMQP 1.0 message section"},
    {"00a30c616d71703a666f6f3a626172 40", "not an AMQP 1.0 message section"}, /* amqp:foo:bar */
    {"0080 0000000000000077 a10161", NULL}, /* amqp-value as a long ulong */
    /* order and repetition (AMQP 1.0 3.2) */
    {"005373 45 005370 45", "header section after properties section"},
    {"005370 45 005370 45", "header section repeated"},
    {"005373 45 005373 45", "properties section repeated"},
    {"005371 c10100 005371 c10100", "delivery-annotations section repeated"},
    {"005372 c10100 005372 c10100", "message-annotations section repeated"},
    {"005374 c10100 005374 c10100", "application-properties section repeated"},
    {"005374 c10100 005372 c10100", "message-annotations section after application-properties"},
    {"005378 c10100 005378 c10100", "footer section repeated"},
    {"005378 c10100 005375 a00178", "data section after footer section"},
    {"005377 40 005377 40", "amqp-value section repeated"},
    {"005376 45 005375 a00178", "data section after amqp-sequence section"},
    {"005375 a00178 005376 45", "amqp-sequence section after data section"},
    {"005375 a00178 005375 a00179 005378 c10100", NULL}, /* data may repeat */
    {"005370 45 005371 c10100 005372 c10100 005373 45 005374 c10100 005377 40 005378 c10100",
     NULL}, /* every section once, in order */
    /* the value each section holds */
    {"005370 41", "header section does not hold a list"},
    {"005370 c10100", "header section does not hold a list"},
    {"005373 40", "properties section does not hold a list"},
    {"005373 a10161", "properties section does not hold a list"},
    {"005371 45", "delivery-annotations section does not hold a map"},
    {"005372 40", "message-annotations section does not hold a map"},
    {"005374 c00100", "application-properties section does not hold a map"},
    {"005378 a10161", "footer section does not hold a map"},
    {"005376 40", "amqp-sequence section does not hold a list"},
    {"005375 a10161", "data section does not hold a binary"},
    /* lists, maps, arrays fill exactly their size */
    {"005377 c00301 4040", "elements do not fill its declared size"},
    {"005377 d0 00000006 00000001 4040", "elements do not fill its declared size"},
    {"005377 c10502 40404040", "elements do not fill its declared size"},
    {"005377 e00502 50 010203", "elements do not fill its declared size"},
    {"005377 e00403 50 0102", "truncated value"},
    {"005377 e00602 a1 0161 0162", NULL},           /* array of str8 */
    {"005377 e00402 a1 0161", "longer than its container"},
    {"005377 e00a02 00a30161 c0 0100 0100", NULL},  /* described array of lists */
    {"005377 e00c02 00a30161 c0 0100 030140 40", "elements do not fill"},
    {"005377 e00100", "array without an element constructor"},
    {"005377 e00200 00", "truncated descriptor"},
    {"005377 e00400 0044 00", "bad array element constructor"},
    {"005377 e00200 46", "bad array element constructor"},
    {"005377 f0 00000005 00000000 40", NULL},       /* array32 of no nulls */
    {"005377 c10201 40", "odd number of elements"},
    {"005377 c10302 a10161", "longer than its container"},
    {"005377 c10402 a10161", "truncated value"}, /* map missing its value */
    {"005377 46", "unknown format code"},
    {"005377 c00302 46 40", "unknown format code"},
    {"005377 c1 0502 a10161 40", NULL},
};

static void test_wire_rules(void **state)
{
    pn_message_t *m = *state;
    for (size_t i = 0; i < sizeof(g_wire_cases) / sizeof(g_wire_cases[0]); i++) {
        const wire_case_t *c = &g_wire_cases[i];
        uint8_t bytes[256];
        char why[200];
        gw_spec_sections_t sec;
        size_t n = from_hex(c->hex, bytes, sizeof bytes);
        gw_err_t err = gw_spec_message_decode(m, (const char *)bytes, n, why, sizeof why);
        gw_err_t scan = gw_spec_scan_sections((const char *)bytes, n, &sec);
        if (c->why == NULL) {
            if (err != GW_OK || scan != GW_OK)
                fail_msg("case %zu (%s): refused: %s", i, c->hex, why);
        } else if (err != GW_ERR_SPEC_BODY || !strstr(why, c->why) || scan != GW_ERR_SPEC_BODY ||
                   strchr(why, '\n')) {
            fail_msg("case %zu (%s): got %s \"%s\", want spec-body \"...%s...\"", i, c->hex,
                     gw_err_name(err), why, c->why);
        }
        if (c->why != NULL) { /* refused: the message is left cleared */
            assert_null(pn_message_get_address(m));
            assert_int_equal(pn_data_size(pn_message_body(m)), 0);
        }
    }
}

/* Read a whole file (at most cap bytes) into buf; its size. */
static size_t read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    assert_int_equal(ferror(f), 0);
    assert_true(feof(f) || fgetc(f) == EOF);
    fclose(f);
    return n;
}

/* The fuzzer's reproducers, now seeds of tests/fuzz/corpus/spec/: each
 * refused for the reason of its class. */
static const struct {
    const char *file;
    const char *why;
} g_repro[] = {
    {"spec_nested_descriptor_drops_annotations.bin",
     "section 2: a descriptor is not a ulong or symbol (AMQP 1.0 1.5) at offset 15"},
    {"spec_fuzz_crash_4d2741f7.bin", "section 1: not an AMQP 1.0 message section (3.2)"},
    {"spec_unknown_section_replaces_body.bin",
     "section 3: not an AMQP 1.0 message section (3.2) at offset 18"},
    {"spec_header_not_a_list.bin", "section 1: a descriptor is not a ulong or symbol"},
    {"spec_list_count_hides_field.bin",
     "section 1: list/map/array elements do not fill its declared size at offset 7"},
    {"spec_map_count_short_of_size.bin",
     "section 2: list/map/array elements do not fill its declared size at offset 48"},
};

/* Refused seeds that are not fuzzer reproducers. */
static const struct {
    const char *file;
    const char *why;
} g_refused_seeds[] = {
    {"symbolic_descriptor.bin", "symbolic descriptors are not supported"},
};

static void test_corpus(void **state)
{
    pn_message_t *m = *state;
    const char *src = getenv("GW_SOURCE_DIR");
    char dir[1024], path[1024 + 256 + 2], why[200];
    static char buf[1 << 16];
    size_t accepted = 0, refused = 0;
    if (!src)
        skip(); /* run by ctest, which sets it */
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/spec", src);
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *want = NULL;
        bool known = false;
        if (e->d_name[0] == '.')
            continue;
        for (size_t i = 0; i < sizeof(g_repro) / sizeof(g_repro[0]); i++)
            if (strcmp(e->d_name, g_repro[i].file) == 0)
                want = g_repro[i].why, known = true;
        for (size_t i = 0; i < sizeof(g_refused_seeds) / sizeof(g_refused_seeds[0]); i++)
            if (strcmp(e->d_name, g_refused_seeds[i].file) == 0)
                want = g_refused_seeds[i].why, known = true;
        if (!known && strncmp(e->d_name, "spec_", 5) == 0)
            fail_msg("%s: a reproducer without an expected reason in g_repro", e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n = read_file(path, buf, sizeof buf);
        gw_err_t err = gw_spec_message_decode(m, buf, n, why, sizeof why);
        if (want == NULL) {
            if (err != GW_OK)
                fail_msg("%s: valid seed refused: %s \"%s\"", e->d_name, gw_err_name(err), why);
            accepted++;
        } else {
            if (err != GW_ERR_SPEC_BODY || !strstr(why, want))
                fail_msg("%s: got %s \"%s\", want spec-body \"...%s...\"", e->d_name,
                         gw_err_name(err), why, want);
            refused++;
        }
    }
    closedir(d);
    /* every listed file exists */
    assert_int_equal(refused, sizeof(g_repro) / sizeof(g_repro[0]) +
                                  sizeof(g_refused_seeds) / sizeof(g_refused_seeds[0]));
    assert_true(accepted >= 15);
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
        cmocka_unit_test_setup_teardown(test_wire_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corpus, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
