/*
 * hono.h - Eclipse-Hono-compatible mapping for the IoT platform mode (issue 9).
 *
 * A pure library module: no sockets, no event loop, no clock (callers pass
 * now_ms). It knows Hono's MQTT adapter topic conventions and Hono's AMQP
 * Telemetry, Event and Command & Control message formats, and maps between
 * them. The gateway calls it; see docs/iot-mode.md for the tables.
 *
 *  device PUBLISH topic  --gw_hono_topic_parse-->  gw_hono_topic_t
 *  + identity            --gw_hono_authorize---->  effective tenant/device
 *                        --gw_hono_build_upload->  telemetry/<t> | event/<t>
 *  device SUBSCRIBE      --gw_hono_cmd_filter_parse + gw_hono_authorize,
 *                          gw_hono_build_ttd (ttd -1 / 0 on event/<t>)
 *  AMQP command (command/<t>/<d>) --gw_hono_command_decode--> gw_hono_command_t
 *                        --gw_hono_reqtab_add--> opaque req-id
 *                        --gw_hono_command_topic--> command///req/<req-id>/<name>
 *  device response command///res/<req-id>/<status>
 *                        --gw_hono_reqtab_take + gw_hono_build_command_response
 *                          --> command_response/<t>/<reply-id>
 *
 * Errors: functions return gw_err_t and, where input can be wrong in more
 * than one way, a gw_hono_reason_t naming exactly what was wrong
 * (gw_hono_reason_name() for logs). Classes used:
 *   GW_ERR_NOT_FOUND      not a Hono topic at all (first level unknown)
 *   GW_ERR_MQTT_PROTOCOL  a Hono topic/filter that breaks Hono's syntax
 *   GW_ERR_LIMIT          a bound of this header exceeded (ids, bag, table)
 *   GW_ERR_MQTT_UTF8      a URL-decoded bag name/value is not UTF-8 / has NUL
 *   GW_ERR_SPEC_FIELD     AMQP command message: bad to/subject/reply-to/ids
 *   GW_ERR_SPEC_BODY      payload/content-type combination Hono forbids,
 *                         command body that is not Data/binary/string
 *   GW_ERR_INVAL          caller bug (NULL, wrong kind), GW_ERR_NOMEM
 *
 * Ownership: parsed structs BORROW from the topic bytes given to the parser,
 * except property bag names/values which are URL-decoded into the struct's
 * own buffer (no allocation). Builders clear the pn_message_t first and copy
 * what they are given; on error the message is left cleared.
 */
#ifndef GW_HONO_H
#define GW_HONO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <proton/codec.h>
#include <proton/message.h>

#include "gw/error.h"

/* Hono constants (Hono MQTT adapter user guide, Telemetry/Event/C&C API). */
#define GW_HONO_ORIG_ADAPTER "hono-mqtt"
#define GW_HONO_CT_EMPTY_NOTIFICATION "application/vnd.eclipse-hono-empty-notification"
#define GW_HONO_CT_OCTET_STREAM "application/octet-stream"
#define GW_HONO_ANNO_RETAIN "x-opt-retain"
#define GW_HONO_PROP_DEVICE_ID "device_id"
#define GW_HONO_PROP_TENANT_ID "tenant_id"
#define GW_HONO_PROP_ORIG_ADAPTER "orig_adapter"
#define GW_HONO_PROP_ORIG_ADDRESS "orig_address"
#define GW_HONO_PROP_QOS "qos"
#define GW_HONO_PROP_STATUS "status"
#define GW_HONO_PROP_TTD "ttd"
#define GW_HONO_BAG_CONTENT_TYPE "content-type"
#define GW_HONO_BAG_TTL "hono-ttl"

/* Bounds (checked before anything is copied). */
#define GW_HONO_MAX_ID 256       /* tenant, device, req-id, reply-id, command name: bytes */
#define GW_HONO_MAX_BAG 1024     /* raw property bag after "/?": bytes */
#define GW_HONO_MAX_PROPS 16     /* entries in one property bag */
#define GW_HONO_MAX_TTL_S 4294967u /* hono-ttl in seconds; x1000 fits AMQP's uint ttl */
#define GW_HONO_REQ_ID_LEN 16    /* our req-id tokens: 16 lowercase hex digits */
#define GW_HONO_REQTAB_MAX 65536 /* largest request table */

