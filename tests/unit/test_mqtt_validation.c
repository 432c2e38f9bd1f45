/*
 * test_mqtt_validation.c - one test per decoder validation rule, each
 * expecting its precise gw_err_t. Every case is decoded one-shot and
 * through the framer in chunks of 1, 2, 3, 5, 7 bytes (test_mqtt_util.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_mqtt_util.h"

static const gw_mqtt_ctx_t ctx4 = {GW_MQTT_PROTOCOL_V311, 0, 0};
static const gw_mqtt_ctx_t ctx3 = {GW_MQTT_PROTOCOL_V31, 0, 0};
static const gw_mqtt_ctx_t ctx0 = {0, 0, 0};

#define B(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})
#define EXPECT(ctx, err, ...) tmq_expect_at(__FILE__, __LINE__, (ctx), B(__VA_ARGS__), (err), NULL)

/* ------------------------------------------------------------------ */
/* MQTT-2.2.2-1/2: fixed header flags, every type                      */
/* ------------------------------------------------------------------ */

/* Flip the low nibble of a valid packet through all 16 values: only the
 * required one decodes. */
static void flags_case(const uint8_t *valid, size_t n, uint8_t required)
{
    uint8_t *b = malloc(n);
    assert_non_null(b);
    memcpy(b, valid, n);
    for (uint8_t f = 0; f < 16; f++) {
        b[0] = (uint8_t)((valid[0] & 0xF0) | f);
        tmq_expect_at(__FILE__, __LINE__, &ctx4, b, n,
                      f == required ? GW_OK : GW_ERR_MQTT_RESERVED_FLAGS, NULL);
    }
    free(b);
}

#define FLAGS_TEST(name, required, ...)                         \
    static void test_flags_##name(void **state)                 \
    {                                                           \
        flags_case(B(__VA_ARGS__), required);                   \
    }

FLAGS_TEST(connect, 0, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 0)
FLAGS_TEST(connack, 0, 0x20, 2, 0, 0)
FLAGS_TEST(puback, 0, 0x40, 2, 0, 1)
FLAGS_TEST(pubrec, 0, 0x50, 2, 0, 1)
FLAGS_TEST(pubrel, 2, 0x62, 2, 0, 1)
FLAGS_TEST(pubcomp, 0, 0x70, 2, 0, 1)
FLAGS_TEST(subscribe, 2, 0x82, 6, 0, 1, 0, 1, 'a', 0)
FLAGS_TEST(suback, 0, 0x90, 3, 0, 1, 0)
FLAGS_TEST(unsubscribe, 2, 0xA2, 5, 0, 1, 0, 1, 'a')
FLAGS_TEST(unsuback, 0, 0xB0, 2, 0, 1)
FLAGS_TEST(pingreq, 0, 0xC0, 0)
FLAGS_TEST(pingresp, 0, 0xD0, 0)
FLAGS_TEST(disconnect, 0, 0xE0, 0)

/* PUBLISH: every flag combination but QoS 3 and (3.1.1) DUP on QoS 0. */
static void test_flags_publish(void **state)
{
    uint8_t b[] = {0x30, 7, 0, 3, 'a', '/', 'b', 0, 1};
    for (uint8_t f = 0; f < 16; f++) {
        uint8_t qos = (f >> 1) & 3;
        bool dup = f & 8;
        b[0] = (uint8_t)(0x30 | f);
        /* QoS 0 has no packet id: the 2 last bytes are payload then. */
        gw_err_t want = qos == 3 ? GW_ERR_MQTT_QOS : (dup && qos == 0) ? GW_ERR_MQTT_PROTOCOL : GW_OK;
        tmq_expect_at(__FILE__, __LINE__, &ctx4, b, sizeof(b), want, NULL);
    }
}

/* ------------------------------------------------------------------ */
/* PUBLISH                                                             */
/* ------------------------------------------------------------------ */

