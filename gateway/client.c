/*
 * client.c - one MQTT connection: socket I/O, framing, the packet
 * dispatcher, timers, flow control and closing.
 *
 * Input: packets are framed in place in the bufferevent's input buffer
 * (gw_mqtt_frame_header + evbuffer_pullup) and decoded there; a packet is
 * drained only once its handler took it. A handler that cannot proceed
 * (no AMQP credit) returns GW_ERR_AGAIN: the packet stays in the buffer, the
 * socket is no longer read, and processing resumes on the next PN_LINK_FLOW
 * (back-pressure for every QoS, no copy of the pending packet).
 *
 * Closing: gw_client_close() does all AMQP work at once (detach links, end
 * sessions, drop every proton pointer) and defers releasing the memory to
 * the event loop, so it is safe from any callback.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "gw/tls.h"

#include "gateway.h"

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void client_timer_cb(evutil_socket_t fd, short what, void *arg);
static void client_slow_cb(evutil_socket_t fd, short what, void *arg);
static void schedule_free(gw_client_t *c);

uint64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void ms_to_tv(int64_t ms, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

const char *gw_client_name(const gw_client_t *c)
{
    return c->id ? c->id : c->peer;
}

static bool serial_map_put(gw_worker_t *w, gw_client_t *c);
static void serial_map_del(gw_worker_t *w, gw_client_t *c);

void gw_client_accept(gw_worker_t *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                      int kind)
{
    const gw_gateway_config_t *cfg = w->gw->cfg;
    gw_client_t *c = calloc(1, sizeof(*c));
    struct timeval tv;

    if (!c)
        goto fail;
    c->w = w;
    c->serial = atomic_fetch_add(&w->gw->next_serial, 1);
    c->state = GW_CLIENT_NEW;
    c->iot = (kind & GW_LST_IOT) != 0;
    kind &= ~GW_LST_IOT;
    c->lst_kind = (uint8_t)kind;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        char a[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", a, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        char a[INET6_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", a, ntohs(in6->sin6_port));
    } else {
        snprintf(c->peer, sizeof(c->peer), "fd%d", (int)fd);
    }
    (void)salen;
    /* Per-IP limit key: the peer without its port. */
    const char *colon = strrchr(c->peer, ':');
    size_t iplen = colon ? (size_t)(colon - c->peer) : strlen(c->peer);
    snprintf(c->ip, sizeof(c->ip), "%.*s", (int)iplen, c->peer);
    if (!gw_limits_conn_take(c)) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->mctx.max_topic_len = (uint16_t)cfg->max_topic_length;
    c->mctx.max_topic_levels = (uint16_t)cfg->max_topic_levels;
    /* TCP_NODELAY: inherited from the listener (worker.c) */

    c->ssn = calloc(w->gw->routes.ndest, sizeof(*c->ssn));
    c->timer = evtimer_new(w->base, client_timer_cb, c);
    c->slow_ev = evtimer_new(w->base, client_slow_cb, c);
    if (kind == GW_LST_TLS) {
        /* The handshake runs under the connect timer (a client can stall it). */
        if (c->ssn && c->timer && c->slow_ev)
            c->bev = gw_tls_server_bufferevent(w->gw->tls, w->base, fd, 0, NULL);
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->ssn || !c->timer || !c->slow_ev || !c->bev || !serial_map_put(w, c))
        goto fail;
    fd = -1; /* owned by the bufferevent now */
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, (size_t)cfg->out_high_watermark / 2, 0);
    c->last_rx_ms = gw_now_ms();
    /* The CONNECT must arrive within connect-timeout. */
    ms_to_tv(cfg->connect_timeout_ms, &tv);
    evtimer_add(c->timer, &tv);
    /* Plain TCP: EV_WRITE is enabled by the first queued write
     * (gw_client_want_write). Enabling it here would add EPOLLOUT to an empty
     * socket: a wake-up and an epoll_ctl(MOD) per connection for nothing.
     * TLS: the bufferevent needs it for the handshake's and records' writes. */
    bufferevent_enable(c->bev, kind == GW_LST_TCP ? EV_READ : EV_READ | EV_WRITE);

    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->nclients++;
    GW_STAT_INC(w, conn_total[c->lst_kind]);
    GW_STAT_INC(w, conn_current[c->lst_kind]);
    GW_LOG_DEBUG(GW_MOD, c->peer, "accepted");
    return;

