/*
 * fuzz_mqtt.c - libFuzzer target for the MQTT codec.
 *
 * The input is an MQTT byte stream. For protocol levels 3 and 4:
 *  1. it is framed in one piece (every frame zero-copy into the input) with
 *     a small max packet size, and every frame is decoded;
 *  2. every packet that decoded is re-encoded (must succeed, with
 *     gw_mqtt_encoded_size() == bytes written) and the encoding decoded
 *     again: fields must be equal;
 *  3. the same stream is framed again in chunks of a size taken from the
 *     input (buffered path); every frame must decode to the same result.
 * Any mismatch calls abort(). The first two length-prefixed strings are
 * also fed to the topic functions and gw_topic_matches() is compared with
 * a simple reference matcher.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/mqtt.h"
#include "mqtt/mqtt-internal.h"

#define FUZZ_MAX_PACKET 4096u

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_mqtt: check failed at %s:%d: %s\n", __FILE__, \
                    __LINE__, #cond);                                           \
            abort();                                                            \
        }                                                                       \
    } while (0)

typedef struct fuzz_result {
    gw_err_t err;
    gw_mqtt_packet_t pkt;
} fuzz_result_t;

static void fuzz_roundtrip(const gw_mqtt_ctx_t *ctx, const gw_mqtt_packet_t *pkt)
{
    size_t need = gw_mqtt_encoded_size(ctx, pkt);
    size_t written = 0;
    uint8_t *buf;
    gw_err_t err;

    CHECK(need >= 2);
    buf = malloc(need);
    CHECK(buf != NULL);
    if (need > 2) {
        err = gw_mqtt_encode(ctx, pkt, buf, need - 1, &written);
        CHECK(err == GW_ERR_NOSPACE && written == need);
    }
    err = gw_mqtt_encode(ctx, pkt, buf, need, &written);
    CHECK(err == GW_OK);
    CHECK(written == need);

    uint8_t h;
    size_t hl;
    uint32_t rem;
    err = gw_mqtt_frame_header(buf, written, GW_MQTT_MAX_REMAINING_LENGTH, &h, &hl, &rem);
    CHECK(err == GW_OK);
    CHECK(hl + rem == written);
    gw_mqtt_frame_t f = {h, rem ? buf + hl : NULL, rem};
    gw_mqtt_packet_t again;
    err = gw_mqtt_decode(ctx, &f, &again);
    CHECK(err == GW_OK);
    CHECK(gw_mqtt__packet_equal(pkt, &again));
    free(buf);
}

static void fuzz_stream(uint8_t level, const uint8_t *data, size_t size, size_t chunk)
{
    gw_mqtt_ctx_t ctx = {level, 0, 0};
    gw_mqtt_framer_t fr;
    fuzz_result_t *res;
    size_t nres = 0, cap = size / 2 + 1, off = 0, used;
    gw_err_t stream_err = GW_ERR_AGAIN;

    /* A few inputs also run with topic limits. */
    if (size > 0 && (data[0] & 0x80)) {
        ctx.max_topic_len = (uint16_t)(data[0] & 0x1f) + 1;
        ctx.max_topic_levels = (uint16_t)((data[0] >> 5) & 0x3) + 1;
    }
    res = calloc(cap, sizeof(*res));
    CHECK(res != NULL);

    /* 1 + 2: one piece, zero-copy, decode and round trip */
    gw_mqtt_framer_init(&fr, FUZZ_MAX_PACKET);
    while (off < size) {
        gw_mqtt_frame_t f;
        gw_err_t err = gw_mqtt_framer_feed(&fr, data + off, size - off, &used, &f);
        CHECK(used <= size - off);
        off += used;
        if (err != GW_OK) {
            stream_err = err;
            break;
        }
        CHECK(nres < cap);
        CHECK(f.body_len == 0 || (f.body >= data && f.body + f.body_len <= data + size));
        res[nres].err = gw_mqtt_decode(&ctx, &f, &res[nres].pkt);
        if (res[nres].err == GW_OK)
            fuzz_roundtrip(&ctx, &res[nres].pkt);
        else
            CHECK(gw_err_is_mqtt_violation(res[nres].err));
        nres++;
    }
    if (stream_err == GW_ERR_AGAIN)
        CHECK(off == size);
    gw_mqtt_framer_cleanup(&fr);

    /* 3: chunked, buffered path: same results in the same order */
    size_t got = 0;
    gw_err_t stream_err2 = GW_ERR_AGAIN;
    gw_mqtt_framer_init(&fr, FUZZ_MAX_PACKET);
    off = 0;
    while (off < size && stream_err2 == GW_ERR_AGAIN) {
        size_t len = size - off < chunk ? size - off : chunk;
        size_t pos = 0;
        while (pos < len) {
            gw_mqtt_frame_t f;
            gw_err_t err = gw_mqtt_framer_feed(&fr, data + off + pos, len - pos, &used, &f);
            pos += used;
            if (err == GW_ERR_AGAIN) {
                CHECK(pos == len);
                break;
            }
            if (err != GW_OK) {
                stream_err2 = err;
                break;
            }
            CHECK(got < nres);
            gw_mqtt_packet_t p;
            gw_err_t derr = gw_mqtt_decode(&ctx, &f, &p);
            CHECK(derr == res[got].err);
            if (derr == GW_OK)
                CHECK(gw_mqtt__packet_equal(&p, &res[got].pkt));
            got++;
        }
        off += len;
    }
    CHECK(got == nres);
    CHECK(stream_err2 == stream_err);
    gw_mqtt_framer_cleanup(&fr);
    free(res);
}