static void test_publish_qos3(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_QOS, 0x36, 7, 0, 3, 'a', '/', 'b', 0, 1);
    EXPECT(&ctx4, GW_ERR_MQTT_QOS, 0x3F, 7, 0, 3, 'a', '/', 'b', 0, 1);
    EXPECT(&ctx3, GW_ERR_MQTT_QOS, 0x36, 7, 0, 3, 'a', '/', 'b', 0, 1);
}

static void test_publish_dup_qos0(void **state)
{
    /* MQTT-3.3.1-2 is a 3.1.1 rule; 3.1 tolerates it. Level 0 = 3.1.1. */
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x38, 5, 0, 3, 'a', '/', 'b');
    EXPECT(&ctx0, GW_ERR_MQTT_PROTOCOL, 0x38, 5, 0, 3, 'a', '/', 'b');
    EXPECT(NULL, GW_ERR_MQTT_PROTOCOL, 0x38, 5, 0, 3, 'a', '/', 'b');
    gw_mqtt_packet_t p;
    tmq_valid_at(__FILE__, __LINE__, &ctx3, B(0x38, 5, 0, 3, 'a', '/', 'b'), &p);
    assert_true(p.u.publish.dup);
}

static void test_packet_id_zero(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x32, 7, 0, 3, 'a', '/', 'b', 0, 0);    /* PUBLISH QoS 1 */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x34, 8, 0, 3, 'a', '/', 'b', 0, 0, 9); /* PUBLISH QoS 2 */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x40, 2, 0, 0);                         /* PUBACK */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x50, 2, 0, 0);                         /* PUBREC */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x62, 2, 0, 0);                         /* PUBREL */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x70, 2, 0, 0);                         /* PUBCOMP */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x82, 6, 0, 0, 0, 1, 'a', 0);           /* SUBSCRIBE */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0x90, 3, 0, 0, 0);                      /* SUBACK */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0xA2, 5, 0, 0, 0, 1, 'a');              /* UNSUBSCRIBE */
    EXPECT(&ctx4, GW_ERR_MQTT_PACKET_ID, 0xB0, 2, 0, 0);                         /* UNSUBACK */
    /* QoS 0 has no packet id: the two zero bytes are payload. */
    EXPECT(&ctx4, GW_OK, 0x30, 7, 0, 3, 'a', '/', 'b', 0, 0);
}

static void test_publish_topic_name(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_WILDCARD, 0x30, 5, 0, 3, 'a', '/', '+');
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_WILDCARD, 0x30, 5, 0, 3, 'a', '/', '#');
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_WILDCARD, 0x30, 5, 0, 3, 'a', '+', 'b');
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_EMPTY, 0x30, 2, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_EMPTY, 0x32, 4, 0, 0, 0, 1);
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x30, 4, 0, 2, 0xC0, 0x80);
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x30, 6, 0, 4, 0xF4, 0x90, 0x80, 0x80);
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x30, 5, 0, 3, 'a', 0x00, 'b');
    /* Topic names may start with '$', contain spaces, empty levels. */
    EXPECT(&ctx4, GW_OK, 0x30, 6, 0, 4, '$', 'S', ' ', '/');
    EXPECT(&ctx4, GW_OK, 0x30, 3, 0, 1, '/');
    /* The payload is binary: not UTF-8 checked. */
    EXPECT(&ctx4, GW_OK, 0x30, 5, 0, 1, 'a', 0xC0, 0x00);
}

/* ------------------------------------------------------------------ */
/* CONNECT                                                             */
/* ------------------------------------------------------------------ */

static void test_connect_protocol_name(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_NAME, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_NAME, 0x10, 12, 0, 4, 'm', 'q', 't', 't', 4, 2, 0, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_NAME, 0x10, 8, 0, 0, 4, 2, 0, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_NAME, 0x10, 13, 0, 5, 'M', 'Q', 'I', 's', 'd', 3, 2, 0, 0,
           0, 0);
}

