/*
 * service.c - scaffolding shared by will-service and subscription-service
 * (gw/service.h): common options, endpoints, process skeleton.
 */
#include "gw/service.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw/log.h"

const char *const gw_svc_log_levels[] = {"error", "warn", "info", "debug", "trace", NULL};
const char *const gw_svc_log_formats[] = {"text", "json", NULL};

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

static bool svc_is_amqp_url(const char *s)
{
    return strncmp(s, "amqp://", 7) == 0 || strncmp(s, "amqps://", 8) == 0;
}

gw_err_t gw_svc_config_check(const gw_svc_config_t *c, char *why, size_t whylen)
{
    char host[256];
    uint16_t port;

    if (!c->listen && !c->connect) {
        snprintf(why, whylen, "one of --listen or --connect is required");
        return GW_ERR_CONFIG;
    }
    if (c->listen && gw_config_parse_hostport(c->listen, host, sizeof host, &port) != GW_OK) {
        snprintf(why, whylen, "--listen: '%s' is not HOST:PORT", c->listen);
        return GW_ERR_CONFIG;
    }
    if (c->connect && !svc_is_amqp_url(c->connect)) {
        snprintf(why, whylen, "--connect: '%s' is not an amqp:// or amqps:// URL", c->connect);
        return GW_ERR_CONFIG;
    }
    if (c->http_listen &&
        gw_config_parse_hostport(c->http_listen, host, sizeof host, &port) != GW_OK) {
        snprintf(why, whylen, "--http-listen: '%s' is not HOST:PORT", c->http_listen);
        return GW_ERR_CONFIG;
    }
    if (c->listen_tls && (!c->tls_cert_file || !c->tls_key_file)) {
        snprintf(why, whylen, "--listen-tls needs --tls-cert-file and --tls-key-file");
        return GW_ERR_CONFIG;
    }
    return GW_OK;
}

void gw_svc_amqp_opts(const gw_svc_config_t *c, bool incoming, gw_amqp_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->container_id = c->container_id;
    o->sasl_mechs = c->sasl_mechs;
    o->tls_ca_file = c->tls_ca_file;
    o->tls_cert_file = c->tls_cert_file;
    o->tls_key_file = c->tls_key_file;
    o->tls_verify_peer = c->tls_verify_peer;
    o->idle_timeout_ms = (uint32_t)c->idle_timeout;
    /* Outgoing: our PLAIN credentials. Listener offering PLAIN: the one
     * account it accepts (verified in constant time by the AMQP module). */
    o->username = c->username;
    o->password = c->password;
    if (incoming)
        o->tls = c->listen_tls;
    else
        o->reconnect = true;
}

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */
/* ------------------------------------------------------------------ */

gw_err_t gw_svc_listen(struct event_base *base, const gw_svc_config_t *c, const char *mod,
                       bool offer_anonymous_relay, gw_amqp_accept_fn accept, void *ctx,
                       gw_amqp_listener_t **out)
{
    char host[256];
    uint16_t port;
    gw_amqp_opts_t opts;
    gw_err_t err = GW_OK;

    *out = NULL;
    if (!c->listen)
        return GW_OK;
    err = gw_config_parse_hostport(c->listen, host, sizeof host, &port);
    if (err != GW_OK)
        return err;
    gw_svc_amqp_opts(c, true, &opts);
    *out = gw_amqp_listen(base, host, port, &opts, offer_anonymous_relay, accept, ctx, &err);
    if (!*out) {
        GW_LOG_ERROR(mod, NULL, "cannot listen on %s: %s", c->listen, gw_err_str(err));
        return err == GW_OK ? GW_ERR_IO : err;
    }
    return GW_OK;
}

gw_amqp_conn_t *gw_svc_connect(struct event_base *base, const gw_svc_config_t *c,
                               const char *mod, const gw_amqp_opts_t *opts,
                               const gw_amqp_handler_t *handler, void *ctx, gw_err_t *err)
{
    gw_amqp_opts_t def;
    gw_amqp_conn_t *conn;

    *err = GW_OK;
    if (!opts) {
        gw_svc_amqp_opts(c, false, &def);
        opts = &def;
    }
    conn = gw_amqp_connect(base, c->connect, opts, handler, ctx, err);
    if (!conn) {
        char ub[512];
        GW_LOG_ERROR(mod, NULL, "cannot connect to %s: %s",
                     gw_amqp_url_redact(c->connect, ub, sizeof ub), gw_err_str(*err));
        if (*err == GW_OK)
            *err = GW_ERR_AMQP;
    }
    return conn;
}

void gw_svc_conns_insert(gw_svc_conns_t *l, gw_svc_conn_t *c, bool outgoing)
{
    c->outgoing = outgoing;
    c->up = false;
    c->prev = NULL;
    c->next = l->head;
    if (l->head)
        l->head->prev = c;
    l->head = c;
}