typedef struct gw_hono_str {
    const char *ptr;
    size_t len;
} gw_hono_str_t;

typedef enum gw_hono_reason {
    GW_HONO_R_NONE = 0,
    /* topic / filter syntax */
    GW_HONO_R_NOT_HONO,         /* first level not telemetry|t|event|e|command|c */
    GW_HONO_R_EMPTY_PATH,       /* topic starts with "/?" */
    GW_HONO_R_LEVELS,           /* wrong number of levels for the endpoint */
    GW_HONO_R_ID_TOO_LONG,      /* tenant/device/req-id above GW_HONO_MAX_ID */
    GW_HONO_R_RESPONSE_LEVEL,   /* command topic whose 4th level is not res|s */
    GW_HONO_R_REQ_ID_EMPTY,     /* command response without request id */
    GW_HONO_R_STATUS,           /* status not 3 digits in 200..599 */
    GW_HONO_R_FILTER,           /* not [c|command]/[tenant|+]/[device|+]/[q|req]/# */
    /* property bag */
    GW_HONO_R_BAG_TOO_LONG,     /* raw bag above GW_HONO_MAX_BAG */
    GW_HONO_R_BAG_TOO_MANY,     /* more than GW_HONO_MAX_PROPS entries */
    GW_HONO_R_BAG_ESCAPE,       /* '%' not followed by two hex digits */
    GW_HONO_R_BAG_EMPTY_NAME,   /* "=v" */
    GW_HONO_R_BAG_DUPLICATE,    /* same name twice (names compare case-insensitively) */
    GW_HONO_R_BAG_RESERVED,     /* name of a property the adapter sets (device_id...) */
    GW_HONO_R_BAG_UTF8,         /* decoded name/value not UTF-8 or holds U+0000 */
    GW_HONO_R_TTL,              /* hono-ttl not decimal digits or above GW_HONO_MAX_TTL_S */
    GW_HONO_R_CONTENT_TYPE,     /* content-type with bytes outside printable ASCII (AMQP symbol) */
    GW_HONO_R_QOS,              /* QoS the endpoint does not take (event with QoS 0) */
    /* payload */
    GW_HONO_R_EMPTY_NO_CONTENT_TYPE, /* empty payload needs a content-type */
    GW_HONO_R_NOTIFICATION_PAYLOAD,  /* empty-notification content-type with a payload */
    /* AMQP command message */
    GW_HONO_R_CMD_ADDRESS,      /* `to` not command/<tenant>/<device> */
    GW_HONO_R_CMD_SUBJECT,      /* missing/empty subject or one with '+', '#' */
    GW_HONO_R_CMD_REPLY_TO,     /* reply-to not command_response/<same tenant>/<reply-id> */
    GW_HONO_R_CMD_CORRELATION,  /* request/response without correlation-id or message-id */
    GW_HONO_R_CMD_BODY,         /* body neither Data nor AmqpValue binary/string */
    /* request table */
    GW_HONO_R_REQ_ID_UNKNOWN,   /* not ours, answered already or expired */
    GW_HONO_R_REQ_ID_WRONG_DEVICE, /* req-id of a command sent to another device */
    GW_HONO_R_TABLE_FULL,       /* too many outstanding requests */
    GW_HONO_R__COUNT
} gw_hono_reason_t;

/** Stable short name ("bag-escape"), never NULL. */
const char *gw_hono_reason_name(gw_hono_reason_t r);

/* ------------------------------------------------------------------ */
/* Device topics                                                       */
/* ------------------------------------------------------------------ */

typedef enum gw_hono_kind {
    GW_HONO_TELEMETRY = 1,
    GW_HONO_EVENT,
    GW_HONO_COMMAND_RESPONSE,
} gw_hono_kind_t;

