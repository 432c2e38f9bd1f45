/*
 * mqtt.h - MQTT 3.1.1 (and 3.1) codec: framing, decoding, encoding.
 *
 * Framing is separate from decoding. The framer only finds packet
 * boundaries: it reads the fixed header, bounds the remaining length against
 * the configured maximum *before* any allocation, and hands out one complete
 * packet at a time. The decoders take exactly one packet's bytes and
 * validate every rule that can be checked on a single packet; nothing else
 * in the project touches raw MQTT bytes.
 *
 * Ownership: decoded packets BORROW. Every gw_mqtt_str_t / gw_mqtt_bin_t in
 * a decoded struct points into the packet bytes given to the decoder and is
 * valid exactly as long as those bytes are. Strings are NOT NUL-terminated.
 * Encoders never allocate: they write into a caller buffer.
 *
 * MQTT 3.1 ("MQIsdp", level 3) differences the decoder honours: the
 * CONNECT reserved flag bit is not checked (MQTT-3.1.2-3 is 3.1.1 only) and
 * DUP on a QoS 0 PUBLISH is tolerated (MQTT-3.3.1-2 is 3.1.1 only). A
 * password without a user name is rejected at both levels (3.1: "It is not
 * valid to supply a password without supplying a user name").
 *
 * A NULL gw_mqtt_ctx_t * is accepted everywhere and means level 4, no
 * topic limits. protocol_level 0 (before CONNECT) applies the 3.1.1 rules.
 *
 * Room for MQTT 5: every decode/encode takes the protocol level in
 * gw_mqtt_ctx_t; properties will be added as a borrowed byte range per
 * packet without changing these signatures.
 */
#ifndef GW_MQTT_H
#define GW_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/error.h"

typedef enum gw_mqtt_type {
    GW_MQTT_CONNECT = 1,
    GW_MQTT_CONNACK = 2,
    GW_MQTT_PUBLISH = 3,
    GW_MQTT_PUBACK = 4,
    GW_MQTT_PUBREC = 5,
    GW_MQTT_PUBREL = 6,
    GW_MQTT_PUBCOMP = 7,
    GW_MQTT_SUBSCRIBE = 8,
    GW_MQTT_SUBACK = 9,
    GW_MQTT_UNSUBSCRIBE = 10,
    GW_MQTT_UNSUBACK = 11,
    GW_MQTT_PINGREQ = 12,
    GW_MQTT_PINGRESP = 13,
    GW_MQTT_DISCONNECT = 14,
} gw_mqtt_type_t;

#define GW_MQTT_PROTOCOL_V31 3  /* "MQIsdp" */
#define GW_MQTT_PROTOCOL_V311 4 /* "MQTT" */

/* Largest remaining length the wire format can express (4 length bytes). */
#define GW_MQTT_MAX_REMAINING_LENGTH 268435455u

/* CONNACK return codes (MQTT 3.1.1 table 3.1). */
typedef enum gw_mqtt_connack_rc {
    GW_MQTT_CONNACK_ACCEPTED = 0,
    GW_MQTT_CONNACK_BAD_PROTOCOL = 1,
    GW_MQTT_CONNACK_ID_REJECTED = 2,
    GW_MQTT_CONNACK_SERVER_UNAVAILABLE = 3,
    GW_MQTT_CONNACK_BAD_CREDENTIALS = 4,
    GW_MQTT_CONNACK_NOT_AUTHORIZED = 5,
} gw_mqtt_connack_rc_t;

#define GW_MQTT_SUBACK_FAILURE 0x80

/** A borrowed, length-delimited, validated UTF-8 string (not NUL-terminated). */
typedef struct gw_mqtt_str {
    const char *ptr;
    uint16_t len;
} gw_mqtt_str_t;

/** A borrowed byte range. */
typedef struct gw_mqtt_bin {
    const uint8_t *ptr;
    uint32_t len;
} gw_mqtt_bin_t;

/** Decoder/encoder context: what the connection negotiated. */
typedef struct gw_mqtt_ctx {
    uint8_t protocol_level; /* 0 before CONNECT, then 3 or 4 */
    uint16_t max_topic_len; /* 0 = only the wire limit (65535) */
    uint16_t max_topic_levels; /* 0 = unlimited */
} gw_mqtt_ctx_t;

