/*
 * store_sqlite.c - SQLite backend of the will store (see store.h).
 *
 * WAL journal (readers never block the writer, one sequential append per
 * commit), prepared statements kept for the life of the store, explicit
 * transactions where a change touches two tables, and batches (group
 * commit): the writes of many wills in one transaction, one fsync.
 *
 * The counts of held and publishing wills are kept in memory, adjusted by
 * each write (a put knows whether it inserted or replaced) and read again
 * from the tables only at open and after a rollback: count(*) walks a whole
 * table, too slow to run after every will.
 */
#include "store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "gw/log.h"

#define STORE_MOD "will-store"

enum {
    ST_INSERT,
    ST_UPDATE,
    ST_DELETE,
    ST_GET,
    ST_LIST,
    ST_COPY_PENDING,
    ST_GET_PENDING,
    ST_LIST_PENDING,
    ST_DELETE_PENDING,
    ST_COUNT_HELD,
    ST_COUNT_PENDING,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST__N
};

static const char *const store_sql[ST__N] = {
    /* Insert, or (no row changed) update: tells a new will from a replaced one. */
    [ST_INSERT] = "INSERT INTO wills(name, topic, payload, qos, retain, updated) "
                  "VALUES(?1, ?2, ?3, ?4, ?5, strftime('%s','now')) "
                  "ON CONFLICT(name) DO NOTHING",
    [ST_UPDATE] = "UPDATE wills SET topic = ?2, payload = ?3, qos = ?4, retain = ?5, "
                  "updated = strftime('%s','now') WHERE name = ?1",
    [ST_DELETE] = "DELETE FROM wills WHERE name = ?1",
    [ST_GET] = "SELECT 0, name, topic, payload, qos, retain FROM wills WHERE name = ?1",
    [ST_LIST] = "SELECT 0, name, topic, payload, qos, retain FROM wills ORDER BY name",
    [ST_COPY_PENDING] = "INSERT INTO publishing(name, topic, payload, qos, retain, created) "
                        "SELECT name, topic, payload, qos, retain, strftime('%s','now') "
                        "FROM wills WHERE name = ?1",
    [ST_GET_PENDING] = "SELECT id, name, topic, payload, qos, retain FROM publishing "
                       "WHERE id = ?1",
    [ST_LIST_PENDING] = "SELECT id, name, topic, payload, qos, retain FROM publishing "
                        "ORDER BY id",
    [ST_DELETE_PENDING] = "DELETE FROM publishing WHERE id = ?1",
    [ST_COUNT_HELD] = "SELECT count(*) FROM wills",
    [ST_COUNT_PENDING] = "SELECT count(*) FROM publishing",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* A move inside a batch: all or nothing without ending the batch. */
    [ST_SAVEPOINT] = "SAVEPOINT will_move",
    [ST_RELEASE] = "RELEASE will_move",
    [ST_ROLLBACK_TO] = "ROLLBACK TO will_move",
};

static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS wills ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),"
    "  retain INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    /* AUTOINCREMENT: ids are never reused, so a late outcome for an old
     * publication can never delete a newer one. */
    "CREATE TABLE IF NOT EXISTS publishing ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),"
    "  retain INTEGER NOT NULL,"
    "  created INTEGER NOT NULL);";

struct gw_will_store {
    sqlite3 *db;
    sqlite3_stmt *st[ST__N];
    bool in_batch;       /* a batch transaction is open (gw_will_store_begin) */
    int64_t held, pub;   /* rows of wills / publishing, open batch included */
    uint64_t commits;    /* transactions committed */
};

static gw_err_t store_fail(gw_will_store_t *st, const char *what)
{
    GW_LOG_ERROR(STORE_MOD, NULL, "%s: %s", what, sqlite3_errmsg(st->db));
    return GW_ERR_STORE;
}

static gw_err_t store_recount(gw_will_store_t *st);

/* Run a statement that returns no rows, then reset it. */
static gw_err_t store_exec(gw_will_store_t *st, int which)
{
    sqlite3_stmt *s = st->st[which];
    int rc = sqlite3_step(s);
    gw_err_t err = GW_OK;
    if (rc != SQLITE_DONE)
        err = store_fail(st, store_sql[which]);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return err;
}

