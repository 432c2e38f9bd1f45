/*
 * gateway.h - internals of mqtt-gateway shared by its source files.
 *
 * Threading: one gw_gateway_t per process (read-only after start except the
 * registry, which has its own mutex), N gw_worker_t, each a thread with its
 * own event_base, MQTT listeners and AMQP connections. A gw_client_t lives on
 * one worker for its whole life and is only touched from that thread.
 *
 * Ownership: the worker owns its clients (intrusive list); a client owns its
 * bufferevent, timers, strings and tables. Proton objects belong to the
 * connection driver (amqp.h); the client only keeps borrowed pointers and
 * drops them when it closes or when the connection goes DOWN.
 */
#ifndef GW_GATEWAY_INTERNAL_H
#define GW_GATEWAY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/session.h>

#include "gw/amqp.h"
#include "gw/auth.h"
#include "gw/config.h"
#include "gw/error.h"
#include "gw/hono.h"
#include "gw/log.h"
#include "gw/mqtt.h"
#include "gw/spec.h"

#define GW_MOD "gateway"

/* ------------------------------------------------------------------ */
/* Configuration (gw_config table in config.c)                         */
/* ------------------------------------------------------------------ */

enum { GW_MODE_SHARED = 0, GW_MODE_PER_CLIENT = 1 };
enum { GW_WILL_LINK_SHARED = 0, GW_WILL_LINK_PER_CLIENT = 1 }; /* --will-link, --delivery-link */
enum { GW_ANON_AUTO = 0, GW_ANON_TRUE = 1, GW_ANON_FALSE = 2 }; /* --allow-anonymous */

typedef struct gw_gateway_config {
    gw_config_list_t mqtt_listen;
    char *amqp_url;
    gw_config_list_t routes;
    int64_t workers;            /* 0 = number of cores */
    int connection_mode;        /* GW_MODE_* */
    int64_t connect_timeout_ms;
    int64_t max_packet_size;
    int64_t inflight_window;
    int64_t session_clients;    /* --amqp-session-clients */
    int will_link;              /* GW_WILL_LINK_*: L1s (spec 3.4a) or an L1 per client */
    int delivery_link;          /* GW_WILL_LINK_*: L4s (spec 3.12) or an L4 per client */
    int64_t max_client_id_len;
    int64_t keepalive_max;      /* seconds; 0 = no maximum */
    int64_t out_high_watermark;
    int64_t slow_client_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t max_topic_links;
    int log_level;              /* gw_log_level_t */
    int log_format;             /* gw_log_format_t */
    char *lwt_address;
    char *subscription_address;
    char *to_prefix;
    char *pubrel_prefix;
    char *container_id;
    int64_t amqp_idle_timeout_ms;
    char *amqp_tls_ca;     /* amqps:// destinations: CA, client cert/key, verification */
    char *amqp_tls_cert;
    char *amqp_tls_key;
    bool amqp_tls_verify;
    char *amqp_sasl_mechs; /* shared mode: SASL mechanisms toward the AMQP side */
    char *http_listen;          /* HOST:PORT of /healthz /readyz /metrics; NULL/"" = off */
    gw_config_list_t mqtts_listen; /* MQTT over TLS listeners (gw/tls.h) */
    char *tls_cert, *tls_key, *tls_ca;
    char *tls_crl;         /* --tls-crl, NULL = no revocation check */
    char *tls_issuer_tenant_map; /* --tls-issuer-tenant-map, NULL = tenants from user@tenant only */
    int tls_client_cert;        /* gw_tls_client_cert_t */
    int tls_min_version;        /* 0 = "1.2", 1 = "1.3" */
    char *tls_ciphers;
    char *password_file;        /* gw/auth.h format (mqtt-passwd); NULL = no local check */
    char *acl_file;             /* NULL = everything allowed */
    int allow_anonymous;        /* GW_ANON_*: auto = true without a password file */
    char *cert_identity_field;  /* DN attribute of a verified client certificate ("CN") */
    int64_t auth_threads;       /* password verification threads per worker */
    int64_t max_connections;    /* limits (issue 7); 0 = unlimited */
    int64_t auth_fail_limit;    /* failed logins per address and window; 0 = unlimited */
    int64_t auth_fail_window_ms;
    int64_t max_connections_per_ip;
    int64_t max_topic_length;
    int64_t max_topic_levels;
    int64_t publish_rate;       /* PUBLISH/s per client (token bucket); 0 = unlimited */
    int64_t publish_burst;      /* bucket size; 0 = publish_rate */
    int64_t max_subscriptions;  /* distinct filters per client; 0 = unlimited */
    int64_t max_links_per_client; /* publishing links of one client, all destinations */
    /* IoT platform mode (issue 9, iot.c, docs/iot-mode.md) */
    gw_config_list_t iot_listen;  /* listeners whose clients are Hono devices */
    gw_config_list_t iots_listen; /* same over TLS (--tls-* settings) */
    bool iot_allow_unauthenticated;
    char *iot_gateway_map;        /* lines `tenant gateway-device device|*`; NULL = none */
    char *iot_issuer_tenant_map;  /* lines `<issuer DN> <tenant>`; NULL = none (reloaded on SIGHUP) */
    int64_t iot_max_tenants;      /* tenants with their own metrics labels, then "other" */
    int64_t iot_tenant_max_connections; /* per tenant and worker; 0 = unlimited */
    int64_t iot_tenant_rate;      /* telemetry/event messages/s per tenant and worker; 0 = off */
    int64_t iot_tenant_byte_rate; /* payload bytes/s per tenant and worker; 0 = off */
} gw_gateway_config_t;

extern const gw_config_spec_t gw_gateway_config_spec;

/* ------------------------------------------------------------------ */
/* Routing (route.c): target address -> destination URL index          */
/* ------------------------------------------------------------------ */

