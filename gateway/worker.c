/*
 * worker.c - one worker thread: event_base, SO_REUSEPORT listeners (one per
 * --mqtt-listen address, the kernel spreads connections over the workers),
 * AMQP connections (shared mode: one per destination URL, reconnecting),
 * cross-thread requests (takeover close, stop).
 */
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "gateway.h"

static void accept_any(gw_worker_t *w, evutil_socket_t fd, struct sockaddr *sa, int salen,
                       int kind)
{
    if (w->stopping) {
        evutil_closesocket(fd);
        return;
    }
    gw_client_accept(w, fd, sa, salen, kind);
}

static void accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    accept_any(arg, fd, sa, salen, GW_LST_TCP);
}

static void accept_tls_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    accept_any(arg, fd, sa, salen, GW_LST_TLS);
}

static void accept_iot_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    accept_any(arg, fd, sa, salen, GW_LST_TCP | GW_LST_IOT);
}

static void accept_iots_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                           int salen, void *arg)
{
    accept_any(arg, fd, sa, salen, GW_LST_TLS | GW_LST_IOT);
}

static void accept_error_cb(struct evconnlistener *lst, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    GW_LOG_WARN(GW_MOD, NULL, "accept: %s", evutil_socket_error_to_string(e));
}

static gw_err_t open_listener(gw_worker_t *w, const char *spec, bool tls, bool iot)
{
    const char *opt = iot ? (tls ? "--iots-listen" : "--iot-listen")
                          : (tls ? "--mqtts-listen" : "--mqtt-listen");
    evconnlistener_cb cb = iot ? (tls ? accept_iots_cb : accept_iot_cb)
                               : (tls ? accept_tls_cb : accept_cb);
    char host[256], port_s[8];
    uint16_t port = 0;
    struct addrinfo hints, *res = NULL;
    gw_err_t err = GW_OK;

    if (gw_config_parse_hostport(spec, host, sizeof(host), &port) != GW_OK)
        return GW_ERR_CONFIG;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port_s, sizeof(port_s), "%u", (unsigned)port);
    int rc = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &res);
    if (rc != 0 || !res) {
        GW_LOG_ERROR(GW_MOD, NULL, "%s %s: %s", opt, spec, gai_strerror(rc));
        return GW_ERR_CONFIG;
    }
    struct evconnlistener **n = realloc(w->listeners, (w->nlisteners + 1) * sizeof(*n));
    if (!n) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    w->listeners = n;
    /* Every worker binds the same address with SO_REUSEPORT. */
    struct evconnlistener *l = evconnlistener_new_bind(
        w->base, cb, w,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT, 1024, res->ai_addr,
        (int)res->ai_addrlen);
    if (!l) {
        int e = EVUTIL_SOCKET_ERROR();
        GW_LOG_ERROR(GW_MOD, NULL, "%s %s: %s", opt, spec, evutil_socket_error_to_string(e));
        err = GW_ERR_IO;
        goto cleanup;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    /* Accepted sockets inherit TCP_NODELAY from the listener (Linux): no
     * setsockopt per connection. */
    int one = 1;
    setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    w->listeners[w->nlisteners++] = l;
cleanup:
    freeaddrinfo(res);
    return err;
}

static void close_listeners(gw_worker_t *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        evconnlistener_free(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}

gw_dest_t *gw_worker_dest(gw_worker_t *w, size_t index)
{
    if (!w->dests || index >= w->gw->routes.ndest)
        return NULL;
    return &w->dests[index];
}

void gw_worker_maybe_exit(gw_worker_t *w)
{
    bool pending = false;
    if (!w->stopping || w->nclients > 0 || !w->dests)
        return;
    for (size_t d = 0; d < w->gw->routes.ndest; d++) {
        if (w->dests[d].conn)
            pending = true;
        if (w->dests[d].conn && !w->dests[d].closing) {
            /* Clients are gone: close the connections, wait for CLOSED. */
            w->dests[d].closing = true;
            gw_amqp_conn_close(w->dests[d].conn, NULL, NULL);
        }
    }
    if (!pending)
        event_base_loopbreak(w->base);
}

static void begin_stop(gw_worker_t *w)
{
    struct timeval tv;
    if (w->stopping)
        return;
    w->stopping = true;
    close_listeners(w);
    gw_client_t *c = w->clients;
    while (c) {
        gw_client_t *n = c->next;
        gw_client_close(c, GW_CLOSE_CLEAN, "gateway shutting down");
        c = n;
    }
    tv.tv_sec = (time_t)(w->gw->cfg->shutdown_timeout_ms / 1000);
    tv.tv_usec = (suseconds_t)((w->gw->cfg->shutdown_timeout_ms % 1000) * 1000);
    evtimer_add(w->stop_timer, &tv);
    gw_worker_maybe_exit(w);
}

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_worker_t *w = arg;
    GW_LOG_WARN(GW_MOD, NULL, "worker %zu: shutdown timeout, forcing exit", w->index);
    event_base_loopbreak(w->base);
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_worker_t *w = arg;
    uint64_t serials[64];
    bool stop;

    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&w->ctl_mu);
        stop = w->stop_requested;
        while (n < 64 && w->nkill > 0)
            serials[n++] = w->kill_serials[--w->nkill];
        pthread_mutex_unlock(&w->ctl_mu);
        for (size_t i = 0; i < n; i++) {
            gw_client_t *c = gw_client_find_serial(w, serials[i]);
            if (c && c->state != GW_CLIENT_CLOSING) {
                GW_STAT_INC(w, takeovers);
                gw_client_close(c, GW_CLOSE_TAKEOVER, "taken over by a new connection");
            }
        }
        if (n < 64)
            break;
    }
    if (stop)
        begin_stop(w);
}

