/*
 * spec.h - the MQTT-over-AMQP messages of spec/ (build and parse).
 *
 * The one module that knows how each spec message looks on the wire: its
 * subject, which properties and annotations it carries, and its body. Used
 * by the gateway and both services. Decoding is all-or-nothing: a message
 * with a missing `to`, a wrong body type or a bad QoS is refused with a
 * reason and nothing of it is used.
 *
 * Wire choices (what our encoders send; decoders are more tolerant):
 *  - annotation keys are symbols; x-opt-mqtt-qos is an AMQP int (as
 *    EnMasse sends it), x-opt-retain-message a bool. Decoding accepts the
 *    QoS as any integer type (byte, ubyte, short, ushort, int, uint, long,
 *    ulong) in 0..2, retain only as a bool, keys as symbol or string.
 *    Without x-opt-mqtt-qos, QoS = durable ? 1 : 0.
 *  - message-id (MQTT packet id, PUBREL's id) is a ulong. proton 0.37's
 *    pn_message_decode() DROPS ids of other integer types (int, long...);
 *    gw_spec_message_decode() recovers non-negative ones as a ulong.
 *  - correlation-id is a string ($mqtt.to.<id>.publish).
 *  - payloads are one Data section. Decoding a PUBLISH/WILL also accepts
 *    an AmqpValue holding binary or string (native AMQP senders).
 *  - SUBSCRIBE/SUBSCRIPTIONS: AmqpValue map, string filter -> int QoS
 *    (decode: any integer type, 0..2); UNSUBSCRIBE: AmqpValue list of
 *    strings. AmqpSequence and Data bodies are refused for these.
 *
 * Ownership and lifetime: decoded messages BORROW from the pn_message_t
 * they were decoded from. topic (`to`), reply_to and the subject-derived
 * data point into proton's property strings; correlation_id into the copy
 * proton keeps of the id; payload and entry filters into the body / the
 * annotations pn_data_t. All stay valid until that message is cleared,
 * decoded into again (pn_message_decode, gw_spec_message_decode), freed or
 * the field in question is set. Do NOT call pn_message_correlation_id() or
 * pn_message_id() (the deprecated pn_data_t accessors) on it meanwhile:
 * they move the id and free the bytes correlation_id points at. Only
 * topic and reply_to are also NUL-terminated. Entry arrays of
 * SUBSCRIBE/UNSUBSCRIBE/SUBSCRIPTIONS are owned by gw_spec_msg_t; release
 * with gw_spec_msg_clear(). Encoders fill a caller-owned pn_message_t after
 * pn_message_clear(), copying what they are given.
 *
 * Receiving: proton 0.37's pn_message_decode() does not clear the message
 * first and keeps only the last of several Data sections. Decode received
 * bytes with gw_spec_message_decode(), which fixes both.
 *
 * See spec/mqtt-over-amqp.md for the meaning of every field.
 */
#ifndef GW_SPEC_H
#define GW_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <proton/message.h>

#include "gw/error.h"

/* Subjects (spec/ section "Messages"). AMQP_PUBLISH has none. */
#define GW_SPEC_SUBJECT_WILL "will"
#define GW_SPEC_SUBJECT_WILL_CLEAR "will-clear"
/* Target capability of a shared will link (L1s, spec 2.2, 5.1). */
#define GW_SPEC_CAP_SHARED_WILL "mqtt-shared-will"
#define GW_SPEC_SUBJECT_WILL_PUBLISH "will-publish" /* shared will link only (spec 3.4a) */
#define GW_SPEC_SUBJECT_LIST "list"
#define GW_SPEC_SUBJECT_SUBSCRIPTIONS "subscriptions"
#define GW_SPEC_SUBJECT_CLOSE "close"
#define GW_SPEC_SUBJECT_SUBSCRIBE "subscribe"
#define GW_SPEC_SUBJECT_UNSUBSCRIBE "unsubscribe"
#define GW_SPEC_SUBJECT_PUBREL "pubrel"

/* Message annotations. */
#define GW_SPEC_ANNO_RETAIN "x-opt-retain-message"
#define GW_SPEC_ANNO_QOS "x-opt-mqtt-qos"
/* AMQP_PUBLISH of QoS 2 from G (L7): the publishing client's id (string),
 * the key of the SS's duplicate detection with message-id (spec 3.9, 5.2). */
