/*
 * options.c - mqtt-load options: one gw_config table (flags, MQTTLOAD_* env,
 * --config JSON file), then the cross-option checks the table cannot express.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define C lt_cfg_t
static const gw_config_opt_t opts[] = {
    GW_CONFIG_STRING(C, host, "host", 255, "127.0.0.1", "MQTT target host (IP literal or name)"),
    GW_CONFIG_INT(C, port, "port", 1, 65535, "1883", "MQTT target port"),
    GW_CONFIG_STRING(C, amqp_url, "amqp-url", 1024, NULL,
                     "AMQP 1.0 peer for receivers (amqp://host:port)"),
    GW_CONFIG_STRING(C, amqp_address, "amqp-address", 1024, NULL, "Source address of the AMQP receivers"),
    GW_CONFIG_INT(C, amqp_receivers, "amqp-receivers", 0, 10000, "0",
                  "Number of AMQP receivers (one connection each)"),
    GW_CONFIG_INT(C, amqp_credit, "amqp-credit", 1, 100000, "1000", "Link credit per AMQP receiver"),
    GW_CONFIG_BOOL(C, amqp_shared, "amqp-shared", "false",
                   "AMQP receivers are competing consumers: track them as one sink"),
    GW_CONFIG_INT(C, publishers, "publishers", 0, 100000, "1", "MQTT publisher connections"),
    GW_CONFIG_INT(C, subscribers, "subscribers", 0, 100000, "1", "MQTT subscriber connections"),
    GW_CONFIG_INT(C, qos, "qos", 0, 2, "0", "QoS of PUBLISH and SUBSCRIBE"),
    GW_CONFIG_SIZE(C, payload, "payload", LT_HDR_SIZE, 256 << 20, "100",
                   "Payload bytes (>= 20: publisher u32, sequence u64, send time u64)"),
    GW_CONFIG_INT(C, rate, "rate", 0, 100000000, "0",
                  "Total publish rate in msg/s over all publishers (0 = as fast as possible)"),
    GW_CONFIG_INT(C, window, "window", 1, 65535, "100", "In-flight QoS 1/2 messages per publisher"),
    GW_CONFIG_INT(C, messages, "messages", 0, INT64_MAX / 2, "0",
                  "Total messages over all publishers (0 = run for --duration)"),
    GW_CONFIG_DURATION(C, duration_ms, "duration", 0, 86400000, "0",
                       "Publishing time (0: 10s, or no limit with --messages); caps a --messages run"),
    GW_CONFIG_DURATION(C, warmup_ms, "warmup", 0, 3600000, "0",
                       "Messages sent during the first part are not measured (rates, latency)"),
    GW_CONFIG_DURATION(C, drain_ms, "drain", 0, 3600000, "5s",
                       "After publishing stops, wait up to this for acks and deliveries"),
    GW_CONFIG_DURATION(C, setup_timeout_ms, "setup-timeout", 1, 3600000, "30s",
                       "Limit for connecting and subscribing every client"),
    GW_CONFIG_STRING(C, topic, "topic", 1024, "bench/%p", "Publish topic; %p = publisher index"),
    GW_CONFIG_STRING(C, sub_topic, "sub-topic", 1024, "bench/#",
                     "Subscription filter; %s = subscriber index"),
    GW_CONFIG_BOOL(C, clean, "clean", "true", "Clean session (--no-clean for persistent sessions)"),
    GW_CONFIG_STRING(C, client_prefix, "client-prefix", 200, "mqtt-load-", "Client identifier prefix"),
    GW_CONFIG_INT(C, keepalive, "keepalive", 0, 65535, "60", "MQTT keep alive in seconds"),
    GW_CONFIG_INT(C, connections, "connections", 0, 1000000, "0",
                  "Connections mode: open N idle clients, report CONNACK rate and RSS"),
    GW_CONFIG_INT(C, connect_concurrency, "connect-concurrency", 1, 100000, "100",
                  "Connections mode: connects in progress at once"),
    GW_CONFIG_DURATION(C, hold_ms, "hold", 0, 86400000, "0",
                       "Connections mode: keep the clients connected this long after the last CONNACK"),
    GW_CONFIG_BOOL(C, will, "will", "false", "Connections mode: CONNECT with a will message"),
    GW_CONFIG_BOOL(C, persistent, "persistent", "false",
                   "Connections mode: clean session false (persistent sessions)"),
    GW_CONFIG_LIST(C, pids, "pid", 64, NULL, "Process whose VmRSS is measured (repeatable)"),
    GW_CONFIG_BOOL(C, json, "json", "false", "Only the JSON line (no summary on stderr)"),
    GW_CONFIG_STRING(C, label, "label", 200, NULL, "Label copied into the JSON line"),
    GW_CONFIG_INT(C, threads, "threads", 1, LT_MAX_WORKERS, "1", "Event loops (threads)"),
    GW_CONFIG_SIZE(C, out_buffer, "out-buffer", 4096, 64 << 20, "64k",
                   "Stop publishing on a connection while this much output is unsent"),
    GW_CONFIG_BOOL(C, spread_source, "spread-source", "true",
                   "Toward 127.0.0.1: bind each client to its own source address in "
                   "127.0.0.2-127.0.0.254 (ephemeral ports of one source run out past ~28k "
                   "connections and TIME_WAITs, and connect() then crawls)"),
    GW_CONFIG_SIZE(C, sndbuf, "sndbuf", 0, 64 << 20, "0",
                   "SO_SNDBUF of MQTT sockets (0 = kernel autotuning); bounds QoS 0 queueing"),
    GW_CONFIG_SIZE(C, max_packet, "max-packet", 16, GW_MQTT_MAX_REMAINING_LENGTH, "16M",
                   "Largest incoming MQTT packet accepted"),
};
#undef C

const gw_config_spec_t lt_cfg_spec = {
    "mqtt-load", "MQTT / AMQP 1.0 load generator and latency meter", "MQTTLOAD_", opts,
    GW_CONFIG_NOPTS(opts)};

char *lt_format_topic(const char *pattern, uint32_t index)
{
    char num[16];
    int nlen = snprintf(num, sizeof(num), "%u", index);
    size_t n = 0;
    for (const char *s = pattern; *s; s++) {
        if (*s == '%' && (s[1] == 'p' || s[1] == 's')) {
            n += (size_t)nlen;
            s++;
        } else if (*s == '%' && s[1] == '%') {
            n++;
            s++;
        } else if (*s == '%') {
            return NULL;
        } else {
            n++;
        }
    }
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *s = pattern; *s; s++) {
        if (*s == '%' && (s[1] == 'p' || s[1] == 's')) {
            memcpy(o, num, (size_t)nlen);
            o += nlen;
            s++;
        } else if (*s == '%') {
            *o++ = '%';
            s++;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

static int check_pattern(const char *name, const char *pattern, bool filter)
{
    char *t = lt_format_topic(pattern, 0);
    if (!t) {
        fprintf(stderr, "mqtt-load: --%s: \"%s\": unknown %% escape (use %%p, %%s, %%%%)\n", name,
                pattern);
        return -1;
    }
    gw_err_t e = filter ? gw_topic_filter_validate(NULL, t, strlen(t))
                        : gw_topic_name_validate(NULL, t, strlen(t));
    if (e != GW_OK)
        fprintf(stderr, "mqtt-load: --%s: \"%s\": %s\n", name, pattern, gw_err_str(e));
    free(t);
    return e == GW_OK ? 0 : -1;
}

gw_config_result_t lt_cfg_load(lt_cfg_t *cfg, int argc, char **argv)
{
    gw_config_result_t r = gw_config_load(&lt_cfg_spec, cfg, argc, argv, NULL);
    if (r != GW_CONFIG_OK)
        return r;
    int bad = 0;
    if (check_pattern("topic", cfg->topic, false) != 0)
        bad = 1;
    if (check_pattern("sub-topic", cfg->sub_topic, true) != 0)
        bad = 1;
    if (cfg->amqp_receivers > 0 && (!cfg->amqp_url || !cfg->amqp_address)) {
        fprintf(stderr, "mqtt-load: --amqp-receivers needs --amqp-url and --amqp-address\n");
        bad = 1;
    }
    if (cfg->amqp_url && cfg->amqp_receivers == 0)
        cfg->amqp_receivers = 1;
    if (cfg->connections == 0 && cfg->publishers == 0 && cfg->subscribers == 0 &&
        cfg->amqp_receivers == 0) {
        fprintf(stderr, "mqtt-load: nothing to do (no publishers, subscribers, receivers or "
                        "--connections)\n");
        bad = 1;
    }
    if (cfg->duration_ms == 0 && cfg->messages == 0)
        cfg->duration_ms = 10000;
    if (cfg->duration_ms > 0 && cfg->warmup_ms >= cfg->duration_ms) {
        fprintf(stderr, "mqtt-load: --warmup must be shorter than --duration\n");
        bad = 1;
    }
    if (bad) {
        gw_config_free(&lt_cfg_spec, cfg);
        return GW_CONFIG_ERROR;
    }
    return GW_CONFIG_OK;
}
