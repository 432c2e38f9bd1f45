/*
 * amqp_conn.c - gw_amqp_conn_t: one pn_connection_driver_t driven from a
 * libevent loop (outgoing connections with reconnect, accepted connections,
 * connections over an existing socket) and the listener.
 *
 * I/O follows proton's c/src/proactor/libuv.c: read(2) straight into the
 * driver's read buffer, drain events into the handler, write(2) from the
 * driver's write buffer, one timer for pn_transport_tick().
 *
 * Re-entrancy: every libevent callback brackets its work with
 * c->dispatching++ / gw_amqp_conn_leave(). gw_amqp_conn_destroy() inside a
 * callback only marks the connection; the memory is released when the
 * outermost bracket is left (Redis freeClientAsync style), and no handler
 * is called once it is marked.
 */
#include "amqp/amqp_internal.h"
#include "gw/amqp.h"
#include "gw/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>
#include <openssl/crypto.h>
#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/connection_driver.h>
#include <proton/logger.h>
#include <proton/object.h>
#include <proton/sasl.h>
#include <proton/ssl.h>
#include <proton/transport.h>

#define GW_AMQP_MOD "amqp"
#define GW_AMQP_CLOSE_TIMEOUT_MS 2000
#define GW_AMQP_CONNECT_TIMEOUT_MS 10000
#define GW_AMQP_RELAY_CAP "ANONYMOUS-RELAY"
#define GW_AMQP_MAX_FRAME_DEFAULT 262144u /* larger frames batch more per write(2) */
#define GW_AMQP_MAX_MESSAGE_DEFAULT ((uint64_t)16 * 1024 * 1024)

/* Key of our pointer in pn_connection_attachments() (address is the key). */
static const char gw_amqp_conn_key = 0;

/* Owned copy of the options one connection or listener needs. */
typedef struct gw_amqp_cfg {
    char *container_id;
    char *hostname;
    char *sasl_mechs;
    char *user;
    char *password;
    uint32_t idle_timeout_ms;
    uint32_t max_frame_size;
    uint64_t max_message_size;
    bool reconnect;
    bool offer_relay;
    uint32_t rc_min_ms;
    uint32_t rc_max_ms;
    bool (*plain_verify)(const char *user, const char *password, void *ctx);
    void *plain_ctx;
    pn_ssl_domain_t *ssl; /* owned; NULL without TLS (accepted conns borrow the listener's) */
} gw_amqp_cfg_t;

typedef enum gw_amqp_timer_mode {
    GW_AMQP_TM_NONE,
    GW_AMQP_TM_RECONNECT,       /* start the next connect attempt */
    GW_AMQP_TM_CONNECT_TIMEOUT, /* non-blocking connect took too long */
    GW_AMQP_TM_CLOSE_TIMEOUT,   /* peer did not answer our close */
    GW_AMQP_TM_FINAL,           /* report CLOSED from the loop */
} gw_amqp_timer_mode_t;

struct gw_amqp_conn {
    struct event_base *base;
    gw_amqp_handler_t h;
    void *ctx;
    gw_amqp_cfg_t cfg;
    bool server;
    gw_amqp_url_t url; /* outgoing */
    struct addrinfo *ai;
    struct addrinfo *ai_next;
    int last_errno;
    unsigned attempt; /* failed attempts since the last UP */

    int fd;
    bool connecting;
    bool wr_shut;
    bool reading;
    bool writing;
    struct event *ev_read;  /* EV_READ|EV_PERSIST on fd */
    struct event *ev_write; /* EV_WRITE, only while output is pending (or connect) */
    struct event *ev_tick;  /* pn_transport_tick deadline */
    struct event *ev_defer; /* gw_amqp_conn_flush() */
    struct event *ev_timer; /* see timer_mode */
    gw_amqp_timer_mode_t timer_mode;

    pn_connection_driver_t driver;
    bool live; /* driver initialised */
    bool up;
    bool closing;

    int dispatching;
    bool destroyed;
    char peer[96];

    pn_rwbytes_t enc; /* encode buffer reused by gw_amqp_send */
    char *rbuf;       /* receive buffer reused by gw_amqp_recv */
    size_t rcap;
};

struct gw_amqp_listener {
    struct event_base *base;
    struct evconnlistener *lev;
    gw_amqp_cfg_t cfg;
    gw_amqp_accept_fn accept;
    void *ctx;
    uint16_t port;
};

static void gw_amqp_process(gw_amqp_conn_t *c);
static void gw_amqp_start_attempt(gw_amqp_conn_t *c);

/* ------------------------------------------------------------------ */
/* Logging                                                              */
/* ------------------------------------------------------------------ */

static void gw_amqp_pn_log_sink(intptr_t ctx, pn_log_subsystem_t sub, pn_log_level_t sev,
                                const char *msg)
{
    const gw_amqp_conn_t *c = (const gw_amqp_conn_t *)ctx;
    gw_log_level_t lvl;
    if (sev <= PN_LEVEL_ERROR)
        lvl = GW_LOG_LEVEL_ERROR;
    else if (sev == PN_LEVEL_WARNING)
        lvl = GW_LOG_LEVEL_WARN;
    else if (sev == PN_LEVEL_INFO)
        lvl = GW_LOG_LEVEL_INFO;
    else if (sev == PN_LEVEL_DEBUG)
        lvl = GW_LOG_LEVEL_DEBUG;
    else
        lvl = GW_LOG_LEVEL_TRACE;
    /* transport errors are logged once, with the condition, on PN_TRANSPORT_ERROR */
    if (sub == PN_SUBSYSTEM_AMQP && sev == PN_LEVEL_ERROR)
        lvl = GW_LOG_LEVEL_DEBUG;
    /* Frame traces of sasl-init / sasl-response carry the SASL initial
     * response, i.e. the PLAIN password: never let them reach a log. */
    const char *sasl = strstr(msg, "@sasl-init");
    if (sasl == NULL)
        sasl = strstr(msg, "@sasl-response");
    if (sasl != NULL) {
        GW_LOG(lvl, "proton", c ? c->peer : NULL, "%s: %.*s%s [fields redacted]",
               pn_logger_subsystem_name(sub), (int)(sasl - msg), msg,
               strncmp(sasl, "@sasl-init", 10) == 0 ? "@sasl-init" : "@sasl-response");
        return;
    }
    GW_LOG(lvl, "proton", c ? c->peer : NULL, "%s: %s", pn_logger_subsystem_name(sub), msg);
}