#define GW_SPEC_ANNO_PUBLISHER "x-opt-mqtt-publisher"
/* AMQP_SUBSCRIPTIONS: the SS held a session before this AMQP_LIST (bool). */
#define GW_SPEC_ANNO_SESSION_PRESENT "x-opt-session-present"
/* Shared delivery link (L4s, spec 3.12) */
#define GW_SPEC_ANNO_DELIVERY_LINK "x-opt-mqtt-delivery-link"
#define GW_SPEC_ANNO_WINDOW "x-opt-mqtt-window"
#define GW_SPEC_ANNO_CLIENT_SERIAL "x-opt-mqtt-client-serial" /* also a delivery annotation */
#define GW_SPEC_CAP_SHARED_DELIVERY "mqtt-shared-delivery"
#define GW_SPEC_SUBJECT_OFFLINE "offline"
#define GW_SPEC_SUBJECT_STOLEN "stolen"

/* Link error condition used when a newer link with the same name or client
 * id takes over (standard AMQP 1.0 link error). */
#define GW_SPEC_COND_STOLEN "amqp:link:stolen"

/* Upper bound on entries in one SUBSCRIBE/UNSUBSCRIBE/SUBSCRIPTIONS body.
 * A proton pn_data_t holds at most 65535 nodes, so a map cannot carry more
 * than 32767 pairs (proton silently truncates bigger ones on decode, which
 * gw_spec_message_decode() refuses). Callers with more entries (an MQTT
 * SUBSCRIBE can hold more) must refuse or split. Was 65535 in the first
 * draft of this header, which proton could never carry in a map. */
#define GW_SPEC_MAX_ENTRIES 32767

/** Configurable address plan. */
typedef struct gw_spec_addrs {
    const char *lwt;           /* "$mqtt.lwtservice" */
    const char *subctrl;       /* "$mqtt.subscriptionservice" */
    const char *to_prefix;     /* "$mqtt.to." -> "$mqtt.to.<id>.control|publish" */
    const char *pubrel_prefix; /* "$mqtt."    -> "$mqtt.<id>.pubrel" */
} gw_spec_addrs_t;

extern const gw_spec_addrs_t gw_spec_default_addrs;

typedef enum gw_spec_client_addr {
    GW_SPEC_ADDR_CONTROL, /* $mqtt.to.<id>.control */
    GW_SPEC_ADDR_PUBLISH, /* $mqtt.to.<id>.publish */
    GW_SPEC_ADDR_PUBREL,  /* $mqtt.<id>.pubrel */
} gw_spec_client_addr_t;

/**
 * Write the per-client address into buf (NUL-terminated). addrs NULL means
 * gw_spec_default_addrs. GW_ERR_NOSPACE if it does not fit in cap bytes
 * (NUL included); GW_ERR_INVAL for an empty client id (assign one first).
 */
gw_err_t gw_spec_addr_client(const gw_spec_addrs_t *addrs, gw_spec_client_addr_t which,
                             const char *client_id, size_t id_len, char *buf, size_t cap);
/**
 * Recognise a per-client address (addr need not be NUL-terminated). The id
 * is everything between the prefix and the fixed suffix, dots included
 * ("$mqtt.to.a.b.control" is client "a.b"; "$mqtt.to.x.pubrel" is the
 * PUBREL address of client "to.x"). On GW_OK *id points into addr.
 * GW_ERR_NOT_FOUND for anything else, including an empty id.
 */
gw_err_t gw_spec_addr_parse(const gw_spec_addrs_t *addrs, const char *addr, size_t len,
                            gw_spec_client_addr_t *which, const char **id, size_t *id_len);
/**
 * spec 2.5 / 2.3: true if s (a topic name, topic filter or client id; need
 * not be NUL-terminated) starts with the will address, the subscription
 * address, the to-prefix or the pubrel-prefix. Reserved topics are never
 * forwarded from MQTT clients and reserved filters never subscribed, so an
 * MQTT client cannot forge or intercept the control traffic. NULL addrs =
 * the defaults. Empty prefixes in addrs are ignored.
 */
bool gw_spec_addr_reserved(const gw_spec_addrs_t *addrs, const char *s, size_t len);

typedef enum gw_spec_kind {
    GW_SPEC_PUBLISH,
    GW_SPEC_WILL,
    GW_SPEC_WILL_CLEAR,
    GW_SPEC_LIST,
    GW_SPEC_SUBSCRIPTIONS,
    GW_SPEC_CLOSE,
    GW_SPEC_SUBSCRIBE,
    GW_SPEC_UNSUBSCRIBE,
    GW_SPEC_PUBREL,
    GW_SPEC_WILL_PUBLISH, /* shared will link (L1s) only, spec 3.4a */
    GW_SPEC_OFFLINE,      /* L2, shared delivery link registrations, spec 3.12 */
    GW_SPEC_STOLEN,       /* L4s only, spec 3.12 */
} gw_spec_kind_t;

