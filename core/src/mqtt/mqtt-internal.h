/*
 * mqtt-internal.h - bounded readers and writers for the MQTT codec.
 *
 * Nothing in the codec touches raw packet bytes except through these
 * helpers. A reader never reads past its length: every read first checks
 * what is left and returns GW_ERR_MQTT_TRUNCATED otherwise. Offsets are
 * integers (never pointer arithmetic on a possibly NULL base), so an empty
 * body (NULL, 0) is handled without undefined behaviour.
 *
 * Writers are bounded too; encoders compute the exact size first and check
 * it against the capacity, so a writer overflow is a codec bug: it is
 * recorded in w->overflow and reported as GW_ERR_INVAL, never a write past
 * the end.
 *
 * Internal functions use the gw_mqtt__ prefix (module__verb).
 */
#ifndef GW_MQTT_INTERNAL_H
#define GW_MQTT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gw/mqtt.h"

/* ------------------------------------------------------------------ */
/* Reader                                                              */
/* ------------------------------------------------------------------ */

typedef struct gw_mqtt_reader {
    const uint8_t *base; /* may be NULL when len == 0 */
    uint32_t len;
    uint32_t off;
} gw_mqtt_reader_t;

static inline void gw_mqtt__reader_init(gw_mqtt_reader_t *r, const uint8_t *base, uint32_t len)
{
    r->base = base;
    r->len = base ? len : 0;
    r->off = 0;
}

static inline uint32_t gw_mqtt__reader_left(const gw_mqtt_reader_t *r)
{
    return r->len - r->off;
}

static inline gw_err_t gw_mqtt__read_u8(gw_mqtt_reader_t *r, uint8_t *v)
{
    if (gw_mqtt__reader_left(r) < 1)
        return GW_ERR_MQTT_TRUNCATED;
    *v = r->base[r->off++];
    return GW_OK;
}

/* Two-byte integer, big endian (MQTT 1.5.2). */
static inline gw_err_t gw_mqtt__read_u16(gw_mqtt_reader_t *r, uint16_t *v)
{
    if (gw_mqtt__reader_left(r) < 2)
        return GW_ERR_MQTT_TRUNCATED;
    *v = (uint16_t)((uint16_t)r->base[r->off] << 8 | r->base[r->off + 1]);
    r->off += 2;
    return GW_OK;
}

/* Length-prefixed bytes (2-byte length, MQTT 1.5.3 layout) without any
 * content check: for the protocol name and for fields that are validated by
 * a more specific function (topic names and filters). */
static inline gw_err_t gw_mqtt__read_lstr_raw(gw_mqtt_reader_t *r, gw_mqtt_str_t *s)
{
    uint16_t n;
    gw_err_t err = gw_mqtt__read_u16(r, &n);
    if (err != GW_OK)
        return err;
    if (gw_mqtt__reader_left(r) < n)
        return GW_ERR_MQTT_TRUNCATED;
    s->ptr = n ? (const char *)(r->base + r->off) : "";
    s->len = n;
    r->off += n;
    return GW_OK;
}

/* UTF-8 encoded string (MQTT-1.5.3): length checked, content validated. */
static inline gw_err_t gw_mqtt__read_utf8(gw_mqtt_reader_t *r, gw_mqtt_str_t *s)
{
    gw_err_t err = gw_mqtt__read_lstr_raw(r, s);
    if (err != GW_OK)
        return err;
    return gw_utf8_validate(s->ptr, s->len);
}

/* Binary data with a 2-byte length prefix (will message, password). */
static inline gw_err_t gw_mqtt__read_bin16(gw_mqtt_reader_t *r, gw_mqtt_bin_t *b)
{
    uint16_t n;
    gw_err_t err = gw_mqtt__read_u16(r, &n);
    if (err != GW_OK)
        return err;
    if (gw_mqtt__reader_left(r) < n)
        return GW_ERR_MQTT_TRUNCATED;
    b->ptr = n ? r->base + r->off : NULL;
    b->len = n;
    r->off += n;
    return GW_OK;
}