fail:
    GW_LOG_ERROR(GW_MOD, NULL, "cannot accept a connection: out of memory");
    if (c) {
        gw_limits_conn_release(c);
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->timer)
            event_free(c->timer);
        if (c->slow_ev)
            event_free(c->slow_ev);
        free(c->ssn);
        free(c);
    }
    if (fd >= 0)
        evutil_closesocket(fd);
}

static size_t serial_slot(uint64_t serial, size_t cap)
{
    serial *= 0x9E3779B97F4A7C15ull; /* Fibonacci hashing */
    return (size_t)(serial >> 32) & (cap - 1);
}

static bool serial_map_put(gw_worker_t *w, gw_client_t *c)
{
    if ((w->by_serial_n + 1) * 2 > w->by_serial_cap) {
        size_t cap = w->by_serial_cap ? w->by_serial_cap * 2 : 64;
        gw_client_t **n = calloc(cap, sizeof(*n));
        if (!n)
            return false;
        for (size_t i = 0; i < w->by_serial_cap; i++) {
            gw_client_t *o = w->by_serial[i];
            if (!o)
                continue;
            size_t j = serial_slot(o->serial, cap);
            while (n[j])
                j = (j + 1) & (cap - 1);
            n[j] = o;
        }
        free(w->by_serial);
        w->by_serial = n;
        w->by_serial_cap = cap;
    }
    size_t j = serial_slot(c->serial, w->by_serial_cap);
    while (w->by_serial[j])
        j = (j + 1) & (w->by_serial_cap - 1);
    w->by_serial[j] = c;
    w->by_serial_n++;
    return true;
}

/* Linear probing, deletion by backward shift (no tombstones). */
static void serial_map_del(gw_worker_t *w, gw_client_t *c)
{
    if (!w->by_serial_cap)
        return;
    size_t mask = w->by_serial_cap - 1, i = serial_slot(c->serial, w->by_serial_cap);
    while (w->by_serial[i] && w->by_serial[i] != c)
        i = (i + 1) & mask;
    if (!w->by_serial[i])
        return;
    w->by_serial[i] = NULL;
    w->by_serial_n--;
    for (size_t j = (i + 1) & mask; w->by_serial[j]; j = (j + 1) & mask) {
        size_t home = serial_slot(w->by_serial[j]->serial, w->by_serial_cap);
        /* move j back to the hole i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            w->by_serial[i] = w->by_serial[j];
            w->by_serial[j] = NULL;
            i = j;
        }
    }
}

gw_client_t *gw_client_find_serial(gw_worker_t *w, uint64_t serial)
{
    if (!w->by_serial_cap)
        return NULL;
    size_t mask = w->by_serial_cap - 1;
    for (size_t i = serial_slot(serial, w->by_serial_cap); w->by_serial[i]; i = (i + 1) & mask)
        if (w->by_serial[i]->serial == serial)
            return w->by_serial[i];
    return NULL;
}

gw_dest_t *gw_client_dest(gw_client_t *c, size_t d)
{
    if (c->dests)
        return d < c->w->gw->routes.ndest ? &c->dests[d] : NULL;
    return gw_worker_dest(c->w, d);
}

gw_err_t gw_client_open_dest(gw_client_t *c, size_t d)
{
    gw_dest_t *dest = &c->dests[d];
    gw_amqp_handler_t h = {gw_amqp_events_on_event, gw_amqp_events_on_state};
    gw_amqp_opts_t o;
    gw_err_t err = GW_OK;

    if (dest->conn)
        return GW_OK;
    memset(&o, 0, sizeof(o));
    o.container_id = c->id;
    o.username = c->username;
    o.password = c->password;
    o.sasl_mechs = c->username ? "PLAIN" : NULL;
    gw_gateway_amqp_tls_opts(c->w->gw->cfg, &o);
    /* AMQP idle time-out follows the MQTT keep alive (MQTT-3.1.2-24: 1.5 x). */
    o.idle_timeout_ms = (uint32_t)c->keep_alive * 1500u;
    o.reconnect = false;
    dest->w = c->w;
    dest->owner = c;
    dest->index = d;
    dest->up = false;
    dest->conn = gw_amqp_connect(c->w->base, c->w->gw->routes.dest_urls[d], &o, &h, dest, &err);
    if (!dest->conn)
        return err ? err : GW_ERR_AMQP;
    c->nconns++;
    return GW_OK;
}

gw_err_t gw_client_open_conns(gw_client_t *c)
{
    const gw_gateway_t *gw = c->w->gw;
    char ctl[1024], pub[1024];
    gw_err_t err;

    /* SASL PLAIN credentials were copied at CONNECT (handle_connect.c). */
    c->dests = calloc(gw->routes.ndest, sizeof(*c->dests));
    if (!c->dests)
        return GW_ERR_NOMEM;
    if (gw_spec_addr_client(&gw->addrs, GW_SPEC_ADDR_CONTROL, c->id, c->id_len, ctl, sizeof(ctl)) ||
        gw_spec_addr_client(&gw->addrs, GW_SPEC_ADDR_PUBLISH, c->id, c->id_len, pub, sizeof(pub)))
        return GW_ERR_MQTT_CLIENT_ID;
    const char *addrs[] = {c->has_will ? gw->addrs.lwt : NULL, gw->addrs.subctrl, ctl, pub};
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        if (!addrs[i])
            continue;
        err = gw_client_open_dest(c, gw_routes_lookup(&gw->routes, addrs[i], strlen(addrs[i])));
        if (err != GW_OK)
            return err;
    }
    return GW_OK;
}