/** One property bag entry, URL-decoded, NUL-terminated (len excludes NUL). */
typedef struct gw_hono_prop {
    gw_hono_str_t name;
    gw_hono_str_t value;
} gw_hono_prop_t;

/** A parsed device PUBLISH topic. tenant/device/req_id/path borrow from the topic. */
typedef struct gw_hono_topic {
    gw_hono_kind_t kind;
    bool short_form;        /* first level was t, e or c */
    gw_hono_str_t path;     /* topic without "/?<bag>" */
    gw_hono_str_t tenant;   /* len 0: not in the topic (authenticated form) */
    gw_hono_str_t device;   /* len 0: not in the topic */
    gw_hono_str_t req_id;   /* COMMAND_RESPONSE: non-empty */
    uint16_t status;        /* COMMAND_RESPONSE: 200..599 */
    bool has_content_type;  /* bag had content-type (value may be empty) */
    gw_hono_str_t content_type;
    bool has_ttl;           /* bag had hono-ttl */
    uint32_t ttl_s;
    size_t prop_count;      /* other bag entries, in topic order */
    gw_hono_prop_t props[GW_HONO_MAX_PROPS];
    /* private: decoded bag storage */
    char bag_buf[GW_HONO_MAX_BAG + 2 * GW_HONO_MAX_PROPS + 2];
} gw_hono_topic_t;

/**
 * Parse a device PUBLISH topic (already validated as an MQTT topic name):
 *   telemetry|t|event|e [/<tenant> [/<device>]] [/?<bag>]
 *   command|c /<tenant>/<device>/res|s/<req-id>/<status> [/?<bag>]
 * Empty tenant/device levels are allowed ("e//4712", "telemetry//", "c///s/..").
 * The bag starts at the LAST "/?" (as Hono does); it is '&'-separated
 * name[=value] pairs, '+' and %XX decoded, empty segments skipped, names
 * case-insensitive. content-type and hono-ttl go to their own fields, all
 * other names to props[]. A content-type must be printable ASCII (it
 * becomes an AMQP symbol). Returns GW_OK, GW_ERR_MQTT_TOPIC_EMPTY,
 * GW_ERR_NOT_FOUND (GW_HONO_R_NOT_HONO), GW_ERR_MQTT_PROTOCOL, GW_ERR_LIMIT,
 * GW_ERR_MQTT_UTF8 (reason says which; reason may be NULL).
 */
gw_err_t gw_hono_topic_parse(const char *topic, size_t len, gw_hono_topic_t *out,
                             gw_hono_reason_t *reason);

/**
 * QoS rules per endpoint: telemetry 0, 1, 2; event 1, 2 (Hono: QoS 1 only;
 * QoS 0 gives the device no acknowledgement for a message Hono promises to
 * store, so it is refused); command response 0, 1, 2. GW_ERR_MQTT_QOS with
 * GW_HONO_R_QOS otherwise, GW_ERR_INVAL for qos > 2 or an unknown kind.
 */
gw_err_t gw_hono_check_qos(gw_hono_kind_t kind, uint8_t qos, gw_hono_reason_t *reason);

/** A parsed command subscription filter. Strings borrow from the filter. */
typedef struct gw_hono_cmd_filter {
    bool short_command;     /* "c" (else "command") */
    bool short_req;         /* "q" (else "req") */
    gw_hono_str_t tenant;   /* len 0: "" or "+" (Hono 1.x form): not in command topics */
    gw_hono_str_t device;   /* len 0: "" or "+" */
    bool all_devices;       /* device level was "+": a gateway's "all my devices" */
} gw_hono_cmd_filter_t;

/**
 * Parse [command|c]/[<tenant>|+]/[<device>|+]/[req|q]/#. GW_ERR_NOT_FOUND
 * if the first level is not command|c (not ours), GW_ERR_MQTT_PROTOCOL
 * (GW_HONO_R_FILTER) for any other shape, GW_ERR_LIMIT for long ids.
 */
gw_err_t gw_hono_cmd_filter_parse(const char *filter, size_t len, gw_hono_cmd_filter_t *out,
                                  gw_hono_reason_t *reason);