/* Sets of kinds for gw_spec_decode_kinds(). */
#define GW_SPEC_KIND_BIT(kind) (1u << (unsigned)(kind))
#define GW_SPEC_KIND_ALL 0xfffu

typedef struct gw_spec_str {
    const char *ptr;
    size_t len;
} gw_spec_str_t;

typedef struct gw_spec_entry {
    gw_spec_str_t filter;
    uint8_t qos; /* 0 for UNSUBSCRIBE */
} gw_spec_entry_t;

/* AMQP_PUBLISH (and the will's content). */
typedef struct gw_spec_publish {
    gw_spec_str_t topic;   /* `to` (encode: no NUL byte inside) */
    gw_spec_str_t payload; /* Data body (bytes, not NUL-terminated) */
    uint8_t qos;           /* x-opt-mqtt-qos, or durable ? 1 : 0 */
    bool retain;           /* x-opt-retain-message */
    bool durable;          /* header durable (encode: ignored, = qos > 0) */
    uint32_t delivery_count; /* header; > 0 means MQTT DUP */
    bool has_message_id;
    uint64_t message_id;   /* MQTT packet id (ulong); decode: any ulong, other
                              id types (string, uuid) leave has_message_id false */
    gw_spec_str_t publisher; /* x-opt-mqtt-publisher (AMQP_PUBLISH only; len 0 =
                                absent); decode: points into the message */
} gw_spec_publish_t;

typedef struct gw_spec_msg {
    gw_spec_kind_t kind;
    /* PUBLISH, WILL: */
    gw_spec_publish_t publish;
    /* LIST, CLOSE, SUBSCRIBE, UNSUBSCRIBE: $mqtt.to.<id>.publish (non-empty) */
    gw_spec_str_t correlation_id;
    /* LIST: $mqtt.to.<id>.control (non-empty) */
    gw_spec_str_t reply_to;
    /* LIST, CLOSE (optional, all three or none), OFFLINE (required): the
     * registration on a shared delivery link (spec 3.12). */
    bool has_delivery;
    gw_spec_str_t delivery_link; /* non-empty */
    uint32_t window;             /* 1..65535 (0 for OFFLINE) */
    uint64_t client_serial;
    /* SUBSCRIBE, UNSUBSCRIBE, PUBREL: an MQTT packet id 1..65535 */
    bool has_message_id;
    uint64_t message_id;
    /* SUBSCRIPTIONS: x-opt-session-present; when absent (older EnMasse
     * peers, has_session_present false) session_present = count > 0. */
    bool has_session_present;
    bool session_present;
    /* SUBSCRIBE, UNSUBSCRIBE (>= 1), SUBSCRIPTIONS (>= 0), at most
     * GW_SPEC_MAX_ENTRIES; owned, gw_spec_msg_clear frees */
    gw_spec_entry_t *entries;
    size_t count;
} gw_spec_msg_t;

/**
 * Parse msg by its subject (none: AMQP_PUBLISH). Checks every field the
 * kind requires (types, QoS <= 2, non-empty topics, filter syntax for
 * SUBSCRIBE/UNSUBSCRIBE/SUBSCRIPTIONS, topic-name syntax for PUBLISH/WILL,
 * packet id 1..65535 for SUBSCRIBE/UNSUBSCRIBE/PUBREL; a PUBLISH's
 * message-id is optional and any ulong: range-check it where a packet id is
 * required). Duplicate map keys are kept, in map order (spec 3.1: the last
 * one wins when processed in order). On error returns
 * GW_ERR_SPEC_SUBJECT (unknown subject) / GW_ERR_SPEC_FIELD (property or
 * annotation) / GW_ERR_SPEC_BODY / a topic error (GW_ERR_MQTT_TOPIC_*,
 * GW_ERR_MQTT_UTF8) / GW_ERR_NOMEM, and writes a one-line reason into why
 * (may be NULL), e.g. `AMQP_SUBSCRIBE: value for key "a/#" is a string,
 * expected an integer QoS`; *out is then empty. out need not be
 * initialised; a previous result in it is NOT freed (clear it first).
 * Accepts for PUBLISH, from native AMQP senders, an AmqpValue body holding
 * binary or string as well as Data.
 */