void gw_worker_request_stop(gw_worker_t *w)
{
    pthread_mutex_lock(&w->ctl_mu);
    w->stop_requested = true;
    pthread_mutex_unlock(&w->ctl_mu);
    event_active(w->ctl_ev, EV_READ, 0);
}

void gw_worker_request_kill(gw_worker_t *w, uint64_t serial)
{
    pthread_mutex_lock(&w->ctl_mu);
    if (w->nkill == w->capkill) {
        size_t cap = w->capkill ? w->capkill * 2 : 16;
        uint64_t *n = realloc(w->kill_serials, cap * sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&w->ctl_mu);
            return; /* the services still steal the old links */
        }
        w->kill_serials = n;
        w->capkill = cap;
    }
    w->kill_serials[w->nkill++] = serial;
    pthread_mutex_unlock(&w->ctl_mu);
    event_active(w->ctl_ev, EV_READ, 0);
}

char gw_link_reaping;

/* Free the links released during the last batches of proton events. */
static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_worker_t *w = arg;
    (void)fd;
    (void)what;
    for (size_t i = 0; i < w->nreap; i++)
        pn_link_free(w->reap[i].link);
    w->nreap = 0;
}

void gw_worker_reap_forget(gw_worker_t *w, pn_connection_t *pc)
{
    size_t k = 0;
    for (size_t i = 0; i < w->nreap; i++)
        if (w->reap[i].conn != pc)
            w->reap[k++] = w->reap[i];
    w->nreap = k;
}