typedef struct gw_route {
    char *prefix;
    size_t prefix_len;
    size_t dest;        /* index into gw_gateway_t.dest_urls */
    /* `;address=TEMPLATE`: rewrites the address of publications whose topic
     * matches the prefix ({topic}, {topic.}, {rest}, {rest.}; the rest is
     * literal); NULL = the address is the topic itself. Owned. */
    char *addr_template;
    bool relay_never;   /* `;relay=never`: per-topic links even if the peer offers ANONYMOUS-RELAY */
} gw_route_t;

typedef struct gw_routes {
    char **dest_urls;   /* [0] = --amqp-url (default route) */
    size_t ndest;
    gw_route_t *routes;
    size_t nroutes;
} gw_routes_t;

gw_err_t gw_routes_build(gw_routes_t *rt, const char *default_url, const gw_config_list_t *specs,
                         char *why, size_t whylen);
void gw_routes_free(gw_routes_t *rt);
/** Destination index for an address: the longest matching prefix wins. */
size_t gw_routes_lookup(const gw_routes_t *rt, const char *addr, size_t len);
/** The route whose prefix is the longest match of addr; NULL = default route. */
const gw_route_t *gw_routes_match(const gw_routes_t *rt, const char *addr, size_t len);
/**
 * Rewrite a publication topic with the route's address template into buf
 * (cap bytes, NUL-terminated when it fits). Returns the length the full
 * address needs (without the NUL), like snprintf: the caller grows buf and
 * retries when it is >= cap. r must have an addr_template and match topic.
 */
size_t gw_route_rewrite(const gw_route_t *r, const char *topic, size_t tlen, char *buf,
                        size_t cap);

/* ------------------------------------------------------------------ */
/* Client-id registry (registry.c): the only shared structure           */
/* ------------------------------------------------------------------ */

typedef struct gw_registry gw_registry_t;

gw_registry_t *gw_registry_new(void);
void gw_registry_free(gw_registry_t *reg);
/**
 * Register (id -> worker, serial). If another connection held the id, it is
 * replaced and returned in *old_worker / *old_serial (return true): the
 * caller closes it as a takeover (MQTT-3.1.4-2).
 */
bool gw_registry_claim(gw_registry_t *reg, const char *id, size_t len, size_t worker,
                       uint64_t serial, size_t *old_worker, uint64_t *old_serial);
/** Remove id if it is still held by serial. */
void gw_registry_release(gw_registry_t *reg, const char *id, size_t len, uint64_t serial);

/* ------------------------------------------------------------------ */
/* Process and workers                                                 */
/* ------------------------------------------------------------------ */

typedef struct gw_worker gw_worker_t;
/** TLS settings for amqps:// destinations, shared by both connection modes. */
void gw_gateway_amqp_tls_opts(const gw_gateway_config_t *cfg, gw_amqp_opts_t *o);
typedef struct gw_client gw_client_t;

/* One --iot-gateway-map line (iot.c); device "*" = every device. Owned. */
typedef struct gw_iot_gwrule {
    char *tenant, *gateway, *device;
} gw_iot_gwrule_t;

typedef struct gw_gateway {
    const gw_gateway_config_t *cfg;
    gw_spec_addrs_t addrs;
    gw_routes_t routes;
    gw_registry_t *registry;
    gw_worker_t *workers;
    size_t nworkers;
    struct gw_http *http;       /* --http-listen (metrics.c), NULL = off */
    struct gw_tls_server *tls;  /* --mqtts-listen: shared by the workers (thread-safe), NULL = off */
    /* auth.c: current password database and ACL (swapped on SIGHUP under auth_mu) */
    pthread_mutex_t auth_mu;
    bool auth_mu_init;
    gw_auth_passwd_t *passwd;   /* NULL = no password file */
    gw_auth_cache_t *auth_cache;
    struct gw_acl_ref *acl;     /* NULL = no ACL file (under auth_mu) */
    bool acl_on;                /* an ACL file is configured (constant after start) */
    uint64_t acl_gen;           /* __atomic: bumped on every ACL swap */
    /* limits.c: connection counts, global and per IP (accept/free only) */
    uint64_t nconn;             /* __atomic */
    pthread_mutex_t ip_mu;
    struct gw_ip_count **ip_tab; /* hash table, GW_IP_BUCKETS chains */
    struct gw_authfail *authfail; /* --auth-fail-limit table (limits.c), NULL = off */
    atomic_uint_fast64_t next_serial;
    gw_hono_gateways_t *iot_gateways; /* --iot-gateway-map (read-only after start), NULL = none */
    gw_hono_policy_t iot_policy;
    struct gw_iot_gwrule *iot_gwrules; /* --iot-gateway-map lines, for '+' subscriptions */
    size_t iot_ngwrules;
    /* --iot-issuer-tenant-map (iot.c): swapped on SIGHUP under auth_mu */
    gw_auth_certmap_t *iot_certmap; /* NULL = no map configured */
    gw_auth_certmap_t *tls_certmap; /* --tls-issuer-tenant-map (under auth_mu); NULL = none */
} gw_gateway_t;

/*
 * One AMQP session on a destination's connection, shared by up to
 * --amqp-session-clients clients (spec 4.1 common rules). Sharing saves
 * ~3.3 KB per client at each end (a proton session); the bound keeps
 * proton's per-session link list short (it is searched linearly for every
 * incoming attach) and the channel count far below channel-max. A slot
 * takes clients until `joined` reaches the bound, then ends when its last
 * client leaves. Owned by its dest; context of its pn_session_t.
 */
typedef struct gw_ssn_slot {
    pn_session_t *pn;
    struct gw_dest *dest;
    uint32_t live;   /* clients using it now */
    uint32_t joined; /* clients that ever joined */
    /* Links released by clients and not yet detached by the peer, and a
     * 64-bit set of the hashes of their client ids. A client whose id is
     * in the set does not join: proton (both ends) matches an incoming
     * attach to an existing link of that name in the session unless that
     * link is closed at both ends, so a quick reconnect or a takeover must
     * not attach its links next to its predecessor's half-closed ones. */
    uint32_t closing;
    uint64_t closing_ids;
    struct gw_ssn_slot *prev, *next;
} gw_ssn_slot_t;

