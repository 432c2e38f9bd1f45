/*
 * test_mqtt_framer.c - MQTT fixed header framing (MQTT 2.2): remaining
 * length limits checked before allocation, resumption at every byte
 * boundary, zero-copy versus buffered frames.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_mqtt_util.h"

/* Three packets back to back: PUBLISH QoS 1, PINGREQ, SUBSCRIBE. */
static const uint8_t stream3[] = {
    0x32, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01, 'x', 'y', 'z',
    0xC0, 0x00,
    0x82, 0x06, 0x00, 0x02, 0x00, 0x01, '#', 0x01,
};
static const struct {
    uint8_t header;
    size_t off, len; /* body within stream3 */
} stream3_frames[] = {{0x32, 2, 10}, {0xC0, 14, 0}, {0x82, 16, 6}};

/* Feed data as the given list of chunk lengths; check the frames. */
static void feed_split(const size_t *cuts, size_t ncuts)
{
    gw_mqtt_framer_t fr;
    size_t off = 0, got = 0;

    gw_mqtt_framer_init(&fr, 64);
    for (size_t c = 0; c < ncuts; c++) {
        size_t len = cuts[c];
        uint8_t *chunk = malloc(len ? len : 1);
        size_t pos = 0;
        assert_non_null(chunk);
        memcpy(chunk, stream3 + off, len);
        for (;;) {
            size_t used = 99;
            gw_mqtt_frame_t f;
            gw_err_t err = gw_mqtt_framer_feed(&fr, chunk + pos, len - pos, &used, &f);
            pos += used;
            if (err == GW_ERR_AGAIN) {
                assert_int_equal(pos, len);
                break;
            }
            assert_err(err, GW_OK);
            assert_true(got < 3);
            assert_int_equal(f.header, stream3_frames[got].header);
            assert_int_equal(f.body_len, stream3_frames[got].len);
            if (f.body_len)
                assert_memory_equal(f.body, stream3 + stream3_frames[got].off, f.body_len);
            else
                assert_null(f.body);
            got++;
        }
        free(chunk);
        off += len;
    }
    assert_int_equal(off, sizeof(stream3));
    assert_int_equal(got, 3);
    assert_false(fr.have != 0 && !fr.frame_ready);
    gw_mqtt_framer_cleanup(&fr);
}

static void test_resume_every_boundary(void **state)
{
    const size_t n = sizeof(stream3);
    /* two chunks, cut at every position (including empty chunks) */
    for (size_t i = 0; i <= n; i++) {
        size_t cuts[2] = {i, n - i};
        feed_split(cuts, 2);
    }
    /* three chunks, every pair of positions */
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            size_t cuts[3] = {i, j - i, n - j};
            feed_split(cuts, 3);
        }
    }
    /* fixed chunk sizes 1..n */
    for (size_t k = 1; k <= n; k++) {
        size_t cuts[32], nc = 0;
        for (size_t off = 0; off < n; off += k)
            cuts[nc++] = n - off < k ? n - off : k;
        feed_split(cuts, nc);
    }
}

static void test_zero_copy_vs_buffered(void **state)
{
    static const uint8_t pkt[] = {0x30, 0x06, 0x00, 0x01, 't', 'a', 'b', 'c'};
    gw_mqtt_framer_t fr;
    gw_mqtt_frame_t zc, bf;
    size_t used;
    uint8_t *copy = malloc(sizeof(pkt));
    assert_non_null(copy);
    memcpy(copy, pkt, sizeof(pkt));

    /* whole packet in one chunk: the frame points into the chunk */
    gw_mqtt_framer_init(&fr, 1024);
    assert_err(gw_mqtt_framer_feed(&fr, copy, sizeof(pkt), &used, &zc), GW_OK);
    assert_int_equal(used, sizeof(pkt));
    assert_ptr_equal(zc.body, copy + 2);
    assert_null(fr.buf);

    /* header in one chunk, body in the next: still zero-copy */
    assert_err(gw_mqtt_framer_feed(&fr, copy, 2, &used, &bf), GW_ERR_AGAIN);
    assert_int_equal(used, 2);
    assert_err(gw_mqtt_framer_feed(&fr, copy + 2, 6, &used, &bf), GW_OK);
    assert_ptr_equal(bf.body, copy + 2);
    assert_null(fr.buf);

    /* body split: buffered into one exact-size buffer owned by the framer */
    assert_err(gw_mqtt_framer_feed(&fr, copy, 5, &used, &bf), GW_ERR_AGAIN);
    assert_int_equal(used, 5);
    assert_non_null(fr.buf);
    assert_err(gw_mqtt_framer_feed(&fr, copy + 5, 3, &used, &bf), GW_OK);
    assert_int_equal(used, 3);
    assert_ptr_equal(bf.body, fr.buf);
    /* the buffered frame stays valid after the caller's bytes are gone */
    memset(copy, 0xEE, sizeof(pkt));
    free(copy);
    assert_int_equal(bf.header, zc.header);
    assert_int_equal(bf.body_len, zc.body_len);
    assert_memory_equal(bf.body, pkt + 2, bf.body_len);

    /* and both decode to the same packet */
    gw_mqtt_packet_t a, b;
    gw_mqtt_frame_t orig = {pkt[0], pkt + 2, 6};
    assert_err(gw_mqtt_decode(NULL, &orig, &a), GW_OK);
    assert_err(gw_mqtt_decode(NULL, &bf, &b), GW_OK);
    assert_true(gw_mqtt__packet_equal(&a, &b));
    gw_mqtt_framer_cleanup(&fr);
    assert_null(fr.buf);
}