/* Reference matcher: split both into levels and compare level by level. */
static bool ref_matches(const char *f, size_t fl, const char *t, size_t tl)
{
    size_t fi = 0, ti = 0;
    if (tl > 0 && t[0] == '$' && fl > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    for (;;) {
        size_t fe = fi, te = ti;
        while (fe < fl && f[fe] != '/')
            fe++;
        while (te < tl && t[te] != '/')
            te++;
        bool f_last = fe == fl, t_last = te == tl;
        if (fe - fi == 1 && f[fi] == '#')
            return true;
        if (!(fe - fi == 1 && f[fi] == '+') &&
            (fe - fi != te - ti || memcmp(f + fi, t + ti, fe - fi) != 0))
            return false;
        if (f_last && t_last)
            return true;
        if (f_last)
            return false;
        if (t_last) /* "x/#" matches "x" */
            return fl - (fe + 1) == 1 && f[fe + 1] == '#';
        fi = fe + 1;
        ti = te + 1;
    }
}

static void fuzz_topics(const uint8_t *data, size_t size)
{
    gw_mqtt_reader_t r;
    gw_mqtt_str_t a, b;

    gw_mqtt__reader_init(&r, data, (uint32_t)(size > UINT32_MAX ? UINT32_MAX : size));
    if (gw_mqtt__read_lstr_raw(&r, &a) != GW_OK || gw_mqtt__read_lstr_raw(&r, &b) != GW_OK)
        return;
    gw_err_t ue = gw_utf8_validate(a.ptr, a.len);
    gw_err_t fe = gw_topic_filter_validate(NULL, a.ptr, a.len);
    gw_err_t ne = gw_topic_name_validate(NULL, b.ptr, b.len);
    if (ue != GW_OK)
        CHECK(fe == GW_ERR_MQTT_UTF8 || fe == GW_ERR_MQTT_TOPIC_EMPTY);
    if (fe == GW_OK && ne == GW_OK) {
        bool m = gw_topic_matches(a.ptr, a.len, b.ptr, b.len);
        CHECK(m == ref_matches(a.ptr, a.len, b.ptr, b.len));
        /* a valid name is a valid filter that matches only itself */
        CHECK(gw_topic_filter_validate(NULL, b.ptr, b.len) == GW_OK);
        CHECK(gw_topic_matches(b.ptr, b.len, b.ptr, b.len));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t chunk = size ? (size_t)(data[size - 1] % 13) + 1 : 1;
    fuzz_stream(GW_MQTT_PROTOCOL_V311, data, size, chunk);
    fuzz_stream(GW_MQTT_PROTOCOL_V31, data, size, chunk);
    fuzz_topics(data, size);
    return 0;
}