gw_err_t gw_spec_decode(pn_message_t *msg, gw_spec_msg_t *out, char *why, size_t whylen);
/**
 * gw_spec_decode() restricted to a set of kinds (GW_SPEC_KIND_BIT(...) |
 * ...): any other kind, including a missing subject when AMQP_PUBLISH is not
 * in the set, is refused with GW_ERR_SPEC_SUBJECT before any field is
 * parsed. For control links: the will service accepts WILL | WILL_CLEAR.
 */
gw_err_t gw_spec_decode_kinds(pn_message_t *msg, unsigned allowed, gw_spec_msg_t *out, char *why,
                              size_t whylen);

/** How a message is read depends on the address it arrived on (spec 3.2). */
typedef struct gw_spec_decode_opts {
    unsigned allowed;        /* GW_SPEC_KIND_BIT() set of kinds accepted */
    /* Topic and publish addresses: a subject that is unknown or not in
     * allowed (or none) makes the message an AMQP_PUBLISH (needs
     * GW_SPEC_PUBLISH in allowed). False: such messages are refused. */
    bool others_are_publish;
    /* Link target topic (spec 2.6): when set, an AMQP_PUBLISH takes it as
     * its topic (validated) and `to` is ignored; publish.topic then borrows
     * this string. NULL: the topic is `to`. */
    const char *topic;
    size_t topic_len;
    /* Shared will link (spec 3.4a): every kind needs a string correlation-id
     * (the client id, 1..65535 bytes), returned in out->correlation_id. */
    bool need_correlation;
} gw_spec_decode_opts_t;

/**
 * gw_spec_decode() with the rules of one address, e.g.
 *  - will address: {WILL|WILL_CLEAR}
 *  - publish address (L4): {PUBLISH|PUBREL, others_are_publish}
 *  - topic address with target T: {PUBLISH, others_are_publish, T}
 */
gw_err_t gw_spec_decode_opts(pn_message_t *msg, const gw_spec_decode_opts_t *opts,
                             gw_spec_msg_t *out, char *why, size_t whylen);
void gw_spec_msg_clear(gw_spec_msg_t *m);
/** The client id of a message on a shared will link (spec 3.4a): the
 * correlation-id, a string of 1..65535 bytes of valid UTF-8 (borrowed from
 * msg). GW_ERR_SPEC_FIELD with a reason naming `name` otherwise. */
gw_err_t gw_spec_client_id(pn_message_t *msg, const char *name, gw_spec_str_t *out, char *why,
                           size_t whylen);
/** The delivery-annotation x-opt-mqtt-client-serial of a delivery on a
 * shared delivery link (spec 3.12); false if absent or not a ulong. */
bool gw_spec_delivery_serial(pn_message_t *msg, uint64_t *serial);

/** Top-level sections of an encoded message (gw_spec_scan_sections). */
typedef struct gw_spec_sections {
    unsigned data_sections;
    unsigned sequence_sections;
    unsigned value_sections;
    unsigned symbolic_sections; /* described by a symbol, not a ulong code */
    size_t data_bytes;          /* sum of the Data sections' lengths */
    bool too_many_nodes;        /* a section needs more than 65535 pn_data_t nodes */
    bool int_message_id;        /* message-id is a non-negative integer, not a ulong */
    uint64_t message_id;        /* its value */
} gw_spec_sections_t;

/**
 * Walk the sections of an encoded message with a bounded reader (no
 * allocation, no proton): every value's encoding must lie within its
 * container, nesting is limited to 32 levels. GW_ERR_SPEC_BODY if empty,
 * malformed, or a section needs more than the 65535 nodes a pn_data_t can
 * hold (too_many_nodes set). "Malformed" includes everything proton 0.37
 * would read differently from the bytes (found by fuzzing): a descriptor
 * that is not a ulong or symbol (AMQP 1.0 1.5), an unknown section, sections
 * out of the order of AMQP 1.0 3.2 or repeated (only data and amqp-sequence
 * may repeat), a section value of the wrong type (header, properties,
 * amqp-sequence: list; annotations, application-properties, footer: map;
 * data: binary), and a list, map or array whose elements do not fill
 * exactly its declared size and count.
 */
gw_err_t gw_spec_scan_sections(const char *bytes, size_t size, gw_spec_sections_t *out);
/**
 * Decode received bytes into msg, fixing proton 0.37's pn_message_decode():
 * the message is cleared first (proton keeps stale fields); several Data
 * sections are joined into one binary body (proton keeps only the last:
 * payload loss); a message-id of another integer type (int, long, uint...
 * as Java peers send it) is kept as a ulong (proton drops it). Refuses
 * (GW_ERR_SPEC_BODY + why) empty or malformed input, a section proton
 * would silently truncate (> 65535 values), mixed body kinds, more than one
 * AmqpValue or AmqpSequence section, and symbol-described sections (which
 * proton 0.37 misreads). On error msg is left cleared. Allocates only when
 * joining several Data sections. Follow with gw_spec_decode().
 */
