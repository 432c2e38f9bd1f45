/*
 * test_mqtt_codec.c - every MQTT 3.1.1 packet type: encode to hand-written
 * byte arrays (layouts of MQTT 3.1.1 chapter 3), decode them with every
 * field checked, round trips; encoder rules. Every decode also runs through
 * the framer in chunks of 1, 2, 3, 5, 7 bytes (test_mqtt_util.h).
 * Validation rules (one test each) are in test_mqtt_validation.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_mqtt_util.h"

static const gw_mqtt_ctx_t ctx4 = {GW_MQTT_PROTOCOL_V311, 0, 0};
static const gw_mqtt_ctx_t ctx3 = {GW_MQTT_PROTOCOL_V31, 0, 0};

/* CONNECT, 3.1.1, every optional field (MQTT 3.1.2 / 3.1.3). */
static const uint8_t connect_full[] = {
    0x10, 30,                               /* CONNECT, remaining length 30 */
    0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,   /* protocol name, level 4 */
    0xEE,                                   /* user, pass, will retain, will QoS 1, will, clean */
    0x00, 0x3C,                             /* keep alive 60 */
    0x00, 0x02, 'c', '1',                   /* client id */
    0x00, 0x03, 'w', '/', 't',              /* will topic */
    0x00, 0x03, 'b', 'y', 'e',              /* will message */
    0x00, 0x01, 'u',                        /* user name */
    0x00, 0x01, 'p',                        /* password */
};

static void test_connect_full(void **state)
{
    gw_mqtt_packet_t p;
    TMQ_VALID(&ctx4, connect_full, &p);
    assert_int_equal(p.type, GW_MQTT_CONNECT);
    const gw_mqtt_connect_t *c = &p.u.connect;
    assert_int_equal(c->protocol_level, 4);
    assert_true(c->clean_session);
    assert_int_equal(c->keep_alive, 60);
    tmq_assert_str(c->client_id, "c1");
    assert_true(c->will_flag);
    assert_int_equal(c->will_qos, 1);
    assert_true(c->will_retain);
    tmq_assert_str(c->will_topic, "w/t");
    tmq_assert_bin(c->will_payload, "bye");
    assert_true(c->has_username);
    tmq_assert_str(c->username, "u");
    assert_true(c->has_password);
    tmq_assert_bin(c->password, "p");

    gw_mqtt_packet_t e = {.type = GW_MQTT_CONNECT};
    e.u.connect = (gw_mqtt_connect_t){
        .protocol_level = 4, .clean_session = true, .keep_alive = 60,
        .client_id = tmq_str("c1"), .will_flag = true, .will_qos = 1, .will_retain = true,
        .will_topic = tmq_str("w/t"), .will_payload = {(const uint8_t *)"bye", 3},
        .has_username = true, .username = tmq_str("u"), .has_password = true,
        .password = {(const uint8_t *)"p", 1}};
    TMQ_ENCODES(&ctx4, &e, connect_full);
    /* The context does not matter for CONNECT. */
    TMQ_VALID(&ctx3, connect_full, NULL);
    TMQ_VALID(NULL, connect_full, NULL);
}

/* Minimal CONNECT: empty client id, no flags but clean session. */
static const uint8_t connect_min[] = {0x10, 12, 0x00, 0x04, 'M', 'Q', 'T', 'T',
                                      0x04, 0x02, 0x00, 0x00, 0x00, 0x00};

static void test_connect_minimal(void **state)
{
    gw_mqtt_packet_t p;
    TMQ_VALID(&ctx4, connect_min, &p);
    const gw_mqtt_connect_t *c = &p.u.connect;
    assert_int_equal(c->keep_alive, 0);
    assert_int_equal(c->client_id.len, 0);
    assert_false(c->will_flag);
    assert_false(c->has_username);
    assert_false(c->has_password);
    assert_true(c->clean_session);

    gw_mqtt_packet_t e = {.type = GW_MQTT_CONNECT};
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 4, .clean_session = true};
    TMQ_ENCODES(&ctx4, &e, connect_min);
}