static uint64_t id_bit(const gw_client_t *c)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < c->id_len; i++)
        h = (h ^ (uint8_t)c->id[i]) * 16777619u;
    return (uint64_t)1 << (h & 63);
}

pn_session_t *gw_client_session(gw_client_t *c, size_t d)
{
    if (c->ssn[d])
        return c->ssn[d]->pn;
    gw_dest_t *dest = gw_client_dest(c, d);
    if (!dest || !dest->up || !dest->conn)
        return NULL;
    gw_ssn_slot_t *s = dest->cur;
    if (s && c->id && (s->closing_ids & id_bit(c)))
        s = NULL; /* a predecessor's links may still be half-closed there */
    if (!s) {
        pn_connection_t *pc = gw_amqp_conn_pn(dest->conn);
        if (!pc)
            return NULL;
        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        s->pn = pn_session(pc);
        if (!s->pn) {
            free(s);
            return NULL;
        }
        s->dest = dest;
        pn_session_set_context(s->pn, s);
        pn_session_open(s->pn);
        s->next = dest->slots;
        if (dest->slots)
            dest->slots->prev = s;
        dest->slots = s;
        dest->cur = s;
    }
    s->live++;
    if (++s->joined >= (uint32_t)c->w->gw->cfg->session_clients)
        dest->cur = NULL; /* full: the next client begins a new session */
    c->ssn[d] = s;
    return s->pn;
}

void gw_ssn_slot_end(gw_ssn_slot_t *s)
{
    gw_dest_t *dest = s->dest;
    if (s->prev)
        s->prev->next = s->next;
    else
        dest->slots = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (dest->cur == s)
        dest->cur = NULL;
    /* Proton frees the session once the peer's end arrives (amqp_events.c:
     * context NULL and both ends closed). */
    pn_session_set_context(s->pn, NULL);
    pn_session_close(s->pn);
    free(s);
}

void gw_client_leave_session(gw_client_t *c, size_t d)
{
    gw_ssn_slot_t *s = c->ssn[d];
    if (!s)
        return;
    c->ssn[d] = NULL;
    if (--s->live > 0 || s->dest->cur == s)
        return;
    gw_ssn_slot_end(s); /* full and empty */
}

void gw_dest_forget_slots(gw_dest_t *dest)
{
    while (dest->slots) {
        gw_ssn_slot_t *s = dest->slots;
        dest->slots = s->next;
        free(s);
    }
    dest->cur = NULL;
}

void gw_client_flush_amqp(gw_client_t *c)
{
    for (size_t d = 0; d < c->w->gw->routes.ndest; d++) {
        gw_dest_t *dest = gw_client_dest(c, d);
        /* its sessions, and the shared links it uses (L2, L1s, L4s) */
        if ((c->ssn[d] || d == c->ss_dest || d == c->l_publish.dest ||
             (c->has_will && d == c->l_will.dest)) && dest && dest->conn)
            gw_amqp_conn_flush(dest->conn);
    }
}

/* ------------------------------------------------------------------ */
/* Output and flow control                                             */
/* ------------------------------------------------------------------ */

void gw_client_check_output(gw_client_t *c)
{
    if (c->state == GW_CLIENT_CLOSING || c->blocked_output)
        return;
    size_t len = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (len > (size_t)c->w->gw->cfg->out_high_watermark) {
        struct timeval tv;
        c->blocked_output = true;
        ms_to_tv(c->w->gw->cfg->slow_client_timeout_ms, &tv);
        evtimer_add(c->slow_ev, &tv);
        GW_LOG_DEBUG(GW_MOD, gw_client_name(c), "output %zu bytes above the high watermark", len);
        gw_client_update_read(c);
    }
}