/* Route proton's default logger (copied into every new transport) into gw_log. */
static void gw_amqp_log_init_once(void)
{
    pn_logger_t *l = pn_default_logger();
    pn_logger_set_log_sink(l, gw_amqp_pn_log_sink, 0);
    uint16_t levels = PN_LEVEL_CRITICAL | PN_LEVEL_ERROR | PN_LEVEL_WARNING;
    if (gw_log_current_level >= GW_LOG_LEVEL_TRACE)
        levels |= PN_LEVEL_INFO | PN_LEVEL_DEBUG | PN_LEVEL_FRAME;
    pn_logger_set_mask(l, PN_SUBSYSTEM_ALL, levels);
}

static void gw_amqp_log_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, gw_amqp_log_init_once);
}

/* ------------------------------------------------------------------ */
/* Configuration                                                        */
/* ------------------------------------------------------------------ */

static gw_err_t gw_amqp_dup(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return GW_OK;
    *dst = strdup(src);
    return *dst ? GW_OK : GW_ERR_NOMEM;
}

static bool gw_amqp_mech_listed(const char *mechs, const char *mech)
{
    size_t n = strlen(mech);
    for (const char *p = mechs; p && *p;) {
        p += strspn(p, " ");
        size_t len = strcspn(p, " ");
        if (len == n && strncasecmp(p, mech, n) == 0)
            return true;
        p += len;
    }
    return false;
}

static void gw_amqp_cfg_clear(gw_amqp_cfg_t *cfg)
{
    free(cfg->container_id);
    free(cfg->hostname);
    free(cfg->sasl_mechs);
    free(cfg->user);
    if (cfg->password) {
        explicit_bzero(cfg->password, strlen(cfg->password));
        free(cfg->password);
    }
    if (cfg->ssl)
        pn_ssl_domain_free(cfg->ssl);
    memset(cfg, 0, sizeof(*cfg));
}

static pn_ssl_domain_t *gw_amqp_ssl_domain(const gw_amqp_opts_t *o, bool server, gw_err_t *err)
{
    *err = GW_ERR_CONFIG;
    if (server && !o->tls_cert_file) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "TLS listener needs tls_cert_file");
        return NULL;
    }
    if (server && o->tls_verify_peer && !o->tls_ca_file) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "tls_verify_peer on a listener needs tls_ca_file");
        return NULL;
    }
    pn_ssl_domain_t *d = pn_ssl_domain(server ? PN_SSL_MODE_SERVER : PN_SSL_MODE_CLIENT);
    if (!d) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "TLS is not available in this proton build");
        return NULL;
    }
    if (o->tls_cert_file &&
        pn_ssl_domain_set_credentials(d, o->tls_cert_file,
                                      o->tls_key_file ? o->tls_key_file : o->tls_cert_file,
                                      NULL) != 0) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "cannot load TLS certificate %s / key %s",
                     o->tls_cert_file, o->tls_key_file ? o->tls_key_file : "(same file)");
        goto fail;
    }
    if (o->tls_ca_file && pn_ssl_domain_set_trusted_ca_db(d, o->tls_ca_file) != 0) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "cannot load TLS CA file %s", o->tls_ca_file);
        goto fail;
    }
    int rc;
    if (server)
        rc = o->tls_verify_peer
                 ? pn_ssl_domain_set_peer_authentication(d, PN_SSL_VERIFY_PEER, o->tls_ca_file)
                 : pn_ssl_domain_set_peer_authentication(d, PN_SSL_ANONYMOUS_PEER, NULL);
    else
        rc = pn_ssl_domain_set_peer_authentication(
            d,
            o->tls_verify_peer ? PN_SSL_VERIFY_PEER_NAME
                               : (o->tls_ca_file ? PN_SSL_VERIFY_PEER : PN_SSL_ANONYMOUS_PEER),
            NULL);
    if (rc != 0) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "cannot set TLS peer verification mode");
        goto fail;
    }
    *err = GW_OK;
    return d;
fail:
    pn_ssl_domain_free(d);
    return NULL;
}

static gw_err_t gw_amqp_cfg_init(gw_amqp_cfg_t *cfg, const gw_amqp_opts_t *o, bool server, bool tls)
{
    static const gw_amqp_opts_t defaults;
    gw_err_t rc = GW_OK;
    gw_amqp_log_init(); /* before proton can log (TLS credentials below) */
    memset(cfg, 0, sizeof(*cfg));
    if (!o)
        o = &defaults;
    if ((rc = gw_amqp_dup(&cfg->hostname, o->hostname)) != GW_OK ||
        (rc = gw_amqp_dup(&cfg->sasl_mechs, o->sasl_mechs)) != GW_OK ||
        (rc = gw_amqp_dup(&cfg->user, o->username)) != GW_OK ||
        (rc = gw_amqp_dup(&cfg->password, o->password)) != GW_OK)
        goto fail;
    if (o->container_id) {
        rc = gw_amqp_dup(&cfg->container_id, o->container_id);
    } else {
        char id[40];
        snprintf(id, sizeof(id), "gw-%d-%08x", (int)getpid(), (unsigned)gw_amqp__random());
        rc = gw_amqp_dup(&cfg->container_id, id);
    }
    if (rc != GW_OK)
        goto fail;
    cfg->plain_verify = o->sasl_plain_verify;
    cfg->plain_ctx = o->sasl_plain_verify_ctx;
    if (server && cfg->sasl_mechs && gw_amqp_mech_listed(cfg->sasl_mechs, "PLAIN") &&
        !cfg->plain_verify && !(cfg->user && cfg->password)) {
        /* our server PLAIN (amqp_sasl.c) needs something to check passwords against */
        GW_LOG_ERROR(GW_AMQP_MOD, NULL,
                     "sasl_mechs \"%s\": offering PLAIN needs sasl_plain_verify or "
                     "username and password",
                     cfg->sasl_mechs);
        rc = GW_ERR_CONFIG;
        goto fail;
    }
    cfg->idle_timeout_ms = o->idle_timeout_ms;
    cfg->max_frame_size = o->max_frame_size ? o->max_frame_size : GW_AMQP_MAX_FRAME_DEFAULT;
    cfg->max_message_size = o->max_message_size ? o->max_message_size : GW_AMQP_MAX_MESSAGE_DEFAULT;
    if (cfg->max_frame_size != 0 && cfg->max_frame_size < 512) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "max_frame_size %u below the AMQP minimum 512",
                     cfg->max_frame_size);
        rc = GW_ERR_CONFIG;
        goto fail;
    }
    cfg->reconnect = o->reconnect;
    cfg->offer_relay = o->offer_anonymous_relay;
    cfg->rc_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : 100;
    cfg->rc_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : 10000;
    if (cfg->rc_max_ms < cfg->rc_min_ms)
        cfg->rc_max_ms = cfg->rc_min_ms;
    if (tls) {
        cfg->ssl = gw_amqp_ssl_domain(o, server, &rc);
        if (!cfg->ssl)
            goto fail;
    }
    return GW_OK;