gw_err_t gw_will_store_open(const char *path, gw_will_sync_t sync, gw_will_store_t **out)
{
    gw_err_t err = GW_OK;
    gw_will_store_t *st = NULL;
    char *msg = NULL;

    *out = NULL;
    if (!path || !*path)
        return GW_ERR_INVAL;
    st = calloc(1, sizeof *st);
    if (!st)
        return GW_ERR_NOMEM;
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        err = store_fail(st, path);
        goto cleanup;
    }
    sqlite3_busy_timeout(st->db, 5000);
    const char *pragmas = sync == GW_WILL_SYNC_FULL
                              ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                              : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
    if (sqlite3_exec(st->db, pragmas, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(st->db, store_schema, NULL, NULL, &msg) != SQLITE_OK) {
        GW_LOG_ERROR(STORE_MOD, NULL, "%s: %s", path, msg ? msg : "schema failed");
        err = GW_ERR_STORE;
        goto cleanup;
    }
    for (int i = 0; i < ST__N; i++) {
        if (sqlite3_prepare_v3(st->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->st[i],
                               NULL) != SQLITE_OK) {
            err = store_fail(st, store_sql[i]);
            goto cleanup;
        }
    }
    err = store_recount(st);
    if (err != GW_OK)
        goto cleanup;
    *out = st;
    st = NULL;
cleanup:
    sqlite3_free(msg);
    gw_will_store_close(st);
    return err;
}

void gw_will_store_close(gw_will_store_t *st)
{
    if (!st)
        return;
    if (st->in_batch && st->st[ST_COMMIT])
        (void)gw_will_store_commit(st);
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(st->st[i]);
    sqlite3_close(st->db);
    free(st);
}

void gw_will_rec_free(gw_will_rec_t *rec) { free(rec); }

/* Build a record from a row (id, name, topic, payload, qos, retain): one
 * allocation holding the struct and its three buffers. */
static gw_err_t store_row(sqlite3_stmt *s, gw_will_rec_t **out)
{
    const unsigned char *name = sqlite3_column_text(s, 1);
    size_t name_len = (size_t)sqlite3_column_bytes(s, 1);
    const unsigned char *topic = sqlite3_column_text(s, 2);
    size_t topic_len = (size_t)sqlite3_column_bytes(s, 2);
    const void *payload = sqlite3_column_blob(s, 3);
    size_t payload_len = (size_t)sqlite3_column_bytes(s, 3);
    gw_will_rec_t *rec;

    if (!name || !topic)
        return GW_ERR_NOMEM; /* text columns are NOT NULL: only OOM gives NULL */
    rec = malloc(sizeof *rec + name_len + 1 + topic_len + 1 + payload_len + 1);
    if (!rec)
        return GW_ERR_NOMEM;
    char *p = (char *)(rec + 1);
    rec->id = sqlite3_column_int64(s, 0);
    rec->name = p;
    memcpy(p, name, name_len + 1);
    p += name_len + 1;
    rec->topic = p;
    rec->topic_len = topic_len;
    memcpy(p, topic, topic_len + 1);
    p += topic_len + 1;
    rec->payload = (uint8_t *)p;
    rec->payload_len = payload_len;
    if (payload_len)
        memcpy(p, payload, payload_len);
    p[payload_len] = 0;
    rec->qos = (uint8_t)sqlite3_column_int(s, 4);
    rec->retain = sqlite3_column_int(s, 5) != 0;
    *out = rec;
    return GW_OK;
}

/* Step a bound SELECT returning at most one row into *out. */
static gw_err_t store_get_one(gw_will_store_t *st, int which, gw_will_rec_t **out)
{
    sqlite3_stmt *s = st->st[which];
    gw_err_t err;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        err = store_row(s, out);
    else if (rc == SQLITE_DONE)
        err = GW_ERR_NOT_FOUND;
    else
        err = store_fail(st, store_sql[which]);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return err;
}

static gw_err_t store_iterate(gw_will_store_t *st, int which, gw_will_store_cb cb, void *ctx)
{
    sqlite3_stmt *s = st->st[which];
    gw_err_t err = GW_OK;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        gw_will_rec_t *rec = NULL;
        err = store_row(s, &rec);
        if (err == GW_OK)
            err = cb(rec, ctx);
        if (err != GW_OK)
            break;
    }
    if (err == GW_OK && rc != SQLITE_DONE)
        err = store_fail(st, store_sql[which]);
    sqlite3_reset(s);
    return err;
}

/*
 * Before a write: inside a batch, the transaction must still be open.
 * SQLite rolls back the whole transaction by itself on some errors (disk
 * full, I/O error, out of memory); a write after that would run in
 * autocommit mode, durable at once although the batch it belongs to is
 * lost. Refuse it; gw_will_store_commit() then reports the failure.
 */
static gw_err_t store_write_check(gw_will_store_t *st)
{
    if (st->in_batch && sqlite3_get_autocommit(st->db)) {
        GW_LOG_ERROR(STORE_MOD, NULL, "batch transaction was rolled back: write refused");
        return GW_ERR_STORE;
    }
    return GW_OK;
}