/* A link shared by every client of a connection (ss_link.c): its proton
 * link, its context (a gw_glink_t with client NULL, owned) and the clients
 * waiting for its credit, in order (gw_client_t.sw_*). */
typedef struct gw_shared {
    pn_link_t *pn;
    struct gw_glink *gl;
    struct gw_client *wait_head, *wait_tail;
} gw_shared_t;

/* One AMQP destination (URL) as seen by one worker (shared mode). */
typedef struct gw_dest {
    gw_worker_t *w;
    struct gw_client *owner; /* per-client mode: the client owning the connection */
    size_t index;
    gw_amqp_conn_t *conn;
    bool up;
    bool closing;   /* shutdown: gw_amqp_conn_close() called */
    bool ever_up;   /* a later UP counts as a reconnect */
    bool up_pub;    /* copy of up for the HTTP thread (__atomic relaxed) */
    gw_ssn_slot_t *slots; /* sessions of this connection (list, owned) */
    gw_ssn_slot_t *cur;   /* the one new clients join; NULL = begin a new one */
    /* The links of this connection shared by its clients (ss_link.c, spec
     * 2.2): L2 and, with --will-link shared, L1s, in the control session. */
    pn_session_t *ctl_ssn;
    gw_shared_t l2, lw, ld; /* ld: the receiver L4s (--delivery-link shared) */
} gw_dest_t;

/* Per-worker counters (metrics.c sums them at scrape time). Written only by
 * the worker's thread, read by the HTTP thread: relaxed atomic loads and
 * stores (GW_STAT_*), which compile to plain moves: the message path pays
 * no locked instruction and the data race stays defined (UBSan/TSan). */
enum { GW_LST_TCP = 0, GW_LST_TLS = 1, GW_LST__COUNT };
#define GW_LST_IOT 0x10 /* or'ed into the accept kind: an --iot(s)-listen listener */
enum { GW_WH_REJECTED = 0, GW_WH_RELEASED, GW_WH_MODIFIED, GW_WH__COUNT };

typedef struct gw_worker_stats {
    uint64_t conn_current[GW_LST__COUNT]; /* up and down: net per worker */
    uint64_t conn_total[GW_LST__COUNT];
    uint64_t connack_refused[6];          /* by CONNACK return code 1..5 */
    uint64_t msgs_in[3];                  /* PUBLISH from clients forwarded, by QoS */
    uint64_t msgs_out[3];                 /* PUBLISH written to clients, by QoS */
    uint64_t bytes_in, bytes_out;         /* MQTT bytes processed / queued for writing */
    uint64_t withheld[GW_WH__COUNT];      /* PUBACK/PUBREC not sent: AMQP outcome */
    uint64_t violations[GW_ERR__COUNT];   /* protocol violations by gw_err_t */
    uint64_t credit_stalls;               /* reading paused for lack of AMQP credit */
    uint64_t slow_disconnects;
    uint64_t takeovers;
    uint64_t keepalive_refused;           /* CONNECTs refused by --keepalive-max */
    uint64_t auth_blocked;                /* CONNECTs refused by --auth-fail-limit */
    uint64_t auth_failed;                 /* bad user name or password */
    uint64_t amqp_reconnects;
    uint64_t acl_denied[3];               /* GW_ACLD_*: publish, subscribe filter, will */
    uint64_t conn_refused[2];             /* GW_LIM_*: over max-connections / per IP */
    uint64_t rate_limited;                /* times a client's reading paused by --publish-rate */
    uint64_t subs_limited;                /* filters refused by --max-subscriptions-per-client */
} gw_worker_stats_t;
enum { GW_ACLD_PUBLISH = 0, GW_ACLD_SUBSCRIBE, GW_ACLD_WILL };
enum { GW_LIM_MAX_CONN = 0, GW_LIM_PER_IP };

#define GW_STAT_GET(w, f) __atomic_load_n(&(w)->stats.f, __ATOMIC_RELAXED)
#define GW_STAT_ADD(w, f, n)                                                                       __atomic_store_n(&(w)->stats.f, __atomic_load_n(&(w)->stats.f, __ATOMIC_RELAXED) + (n),                         __ATOMIC_RELAXED)
#define GW_STAT_INC(w, f) GW_STAT_ADD(w, f, 1u)
#define GW_STAT_DEC(w, f) GW_STAT_ADD(w, f, (uint64_t)-1)

struct gw_worker {
    gw_gateway_t *gw;
    size_t index;
    pthread_t thread;
    bool thread_started;
    struct event_base *base;
    struct evconnlistener **listeners;
    size_t nlisteners;
    gw_dest_t *dests;          /* gw->routes.ndest entries (shared mode) */
    gw_client_t *clients;      /* intrusive list */
    size_t nclients;
    /* serial -> client (open addressing, power-of-two capacity): deliveries
     * on a shared L4s name their client by serial (spec 3.12). */
    gw_client_t **by_serial;
    size_t by_serial_cap, by_serial_n;
    pn_message_t *msg;         /* scratch message for encode/decode on this thread */
    /* Cross-thread requests (takeover close, stop): guarded by ctl_mu. */
    struct event *ctl_ev;
    pthread_mutex_t ctl_mu;
    uint64_t *kill_serials;
    size_t nkill, capkill;
    bool stop_requested;       /* under ctl_mu */
    bool stopping;             /* worker thread only */
    struct event *stop_timer;
    _Alignas(64) gw_worker_stats_t stats; /* own cache lines: written by this worker only */
    gw_auth_pool_t *auth_pool; /* password verification off the loop (NULL without a password file) */
    struct gw_acl_ref *acl;    /* this worker's reference on the ACL in force */
    uint64_t acl_gen;
    uint64_t acl_log_ms;       /* rate limit of "denied by the ACL" lines */
    uint32_t acl_log_suppressed;
    char *addr_buf;            /* scratch: publication address rewritten by a route template */
    size_t addr_cap;
    struct gw_iot_tenants *iot_tenants; /* per-tenant IoT counters (iot.c), NULL until used */
    /* Released links to free after the current batch of proton events
     * (gw_link_release): their context is GW_LINK_REAPING until then. */
    struct gw_reap_item { pn_connection_t *conn; pn_link_t *link; } *reap;
    size_t nreap, capreap;
    struct event *reap_ev;
};