/* MQTT 3.1: "MQIsdp", level 3, user name only. */
static const uint8_t connect_v31[] = {0x10, 20,  0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03,
                                      0x80, 0x00, 0x0A, 0x00, 0x03, 'a', 'b', 'c',
                                      0x00, 0x01, 'x'};

static void test_connect_v31(void **state)
{
    gw_mqtt_packet_t p;
    TMQ_VALID(&ctx3, connect_v31, &p);
    const gw_mqtt_connect_t *c = &p.u.connect;
    assert_int_equal(c->protocol_level, 3);
    assert_false(c->clean_session);
    assert_int_equal(c->keep_alive, 10);
    tmq_assert_str(c->client_id, "abc");
    assert_true(c->has_username);
    tmq_assert_str(c->username, "x");
    assert_false(c->has_password);

    gw_mqtt_packet_t e = {.type = GW_MQTT_CONNECT};
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 3, .keep_alive = 10,
                                      .client_id = tmq_str("abc"), .has_username = true,
                                      .username = tmq_str("x")};
    TMQ_ENCODES(&ctx3, &e, connect_v31);
}

/* Will with an empty message and a password that is empty binary. */
static void test_connect_empty_will_message(void **state)
{
    static const uint8_t b[] = {0x10, 21, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xD4 /* user pass will QoS2 */,
                                0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 't', 0x00, 0x00,
                                0x00, 0x00, 0x00, 0x00};
    gw_mqtt_packet_t p;
    TMQ_VALID(&ctx4, b, &p);
    assert_int_equal(p.u.connect.will_qos, 2);
    assert_false(p.u.connect.will_retain);
    tmq_assert_str(p.u.connect.will_topic, "t");
    assert_int_equal(p.u.connect.will_payload.len, 0);
    assert_true(p.u.connect.has_username);
    assert_int_equal(p.u.connect.username.len, 0);
    assert_true(p.u.connect.has_password);
    assert_int_equal(p.u.connect.password.len, 0);
}

static void test_connack(void **state)
{
    static const uint8_t sp[] = {0x20, 0x02, 0x01, 0x00};
    static const uint8_t refused[] = {0x20, 0x02, 0x00, 0x05};
    gw_mqtt_packet_t p;

    TMQ_VALID(&ctx4, sp, &p);
    assert_int_equal(p.type, GW_MQTT_CONNACK);
    assert_true(p.u.connack.session_present);
    assert_int_equal(p.u.connack.return_code, GW_MQTT_CONNACK_ACCEPTED);
    TMQ_VALID(&ctx4, refused, &p);
    assert_false(p.u.connack.session_present);
    assert_int_equal(p.u.connack.return_code, GW_MQTT_CONNACK_NOT_AUTHORIZED);

    gw_mqtt_packet_t e = {.type = GW_MQTT_CONNACK, .u.connack = {true, 0}};
    TMQ_ENCODES(&ctx4, &e, sp);
    e.u.connack = (gw_mqtt_connack_t){false, 5};
    TMQ_ENCODES(&ctx4, &e, refused);
    for (uint8_t rc = 0; rc <= 5; rc++) {
        uint8_t b[4] = {0x20, 0x02, 0x00, rc};
        gw_mqtt_packet_t q;
        tmq_valid_at(__FILE__, __LINE__, &ctx4, b, 4, &q);
        assert_int_equal(q.u.connack.return_code, rc);
    }
}

