#include "gw/error.h"

#include <stddef.h>

static const struct {
    const char *name;
    const char *text;
} gw_err_table[GW_ERR__COUNT] = {
    [GW_OK] = {"ok", "success"},
    [GW_ERR_NOMEM] = {"nomem", "out of memory"},
    [GW_ERR_INVAL] = {"inval", "invalid argument"},
    [GW_ERR_AGAIN] = {"again", "incomplete input"},
    [GW_ERR_NOSPACE] = {"nospace", "output buffer too small"},
    [GW_ERR_IO] = {"io", "I/O error"},
    [GW_ERR_TIMEOUT] = {"timeout", "timed out"},
    [GW_ERR_NOT_FOUND] = {"not-found", "not found"},
    [GW_ERR_EXISTS] = {"exists", "already exists"},
    [GW_ERR_LIMIT] = {"limit", "resource limit reached"},
    [GW_ERR_CONFIG] = {"config", "bad configuration"},
    [GW_ERR_STORE] = {"store", "durable store failure"},
    [GW_ERR_AMQP] = {"amqp", "AMQP failure"},
    [GW_ERR_STATE] = {"state", "operation not valid in this state"},
    [GW_ERR_MQTT_BAD_TYPE] = {"mqtt-bad-type", "reserved MQTT packet type"},
    [GW_ERR_MQTT_REMAINING_LENGTH] = {"mqtt-remaining-length",
                                      "remaining length longer than 4 bytes"},
    [GW_ERR_MQTT_TOO_LARGE] = {"mqtt-too-large", "packet larger than the maximum packet size"},
    [GW_ERR_MQTT_RESERVED_FLAGS] = {"mqtt-reserved-flags",
                                    "reserved fixed header flags (MQTT-2.2.2-1/2)"},
    [GW_ERR_MQTT_TRUNCATED] = {"mqtt-truncated", "field runs past the end of the packet"},
    [GW_ERR_MQTT_TRAILING_BYTES] = {"mqtt-trailing-bytes", "bytes after the last field"},
    [GW_ERR_MQTT_QOS] = {"mqtt-qos", "QoS 3 is not allowed (MQTT-3.3.1-4)"},
    [GW_ERR_MQTT_PACKET_ID] = {"mqtt-packet-id", "packet identifier 0 (MQTT-2.3.1-1)"},
    [GW_ERR_MQTT_PROTOCOL_NAME] = {"mqtt-protocol-name", "unknown protocol name"},
    [GW_ERR_MQTT_PROTOCOL_LEVEL] = {"mqtt-protocol-level", "unsupported protocol level"},
    [GW_ERR_MQTT_CONNECT_RESERVED] = {"mqtt-connect-reserved",
                                      "CONNECT reserved flag set (MQTT-3.1.2-3)"},
    [GW_ERR_MQTT_WILL_FLAGS] = {"mqtt-will-flags", "inconsistent will flags (MQTT-3.1.2-11..15)"},
    [GW_ERR_MQTT_PASSWORD_FLAG] = {"mqtt-password-flag",
                                   "password flag without user name flag (MQTT-3.1.2-22)"},
    [GW_ERR_MQTT_CLIENT_ID] = {"mqtt-client-id", "client identifier rejected"},
    [GW_ERR_MQTT_UTF8] = {"mqtt-utf8", "ill-formed UTF-8 string (MQTT-1.5.3)"},
    [GW_ERR_MQTT_TOPIC_EMPTY] = {"mqtt-topic-empty", "empty topic (MQTT-4.7.3-1)"},
    [GW_ERR_MQTT_TOPIC_WILDCARD] = {"mqtt-topic-wildcard",
                                    "wildcard in a topic name (MQTT-3.3.2-2)"},
    [GW_ERR_MQTT_TOPIC_FILTER] = {"mqtt-topic-filter", "ill-formed topic filter (MQTT-4.7.1)"},
    [GW_ERR_MQTT_TOPIC_TOO_LONG] = {"mqtt-topic-too-long", "topic too long or too deep"},
    [GW_ERR_MQTT_EMPTY_PAYLOAD] = {"mqtt-empty-payload",
                                   "SUBSCRIBE/UNSUBSCRIBE without topic filters"},
    [GW_ERR_MQTT_REQUESTED_QOS] = {"mqtt-requested-qos",
                                   "requested QoS above 2 or reserved bits (MQTT-3.8.3-4)"},
    [GW_ERR_MQTT_PROTOCOL] = {"mqtt-protocol", "MQTT protocol violation"},
    [GW_ERR_SPEC_SUBJECT] = {"spec-subject", "unknown or missing subject"},
    [GW_ERR_SPEC_FIELD] = {"spec-field", "missing or ill-typed message field"},
    [GW_ERR_SPEC_BODY] = {"spec-body", "missing or wrong message body"},
};

const char *gw_err_name(gw_err_t err)
{
    if ((unsigned)err >= GW_ERR__COUNT || gw_err_table[err].name == NULL)
        return "unknown";
    return gw_err_table[err].name;
}

const char *gw_err_str(gw_err_t err)
{
    if ((unsigned)err >= GW_ERR__COUNT || gw_err_table[err].text == NULL)
        return "unknown error";
    return gw_err_table[err].text;
}

int gw_err_is_mqtt_violation(gw_err_t err)
{
    return err >= GW_ERR_MQTT_BAD_TYPE && err <= GW_ERR_MQTT_PROTOCOL;
}

const char *gw_err_amqp_condition(gw_err_t err)
{
    switch (err) {
    case GW_ERR_SPEC_BODY:
        return "amqp:decode-error";
    case GW_ERR_SPEC_FIELD:
    case GW_ERR_SPEC_SUBJECT:
    case GW_ERR_MQTT_TOPIC_EMPTY:
    case GW_ERR_MQTT_TOPIC_WILDCARD:
    case GW_ERR_MQTT_TOPIC_FILTER:
    case GW_ERR_MQTT_TOPIC_TOO_LONG:
    case GW_ERR_MQTT_UTF8:
    case GW_ERR_MQTT_QOS:
    case GW_ERR_MQTT_REQUESTED_QOS:
        return "amqp:invalid-field";
    case GW_ERR_LIMIT:
        return "amqp:resource-limit-exceeded";
    case GW_ERR_NOT_FOUND:
        return "amqp:not-found";
    case GW_ERR_NOMEM:
    case GW_ERR_STORE:
    case GW_ERR_IO:
        return "amqp:internal-error";
    default:
        return "amqp:internal-error";
    }
}
