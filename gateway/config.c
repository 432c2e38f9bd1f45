/*
 * config.c - the option table of mqtt-gateway (see config.h for the loader).
 */
#include <stddef.h>

#include "gateway.h"

#define OFF(f) offsetof(gw_gateway_config_t, f)

static const char *const mode_values[] = {"shared", "per-client", NULL};
static const char *const level_values[] = {"error", "warn", "info", "debug", "trace", NULL};
static const char *const format_values[] = {"text", "json", NULL};
/* Same order as gw_tls_client_cert_t. */
static const char *const client_cert_values[] = {"none", "optional", "required", NULL};
static const char *const tls_version_values[] = {"1.2", "1.3", NULL};
static const char *const anon_values[] = {"auto", "true", "false", NULL}; /* GW_ANON_* */

static const gw_config_opt_t opts[] = {
    {"mqtt-listen", GW_CFG_LIST, OFF(mqtt_listen), 0, 64, "0.0.0.0:1883", NULL,
     "MQTT listening address HOST:PORT (repeatable)"},
    {"amqp-url", GW_CFG_STRING, OFF(amqp_url), 0, 4096, "amqp://127.0.0.1:5672", NULL,
     "AMQP router/services URL: the default route"},
    {"route", GW_CFG_LIST, OFF(routes), 0, 256, NULL, NULL,
     "PREFIX=URL[;address=TEMPLATE][;relay=auto|never]: target addresses starting with PREFIX go to URL (longest prefix wins); TEMPLATE rewrites publication addresses ({topic} {topic.} {rest} {rest.})"},
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
    {"http-listen", GW_CFG_STRING, OFF(http_listen), 0, 256, NULL, NULL,
     "HOST:PORT serving /healthz, /readyz and /metrics (empty = off)"},
    {"mqtts-listen", GW_CFG_LIST, OFF(mqtts_listen), 0, 64, NULL, NULL,
     "MQTT over TLS listening address HOST:PORT (repeatable; conventional port 8883)"},
    {"tls-cert", GW_CFG_STRING, OFF(tls_cert), 0, 4096, NULL, NULL,
     "PEM server certificate (then intermediates) for --mqtts-listen; reloaded on SIGHUP"},
    {"tls-key", GW_CFG_STRING, OFF(tls_key), 0, 4096, NULL, NULL,
     "PEM private key (unencrypted) of --tls-cert; reloaded on SIGHUP"},
    {"tls-ca", GW_CFG_STRING, OFF(tls_ca), 0, 4096, NULL, NULL,
     "PEM CA bundle that client certificates must chain to (needed unless --tls-client-cert none)"},
    {"tls-client-cert", GW_CFG_ENUM, OFF(tls_client_cert), 0, 0, "none", client_cert_values,
     "client certificates: none (not requested), optional (verified if sent), required"},
    {"tls-min-version", GW_CFG_ENUM, OFF(tls_min_version), 0, 0, "1.2", tls_version_values,
     "lowest TLS version accepted"},
    {"tls-ciphers", GW_CFG_STRING, OFF(tls_ciphers), 0, 4096, NULL, NULL,
     "TLS 1.2 cipher list (default: Mozilla intermediate)"},
    {"password-file", GW_CFG_STRING, OFF(password_file), 0, 4096, NULL, NULL,
     "password file (mqtt-passwd): CONNECT user names are verified locally; reloaded on SIGHUP"},
    {"acl-file", GW_CFG_STRING, OFF(acl_file), 0, 4096, NULL, NULL,
     "ACL file (docs/security.md): SUBSCRIBE filters, PUBLISH and will topics; reloaded on SIGHUP"},
    {"allow-anonymous", GW_CFG_ENUM, OFF(allow_anonymous), 0, 0, "auto", anon_values,
     "CONNECT without user name (nor certificate identity): auto = allowed only without --password-file"},
    {"cert-identity-field", GW_CFG_STRING, OFF(cert_identity_field), 0, 64, "CN", NULL,
     "client certificate subject attribute used as the user name (CN, emailAddress, UID, ...)"},
    {"auth-threads", GW_CFG_INT, OFF(auth_threads), 1, 64, "1", NULL,
     "password verification threads per worker (PBKDF2 never runs on the event loop)"},
    {"max-connections", GW_CFG_INT, OFF(max_connections), 0, 10000000, "100000", NULL,
     "MQTT connections open at once, all listeners and workers (0 = unlimited); more are closed at accept"},
    {"max-connections-per-ip", GW_CFG_INT, OFF(max_connections_per_ip), 0, 10000000, "0", NULL,
     "MQTT connections open at once from one source address (0 = unlimited)"},
    {"max-topic-length", GW_CFG_INT, OFF(max_topic_length), 1, 65535, "8192", NULL,
     "longest topic name or filter in bytes (longer: protocol violation, connection closed)"},
    {"max-topic-levels", GW_CFG_INT, OFF(max_topic_levels), 1, 65535, "128", NULL,
     "most levels in a topic name or filter (more: protocol violation, connection closed)"},
    {"publish-rate", GW_CFG_INT, OFF(publish_rate), 0, 10000000, "0", NULL,
     "PUBLISH packets per second per client (token bucket; 0 = unlimited); above it the socket is not read"},
    {"publish-burst", GW_CFG_INT, OFF(publish_burst), 0, 10000000, "0", NULL,
     "token bucket size of --publish-rate (0 = one second of --publish-rate)"},
    {"max-links-per-client", GW_CFG_INT, OFF(max_links_per_client), 1, 65536, "256", NULL,
     "publishing (per-topic or relay) sender links of one client over all destinations; idle LRU closed"},
    {"max-subscriptions-per-client", GW_CFG_INT, OFF(max_subscriptions), 0, 10000000, "1000",
     NULL, "distinct topic filters one client may hold (0 = unlimited); more get SUBACK 0x80"},
};

const gw_config_spec_t gw_gateway_config_spec = {
    .program = "mqtt-gateway",
    .summary = "MQTT 3.1.1 to AMQP 1.0 gateway",
    .env_prefix = "GW_",
    .opts = opts,
    .nopts = sizeof(opts) / sizeof(opts[0]),
};
