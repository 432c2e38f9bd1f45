/*
 * metrics.c - --http-listen: /healthz, /readyz and /metrics (gw_http, on its
 * own thread).
 *
 * /readyz: ready when every worker's shared AMQP connection to every
 * configured destination is up (per-client mode has no shared connection:
 * ready once started). /metrics: the per-worker counters of gw_worker_stats_t
 * summed at scrape time with relaxed atomic loads; the workers never wait
 * for a scrape.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "gw/http.h"

#include "gateway.h"

/* Sum one counter (its offset in gw_worker_stats_t) over the workers. */
static uint64_t sum_at(const gw_gateway_t *gw, size_t off)
{
    uint64_t s = 0;
    for (size_t i = 0; i < gw->nworkers; i++) {
        const uint64_t *f = (const uint64_t *)((const char *)&gw->workers[i].stats + off);
        s += __atomic_load_n(f, __ATOMIC_RELAXED);
    }
    return s;
}

#define SUM(gw, field) sum_at((gw), offsetof(gw_worker_stats_t, field))

static const char *const lst_names[GW_LST__COUNT] = {"tcp", "tls"};
static const char *const wh_names[GW_WH__COUNT] = {"rejected", "released", "modified"};
static const char *const acld_names[3] = {"publish", "subscribe", "will"};

static void collect(gw_metrics_writer_t *mw, void *arg)
{
    gw_gateway_t *gw = arg;
    char lb[96];

    for (int k = 0; k < GW_LST__COUNT; k++) {
        snprintf(lb, sizeof(lb), "listener=\"%s\"", lst_names[k]);
        gw_metrics_gauge(mw, "mqtt_gateway_connections", "MQTT connections open now", lb,
                         (double)(int64_t)SUM(gw, conn_current[k]));
    }
    for (int k = 0; k < GW_LST__COUNT; k++) {
        snprintf(lb, sizeof(lb), "listener=\"%s\"", lst_names[k]);
        gw_metrics_counter(mw, "mqtt_gateway_connections_total", "MQTT connections accepted", lb,
                           SUM(gw, conn_total[k]));
    }
    for (int rc = 1; rc < 6; rc++) {
        snprintf(lb, sizeof(lb), "code=\"%d\"", rc);
        gw_metrics_counter(mw, "mqtt_gateway_connect_refused_total",
                           "CONNECT refused, by CONNACK return code", lb,
                           SUM(gw, connack_refused[rc]));
    }
    for (int q = 0; q < 3; q++) {
        snprintf(lb, sizeof(lb), "qos=\"%d\"", q);
        gw_metrics_counter(mw, "mqtt_gateway_messages_in_total",
                           "PUBLISH packets from clients forwarded to AMQP, by QoS", lb,
                           SUM(gw, msgs_in[q]));
    }
    for (int q = 0; q < 3; q++) {
        snprintf(lb, sizeof(lb), "qos=\"%d\"", q);
        gw_metrics_counter(mw, "mqtt_gateway_messages_out_total",
                           "PUBLISH packets written to clients, by QoS", lb, SUM(gw, msgs_out[q]));
    }
    gw_metrics_counter(mw, "mqtt_gateway_bytes_in_total", "MQTT bytes received and processed",
                       NULL, SUM(gw, bytes_in));
    gw_metrics_counter(mw, "mqtt_gateway_bytes_out_total", "MQTT bytes queued to clients", NULL,
                       SUM(gw, bytes_out));
    for (int k = 0; k < GW_WH__COUNT; k++) {
        snprintf(lb, sizeof(lb), "outcome=\"%s\"", wh_names[k]);
        gw_metrics_counter(mw, "mqtt_gateway_acks_withheld_total",
                           "PUBACK/PUBREC not sent because AMQP refused the message, by outcome",
                           lb, SUM(gw, withheld[k]));
    }
    for (int e = 1; e < GW_ERR__COUNT; e++) {
        uint64_t v = SUM(gw, violations[e]);
        if (!v && !gw_err_is_mqtt_violation((gw_err_t)e))
            continue;
        snprintf(lb, sizeof(lb), "error=\"%s\"", gw_err_name((gw_err_t)e));
        gw_metrics_counter(mw, "mqtt_gateway_protocol_violations_total",
                           "clients closed for a protocol violation, by error", lb, v);
    }
    gw_metrics_counter(mw, "mqtt_gateway_credit_stalls_total",
                       "times a client's socket was paused for lack of AMQP credit", NULL,
                       SUM(gw, credit_stalls));
    gw_metrics_counter(mw, "mqtt_gateway_slow_client_disconnects_total",
                       "clients disconnected for output above the high watermark too long", NULL,
                       SUM(gw, slow_disconnects));
    gw_metrics_counter(mw, "mqtt_gateway_takeovers_total",
                       "connections closed because a newer one took their client id", NULL,
                       SUM(gw, takeovers));
    gw_metrics_counter(mw, "mqtt_gateway_auth_failed_total",
                       "CONNECTs with a bad user name or password", NULL, SUM(gw, auth_failed));
    gw_metrics_counter(mw, "mqtt_gateway_auth_blocked_total",
                       "CONNECTs refused without a password check: their address reached --auth-fail-limit",
                       NULL, SUM(gw, auth_blocked));
    gw_metrics_counter(mw, "mqtt_gateway_keepalive_refused_total",
                       "CONNECTs refused with CONNACK 2 for a keep alive of 0 or above --keepalive-max",
                       NULL, SUM(gw, keepalive_refused));
    for (int k = 0; k < 3; k++) {
        snprintf(lb, sizeof(lb), "kind=\"%s\"", acld_names[k]);
        gw_metrics_counter(mw, "mqtt_gateway_acl_denied_total",
                           "PUBLISH topics, SUBSCRIBE filters and will topics denied by the ACL",
                           lb, SUM(gw, acl_denied[k]));
    }
    gw_metrics_counter(mw, "mqtt_gateway_connections_refused_total",
                       "connections closed at accept by a limit", "limit=\"max-connections\"",
                       SUM(gw, conn_refused[GW_LIM_MAX_CONN]));
    gw_metrics_counter(mw, "mqtt_gateway_connections_refused_total",
                       "connections closed at accept by a limit",
                       "limit=\"max-connections-per-ip\"", SUM(gw, conn_refused[GW_LIM_PER_IP]));
    gw_metrics_counter(mw, "mqtt_gateway_publish_rate_limited_total",
                       "times a client's reading was paused by --publish-rate", NULL,
                       SUM(gw, rate_limited));
    gw_metrics_counter(mw, "mqtt_gateway_subscriptions_limited_total",
                       "SUBSCRIBE filters refused by --max-subscriptions-per-client", NULL,
                       SUM(gw, subs_limited));
    gw_metrics_counter(mw, "mqtt_gateway_amqp_reconnects_total",
                       "shared AMQP connections re-established after a loss", NULL,
                       SUM(gw, amqp_reconnects));
    gw_iot_metrics(gw, mw); /* per-tenant IoT counters (iot.c) */
}