/* Context of a link that waits in the worker's reap list. */
extern char gw_link_reaping;
#define GW_LINK_REAPING ((void *)&gw_link_reaping)
/* The gw_glink_t of a proton link of ours, NULL if released. */
static inline struct gw_glink *gw_glink_of(pn_link_t *l)
{
    void *x = pn_link_get_context(l);
    return x == GW_LINK_REAPING ? NULL : (struct gw_glink *)x;
}
/* The connection pc goes away with everything in it: drop its reap items. */
void gw_worker_reap_forget(gw_worker_t *w, pn_connection_t *pc);

gw_err_t gw_worker_init(gw_worker_t *w, gw_gateway_t *gw, size_t index);
gw_err_t gw_worker_start(gw_worker_t *w);
/** Thread-safe: ask the worker to stop (close listeners and clients, exit loop). */
void gw_worker_request_stop(gw_worker_t *w);
/** Thread-safe: ask the worker to close its client with this serial (takeover). */
void gw_worker_request_kill(gw_worker_t *w, uint64_t serial);
void gw_worker_join(gw_worker_t *w);
void gw_worker_cleanup(gw_worker_t *w);
gw_dest_t *gw_worker_dest(gw_worker_t *w, size_t index);
/** The worker finished stopping once its last client and connection are gone. */
void gw_worker_maybe_exit(gw_worker_t *w);

/* auth.c: authentication and ACL (gw/auth.h). */
typedef struct gw_acl_ref gw_acl_ref_t;
gw_err_t gw_auth_setup(gw_gateway_t *gw, const gw_gateway_config_t *cfg, char *why, size_t whylen);
/** SIGHUP: reload the password and ACL files (keep the old ones on error). */
void gw_auth_reload(gw_gateway_t *gw);
void gw_auth_teardown(gw_gateway_t *gw);
gw_err_t gw_auth_worker_init(gw_worker_t *w);
void gw_auth_worker_cleanup(gw_worker_t *w);
bool gw_auth_allow_anonymous(const gw_gateway_t *gw);
/** ACL check for this client (true when no ACL is configured). */
bool gw_auth_allowed(gw_client_t *c, const char *topic, size_t len, unsigned access,
                     bool is_filter);
/** INFO line for a denial, rate-limited per worker. */
void gw_auth_log_denied(gw_client_t *c, const char *what, const char *topic, size_t len);
/** Submit c->user + the CONNECT password to the worker's pool; gw_connect_continue on success. */
gw_err_t gw_auth_start(gw_client_t *c, const gw_mqtt_connect_t *p);
/** The credential cache only (no PBKDF2), on the loop: for a blocked address. */
gw_auth_result_t gw_auth_check_cached(gw_client_t *c, const gw_mqtt_connect_t *p);
void gw_auth_cancel(gw_client_t *c);

/* limits.c: --max-connections, --max-connections-per-ip, --publish-rate. */
gw_err_t gw_limits_init(gw_gateway_t *gw);
void gw_limits_cleanup(gw_gateway_t *gw);
/** Take a connection slot for c (c->ip set); false = refused (counted and logged). */
bool gw_limits_conn_take(gw_client_t *c);
/** --auth-fail-limit: has c's address reached the limit in the current window? */
bool gw_limits_auth_blocked(gw_client_t *c);
/** Count a failed login (bad user name or password) of c's address. */
void gw_limits_auth_failed(gw_client_t *c);
void gw_limits_conn_release(gw_client_t *c);
/** One PUBLISH token; false = none: reading paused until the bucket refills. */
bool gw_limits_publish_token(gw_client_t *c);
/** Stop reading c for wait_ms (a rate limit other than --publish-rate, e.g. a tenant's). */
void gw_limits_pause(gw_client_t *c, uint64_t wait_ms);
/** Give back the token of a PUBLISH that could not be forwarded yet. */
void gw_limits_publish_refund(gw_client_t *c);
/* The client's subscription set (--max-subscriptions-per-client). */
bool gw_subset_has(const gw_client_t *c, const char *f, size_t len);
gw_err_t gw_subset_add(gw_client_t *c, const char *f, size_t len);
void gw_subset_remove(gw_client_t *c, const char *f, size_t len);
void gw_subset_free(gw_client_t *c);
/** SUBSCRIBE of f: may it be added (true) or is the client at its limit (counted, logged)? */
bool gw_limits_subscribe_ok(gw_client_t *c, const char *f, size_t len);

/* metrics.c: --http-listen (health, readiness, Prometheus metrics). */
gw_err_t gw_metrics_start(gw_gateway_t *gw);
void gw_metrics_stop(gw_gateway_t *gw);

/* AMQP event handler of a worker's shared connection (amqp_events.c). */
void gw_amqp_events_on_event(gw_amqp_conn_t *conn, pn_event_t *event, void *ctx);
void gw_amqp_events_on_state(gw_amqp_conn_t *conn, gw_amqp_state_t state, const char *cond,
                             const char *desc, void *ctx);

/* ------------------------------------------------------------------ */
/* Clients                                                             */
/* ------------------------------------------------------------------ */

typedef enum gw_client_state {
    GW_CLIENT_NEW,        /* waiting for CONNECT */
    GW_CLIENT_CONNECTING, /* CONNECT received, AMQP handshake running */
    GW_CLIENT_CONNECTED,  /* CONNACK 0 written */
    GW_CLIENT_CLOSING,    /* closed; memory released soon */
} gw_client_state_t;

