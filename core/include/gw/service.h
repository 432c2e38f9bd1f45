/*
 * service.h - scaffolding shared by the AMQP services (will-service,
 * subscription-service): the common options, the AMQP endpoints (--listen
 * and/or --connect), the process skeleton (event loop, signals, logging,
 * exit codes) and the HTTP health/metrics endpoint (gw/http.h).
 *
 * A service embeds a gw_svc_config_t in its own configuration struct, puts
 * GW_SVC_CONFIG_OPTS(struct my_cfg, common) into its option table and hands
 * a gw_svc_def_t to gw_svc_main(). The service keeps only its own logic.
 *
 * Threads: the service runs on one event loop in the main thread. The HTTP
 * endpoint (--http-listen) runs on its own thread: its ready callback and
 * collectors may only read service state through GW_SVC_GET() (relaxed
 * atomic loads); the loop thread, the only writer, updates such fields with
 * GW_SVC_SET()/GW_SVC_ADD() (relaxed atomic stores: no locked instruction on
 * the message path).
 */
#ifndef GW_SERVICE_H
#define GW_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "gw/amqp.h"
#include "gw/config.h"
#include "gw/error.h"
#include "gw/http.h"

/* Single writer (the loop thread), readers on the HTTP thread. */
#define GW_SVC_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define GW_SVC_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define GW_SVC_ADD(field, n) GW_SVC_SET(field, GW_SVC_GET(field) + (n))
#define GW_SVC_INC(field) GW_SVC_ADD(field, 1)

/* ------------------------------------------------------------------ */
/* Common options                                                      */
/* ------------------------------------------------------------------ */

typedef struct gw_svc_config {
    char *listen;        /* HOST:PORT for direct connections (gateways, native peers) */
    char *connect;       /* amqp[s]://HOST:PORT of a router (route-container) */
    int64_t idle_timeout; /* ms, 0 = none */
    char *container_id;  /* NULL: generated */
    bool listen_tls;
    char *tls_ca_file;
    char *tls_cert_file;
    char *tls_key_file;
    bool tls_verify_peer;
    char *sasl_mechs;
    char *username; /* SASL PLAIN: outgoing, and the listener's one account */
    char *password;
    char *http_listen; /* HOST:PORT of /healthz /readyz /metrics; NULL = off */
    int log_level;     /* gw_log_level_t */
    int log_format;    /* gw_log_format_t */
} gw_svc_config_t;

extern const char *const gw_svc_log_levels[];  /* "error" .. "trace", as gw_log_level_t */
extern const char *const gw_svc_log_formats[]; /* "text", "json" */

/*
 * The option-table entries of the common options, for a gw_svc_config_t
 * embedded as member `member` of struct type st:
 *
 *   static const gw_config_opt_t opts[] = {
 *       GW_SVC_CONFIG_OPTS(my_config_t, common),
 *       GW_CONFIG_STRING(my_config_t, store, "store", 4096, "x.db", "SQLite path"),
 *   };
 */