fail:
    gw_amqp_cfg_clear(cfg);
    return rc;
}

/* Copy of a listener's configuration for one accepted connection (no TLS domain). */
static gw_err_t gw_amqp_cfg_copy(gw_amqp_cfg_t *dst, const gw_amqp_cfg_t *src)
{
    gw_err_t rc;
    *dst = *src;
    dst->container_id = dst->hostname = dst->sasl_mechs = dst->user = dst->password = NULL;
    dst->ssl = NULL;
    if ((rc = gw_amqp_dup(&dst->container_id, src->container_id)) != GW_OK ||
        (rc = gw_amqp_dup(&dst->hostname, src->hostname)) != GW_OK ||
        (rc = gw_amqp_dup(&dst->user, src->user)) != GW_OK ||
        (rc = gw_amqp_dup(&dst->password, src->password)) != GW_OK ||
        (rc = gw_amqp_dup(&dst->sasl_mechs, src->sasl_mechs)) != GW_OK)
        gw_amqp_cfg_clear(dst);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

static int64_t gw_amqp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void gw_amqp_ms_tv(struct timeval *tv, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

static void gw_amqp_set_peer(gw_amqp_conn_t *c, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(c->peer, sizeof(c->peer), "unix:fd%d", c->fd);
    } else {
        snprintf(c->peer, sizeof(c->peer), "fd%d", c->fd);
    }
}

static void gw_amqp_set_peer_from_fd(gw_amqp_conn_t *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0)
        gw_amqp_set_peer(c, (struct sockaddr *)&ss);
    else
        snprintf(c->peer, sizeof(c->peer), "fd%d", c->fd);
}

static void gw_amqp_timer_arm(gw_amqp_conn_t *c, gw_amqp_timer_mode_t mode, int64_t ms)
{
    struct timeval tv;
    gw_amqp_ms_tv(&tv, ms);
    c->timer_mode = mode;
    evtimer_add(c->ev_timer, &tv);
}

static void gw_amqp_timer_cancel(gw_amqp_conn_t *c)
{
    c->timer_mode = GW_AMQP_TM_NONE;
    evtimer_del(c->ev_timer);
}

/* Stop all socket I/O and close the socket. */
static void gw_amqp_io_close(gw_amqp_conn_t *c)
{
    if (c->ev_read) {
        event_free(c->ev_read);
        c->ev_read = NULL;
    }
    if (c->ev_write) {
        event_free(c->ev_write);
        c->ev_write = NULL;
    }
    if (c->ev_tick)
        evtimer_del(c->ev_tick);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->connecting = c->reading = c->writing = c->wr_shut = false;
}

static void gw_amqp_conn_free(gw_amqp_conn_t *c)
{
    gw_amqp_io_close(c);
    if (c->live) {
        pn_connection_driver_destroy(&c->driver);
        c->live = false;
    }
    if (c->ev_tick)
        event_free(c->ev_tick);
    if (c->ev_defer)
        event_free(c->ev_defer);
    if (c->ev_timer)
        event_free(c->ev_timer);
    if (c->ai)
        freeaddrinfo(c->ai);
    gw_amqp__url_clear(&c->url);
    gw_amqp_cfg_clear(&c->cfg);
    free(c->enc.start);
    free(c->rbuf);
    free(c);
}

/* Leave a dispatch bracket; true if c must not be touched any more. */
static bool gw_amqp_leave(gw_amqp_conn_t *c)
{
    if (--c->dispatching == 0 && c->destroyed) {
        gw_amqp_conn_free(c);
        return true;
    }
    return c->destroyed;
}

static void gw_amqp_report(gw_amqp_conn_t *c, gw_amqp_state_t st, const char *cond,
                           const char *desc)
{
    if (!c->destroyed && c->h.on_state)
        c->h.on_state(c, st, cond, desc, c->ctx);
}

/* Report CLOSED and mark for freeing (caller is inside a bracket). */
static void gw_amqp_finish(gw_amqp_conn_t *c)
{
    gw_amqp_timer_cancel(c);
    gw_amqp_report(c, GW_AMQP_CLOSED, NULL, NULL);
    c->destroyed = true;
}

/*
 * The transport is gone (or the connect failed): report DOWN, free every
 * proton object, then reconnect or finish. Caller is inside a bracket.
 */
static void gw_amqp_down(gw_amqp_conn_t *c, const char *cond, const char *desc)
{
    gw_amqp_io_close(c);
    gw_amqp_timer_cancel(c);
    c->up = false;
    if (cond)
        GW_LOG_INFO(GW_AMQP_MOD, c->peer, "connection down: %s %s", cond, desc ? desc : "");
    else
        GW_LOG_DEBUG(GW_AMQP_MOD, c->peer, "connection closed");
    gw_amqp_report(c, GW_AMQP_DOWN, cond, desc);
    if (c->live) {
        pn_connection_driver_destroy(&c->driver);
        c->live = false;
    }
    if (c->destroyed)
        return;
    if (c->cfg.reconnect && !c->server && !c->closing && c->url.host) {
        uint32_t d = gw_amqp__backoff_delay(c->cfg.rc_min_ms, c->cfg.rc_max_ms, c->attempt,
                                            gw_amqp__random());
        if (c->attempt < 64)
            c->attempt++;
        GW_LOG_DEBUG(GW_AMQP_MOD, c->peer, "reconnect in %u ms", d);
        gw_amqp_timer_arm(c, GW_AMQP_TM_RECONNECT, d);
    } else {
        gw_amqp_finish(c);
    }
}