/* PUBLISH QoS 0 (no packet id). */
static const uint8_t publish_q0[] = {0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'};
/* PUBLISH DUP, QoS 1, RETAIN; packet id 10 (MQTT 3.3.2.3 example). */
static const uint8_t publish_q1[] = {0x3B, 0x08, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'x'};
/* PUBLISH QoS 2, empty payload. */
static const uint8_t publish_q2[] = {0x34, 0x07, 0x00, 0x03, 'a', '/', 'b', 0xFF, 0xFF};

static void test_publish(void **state)
{
    gw_mqtt_packet_t p;

    TMQ_VALID(&ctx4, publish_q0, &p);
    assert_int_equal(p.type, GW_MQTT_PUBLISH);
    assert_false(p.u.publish.dup);
    assert_int_equal(p.u.publish.qos, 0);
    assert_false(p.u.publish.retain);
    tmq_assert_str(p.u.publish.topic, "a/b");
    assert_int_equal(p.u.publish.packet_id, 0);
    tmq_assert_bin(p.u.publish.payload, "hi");

    TMQ_VALID(&ctx4, publish_q1, &p);
    assert_true(p.u.publish.dup);
    assert_int_equal(p.u.publish.qos, 1);
    assert_true(p.u.publish.retain);
    assert_int_equal(p.u.publish.packet_id, 10);
    tmq_assert_bin(p.u.publish.payload, "x");

    TMQ_VALID(&ctx4, publish_q2, &p);
    assert_int_equal(p.u.publish.qos, 2);
    assert_int_equal(p.u.publish.packet_id, 0xFFFF);
    assert_int_equal(p.u.publish.payload.len, 0);
    assert_null(p.u.publish.payload.ptr);

    gw_mqtt_packet_t e = {.type = GW_MQTT_PUBLISH};
    e.u.publish = (gw_mqtt_publish_t){.topic = tmq_str("a/b"),
                                      .payload = {(const uint8_t *)"hi", 2}};
    TMQ_ENCODES(&ctx4, &e, publish_q0);
    e.u.publish = (gw_mqtt_publish_t){true, 1, true, tmq_str("a/b"), 10,
                                      {(const uint8_t *)"x", 1}};
    TMQ_ENCODES(&ctx4, &e, publish_q1);
    e.u.publish = (gw_mqtt_publish_t){false, 2, false, tmq_str("a/b"), 0xFFFF, {NULL, 0}};
    TMQ_ENCODES(&ctx4, &e, publish_q2);
}

/* Payloads that need 2- and 3-byte remaining lengths, and the biggest
 * 1-/2-byte boundaries (127/128, 16383/16384). */
static void test_publish_lengths(void **state)
{
    static const uint32_t sizes[] = {0, 122, 123, 16378, 16379, 70000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint32_t plen = sizes[i];
        uint8_t *payload = malloc(plen + 1);
        assert_non_null(payload);
        for (uint32_t j = 0; j < plen; j++)
            payload[j] = (uint8_t)(j * 31 + 7);
        gw_mqtt_packet_t e = {.type = GW_MQTT_PUBLISH};
        e.u.publish = (gw_mqtt_publish_t){false, 1, false, tmq_str("t"), 7, {payload, plen}};
        uint32_t rem = 2 + 1 + 2 + plen;
        size_t n = gw_mqtt_encoded_size(&ctx4, &e);
        size_t lb = rem < 128 ? 1 : rem < 16384 ? 2 : 3;
        assert_int_equal(n, 1 + lb + rem);
        uint8_t *buf = malloc(n);
        size_t w;
        assert_non_null(buf);
        assert_err(gw_mqtt_encode(&ctx4, &e, buf, n, &w), GW_OK);
        assert_int_equal(w, n);
        assert_int_equal(buf[0], 0x32);
        /* the remaining length bytes, decoded by hand */
        uint32_t v = 0;
        for (size_t k = 0; k < lb; k++)
            v |= (uint32_t)(buf[1 + k] & 0x7f) << (7 * k);
        assert_int_equal(v, rem);
        gw_mqtt_packet_t p;
        tmq_valid_at(__FILE__, __LINE__, &ctx4, buf, n, &p);
        assert_int_equal(p.u.publish.payload.len, plen);
        if (plen)
            assert_memory_equal(p.u.publish.payload.ptr, payload, plen);
        free(buf);
        free(payload);
    }
}

static void test_publish_header_helper(void **state)
{
    gw_mqtt_publish_t pub = {false, 1, true, tmq_str("a/b"), 10, {NULL, 0}};
    uint8_t hdr[GW_MQTT_PUBLISH_HEADER_MAX(3)];
    size_t w = 0;
    static const uint8_t payload[] = {'x', 'y', 'z'};

    assert_err(gw_mqtt_encode_publish_header(&pub, 3, hdr, sizeof(hdr), &w), GW_OK);
    assert_int_equal(w, 9);
    uint8_t full[32];
    memcpy(full, hdr, w);
    memcpy(full + w, payload, 3);
    /* Same bytes as a full encode of the same packet. */
    gw_mqtt_packet_t e = {.type = GW_MQTT_PUBLISH};
    e.u.publish = pub;
    e.u.publish.payload = (gw_mqtt_bin_t){payload, 3};
    tmq_encode_at(__FILE__, __LINE__, &ctx4, &e, full, w + 3);

    size_t need = 0;
    assert_err(gw_mqtt_encode_publish_header(&pub, 3, hdr, 8, &need), GW_ERR_NOSPACE);
    assert_int_equal(need, 9);
    /* Large payload: 4-byte remaining length still fits the MAX macro. */
    assert_err(gw_mqtt_encode_publish_header(&pub, 200000000u, hdr, sizeof(hdr), &w), GW_OK);
    assert_int_equal(w, 1 + 4 + 2 + 3 + 2);
    assert_err(gw_mqtt_encode_publish_header(&pub, GW_MQTT_MAX_REMAINING_LENGTH, hdr,
                                             sizeof(hdr), &w),
               GW_ERR_INVAL);
    pub.qos = 3;
    assert_err(gw_mqtt_encode_publish_header(&pub, 0, hdr, sizeof(hdr), &w), GW_ERR_INVAL);
    pub.qos = 2;
    pub.packet_id = 0;
    assert_err(gw_mqtt_encode_publish_header(&pub, 0, hdr, sizeof(hdr), &w), GW_ERR_INVAL);
    pub.qos = 0;
    pub.dup = true;
    assert_err(gw_mqtt_encode_publish_header(&pub, 0, hdr, sizeof(hdr), &w), GW_ERR_INVAL);
    pub.dup = false;
    pub.topic.len = 0;
    assert_err(gw_mqtt_encode_publish_header(&pub, 0, hdr, sizeof(hdr), &w), GW_ERR_INVAL);
}

/* PUBACK, PUBREC, PUBREL (flags 0010), PUBCOMP, UNSUBACK. */
static void test_acks(void **state)
{
    static const struct {
        gw_mqtt_type_t type;
        uint8_t bytes[4];
    } cases[] = {
        {GW_MQTT_PUBACK, {0x40, 0x02, 0x00, 0x01}},
        {GW_MQTT_PUBREC, {0x50, 0x02, 0x01, 0x00}},
        {GW_MQTT_PUBREL, {0x62, 0x02, 0x12, 0x34}},
        {GW_MQTT_PUBCOMP, {0x70, 0x02, 0xFF, 0xFF}},
        {GW_MQTT_UNSUBACK, {0xB0, 0x02, 0x00, 0x0B}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t id = (uint16_t)(cases[i].bytes[2] << 8 | cases[i].bytes[3]);
        gw_mqtt_packet_t p;
        tmq_valid_at(__FILE__, __LINE__, &ctx4, cases[i].bytes, 4, &p);
        assert_int_equal(p.type, cases[i].type);
        assert_int_equal(p.u.ack.packet_id, id);

        gw_mqtt_packet_t e = {.type = cases[i].type, .u.ack = {id}};
        tmq_encode_at(__FILE__, __LINE__, &ctx4, &e, cases[i].bytes, 4);
        uint8_t out[4];
        gw_mqtt_encode_ack(cases[i].type, id, out);
        assert_memory_equal(out, cases[i].bytes, 4);
    }
}

/* SUBSCRIBE from MQTT 3.8.3 example: "a/b" QoS 1, "c/d" QoS 2, id 10. */
static const uint8_t subscribe_ex[] = {0x82, 14, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01,
                                       0x00, 0x03, 'c', '/', 'd', 0x02};

static void test_subscribe(void **state)
{
    gw_mqtt_packet_t p;
    gw_mqtt_topics_iter_t it;
    gw_mqtt_str_t f;
    uint8_t qos = 9;

    TMQ_VALID(&ctx4, subscribe_ex, &p);
    assert_int_equal(p.type, GW_MQTT_SUBSCRIBE);
    assert_int_equal(p.u.subscribe.packet_id, 10);
    assert_int_equal(p.u.subscribe.topics.count, 2);
    assert_true(p.u.subscribe.topics.with_qos);
    gw_mqtt_topics_iter_init(&it, &p.u.subscribe.topics);
    assert_true(gw_mqtt_topics_next(&it, &f, &qos));
    tmq_assert_str(f, "a/b");
    assert_int_equal(qos, 1);
    assert_true(gw_mqtt_topics_next(&it, &f, &qos));
    tmq_assert_str(f, "c/d");
    assert_int_equal(qos, 2);
    assert_false(gw_mqtt_topics_next(&it, &f, &qos));

    /* Build the same packet from filters. */
    gw_mqtt_str_t filters[] = {tmq_str("a/b"), tmq_str("c/d")};
    uint8_t qoss[] = {1, 2};
    uint8_t tb[64];
    size_t w = 0;
    gw_mqtt_packet_t e = {.type = GW_MQTT_SUBSCRIBE};
    e.u.subscribe.packet_id = 10;
    assert_err(gw_mqtt_topics_build(filters, qoss, 2, tb, 5, &e.u.subscribe.topics, &w),
               GW_ERR_NOSPACE);
    assert_int_equal(w, 12);
    assert_err(gw_mqtt_topics_build(filters, qoss, 2, tb, sizeof(tb), &e.u.subscribe.topics, &w),
               GW_OK);
    assert_int_equal(w, 12);
    TMQ_ENCODES(&ctx4, &e, subscribe_ex);
}

/* UNSUBSCRIBE from MQTT 3.10.3 example: "a/b", "c/d", id 11. */
static const uint8_t unsubscribe_ex[] = {0xA2, 12, 0x00, 0x0B, 0x00, 0x03, 'a', '/', 'b',
                                         0x00, 0x03, 'c', '/', 'd'};

static void test_unsubscribe(void **state)
{
    gw_mqtt_packet_t p;
    gw_mqtt_topics_iter_t it;
    gw_mqtt_str_t f;
    uint8_t qos = 9;

    TMQ_VALID(&ctx4, unsubscribe_ex, &p);
    assert_int_equal(p.type, GW_MQTT_UNSUBSCRIBE);
    assert_int_equal(p.u.unsubscribe.packet_id, 11);
    assert_int_equal(p.u.unsubscribe.topics.count, 2);
    assert_false(p.u.unsubscribe.topics.with_qos);
    gw_mqtt_topics_iter_init(&it, &p.u.unsubscribe.topics);
    assert_true(gw_mqtt_topics_next(&it, &f, &qos));
    tmq_assert_str(f, "a/b");
    assert_int_equal(qos, 0);
    assert_true(gw_mqtt_topics_next(&it, &f, NULL));
    tmq_assert_str(f, "c/d");
    assert_false(gw_mqtt_topics_next(&it, &f, &qos));

    gw_mqtt_str_t filters[] = {tmq_str("a/b"), tmq_str("c/d")};
    uint8_t tb[64];
    size_t w = 0;
    gw_mqtt_packet_t e = {.type = GW_MQTT_UNSUBSCRIBE};
    e.u.unsubscribe.packet_id = 11;
    assert_err(gw_mqtt_topics_build(filters, NULL, 2, tb, sizeof(tb), &e.u.unsubscribe.topics,
                                    &w),
               GW_OK);
    TMQ_ENCODES(&ctx4, &e, unsubscribe_ex);
}

/* SUBACK from MQTT 3.9.3 example: 0, 0x80, 2 ... plus 1; id 10. */
static const uint8_t suback_ex[] = {0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80};

static void test_suback(void **state)
{
    gw_mqtt_packet_t p;
    TMQ_VALID(&ctx4, suback_ex, &p);
    assert_int_equal(p.type, GW_MQTT_SUBACK);
    assert_int_equal(p.u.suback.packet_id, 10);
    assert_int_equal(p.u.suback.count, 4);
    static const uint8_t codes[] = {0x00, 0x01, 0x02, 0x80};
    assert_memory_equal(p.u.suback.codes, codes, 4);

    gw_mqtt_packet_t e = {.type = GW_MQTT_SUBACK, .u.suback = {10, codes, 4}};
    TMQ_ENCODES(&ctx4, &e, suback_ex);
}

static void test_empty_packets(void **state)
{
    static const struct {
        gw_mqtt_type_t type;
        uint8_t bytes[2];
    } cases[] = {
        {GW_MQTT_PINGREQ, {0xC0, 0x00}},
        {GW_MQTT_PINGRESP, {0xD0, 0x00}},
        {GW_MQTT_DISCONNECT, {0xE0, 0x00}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gw_mqtt_packet_t p;
        tmq_valid_at(__FILE__, __LINE__, &ctx4, cases[i].bytes, 2, &p);
        assert_int_equal(p.type, cases[i].type);
        gw_mqtt_packet_t e = {.type = cases[i].type};
        tmq_encode_at(__FILE__, __LINE__, &ctx4, &e, cases[i].bytes, 2);
    }
}

/* Every sample back to back in one stream, fed in chunks: each packet
 * comes out in order and decodes to the one-shot result. */
static void test_stream_back_to_back(void **state)
{
    static const uint8_t pingreq[] = {0xC0, 0x00}, pubrel[] = {0x62, 0x02, 0x00, 0x07};
    static const uint8_t connack[] = {0x20, 0x02, 0x00, 0x00}, disconnect[] = {0xE0, 0x00};
    const struct {
        const uint8_t *b;
        size_t n;
    } parts[] = {
        {connect_full, sizeof(connect_full)},     {connect_min, sizeof(connect_min)},
        {publish_q0, sizeof(publish_q0)},         {publish_q1, sizeof(publish_q1)},
        {publish_q2, sizeof(publish_q2)},         {subscribe_ex, sizeof(subscribe_ex)},
        {unsubscribe_ex, sizeof(unsubscribe_ex)}, {suback_ex, sizeof(suback_ex)},
        {pingreq, 2},   {pubrel, 4},   {connack, 4},   {disconnect, 2},
    };
    enum { N = sizeof(parts) / sizeof(parts[0]) };
    gw_mqtt_packet_t pkts[N];
    gw_err_t errs[N];
    uint8_t stream[512];
    size_t n = 0;

    for (size_t i = 0; i < N; i++) {
        assert_true(n + parts[i].n <= sizeof(stream));
        memcpy(stream + n, parts[i].b, parts[i].n);
        n += parts[i].n;
        errs[i] = GW_OK;
        assert_err(tmq_decode_once(&ctx4, parts[i].b, parts[i].n, &pkts[i]), GW_OK);
    }
    for (size_t k = 1; k <= 8; k++)
        tmq_decode_chunked(&ctx4, stream, n, k, 1024, errs, pkts, N);
    /* All at once: every packet lies inside the chunk -> all zero-copy
     * (except the bodyless ones, which have nothing to point at). */
    size_t zc = tmq_decode_chunked(&ctx4, stream, n, 0, 1024, errs, pkts, N);
    assert_int_equal(zc, N - 2);
    /* One byte at a time: nothing can be zero-copy. */
    assert_int_equal(tmq_decode_chunked(&ctx4, stream, n, 1, 1024, errs, pkts, N), 0);
}

/* The encoder refuses what it must not put on the wire. */
static void test_encode_invalid(void **state)
{
    uint8_t buf[256];
    size_t w;
    gw_mqtt_packet_t e;
    static const uint8_t bad_code[] = {0x01, 0x03};
    static const uint8_t topics_ok[] = {0x00, 0x01, 'a', 0x01};
    static const uint8_t topics_qos3[] = {0x00, 0x01, 'a', 0x03};
    static const uint8_t topics_short[] = {0x00, 0x05, 'a', 0x01};

#define EXPECT_INVAL()                                                   \
    do {                                                                 \
        assert_int_equal(gw_mqtt_encoded_size(&ctx4, &e), 0);           \
        assert_err(gw_mqtt_encode(&ctx4, &e, buf, sizeof(buf), &w), GW_ERR_INVAL); \
    } while (0)

    e = (gw_mqtt_packet_t){.type = GW_MQTT_PUBLISH};
    e.u.publish = (gw_mqtt_publish_t){false, 3, false, tmq_str("t"), 1, {NULL, 0}};
    EXPECT_INVAL(); /* QoS 3 */
    e.u.publish.qos = 1;
    e.u.publish.packet_id = 0;
    EXPECT_INVAL(); /* packet id 0 */
    e.u.publish = (gw_mqtt_publish_t){false, 0, false, {"", 0}, 0, {NULL, 0}};
    EXPECT_INVAL(); /* empty topic */
    e.u.publish = (gw_mqtt_publish_t){true, 0, false, tmq_str("t"), 0, {NULL, 0}};
    EXPECT_INVAL(); /* DUP on QoS 0 at level 4 ... */
    assert_err(gw_mqtt_encode(&ctx3, &e, buf, sizeof(buf), &w), GW_OK); /* ... fine at 3 */
    e.u.publish = (gw_mqtt_publish_t){false, 0, false, tmq_str("t"), 0,
                                      {buf, GW_MQTT_MAX_REMAINING_LENGTH}};
    EXPECT_INVAL(); /* above the wire maximum */

    for (int t = GW_MQTT_PUBACK; t <= GW_MQTT_UNSUBACK; t++) {
        if (t == GW_MQTT_SUBSCRIBE || t == GW_MQTT_SUBACK || t == GW_MQTT_UNSUBSCRIBE)
            continue;
        e = (gw_mqtt_packet_t){.type = (gw_mqtt_type_t)t, .u.ack = {0}};
        EXPECT_INVAL(); /* packet id 0 */
    }

    e = (gw_mqtt_packet_t){.type = GW_MQTT_CONNACK, .u.connack = {false, 6}};
    EXPECT_INVAL();
    e.u.connack = (gw_mqtt_connack_t){true, 2};
    EXPECT_INVAL(); /* MQTT-3.2.2-4 */

    e = (gw_mqtt_packet_t){.type = GW_MQTT_SUBACK, .u.suback = {1, bad_code, 2}};
    EXPECT_INVAL();
    e.u.suback = (gw_mqtt_suback_t){1, bad_code, 0};
    EXPECT_INVAL(); /* empty */
    e.u.suback = (gw_mqtt_suback_t){0, bad_code, 1};
    EXPECT_INVAL(); /* packet id 0 */

    e = (gw_mqtt_packet_t){.type = GW_MQTT_SUBSCRIBE};
    e.u.subscribe = (gw_mqtt_subscribe_t){1, {NULL, 0, 0, true}};
    EXPECT_INVAL(); /* empty SUBSCRIBE */
    e.u.subscribe = (gw_mqtt_subscribe_t){0, {topics_ok, 4, 1, true}};
    EXPECT_INVAL(); /* packet id 0 */
    e.u.subscribe = (gw_mqtt_subscribe_t){1, {topics_ok, 4, 2, true}};
    EXPECT_INVAL(); /* count does not match */
    e.u.subscribe = (gw_mqtt_subscribe_t){1, {topics_qos3, 4, 1, true}};
    EXPECT_INVAL(); /* QoS 3 */
    e.u.subscribe = (gw_mqtt_subscribe_t){1, {topics_short, 4, 1, true}};
    EXPECT_INVAL(); /* entry runs past the payload */
    e.u.subscribe = (gw_mqtt_subscribe_t){1, {topics_ok, 4, 1, false}};
    EXPECT_INVAL(); /* an UNSUBSCRIBE list */
    e.u.subscribe = (gw_mqtt_subscribe_t){1, {topics_ok, 4, 1, true}};
    assert_err(gw_mqtt_encode(&ctx4, &e, buf, sizeof(buf), &w), GW_OK);

    e = (gw_mqtt_packet_t){.type = GW_MQTT_UNSUBSCRIBE};
    e.u.unsubscribe = (gw_mqtt_unsubscribe_t){1, {NULL, 0, 0, false}};
    EXPECT_INVAL(); /* empty UNSUBSCRIBE */
    e.u.unsubscribe = (gw_mqtt_unsubscribe_t){1, {topics_ok, 3, 1, false}};
    assert_err(gw_mqtt_encode(&ctx4, &e, buf, sizeof(buf), &w), GW_OK);

    e = (gw_mqtt_packet_t){.type = GW_MQTT_CONNECT};
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 5};
    EXPECT_INVAL();
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 4, .will_qos = 1};
    EXPECT_INVAL(); /* will QoS without will */
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 4, .will_retain = true};
    EXPECT_INVAL(); /* will retain without will */
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 4, .will_flag = true, .will_qos = 3,
                                      .will_topic = tmq_str("t")};
    EXPECT_INVAL(); /* will QoS 3 */
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 4, .will_flag = true};
    EXPECT_INVAL(); /* will without topic */
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 3, .has_password = true};
    EXPECT_INVAL(); /* password without user name */
    e.u.connect = (gw_mqtt_connect_t){.protocol_level = 4, .has_username = true,
                                      .has_password = true, .password = {buf, 70000}};
    EXPECT_INVAL(); /* password longer than a 2-byte length */

    e = (gw_mqtt_packet_t){.type = (gw_mqtt_type_t)15};
    EXPECT_INVAL();
    e = (gw_mqtt_packet_t){.type = (gw_mqtt_type_t)0};
    EXPECT_INVAL();