typedef enum gw_close_how {
    GW_CLOSE_CLEAN,    /* DISCONNECT / shutdown: will cleared, clean detach */
    GW_CLOSE_BRUTE,    /* will link closed with amqp:link:detach-forced */
    GW_CLOSE_TAKEOVER, /* newer connection for the id: clean detach, no will-clear */
    GW_CLOSE_REFUSED,  /* CONNECT refused: clean detach, CONNACK already queued */
} gw_close_how_t;

typedef enum gw_link_role {
    GW_LINK_WILL,
    GW_LINK_SS,
    GW_LINK_DELIVERY, /* the shared L4s (client NULL), spec 3.12 */
    GW_LINK_CONTROL,
    GW_LINK_PUBLISH,
    GW_LINK_PUBREL,
    GW_LINK_TOPIC,
    GW_LINK_COMMAND, /* IoT: receiver on command/<tenant>/<device> */
} gw_link_role_t;

/* Our context on every proton link we open (pn_link_set_context). */
typedef struct gw_glink {
    gw_client_t *client;
    pn_link_t *pn;
    uint8_t role;
    uint8_t dest;
    bool qos2;          /* TOPIC: rcv-settle-mode second */
    char *topic;        /* TOPIC: owned target address */
    uint64_t last_use;
    struct gw_glink *next;
} gw_glink_t;

/* Outbound (SS -> client) QoS 1/2 message waiting for the client's acks. */
enum {
    GW_OUT_WAIT_PUBACK,
    GW_OUT_WAIT_PUBREC,
    GW_OUT_PUBREL_PENDING, /* AMQP_PUBREL to send (no credit yet) */
    GW_OUT_PUBREL_SENT,    /* AMQP_PUBREL sent, waiting for accepted */
    GW_OUT_WAIT_PUBCOMP,
};

typedef struct gw_out_msg {
    pn_delivery_t *dlv;    /* AMQP delivery settled when the client completes */
    uint64_t amqp_id;      /* message-id for AMQP_PUBREL */
    void *owner;           /* IoT command: its receiver (gw_glink_t); NULL = publish link */
    uint16_t pid;
    uint8_t qos;
    uint8_t state;
} gw_out_msg_t;

/* Inbound (client -> AMQP) QoS 1/2 message not yet acknowledged to the
 * client (QoS 2: until PUBREL). Keeps a copy of topic and payload so that a
 * `released`/`modified` outcome can be retried after a back-off. */
typedef struct gw_in_msg {
    pn_delivery_t *dlv;    /* NULL while waiting for a retry */
    char *data;            /* topic then payload (owned) */
    uint64_t due_ms;       /* retry time when dlv == NULL */
    uint32_t plen;
    uint16_t tlen;
    uint16_t pid;
    uint8_t qos;
    uint8_t attempts;
    bool retain;
    bool accepted;         /* QoS 2: PUBREC written, settled on PUBREL */
    bool iot;              /* IoT upload: never resent (Telemetry/Event API); data NULL */
} gw_in_msg_t;

#define GW_PUBLISH_MAX_RETRIES 3
#define GW_PUBLISH_RETRY_BASE_MS 100

/* A SUBSCRIBE or UNSUBSCRIBE waiting for its disposition. */
/* A control message on the shared L2 (AMQP_LIST, _CLOSE, _SUBSCRIBE,
 * _UNSUBSCRIBE): the context of its delivery until its outcome, owned by
 * the client, which clears that context when it goes (gw_ss_client_gone). */
typedef struct gw_ss_req {
    gw_client_t *c;
    pn_delivery_t *dlv; /* NULL: nothing in flight */
    uint8_t kind;       /* GW_DK_* */
} gw_ss_req_t;

typedef struct gw_pending_sub {
    struct gw_pending_sub *next;
    gw_ss_req_t req;
    uint16_t pid;
    bool unsub;
    uint16_t count;
    uint8_t qos[]; /* requested QoS per filter (SUBSCRIBE) */
} gw_pending_sub_t;

/* Delivery context tags on our sender links (no pointers: safe after close). */
#define GW_DTAG(kind, pid) ((void *)(uintptr_t)(((uintptr_t)(kind) << 16) | (uintptr_t)(pid)))
#define GW_DTAG_KIND(p) ((unsigned)(((uintptr_t)(p)) >> 16))
#define GW_DTAG_PID(p) ((uint16_t)((uintptr_t)(p) & 0xFFFFu))
enum {
    GW_DK_NONE = 0,
    GW_DK_WILL,
    GW_DK_CLOSE,
    GW_DK_LIST,
    GW_DK_SUBSCRIBE,
    GW_DK_UNSUBSCRIBE,
    GW_DK_PUB1,
    GW_DK_PUB2,
    GW_DK_PUBREL,
};

struct gw_client {
    gw_worker_t *w;
    gw_client_t *prev, *next;
    uint64_t serial;
    gw_client_state_t state;
    struct bufferevent *bev;
    struct event *timer;     /* connect timeout, then keep alive, then deferred free */
    struct event *slow_ev;   /* output above the high watermark for too long */
    char peer[64];
    uint8_t lst_kind;        /* GW_LST_TCP / GW_LST_TLS (metrics) */
    char *id;                /* NUL-terminated client id (after CONNECT) */
    size_t id_len;
    bool registered;
    gw_mqtt_ctx_t mctx;
    bool clean_session;
    uint16_t keep_alive;
    uint64_t last_rx_ms;

    /* CONNECT progress */
    bool has_will, will_sent, will_done;
    bool ss_sent, ss_done, subs_done;
    bool session_present;
    gw_spec_publish_t will;  /* topic/payload owned (will_buf) until sent */
    char *will_buf;