gw_err_t gw_worker_init(gw_worker_t *w, gw_gateway_t *gw, size_t index)
{
    const gw_gateway_config_t *cfg = gw->cfg;
    gw_err_t err = GW_OK;
    char cid[300];

    memset(w, 0, sizeof(*w));
    w->gw = gw;
    w->index = index;
    pthread_mutex_init(&w->ctl_mu, NULL);
    /* epoll changelist: the enable/disable changes a client makes in one
     * loop iteration (stop reading until CONNACK, write interest while
     * output is queued) reach the kernel as one epoll_ctl, not several.
     * Safe here: no descriptor is dup()ed behind libevent's back. */
    struct event_config *ecfg = event_config_new();
    if (ecfg) {
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (!w->base)
        w->base = event_base_new();
    w->msg = pn_message();
    if (!w->base || !w->msg)
        return GW_ERR_NOMEM;
    w->ctl_ev = event_new(w->base, -1, 0, ctl_cb, w);
    w->stop_timer = evtimer_new(w->base, stop_timer_cb, w);
    w->reap_ev = event_new(w->base, -1, 0, reap_cb, w);
    w->dests = calloc(gw->routes.ndest, sizeof(*w->dests));
    if (!w->ctl_ev || !w->stop_timer || !w->reap_ev || !w->dests)
        return GW_ERR_NOMEM;
    for (size_t i = 0; i < cfg->mqtt_listen.count; i++) {
        err = open_listener(w, cfg->mqtt_listen.items[i], false, false);
        if (err != GW_OK)
            return err;
    }
    for (size_t i = 0; i < cfg->mqtts_listen.count; i++) {
        err = open_listener(w, cfg->mqtts_listen.items[i], true, false);
        if (err != GW_OK)
            return err;
    }
    for (size_t i = 0; i < cfg->iot_listen.count; i++) {
        err = open_listener(w, cfg->iot_listen.items[i], false, true);
        if (err != GW_OK)
            return err;
    }
    for (size_t i = 0; i < cfg->iots_listen.count; i++) {
        err = open_listener(w, cfg->iots_listen.items[i], true, true);
        if (err != GW_OK)
            return err;
    }
    err = gw_auth_worker_init(w);
    if (err != GW_OK)
        return err;
    if (cfg->connection_mode == GW_MODE_PER_CLIENT)
        return GW_OK; /* each client opens its own connections at CONNECT */
    gw_amqp_handler_t h = {gw_amqp_events_on_event, gw_amqp_events_on_state};
    for (size_t d = 0; d < gw->routes.ndest; d++) {
        gw_amqp_opts_t o;
        memset(&o, 0, sizeof(o));
        if (cfg->container_id) {
            snprintf(cid, sizeof(cid), "%s-w%zu", cfg->container_id, index);
            o.container_id = cid;
        }
        o.idle_timeout_ms = (uint32_t)cfg->amqp_idle_timeout_ms;
        gw_gateway_amqp_tls_opts(cfg, &o);
        o.sasl_mechs = cfg->amqp_sasl_mechs;
        o.reconnect = true;
        o.reconnect_min_ms = 100;
        o.reconnect_max_ms = 5000;
        w->dests[d].w = w;
        w->dests[d].index = d;
        w->dests[d].conn = gw_amqp_connect(w->base, gw->routes.dest_urls[d], &o, &h, &w->dests[d],
                                           &err);
        if (!w->dests[d].conn) {
            {
                char ub[512];
                GW_LOG_ERROR(GW_MOD, NULL, "AMQP %s: %s",
                             gw_amqp_url_redact(gw->routes.dest_urls[d], ub, sizeof ub),
                             gw_err_str(err));
            }
            return err ? err : GW_ERR_AMQP;
        }
    }
    return GW_OK;
}

static void *worker_main(void *arg)
{
    gw_worker_t *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

gw_err_t gw_worker_start(gw_worker_t *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return GW_ERR_IO;
    w->thread_started = true;
    return GW_OK;
}

void gw_worker_join(gw_worker_t *w)
{
    if (w->thread_started) {
        pthread_join(w->thread, NULL);
        w->thread_started = false;
    }
}

void gw_worker_cleanup(gw_worker_t *w)
{
    /* Runs after the thread ended (or never started). */
    w->stopping = true;
    while (w->clients)
        gw_client_destroy(w->clients);
    close_listeners(w);
    if (w->dests) {
        for (size_t d = 0; d < w->gw->routes.ndest; d++) {
            if (w->dests[d].conn) {
                gw_amqp_conn_destroy(w->dests[d].conn);
                w->dests[d].conn = NULL;
            }
            gw_dest_forget_slots(&w->dests[d]);
            gw_ss_dest_free(&w->dests[d]);
        }
    }
    /* Released links went with their connections: nothing left to free. */
    w->nreap = 0;
    if (w->reap_ev)
        event_del(w->reap_ev);
    free(w->dests);
    free(w->by_serial);
    w->dests = NULL;
    /* TLS bufferevents use deferred callbacks: a freed one whose callback
     * was pending is released when that callback runs. Let it run. */
    gw_auth_worker_cleanup(w);
    if (w->stop_timer)
        event_del(w->stop_timer);
    if (w->base)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    if (w->ctl_ev)
        event_free(w->ctl_ev);
    if (w->stop_timer)
        event_free(w->stop_timer);
    if (w->reap_ev)
        event_free(w->reap_ev);
    free(w->reap);
    if (w->base)
        event_base_free(w->base);
    if (w->msg)
        pn_message_free(w->msg);
    free(w->kill_serials);
    gw_iot_worker_cleanup(w);
    free(w->addr_buf);
    pthread_mutex_destroy(&w->ctl_mu);
    memset(w, 0, sizeof(*w));
}

void gw_gateway_amqp_tls_opts(const gw_gateway_config_t *cfg, gw_amqp_opts_t *o)
{
    /* Used only when a destination URL is amqps:// (the AMQP module decides
     * from the scheme). Verification is on by default: an amqps:// peer
     * whose certificate or name does not check out is refused. */
    o->tls_ca_file = cfg->amqp_tls_ca;
    o->tls_cert_file = cfg->amqp_tls_cert;
    o->tls_key_file = cfg->amqp_tls_key;
    o->tls_verify_peer = cfg->amqp_tls_verify;
}
