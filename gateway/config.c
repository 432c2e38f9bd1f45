/*
 * config.c - the option table of mqtt-gateway (see config.h for the loader).
 */
#include <stddef.h>

#include "gateway.h"

#define OFF(f) offsetof(gw_gateway_config_t, f)

static const char *const mode_values[] = {"shared", "per-client", NULL};
static const char *const level_values[] = {"error", "warn", "info", "debug", "trace", NULL};
static const char *const format_values[] = {"text", "json", NULL};

static const gw_config_opt_t opts[] = {
    {"mqtt-listen", GW_CFG_LIST, OFF(mqtt_listen), 0, 64, "0.0.0.0:1883", NULL,
     "MQTT listening address HOST:PORT (repeatable)"},
    {"amqp-url", GW_CFG_STRING, OFF(amqp_url), 0, 4096, "amqp://127.0.0.1:5672", NULL,
     "AMQP router/services URL: the default route"},
    {"route", GW_CFG_LIST, OFF(routes), 0, 256, NULL, NULL,
     "PREFIX=URL: target addresses starting with PREFIX go to URL (longest prefix wins)"},
    {"workers", GW_CFG_INT, OFF(workers), 0, 256, "0", NULL,
     "worker threads (0 = number of cores)"},
    {"connection-mode", GW_CFG_ENUM, OFF(connection_mode), 0, 0, "shared", mode_values,
     "shared: one AMQP connection per worker and destination; per-client: one per MQTT client"},
    {"connect-timeout", GW_CFG_DURATION, OFF(connect_timeout_ms), 100, 3600000, "10s", NULL,
     "time allowed for CONNECT to arrive and for the AMQP side to answer it"},
    {"max-packet-size", GW_CFG_SIZE, OFF(max_packet_size), 16, GW_MQTT_MAX_REMAINING_LENGTH,
     "16M", NULL, "largest MQTT remaining length accepted"},
    {"inflight-window", GW_CFG_INT, OFF(inflight_window), 1, 65535, "32", NULL,
     "outbound messages per client unacknowledged at once (credit on the publish link)"},
    {"max-client-id-len", GW_CFG_INT, OFF(max_client_id_len), 23, 65535, "256", NULL,
     "longest client identifier accepted (longer: CONNACK 2)"},
    {"out-buffer-high-watermark", GW_CFG_SIZE, OFF(out_high_watermark), 1024, 1LL << 32, "1M",
     NULL, "client output above this: stop reading it and stop granting credit"},
    {"slow-client-timeout", GW_CFG_DURATION, OFF(slow_client_timeout_ms), 100, 86400000, "30s",
     NULL, "a client above the high watermark this long is disconnected"},
    {"shutdown-timeout", GW_CFG_DURATION, OFF(shutdown_timeout_ms), 100, 60000, "3s", NULL,
     "bound on the clean shutdown after SIGTERM/SIGINT"},
    {"max-topic-links", GW_CFG_INT, OFF(max_topic_links), 1, 4096, "64", NULL,
     "per client and destination: cached per-topic sender links (no anonymous relay)"},
    {"log-level", GW_CFG_ENUM, OFF(log_level), 0, 0, "info", level_values, "log level"},
    {"log-format", GW_CFG_ENUM, OFF(log_format), 0, 0, "text", format_values, "log format"},
    {"lwt-address", GW_CFG_STRING, OFF(lwt_address), 0, 1024, "$mqtt.lwtservice", NULL,
     "address of the Will Service"},
    {"subscription-address", GW_CFG_STRING, OFF(subscription_address), 0, 1024,
     "$mqtt.subscriptionservice", NULL, "address of the Subscription Service"},
    {"to-prefix", GW_CFG_STRING, OFF(to_prefix), 0, 1024, "$mqtt.to.", NULL,
     "prefix of $mqtt.to.<id>.control|publish"},
    {"pubrel-prefix", GW_CFG_STRING, OFF(pubrel_prefix), 0, 1024, "$mqtt.", NULL,
     "prefix of $mqtt.<id>.pubrel"},
    {"container-id", GW_CFG_STRING, OFF(container_id), 0, 256, NULL, NULL,
     "AMQP container id (default: generated)"},
    {"amqp-idle-timeout", GW_CFG_DURATION, OFF(amqp_idle_timeout_ms), 0, 3600000, "0", NULL,
     "AMQP idle time-out of the shared connections (0 = none)"},
};

const gw_config_spec_t gw_gateway_config_spec = {
    .program = "mqtt-gateway",
    .summary = "MQTT 3.1.1 to AMQP 1.0 gateway",
    .env_prefix = "GW_",
    .opts = opts,
    .nopts = sizeof(opts) / sizeof(opts[0]),
};
