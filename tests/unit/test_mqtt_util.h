/*
 * test_mqtt_util.h - shared helpers of the MQTT codec unit tests.
 *
 * Every decode is checked twice: one-shot (gw_mqtt_frame_header + decode on
 * the caller's bytes) and through the framer with the input cut into chunks
 * of 1, 2, 3, 5, 7 bytes and in one piece. Each chunk is copied into its own
 * exact-size heap block so that AddressSanitizer catches any read past the
 * chunk given to gw_mqtt_framer_feed(). The results must be identical.
 *
 * Include after <cmocka.h>.
 */
#ifndef GW_TEST_MQTT_UTIL_H
#define GW_TEST_MQTT_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/error.h"
#include "gw/mqtt.h"
#include "mqtt/mqtt-internal.h"

static const size_t tmq_chunk_sizes[] = {1, 2, 3, 5, 7, 0 /* 0 = all at once */};

#define assert_err(actual, expected)                                                    \
    do {                                                                                \
        gw_err_t a_ = (actual), e_ = (expected);                                        \
        if (a_ != e_)                                                                   \
            fail_msg("%s:%d: got %s, expected %s", __FILE__, __LINE__, gw_err_name(a_), \
                     gw_err_name(e_));                                                  \
    } while (0)

/* One-shot decode of exactly one packet held in b[0..n). */
static inline gw_err_t tmq_decode_once(const gw_mqtt_ctx_t *ctx, const uint8_t *b, size_t n,
                                       gw_mqtt_packet_t *pkt)
{
    uint8_t h;
    size_t hl;
    uint32_t rem;
    gw_err_t err = gw_mqtt_frame_header(b, n, GW_MQTT_MAX_REMAINING_LENGTH, &h, &hl, &rem);
    if (err != GW_OK)
        return err;
    if (hl + rem != n)
        fail_msg("test input is %zu bytes but declares %zu", n, hl + (size_t)rem);
    gw_mqtt_frame_t fr = {h, rem ? b + hl : NULL, rem};
    return gw_mqtt_decode(ctx, &fr, pkt);
}

/*
 * Feed b[0..n) through a framer (max_packet) in chunks of k bytes (0 = all
 * at once), decoding each frame as soon as it comes out. The i-th packet
 * must give errs[i] and, when GW_OK, a packet equal to pkts[i]. A framing
 * error counts as the result of the packet it occurred in and ends the
 * stream. Returns how many times the zero-copy path was taken.
 */
static inline size_t tmq_decode_chunked(const gw_mqtt_ctx_t *ctx, const uint8_t *b, size_t n,
                                        size_t k, uint32_t max_packet, const gw_err_t *errs,
                                        const gw_mqtt_packet_t *pkts, size_t npk)
{
    gw_mqtt_framer_t fr;
    size_t off = 0, got = 0, zero_copy = 0;
    bool stop = false;

    if (k == 0)
        k = n ? n : 1;
    gw_mqtt_framer_init(&fr, max_packet);
    while (off < n && !stop) {
        size_t len = n - off < k ? n - off : k;
        uint8_t *chunk = malloc(len);
        size_t pos = 0;
        assert_non_null(chunk);
        memcpy(chunk, b + off, len);
        while (pos < len) {
            size_t used = 0;
            gw_mqtt_frame_t f;
            gw_err_t err = gw_mqtt_framer_feed(&fr, chunk + pos, len - pos, &used, &f);
            assert_true(used <= len - pos);
            pos += used;
            if (err == GW_ERR_AGAIN) {
                assert_int_equal(pos, len);
                break;
            }
            if (got >= npk)
                fail_msg("chunk %zu: more packets than expected (%zu)", k, npk);
            if (err != GW_OK) {
                if (err != errs[got])
                    fail_msg("chunk %zu packet %zu: framer %s, expected %s", k, got,
                             gw_err_name(err), gw_err_name(errs[got]));
                got++;
                stop = true;
                break;
            }
            if (f.body_len && f.body >= chunk && f.body < chunk + len)
                zero_copy++;
            gw_mqtt_packet_t p;
            gw_err_t derr = gw_mqtt_decode(ctx, &f, &p);
            if (derr != errs[got])
                fail_msg("chunk %zu packet %zu: decode %s, expected %s", k, got,
                         gw_err_name(derr), gw_err_name(errs[got]));
            if (derr == GW_OK && !gw_mqtt__packet_equal(&p, &pkts[got]))
                fail_msg("chunk %zu packet %zu: fields differ from the one-shot decode", k, got);
            got++;
        }
        free(chunk);
        off += len;
    }
    gw_mqtt_framer_cleanup(&fr);
    if (got != npk)
        fail_msg("chunk %zu: %zu packets, expected %zu", k, got, npk);
    return zero_copy;
}