/* Everything that is left (PUBLISH payload, SUBACK codes). */
static inline void gw_mqtt__read_rest(gw_mqtt_reader_t *r, gw_mqtt_bin_t *b)
{
    uint32_t n = gw_mqtt__reader_left(r);
    b->ptr = n ? r->base + r->off : NULL;
    b->len = n;
    r->off = r->len;
}

/* After the last field: nothing may be left. */
static inline gw_err_t gw_mqtt__reader_end(const gw_mqtt_reader_t *r)
{
    return gw_mqtt__reader_left(r) ? GW_ERR_MQTT_TRAILING_BYTES : GW_OK;
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

typedef struct gw_mqtt_writer {
    uint8_t *base;
    size_t cap;
    size_t off;
    bool overflow;
} gw_mqtt_writer_t;

static inline void gw_mqtt__writer_init(gw_mqtt_writer_t *w, uint8_t *base, size_t cap)
{
    w->base = base;
    w->cap = base ? cap : 0;
    w->off = 0;
    w->overflow = false;
}

static inline void gw_mqtt__write_u8(gw_mqtt_writer_t *w, uint8_t v)
{
    if (w->cap - w->off < 1) {
        w->overflow = true;
        return;
    }
    w->base[w->off++] = v;
}

static inline void gw_mqtt__write_u16(gw_mqtt_writer_t *w, uint16_t v)
{
    if (w->cap - w->off < 2) {
        w->overflow = true;
        return;
    }
    w->base[w->off] = (uint8_t)(v >> 8);
    w->base[w->off + 1] = (uint8_t)v;
    w->off += 2;
}

static inline void gw_mqtt__write_bytes(gw_mqtt_writer_t *w, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (w->cap - w->off < n || p == NULL) {
        w->overflow = true;
        return;
    }
    memcpy(w->base + w->off, p, n);
    w->off += n;
}

/* 2-byte length + bytes. */
static inline void gw_mqtt__write_lbytes(gw_mqtt_writer_t *w, const void *p, uint16_t n)
{
    gw_mqtt__write_u16(w, n);
    gw_mqtt__write_bytes(w, p, n);
}

/* Variable byte integer (MQTT 2.2.3), minimal encoding. */
static inline void gw_mqtt__write_varint(gw_mqtt_writer_t *w, uint32_t v)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b |= 0x80;
        gw_mqtt__write_u8(w, b);
    } while (v);
}