#define GW_SVC_CONFIG_OPTS(st, member)                                                         \
    GW_CONFIG_STRING(st, member.listen, "listen", 300, NULL,                                  \
                     "HOST:PORT to accept AMQP connections from gateways and native peers "   \
                     "(port 0 = ephemeral), e.g. 127.0.0.1:5673"),                            \
    GW_CONFIG_STRING(st, member.connect, "connect", 2048, NULL,                               \
                     "amqp[s]://HOST:PORT of a router to attach to as a route-container"),    \
    GW_CONFIG_DURATION(st, member.idle_timeout, "idle-timeout", 0, 3600000, "30s",            \
                       "AMQP idle time-out (a silent peer's connection is lost)"),            \
    GW_CONFIG_STRING(st, member.container_id, "container-id", 256, NULL,                      \
                     "AMQP container id (default: generated)"),                               \
    GW_CONFIG_BOOL(st, member.listen_tls, "listen-tls", "false", "TLS on the listener"),      \
    GW_CONFIG_STRING(st, member.tls_ca_file, "tls-ca-file", 4096, NULL, "CA bundle (PEM)"),   \
    GW_CONFIG_STRING(st, member.tls_cert_file, "tls-cert-file", 4096, NULL,                   \
                     "certificate (PEM)"),                                                    \
    GW_CONFIG_STRING(st, member.tls_key_file, "tls-key-file", 4096, NULL, "private key (PEM)"), \
    GW_CONFIG_BOOL(st, member.tls_verify_peer, "tls-verify-peer", "false",                    \
                   "outgoing: verify the server name; listener: require client "              \
                   "certificates"),                                                           \
    GW_CONFIG_STRING(st, member.sasl_mechs, "sasl-mechs", 256, NULL,                          \
                     "SASL mechanisms (space separated) allowed/offered"),                    \
    GW_CONFIG_STRING(st, member.username, "username", 256, NULL,                              \
                     "SASL PLAIN user: ours when connecting; the account a listener "     \
                     "offering PLAIN accepts"),                                             \
    GW_CONFIG_STRING(st, member.password, "password", 256, NULL,                              \
                     "SASL PLAIN password (outgoing, and for the listener account)"),                                          \
    GW_CONFIG_STRING(st, member.http_listen, "http-listen", 300, NULL,                        \
                     "HOST:PORT of the HTTP endpoint /healthz /readyz /metrics (default: "    \
                     "off; port 0 = ephemeral)"),                                             \
    GW_CONFIG_ENUM(st, member.log_level, "log-level", gw_svc_log_levels, "info",              \
                   "error|warn|info|debug|trace (SIGHUP re-reads it)"),                      \
    GW_CONFIG_ENUM(st, member.log_format, "log-format", gw_svc_log_formats, "text",           \
                   "text|json (SIGHUP re-reads it)")

/** Checks across the common options. Writes why and returns GW_ERR_CONFIG. */
gw_err_t gw_svc_config_check(const gw_svc_config_t *c, char *why, size_t whylen);
/**
 * AMQP options for the listener (incoming) or the router connection
 * (outgoing: credentials, reconnect with the default back-off). Strings are
 * borrowed from c.
 */
void gw_svc_amqp_opts(const gw_svc_config_t *c, bool incoming, gw_amqp_opts_t *o);

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */
/* ------------------------------------------------------------------ */

/**
 * Listen on c->listen (no-op, *out = NULL, GW_OK without --listen). Errors
 * are logged under module mod. The listener belongs to the caller.
 */
gw_err_t gw_svc_listen(struct event_base *base, const gw_svc_config_t *c, const char *mod,
                       bool offer_anonymous_relay, gw_amqp_accept_fn accept, void *ctx,
                       gw_amqp_listener_t **out);
/**
 * Connect to c->connect with reconnect (opts: NULL = gw_svc_amqp_opts(c,
 * false)). Returns NULL and sets *err on failure (logged under mod). The
 * connection belongs to the caller.
 */
gw_amqp_conn_t *gw_svc_connect(struct event_base *base, const gw_svc_config_t *c,
                               const char *mod, const gw_amqp_opts_t *opts,
                               const gw_amqp_handler_t *handler, void *ctx, gw_err_t *err);

/*
 * The AMQP connections of a service: accepted ones (--listen) and the one to
 * a router (--connect). A service embeds gw_svc_conn_t as the FIRST member
 * of its own connection struct and keeps them in one gw_svc_conns_t.
 */
typedef struct gw_svc_conn gw_svc_conn_t;
struct gw_svc_conn {
    gw_svc_conn_t *prev, *next;
    gw_amqp_conn_t *conn; /* owned by the service; NULL until set */
    bool outgoing;        /* the --connect connection to a router */
    bool up;              /* between GW_AMQP_UP and GW_AMQP_DOWN */
};

typedef struct gw_svc_conns {
    gw_svc_conn_t *head;
    int routers_up; /* outgoing connections up; GW_SVC_GET from the HTTP thread */
} gw_svc_conns_t;

