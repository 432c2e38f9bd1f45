/*
 * store.h - durable state of the subscription service.
 *
 * Tables: sessions (persistent client ids), subs (client id, filter, QoS),
 * retained (topic -> payload, QoS), msgs (a publication stored once) and
 * queue (one row per copy owed to a persistent session, referencing msgs by
 * id; its packet id, QoS, retain flag and state). Everything the service
 * accepted survives a kill -9 once the transaction that recorded it has
 * committed.
 *
 * Group commit: writes are made inside one open transaction that the
 * caller begins lazily (gw_subs_store_begin() is idempotent) and ends with
 * gw_subs_store_commit(); only then are the deliveries that depended on
 * those writes settled. Strings passed in are copied by SQLite; strings
 * handed to the load callbacks are valid only during the callback.
 * Not thread-safe: one store per event loop.
 */
#ifndef GW_SUBS_STORE_H
#define GW_SUBS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/error.h"

typedef struct gw_subs_store gw_subs_store_t;

/* State of a queued copy (queue.state). */
enum {
    GW_SUBS_Q_QUEUED = 0,   /* never transferred */
    GW_SUBS_Q_SENT = 1,     /* transferred at least once: redelivery has DUP */
    GW_SUBS_Q_RELEASED = 2, /* QoS 2: AMQP_PUBREL accepted, waiting for PUBCOMP */
};

/** Open or create the database at path (WAL). sync_full: fsync at each commit. */
gw_err_t gw_subs_store_open(const char *path, bool sync_full, gw_subs_store_t **out);
/**
 * Bound SQLite's page cache of this connection to bytes (PRAGMA cache_size,
 * in KiB). The cache fills up to the bound as sessions, subscriptions and
 * queue rows are touched and stays in RSS: without a bound set here it is
 * SQLite's compiled-in default (2 MiB unless the build changed it).
 */
gw_err_t gw_subs_store_set_cache_size(gw_subs_store_t *st, int64_t bytes);
/** The page cache bound now in force, in bytes (read back from SQLite). */
int64_t gw_subs_store_cache_size(gw_subs_store_t *st);
/** Commit what is pending and close. NULL is ignored. */
void gw_subs_store_close(gw_subs_store_t *st);

/** Begin the batch transaction unless one is open. */
gw_err_t gw_subs_store_begin(gw_subs_store_t *st);
/** True while a batch transaction is open. */
bool gw_subs_store_in_batch(const gw_subs_store_t *st);
/** Commit the open batch (GW_OK if none is open). On failure it is rolled back. */
gw_err_t gw_subs_store_commit(gw_subs_store_t *st);
/** Number of writes made since open (to tell whether a step wrote anything). */
uint64_t gw_subs_store_writes(const gw_subs_store_t *st);

/* Writes (each begins the batch if needed). */
gw_err_t gw_subs_store_session_put(gw_subs_store_t *st, const char *id);
/** When a persistent session went offline, in ms since the epoch (wall
 * clock, so that it survives a restart); 0 = online again. For
 * --session-expiry. */
gw_err_t gw_subs_store_session_offline(gw_subs_store_t *st, const char *id, int64_t wall_ms);
/** QoS 2 duplicate detection (spec 5.2 publications rule 8): the record of
 * (publisher, packet id) with the publication's digest; delete one (pid
 * 1..65535) or all of a publisher's (pid -1). */
gw_err_t gw_subs_store_qos2_put(gw_subs_store_t *st, const char *publisher, size_t len,
                                uint16_t pid, uint64_t digest);
gw_err_t gw_subs_store_qos2_delete(gw_subs_store_t *st, const char *publisher, size_t len,
                                   int pid);
/** Delete the session, its subscriptions and its queue rows. */
gw_err_t gw_subs_store_session_delete(gw_subs_store_t *st, const char *id);
gw_err_t gw_subs_store_sub_put(gw_subs_store_t *st, const char *id, const char *filter,
                               size_t flen, uint8_t qos);
gw_err_t gw_subs_store_sub_delete(gw_subs_store_t *st, const char *id, const char *filter,
                                  size_t flen);
gw_err_t gw_subs_store_retained_put(gw_subs_store_t *st, const char *topic, size_t tlen,
                                    const void *payload, size_t plen, uint8_t qos);
gw_err_t gw_subs_store_retained_delete(gw_subs_store_t *st, const char *topic, size_t tlen);
/** Store a publication once; *id receives its row id (> 0). */
gw_err_t gw_subs_store_msg_put(gw_subs_store_t *st, const char *topic, size_t tlen,
                               const void *payload, size_t plen, uint8_t qos, int64_t *id);
gw_err_t gw_subs_store_msg_delete(gw_subs_store_t *st, int64_t id);
/** Append a queue row; *seq receives its row id (ordering key). */
gw_err_t gw_subs_store_queue_put(gw_subs_store_t *st, const char *id, int64_t msg_id,
                                 uint8_t qos, uint16_t pkt_id, bool retain, int state,
                                 int64_t *seq);
gw_err_t gw_subs_store_queue_state(gw_subs_store_t *st, int64_t seq, int state);
/** Record the packet id given at a copy's first transfer, with its new state. */
gw_err_t gw_subs_store_queue_sent(gw_subs_store_t *st, int64_t seq, uint16_t pkt_id, int state);
gw_err_t gw_subs_store_queue_delete(gw_subs_store_t *st, int64_t seq);

/* Recovery, each in a stable order (queue: by seq). A callback error stops the walk. */
/* offline_ms: as given to gw_subs_store_session_offline (0: never recorded). */
typedef gw_err_t (*gw_subs_store_session_fn)(const char *id, int64_t offline_ms, void *ctx);
typedef gw_err_t (*gw_subs_store_sub_fn)(const char *id, const char *filter, size_t flen,
                                         uint8_t qos, void *ctx);
typedef gw_err_t (*gw_subs_store_retained_fn)(const char *topic, size_t tlen,
                                              const void *payload, size_t plen, uint8_t qos,
                                              void *ctx);
typedef gw_err_t (*gw_subs_store_msg_fn)(int64_t id, const char *topic, size_t tlen,
                                         const void *payload, size_t plen, uint8_t qos,
                                         void *ctx);
typedef gw_err_t (*gw_subs_store_queue_fn)(int64_t seq, const char *id, int64_t msg_id,
                                           uint8_t qos, uint16_t pkt_id, bool retain, int state,
                                           void *ctx);
typedef gw_err_t (*gw_subs_store_qos2_fn)(const char *publisher, size_t len, uint16_t pid,
                                          uint64_t digest, void *ctx);
/** The QoS 2 records, oldest first. */
gw_err_t gw_subs_store_load_qos2(gw_subs_store_t *st, gw_subs_store_qos2_fn fn, void *ctx);
gw_err_t gw_subs_store_load(gw_subs_store_t *st, gw_subs_store_session_fn on_session,
                            gw_subs_store_sub_fn on_sub, gw_subs_store_retained_fn on_retained,
                            gw_subs_store_msg_fn on_msg, gw_subs_store_queue_fn on_queue,
                            void *ctx);

#endif