void gw_client_write_first(gw_client_t *c, const void *data, size_t len)
{
    /* Plain TCP with nothing queued: write now. The usual CONNACK then
     * costs one send() instead of an EV_WRITE add, a wake-up, a writev and
     * an EV_WRITE delete. TLS and anything left go through the bufferevent. */
    if (c->bev && c->lst_kind == GW_LST_TCP &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        ssize_t n = send(bufferevent_getfd(c->bev), data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            GW_STAT_ADD(c->w, bytes_out, (size_t)n);
            data = (const uint8_t *)data + n;
            len -= (size_t)n;
        }
        if (len == 0)
            return;
    }
    gw_client_write(c, data, len);
}

void gw_client_write(gw_client_t *c, const void *data, size_t len)
{
    if (c->state == GW_CLIENT_CLOSING && !c->bev)
        return;
    bufferevent_write(c->bev, data, len);
    gw_client_want_write(c);
    GW_STAT_ADD(c->w, bytes_out, len);
    gw_client_check_output(c);
}

void gw_client_write_ack(gw_client_t *c, gw_mqtt_type_t type, uint16_t pid)
{
    uint8_t b[4];
    gw_mqtt_encode_ack(type, pid, b);
    gw_client_write(c, b, sizeof(b));
}

void gw_client_replenish(gw_client_t *c, uint32_t n)
{
    if (c->state != GW_CLIENT_CONNECTED || !c->l_publish.pn)
        return;
    if (c->blocked_output) {
        c->owed_credit += n;
        return;
    }
    pn_link_flow(c->l_publish.pn, (int)(n + c->owed_credit));
    c->owed_credit = 0;
}

void gw_client_update_read(gw_client_t *c)
{
    if (!c->bev)
        return;
    /* While CONNECTING the socket stays readable (no epoll_ctl pair per
     * CONNECT): packets a client sends before its CONNACK wait unprocessed
     * in the input buffer, bounded by the read watermark set at CONNECT. */
    bool want = (c->state == GW_CLIENT_NEW || c->state == GW_CLIENT_CONNECTED ||
                 c->state == GW_CLIENT_CONNECTING) &&
                !c->blocked_credit && !c->blocked_output && !c->blocked_rate;
    if (want)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
}