    /* AMQP side (shared mode: sessions on the worker's connections;
     * per-client mode: on the client's own connections in dests) */
    gw_ssn_slot_t **ssn;     /* per destination: the session the client joined, NULL if none */
    gw_dest_t *dests;        /* per-client mode only, else NULL */
    size_t nconns;           /* per-client mode: connections not CLOSED yet */
    bool has_credentials;    /* CONNECT carried a user name */
    char *user;              /* authenticated (or claimed, without a password file) user; owned */
    size_t user_len;
    gw_auth_job_t *auth_job; /* password verification running */
    char *username, *password; /* per-client mode: SASL PLAIN (owned) */
    bool free_pending;       /* memory release waits for nconns == 0 */
    gw_glink_t l_will, l_control, l_publish, l_pubrel;
    size_t ss_dest;          /* destination of the Subscription Service (shared L2) */
    gw_ss_req_t ss_req;      /* AMQP_LIST / AMQP_CLOSE in flight */
    gw_ss_req_t will_req;    /* AMQP_WILL in flight on the shared L1s */
    /* --delivery-link shared (spec 3.12): deliveries that arrived before
     * CONNACK (encoded copies, processed at CONNACK) and settlements held
     * while the output is above the high watermark (spec 6.3 rule 3). */
    struct gw_parked *parked;
    pn_delivery_t **held;
    uint32_t nparked, nheld, capheld;
    struct gw_client *sw_next, *sw_prev; /* waiting for credit of a shared link */
    gw_shared_t *sw_on;      /* ... that one (NULL: not waiting) */
    gw_glink_t *topic_links;
    size_t ntopic_links;
    uint32_t link_seq;
    uint64_t use_clock;

    /* flow control */
    bool blocked_credit;     /* waiting for AMQP credit: socket not read */
    bool blocked_output;     /* output above the high watermark */
    bool blocked_rate;       /* --publish-rate: no token; rate_ev resumes */
    bool counted_conn;       /* holds a slot in gw->nconn / the per-IP table */
    char ip[48];             /* peer address without port (per-IP limit key) */
    double tokens;           /* publish token bucket */
    uint64_t tokens_ms;
    struct event *rate_ev;
    char **subset;           /* the client's filters, sorted, owned (limits.c) */
    size_t nsubset, capsubset;
    bool subs_limit_logged;  /* one log line per client for the subscription limit */
    uint32_t owed_credit;    /* publish-link credit held back while blocked_output */

    /* outbound QoS 1/2 */
    uint64_t *pid_bitmap;    /* 65536 bits, allocated on first use */
    uint16_t next_pid;
    gw_out_msg_t *out;
    size_t nout, capout;

    /* inbound QoS 1/2 */
    gw_in_msg_t *in;
    size_t nin, capin;
    struct event *retry_ev;  /* resend of released/modified PUBLISHes */

    gw_pending_sub_t *subs;

    /* IoT mode (iot.c): set at accept for --iot(s)-listen clients */
    bool iot;
    char *iot_tenant, *iot_device; /* authenticated identity (owned); NULL = unauthenticated */
    struct gw_iot_cmdsub *iot_cmds; /* command subscriptions, each with its receiver link */
    gw_hono_reqtab_t *iot_reqtab;   /* outstanding request/response commands */
    gw_hono_request_t *iot_held_req; /* taken for a response waiting for credit (owned) */
    char iot_held_id[GW_HONO_REQ_ID_LEN + 1];
    struct gw_iot_tstat *iot_tstat; /* the tenant's counters (connection's tenant), may be NULL */
};

/* client.c */
/** A new connection on a listener of kind GW_LST_TCP or GW_LST_TLS (handshake runs first). */
void gw_client_accept(gw_worker_t *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                      int kind);
/** Close the client: AMQP side according to how, then free it (deferred). */
void gw_client_close(gw_client_t *c, gw_close_how_t how, const char *reason);
/** Close after the output (e.g. a CONNACK) is flushed, bounded in time. */
void gw_client_close_after_flush(gw_client_t *c, gw_close_how_t how, const char *reason);
/** Name for logs: client id, else peer address. */
const char *gw_client_name(const gw_client_t *c);
/** Re-evaluate whether the socket should be read (credit, watermark, state). */
void gw_client_update_read(gw_client_t *c);
/** Resume processing buffered input (deferred) after a block was lifted. */
void gw_client_resume(gw_client_t *c);
/** Append raw bytes to the client's output, then check the high watermark. */
void gw_client_write(gw_client_t *c, const void *data, size_t len);
/* After queueing output on c->bev directly: make sure EV_WRITE is on (a plain
 * TCP client starts with EV_READ only; libevent drops EPOLLOUT again once the
 * output is empty, so this costs an epoll_ctl only when there is data). */
static inline void gw_client_want_write(gw_client_t *c)
{
    if (!(bufferevent_get_enabled(c->bev) & EV_WRITE))
        bufferevent_enable(c->bev, EV_WRITE);
}
/* gw_client_write() that first tries a direct send() when nothing is
 * queued (plain TCP): for a lone packet such as CONNACK. */
void gw_client_write_first(gw_client_t *c, const void *data, size_t len);
/* Input kept unprocessed while a CONNECT is answered (bytes). */
#define GW_CONNECTING_INPUT_MAX 65536
void gw_client_write_ack(gw_client_t *c, gw_mqtt_type_t type, uint16_t pid);
void gw_client_check_output(gw_client_t *c);
/** Publish-link credit: give n units back (or hold them while output is above the watermark). */
void gw_client_replenish(gw_client_t *c, uint32_t n);
void gw_client_flush_amqp(gw_client_t *c);
gw_client_t *gw_client_find_serial(gw_worker_t *w, uint64_t serial);
/** Destination d as used by this client (its own in per-client mode). */
gw_dest_t *gw_client_dest(gw_client_t *c, size_t d);
/** Per-client mode: open the client's own AMQP connections (SASL from CONNECT). */
gw_err_t gw_client_open_conns(gw_client_t *c);
/** Per-client mode: connect destination d (no-op if already open). */
gw_err_t gw_client_open_dest(gw_client_t *c, size_t d);
/** Per-client mode: one of the client's connections came up; attach links when all are. */
void gw_connect_on_conn_up(gw_client_t *c);
/** Per-client mode: a connection of the client reached CLOSED. */
void gw_client_on_conn_closed(gw_client_t *c, gw_dest_t *dest);
/** Session on destination d for this client, opened on first use (NULL if down). */
pn_session_t *gw_client_session(gw_client_t *c, size_t d);
/* Detach (closed) a link of ours and drop its context; it is freed now if
 * the peer has detached it already, else when the peer's detach arrives. */