/* The condition that explains a finished transport: remote close first. */
static void gw_amqp_down_reason(gw_amqp_conn_t *c)
{
    pn_condition_t *cn = pn_connection_remote_condition(c->driver.connection);
    if (!pn_condition_is_set(cn))
        cn = pn_transport_condition(c->driver.transport);
    if (pn_condition_is_set(cn))
        gw_amqp_down(c, pn_condition_get_name(cn), pn_condition_get_description(cn));
    else
        gw_amqp_down(c, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* I/O                                                                  */
/* ------------------------------------------------------------------ */

static void gw_amqp_io_error(gw_amqp_conn_t *c, const char *what, int e)
{
    pn_condition_t *tc = pn_transport_condition(c->driver.transport);
    if (pn_condition_is_set(tc)) {
        pn_connection_driver_close(&c->driver);
    } else {
        pn_connection_driver_errorf(&c->driver, "gw:io-error", "%s: %s", what, strerror(e));
    }
}

static void gw_amqp_write_out(gw_amqp_conn_t *c)
{
    for (;;) {
        pn_bytes_t wb = pn_connection_driver_write_buffer(&c->driver);
        if (wb.size == 0)
            break;
        ssize_t n = send(c->fd, wb.start, wb.size, MSG_NOSIGNAL);
        if (n > 0) {
            pn_connection_driver_write_done(&c->driver, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->writing) {
                event_add(c->ev_write, NULL);
                c->writing = true;
            }
            return;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            /* the peer is gone: report it like an EOF ("connection aborted") */
            pn_connection_driver_read_close(&c->driver);
        } else {
            gw_amqp_io_error(c, "write", n < 0 ? errno : EIO);
        }
        pn_connection_driver_write_close(&c->driver);
        break;
    }
    if (c->writing) {
        event_del(c->ev_write);
        c->writing = false;
    }
    if (!c->wr_shut && pn_connection_driver_write_closed(&c->driver)) {
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = true;
    }
}

static void gw_amqp_arm_tick(gw_amqp_conn_t *c)
{
    if (evtimer_pending(c->ev_tick, NULL))
        return;
    int64_t now = gw_amqp_now_ms();
    int64_t next = pn_transport_tick(c->driver.transport, now);
    if (next > 0) {
        struct timeval tv;
        gw_amqp_ms_tv(&tv, next - now);
        evtimer_add(c->ev_tick, &tv);
    }
}

static void gw_amqp_set_relay_cap(pn_data_t *d)
{
    pn_data_clear(d);
    pn_data_put_array(d, false, PN_SYMBOL);
    pn_data_enter(d);
    pn_data_put_symbol(d, pn_bytes(strlen(GW_AMQP_RELAY_CAP), GW_AMQP_RELAY_CAP));
    pn_data_exit(d);
}

/* Our bookkeeping before the application sees the event. */
static void gw_amqp_pre_event(gw_amqp_conn_t *c, pn_event_t *e)
{
    switch (pn_event_type(e)) {
    case PN_CONNECTION_REMOTE_OPEN: {
        pn_connection_t *pc = pn_event_connection(e);
        if (c->server && (pn_connection_state(pc) & PN_LOCAL_UNINIT)) {
            if (c->cfg.offer_relay)
                gw_amqp_set_relay_cap(pn_connection_offered_capabilities(pc));
            pn_connection_open(pc);
        }
        break;
    }
    case PN_DELIVERY: {
        /* bound what proton buffers for one delivery while it is still arriving */
        pn_delivery_t *d = pn_event_delivery(e);
        pn_link_t *l = pn_delivery_link(d);
        if (pn_link_is_receiver(l) && pn_delivery_partial(d) &&
            pn_delivery_pending(d) > c->cfg.max_message_size &&
            (pn_link_state(l) & PN_LOCAL_ACTIVE)) {
            GW_LOG_WARN(GW_AMQP_MOD, c->peer,
                        "link %s: delivery above max-message-size %llu, closing the link",
                        pn_link_name(l), (unsigned long long)c->cfg.max_message_size);
            gw_amqp_link_close(l, "amqp:link:message-size-exceeded",
                               "message larger than max-message-size");
        }
        break;
    }
    case PN_TRANSPORT_ERROR: {
        pn_condition_t *cn = pn_transport_condition(pn_event_transport(e));
        GW_LOG_WARN(GW_AMQP_MOD, c->peer, "transport error: %s %s",
                    pn_condition_get_name(cn) ? pn_condition_get_name(cn) : "?",
                    pn_condition_get_description(cn) ? pn_condition_get_description(cn) : "");
        break;
    }
    default:
        break;
    }
}

/* After the application saw the event: echo closes it did not answer, report UP. */
static void gw_amqp_post_event(gw_amqp_conn_t *c, pn_event_t *e)
{
    switch (pn_event_type(e)) {
    case PN_CONNECTION_REMOTE_OPEN:
        if (!c->closing && !c->up) {
            c->up = true;
            c->attempt = 0;
            /* the peer's idle time-out is known now: recompute the tick deadline */
            evtimer_del(c->ev_tick);
            GW_LOG_DEBUG(GW_AMQP_MOD, c->peer, "connection up");
            gw_amqp_report(c, GW_AMQP_UP, NULL, NULL);
        }
        break;
    case PN_CONNECTION_REMOTE_CLOSE: {
        pn_connection_t *pc = pn_event_connection(e);
        if (pn_connection_state(pc) & PN_LOCAL_ACTIVE)
            pn_connection_close(pc);
        break;
    }
    case PN_SESSION_REMOTE_CLOSE: {
        pn_session_t *s = pn_event_session(e);
        if (pn_session_state(s) & PN_LOCAL_ACTIVE)
            pn_session_close(s);
        break;
    }
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH: {
        pn_link_t *l = pn_event_link(e);
        if (pn_link_state(l) & PN_LOCAL_ACTIVE) {
            if (pn_event_type(e) == PN_LINK_REMOTE_CLOSE)
                pn_link_close(l);
            else
                pn_link_detach(l);
        }
        break;
    }
    default:
        break;
    }
}

/* Drain events, write, check for the end. Caller is inside a bracket. */
static void gw_amqp_process(gw_amqp_conn_t *c)
{
    if (!c->live || c->connecting)
        return;
    for (;;) {
        pn_event_t *e;
        while ((e = pn_connection_driver_next_event(&c->driver)) != NULL) {
            gw_amqp_pre_event(c, e);
            if (c->h.on_event)
                c->h.on_event(c, e, c->ctx);
            if (c->destroyed)
                return;
            gw_amqp_post_event(c, e);
            if (c->destroyed)
                return;
        }
        gw_amqp_write_out(c);
        /* a write error queues new events (transport error/closed) */
        if (!pn_connection_driver_has_event(&c->driver))
            break;
    }
    if (pn_connection_driver_finished(&c->driver)) {
        gw_amqp_down_reason(c);
        return;
    }
    /* read only while proton has room and the read side is open */
    bool want_read = pn_connection_driver_read_buffer(&c->driver).size > 0;
    if (want_read != c->reading) {
        if (want_read)
            event_add(c->ev_read, NULL);
        else
            event_del(c->ev_read);
        c->reading = want_read;
    }
    gw_amqp_arm_tick(c);
}

static void gw_amqp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_amqp_conn_t *c = arg;
    c->dispatching++;
    pn_rwbytes_t rb = pn_connection_driver_read_buffer(&c->driver);
    if (rb.size > 0) {
        ssize_t n = recv(fd, rb.start, rb.size, 0);
        if (n > 0)
            pn_connection_driver_read_done(&c->driver, (size_t)n);
        else if (n == 0 || errno == ECONNRESET)
            /* EOF or reset: proton reports "connection aborted" unless a close frame came */
            pn_connection_driver_read_close(&c->driver);
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            gw_amqp_io_error(c, "read", errno);
    }
    gw_amqp_process(c);
    gw_amqp_leave(c);
}

static void gw_amqp_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_amqp_conn_t *c = arg;
    c->dispatching++;
    if (c->live) {
        pn_transport_tick(c->driver.transport, gw_amqp_now_ms());
        gw_amqp_process(c);
    }
    gw_amqp_leave(c);
}