static void test_one_packet_per_call(void **state)
{
    gw_mqtt_framer_t fr;
    gw_mqtt_frame_t f;
    size_t used, off = 0;
    int frames = 0;

    gw_mqtt_framer_init(&fr, 1024);
    while (off < sizeof(stream3)) {
        gw_err_t err = gw_mqtt_framer_feed(&fr, stream3 + off, sizeof(stream3) - off, &used, &f);
        assert_err(err, GW_OK);
        assert_int_equal(used, stream3_frames[frames].off + stream3_frames[frames].len - off);
        off += used;
        frames++;
    }
    assert_int_equal(frames, 3);
    assert_err(gw_mqtt_framer_feed(&fr, stream3, 0, &used, &f), GW_ERR_AGAIN);
    assert_int_equal(used, 0);
    gw_mqtt_framer_cleanup(&fr);
}

/* MQTT 2.2.3: at most 4 length bytes. The error comes with the 4th byte
 * that still has its continuation bit: nothing more is needed. */
static void test_remaining_length_5_bytes(void **state)
{
    static const uint8_t big[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    static const uint8_t zero5[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x00};
    const uint8_t *cases[] = {big, zero5};

    for (size_t c = 0; c < 2; c++) {
        uint8_t h;
        size_t hl;
        uint32_t rem;
        assert_err(gw_mqtt_frame_header(cases[c], 6, GW_MQTT_MAX_REMAINING_LENGTH, &h, &hl, &rem),
                   GW_ERR_MQTT_REMAINING_LENGTH);
        assert_err(gw_mqtt_frame_header(cases[c], 5, GW_MQTT_MAX_REMAINING_LENGTH, &h, &hl, &rem),
                   GW_ERR_MQTT_REMAINING_LENGTH);
        assert_err(gw_mqtt_frame_header(cases[c], 4, GW_MQTT_MAX_REMAINING_LENGTH, &h, &hl, &rem),
                   GW_ERR_AGAIN);
        for (size_t k = 1; k <= 6; k++) {
            gw_mqtt_framer_t fr;
            gw_mqtt_frame_t f;
            size_t off = 0, used;
            gw_err_t err = GW_ERR_AGAIN;
            gw_mqtt_framer_init(&fr, GW_MQTT_MAX_REMAINING_LENGTH);
            while (err == GW_ERR_AGAIN && off < 6) {
                size_t len = 6 - off < k ? 6 - off : k;
                err = gw_mqtt_framer_feed(&fr, cases[c] + off, len, &used, &f);
                off += used;
            }
            assert_err(err, GW_ERR_MQTT_REMAINING_LENGTH);
            assert_int_equal(off, 5);
            assert_null(fr.buf);
            /* the stream is dead from now on */
            assert_err(gw_mqtt_framer_feed(&fr, stream3, sizeof(stream3), &used, &f), GW_ERR_STATE);
            assert_int_equal(used, 0);
            gw_mqtt_framer_cleanup(&fr);
        }
    }
}

/* The largest 4-byte length is accepted by the header parser. */
static void test_remaining_length_max(void **state)
{
    static const uint8_t max[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
    uint8_t h;
    size_t hl;
    uint32_t rem;
    assert_err(gw_mqtt_frame_header(max, 5, GW_MQTT_MAX_REMAINING_LENGTH, &h, &hl, &rem), GW_OK);
    assert_int_equal(hl, 5);
    assert_int_equal(rem, GW_MQTT_MAX_REMAINING_LENGTH);
    assert_int_equal(h, 0x30);

    gw_mqtt_framer_t fr;
    gw_mqtt_framer_init(&fr, 0xFFFFFFFFu);
    assert_int_equal(fr.max_packet, GW_MQTT_MAX_REMAINING_LENGTH);
    gw_mqtt_framer_cleanup(&fr);
}

/* A declared length above max_packet is refused from the header bytes
 * alone: no body byte is read and no buffer allocated. */
static void test_too_large_before_allocation(void **state)
{
    static const uint8_t huge[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F}; /* 256 MiB */
    uint8_t h;
    size_t hl;
    uint32_t rem;

    for (size_t k = 1; k <= 5; k++) {
        gw_mqtt_framer_t fr;
        gw_mqtt_frame_t f;
        size_t off = 0, used;
        gw_err_t err = GW_ERR_AGAIN;
        gw_mqtt_framer_init(&fr, 1024);
        while (err == GW_ERR_AGAIN && off < sizeof(huge)) {
            size_t len = sizeof(huge) - off < k ? sizeof(huge) - off : k;
            err = gw_mqtt_framer_feed(&fr, huge + off, len, &used, &f);
            off += used;
            assert_null(fr.buf);
        }
        assert_err(err, GW_ERR_MQTT_TOO_LARGE);
        /* 127 + 127*128 > 1024: decided on the second length byte */
        assert_int_equal(off, 3);
        assert_null(fr.buf);
        gw_mqtt_framer_cleanup(&fr);
    }
    assert_err(gw_mqtt_frame_header(huge, 3, 1024, &h, &hl, &rem), GW_ERR_MQTT_TOO_LARGE);

    /* exactly the maximum passes, one more does not (200 = 0xC8 0x01) */
    static const uint8_t at_max[] = {0x30, 0xC8, 0x01};
    static const uint8_t above[] = {0x30, 0xC9, 0x01};
    assert_err(gw_mqtt_frame_header(at_max, 3, 200, &h, &hl, &rem), GW_OK);
    assert_int_equal(rem, 200);
    assert_err(gw_mqtt_frame_header(above, 3, 200, &h, &hl, &rem), GW_ERR_MQTT_TOO_LARGE);
    gw_mqtt_framer_t fr;
    gw_mqtt_frame_t f;
    size_t used;
    gw_mqtt_framer_init(&fr, 200);
    assert_err(gw_mqtt_framer_feed(&fr, above, 3, &used, &f), GW_ERR_MQTT_TOO_LARGE);
    assert_null(fr.buf);
    gw_mqtt_framer_cleanup(&fr);
    gw_mqtt_framer_init(&fr, 200);
    assert_err(gw_mqtt_framer_feed(&fr, at_max, 3, &used, &f), GW_ERR_AGAIN);
    assert_null(fr.buf); /* no body byte yet: nothing allocated */
    assert_err(gw_mqtt_framer_feed(&fr, at_max, 1, &used, &f), GW_ERR_AGAIN);
    assert_non_null(fr.buf); /* the exact-size body buffer */
    gw_mqtt_framer_cleanup(&fr); /* frees it: ASan would report a leak */
    assert_null(fr.buf);

    /* max 0: only empty packets */
    gw_mqtt_framer_init(&fr, 0);
    assert_err(gw_mqtt_framer_feed(&fr, (const uint8_t[]){0xC0, 0x00}, 2, &used, &f), GW_OK);
    assert_err(gw_mqtt_framer_feed(&fr, (const uint8_t[]){0x40, 0x02}, 2, &used, &f),
               GW_ERR_MQTT_TOO_LARGE);
    gw_mqtt_framer_cleanup(&fr);
}

static void test_bad_type(void **state)
{
    for (int t = 0; t < 16; t += 15) {
        for (int flags = 0; flags < 16; flags++) {
            uint8_t b[2] = {(uint8_t)(t << 4 | flags), 0};
            uint8_t h;
            size_t hl;
            uint32_t rem;
            gw_mqtt_framer_t fr;
            gw_mqtt_frame_t f;
            size_t used;
            assert_err(gw_mqtt_frame_header(b, 2, 100, &h, &hl, &rem), GW_ERR_MQTT_BAD_TYPE);
            assert_err(gw_mqtt_frame_header(b, 1, 100, &h, &hl, &rem), GW_ERR_MQTT_BAD_TYPE);
            gw_mqtt_framer_init(&fr, 100);
            assert_err(gw_mqtt_framer_feed(&fr, b, 2, &used, &f), GW_ERR_MQTT_BAD_TYPE);
            assert_int_equal(used, 1);
            gw_mqtt_framer_cleanup(&fr);
        }
    }
    /* a bad type after a good packet: the good one comes out first */
    static const uint8_t s[] = {0xC0, 0x00, 0xF0, 0x00};
    gw_mqtt_framer_t fr;
    gw_mqtt_frame_t f;
    size_t used;
    gw_mqtt_framer_init(&fr, 100);
    assert_err(gw_mqtt_framer_feed(&fr, s, 4, &used, &f), GW_OK);
    assert_int_equal(used, 2);
    assert_err(gw_mqtt_framer_feed(&fr, s + 2, 2, &used, &f), GW_ERR_MQTT_BAD_TYPE);
    gw_mqtt_framer_cleanup(&fr);
}

/* MQTT 3.1.1 does not require the minimal length encoding. */
static void test_non_minimal_length(void **state)
{
    static const uint8_t ping[] = {0xC0, 0x80, 0x80, 0x00};
    static const uint8_t puback[] = {0x40, 0x82, 0x00, 0x00, 0x07};
    uint8_t h;
    size_t hl;
    uint32_t rem;

    assert_err(gw_mqtt_frame_header(ping, sizeof(ping), 10, &h, &hl, &rem), GW_OK);
    assert_int_equal(hl, 4);
    assert_int_equal(rem, 0);
    gw_mqtt_packet_t p;
    tmq_expect_at(__FILE__, __LINE__, NULL, ping, sizeof(ping), GW_OK, &p);
    assert_int_equal(p.type, GW_MQTT_PINGREQ);
    tmq_expect_at(__FILE__, __LINE__, NULL, puback, sizeof(puback), GW_OK, &p);
    assert_int_equal(p.type, GW_MQTT_PUBACK);
    assert_int_equal(p.u.ack.packet_id, 7);
}

static void test_frame_header_again(void **state)
{
    static const uint8_t b[] = {0x30, 0x80, 0x01};
    uint8_t h = 0;
    size_t hl = 0;
    uint32_t rem = 0;
    assert_err(gw_mqtt_frame_header(b, 0, 1000, &h, &hl, &rem), GW_ERR_AGAIN);
    assert_err(gw_mqtt_frame_header(b, 1, 1000, &h, &hl, &rem), GW_ERR_AGAIN);
    assert_err(gw_mqtt_frame_header(b, 2, 1000, &h, &hl, &rem), GW_ERR_AGAIN);
    assert_err(gw_mqtt_frame_header(b, 3, 1000, &h, &hl, &rem), GW_OK);
    assert_int_equal(hl, 3);
    assert_int_equal(rem, 128);
}

/* Cleanup in the middle of a buffered body frees it (ASan leak check),
 * and the framer can be initialised again. */
static void test_cleanup_mid_packet(void **state)
{
    gw_mqtt_framer_t fr;
    gw_mqtt_frame_t f;
    size_t used;
    gw_mqtt_framer_init(&fr, 1024);
    assert_err(gw_mqtt_framer_feed(&fr, stream3, 5, &used, &f), GW_ERR_AGAIN);
    assert_non_null(fr.buf);
    gw_mqtt_framer_cleanup(&fr);
    gw_mqtt_framer_init(&fr, 1024);
    assert_err(gw_mqtt_framer_feed(&fr, stream3, sizeof(stream3), &used, &f), GW_OK);
    assert_int_equal(f.header, 0x32);
    gw_mqtt_framer_cleanup(&fr);
    /* a buffered frame handed out and never followed by another feed is
     * released by cleanup too */
    gw_mqtt_framer_init(&fr, 1024);
    assert_err(gw_mqtt_framer_feed(&fr, stream3, 4, &used, &f), GW_ERR_AGAIN);
    assert_err(gw_mqtt_framer_feed(&fr, stream3 + 4, 8, &used, &f), GW_OK);
    assert_true(fr.frame_ready);
    gw_mqtt_framer_cleanup(&fr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_every_boundary),
        cmocka_unit_test(test_zero_copy_vs_buffered),
        cmocka_unit_test(test_one_packet_per_call),
        cmocka_unit_test(test_remaining_length_5_bytes),
        cmocka_unit_test(test_remaining_length_max),
        cmocka_unit_test(test_too_large_before_allocation),
        cmocka_unit_test(test_bad_type),
        cmocka_unit_test(test_non_minimal_length),
        cmocka_unit_test(test_frame_header_again),
        cmocka_unit_test(test_cleanup_mid_packet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