static void test_connect_protocol_level(void **state)
{
    /* Right name, other level: CONNACK 1 (MQTT-3.1.2-2). */
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_LEVEL, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 3, 2, 0, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_LEVEL, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_LEVEL, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 0, 2, 0, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL_LEVEL, 0x10, 14, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 4, 2,
           0, 0, 0, 0);
    EXPECT(&ctx4, GW_OK, 0x10, 14, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 0, 0, 0);
}

static void test_connect_reserved_bit(void **state)
{
    /* MQTT-3.1.2-3 (3.1.1 only). */
    EXPECT(&ctx4, GW_ERR_MQTT_CONNECT_RESERVED, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 0, 0,
           0);
    EXPECT(&ctx4, GW_ERR_MQTT_CONNECT_RESERVED, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 1, 0, 0, 0,
           0);
    EXPECT(&ctx4, GW_OK, 0x10, 14, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 3, 0, 0, 0, 0);
}

static void test_connect_will_flags(void **state)
{
    /* MQTT-3.1.2-13: will QoS 1 without will flag. */
    EXPECT(&ctx4, GW_ERR_MQTT_WILL_FLAGS, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x0A, 0, 0, 0, 0);
    /* will QoS 2 without will flag */
    EXPECT(&ctx4, GW_ERR_MQTT_WILL_FLAGS, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x12, 0, 0, 0, 0);
    /* MQTT-3.1.2-15: will retain without will flag. */
    EXPECT(&ctx4, GW_ERR_MQTT_WILL_FLAGS, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x22, 0, 0, 0, 0);
    /* MQTT-3.1.2-14: will QoS 3 even with the will flag and a full will. */
    EXPECT(&ctx4, GW_ERR_MQTT_WILL_FLAGS, 0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x1E, 0, 0, 0, 0,
           0, 1, 't', 0, 0);
    EXPECT(&ctx3, GW_ERR_MQTT_WILL_FLAGS, 0x10, 14, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x20,
           0, 0, 0, 0);
    /* The same will with QoS 2 and retain is fine. */
    EXPECT(&ctx4, GW_OK, 0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x36, 0, 0, 0, 0, 0, 1, 't', 0, 0);
}

static void test_connect_password_flag(void **state)
{
    /* MQTT-3.1.2-22; MQTT 3.1 forbids it too (documented in mqtt.h). */
    EXPECT(&ctx4, GW_ERR_MQTT_PASSWORD_FLAG, 0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 0, 0,
           0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PASSWORD_FLAG, 0x10, 16, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3,
           0x42, 0, 0, 0, 0, 0, 0);
}

static void test_connect_utf8_fields(void **state)
{
    /* client id: overlong NUL, U+0000, lone continuation byte */
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 2, 0xC0,
           0x80);
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 1, 0x00);
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 1, 0x80);
    /* user name: surrogate U+D800 */
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 0, 0, 0, 0, 3,
           0xED, 0xA0, 0x80);
    /* will topic: ill-formed, wildcard, empty */
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x10, 18, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 0, 0, 0, 0, 2,
           0xC0, 0x80, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_WILDCARD, 0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 0,
           0, 0, 0, 3, 'a', '/', '#', 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_EMPTY, 0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 0, 0,
           0, 0, 0, 0, 0);
    /* will message and password are binary: anything goes */
    EXPECT(&ctx4, GW_OK, 0x10, 25, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC6, 0, 0, 0, 0, 0, 1, 't', 0, 2,
           0xC0, 0x00, 0, 0, 0, 2, 0xED, 0xA0);
    /* valid multi-byte client id: "é€😀" */
    EXPECT(&ctx4, GW_OK, 0x10, 21, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 9, 0xC3, 0xA9, 0xE2,
           0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80);
}

static const uint8_t connect_full[] = {
    0x10, 30, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xEE, 0x00, 0x3C, 0x00, 0x02, 'c', '1',
    0x00, 0x03, 'w', '/', 't', 0x00, 0x03, 'b', 'y', 'e', 0x00, 0x01, 'u', 0x00, 0x01, 'p',
};