void gw_svc_conns_remove(gw_svc_conns_t *l, gw_svc_conn_t *c)
{
    gw_svc_conns_state(l, c, GW_AMQP_DOWN);
    if (c->prev)
        c->prev->next = c->next;
    else if (l->head == c)
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

void gw_svc_conns_state(gw_svc_conns_t *l, gw_svc_conn_t *c, gw_amqp_state_t st)
{
    bool up = st == GW_AMQP_UP;
    if (c->up == up)
        return;
    c->up = up;
    if (c->outgoing)
        GW_SVC_ADD(l->routers_up, up ? 1 : -1);
}

void gw_svc_conns_close_all(gw_svc_conns_t *l)
{
    gw_svc_conn_t *next;
    for (gw_svc_conn_t *c = l->head; c; c = next) {
        next = c->next; /* in case CLOSED is reported synchronously */
        if (c->conn)
            gw_amqp_conn_close(c->conn, NULL, NULL);
    }
}

/* ------------------------------------------------------------------ */
/* Histogram                                                           */
/* ------------------------------------------------------------------ */

/* Upper bounds in microseconds; the last bucket is +Inf. */
static const uint64_t svc_hist_bounds_us[GW_SVC_HIST_NBUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000};

void gw_svc_hist_observe(gw_svc_hist_t *h, uint64_t us)
{
    for (size_t i = 0; i < GW_SVC_HIST_NBUCKETS; i++)
        if (i == GW_SVC_HIST_NBUCKETS - 1 || us <= svc_hist_bounds_us[i])
            GW_SVC_INC(h->buckets[i]);
    GW_SVC_ADD(h->sum_us, us);
    GW_SVC_INC(h->count);
}

void gw_svc_hist_write(gw_metrics_writer_t *w, const char *name, const char *help,
                       const gw_svc_hist_t *h)
{
    double bounds[GW_SVC_HIST_NBUCKETS - 1];
    uint64_t cumulative[GW_SVC_HIST_NBUCKETS];
    /* Read the count first: buckets and sum may then only be ahead of it. */
    uint64_t count = GW_SVC_GET(h->count);
    for (size_t i = 0; i < GW_SVC_HIST_NBUCKETS; i++) {
        if (i < GW_SVC_HIST_NBUCKETS - 1)
            bounds[i] = (double)svc_hist_bounds_us[i] / 1e6;
        cumulative[i] = GW_SVC_GET(h->buckets[i]);
    }
    gw_metrics_histogram(w, name, help, GW_SVC_HIST_NBUCKETS, bounds, cumulative,
                         (double)GW_SVC_GET(h->sum_us) / 1e6, count);
}

uint64_t gw_svc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ------------------------------------------------------------------ */
/* Process                                                             */
/* ------------------------------------------------------------------ */

typedef struct svc_proc {
    const gw_svc_def_t *def;
    struct event_base *base;
    void *svc;
    int argc;
    char **argv;
    struct event *stop_timer;
    bool stopping;
} svc_proc_t;

static gw_svc_config_t *svc_common(const gw_svc_def_t *def, void *cfg)
{
    return (gw_svc_config_t *)((char *)cfg + def->common_offset);
}

static void svc_apply_log(const gw_svc_config_t *c)
{
    gw_log_set_level((gw_log_level_t)c->log_level);
    gw_log_set_format((gw_log_format_t)c->log_format);
}

static void svc_stop_bound(evutil_socket_t fd, short what, void *arg)
{
    svc_proc_t *p = arg;
    GW_LOG_WARN(p->def->module, NULL, "stop did not finish in time; exiting");
    event_base_loopbreak(p->base);
}

static void svc_on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    svc_proc_t *p = arg;
    GW_LOG_INFO(p->def->module, NULL, "signal %d: shutting down", (int)sig);
    if (p->stopping)
        return;
    p->stopping = true;
    p->stop_timer = evtimer_new(p->base, svc_stop_bound, p);
    if (p->stop_timer) {
        uint32_t ms = p->def->stop_bound_ms ? p->def->stop_bound_ms : 5000;
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        evtimer_add(p->stop_timer, &tv);
    }
    p->def->stop(p->svc);
}

