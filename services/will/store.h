/*
 * store.h - durable store of the Will Service.
 *
 * Two kinds of rows:
 *
 *  - HELD wills, keyed by the MQTT client id (the name of the per-client
 *    link that delivered them, or the correlation-id of a message on a
 *    shared will link). A held will belongs to an attached link, waits for a
 *    will delay, or is an orphan after a restart (grace period).
 *  - PUBLISHING wills: a held will whose publication was decided (its link
 *    was lost and no re-attach came in time). gw_will_store_mark_publishing()
 *    (its own transaction) or gw_will_store_move_publishing() (a write of
 *    the open batch) MOVES the row out of the held table atomically and gives it a
 *    numeric id. From then on the publication no longer depends on the link
 *    name: a new link with that name may store a new will without touching
 *    it, and after a restart it is republished at once (no grace period: the
 *    decision to publish was already made). The row is deleted by
 *    gw_will_store_published() once the publication is done (accepted for
 *    QoS 1/2, sent for QoS 0).
 *
 * Group commit: outside a batch every write is its own transaction and
 * returns only after it is committed with the durability chosen at open
 * (see gw_will_sync_t). gw_will_store_begin() opens a batch: the writes
 * that follow (put, delete, published) go into that one transaction, in
 * the order they are made, and are durable only once gw_will_store_commit()
 * returned GW_OK. The caller acknowledges a will (AMQP accepted) only after
 * the commit that contains it (service.c).
 *
 * Ownership: gw_will_rec_t records returned or handed to callbacks are
 * owned by the receiver and released with gw_will_rec_free(). Input
 * pointers are only borrowed for the duration of the call.
 * Threads: one store is used from one thread.
 */
#ifndef GW_WILL_STORE_H
#define GW_WILL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/error.h"

typedef struct gw_will_store gw_will_store_t;

typedef enum gw_will_sync {
    /* WAL + synchronous=NORMAL: a commit survives a crash of the process
     * (kill -9) but the last transactions may be lost on power loss or an OS
     * crash (the WAL is fsync'ed only at checkpoints). */
    GW_WILL_SYNC_NORMAL = 0,
    /* WAL + synchronous=FULL (default): the WAL is fsync'ed at every commit,
     * so an accepted will also survives power loss. One fsync per will
     * change; wills change once per MQTT CONNECT, not per message. */
    GW_WILL_SYNC_FULL = 1,
} gw_will_sync_t;

/** A will as given to gw_will_store_put(); pointers borrowed. */
typedef struct gw_will {
    const char *topic; /* not NUL-terminated */
    size_t topic_len;
    const void *payload;
    size_t payload_len;
    uint8_t qos; /* 0..2 */
    bool retain;
} gw_will_t;

/** A will read back from the store: one allocation, strings NUL-terminated. */
typedef struct gw_will_rec {
    int64_t id;      /* publishing id (> 0), 0 for a held will */
    char *name;      /* link name / client id */
    char *topic;
    size_t topic_len;
    uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
    bool retain;
} gw_will_rec_t;

/** Receives ownership of rec. Return GW_OK to continue the iteration. */
typedef gw_err_t (*gw_will_store_cb)(gw_will_rec_t *rec, void *ctx);

/** Open (create) the SQLite database at path in WAL mode. */
gw_err_t gw_will_store_open(const char *path, gw_will_sync_t sync, gw_will_store_t **out);
/** Close; NULL is a no-op. */
void gw_will_store_close(gw_will_store_t *st);

/**
 * Begin a batch transaction unless one is open (GW_OK then). Writes made
 * until gw_will_store_commit() are atomic together and not yet durable.
 */
gw_err_t gw_will_store_begin(gw_will_store_t *st);
/** True while a batch transaction is open. */
bool gw_will_store_in_batch(const gw_will_store_t *st);
/**
 * Commit the open batch (GW_OK at once if none is open). On failure the
 * whole batch is rolled back (none of its writes happened), the counts of
 * gw_will_store_count() are read again, and GW_ERR_STORE is returned.
 */
gw_err_t gw_will_store_commit(gw_will_store_t *st);
/** Number of commits made since open (autocommit writes and batches). */
uint64_t gw_will_store_commits(const gw_will_store_t *st);

/**
 * Create or replace the held will of name. Durable on GW_OK outside a
 * batch; inside one, once the batch is committed. After a failed write
 * inside a batch the batch may already be rolled back by SQLite: every
 * later write fails too and the commit reports the failure.
 */
gw_err_t gw_will_store_put(gw_will_store_t *st, const char *name, const gw_will_t *will);
/** Delete the held will of name (batched like put). GW_ERR_NOT_FOUND if there was none. */
gw_err_t gw_will_store_delete(gw_will_store_t *st, const char *name);
/** Copy of the held will of name (*out owned by the caller). GW_ERR_NOT_FOUND if none. */
gw_err_t gw_will_store_get(gw_will_store_t *st, const char *name, gw_will_rec_t **out);
/** Every held will, in name order. */
gw_err_t gw_will_store_list(gw_will_store_t *st, gw_will_store_cb cb, void *ctx);

/**
 * Atomically move the held will of name to the publishing set, in its own
 * durable transaction: no batch may be open (GW_ERR_INVAL; commit it first,
 * so that a will stored in the batch is committed before it is moved).
 * *out (owned by the caller) has the new id. GW_ERR_NOT_FOUND if name has
 * no held will.
 */
gw_err_t gw_will_store_mark_publishing(gw_will_store_t *st, const char *name,
                                       gw_will_rec_t **out);
/**
 * The same move as a write of the open batch (required: GW_ERR_INVAL
 * without one): durable, like put and delete, only once the batch is
 * committed, and undone with it if the commit fails. The move itself is
 * all or nothing (a savepoint): on an error the will stays held and the
 * batch goes on. Hand *out (owned by the caller, id set) to the publisher
 * only after the commit, so that a publication never precedes the durable
 * decision to publish. GW_ERR_NOT_FOUND if name has no held will (also
 * when a put of name earlier in the batch was not made).
 */
gw_err_t gw_will_store_move_publishing(gw_will_store_t *st, const char *name,
                                       gw_will_rec_t **out);
/** Every publishing will, oldest first. */
gw_err_t gw_will_store_list_publishing(gw_will_store_t *st, gw_will_store_cb cb, void *ctx);
/**
 * The publication of id is done: forget it (inside the batch if one is
 * open). GW_ERR_NOT_FOUND if unknown.
 */
gw_err_t gw_will_store_published(gw_will_store_t *st, int64_t id);

/**
 * Number of held and publishing wills (metrics, tests), including the
 * uncommitted writes of an open batch. Kept up to date by the writes
 * (no table scan): cheap enough to call after every change.
 */
gw_err_t gw_will_store_count(gw_will_store_t *st, int64_t *held, int64_t *publishing);

void gw_will_rec_free(gw_will_rec_t *rec);

#endif