void gw_client_resume(gw_client_t *c)
{
    if (c->state == GW_CLIENT_CLOSING)
        return;
    c->blocked_credit = false;
    gw_client_update_read(c);
    /* Packets may be waiting in the input buffer: run the read callback
     * from the loop, not from inside the caller (an AMQP callback). */
    bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void client_slow_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_client_t *c = arg;
    if (c->blocked_output) {
        GW_STAT_INC(c->w, slow_disconnects);
        gw_client_close(c, GW_CLOSE_BRUTE, "slow client: output above the high watermark too long");
    }
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */
/* ------------------------------------------------------------------ */

/* Release the socket. TLS: close_notify first (keeps the session
 * resumable; does nothing after a failed handshake or a fatal error). */
static void free_bev(gw_client_t *c)
{
    if (!c->bev)
        return;
    if (c->lst_kind == GW_LST_TLS)
        gw_tls_shutdown(bufferevent_openssl_get_ssl(c->bev));
    bufferevent_free(c->bev);
    c->bev = NULL;
}

static void client_free(gw_client_t *c)
{
    gw_worker_t *w = c->w;
    if (c->nconns > 0) {
        /* Per-client mode: its connections still refer to c->dests; the
         * last CLOSED frees it (gw_client_on_conn_closed). */
        c->free_pending = true;
        free_bev(c);
        return;
    }
    free_bev(c);
    if (c->timer)
        event_free(c->timer);
    if (c->slow_ev)
        event_free(c->slow_ev);
    if (c->retry_ev)
        event_free(c->retry_ev);
    if (c->rate_ev)
        event_free(c->rate_ev);
    gw_limits_conn_release(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nclients--;
    serial_map_del(w, c);
    GW_STAT_DEC(w, conn_current[c->lst_kind]);
    free(c->ssn);
    if (c->dests)
        for (size_t d = 0; d < w->gw->routes.ndest; d++) {
            gw_dest_forget_slots(&c->dests[d]);
            gw_ss_dest_free(&c->dests[d]);
        }
    free(c->dests);
    free(c->username);
    free(c->password);
    free(c->user);
    free(c->id);
    free(c);
    gw_worker_maybe_exit(w);
}

void gw_client_on_conn_closed(gw_client_t *c, gw_dest_t *dest)
{
    dest->conn = NULL;
    dest->up = false;
    if (c->nconns > 0)
        c->nconns--;
    if (c->nconns == 0 && c->free_pending)
        schedule_free(c); /* not now: the module still uses dest in this callback */
}

static void client_free_cb(evutil_socket_t fd, short what, void *arg)
{
    client_free(arg);
}

static void schedule_free(gw_client_t *c)
{
    event_del(c->timer);
    event_assign(c->timer, c->w->base, -1, 0, client_free_cb, c);
    event_active(c->timer, EV_TIMEOUT, 0);
}

void gw_link_release(gw_client_t *c, pn_link_t *l, const char *cond, const char *desc)
{
    bool gone = (pn_link_state(l) & PN_REMOTE_CLOSED) != 0;
    pn_link_set_context(l, NULL);
    gw_amqp_link_close(l, cond, desc);
    /* In a shared session a link must be freed on its own (nothing else
     * would before the connection goes): now if the peer has detached
     * already, else when its detach arrives (gw_link_free_released). */
    if (gone) {
        /* Not now: an event of the batch being dispatched may still name
         * it (both detaches of a steal arrive together). */
        gw_worker_t *w = c->w;
        if (w->nreap == w->capreap) {
            size_t cap = w->capreap ? w->capreap * 2 : 16;
            struct gw_reap_item *n = realloc(w->reap, cap * sizeof(*n));
            if (!n)
                return; /* freed with its connection */
            w->reap = n;
            w->capreap = cap;
        }
        w->reap[w->nreap].conn = pn_session_connection(pn_link_session(l));
        w->reap[w->nreap].link = l;
        w->nreap++;
        pn_link_set_context(l, GW_LINK_REAPING);
        event_active(w->reap_ev, EV_TIMEOUT, 0);
        return;
    }
    gw_ssn_slot_t *slot = pn_session_get_context(pn_link_session(l));
    if (slot && c->id) {
        slot->closing++;
        slot->closing_ids |= id_bit(c);
    }
}

void gw_link_free_released(pn_link_t *l)
{
    gw_ssn_slot_t *slot = pn_session_get_context(pn_link_session(l));
    if (slot && slot->closing > 0 && --slot->closing == 0)
        slot->closing_ids = 0;
    if (!(pn_link_state(l) & PN_LOCAL_CLOSED))
        pn_link_close(l);
    pn_link_free(l);
}

/* Release every proton object of the client. DOWN connections have had
 * their pointers dropped already (gw_amqp_events_on_state). */
static void amqp_teardown(gw_client_t *c, gw_close_how_t how, const char *reason)
{
    gw_worker_t *w = c->w;
    gw_glink_t *fixed[] = {&c->l_control, &c->l_publish, &c->l_pubrel};

    if (c->l_will.pn) {
        pn_link_t *l = c->l_will.pn;
        if (how == GW_CLOSE_CLEAN && c->will_done && pn_link_credit(l) > 0 &&
            gw_spec_encode_will_clear(w->msg) == GW_OK) {
            gw_dest_t *dest = gw_client_dest(c, c->l_will.dest);
            pn_delivery_t *dlv = NULL;
            if (gw_amqp_send(dest->conn, l, w->msg, false, &dlv) == GW_OK && dlv)
                pn_delivery_set_context(dlv, GW_DTAG(GW_DK_NONE, 0));
        }
        /* Brute: the Will Service publishes the will. Otherwise it deletes it. */
        if (how == GW_CLOSE_BRUTE)
            gw_link_release(c, l, "amqp:link:detach-forced", reason);
        else
            gw_link_release(c, l, NULL, NULL);
        c->l_will.pn = NULL;
    }
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (fixed[i]->pn) {
            gw_link_release(c, fixed[i]->pn, NULL, NULL);
            fixed[i]->pn = NULL;
        }
    }
    gw_glink_t *tl = c->topic_links;
    while (tl) {
        gw_glink_t *n = tl->next;
        if (tl->pn)
            gw_link_release(c, tl->pn, NULL, NULL);
        free(tl->topic);
        free(tl);
        tl = n;
    }
    c->topic_links = NULL;
    c->ntopic_links = 0;
    for (size_t d = 0; d < w->gw->routes.ndest; d++) {
        if (c->ssn[d]) {
            gw_dest_t *dest = gw_client_dest(c, d);
            gw_client_leave_session(c, d);
            if (dest && dest->conn)
                gw_amqp_conn_flush(dest->conn);
        }
    }
}

static const char *how_name(gw_close_how_t how)
{
    switch (how) {
    case GW_CLOSE_CLEAN:
        return "clean";
    case GW_CLOSE_BRUTE:
        return "brute";
    case GW_CLOSE_TAKEOVER:
        return "takeover";
    case GW_CLOSE_REFUSED:
        return "refused";
    }
    return "?";
}

static void close_common(gw_client_t *c, gw_close_how_t how, const char *reason)
{
    if (c->state == GW_CLIENT_CONNECTED || c->state == GW_CLIENT_CONNECTING)
        GW_LOG_INFO(GW_MOD, gw_client_name(c), "disconnected (%s): %s", how_name(how), reason);
    else
        GW_LOG_DEBUG(GW_MOD, gw_client_name(c), "closed (%s): %s", how_name(how), reason);
    c->state = GW_CLIENT_CLOSING;
    gw_auth_cancel(c);
    if (c->registered) {
        gw_registry_release(c->w->gw->registry, c->id, c->id_len, c->serial);
        c->registered = false;
    }
    event_del(c->timer);
    event_del(c->slow_ev);
    if (c->rate_ev)
        event_del(c->rate_ev);
    if (c->iot)
        gw_iot_close(c); /* before the teardown: ttd=0 goes out on a link still open */
    gw_ss_client_gone(c); /* before c->subs is freed */
    if (c->has_will && c->w->gw->cfg->will_link == GW_WILL_LINK_SHARED)
        gw_wl_client_gone(c, how, reason);
    if (!c->iot && c->w->gw->cfg->delivery_link == GW_WILL_LINK_SHARED)
        gw_dl_client_gone(c); /* before c->out is freed */
    amqp_teardown(c, how, reason);
    if (c->dests) {
        for (size_t d = 0; d < c->w->gw->routes.ndest; d++)
            if (c->dests[d].conn)
                gw_amqp_conn_close(c->dests[d].conn, NULL, NULL);
    }
    gw_outbound_free(c);
    gw_subset_free(c);
    free(c->will_buf);
    c->will_buf = NULL;
    gw_publish_free(c);
    while (c->subs) {
        gw_pending_sub_t *n = c->subs->next;
        free(c->subs);
        c->subs = n;
    }
}

void gw_client_close(gw_client_t *c, gw_close_how_t how, const char *reason)
{
    if (c->state == GW_CLIENT_CLOSING)
        return;
    close_common(c, how, reason);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    schedule_free(c);
}

void gw_client_close_after_flush(gw_client_t *c, gw_close_how_t how, const char *reason)
{
    struct timeval tv = {1, 0};
    if (c->state == GW_CLIENT_CLOSING)
        return;
    close_common(c, how, reason);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        schedule_free(c);
        return;
    }
    /* Write what is queued (e.g. the CONNACK), then free; bounded by 1 s. */
    bufferevent_disable(c->bev, EV_READ);
    gw_client_want_write(c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    event_assign(c->timer, c->w->base, -1, 0, client_free_cb, c);
    evtimer_add(c->timer, &tv);
}

/* ------------------------------------------------------------------ */
/* Input                                                               */
/* ------------------------------------------------------------------ */

static void violation(gw_client_t *c, gw_err_t err, uint8_t header)
{
    char why[200];
    const char *detail = gw_err_str(err);
    gw_mqtt_type_t type = (gw_mqtt_type_t)(header >> 4);

    if (err == GW_ERR_MQTT_PROTOCOL) {
        if (c->state == GW_CLIENT_NEW && type != GW_MQTT_CONNECT)
            detail = "first packet is not CONNECT (MQTT-3.1.0-1)";
        else if (type == GW_MQTT_CONNECT)
            detail = "second CONNECT (MQTT-3.1.0-2)";
        else if (type == GW_MQTT_CONNACK || type == GW_MQTT_SUBACK ||
                 type == GW_MQTT_UNSUBACK || type == GW_MQTT_PINGRESP)
            detail = "packet type only sent by servers";
    }
    GW_STAT_INC(c->w, violations[err < GW_ERR__COUNT ? err : GW_ERR_MQTT_PROTOCOL]);
    snprintf(why, sizeof(why), "protocol violation in %s: %s (%s)", gw_mqtt_type_name(type),
             detail, gw_err_name(err));
    GW_LOG_WARN(GW_MOD, gw_client_name(c), "%s", why);
    gw_client_close(c, GW_CLOSE_BRUTE, why);
}

static void write_connack_and_close(gw_client_t *c, uint8_t rc, const char *reason)
{
    uint8_t b[4] = {0x20, 0x02, 0x00, rc};
    if (rc < 6)
        GW_STAT_INC(c->w, connack_refused[rc]);
    gw_client_write(c, b, sizeof(b));
    gw_client_close_after_flush(c, GW_CLOSE_REFUSED, reason);
}

static gw_err_t dispatch(gw_client_t *c, const gw_mqtt_packet_t *pkt)
{
    static const uint8_t pingresp[2] = {0xD0, 0x00};

    if (c->state == GW_CLIENT_NEW && pkt->type != GW_MQTT_CONNECT)
        return GW_ERR_MQTT_PROTOCOL; /* MQTT-3.1.0-1: CONNECT first */
    switch (pkt->type) {
    case GW_MQTT_CONNECT:
        if (c->state != GW_CLIENT_NEW)
            return GW_ERR_MQTT_PROTOCOL; /* MQTT-3.1.0-2: a second CONNECT */
        /* Until CONNACK what the client sends is kept, unprocessed, up to
         * this much (reading stays on: gw_client_update_read). */
        bufferevent_setwatermark(c->bev, EV_READ, 0, GW_CONNECTING_INPUT_MAX);
        return gw_handle_connect(c, &pkt->u.connect);
    case GW_MQTT_PUBLISH:
        return gw_handle_publish(c, &pkt->u.publish);
    case GW_MQTT_PUBACK:
        return gw_handle_puback(c, pkt->u.ack.packet_id);
    case GW_MQTT_PUBREC:
        return gw_handle_pubrec(c, pkt->u.ack.packet_id);
    case GW_MQTT_PUBREL:
        return gw_handle_pubrel(c, pkt->u.ack.packet_id);
    case GW_MQTT_PUBCOMP:
        return gw_handle_pubcomp(c, pkt->u.ack.packet_id);
    case GW_MQTT_SUBSCRIBE:
        return gw_handle_subscribe(c, &pkt->u.subscribe);
    case GW_MQTT_UNSUBSCRIBE:
        return gw_handle_unsubscribe(c, &pkt->u.unsubscribe);
    case GW_MQTT_PINGREQ:
        gw_client_write(c, pingresp, sizeof(pingresp)); /* MQTT-3.12.4-1 */
        return GW_OK;
    case GW_MQTT_DISCONNECT:
        return gw_handle_disconnect(c);
    default:
        /* CONNACK, SUBACK, UNSUBACK, PINGRESP only flow server -> client. */
        return GW_ERR_MQTT_PROTOCOL;
    }
}

static void process_input(gw_client_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    uint32_t max_packet = (uint32_t)c->w->gw->cfg->max_packet_size;

    while (c->state == GW_CLIENT_NEW || c->state == GW_CLIENT_CONNECTED) {
        if (c->blocked_credit || c->blocked_output || c->blocked_rate)
            break;
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        uint8_t hdr[5];
        size_t n = avail < sizeof(hdr) ? avail : sizeof(hdr);
        uint8_t header = 0;
        size_t hlen = 0;
        uint32_t remaining = 0;
        evbuffer_copyout(in, hdr, n);
        gw_err_t err = gw_mqtt_frame_header(hdr, n, max_packet, &header, &hlen, &remaining);
        if (err == GW_ERR_AGAIN)
            break;
        if (err != GW_OK) {
            violation(c, err, hdr[0]);
            return;
        }
        size_t total = hlen + remaining;
        if (avail < total)
            break;
        /* Contiguous packet: no copy when it lies in one chunk (the usual case). */
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
        if (!p) {
            gw_client_close(c, GW_CLOSE_BRUTE, "out of memory");
            return;
        }
        gw_mqtt_frame_t frame = {header, remaining ? p + hlen : NULL, remaining};
        gw_mqtt_packet_t pkt;
        c->last_rx_ms = gw_now_ms(); /* any control packet counts (MQTT-3.1.2-23) */
        err = gw_mqtt_decode(&c->mctx, &frame, &pkt);
        if (err != GW_OK) {
            if (c->state == GW_CLIENT_NEW && (header >> 4) == GW_MQTT_CONNECT) {
                if (err == GW_ERR_MQTT_PROTOCOL_LEVEL) {
                    /* MQTT-3.1.2-2: CONNACK 1, then close */
                    write_connack_and_close(c, GW_MQTT_CONNACK_BAD_PROTOCOL,
                                            "unsupported protocol level");
                    return;
                }
                if (err == GW_ERR_MQTT_CLIENT_ID) {
                    write_connack_and_close(c, GW_MQTT_CONNACK_ID_REJECTED,
                                            "client identifier rejected");
                    return;
                }
            }
            violation(c, err, header);
            return;
        }
        err = dispatch(c, &pkt);
        if (err == GW_ERR_AGAIN) {
            /* No credit (or no rate token): keep the packet, stop reading
             * until PN_LINK_FLOW (or the rate timer). */
            if (!c->blocked_rate) {
                c->blocked_credit = true;
                GW_STAT_INC(c->w, credit_stalls);
            }
            break;
        }
        if (c->bev)
            evbuffer_drain(in, total);
        GW_STAT_ADD(c->w, bytes_in, total);
        if (err != GW_OK) {
            violation(c, err, header);
            return;
        }
    }
    if (c->state != GW_CLIENT_CLOSING) {
        gw_client_update_read(c);
        gw_client_flush_amqp(c);
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    process_input(arg);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    gw_client_t *c = arg;
    if (c->state == GW_CLIENT_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            schedule_free(c);
        return;
    }
    if (c->blocked_output &&
        evbuffer_get_length(bufferevent_get_output(bev)) <=
            (size_t)c->w->gw->cfg->out_high_watermark / 2) {
        c->blocked_output = false;
        event_del(c->slow_ev);
        if (c->owed_credit)
            gw_client_replenish(c, 0);
        if (c->nheld)
            gw_dl_release_held(c);
        gw_client_flush_amqp(c);
        gw_client_resume(c);
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    gw_client_t *c = arg;
    if (c->state == GW_CLIENT_CLOSING) {
        schedule_free(c);
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        /* TLS handshake done. */
        if ((int)GW_LOG_LEVEL_DEBUG <= gw_log_current_level) {
            char d[160];
            GW_LOG_DEBUG(GW_MOD, c->peer, "TLS %s",
                         gw_tls_describe(bufferevent_openssl_get_ssl(bev), d, sizeof(d)));
        }
        return;
    }
    if ((what & BEV_EVENT_ERROR) && c->lst_kind == GW_LST_TLS) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            /* Routine (scanners, wrong CA, no client certificate): DEBUG. */
            char es[256];
            ERR_error_string_n(e, es, sizeof(es));
            GW_LOG_DEBUG(GW_MOD, c->peer, "TLS error: %s", es);
            gw_client_close(c, GW_CLOSE_BRUTE, "TLS error");
            return;
        }
    }
    if (what & BEV_EVENT_EOF)
        gw_client_close(c, GW_CLOSE_BRUTE, "connection closed by the client without DISCONNECT");
    else if (what & BEV_EVENT_ERROR)
        gw_client_close(c, GW_CLOSE_BRUTE, "socket error");
}

static void client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_client_t *c = arg;
    switch (c->state) {
    case GW_CLIENT_NEW:
        gw_client_close(c, GW_CLOSE_REFUSED, "no CONNECT within connect-timeout");
        break;
    case GW_CLIENT_CONNECTING:
        gw_connect_on_timeout(c);
        break;
    case GW_CLIENT_CONNECTED: {
        /* MQTT-3.1.2-24: no packet for 1.5 x keep alive -> disconnect. A
         * client we stopped reading (back-pressure) is not at fault. */
        uint64_t limit = (uint64_t)c->keep_alive * 1500u;
        uint64_t idle = gw_now_ms() - c->last_rx_ms;
        if (c->blocked_credit || c->blocked_output || c->blocked_rate) {
            c->last_rx_ms = gw_now_ms();
            idle = 0;
        }
        if (idle >= limit) {
            gw_client_close(c, GW_CLOSE_BRUTE, "keep alive expired");
            break;
        }
        struct timeval tv;
        ms_to_tv((int64_t)(limit - idle), &tv);
        evtimer_add(c->timer, &tv);
        break;
    }
    case GW_CLIENT_CLOSING:
        break;
    }
}

void gw_client_start_keepalive(gw_client_t *c)
{
    struct timeval tv;
    event_del(c->timer);
    if (c->keep_alive == 0)
        return;
    ms_to_tv((int64_t)c->keep_alive * 1500, &tv);
    evtimer_add(c->timer, &tv);
}

void gw_client_destroy(gw_client_t *c)
{
    if (c->state != GW_CLIENT_CLOSING)
        close_common(c, GW_CLOSE_CLEAN, "shutdown");
    if (c->dests) {
        for (size_t d = 0; d < c->w->gw->routes.ndest; d++) {
            if (c->dests[d].conn) {
                gw_amqp_conn_destroy(c->dests[d].conn); /* no callbacks */
                c->dests[d].conn = NULL;
            }
        }
    }
    c->nconns = 0;
    client_free(c);
}