gw_err_t gw_spec_message_decode(pn_message_t *msg, const char *bytes, size_t size, char *why,
                                size_t whylen);

/* Encoders: msg is cleared first, then filled. Strings are copied by proton.
 * Caller bugs (NULL msg, QoS > 2, packet id 0 or > 65535, no entries for
 * SUBSCRIBE/UNSUBSCRIBE, more than GW_SPEC_MAX_ENTRIES, NUL inside a topic)
 * give GW_ERR_INVAL; on any error msg is left cleared. */
/** AMQP_PUBLISH: no subject, `to`, annotations, durable = qos > 0, delivery-count, message-id if has_message_id, Data body. */
gw_err_t gw_spec_encode_publish(pn_message_t *msg, const gw_spec_publish_t *p);
/** AMQP_WILL: subject will, `to` = will topic, annotations, durable = qos > 0, Data body. */
gw_err_t gw_spec_encode_will(pn_message_t *msg, const gw_spec_publish_t *will);
gw_err_t gw_spec_encode_will_clear(pn_message_t *msg);
/** AMQP_WILL_PUBLISH (spec 3.4a): subject will-publish; reason (may be NULL)
 * as the application property "reason". Set the correlation-id after. */
gw_err_t gw_spec_encode_will_publish(pn_message_t *msg, const char *reason);
/** Sets msg's correlation-id to the string id[0..len) (shared will link:
 * the client id, spec 3.4a). */
gw_err_t gw_spec_set_correlation_id(pn_message_t *msg, const char *id, size_t len);
/** AMQP_LIST: correlation-id = publish address, reply-to = control address of client_id. */
gw_err_t gw_spec_encode_list(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                             const char *client_id, size_t id_len);
/** AMQP_SUBSCRIPTIONS without x-opt-session-present (older EnMasse form):
 * AmqpValue map filter -> QoS (count may be 0). Prefer gw_spec_encode_session(). */
gw_err_t gw_spec_encode_subscriptions(pn_message_t *msg, const gw_spec_entry_t *entries,
                                      size_t count);
/** AMQP_SUBSCRIPTIONS as spec 3.6 wants it: x-opt-session-present (bool) + the map. */
gw_err_t gw_spec_encode_session(pn_message_t *msg, bool session_present,
                                const gw_spec_entry_t *entries, size_t count);
/** AMQP_CLOSE: correlation-id = publish address of client_id. */
gw_err_t gw_spec_encode_close(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                              const char *client_id, size_t id_len);
/** Adds the shared-delivery registration annotations (spec 3.12) to an
 * AMQP_LIST/AMQP_CLOSE just encoded (window 0: left out, for OFFLINE). */
gw_err_t gw_spec_add_delivery(pn_message_t *msg, const char *link, uint32_t window,
                              uint64_t serial);
/** The delivery-annotation x-opt-mqtt-client-serial of a delivery on a
 * shared delivery link (spec 3.12), replacing msg's delivery annotations. */
gw_err_t gw_spec_set_delivery_serial(pn_message_t *msg, uint64_t serial);
/** AMQP_OFFLINE (spec 3.12): correlation-id, delivery link and serial. */
gw_err_t gw_spec_encode_offline(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                const char *client_id, size_t id_len, const char *link,
                                uint64_t serial);
/** AMQP_SUBSCRIBE: message-id = packet_id, correlation-id, AmqpValue map filter -> QoS. */
gw_err_t gw_spec_encode_subscribe(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                  const char *client_id, size_t id_len, uint16_t packet_id,
                                  const gw_spec_entry_t *entries, size_t count);
/** AMQP_UNSUBSCRIBE: message-id = packet_id, correlation-id, AmqpValue list of filters (qos ignored). */
gw_err_t gw_spec_encode_unsubscribe(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                    const char *client_id, size_t id_len, uint16_t packet_id,
                                    const gw_spec_entry_t *entries, size_t count);
/** AMQP_PUBREL: message-id = the AMQP_PUBLISH's message-id, a packet id 1..65535 (ulong). */
gw_err_t gw_spec_encode_pubrel(pn_message_t *msg, uint64_t message_id);

/** "AMQP_PUBLISH", "AMQP_SUBSCRIBE", ...; never NULL. */
const char *gw_spec_kind_name(gw_spec_kind_t kind);

#endif