typedef struct gw_mqtt_connect {
    uint8_t protocol_level; /* 3 or 4 */
    bool clean_session;
    uint16_t keep_alive; /* seconds; 0 disables */
    gw_mqtt_str_t client_id; /* may be empty */
    bool will_flag;
    uint8_t will_qos;
    bool will_retain;
    gw_mqtt_str_t will_topic; /* valid topic name when will_flag */
    gw_mqtt_bin_t will_payload;
    bool has_username;
    gw_mqtt_str_t username;
    bool has_password;
    gw_mqtt_bin_t password;
} gw_mqtt_connect_t;

typedef struct gw_mqtt_connack {
    bool session_present;
    uint8_t return_code; /* gw_mqtt_connack_rc_t */
} gw_mqtt_connack_t;

typedef struct gw_mqtt_publish {
    bool dup;
    uint8_t qos;
    bool retain;
    gw_mqtt_str_t topic;
    uint16_t packet_id; /* 0 for QoS 0 */
    gw_mqtt_bin_t payload;
} gw_mqtt_publish_t;

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
typedef struct gw_mqtt_ack {
    uint16_t packet_id;
} gw_mqtt_ack_t;

/* SUBSCRIBE and UNSUBSCRIBE payloads are validated in full by the decoder,
 * then walked with gw_mqtt_topics_next() without any allocation. */
typedef struct gw_mqtt_topics {
    const uint8_t *ptr; /* start of the payload */
    uint32_t len;
    uint16_t count; /* number of entries (>= 1 once decoded) */
    bool with_qos;  /* SUBSCRIBE: each filter followed by a QoS byte */
} gw_mqtt_topics_t;

typedef struct gw_mqtt_topics_iter {
    const gw_mqtt_topics_t *topics;
    uint32_t off;
} gw_mqtt_topics_iter_t;

typedef struct gw_mqtt_subscribe {
    uint16_t packet_id;
    gw_mqtt_topics_t topics;
} gw_mqtt_subscribe_t;

typedef struct gw_mqtt_unsubscribe {
    uint16_t packet_id;
    gw_mqtt_topics_t topics;
} gw_mqtt_unsubscribe_t;

typedef struct gw_mqtt_suback {
    uint16_t packet_id;
    const uint8_t *codes; /* borrowed: count return codes (0,1,2 or 0x80) */
    uint16_t count;
} gw_mqtt_suback_t;

typedef struct gw_mqtt_packet {
    gw_mqtt_type_t type;
    union {
        gw_mqtt_connect_t connect;
        gw_mqtt_connack_t connack;
        gw_mqtt_publish_t publish;
        gw_mqtt_ack_t ack; /* PUBACK PUBREC PUBREL PUBCOMP UNSUBACK */
        gw_mqtt_subscribe_t subscribe;
        gw_mqtt_suback_t suback;
        gw_mqtt_unsubscribe_t unsubscribe;
    } u; /* PINGREQ, PINGRESP, DISCONNECT carry nothing */
} gw_mqtt_packet_t;

/* ------------------------------------------------------------------ */
/* Framing                                                             */
/* ------------------------------------------------------------------ */

/** One complete packet as handed out by the framer (borrowed). */
typedef struct gw_mqtt_frame {
    uint8_t header;       /* first byte: type << 4 | flags */
    const uint8_t *body;  /* remaining_length bytes (NULL when 0) */
    uint32_t body_len;
} gw_mqtt_frame_t;

/**
 * Incremental framer. Resumes on partial input at any byte boundary.
 * Zero-copy fast path: when the whole body lies inside the chunk given to
 * gw_mqtt_framer_feed() and nothing of it is buffered (the fixed header may
 * have come in earlier chunks), the frame points into the caller's chunk;
 * otherwise the framer copies into one exact-size buffer it allocates only
 * after the declared length passed the maximum check and the first body
 * byte arrived.
 */
typedef struct gw_mqtt_framer {
    uint32_t max_packet;  /* maximum remaining length accepted */
    /* private */
    uint8_t state;
    uint8_t header;
    uint8_t len_bytes;
    uint32_t multiplier;
    uint32_t remaining;
    uint8_t *buf;         /* owned; exact size when buffering a body */
    uint32_t have;
    bool frame_ready;
} gw_mqtt_framer_t;