static void gw_amqp_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_amqp_conn_t *c = arg;
    c->dispatching++;
    gw_amqp_process(c);
    gw_amqp_leave(c);
}

/* Create the driver for the connected socket c->fd and start reading. */
static gw_err_t gw_amqp_attach(gw_amqp_conn_t *c, pn_ssl_domain_t *ssl)
{
    gw_amqp_log_init();
    c->ev_read = event_new(c->base, c->fd, EV_READ | EV_PERSIST, gw_amqp_read_cb, c);
    c->ev_write = event_new(c->base, c->fd, EV_WRITE | EV_PERSIST, gw_amqp_defer_cb, c);
    if (!c->ev_read || !c->ev_write)
        return GW_ERR_NOMEM;
    if (pn_connection_driver_init(&c->driver, NULL, NULL) != 0)
        return GW_ERR_NOMEM;
    c->live = true;
    c->wr_shut = false;
    pn_connection_t *pc = c->driver.connection;
    pn_transport_t *t = c->driver.transport;
    pn_logger_set_log_sink(pn_transport_logger(t), gw_amqp_pn_log_sink, (intptr_t)c);
    pn_record_t *rec = pn_connection_attachments(pc);
    pn_record_def(rec, &gw_amqp_conn_key, PN_VOID);
    pn_record_set(rec, &gw_amqp_conn_key, c);
    if (c->server)
        pn_transport_set_server(t);
    /* AMQP 1.0 2.4.5: our idle time-out goes out in open; the peer's one makes
     * pn_transport_tick() schedule our heartbeats (empty frames) */
    if (c->cfg.idle_timeout_ms)
        pn_transport_set_idle_timeout(t, c->cfg.idle_timeout_ms);
    if (c->cfg.max_frame_size)
        pn_transport_set_max_frame(t, c->cfg.max_frame_size);
    const char *host = c->cfg.hostname ? c->cfg.hostname : c->url.host;
    if (ssl) {
        pn_ssl_t *s = pn_ssl(t);
        if (!s || pn_ssl_init(s, ssl, NULL) != 0)
            return GW_ERR_CONFIG;
        if (!c->server && host)
            pn_ssl_set_peer_hostname(s, host);
    }
    pn_sasl_t *sasl = pn_sasl(t);
    if (c->server) {
        const char *mechs = c->cfg.sasl_mechs;
        if (!mechs)
            mechs = ssl ? "ANONYMOUS EXTERNAL" : "ANONYMOUS";
        pn_sasl_allowed_mechs(sasl, mechs);
        if (gw_amqp_mech_listed(mechs, "PLAIN"))
            gw_amqp__sasl_install_plain_server(t);
    } else {
        const char *user = c->url.user ? c->url.user : c->cfg.user;
        const char *pass = c->url.user ? c->url.password : c->cfg.password;
        const char *mechs = c->cfg.sasl_mechs;
        if (!mechs)
            mechs = user ? "PLAIN" : "ANONYMOUS";
        pn_sasl_allowed_mechs(sasl, mechs);
        /* PLAIN to a router on loopback without TLS is a deliberate deployment choice */
        pn_sasl_set_allow_insecure_mechs(sasl, true);
        if (user)
            pn_connection_set_user(pc, user);
        if (pass)
            pn_connection_set_password(pc, pass);
        if (host)
            pn_connection_set_hostname(pc, host);
    }
    pn_connection_set_container(pc, c->cfg.container_id);
    if (pn_connection_driver_bind(&c->driver) != 0)
        return GW_ERR_AMQP;
    if (!c->server) {
        gw_amqp_set_relay_cap(pn_connection_desired_capabilities(pc));
        pn_connection_open(pc);
    }
    event_add(c->ev_read, NULL);
    c->reading = true;
    event_active(c->ev_defer, EV_TIMEOUT, 0);
    return GW_OK;
}

