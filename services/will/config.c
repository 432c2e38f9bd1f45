/*
 * config.c - will-service configuration table (gw/config.h), env prefix WILL_.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "will.h"

static const char *const will_sync_values[] = {"normal", "full", NULL};

#define OPT(name, type, field, min, max, def, help)                                           \
    {name, type, offsetof(gw_will_config_t, field), min, max, def, NULL, help}
#define OPT_ENUM(name, field, def, values, help)                                              \
    {name, GW_CFG_ENUM, offsetof(gw_will_config_t, field), 0, 0, def, values, help}

static const gw_config_opt_t will_opts[] = {
    GW_SVC_CONFIG_OPTS(gw_will_config_t, common),
    OPT("address", GW_CFG_STRING, address, 1, 1024, "$mqtt.lwtservice",
        "target address of the will links"),
    OPT("publish-url", GW_CFG_STRING, publish_url, 1, 2048, "amqp://127.0.0.1:5672",
        "where wills are published (AMQP_PUBLISH to the will topic)"),
    OPT("store", GW_CFG_STRING, store, 1, 4096, "will-service.db", "SQLite database path"),
    OPT_ENUM("store-sync", store_sync, "full", will_sync_values,
             "full: an accepted will survives power loss (fsync per group commit); normal: "
             "survives a process crash only"),
    OPT("grace-seconds", GW_CFG_INT, grace_seconds, 0, 86400, "30",
        "after a restart, time for the owner of a stored will to re-attach before it is "
        "published"),
    OPT("will-delay", GW_CFG_DURATION, will_delay, 0, 86400000, "0",
        "delay between losing a will link and publishing its will; a re-attach cancels it"),
    OPT("retry-min", GW_CFG_DURATION, retry_min, 1, 3600000, "100ms",
        "first back-off before a will publication is retried"),
    OPT("retry-max", GW_CFG_DURATION, retry_max, 1, 3600000, "10s", "back-off cap"),
    OPT("max-rejects", GW_CFG_INT, max_rejects, 1, 1000000, "5",
        "a will publication rejected this many times is dropped (ERROR log)"),
    OPT("credit", GW_CFG_INT, credit, 1, 10000, "10", "credit granted on each will link"),
    OPT("max-will-size", GW_CFG_SIZE, max_will_size, 1024, 268435456, "1M",
        "largest AMQP_WILL message accepted"),
    OPT("batch-max", GW_CFG_INT, batch_max, 1, 100000, "512",
        "commit the store batch (group commit) once this many will writes wait for it (else "
        "once per loop iteration)"),
};

const gw_config_spec_t gw_will_config_spec = {
    .program = "will-service",
    .summary = "MQTT last will and testament over AMQP 1.0 (durable)",
    .env_prefix = "WILL_",
    .opts = will_opts,
    .nopts = sizeof will_opts / sizeof will_opts[0],
};

gw_err_t gw_will_config_check(const gw_will_config_t *cfg, char *why, size_t whylen)
{
    /* The common options (--listen/--connect, TLS) are checked by gw_svc_config_check. */
    if (strncmp(cfg->publish_url, "amqp://", 7) != 0 &&
        strncmp(cfg->publish_url, "amqps://", 8) != 0) {
        snprintf(why, whylen, "--publish-url: '%s' is not an amqp:// or amqps:// URL",
                 cfg->publish_url);
        return GW_ERR_CONFIG;
    }
    if (cfg->retry_min > cfg->retry_max) {
        snprintf(why, whylen, "--retry-min (%lld ms) is above --retry-max (%lld ms)",
                 (long long)cfg->retry_min, (long long)cfg->retry_max);
        return GW_ERR_CONFIG;
    }
    return GW_OK;
}

void gw_will_config_amqp_opts(const gw_will_config_t *cfg, bool incoming, gw_amqp_opts_t *o)
{
    gw_svc_amqp_opts(&cfg->common, incoming, o);
    if (!incoming) {
        /* Outgoing connections (router, publisher) back off like publications. */
        o->reconnect_min_ms = (uint32_t)cfg->retry_min;
        o->reconnect_max_ms = (uint32_t)cfg->retry_max;
    }
}