#undef EXPECT_INVAL
}

static void test_topics_build_invalid(void **state)
{
    gw_mqtt_str_t filters[] = {tmq_str("a"), {"", 0}};
    uint8_t qos[] = {3, 0};
    uint8_t buf[32];
    gw_mqtt_topics_t t;
    size_t w;

    assert_err(gw_mqtt_topics_build(filters, NULL, 0, buf, sizeof(buf), &t, &w), GW_ERR_INVAL);
    assert_err(gw_mqtt_topics_build(filters, qos, 1, buf, sizeof(buf), &t, &w), GW_ERR_INVAL);
    assert_err(gw_mqtt_topics_build(filters, NULL, 2, buf, sizeof(buf), &t, &w), GW_ERR_INVAL);
    assert_err(gw_mqtt_topics_build(filters, NULL, 1, buf, sizeof(buf), &t, &w), GW_OK);
    assert_int_equal(w, 3);
    assert_int_equal(t.count, 1);
    assert_false(t.with_qos);
}

static void test_type_names(void **state)
{
    assert_string_equal(gw_mqtt_type_name(GW_MQTT_CONNECT), "CONNECT");
    assert_string_equal(gw_mqtt_type_name(GW_MQTT_PUBREL), "PUBREL");
    assert_string_equal(gw_mqtt_type_name(GW_MQTT_UNSUBACK), "UNSUBACK");
    assert_string_equal(gw_mqtt_type_name(GW_MQTT_DISCONNECT), "DISCONNECT");
    assert_string_equal(gw_mqtt_type_name((gw_mqtt_type_t)0), "RESERVED");
    assert_string_equal(gw_mqtt_type_name((gw_mqtt_type_t)15), "RESERVED");
    assert_string_equal(gw_mqtt_type_name((gw_mqtt_type_t)99), "RESERVED");
    for (int t = 1; t <= 14; t++)
        assert_string_not_equal(gw_mqtt_type_name((gw_mqtt_type_t)t), "RESERVED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_full),
        cmocka_unit_test(test_connect_minimal),
        cmocka_unit_test(test_connect_v31),
        cmocka_unit_test(test_connect_empty_will_message),
        cmocka_unit_test(test_connack),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_publish_lengths),
        cmocka_unit_test(test_publish_header_helper),
        cmocka_unit_test(test_acks),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_suback),
        cmocka_unit_test(test_empty_packets),
        cmocka_unit_test(test_stream_back_to_back),
        cmocka_unit_test(test_encode_invalid),
        cmocka_unit_test(test_topics_build_invalid),
        cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