static void gw_amqp_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails harmlessly on AF_UNIX */
}

/* ------------------------------------------------------------------ */
/* Outgoing connect                                                     */
/* ------------------------------------------------------------------ */

static void gw_amqp_connected(gw_amqp_conn_t *c)
{
    gw_amqp_timer_cancel(c);
    c->connecting = false;
    if (c->ev_write) {
        event_free(c->ev_write);
        c->ev_write = NULL;
    }
    if (c->ai) {
        freeaddrinfo(c->ai);
        c->ai = c->ai_next = NULL;
    }
    gw_amqp_nodelay(c->fd);
    gw_amqp_set_peer_from_fd(c);
    gw_err_t rc = gw_amqp_attach(c, c->cfg.ssl);
    if (rc != GW_OK) {
        GW_LOG_ERROR(GW_AMQP_MOD, c->peer, "cannot set up AMQP transport: %s", gw_err_str(rc));
        gw_amqp_down(c, "gw:connect-failed", gw_err_str(rc));
        return;
    }
    GW_LOG_DEBUG(GW_AMQP_MOD, c->peer, "TCP connected");
    gw_amqp_process(c);
}

static void gw_amqp_try_next(gw_amqp_conn_t *c);

static void gw_amqp_connect_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_amqp_conn_t *c = arg;
    c->dispatching++;
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        soerr = errno;
    if (soerr == 0) {
        gw_amqp_connected(c);
    } else {
        c->last_errno = soerr;
        gw_amqp_io_close(c);
        c->ai_next = c->ai_next ? c->ai_next->ai_next : NULL;
        gw_amqp_try_next(c);
    }
    gw_amqp_leave(c);
}

static void gw_amqp_try_next(gw_amqp_conn_t *c)
{
    for (; c->ai_next; c->ai_next = c->ai_next->ai_next) {
        struct addrinfo *a = c->ai_next;
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        a->ai_protocol);
        if (fd < 0) {
            c->last_errno = errno;
            continue;
        }
        c->fd = fd;
        gw_amqp_set_peer(c, a->ai_addr);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            gw_amqp_connected(c);
            return;
        }
        if (errno == EINPROGRESS) {
            c->connecting = true;
            c->ev_write = event_new(c->base, fd, EV_WRITE, gw_amqp_connect_cb, c);
            if (c->ev_write && event_add(c->ev_write, NULL) == 0) {
                gw_amqp_timer_arm(c, GW_AMQP_TM_CONNECT_TIMEOUT, GW_AMQP_CONNECT_TIMEOUT_MS);
                return;
            }
            c->last_errno = ENOMEM;
        } else {
            c->last_errno = errno;
        }
        gw_amqp_io_close(c);
    }
    if (c->ai) {
        freeaddrinfo(c->ai);
        c->ai = NULL;
    }
    gw_amqp_down(c, "gw:connect-failed", strerror(c->last_errno ? c->last_errno : ECONNREFUSED));
}

/* Resolve (every attempt: addresses may change) and connect. Inside a bracket. */
static void gw_amqp_start_attempt(gw_amqp_conn_t *c)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (c->ai) {
        freeaddrinfo(c->ai);
        c->ai = NULL;
    }
    snprintf(c->peer, sizeof(c->peer), "%s%s%s:%s", strchr(c->url.host, ':') ? "[" : "",
             c->url.host, strchr(c->url.host, ':') ? "]" : "", c->url.port);
    int rc = getaddrinfo(c->url.host, c->url.port, &hints, &c->ai);
    if (rc == EAI_NONAME) {
        /* a name, not a literal: this lookup may block (done once per attempt) */
        hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
        rc = getaddrinfo(c->url.host, c->url.port, &hints, &c->ai);
    }
    if (rc != 0) {
        c->ai = NULL;
        gw_amqp_down(c, "gw:connect-failed", gai_strerror(rc));
        return;
    }
    c->ai_next = c->ai;
    c->last_errno = 0;
    gw_amqp_try_next(c);
}

static void gw_amqp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_amqp_conn_t *c = arg;
    gw_amqp_timer_mode_t mode = c->timer_mode;
    c->timer_mode = GW_AMQP_TM_NONE;
    c->dispatching++;
    switch (mode) {
    case GW_AMQP_TM_RECONNECT:
        gw_amqp_start_attempt(c);
        break;
    case GW_AMQP_TM_CONNECT_TIMEOUT:
        c->last_errno = ETIMEDOUT;
        gw_amqp_io_close(c);
        c->ai_next = c->ai_next ? c->ai_next->ai_next : NULL;
        gw_amqp_try_next(c);
        break;
    case GW_AMQP_TM_CLOSE_TIMEOUT:
        GW_LOG_WARN(GW_AMQP_MOD, c->peer, "peer did not answer close within %d ms",
                    GW_AMQP_CLOSE_TIMEOUT_MS);
        gw_amqp_down(c, NULL, NULL);
        break;
    case GW_AMQP_TM_FINAL:
        gw_amqp_finish(c);
        break;
    case GW_AMQP_TM_NONE:
        break;
    }
    gw_amqp_leave(c);
}

static gw_amqp_conn_t *gw_amqp_conn_alloc(struct event_base *base, const gw_amqp_handler_t *h,
                                          void *ctx)
{
    gw_amqp_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->fd = -1;
    if (h)
        c->h = *h;
    c->ctx = ctx;
    c->ev_tick = evtimer_new(base, gw_amqp_tick_cb, c);
    c->ev_defer = event_new(base, -1, 0, gw_amqp_defer_cb, c);
    c->ev_timer = evtimer_new(base, gw_amqp_timer_cb, c);
    if (!c->ev_tick || !c->ev_defer || !c->ev_timer) {
        gw_amqp_conn_free(c);
        return NULL;
    }
    return c;
}

