/*
 * will.h - internals of will-service (not part of libgwcore).
 *
 *   main.c        process: config, event loop, signals
 *   config.c      the configuration table (env prefix WILL_)
 *   service.c     links on $mqtt.lwtservice, will lifecycle, timers
 *   publisher.c   publication of wills to --publish-url, retries
 *   store.h       durable store interface, store_sqlite.c its backend
 *
 * Everything runs on one libevent loop in one thread.
 */
#ifndef GW_WILL_H
#define GW_WILL_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "gw/amqp.h"
#include "gw/config.h"
#include "gw/error.h"
#include "gw/service.h"
#include "store.h"

#define WILL_MOD "will"

typedef struct gw_will_config {
    gw_svc_config_t common; /* --listen, --connect, TLS/SASL, --http-listen, logging */
    char *address;         /* $mqtt.lwtservice */
    char *publish_url;     /* where wills are published */
    char *store;           /* SQLite path */
    int store_sync;        /* gw_will_sync_t */
    int64_t grace_seconds; /* orphaned wills after a restart */
    int64_t will_delay;    /* ms */
    int64_t retry_min;     /* ms */
    int64_t retry_max;     /* ms */
    int64_t max_rejects;   /* rejected publications retried this many times, then dropped */
    int64_t credit;        /* per will link */
    int64_t max_will_size; /* bytes of one AMQP_WILL message */
    int64_t batch_max;     /* store writes per group commit, at most */
} gw_will_config_t;

extern const gw_config_spec_t gw_will_config_spec;

/** Checks across options (after the table's own bounds). Writes why and returns GW_ERR_CONFIG. */
gw_err_t gw_will_config_check(const gw_will_config_t *cfg, char *why, size_t whylen);
/** Fill AMQP options from the configuration (strings borrowed from cfg). */
void gw_will_config_amqp_opts(const gw_will_config_t *cfg, bool incoming, gw_amqp_opts_t *o);

/* ------------------------------------------------------------------ */
/* Publisher                                                           */
/* ------------------------------------------------------------------ */

typedef struct gw_will_publisher gw_will_publisher_t;

typedef struct gw_will_pub_stats {
    uint64_t published; /* accepted (QoS 1/2) or sent (QoS 0) */
    uint64_t retried;   /* released/modified/rejected/link lost -> sent again */
    uint64_t rejected;  /* rejected outcomes */
    uint64_t dropped;   /* given up after max_rejects rejections */
    uint64_t published_qos[3];
    int up;             /* connection up with a session */
    int64_t pending;    /* publications not done yet (gauge) */
} gw_will_pub_stats_t;

/** Connects to cfg->publish_url with reconnect. cfg, store: borrowed, outlive it. */
gw_err_t gw_will_publisher_new(struct event_base *base, const gw_will_config_t *cfg,
                               gw_will_store_t *store, gw_will_publisher_t **out);
/**
 * Publish rec (a record of the PUBLISHING set, rec->id > 0). Takes
 * ownership of rec. The store row is deleted once the publication is done.
 * maybe_sent: read back at start-up (a send before the crash is possible).
 */
void gw_will_publisher_enqueue(gw_will_publisher_t *pub, gw_will_rec_t *rec, bool maybe_sent);
/** Begin a graceful close of the connection; pending publications stay in the store. */
void gw_will_publisher_close(gw_will_publisher_t *pub);
/** True once the connection is gone after gw_will_publisher_close(). */
bool gw_will_publisher_closed(const gw_will_publisher_t *pub);
/** Free everything (destroys the connection if still there). NULL is a no-op. */
void gw_will_publisher_free(gw_will_publisher_t *pub);
gw_will_pub_stats_t gw_will_publisher_stats(const gw_will_publisher_t *pub);
/**
 * The live counters, for the HTTP thread: read every field with GW_SVC_GET
 * (the loop thread writes them with relaxed atomic stores).
 */
const gw_will_pub_stats_t *gw_will_publisher_stats_ref(const gw_will_publisher_t *pub);
/** Called (if set) whenever the publisher's connection reaches CLOSED. */
void gw_will_publisher_on_closed(gw_will_publisher_t *pub, void (*fn)(void *), void *ctx);
/**
 * Called (if set) right before each store write of the publisher (the
 * delete of a publication that is done), so that the service can open its
 * group-commit batch and the write shares that commit (a publishing row
 * deleted late is at worst published again after a crash: at least once).
 */
void gw_will_publisher_on_write(gw_will_publisher_t *pub, void (*fn)(void *), void *ctx);

/* ------------------------------------------------------------------ */
/* Service                                                             */
/* ------------------------------------------------------------------ */

typedef struct gw_will_service gw_will_service_t;

/**
 * Open the store, queue its publishing wills, give its held wills a grace
 * period, start the publisher, the listener and/or the router connection.
 * cfg borrowed; outlives the service.
 */
gw_err_t gw_will_service_start(struct event_base *base, const gw_will_config_t *cfg,
                               gw_will_service_t **out);
/** Port the listener is bound to (0 without --listen). */
uint16_t gw_will_service_port(const gw_will_service_t *svc);
/**
 * Graceful stop: no will is published because of it (wills stay in the
 * store; after the restart they get the grace period). Breaks the loop when
 * every connection is closed, or after a bound.
 */
void gw_will_service_stop(gw_will_service_t *svc);
void gw_will_service_free(gw_will_service_t *svc);
/** /readyz (gw_ready_fn, HTTP thread): a listener or a router connection, and the publisher. */
bool gw_will_service_ready(void *svc, char *why, size_t whylen);
/** /metrics (gw_metrics_collect_fn, HTTP thread). */
void gw_will_service_collect(gw_metrics_writer_t *w, void *svc);

#endif