/* ------------------------------------------------------------------ */
/* Identity                                                            */
/* ------------------------------------------------------------------ */

/** An authenticated device: tenant and device id (not the auth-id). */
typedef struct gw_hono_identity {
    gw_hono_str_t tenant;
    gw_hono_str_t device;
} gw_hono_identity_t;

/**
 * Split an MQTT user name "auth-id@tenant" at its LAST '@'. GW_ERR_NOT_FOUND
 * if there is no '@' or either side is empty; GW_ERR_LIMIT if a side is
 * longer than GW_HONO_MAX_ID. Borrows from user.
 */
gw_err_t gw_hono_username_split(const char *user, size_t len, gw_hono_str_t *auth_id,
                                gw_hono_str_t *tenant);

/** May gateway (of tenant) act on behalf of device? Called only with tenant == the gateway's. */
typedef bool (*gw_hono_gateway_fn)(void *arg, gw_hono_str_t tenant, gw_hono_str_t gateway,
                                   gw_hono_str_t device);

typedef struct gw_hono_policy {
    bool allow_unauthenticated;  /* HONO_MQTT_AUTHENTICATIONREQUIRED=false */
    gw_hono_gateway_fn may_act_for; /* NULL: no device is a gateway */
    void *arg;
} gw_hono_policy_t;

typedef enum gw_hono_access {
    GW_HONO_ALLOWED = 0,
    GW_HONO_DENIED_AUTH_REQUIRED, /* unauthenticated client, not allowed by policy */
    GW_HONO_DENIED_IDS_MISSING,   /* unauthenticated client must name tenant and device */
    GW_HONO_DENIED_TENANT,        /* topic names another tenant: always denied */
    GW_HONO_DENIED_DEVICE,        /* another device, and not a gateway for it */
} gw_hono_access_t;

/** "allowed", "auth-required", ... never NULL. */
const char *gw_hono_access_name(gw_hono_access_t a);

/** The effective origin of a message. Strings borrow from the inputs. */
typedef struct gw_hono_target {
    gw_hono_str_t tenant;
    gw_hono_str_t device;
    bool via_gateway;          /* device != the authenticated device */
    gw_hono_str_t gateway;     /* the authenticated device when via_gateway */
} gw_hono_target_t;

/**
 * Decide who a message (or subscription) is for. who NULL = unauthenticated.
 * tenant/device are from the topic (len 0 = not given). Authenticated: a
 * tenant other than who's is DENIED_TENANT whatever the gateway rules say;
 * no device or who's own device is allowed; another device needs
 * policy->may_act_for(who.tenant, who.device, device). Unauthenticated:
 * needs policy->allow_unauthenticated and both ids. *out is set when
 * ALLOWED (out may be NULL).
 */
gw_hono_access_t gw_hono_authorize(const gw_hono_policy_t *policy, const gw_hono_identity_t *who,
                                   gw_hono_str_t tenant, gw_hono_str_t device,
                                   gw_hono_target_t *out);

/**
 * A table of gateway rules: (tenant, gateway device) -> device ids or "*"
 * (every device of that tenant). Hash table, O(1) lookups, copies strings.
 * Not thread-safe for writers; lookups only read.
 */
typedef struct gw_hono_gateways gw_hono_gateways_t;

gw_hono_gateways_t *gw_hono_gateways_new(void);
void gw_hono_gateways_free(gw_hono_gateways_t *g);
/** GW_ERR_INVAL for empty strings, GW_ERR_LIMIT above GW_HONO_MAX_ID, GW_ERR_NOMEM. Idempotent. */
gw_err_t gw_hono_gateways_add(gw_hono_gateways_t *g, const char *tenant, const char *gateway,
                              const char *device);
/** A gw_hono_gateway_fn: arg is the gw_hono_gateways_t. */
bool gw_hono_gateways_allows(void *arg, gw_hono_str_t tenant, gw_hono_str_t gateway,
                             gw_hono_str_t device);