/* After a successful write: outside a batch it was its own commit. */
static void store_written(gw_will_store_t *st)
{
    if (!st->in_batch)
        st->commits++;
}

gw_err_t gw_will_store_begin(gw_will_store_t *st)
{
    if (st->in_batch)
        return GW_OK;
    gw_err_t err = store_exec(st, ST_BEGIN);
    if (err == GW_OK)
        st->in_batch = true;
    return err;
}

bool gw_will_store_in_batch(const gw_will_store_t *st) { return st->in_batch; }

uint64_t gw_will_store_commits(const gw_will_store_t *st) { return st->commits; }

gw_err_t gw_will_store_commit(gw_will_store_t *st)
{
    gw_err_t err = GW_OK;
    if (!st->in_batch)
        return GW_OK;
    st->in_batch = false;
    if (sqlite3_get_autocommit(st->db)) {
        /* Already rolled back by SQLite (see store_write_check). */
        GW_LOG_ERROR(STORE_MOD, NULL, "commit: the batch transaction was rolled back");
        err = GW_ERR_STORE;
    } else {
        err = store_exec(st, ST_COMMIT);
        if (err != GW_OK && !sqlite3_get_autocommit(st->db))
            (void)store_exec(st, ST_ROLLBACK);
    }
    if (err == GW_OK) {
        st->commits++;
    } else if (store_recount(st) != GW_OK) {
        /* Counts are only metrics: keep the old ones. */
        GW_LOG_WARN(STORE_MOD, NULL, "cannot count wills after a rollback");
    }
    return err;
}