static void svc_on_hup(evutil_socket_t sig, short what, void *arg)
{
    svc_proc_t *p = arg;
    void *cfg = calloc(1, p->def->cfg_size);
    char why[512];

    if (!cfg) {
        GW_LOG_ERROR(p->def->module, NULL, "SIGHUP: out of memory; configuration unchanged");
        return;
    }
    /* Same sources, same precedence as at start: defaults, --config file,
     * environment, flags. A bad file keeps the running configuration. */
    if (gw_config_load(p->def->spec, cfg, p->argc, p->argv, stderr) != GW_CONFIG_OK) {
        GW_LOG_ERROR(p->def->module, NULL, "SIGHUP: configuration invalid; unchanged");
        free(cfg);
        return;
    }
    if (gw_svc_config_check(svc_common(p->def, cfg), why, sizeof why) != GW_OK ||
        (p->def->check && p->def->check(cfg, why, sizeof why) != GW_OK)) {
        GW_LOG_ERROR(p->def->module, NULL, "SIGHUP: %s; configuration unchanged", why);
        goto cleanup;
    }
    svc_apply_log(svc_common(p->def, cfg));
    GW_LOG_INFO(p->def->module, NULL, "SIGHUP: configuration reloaded log-level=%s",
                gw_log_level_name((gw_log_level_t)svc_common(p->def, cfg)->log_level));
    if (p->def->reload)
        p->def->reload(p->svc, cfg);
cleanup:
    gw_config_free(p->def->spec, cfg);
    free(cfg);
}

static gw_err_t svc_start_http(const gw_svc_def_t *def, const gw_svc_config_t *c, void *svc,
                               gw_http_t **out)
{
    char host[256];
    uint16_t port;
    gw_err_t err;
    gw_http_t *http;

    *out = NULL;
    if (!c->http_listen)
        return GW_OK;
    err = gw_config_parse_hostport(c->http_listen, host, sizeof host, &port);
    if (err != GW_OK)
        return err;
    http = gw_http_new();
    if (!http)
        return GW_ERR_NOMEM;
    if (def->collect)
        gw_http_add_collector(http, def->collect, svc);
    if (def->ready)
        gw_http_set_ready(http, def->ready, svc);
    err = gw_http_start(http, host, port);
    if (err != GW_OK) {
        GW_LOG_ERROR(def->module, NULL, "cannot serve HTTP on %s: %s", c->http_listen,
                     gw_err_str(err));
        gw_http_free(http);
        return err;
    }
    GW_LOG_INFO(def->module, NULL, "http listening on %s port=%u", c->http_listen,
                (unsigned)gw_http_port(http));
    *out = http;
    return GW_OK;
}

int gw_svc_main(const gw_svc_def_t *def, int argc, char **argv)
{
    svc_proc_t p = {.def = def, .argc = argc, .argv = argv};
    struct event *sigs[3] = {NULL, NULL, NULL};
    gw_http_t *http = NULL;
    void *cfg = calloc(1, def->cfg_size);
    bool loaded = false;
    char why[512];
    int status = 1;
    gw_err_t err;

    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", def->spec->program);
        return 1;
    }
    switch (gw_config_load(def->spec, cfg, argc, argv, stderr)) {
    case GW_CONFIG_OK:
        loaded = true;
        break;
    case GW_CONFIG_EXIT:
        status = 0;
        goto cleanup;
    case GW_CONFIG_ERROR:
    default:
        status = 2;
        goto cleanup;
    }
    const gw_svc_config_t *c = svc_common(def, cfg);
    if (gw_svc_config_check(c, why, sizeof why) != GW_OK ||
        (def->check && def->check(cfg, why, sizeof why) != GW_OK)) {
        fprintf(stderr, "%s: %s\n", def->spec->program, why);
        status = 2;
        goto cleanup;
    }
    svc_apply_log(c);
    gw_log_route_libevent();
    signal(SIGPIPE, SIG_IGN);

    p.base = event_base_new();
    if (!p.base) {
        GW_LOG_ERROR(def->module, NULL, "cannot create the event loop");
        goto cleanup;
    }
    err = def->start(p.base, cfg, &p.svc);
    if (err != GW_OK) {
        GW_LOG_ERROR(def->module, NULL, "cannot start: %s", gw_err_str(err));
        goto cleanup;
    }
    sigs[0] = evsignal_new(p.base, SIGTERM, svc_on_stop_signal, &p);
    sigs[1] = evsignal_new(p.base, SIGINT, svc_on_stop_signal, &p);
    sigs[2] = evsignal_new(p.base, SIGHUP, svc_on_hup, &p);
    for (size_t i = 0; i < 3; i++) {
        if (!sigs[i] || evsignal_add(sigs[i], NULL) != 0) {
            GW_LOG_ERROR(def->module, NULL, "cannot install signal handlers");
            goto cleanup;
        }
    }
    if (svc_start_http(def, c, p.svc, &http) != GW_OK)
        goto cleanup;
    if (def->log_ready)
        def->log_ready(p.svc, cfg);
    event_base_dispatch(p.base);
    status = 0;
cleanup:
    /* The HTTP thread reads the service: stop it first. */
    gw_http_free(http);
    for (size_t i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (p.stop_timer)
        event_free(p.stop_timer);
    if (p.svc)
        def->free(p.svc);
    if (p.base)
        event_base_free(p.base);
    if (loaded)
        gw_config_free(def->spec, cfg);
    free(cfg);
    return status;
}