/* ------------------------------------------------------------------ */
/* North-bound messages                                                */
/* ------------------------------------------------------------------ */

typedef struct gw_hono_upload {
    gw_hono_kind_t kind;          /* GW_HONO_TELEMETRY or GW_HONO_EVENT */
    gw_hono_str_t tenant;         /* effective (gw_hono_authorize) */
    gw_hono_str_t device;
    const gw_hono_topic_t *topic; /* content-type, hono-ttl, other props; NULL: none */
    gw_hono_str_t orig_address;   /* MQTT topic name; len 0: property omitted */
    uint8_t qos;                  /* MQTT QoS of the PUBLISH (0..2) */
    bool retain;
    const uint8_t *payload;
    size_t payload_len;
    uint64_t now_ms;              /* creation-time */
} gw_hono_upload_t;

/**
 * Telemetry/event message: address telemetry/<tenant> | event/<tenant>;
 * durable for events; content-type from the bag, else application/
 * octet-stream; an empty payload needs a non-empty content-type
 * (GW_ERR_SPEC_BODY, EMPTY_NO_CONTENT_TYPE) and the empty-notification
 * type needs an empty payload (NOTIFICATION_PAYLOAD); creation-time; ttl =
 * hono-ttl x 1000 ms for events (ignored for telemetry, as Hono does);
 * application properties device_id, tenant_id, orig_adapter, orig_address,
 * qos (int), then the bag's other entries as strings; x-opt-retain = true
 * annotation when retain; body one Data section (none when empty).
 * GW_ERR_INVAL for caller bugs: kind, qos > 2, empty or over-long tenant or
 * device, payload NULL with a length. On error msg is left cleared.
 */
gw_err_t gw_hono_build_upload(pn_message_t *msg, const gw_hono_upload_t *u,
                              gw_hono_reason_t *reason);

/**
 * Empty notification for command readiness (Event API): address
 * event/<tenant>, durable, content-type GW_HONO_CT_EMPTY_NOTIFICATION,
 * creation-time, application properties device_id, tenant_id, orig_adapter,
 * ttd (int: -1 subscribed until further notice, 0 unsubscribed), no body.
 */
gw_err_t gw_hono_build_ttd(pn_message_t *msg, gw_hono_str_t tenant, gw_hono_str_t device,
                           int32_t ttd, uint64_t now_ms);

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

/** A command received from command/<tenant>/<device>. Borrows from the message. */
typedef struct gw_hono_command {
    gw_hono_str_t tenant;       /* from `to` */
    gw_hono_str_t device;
    gw_hono_str_t name;         /* subject */
    bool one_way;               /* no reply-to */
    gw_hono_str_t reply_to;     /* command_response/<tenant>/<reply-id> */
    gw_hono_str_t reply_id;     /* the <reply-id> part of reply_to */
    pn_msgid_t correlation_id;  /* correlation-id, else message-id (PN_NULL if one-way and none) */
    gw_hono_str_t content_type; /* len 0 if none */
    const uint8_t *payload;     /* Data section, or AmqpValue binary/string; NULL/0 if none */
    size_t payload_len;
} gw_hono_command_t;

/**
 * Read a command message (decode received bytes with gw_spec_message_decode
 * first: proton keeps only the last of several Data sections).
 * GW_ERR_SPEC_FIELD: `to` not command/<tenant>/<device> with non-empty ids
 * (CMD_ADDRESS), subject missing/empty/with '+' or '#' or longer than
 * GW_HONO_MAX_ID (CMD_SUBJECT), reply-to not command_response/<same
 * tenant>/<non-empty reply id> (CMD_REPLY_TO), reply-to without
 * correlation-id and message-id (CMD_CORRELATION). GW_ERR_SPEC_BODY
 * (CMD_BODY) for other bodies. *out then holds nothing usable.
 */
gw_err_t gw_hono_command_decode(pn_message_t *msg, gw_hono_command_t *out,
                                gw_hono_reason_t *reason);