/** Link c (zeroed by the caller, then filled) at the head of l. */
void gw_svc_conns_insert(gw_svc_conns_t *l, gw_svc_conn_t *c, bool outgoing);
/** Unlink c (CLOSED); the caller frees it. */
void gw_svc_conns_remove(gw_svc_conns_t *l, gw_svc_conn_t *c);
/** Record UP/DOWN of c (readiness: l->routers_up); call from on_state. */
void gw_svc_conns_state(gw_svc_conns_t *l, gw_svc_conn_t *c, gw_amqp_state_t st);
/** Begin a graceful close of every connection (CLOSED may be reported at once). */
void gw_svc_conns_close_all(gw_svc_conns_t *l);

/* ------------------------------------------------------------------ */
/* Latency histogram (loop thread writes, HTTP thread reads)           */
/* ------------------------------------------------------------------ */

#define GW_SVC_HIST_NBUCKETS 12
typedef struct gw_svc_hist {
    uint64_t buckets[GW_SVC_HIST_NBUCKETS]; /* cumulative counts per upper bound */
    uint64_t count;
    uint64_t sum_us;
} gw_svc_hist_t;

/** Record one observation (microseconds). Loop thread only. */
void gw_svc_hist_observe(gw_svc_hist_t *h, uint64_t us);
/**
 * Write a Prometheus histogram <name> (_bucket{le=...}, _sum in seconds, _count). HTTP
 * thread. The names must outlive the scrape (the writer keeps a pointer to
 * the last name): use GW_SVC_HIST_WRITE with a string literal.
 */
void gw_svc_hist_write(gw_metrics_writer_t *w, const char *name, const char *help,
                       const gw_svc_hist_t *h);
#define GW_SVC_HIST_WRITE(w, name, help, h) gw_svc_hist_write((w), name, (help), (h))
/** Monotonic clock in microseconds. */
uint64_t gw_svc_now_us(void);

/* ------------------------------------------------------------------ */
/* Process skeleton                                                    */
/* ------------------------------------------------------------------ */

typedef struct gw_svc_def {
    const char *module;            /* log module, e.g. "will" */
    const gw_config_spec_t *spec;  /* the option table */
    size_t cfg_size;               /* sizeof the service's config struct */
    size_t common_offset;          /* offsetof(config struct, embedded gw_svc_config_t) */
    /** Service checks after the common ones (may be NULL). */
    gw_err_t (*check)(const void *cfg, char *why, size_t whylen);
    /** Start on base; cfg is borrowed and outlives the service. */
    gw_err_t (*start)(struct event_base *base, const void *cfg, void **svc);
    /**
     * Graceful stop (SIGTERM/SIGINT): stop accepting, finish the current
     * batch, detach links cleanly, then let the loop end. gw_svc_main breaks
     * the loop anyway after stop_bound_ms.
     */
    void (*stop)(void *svc);
    void (*free)(void *svc);
    /** One INFO line once started (may be NULL). */
    void (*log_ready)(void *svc, const void *cfg);
    /** SIGHUP: newcfg is the re-read configuration (may be NULL). */
    void (*reload)(void *svc, const void *newcfg);
    /** /readyz and /metrics: run on the HTTP thread (GW_SVC_GET only). */
    gw_ready_fn ready;
    gw_metrics_collect_fn collect;
    uint32_t stop_bound_ms; /* 0 = 5000 */
} gw_svc_def_t;

/**
 * The whole process: load and check the configuration (exit 2 on a bad one,
 * 0 after --help/--version), set up logging, SIGPIPE ignored, the event
 * loop, the service, SIGTERM/SIGINT (graceful stop, exit 0) and SIGHUP
 * (re-read the configuration the same way as at start - defaults, --config
 * file, environment, argv - and apply the log level and format, then
 * def->reload), the HTTP endpoint if --http-listen is set. Returns the exit
 * status: 0 after a signal, 1 when the service cannot start, 2 on a bad
 * configuration.
 */
int gw_svc_main(const gw_svc_def_t *def, int argc, char **argv);

#endif