/* Bind (name, topic, payload, qos, retain) to ?1..?5 of statement which. */
static gw_err_t store_bind_will(gw_will_store_t *st, int which, const char *name,
                                const gw_will_t *will)
{
    sqlite3_stmt *s = st->st[which];
    /* SQLITE_STATIC: the statement is stepped and reset before put returns. */
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(s, 2, will->topic ? will->topic : "", (int)will->topic_len,
                          SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(s, 3, will->payload ? will->payload : "", (int)will->payload_len,
                          SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(s, 4, will->qos) != SQLITE_OK ||
        sqlite3_bind_int(s, 5, will->retain ? 1 : 0) != SQLITE_OK) {
        gw_err_t err = store_fail(st, "bind");
        sqlite3_clear_bindings(s);
        return err;
    }
    return GW_OK;
}

gw_err_t gw_will_store_put(gw_will_store_t *st, const char *name, const gw_will_t *will)
{
    gw_err_t err;
    if (!name || !will || (!will->topic && will->topic_len) || will->qos > 2 ||
        will->topic_len > INT32_MAX || will->payload_len > INT32_MAX)
        return GW_ERR_INVAL;
    err = store_write_check(st);
    if (err != GW_OK)
        return err;
    /* A new client id (the common case: one statement), else a replacement.
     * Outside a batch the two statements cannot interleave with another
     * writer: this process is the only one writing the store. */
    err = store_bind_will(st, ST_INSERT, name, will);
    if (err == GW_OK)
        err = store_exec(st, ST_INSERT);
    if (err != GW_OK)
        return err;
    if (sqlite3_changes(st->db) > 0) {
        st->held++;
    } else {
        err = store_bind_will(st, ST_UPDATE, name, will);
        if (err == GW_OK)
            err = store_exec(st, ST_UPDATE);
        if (err != GW_OK)
            return err;
    }
    store_written(st);
    return GW_OK;
}

gw_err_t gw_will_store_delete(gw_will_store_t *st, const char *name)
{
    gw_err_t err = store_write_check(st);
    if (err != GW_OK)
        return err;
    if (sqlite3_bind_text(st->st[ST_DELETE], 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "bind");
    err = store_exec(st, ST_DELETE);
    if (err != GW_OK)
        return err;
    if (sqlite3_changes(st->db) == 0)
        return GW_ERR_NOT_FOUND;
    st->held--;
    store_written(st);
    return GW_OK;
}

gw_err_t gw_will_store_get(gw_will_store_t *st, const char *name, gw_will_rec_t **out)
{
    *out = NULL;
    if (sqlite3_bind_text(st->st[ST_GET], 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "bind");
    return store_get_one(st, ST_GET, out);
}

gw_err_t gw_will_store_list(gw_will_store_t *st, gw_will_store_cb cb, void *ctx)
{
    return store_iterate(st, ST_LIST, cb, ctx);
}

/* Copy the held will of name to publishing, delete it from wills, read
 * the new row back into *out. No transaction control: the caller wraps it. */
static gw_err_t store_move(gw_will_store_t *st, const char *name, gw_will_rec_t **out)
{
    gw_err_t err;
    int64_t id;

    if (sqlite3_bind_text(st->st[ST_COPY_PENDING], 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "bind");
    err = store_exec(st, ST_COPY_PENDING);
    if (err != GW_OK)
        return err;
    if (sqlite3_changes(st->db) == 0)
        return GW_ERR_NOT_FOUND;
    id = sqlite3_last_insert_rowid(st->db);
    if (sqlite3_bind_text(st->st[ST_DELETE], 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "bind");
    err = store_exec(st, ST_DELETE);
    if (err != GW_OK)
        return err;
    sqlite3_bind_int64(st->st[ST_GET_PENDING], 1, id);
    return store_get_one(st, ST_GET_PENDING, out);
}

gw_err_t gw_will_store_mark_publishing(gw_will_store_t *st, const char *name,
                                       gw_will_rec_t **out)
{
    gw_err_t err;

    *out = NULL;
    if (st->in_batch)
        return GW_ERR_INVAL; /* the caller commits the batch first (store.h) */
    err = store_exec(st, ST_BEGIN);
    if (err != GW_OK)
        return err;
    err = store_move(st, name, out);
    if (err == GW_OK)
        err = store_exec(st, ST_COMMIT);
    if (err == GW_OK) {
        st->held--;
        st->pub++;
        st->commits++;
    } else {
        /* Nothing of the move is visible: the will stays held. */
        if (!sqlite3_get_autocommit(st->db))
            (void)store_exec(st, ST_ROLLBACK);
        gw_will_rec_free(*out);
        *out = NULL;
    }
    return err;
}

gw_err_t gw_will_store_move_publishing(gw_will_store_t *st, const char *name,
                                       gw_will_rec_t **out)
{
    gw_err_t err;

    *out = NULL;
    if (!st->in_batch)
        return GW_ERR_INVAL;
    err = store_write_check(st);
    if (err != GW_OK)
        return err;
    err = store_exec(st, ST_SAVEPOINT);
    if (err != GW_OK)
        return err;
    err = store_move(st, name, out);
    if (err == GW_OK)
        err = store_exec(st, ST_RELEASE);
    if (err == GW_OK) {
        st->held--;
        st->pub++;
        return GW_OK;
    }
    /* Undo the half of the move that may have happened; the batch goes on.
     * (If SQLite already rolled the whole transaction back, the commit
     * reports it.) */
    if (!sqlite3_get_autocommit(st->db)) {
        (void)store_exec(st, ST_ROLLBACK_TO);
        (void)store_exec(st, ST_RELEASE);
    }
    gw_will_rec_free(*out);
    *out = NULL;
    return err;
}

gw_err_t gw_will_store_list_publishing(gw_will_store_t *st, gw_will_store_cb cb, void *ctx)
{
    return store_iterate(st, ST_LIST_PENDING, cb, ctx);
}

gw_err_t gw_will_store_published(gw_will_store_t *st, int64_t id)
{
    gw_err_t err = store_write_check(st);
    if (err != GW_OK)
        return err;
    sqlite3_bind_int64(st->st[ST_DELETE_PENDING], 1, id);
    err = store_exec(st, ST_DELETE_PENDING);
    if (err != GW_OK)
        return err;
    if (sqlite3_changes(st->db) == 0)
        return GW_ERR_NOT_FOUND;
    st->pub--;
    store_written(st);
    return GW_OK;
}

static gw_err_t store_count_one(gw_will_store_t *st, int which, int64_t *n)
{
    sqlite3_stmt *s = st->st[which];
    gw_err_t err = GW_OK;
    if (sqlite3_step(s) == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    else
        err = store_fail(st, store_sql[which]);
    sqlite3_reset(s);
    return err;
}

/* Read both counts from the tables (at open, after a rollback). */
static gw_err_t store_recount(gw_will_store_t *st)
{
    int64_t held = 0, pub = 0;
    gw_err_t err = store_count_one(st, ST_COUNT_HELD, &held);
    if (err == GW_OK)
        err = store_count_one(st, ST_COUNT_PENDING, &pub);
    if (err == GW_OK) {
        st->held = held;
        st->pub = pub;
    }
    return err;
}

gw_err_t gw_will_store_count(gw_will_store_t *st, int64_t *held, int64_t *publishing)
{
    if (held)
        *held = st->held;
    if (publishing)
        *publishing = st->pub;
    return GW_OK;
}