static inline size_t gw_mqtt__varint_size(uint32_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

/* ------------------------------------------------------------------ */
/* Per packet type (one file each) and the dispatcher in codec.c       */
/* ------------------------------------------------------------------ */

/* The protocol level whose rules apply: 0 (before CONNECT) means 3.1.1. */
static inline uint8_t gw_mqtt__level(const gw_mqtt_ctx_t *ctx)
{
    return (ctx && ctx->protocol_level == GW_MQTT_PROTOCOL_V31) ? GW_MQTT_PROTOCOL_V31
                                                                : GW_MQTT_PROTOCOL_V311;
}

/* Decoders: flags are the low nibble of the fixed header. */
gw_err_t gw_mqtt__decode_connect(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                 gw_mqtt_connect_t *out);
gw_err_t gw_mqtt__decode_connack(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                 gw_mqtt_connack_t *out);
gw_err_t gw_mqtt__decode_publish(const gw_mqtt_ctx_t *ctx, uint8_t flags, gw_mqtt_reader_t *r,
                                 gw_mqtt_publish_t *out);
gw_err_t gw_mqtt__decode_ack(gw_mqtt_reader_t *r, gw_mqtt_ack_t *out);
gw_err_t gw_mqtt__decode_subscribe(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                   gw_mqtt_subscribe_t *out);
gw_err_t gw_mqtt__decode_suback(gw_mqtt_reader_t *r, gw_mqtt_suback_t *out);
gw_err_t gw_mqtt__decode_unsubscribe(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r,
                                     gw_mqtt_unsubscribe_t *out);
gw_err_t gw_mqtt__decode_ping(gw_mqtt_reader_t *r);
gw_err_t gw_mqtt__decode_disconnect(gw_mqtt_reader_t *r);

/* Encoders: *_size computes the remaining length (GW_ERR_INVAL if the
 * packet breaks a rule the encoder enforces); *_write writes the variable
 * header and payload only (the dispatcher writes the fixed header). */
gw_err_t gw_mqtt__connect_size(const gw_mqtt_connect_t *c, uint32_t *rem);
void gw_mqtt__connect_write(const gw_mqtt_connect_t *c, gw_mqtt_writer_t *w);
gw_err_t gw_mqtt__connack_size(const gw_mqtt_ctx_t *ctx, const gw_mqtt_connack_t *c,
                               uint32_t *rem);
void gw_mqtt__connack_write(const gw_mqtt_connack_t *c, gw_mqtt_writer_t *w);
gw_err_t gw_mqtt__publish_size(const gw_mqtt_ctx_t *ctx, const gw_mqtt_publish_t *p,
                               uint32_t payload_len, uint32_t *rem);
uint8_t gw_mqtt__publish_flags(const gw_mqtt_publish_t *p);
void gw_mqtt__publish_write_varhdr(const gw_mqtt_publish_t *p, gw_mqtt_writer_t *w);
gw_err_t gw_mqtt__ack_size(const gw_mqtt_ack_t *a, uint32_t *rem);
void gw_mqtt__ack_write(const gw_mqtt_ack_t *a, gw_mqtt_writer_t *w);
/* SUBSCRIBE / UNSUBSCRIBE payload: decode (full validation) and the
 * structural check the encoder does on a caller-built payload. */
gw_err_t gw_mqtt__decode_topics(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r, bool with_qos,
                                gw_mqtt_topics_t *out);
gw_err_t gw_mqtt__topics_check(const gw_mqtt_topics_t *t, bool with_qos);
/* SUBSCRIBE and UNSUBSCRIBE share their form: a packet id then a topic list
 * (with QoS bytes for SUBSCRIBE). These do the work for both files. */
gw_err_t gw_mqtt__decode_id_topics(const gw_mqtt_ctx_t *ctx, gw_mqtt_reader_t *r, bool with_qos,
                                   uint16_t *packet_id, gw_mqtt_topics_t *topics);
gw_err_t gw_mqtt__id_topics_size(uint16_t packet_id, const gw_mqtt_topics_t *topics,
                                 bool with_qos, uint32_t *rem);
void gw_mqtt__id_topics_write(uint16_t packet_id, const gw_mqtt_topics_t *topics,
                              gw_mqtt_writer_t *w);
gw_err_t gw_mqtt__subscribe_size(const gw_mqtt_subscribe_t *s, uint32_t *rem);
void gw_mqtt__subscribe_write(const gw_mqtt_subscribe_t *s, gw_mqtt_writer_t *w);
gw_err_t gw_mqtt__unsubscribe_size(const gw_mqtt_unsubscribe_t *u, uint32_t *rem);
void gw_mqtt__unsubscribe_write(const gw_mqtt_unsubscribe_t *u, gw_mqtt_writer_t *w);
gw_err_t gw_mqtt__suback_size(const gw_mqtt_suback_t *s, uint32_t *rem);
void gw_mqtt__suback_write(const gw_mqtt_suback_t *s, gw_mqtt_writer_t *w);

/* Fixed-header flags every type except PUBLISH must carry (MQTT-2.2.2-1). */
static inline uint8_t gw_mqtt__required_flags(gw_mqtt_type_t type)
{
    return (type == GW_MQTT_PUBREL || type == GW_MQTT_SUBSCRIBE || type == GW_MQTT_UNSUBSCRIBE)
               ? 0x2
               : 0x0;
}

/* Field-by-field comparison of two decoded packets (contents of borrowed
 * ranges compared by value). Used by the unit tests and the fuzzer. */
bool gw_mqtt__packet_equal(const gw_mqtt_packet_t *a, const gw_mqtt_packet_t *b);

#endif