gw_amqp_conn_t *gw_amqp_connect(struct event_base *base, const char *url,
                                const gw_amqp_opts_t *opts, const gw_amqp_handler_t *handler,
                                void *ctx, gw_err_t *err)
{
    gw_err_t rc = GW_ERR_INVAL;
    gw_amqp_conn_t *c = NULL;
    if (!base || !url)
        goto fail;
    rc = GW_ERR_NOMEM;
    c = gw_amqp_conn_alloc(base, handler, ctx);
    if (!c)
        goto fail;
    rc = gw_amqp__url_parse(url, &c->url);
    if (rc != GW_OK) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "bad AMQP URL (expected amqp[s]://[user[:pass]@]host[:port])");
        goto fail;
    }
    rc = gw_amqp_cfg_init(&c->cfg, opts, false, c->url.tls || (opts && opts->tls));
    if (rc != GW_OK)
        goto fail;
    snprintf(c->peer, sizeof(c->peer), "%s:%s", c->url.host, c->url.port);
    /* the TCP connect starts in the loop, so no callback runs before we return */
    gw_amqp_timer_arm(c, GW_AMQP_TM_RECONNECT, 0);
    if (err)
        *err = GW_OK;
    return c;
fail:
    if (c)
        gw_amqp_conn_free(c);
    if (err)
        *err = rc;
    return NULL;
}

gw_amqp_conn_t *gw_amqp_conn_from_fd(struct event_base *base, int fd, bool server,
                                     const gw_amqp_opts_t *opts, const gw_amqp_handler_t *h,
                                     void *ctx, gw_err_t *err)
{
    gw_err_t rc = GW_ERR_INVAL;
    gw_amqp_conn_t *c = NULL;
    if (!base || fd < 0)
        goto fail;
    rc = GW_ERR_NOMEM;
    c = gw_amqp_conn_alloc(base, h, ctx);
    if (!c)
        goto fail;
    c->server = server;
    rc = gw_amqp_cfg_init(&c->cfg, opts, server, opts && opts->tls);
    if (rc != GW_OK)
        goto fail;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        rc = GW_ERR_IO;
        goto fail;
    }
    c->fd = fd;
    gw_amqp_nodelay(fd);
    gw_amqp_set_peer_from_fd(c);
    rc = gw_amqp_attach(c, c->cfg.ssl);
    if (rc != GW_OK) {
        c->fd = -1; /* not ours on failure */
        goto fail;
    }
    if (err)
        *err = GW_OK;
    return c;
fail:
    if (c)
        gw_amqp_conn_free(c);
    if (err)
        *err = rc;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public connection API                                                */
/* ------------------------------------------------------------------ */

void gw_amqp_conn_close(gw_amqp_conn_t *c, const char *cond, const char *desc)
{
    if (!c || c->destroyed || c->closing)
        return;
    c->closing = true;
    if (c->live) {
        pn_connection_t *pc = c->driver.connection;
        if (cond) {
            pn_condition_t *cn = pn_connection_condition(pc);
            pn_condition_set_name(cn, cond);
            if (desc)
                pn_condition_set_description(cn, desc);
        }
        pn_connection_close(pc);
        gw_amqp_timer_arm(c, GW_AMQP_TM_CLOSE_TIMEOUT, GW_AMQP_CLOSE_TIMEOUT_MS);
        gw_amqp_conn_flush(c);
    } else {
        /* connecting or waiting to reconnect: stop, report CLOSED from the loop */
        gw_amqp_io_close(c);
        gw_amqp_timer_arm(c, GW_AMQP_TM_FINAL, 0);
    }
}

void gw_amqp_conn_destroy(gw_amqp_conn_t *c)
{
    if (!c || c->destroyed)
        return;
    c->destroyed = true;
    if (c->dispatching == 0)
        gw_amqp_conn_free(c);
}

void gw_amqp_conn_flush(gw_amqp_conn_t *c)
{
    if (c && c->live && !c->destroyed)
        event_active(c->ev_defer, EV_TIMEOUT, 0);
}

pn_connection_t *gw_amqp_conn_pn(gw_amqp_conn_t *c)
{
    return c && c->live ? c->driver.connection : NULL;
}

struct event_base *gw_amqp_conn_base(gw_amqp_conn_t *c) { return c ? c->base : NULL; }
bool gw_amqp_conn_is_up(const gw_amqp_conn_t *c) { return c && c->up; }
void *gw_amqp_conn_ctx(const gw_amqp_conn_t *c) { return c ? c->ctx : NULL; }
const char *gw_amqp_conn_peer(const gw_amqp_conn_t *c) { return c ? c->peer : "?"; }

void gw_amqp_conn_set_handler(gw_amqp_conn_t *c, const gw_amqp_handler_t *h, void *ctx)
{
    if (!c)
        return;
    if (h)
        c->h = *h;
    else
        memset(&c->h, 0, sizeof(c->h));
    c->ctx = ctx;
}

const char *gw_amqp_conn_user(const gw_amqp_conn_t *c)
{
    if (!c || !c->live)
        return NULL;
    pn_transport_t *t = c->driver.transport;
    pn_sasl_t *s = pn_sasl(t);
    const char *mech = s ? pn_sasl_get_mech(s) : NULL;
    if (mech && strcasecmp(mech, "ANONYMOUS") == 0)
        return NULL;
    const char *u = pn_transport_get_user(t);
    if (!u || (!mech && strcmp(u, "anonymous") == 0))
        return NULL;
    return u;
}

bool gw_amqp_conn_peer_has_anonymous_relay(const gw_amqp_conn_t *c)
{
    if (!c || !c->live)
        return false;
    pn_data_t *d = pn_connection_remote_offered_capabilities(c->driver.connection);
    if (!d)
        return false;
    pn_data_rewind(d);
    if (!pn_data_next(d))
        return false;
    bool found = false;
    if (pn_data_type(d) == PN_ARRAY || pn_data_type(d) == PN_LIST) {
        pn_data_enter(d);
        while (!found && pn_data_next(d)) {
            if (pn_data_type(d) == PN_SYMBOL) {
                pn_bytes_t b = pn_data_get_symbol(d);
                found = b.size == strlen(GW_AMQP_RELAY_CAP) &&
                        memcmp(b.start, GW_AMQP_RELAY_CAP, b.size) == 0;
            }
        }
        pn_data_exit(d);
    } else if (pn_data_type(d) == PN_SYMBOL) {
        pn_bytes_t b = pn_data_get_symbol(d);
        found = b.size == strlen(GW_AMQP_RELAY_CAP) &&
                memcmp(b.start, GW_AMQP_RELAY_CAP, b.size) == 0;
    }
    pn_data_rewind(d);
    return found;
}