/* Cut the CONNECT body at every length: always TRUNCATED. */
static void test_connect_truncated(void **state)
{
    uint8_t b[sizeof(connect_full)];
    for (size_t cut = 0; cut < sizeof(connect_full) - 2; cut++) {
        b[0] = 0x10;
        b[1] = (uint8_t)cut;
        memcpy(b + 2, connect_full + 2, cut);
        tmq_expect_at(__FILE__, __LINE__, &ctx4, b, 2 + cut, GW_ERR_MQTT_TRUNCATED, NULL);
    }
}

static void test_connect_trailing(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0,
           0, 'x');
    /* a user name present without the flag is just trailing bytes */
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0,
           0, 0, 1, 'u');
}

/* ------------------------------------------------------------------ */
/* SUBSCRIBE / UNSUBSCRIBE                                             */
/* ------------------------------------------------------------------ */

static void test_subscribe_topic_filter(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0x82, 10, 0, 1, 0, 5, 'a', '/', '#', '/', 'b', 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0x82, 7, 0, 1, 0, 2, 'a', '+', 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0x82, 7, 0, 1, 0, 2, 'a', '#', 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0x82, 7, 0, 1, 0, 2, '+', 'a', 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0x82, 7, 0, 1, 0, 2, '#', '#', 0);
    /* second entry bad after a good first one */
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0x82, 11, 0, 1, 0, 1, '#', 1, 0, 2, '#', '/', 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0xA2, 6, 0, 1, 0, 2, '#', '/');
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_FILTER, 0xA2, 8, 0, 1, 0, 4, 'a', '/', 'b', '+');
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_EMPTY, 0x82, 5, 0, 1, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TOPIC_EMPTY, 0xA2, 4, 0, 1, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0x82, 7, 0, 1, 0, 2, 0xC0, 0x80, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_UTF8, 0xA2, 7, 0, 1, 0, 3, 0xED, 0xBF, 0xBF);
    /* valid filters */
    EXPECT(&ctx4, GW_OK, 0x82, 22, 0, 1, 0, 1, '+', 0, 0, 1, '#', 1, 0, 5, '+', '/', '+', '/', '#',
           2, 0, 1, '/', 0);
    EXPECT(&ctx4, GW_OK, 0xA2, 9, 0, 1, 0, 5, '$', 'S', '/', '+', '/');
}

static void test_subscribe_empty_payload(void **state)
{
    /* MQTT-3.8.3-3, MQTT-3.10.3-2 */
    EXPECT(&ctx4, GW_ERR_MQTT_EMPTY_PAYLOAD, 0x82, 2, 0, 1);
    EXPECT(&ctx4, GW_ERR_MQTT_EMPTY_PAYLOAD, 0xA2, 2, 0, 1);
}

static void test_subscribe_requested_qos(void **state)
{
    /* MQTT-3-8.3-4: QoS above 2 or reserved bits */
    EXPECT(&ctx4, GW_ERR_MQTT_REQUESTED_QOS, 0x82, 6, 0, 1, 0, 1, 'a', 3);
    EXPECT(&ctx4, GW_ERR_MQTT_REQUESTED_QOS, 0x82, 6, 0, 1, 0, 1, 'a', 0x41);
    EXPECT(&ctx4, GW_ERR_MQTT_REQUESTED_QOS, 0x82, 6, 0, 1, 0, 1, 'a', 0x80);
    EXPECT(&ctx4, GW_ERR_MQTT_REQUESTED_QOS, 0x82, 6, 0, 1, 0, 1, 'a', 0x04);
    EXPECT(&ctx4, GW_ERR_MQTT_REQUESTED_QOS, 0x82, 10, 0, 1, 0, 1, 'a', 2, 0, 1, 'b', 0xFC);
}