/* Decode b[0..n) one-shot and in every chunking; all must give err. */
static inline void tmq_expect_at(const char *file, int line, const gw_mqtt_ctx_t *ctx,
                                 const uint8_t *b, size_t n, gw_err_t err, gw_mqtt_packet_t *out)
{
    gw_mqtt_packet_t p;
    gw_err_t got = tmq_decode_once(ctx, b, n, &p);
    if (got != err)
        fail_msg("%s:%d: one-shot decode %s, expected %s", file, line, gw_err_name(got),
                 gw_err_name(err));
    for (size_t i = 0; i < sizeof(tmq_chunk_sizes) / sizeof(tmq_chunk_sizes[0]); i++)
        tmq_decode_chunked(ctx, b, n, tmq_chunk_sizes[i], GW_MQTT_MAX_REMAINING_LENGTH, &err, &p,
                           1);
    if (out)
        *out = p;
}

/* A valid packet: decodes (every way) and re-encodes to the same bytes. */
static inline void tmq_valid_at(const char *file, int line, const gw_mqtt_ctx_t *ctx,
                                const uint8_t *b, size_t n, gw_mqtt_packet_t *out)
{
    gw_mqtt_packet_t p;
    uint8_t *enc = malloc(n);
    size_t written = 0;
    gw_err_t err;

    assert_non_null(enc);
    tmq_expect_at(file, line, ctx, b, n, GW_OK, &p);
    if (gw_mqtt_encoded_size(ctx, &p) != n)
        fail_msg("%s:%d: encoded size %zu, expected %zu", file, line,
                 gw_mqtt_encoded_size(ctx, &p), n);
    err = gw_mqtt_encode(ctx, &p, enc, n, &written);
    if (err != GW_OK)
        fail_msg("%s:%d: re-encode %s", file, line, gw_err_name(err));
    assert_int_equal(written, n);
    assert_memory_equal(enc, b, n);
    free(enc);
    if (out)
        *out = p;
}

#define TMQ_EXPECT(ctx, arr, err) tmq_expect_at(__FILE__, __LINE__, (ctx), (arr), sizeof(arr), (err), NULL)
#define TMQ_VALID(ctx, arr, out) tmq_valid_at(__FILE__, __LINE__, (ctx), (arr), sizeof(arr), (out))

/* Encode pkt and compare with the expected bytes; also the NOSPACE path. */
static inline void tmq_encode_at(const char *file, int line, const gw_mqtt_ctx_t *ctx,
                                 const gw_mqtt_packet_t *pkt, const uint8_t *b, size_t n)
{
    uint8_t *buf = malloc(n + 1);
    size_t written = 12345;
    gw_err_t err;

    assert_non_null(buf);
    if (gw_mqtt_encoded_size(ctx, pkt) != n)
        fail_msg("%s:%d: encoded size %zu, expected %zu", file, line,
                 gw_mqtt_encoded_size(ctx, pkt), n);
    err = gw_mqtt_encode(ctx, pkt, buf, n - 1, &written);
    if (err != GW_ERR_NOSPACE || written != n)
        fail_msg("%s:%d: short buffer gave %s written=%zu", file, line, gw_err_name(err), written);
    err = gw_mqtt_encode(ctx, pkt, buf, n + 1, &written);
    if (err != GW_OK)
        fail_msg("%s:%d: encode %s", file, line, gw_err_name(err));
    assert_int_equal(written, n);
    assert_memory_equal(buf, b, n);
    free(buf);
}

#define TMQ_ENCODES(ctx, pkt, arr) tmq_encode_at(__FILE__, __LINE__, (ctx), (pkt), (arr), sizeof(arr))

static inline gw_mqtt_str_t tmq_str(const char *s)
{
    gw_mqtt_str_t r = {s, (uint16_t)strlen(s)};
    return r;
}

static inline void tmq_assert_str(gw_mqtt_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    if (s.len)
        assert_memory_equal(s.ptr, want, s.len);
}

static inline void tmq_assert_bin(gw_mqtt_bin_t b, const char *want)
{
    assert_int_equal(b.len, strlen(want));
    if (b.len)
        assert_memory_equal(b.ptr, want, b.len);
}

#endif
