/*
 * error.h - the one error enum of the project.
 *
 * 0 is success. Every fallible function in libgwcore returns gw_err_t (or
 * NULL plus a gw_err_t out-parameter). MQTT CONNACK return codes and AMQP
 * error conditions are derived from these values in exactly one place each
 * (gw_err_connack_code(), gw_err_amqp_condition()).
 */
#ifndef GW_ERROR_H
#define GW_ERROR_H

typedef enum gw_err {
    GW_OK = 0,

    /* generic */
    GW_ERR_NOMEM,             /* allocation failed or memory limit reached */
    GW_ERR_INVAL,             /* invalid argument from the caller (a bug, not input) */
    GW_ERR_AGAIN,             /* incomplete input: feed more bytes */
    GW_ERR_NOSPACE,           /* output buffer too small; *needed says how much */
    GW_ERR_IO,                /* socket / file error (errno holds detail) */
    GW_ERR_TIMEOUT,
    GW_ERR_NOT_FOUND,
    GW_ERR_EXISTS,
    GW_ERR_LIMIT,             /* a configured resource limit was reached */
    GW_ERR_CONFIG,            /* bad configuration value; exit status 2 */
    GW_ERR_STORE,             /* durable store failure */
    GW_ERR_AMQP,              /* AMQP transport / protocol failure */
    GW_ERR_STATE,             /* operation not valid in the current state */

    /* MQTT framing (the fixed header) */
    GW_ERR_MQTT_BAD_TYPE,         /* packet type 0 or 15 (reserved) */
    GW_ERR_MQTT_REMAINING_LENGTH, /* remaining length encoded in more than 4 bytes */
    GW_ERR_MQTT_TOO_LARGE,        /* declared length above the configured maximum */
    GW_ERR_MQTT_RESERVED_FLAGS,   /* MQTT-2.2.2-1 / MQTT-2.2.2-2 */

    /* MQTT decoding (one packet's variable header and payload) */
    GW_ERR_MQTT_TRUNCATED,        /* a field runs past the remaining length */
    GW_ERR_MQTT_TRAILING_BYTES,   /* bytes left after the last field */
    GW_ERR_MQTT_QOS,              /* QoS 3 in a PUBLISH fixed header (MQTT-3.3.1-4) */
    GW_ERR_MQTT_PACKET_ID,        /* packet identifier 0 where one is required (MQTT-2.3.1-1) */
    GW_ERR_MQTT_PROTOCOL_NAME,    /* not "MQTT" (level 4) nor "MQIsdp" (level 3) */
    GW_ERR_MQTT_PROTOCOL_LEVEL,   /* unsupported level: CONNACK 1 (MQTT-3.1.2-2) */
    GW_ERR_MQTT_CONNECT_RESERVED, /* CONNECT flags bit 0 set (MQTT-3.1.2-3) */
    GW_ERR_MQTT_WILL_FLAGS,       /* will QoS/retain without will flag, will QoS 3 (MQTT-3.1.2-11..15) */
    GW_ERR_MQTT_PASSWORD_FLAG,    /* password flag without user name flag (MQTT-3.1.2-22) */
    GW_ERR_MQTT_CLIENT_ID,        /* client identifier rejected: CONNACK 2 */
    GW_ERR_MQTT_UTF8,             /* ill-formed UTF-8, U+0000 or surrogates (MQTT-1.5.3-1/2) */
    GW_ERR_MQTT_TOPIC_EMPTY,      /* zero-length topic name or filter (MQTT-4.7.3-1) */
    GW_ERR_MQTT_TOPIC_WILDCARD,   /* wildcard in a topic name (MQTT-3.3.2-2) */
    GW_ERR_MQTT_TOPIC_FILTER,     /* '#' not last or '+'/'#' not a whole level (MQTT-4.7.1-2/3) */
    GW_ERR_MQTT_TOPIC_TOO_LONG,   /* topic longer or deeper than the configured limit */
    GW_ERR_MQTT_EMPTY_PAYLOAD,    /* SUBSCRIBE/UNSUBSCRIBE without topics (MQTT-3.8.3-3, 3.10.3-2) */
    GW_ERR_MQTT_REQUESTED_QOS,    /* requested QoS > 2 or reserved bits set (MQTT-3.8.3-4) */
    GW_ERR_MQTT_PROTOCOL,         /* any other protocol violation (e.g. second CONNECT) */

    /* spec messages (MQTT over AMQP) */
    GW_ERR_SPEC_SUBJECT,          /* unknown or missing subject */
    GW_ERR_SPEC_FIELD,            /* missing or ill-typed field: amqp:invalid-field */
    GW_ERR_SPEC_BODY,             /* missing or wrong body section: amqp:decode-error */

    GW_ERR__COUNT
} gw_err_t;

/** Short stable name ("mqtt-utf8"), never NULL, for logs and metrics labels. */
const char *gw_err_name(gw_err_t err);
/** Human sentence for logs and AMQP error descriptions, never NULL. */
const char *gw_err_str(gw_err_t err);
/** True for errors that mean "the client broke the MQTT protocol: close it". */
int gw_err_is_mqtt_violation(gw_err_t err);
/** AMQP error condition name for a refusal ("amqp:invalid-field", ...). */
const char *gw_err_amqp_condition(gw_err_t err);

#endif