static bool ready(void *arg, char *why, size_t whylen)
{
    gw_gateway_t *gw = arg;
    if (gw->cfg->connection_mode == GW_MODE_PER_CLIENT)
        return true;
    for (size_t i = 0; i < gw->nworkers; i++) {
        gw_worker_t *w = &gw->workers[i];
        for (size_t d = 0; d < gw->routes.ndest; d++) {
            if (!w->dests || !__atomic_load_n(&w->dests[d].up_pub, __ATOMIC_RELAXED)) {
                snprintf(why, whylen, "worker %zu: AMQP connection to %s is down", i,
                         gw->routes.dest_urls[d]);
                return false;
            }
        }
    }
    return true;
}

gw_err_t gw_metrics_start(gw_gateway_t *gw)
{
    const char *spec = gw->cfg->http_listen;
    char host[256];
    uint16_t port;
    gw_err_t err;

    if (!spec || !*spec)
        return GW_OK;
    if (gw_config_parse_hostport(spec, host, sizeof(host), &port) != GW_OK)
        return GW_ERR_CONFIG;
    gw->http = gw_http_new();
    if (!gw->http)
        return GW_ERR_NOMEM;
    gw_http_add_collector(gw->http, collect, gw);
    gw_http_set_ready(gw->http, ready, gw);
    err = gw_http_start(gw->http, host[0] ? host : "0.0.0.0", port);
    if (err != GW_OK) {
        GW_LOG_ERROR(GW_MOD, NULL, "--http-listen %s: %s", spec, gw_err_str(err));
        gw_http_free(gw->http);
        gw->http = NULL;
        return err;
    }
    GW_LOG_INFO(GW_MOD, NULL, "HTTP health and metrics on %s (port %u)", spec,
                (unsigned)gw_http_port(gw->http));
    return GW_OK;
}

void gw_metrics_stop(gw_gateway_t *gw)
{
    gw_http_free(gw->http);
    gw->http = NULL;
}