/** max_packet: largest remaining length accepted (<= GW_MQTT_MAX_REMAINING_LENGTH). */
void gw_mqtt_framer_init(gw_mqtt_framer_t *fr, uint32_t max_packet);
/** Frees the buffer, if any. The framer may be re-initialised afterwards. */
void gw_mqtt_framer_cleanup(gw_mqtt_framer_t *fr);

/**
 * Feed bytes. Consumes at most one packet: *consumed is set to how many
 * bytes of data were used (always <= len).
 *  - GW_OK: *frame holds one complete packet, valid until the next call to
 *    gw_mqtt_framer_feed()/cleanup() and, on the zero-copy path, as long as
 *    data is. Call again with the rest of the input for the next packet.
 *  - GW_ERR_AGAIN: all of data was consumed (*consumed == len), need more.
 *  - GW_ERR_MQTT_REMAINING_LENGTH, GW_ERR_MQTT_TOO_LARGE,
 *    GW_ERR_MQTT_BAD_TYPE: stream is broken; close the connection.
 *    TOO_LARGE is returned as soon as the length bytes read so far exceed
 *    max_packet, before any body byte is read or anything allocated.
 *  - GW_ERR_NOMEM.
 * After an error every further call returns GW_ERR_STATE (the framer is
 * not resynchronisable); cleanup + init to reuse it.
 * Non-minimal remaining-length encodings (e.g. 0x80 0x00) are accepted, as
 * MQTT 3.1.1 allows them.
 */
gw_err_t gw_mqtt_framer_feed(gw_mqtt_framer_t *fr, const uint8_t *data, size_t len,
                             size_t *consumed, gw_mqtt_frame_t *frame);

/**
 * Stateless peek for callers that keep the bytes themselves (evbuffer):
 * parse the fixed header at the start of data.
 *  - GW_OK: *header_len (2..5) and *remaining set; the packet is
 *    *header_len + *remaining bytes long (may be more than len).
 *  - GW_ERR_AGAIN: the fixed header itself is incomplete.
 *  - errors as for gw_mqtt_framer_feed().
 */
gw_err_t gw_mqtt_frame_header(const uint8_t *data, size_t len, uint32_t max_packet,
                              uint8_t *header, size_t *header_len, uint32_t *remaining);

/* ------------------------------------------------------------------ */
/* Decoding                                                            */
/* ------------------------------------------------------------------ */

/**
 * Decode one framed packet (one dispatcher over one file per packet type).
 * Validates: reserved header flags (MQTT-2.2.2-1/2), QoS 3, packet id 0,
 * protocol name/level, CONNECT reserved bit, will flag/QoS/retain
 * consistency, password without user name, UTF-8 (MQTT-1.5.3), topic names
 * without wildcards, topic filters, empty SUBSCRIBE/UNSUBSCRIBE, requested
 * QoS > 2, empty topics, truncated fields and trailing bytes, CONNACK
 * reserved bits / return code > 5 / session present with a refusal and
 * SUBACK codes other than 0, 1, 2, 0x80 (GW_ERR_MQTT_PROTOCOL), an empty
 * SUBACK (GW_ERR_MQTT_EMPTY_PAYLOAD), and ctx topic limits. A SUBSCRIBE,
 * UNSUBSCRIBE or SUBACK with more than 65535 entries (count is 16 bits) is
 * GW_ERR_MQTT_TOO_LARGE.
 * CONNECT is decoded whatever ctx->protocol_level is; for the other types
 * ctx->protocol_level selects the rules (3 and 4 are identical today).
 * *out borrows from frame->body.
 */
gw_err_t gw_mqtt_decode(const gw_mqtt_ctx_t *ctx, const gw_mqtt_frame_t *frame,
                        gw_mqtt_packet_t *out);

/**
 * Walk a decoded SUBSCRIBE/UNSUBSCRIBE payload. Returns true and fills
 * *filter (and *qos for SUBSCRIBE; 0 otherwise) for each entry in order.
 */
void gw_mqtt_topics_iter_init(gw_mqtt_topics_iter_t *it, const gw_mqtt_topics_t *topics);
bool gw_mqtt_topics_next(gw_mqtt_topics_iter_t *it, gw_mqtt_str_t *filter, uint8_t *qos);

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

