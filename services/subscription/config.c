/*
 * config.c - subscription-service configuration table (gw/config.h), env prefix SUBS_.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "subs.h"

static const char *const subs_sync_values[] = {"normal", "full", NULL};
static const char *const subs_overflow_values[] = {"drop-new", "drop-oldest", NULL};

#define OPT(name, type, field, min, max, def, help)                                           \
    {name, type, offsetof(subs_config_t, field), min, max, def, NULL, help}
#define OPT_ENUM(name, field, def, values, help)                                              \
    {name, GW_CFG_ENUM, offsetof(subs_config_t, field), 0, 0, def, values, help}

static const gw_config_opt_t subs_opts[] = {
    GW_SVC_CONFIG_OPTS(subs_config_t, common),
    OPT("store", GW_CFG_STRING, store, 1, 4096, "subscription-service.db",
        "SQLite database path (WAL)"),
    OPT_ENUM("store-sync", store_sync, "full", subs_sync_values,
             "full: an accepted message survives power loss (fsync per group commit); "
             "normal: survives a process crash only"),
    OPT("store-cache", GW_CFG_SIZE, store_cache, 64 * 1024, (int64_t)1 << 32, "2M",
        "bound of SQLite's page cache (PRAGMA cache_size): it fills up to this as sessions, "
        "subscriptions and queues are touched and counts in RSS; more only helps large "
        "offline queues"),
    OPT("max-queued-messages", GW_CFG_INT, max_queued_messages, 1, 1000000000, "1000000",
        "offline persistent session: most messages queued (then --overflow-policy)"),
    OPT("max-queued-bytes", GW_CFG_SIZE, max_queued_bytes, 1024, (int64_t)1 << 40, "256M",
        "offline persistent session: most payload bytes queued (then --overflow-policy)"),
    OPT("online-high-watermark", GW_CFG_INT, online_hwm, 2, 1000000000, "10000",
        "online session queue above this many messages: publisher credit is withheld until "
        "every online queue is at or below half of it (back-pressure, never a drop)"),
    OPT("online-high-watermark-bytes", GW_CFG_SIZE, online_hwm_bytes, 2048, (int64_t)1 << 40,
        "64M", "the same high watermark in payload bytes"),
    OPT("backpressure-stall", GW_CFG_DURATION, bp_stall, 10, 3600000, "2s",
        "no queue above the high watermark drained for this long (e.g. its client also "
        "publishes and its gateway waits for credit): publisher credit is given back once"),
    OPT("queue-qos0", GW_CFG_BOOL, queue_qos0, 0, 0, "false",
        "queue QoS 0 messages for offline persistent sessions (default: drop them)"),
    OPT_ENUM("overflow-policy", overflow_policy, "drop-new", subs_overflow_values,
             "full session queue: drop-new drops the arriving message, drop-oldest the oldest "
             "one not in flight; both counted and logged (WARN, at most once a second)"),
    OPT("link-credit", GW_CFG_INT, link_credit, 1, 100000, "1000",
        "credit window of each publisher link and of each control link (L2, which a gateway "
        "may share among its clients); replenished per settled delivery"),
    OPT("max-message-size", GW_CFG_SIZE, max_message_size, 1024, (int64_t)256 << 20, "16M",
        "largest message accepted"),
    OPT("batch-max", GW_CFG_INT, batch_max, 1, 100000, "512",
        "commit the store batch once this many publications wait for it (else once per loop "
        "iteration)"),
    OPT("transient-timeout", GW_CFG_DURATION, transient_timeout, 1, 86400000, "30s",
        "a transient session created by a control message for a client that attaches no "
        "link (or whose links are gone) is dropped after this time"),
    OPT("session-expiry", GW_CFG_DURATION, session_expiry, 0, (int64_t)3650 * 86400000, "0",
        "a persistent session offline this long is deleted with its subscriptions and queued "
        "messages (0 = never; mosquitto's persistent_client_expiration); the time offline is "
        "stored, so it counts across restarts"),
    OPT("qos2-dedupe-max", GW_CFG_INT, qos2_dedupe_max, 0, 10000000, "100000",
        "QoS 2 publications remembered (publisher, packet id) until their sender settles them, "
        "so that a resend after a gateway failure is not published twice; beyond this the "
        "oldest not in flight are forgotten (0 = off)"),
    OPT("control-address", GW_CFG_STRING, control_address, 1, 256, "$mqtt.subscriptionservice",
        "address of the control link (AMQP_LIST/CLOSE/SUBSCRIBE/UNSUBSCRIBE)"),
    OPT("to-prefix", GW_CFG_STRING, to_prefix, 1, 256, "$mqtt.to.",
        "prefix of the per-client addresses <prefix><id>.control / .publish"),
    OPT("pubrel-prefix", GW_CFG_STRING, pubrel_prefix, 1, 256, "$mqtt.",
        "prefix of the per-client PUBREL address <prefix><id>.pubrel"),
};

const gw_config_spec_t subs_config_spec = {
    .program = "subscription-service",
    .summary = "MQTT sessions, subscriptions, retained messages and offline queues over AMQP 1.0",
    .env_prefix = "SUBS_",
    .opts = subs_opts,
    .nopts = sizeof subs_opts / sizeof subs_opts[0],
};

gw_err_t subs_config_check(const subs_config_t *cfg, char *why, size_t whylen)
{
    /* The common options (--listen/--connect, TLS) are checked by gw_svc_config_check. */
    (void)cfg;
    (void)why;
    (void)whylen;
    return GW_OK;
}