/**
 * MQTT topic for a command, following the subscription's spelling:
 *   <c|command>/[<tenant>]/[<device>]/<q|req>/<req-id>/<name>
 * tenant is included when the filter named it; device when the filter named
 * it or when the command is for a device other than subscriber_device (a
 * gateway's "+" subscription). req_id len 0: one-way ("…/req//name").
 * GW_ERR_NOSPACE with *written = bytes needed (NUL excluded) if cap is too
 * small; the topic is NUL-terminated on GW_OK.
 */
gw_err_t gw_hono_command_topic(const gw_hono_cmd_filter_t *sub, gw_hono_str_t subscriber_device,
                               const gw_hono_command_t *cmd, gw_hono_str_t req_id, char *buf,
                               size_t cap, size_t *written);

/**
 * Outstanding request/response commands of one scope (a connection or a
 * device): req-id -> (tenant, device, correlation-id, reply-to). Bounded
 * (max_entries), every entry expires ttl_ms after it was added; FIFO, so
 * expiry is O(1) per entry. req-ids are opaque 16-hex-digit tokens that
 * start at a random 64-bit value per table, so a restarted gateway does not
 * reuse a token a device may still answer. Not thread-safe.
 */
typedef struct gw_hono_reqtab gw_hono_reqtab_t;

/** A request taken out of the table; owned by the caller (gw_hono_request_free). */
typedef struct gw_hono_request {
    gw_hono_str_t tenant;       /* NUL-terminated copies */
    gw_hono_str_t device;
    gw_hono_str_t reply_to;
    pn_msgid_t correlation_id;  /* string/binary bytes owned by the request */
} gw_hono_request_t;

/** max_entries 1..GW_HONO_REQTAB_MAX, ttl_ms > 0; NULL on bad arguments or no memory. */
gw_hono_reqtab_t *gw_hono_reqtab_new(size_t max_entries, uint32_t ttl_ms);
void gw_hono_reqtab_free(gw_hono_reqtab_t *t);
/**
 * Remember a request/response command (cmd->one_way must be false: GW_ERR_INVAL)
 * and write its req-id (GW_HONO_REQ_ID_LEN chars + NUL) into req_id.
 * Expired entries are dropped first; GW_ERR_LIMIT (TABLE_FULL) if the table
 * is still full: refuse the command (AMQP released/rejected), never evict.
 */
gw_err_t gw_hono_reqtab_add(gw_hono_reqtab_t *t, uint64_t now_ms, const gw_hono_command_t *cmd,
                            char req_id[GW_HONO_REQ_ID_LEN + 1], gw_hono_reason_t *reason);
/**
 * Take the request a response refers to: GW_OK moves it to *out (removed
 * from the table: one response per request). GW_ERR_NOT_FOUND with
 * REQ_ID_UNKNOWN (not a token of ours, already answered or expired) or
 * REQ_ID_WRONG_DEVICE (the entry stays for the right device).
 */
gw_err_t gw_hono_reqtab_take(gw_hono_reqtab_t *t, uint64_t now_ms, gw_hono_str_t req_id,
                             gw_hono_str_t tenant, gw_hono_str_t device,
                             gw_hono_request_t **out, gw_hono_reason_t *reason);
/** Drop expired entries; returns how many. */
size_t gw_hono_reqtab_expire(gw_hono_reqtab_t *t, uint64_t now_ms);
size_t gw_hono_reqtab_count(const gw_hono_reqtab_t *t);
void gw_hono_request_free(gw_hono_request_t *r);

/**
 * Command response: address = req->reply_to (command_response/<t>/<reply-id>),
 * correlation-id = req's, creation-time, content-type from topic's bag if
 * any, application properties status (int), device_id, tenant_id,
 * orig_adapter; the bag's other entries as strings; body Data (none when
 * empty). status must be 200..599 (GW_ERR_INVAL otherwise: parse first).
 */
gw_err_t gw_hono_build_command_response(pn_message_t *msg, const gw_hono_request_t *req,
                                        uint16_t status, const gw_hono_topic_t *topic,
                                        const uint8_t *payload, size_t payload_len,
                                        uint64_t now_ms);

#endif
