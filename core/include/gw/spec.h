/*
 * spec.h - the MQTT-over-AMQP messages of spec/ (build and parse).
 *
 * The one module that knows how each spec message looks on the wire: its
 * subject, which properties and annotations it carries, and its body. Used
 * by the gateway and both services. Decoding is all-or-nothing: a message
 * with a missing `to`, a wrong body type or a bad QoS is refused with a
 * reason and nothing of it is used.
 *
 * Ownership: decoded messages BORROW from the pn_message_t they were
 * decoded from (strings and payloads point into its data) and are valid
 * until that message is cleared, re-decoded or freed. Entry arrays of
 * SUBSCRIBE/UNSUBSCRIBE/SUBSCRIPTIONS are owned by gw_spec_msg_t; release
 * with gw_spec_msg_clear(). Encoders fill a caller-owned pn_message_t after
 * pn_message_clear(), copying what they are given.
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
#define GW_SPEC_SUBJECT_LIST "list"
#define GW_SPEC_SUBJECT_SUBSCRIPTIONS "subscriptions"
#define GW_SPEC_SUBJECT_CLOSE "close"
#define GW_SPEC_SUBJECT_SUBSCRIBE "subscribe"
#define GW_SPEC_SUBJECT_UNSUBSCRIBE "unsubscribe"
#define GW_SPEC_SUBJECT_PUBREL "pubrel"

/* Message annotations. */
#define GW_SPEC_ANNO_RETAIN "x-opt-retain-message"
#define GW_SPEC_ANNO_QOS "x-opt-mqtt-qos"

/* Link error condition used when a newer link with the same name or client
 * id takes over (standard AMQP 1.0 link error). */
#define GW_SPEC_COND_STOLEN "amqp:link:stolen"

/* Upper bound on entries in one SUBSCRIBE/UNSUBSCRIBE/SUBSCRIPTIONS map. */
#define GW_SPEC_MAX_ENTRIES 65535

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

/** Write the per-client address into buf (NUL-terminated). GW_ERR_NOSPACE if it does not fit. */
gw_err_t gw_spec_addr_client(const gw_spec_addrs_t *addrs, gw_spec_client_addr_t which,
                             const char *client_id, size_t id_len, char *buf, size_t cap);
/** Recognise a per-client address; on GW_OK *id points into addr. GW_ERR_NOT_FOUND otherwise. */
gw_err_t gw_spec_addr_parse(const gw_spec_addrs_t *addrs, const char *addr, size_t len,
                            gw_spec_client_addr_t *which, const char **id, size_t *id_len);

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
} gw_spec_kind_t;

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
    gw_spec_str_t topic;   /* `to` */
    gw_spec_str_t payload; /* Data body (bytes, not NUL-terminated) */
    uint8_t qos;           /* x-opt-mqtt-qos, or durable ? 1 : 0 */
    bool retain;           /* x-opt-retain-message */
    bool durable;          /* header durable (encode: = qos > 0) */
    uint32_t delivery_count; /* header; > 0 means MQTT DUP */
    bool has_message_id;
    uint64_t message_id;   /* MQTT packet id (ulong) */
} gw_spec_publish_t;

typedef struct gw_spec_msg {
    gw_spec_kind_t kind;
    /* PUBLISH, WILL: */
    gw_spec_publish_t publish;
    /* LIST, CLOSE, SUBSCRIBE, UNSUBSCRIBE: $mqtt.to.<id>.publish */
    gw_spec_str_t correlation_id;
    /* LIST: $mqtt.to.<id>.control */
    gw_spec_str_t reply_to;
    /* SUBSCRIBE, UNSUBSCRIBE, PUBREL: */
    bool has_message_id;
    uint64_t message_id;
    /* SUBSCRIBE, UNSUBSCRIBE, SUBSCRIPTIONS (owned, gw_spec_msg_clear frees) */
    gw_spec_entry_t *entries;
    size_t count;
} gw_spec_msg_t;

/**
 * Parse msg by its subject. Checks every field the kind requires (types,
 * QoS <= 2, non-empty topics, filter syntax for SUBSCRIBE/UNSUBSCRIBE/
 * SUBSCRIPTIONS, topic-name syntax for PUBLISH/WILL). On error returns
 * GW_ERR_SPEC_SUBJECT / GW_ERR_SPEC_FIELD / GW_ERR_SPEC_BODY / a topic error
 * and writes a one-line reason into why (may be NULL); *out is then empty.
 * Accepts for PUBLISH, from native AMQP senders, an AmqpValue body holding
 * binary or string as well as Data.
 */
gw_err_t gw_spec_decode(pn_message_t *msg, gw_spec_msg_t *out, char *why, size_t whylen);
void gw_spec_msg_clear(gw_spec_msg_t *m);

/* Encoders: msg is cleared first, then filled. Strings are copied by proton. */
gw_err_t gw_spec_encode_publish(pn_message_t *msg, const gw_spec_publish_t *p);
/** AMQP_WILL: subject will, `to` = will topic, annotations, durable = qos > 0, Data body. */
gw_err_t gw_spec_encode_will(pn_message_t *msg, const gw_spec_publish_t *will);
gw_err_t gw_spec_encode_will_clear(pn_message_t *msg);
/** AMQP_LIST: correlation-id = publish address, reply-to = control address of client_id. */
gw_err_t gw_spec_encode_list(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                             const char *client_id, size_t id_len);
gw_err_t gw_spec_encode_subscriptions(pn_message_t *msg, const gw_spec_entry_t *entries,
                                      size_t count);
gw_err_t gw_spec_encode_close(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                              const char *client_id, size_t id_len);
gw_err_t gw_spec_encode_subscribe(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                  const char *client_id, size_t id_len, uint16_t packet_id,
                                  const gw_spec_entry_t *entries, size_t count);
gw_err_t gw_spec_encode_unsubscribe(pn_message_t *msg, const gw_spec_addrs_t *addrs,
                                    const char *client_id, size_t id_len, uint16_t packet_id,
                                    const gw_spec_entry_t *entries, size_t count);
gw_err_t gw_spec_encode_pubrel(pn_message_t *msg, uint64_t message_id);

const char *gw_spec_kind_name(gw_spec_kind_t kind);

#endif