static void test_subscribe_truncated(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x82, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x82, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x82, 5, 0, 1, 0, 1, 'a');       /* no QoS byte */
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x82, 5, 0, 1, 0, 5, 'a');       /* filter too long */
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x82, 7, 0, 1, 0, 1, 'a', 0, 0); /* half length */
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0xA2, 4, 0, 1, 0, 5);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0xA2, 3, 0, 1, 0);
}

/* The decoded form counts entries in 16 bits. */
static void test_subscribe_too_many(void **state)
{
    for (uint32_t count = 65535; count <= 65536; count++) {
        uint32_t rem = 2 + 4 * count;
        size_t n = 1 + 3 + rem;
        uint8_t *b = malloc(n);
        assert_non_null(b);
        b[0] = 0x82;
        b[1] = (uint8_t)(0x80 | (rem & 0x7f));
        b[2] = (uint8_t)(0x80 | ((rem >> 7) & 0x7f));
        b[3] = (uint8_t)(rem >> 14);
        b[4] = 0;
        b[5] = 1;
        for (uint32_t i = 0; i < count; i++)
            memcpy(b + 6 + 4 * i, "\0\1a\1", 4);
        gw_mqtt_packet_t p;
        gw_err_t want = count > 65535 ? GW_ERR_MQTT_TOO_LARGE : GW_OK;
        assert_err(tmq_decode_once(&ctx4, b, n, &p), want);
        if (want == GW_OK)
            assert_int_equal(p.u.subscribe.topics.count, 65535);
        tmq_decode_chunked(&ctx4, b, n, 0, GW_MQTT_MAX_REMAINING_LENGTH, &want, &p, 1);
        tmq_decode_chunked(&ctx4, b, n, 4093, GW_MQTT_MAX_REMAINING_LENGTH, &want, &p, 1);
        free(b);
    }
}

/* ------------------------------------------------------------------ */
/* Short packets                                                       */
/* ------------------------------------------------------------------ */

static void test_truncated(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x30, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x30, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x30, 3, 0, 5, 'a');
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x32, 5, 0, 3, 'a', '/', 'b');    /* no packet id */
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x34, 6, 0, 3, 'a', '/', 'b', 0); /* half packet id */
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x40, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x50, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x62, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x70, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0xB0, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x20, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x20, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x90, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRUNCATED, 0x10, 0);
}

static void test_trailing(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0x40, 3, 0, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0x50, 3, 0, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0x62, 3, 0, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0x70, 4, 0, 1, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0xB0, 3, 0, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0x20, 3, 0, 0, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0xC0, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0xD0, 1, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_TRAILING_BYTES, 0xE0, 2, 0, 0);
}

/* ------------------------------------------------------------------ */
/* CONNACK / SUBACK content                                            */
/* ------------------------------------------------------------------ */

static void test_connack_rules(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x20, 2, 0x02, 0); /* reserved ack flags */
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x20, 2, 0x80, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x20, 2, 0, 6);    /* reserved return code */
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x20, 2, 0, 0xFF);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x20, 2, 1, 1);    /* MQTT-3.2.2-4 */
}

static void test_suback_rules(void **state)
{
    /* MQTT-3.9.3-2 */
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x90, 3, 0, 1, 3);
    EXPECT(&ctx4, GW_ERR_MQTT_PROTOCOL, 0x90, 4, 0, 1, 0, 0x81);
    EXPECT(&ctx4, GW_ERR_MQTT_EMPTY_PAYLOAD, 0x90, 2, 0, 1);
}

/* ------------------------------------------------------------------ */
/* Configured topic limits                                             */
/* ------------------------------------------------------------------ */