gw_amqp_conn_t *gw_amqp_conn_of(pn_connection_t *pn)
{
    if (!pn)
        return NULL;
    pn_record_t *rec = pn_connection_attachments(pn);
    if (!pn_record_has(rec, &gw_amqp_conn_key))
        return NULL;
    return pn_record_get(rec, &gw_amqp_conn_key);
}

bool gw_amqp__plain_verify(gw_amqp_conn_t *c, const char *user, const char *password)
{
    if (c->cfg.plain_verify)
        return c->cfg.plain_verify(user, password, c->cfg.plain_ctx);
    if (!c->cfg.user || !c->cfg.password)
        return false;
    size_t n = strlen(password);
    /* constant time for passwords of the configured length */
    bool pass_ok = n == strlen(c->cfg.password) && CRYPTO_memcmp(password, c->cfg.password, n) == 0;
    return pass_ok && strcmp(user, c->cfg.user) == 0;
}

uint64_t gw_amqp__max_message_size(const gw_amqp_conn_t *c) { return c->cfg.max_message_size; }

pn_rwbytes_t *gw_amqp__conn_encbuf(gw_amqp_conn_t *c) { return &c->enc; }

char *gw_amqp__conn_recvbuf(gw_amqp_conn_t *c, size_t need)
{
    if (need <= c->rcap)
        return c->rbuf;
    size_t cap = c->rcap ? c->rcap : 1024;
    while (cap < need)
        cap *= 2;
    char *p = realloc(c->rbuf, cap);
    if (!p)
        return NULL;
    c->rbuf = p;
    c->rcap = cap;
    return p;
}

/* ------------------------------------------------------------------ */
/* Listener                                                             */
/* ------------------------------------------------------------------ */

static void gw_amqp_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                              int salen, void *arg)
{
    gw_amqp_listener_t *l = arg;
    gw_amqp_conn_t *c = gw_amqp_conn_alloc(l->base, NULL, NULL);
    if (!c || gw_amqp_cfg_copy(&c->cfg, &l->cfg) != GW_OK) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "out of memory accepting a connection");
        if (c)
            gw_amqp_conn_free(c);
        close(fd);
        return;
    }
    c->server = true;
    c->fd = fd;
    gw_amqp_set_peer(c, sa);
    gw_amqp_nodelay(fd);
    gw_err_t rc = gw_amqp_attach(c, l->cfg.ssl);
    if (rc != GW_OK) {
        GW_LOG_ERROR(GW_AMQP_MOD, c->peer, "cannot set up AMQP transport: %s", gw_err_str(rc));
        gw_amqp_conn_free(c); /* closes fd */
        return;
    }
    GW_LOG_DEBUG(GW_AMQP_MOD, c->peer, "accepted");
    if (l->accept) {
        c->dispatching++;
        l->accept(l, c, l->ctx);
        gw_amqp_leave(c);
    }
}

static void gw_amqp_listen_error_cb(struct evconnlistener *lev, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    GW_LOG_WARN(GW_AMQP_MOD, NULL, "accept failed: %s", evutil_socket_error_to_string(e));
}

gw_amqp_listener_t *gw_amqp_listen(struct event_base *base, const char *host, uint16_t port,
                                   const gw_amqp_opts_t *opts, bool offer_anonymous_relay,
                                   gw_amqp_accept_fn accept, void *ctx, gw_err_t *err)
{
    gw_err_t rc = GW_ERR_INVAL;
    struct addrinfo *ai = NULL;
    gw_amqp_listener_t *l = NULL;
    if (!base)
        goto fail;
    rc = GW_ERR_NOMEM;
    l = calloc(1, sizeof(*l));
    if (!l)
        goto fail;
    l->base = base;
    l->accept = accept;
    l->ctx = ctx;
    rc = gw_amqp_cfg_init(&l->cfg, opts, true, opts && opts->tls);
    if (rc != GW_OK)
        goto fail;
    l->cfg.offer_relay = offer_anonymous_relay;
    l->cfg.reconnect = false;
    if (!l->cfg.sasl_mechs) {
        const char *m = l->cfg.ssl && opts->tls_verify_peer ? "ANONYMOUS EXTERNAL" : "ANONYMOUS";
        rc = gw_amqp_dup(&l->cfg.sasl_mechs, m);
        if (rc != GW_OK)
            goto fail;
    }
    gw_amqp_log_init();

    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    int grc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &ai);
    if (grc != 0) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "listen address %s: %s", host ? host : "*",
                     gai_strerror(grc));
        rc = GW_ERR_CONFIG;
        goto fail;
    }
    l->lev = evconnlistener_new_bind(base, gw_amqp_accept_cb, l,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                         LEV_OPT_CLOSE_ON_EXEC,
                                     -1, ai->ai_addr, (int)ai->ai_addrlen);
    if (!l->lev) {
        GW_LOG_ERROR(GW_AMQP_MOD, NULL, "cannot listen on %s:%u: %s", host ? host : "*",
                     (unsigned)port, strerror(errno));
        rc = GW_ERR_IO;
        goto fail;
    }
    evconnlistener_set_error_cb(l->lev, gw_amqp_listen_error_cb);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    freeaddrinfo(ai);
    GW_LOG_INFO(GW_AMQP_MOD, NULL, "AMQP listening on %s:%u%s", host && *host ? host : "*",
                (unsigned)l->port, l->cfg.ssl ? " (TLS)" : "");
    if (err)
        *err = GW_OK;
    return l;
fail:
    if (ai)
        freeaddrinfo(ai);
    gw_amqp_listener_free(l);
    if (err)
        *err = rc;
    return NULL;
}

uint16_t gw_amqp_listener_port(const gw_amqp_listener_t *l) { return l ? l->port : 0; }

void gw_amqp_listener_free(gw_amqp_listener_t *l)
{
    if (!l)
        return;
    if (l->lev)
        evconnlistener_free(l->lev);
    gw_amqp_cfg_clear(&l->cfg);
    free(l);
}