void gw_link_release(gw_client_t *c, pn_link_t *l, const char *cond, const char *desc);
/* Our end of a released link is done (the peer detached): free it. */
void gw_link_free_released(pn_link_t *l);
/* The client leaves its session on destination d (its links are closed). */
void gw_client_leave_session(gw_client_t *c, size_t d);
/* Unlink the slot from its dest, end its session and free it. */
void gw_ssn_slot_end(gw_ssn_slot_t *s);
/* The connection of dest went DOWN: free every slot (proton frees the sessions). */
void gw_dest_forget_slots(gw_dest_t *dest);
uint64_t gw_now_ms(void);
/** Arm the keep-alive check (MQTT-3.1.2-24) after CONNACK. */
void gw_client_start_keepalive(gw_client_t *c);
/** Worker shutdown: close (clean) if needed and free now. */
void gw_client_destroy(gw_client_t *c);
/** CONNECT could not be completed: CONNACK 3 (or rc), then close. */
void gw_connect_fail(gw_client_t *c, uint8_t rc, const char *reason);

/* Packet dispatcher result: GW_ERR_AGAIN = blocked (keep the packet, stop reading). */
gw_err_t gw_handle_connect(gw_client_t *c, const gw_mqtt_connect_t *p);
void gw_connect_progress(gw_client_t *c);
/** Second half of CONNECT once the client is authenticated: will ACL, links, AMQP. */
void gw_connect_continue(gw_client_t *c);
void gw_connect_on_timeout(gw_client_t *c);
gw_err_t gw_handle_publish(gw_client_t *c, const gw_mqtt_publish_t *p);
gw_err_t gw_handle_pubrel(gw_client_t *c, uint16_t pid);
gw_err_t gw_handle_subscribe(gw_client_t *c, const gw_mqtt_subscribe_t *p);
gw_err_t gw_handle_unsubscribe(gw_client_t *c, const gw_mqtt_unsubscribe_t *p);
gw_err_t gw_handle_puback(gw_client_t *c, uint16_t pid);
gw_err_t gw_handle_pubrec(gw_client_t *c, uint16_t pid);
gw_err_t gw_handle_pubcomp(gw_client_t *c, uint16_t pid);
gw_err_t gw_handle_disconnect(gw_client_t *c);

/* iot.c: IoT platform mode (Hono conventions, gw/hono.h). */
gw_err_t gw_iot_setup(gw_gateway_t *gw, char *why, size_t whylen);
void gw_iot_teardown(gw_gateway_t *gw);
void gw_iot_worker_cleanup(gw_worker_t *w);
/** CONNECT of an IoT client once authenticated: identity; false = refused (*rc, *why). */
bool gw_iot_connect(gw_client_t *c, uint8_t *rc, const char **why);
/** True when --iot-issuer-tenant-map is configured (constant after start). */
bool gw_iot_issuer_map_on(const gw_gateway_t *gw);
/**
 * User name "<ident>@<tenant>" (malloc'd into *out, length *outlen) for a
 * verified device certificate whose issuer the map names. GW_ERR_NOT_FOUND:
 * issuer not in the map; GW_ERR_NOMEM. Takes auth_mu.
 */
/** --tls-issuer-tenant-map is set (client certificates on --mqtts-listen). */
bool gw_tls_issuer_map_on(const gw_gateway_t *gw);
gw_err_t gw_iot_cert_user(gw_gateway_t *gw, bool iot, X509 *cert, const char *ident, size_t ilen,
                          char **out, size_t *outlen);
/** SIGHUP: load --iot-issuer-tenant-map again (the old map is kept on error). */
void gw_iot_reload(gw_gateway_t *gw);
gw_err_t gw_iot_publish(gw_client_t *c, const gw_mqtt_publish_t *p);
gw_err_t gw_iot_subscribe(gw_client_t *c, const gw_mqtt_subscribe_t *p);
gw_err_t gw_iot_unsubscribe(gw_client_t *c, const gw_mqtt_unsubscribe_t *p);
void gw_iot_on_command(gw_client_t *c, gw_glink_t *gl, pn_delivery_t *dlv);
/** Sender credit arrived: send waiting ttd notifications. */
void gw_iot_on_flow(gw_client_t *c);
/** Client closing: detach command links, ttd=0 notifications, free IoT state. */
void gw_iot_close(gw_client_t *c);
/** PUBACK of a QoS 1 command (outbound.c): settle accepted, one credit back. */
void gw_iot_on_puback(gw_client_t *c, pn_delivery_t *dlv, void *owner);
/** Drop proton pointers of destination d (connection DOWN). */
void gw_iot_forget_dest(gw_client_t *c, size_t d);
/** Per-tenant IoT metrics, summed over the workers (metrics.c collect). */
struct gw_metrics_writer;
void gw_iot_metrics(gw_gateway_t *gw, struct gw_metrics_writer *mw);

/* handle_publish.c helpers shared with iot.c */
/** Sender for (destination, address, QoS class): cached, see handle_publish.c. */
gw_glink_t *gw_publish_sender(gw_client_t *c, size_t d, const char *addr, size_t alen, bool qos2,
                              bool relay_ok, gw_err_t *err);
/** Track an unacknowledged QoS 1/2 IoT upload (no copy kept: never resent). */
gw_err_t gw_publish_track_iot(gw_client_t *c, const gw_mqtt_publish_t *p, pn_delivery_t *dlv);

/** Resend PUBLISHes whose retry time has come (on the retry timer and on credit). */
void gw_publish_retry(gw_client_t *c);
void gw_publish_free(gw_client_t *c);