static void test_topic_limits(void **state)
{
    const gw_mqtt_ctx_t len5 = {4, 5, 0};
    const gw_mqtt_ctx_t lvl3 = {4, 0, 3};

    EXPECT(&len5, GW_OK, 0x30, 7, 0, 5, 'a', 'b', 'c', 'd', 'e');
    EXPECT(&len5, GW_ERR_MQTT_TOPIC_TOO_LONG, 0x30, 8, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f');
    EXPECT(&lvl3, GW_OK, 0x30, 7, 0, 5, 'a', '/', 'b', '/', 'c');
    EXPECT(&lvl3, GW_OK, 0x30, 4, 0, 2, '/', '/');
    EXPECT(&lvl3, GW_ERR_MQTT_TOPIC_TOO_LONG, 0x30, 5, 0, 3, '/', '/', '/');
    EXPECT(&lvl3, GW_ERR_MQTT_TOPIC_TOO_LONG, 0x82, 12, 0, 1, 0, 7, '+', '/', '+', '/', '+', '/',
           '#', 0);
    EXPECT(&len5, GW_ERR_MQTT_TOPIC_TOO_LONG, 0xA2, 10, 0, 1, 0, 6, 'a', 'b', 'c', 'd', 'e', '#');
    /* will topic too */
    EXPECT(&len5, GW_ERR_MQTT_TOPIC_TOO_LONG, 0x10, 22, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 0,
           0, 0, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f', 0, 0);
    /* no limit in the default context */
    EXPECT(&ctx4, GW_OK, 0x30, 8, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f');
}

static void test_bad_type(void **state)
{
    EXPECT(&ctx4, GW_ERR_MQTT_BAD_TYPE, 0x00, 0);
    EXPECT(&ctx4, GW_ERR_MQTT_BAD_TYPE, 0xF0, 0);
    /* a frame built by hand that never went through the framer */
    gw_mqtt_frame_t f = {0xF0, NULL, 0};
    gw_mqtt_packet_t p;
    assert_err(gw_mqtt_decode(&ctx4, &f, &p), GW_ERR_MQTT_BAD_TYPE);
    f.header = 0x0F;
    assert_err(gw_mqtt_decode(&ctx4, &f, &p), GW_ERR_MQTT_BAD_TYPE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_connect),
        cmocka_unit_test(test_flags_connack),
        cmocka_unit_test(test_flags_publish),
        cmocka_unit_test(test_flags_puback),
        cmocka_unit_test(test_flags_pubrec),
        cmocka_unit_test(test_flags_pubrel),
        cmocka_unit_test(test_flags_pubcomp),
        cmocka_unit_test(test_flags_subscribe),
        cmocka_unit_test(test_flags_suback),
        cmocka_unit_test(test_flags_unsubscribe),
        cmocka_unit_test(test_flags_unsuback),
        cmocka_unit_test(test_flags_pingreq),
        cmocka_unit_test(test_flags_pingresp),
        cmocka_unit_test(test_flags_disconnect),
        cmocka_unit_test(test_publish_qos3),
        cmocka_unit_test(test_publish_dup_qos0),
        cmocka_unit_test(test_packet_id_zero),
        cmocka_unit_test(test_publish_topic_name),
        cmocka_unit_test(test_connect_protocol_name),
        cmocka_unit_test(test_connect_protocol_level),
        cmocka_unit_test(test_connect_reserved_bit),
        cmocka_unit_test(test_connect_will_flags),
        cmocka_unit_test(test_connect_password_flag),
        cmocka_unit_test(test_connect_utf8_fields),
        cmocka_unit_test(test_connect_truncated),
        cmocka_unit_test(test_connect_trailing),
        cmocka_unit_test(test_subscribe_topic_filter),
        cmocka_unit_test(test_subscribe_empty_payload),
        cmocka_unit_test(test_subscribe_requested_qos),
        cmocka_unit_test(test_subscribe_truncated),
        cmocka_unit_test(test_subscribe_too_many),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_trailing),
        cmocka_unit_test(test_connack_rules),
        cmocka_unit_test(test_suback_rules),
        cmocka_unit_test(test_topic_limits),
        cmocka_unit_test(test_bad_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