/**
 * Build a SUBSCRIBE (qos != NULL) or UNSUBSCRIBE (qos == NULL) topic list of
 * count entries into buf[0..cap) and point *out at it (out borrows buf).
 * Checks only structure (non-empty filters, QoS <= 2): GW_ERR_INVAL
 * otherwise; GW_ERR_NOSPACE with *written = needed. Never allocates.
 */
gw_err_t gw_mqtt_topics_build(const gw_mqtt_str_t *filters, const uint8_t *qos, uint16_t count,
                              uint8_t *buf, size_t cap, gw_mqtt_topics_t *out, size_t *written);

/** Exact encoded size of a packet (fixed header included); 0 if it cannot be encoded. */
size_t gw_mqtt_encoded_size(const gw_mqtt_ctx_t *ctx, const gw_mqtt_packet_t *pkt);

/**
 * Encode into buf[0..cap). On GW_OK *written is the size. On GW_ERR_NOSPACE
 * nothing useful was written and *written is the size needed. GW_ERR_INVAL if
 * the packet breaks a rule the encoder enforces (QoS > 2, packet id 0 where
 * required, remaining length above the wire maximum, empty SUBSCRIBE).
 * Encoders check structure, not content: strings are NOT re-validated as
 * UTF-8 / topic syntax (validate them where they enter the process). The
 * other rules enforced: empty topic name, DUP on QoS 0 (level 4), will
 * flags, password without user name, protocol level not 3/4, CONNACK code
 * above 5 or session present with a refusal, SUBACK code not 0/1/2/0x80,
 * a topic list whose entries do not parse or do not add up to count.
 * A packet the decoder accepted at a level always encodes at that level.
 * PUBLISH senders usually call gw_mqtt_encode_publish_header() instead and
 * append the payload themselves, to avoid a copy.
 */
gw_err_t gw_mqtt_encode(const gw_mqtt_ctx_t *ctx, const gw_mqtt_packet_t *pkt, uint8_t *buf,
                        size_t cap, size_t *written);

/**
 * Encode a PUBLISH fixed header + variable header (topic, packet id) for a
 * payload of payload_len bytes, which the caller writes right after. buf must
 * hold at least GW_MQTT_PUBLISH_HEADER_MAX(topic_len) bytes. Same rules as
 * gw_mqtt_encode() at level 4 (it has no ctx, so DUP on QoS 0 is refused).
 */
#define GW_MQTT_PUBLISH_HEADER_MAX(topic_len) (5u + 2u + (size_t)(topic_len) + 2u)
gw_err_t gw_mqtt_encode_publish_header(const gw_mqtt_publish_t *pub, uint32_t payload_len,
                                       uint8_t *buf, size_t cap, size_t *written);

/** Encode a 4-byte ack (PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK) - hot path helper.
 *  No validation: the caller passes one of those types and a non-zero id. */
void gw_mqtt_encode_ack(gw_mqtt_type_t type, uint16_t packet_id, uint8_t out[4]);

const char *gw_mqtt_type_name(gw_mqtt_type_t type);

/* ------------------------------------------------------------------ */
/* Strings and topics (topic.c / utf8.c)                               */
/* ------------------------------------------------------------------ */

/** MQTT-1.5.3: well-formed UTF-8, no U+0000, no surrogates, no overlongs,
 *  nothing above U+10FFFF -> GW_ERR_MQTT_UTF8. Control characters and
 *  non-characters (a SHOULD NOT in 1.5.3) are accepted. */
gw_err_t gw_utf8_validate(const char *s, size_t len);
/** Topic name: non-empty, valid UTF-8, no '+' or '#'. Errors in this order:
 *  TOPIC_EMPTY, TOPIC_TOO_LONG (length; ctx->max_topic_len), UTF8,
 *  TOPIC_WILDCARD, TOPIC_TOO_LONG (ctx->max_topic_levels). ctx may be NULL. */
gw_err_t gw_topic_name_validate(const gw_mqtt_ctx_t *ctx, const char *s, size_t len);
/** Topic filter: non-empty, valid UTF-8, '#' last and alone in its level, '+' alone in its level.
 *  Same error order as gw_topic_name_validate(), TOPIC_FILTER for wildcards. */
gw_err_t gw_topic_filter_validate(const gw_mqtt_ctx_t *ctx, const char *s, size_t len);
/** True if filter matches topic per MQTT-4.7 (incl. the '$' rule MQTT-4.7.2-1). Both pre-validated. */
bool gw_topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen);

#endif