/* Dispositions and messages from AMQP for one client (amqp_events.c helpers). */
void gw_publish_on_outcome(gw_client_t *c, gw_glink_t *gl, pn_delivery_t *dlv);
void gw_subscribe_on_outcome(gw_client_t *c, pn_delivery_t *dlv, gw_pending_sub_t *ps);
void gw_connect_on_outcome(gw_client_t *c, pn_delivery_t *dlv, unsigned kind);

/* ss_link.c: the links shared by the clients of a connection (spec 2.2):
 * L2 toward the Subscription Service, L1s toward the Will Service. */
/* The L2 of c's destination d, attached on first use; NULL if it is down. */
pn_link_t *gw_ss_link(gw_client_t *c, size_t d);
/* True if c may send one control message now; else c waits in the
 * destination's queue and is resumed (gw_connect_progress or
 * gw_client_resume) when credit arrives. */
bool gw_ss_ready(gw_client_t *c);
/* Send w->msg on c's L2 as req (kind GW_DK_*); needs gw_ss_ready(). */
gw_err_t gw_ss_send(gw_client_t *c, gw_ss_req_t *req, unsigned kind);
/* The client goes: leave the queue, orphan its requests in flight. */
void gw_ss_client_gone(gw_client_t *c);
/* Events of a shared link (gl: its context, client NULL). */
void gw_ss_on_flow(gw_dest_t *dest, gw_glink_t *gl);
void gw_ss_on_delivery(gw_dest_t *dest, pn_delivery_t *dlv);
void gw_ss_on_remote_close(gw_dest_t *dest, pn_link_t *link);
/* The connection went DOWN: forget both links and their queues. */
void gw_ss_dest_down(gw_dest_t *dest);
/* Frees the contexts of the shared links (the worker or client goes). */
void gw_ss_dest_free(gw_dest_t *dest);
/* True if c registered its will over dest's L1s: dest's loss ends c. */
bool gw_ss_dest_used(gw_client_t *c, gw_dest_t *dest);
/* --delivery-link shared: the L4s of destination d, attached on first use,
 * with GW_DL_CREDIT credit, topped up as deliveries arrive (spec 6.3 rule 7). */
#define GW_DL_CREDIT 10000
pn_link_t *gw_dl_link(gw_client_t *c, size_t d);
/* True once the peer has attached c's L4s (AMQP_LIST/CLOSE may name it). */
bool gw_dl_ready(gw_client_t *c);
/* A delivery arrived on an L4s: hand it to the client of its serial. */
void gw_dl_on_delivery(gw_dest_t *dest, pn_delivery_t *dlv);
/* The peer attached an L4s: CONNECTs waiting for it go on. */
void gw_dl_on_remote_open(gw_dest_t *dest);
/* c goes (L4s): settle what it holds, send AMQP_OFFLINE (spec 3.12). */
void gw_dl_client_gone(gw_client_t *c);
/* CONNACK written: process the deliveries parked before it. */
void gw_dl_connected(gw_client_t *c);
/* Settle an outbound delivery accepted now, or hold it while c's output
 * is above its high watermark (L4s); gw_dl_release_held() at the drain. */
void gw_dl_settle_accepted(gw_client_t *c, pn_delivery_t *dlv);
void gw_dl_release_held(gw_client_t *c);
/* --will-link shared: the L1s of destination d, attached on first use. */
pn_link_t *gw_wl_link(gw_client_t *c, size_t d);
/* As gw_ss_ready() for c's L1s. */
bool gw_wl_ready(gw_client_t *c);
/* AMQP_WILL of c (c->will) with correlation-id = c's id on its L1s, as
 * c->will_req; needs gw_wl_ready(). */
gw_err_t gw_wl_send_will(gw_client_t *c);
/* c goes: orphan its AMQP_WILL in flight and, if the WS has its will, send
 * AMQP_WILL_PUBLISH (brute, with reason) or AMQP_WILL_CLEAR (otherwise) on
 * its L1s without waiting for credit (spec 4.14, 4.15). */
void gw_wl_client_gone(gw_client_t *c, gw_close_how_t how, const char *reason);
void gw_connect_on_control(gw_client_t *c, pn_delivery_t *dlv);
/* AMQP_SUBSCRIPTIONS (decoded) for c: session present, its filters. */
void gw_connect_on_subscriptions(gw_client_t *c, const gw_spec_msg_t *m);
void gw_outbound_on_delivery(gw_client_t *c, pn_delivery_t *dlv);
/* The delivery's message already in c->w->msg: decode and forward it. */
void gw_outbound_process(gw_client_t *c, pn_delivery_t *dlv);
void gw_outbound_on_pubrel_outcome(gw_client_t *c, pn_delivery_t *dlv);
/** Send AMQP_PUBRELs waiting for credit on $mqtt.<id>.pubrel. */
void gw_outbound_send_pending_pubrels(gw_client_t *c);
void gw_outbound_free(gw_client_t *c);
/**
 * IoT commands at QoS 1 (iot.c): track dlv, left unsettled, as waiting for
 * PUBACK of a new packet id (*pid). owner = the command receiver's glink.
 * GW_ERR_LIMIT (no packet id free), GW_ERR_NOMEM.
 */
gw_err_t gw_outbound_track(gw_client_t *c, pn_delivery_t *dlv, void *owner, uint16_t *pid);
/** Forget the tracked delivery of pid (not settled). */
void gw_outbound_untrack(gw_client_t *c, uint16_t pid);
/**
 * Forget every tracked delivery of owner: settled with outcome first when
 * outcome != 0 (0: the link is gone, the delivery must not be touched).
 */
void gw_outbound_drop_owner(gw_client_t *c, void *owner, uint64_t outcome);
/** A free packet id: preferred if it is 1..65535 and free, else the next free one (0 if none). */
uint16_t gw_pktid_take(gw_client_t *c, uint64_t preferred, bool has_preferred);
void gw_pktid_release(gw_client_t *c, uint16_t pid);

#endif
