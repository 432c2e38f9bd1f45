/*
 * store_sqlite.c - SQLite backend of the subscription store (store.h).
 *
 * WAL journal, prepared statements for the life of the store, and one
 * explicit transaction per batch (group commit): many publications cost
 * one commit (one fsync with sync_full).
 */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/log.h"

#define STORE_MOD "subs-store"

enum {
    ST_SESSION_PUT,
    ST_SESSION_DEL,
    ST_SESSION_OFFLINE,
    ST_SESSION_DEL_SUBS,
    ST_SESSION_DEL_QUEUE,
    ST_SUB_PUT,
    ST_SUB_DEL,
    ST_RET_PUT,
    ST_RET_DEL,
    ST_MSG_PUT,
    ST_MSG_DEL,
    ST_Q_PUT,
    ST_Q_STATE,
    ST_Q_SENT,
    ST_Q_DEL,
    ST_L_SESSION,
    ST_L_SUB,
    ST_L_RET,
    ST_L_MSG,
    ST_L_Q,
    ST_Q2_PUT,
    ST_Q2_DEL,
    ST_Q2_DEL_PUB,
    ST_L_Q2,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST__N
};

static const char *const store_sql[ST__N] = {
    [ST_SESSION_PUT] = "INSERT OR IGNORE INTO sessions(id) VALUES(?1)",
    [ST_SESSION_DEL] = "DELETE FROM sessions WHERE id = ?1",
    [ST_SESSION_OFFLINE] = "UPDATE sessions SET offline_at = ?2 WHERE id = ?1",
    [ST_SESSION_DEL_SUBS] = "DELETE FROM subs WHERE id = ?1",
    [ST_SESSION_DEL_QUEUE] = "DELETE FROM queue WHERE id = ?1",
    [ST_SUB_PUT] = "INSERT INTO subs(id, filter, qos) VALUES(?1, ?2, ?3) "
                   "ON CONFLICT(id, filter) DO UPDATE SET qos = excluded.qos",
    [ST_SUB_DEL] = "DELETE FROM subs WHERE id = ?1 AND filter = ?2",
    [ST_RET_PUT] = "INSERT INTO retained(topic, payload, qos) VALUES(?1, ?2, ?3) "
                   "ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload, "
                   "qos = excluded.qos",
    [ST_RET_DEL] = "DELETE FROM retained WHERE topic = ?1",
    [ST_MSG_PUT] = "INSERT INTO msgs(topic, payload, qos) VALUES(?1, ?2, ?3)",
    [ST_MSG_DEL] = "DELETE FROM msgs WHERE id = ?1",
    [ST_Q_PUT] = "INSERT INTO queue(id, msg_id, qos, pkt_id, retain, state) "
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_Q_STATE] = "UPDATE queue SET state = ?2 WHERE seq = ?1",
    [ST_Q_SENT] = "UPDATE queue SET state = ?2, pkt_id = ?3 WHERE seq = ?1",
    [ST_Q_DEL] = "DELETE FROM queue WHERE seq = ?1",
    [ST_L_SESSION] = "SELECT id, offline_at FROM sessions ORDER BY id",
    [ST_L_SUB] = "SELECT id, filter, qos FROM subs ORDER BY id, filter",
    [ST_L_RET] = "SELECT topic, payload, qos FROM retained ORDER BY topic",
    [ST_L_MSG] = "SELECT id, topic, payload, qos FROM msgs ORDER BY id",
    [ST_L_Q] = "SELECT seq, id, msg_id, qos, pkt_id, retain, state FROM queue ORDER BY seq",
    [ST_Q2_PUT] = "INSERT OR REPLACE INTO qos2(publisher, pid, digest) VALUES(?1, ?2, ?3)",
    [ST_Q2_DEL] = "DELETE FROM qos2 WHERE publisher = ?1 AND pid = ?2",
    [ST_Q2_DEL_PUB] = "DELETE FROM qos2 WHERE publisher = ?1",
    [ST_L_Q2] = "SELECT publisher, pid, digest FROM qos2 ORDER BY rowid",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

/* Topics and filters are stored as BLOB-compared TEXT (byte for byte,
 * MQTT-3.10.4-1). AUTOINCREMENT on queue: seq orders a session's copies
 * and is never reused. */
static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY NOT NULL, offline_at INTEGER);"
    "CREATE TABLE IF NOT EXISTS subs ("
    "  id TEXT NOT NULL, filter TEXT NOT NULL,"
    "  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),"
    "  PRIMARY KEY (id, filter));"
    "CREATE TABLE IF NOT EXISTS retained ("
    "  topic TEXT PRIMARY KEY NOT NULL, payload BLOB NOT NULL,"
    "  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2));"
    "CREATE TABLE IF NOT EXISTS msgs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,"
    "  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2));"
    "CREATE TABLE IF NOT EXISTS queue ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, msg_id INTEGER NOT NULL,"
    "  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2), pkt_id INTEGER NOT NULL,"
    "  retain INTEGER NOT NULL, state INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS queue_by_id ON queue(id);"
    /* QoS 2 publications taken and not yet settled by their sender (spec
     * 5.2 publications rule 8): the resend of one after a gateway failure
     * is recognised across restarts. */
    "CREATE TABLE IF NOT EXISTS qos2 ("
    "  publisher TEXT NOT NULL, pid INTEGER NOT NULL, digest INTEGER NOT NULL,"
    "  PRIMARY KEY (publisher, pid));";

struct gw_subs_store {
    sqlite3 *db;
    sqlite3_stmt *st[ST__N];
    bool in_batch;
    uint64_t writes;
};

static gw_err_t store_fail(gw_subs_store_t *s, const char *what)
{
    GW_LOG_ERROR(STORE_MOD, NULL, "%s: %s", what, sqlite3_errmsg(s->db));
    return GW_ERR_STORE;
}

/* Run a prepared statement that returns no rows, then reset it. */
static gw_err_t store_step(gw_subs_store_t *s, int which)
{
    sqlite3_stmt *q = s->st[which];
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_DONE)
        return store_fail(s, store_sql[which]);
    return GW_OK;
}

static gw_err_t store_write(gw_subs_store_t *s, int which)
{
    gw_err_t err = gw_subs_store_begin(s);
    if (err != GW_OK) {
        sqlite3_reset(s->st[which]);
        sqlite3_clear_bindings(s->st[which]);
        return err;
    }
    s->writes++;
    return store_step(s, which);
}

static bool store_has_column(gw_subs_store_t *s, const char *probe)
{
    sqlite3_stmt *q = NULL;
    bool ok = sqlite3_prepare_v2(s->db, probe, -1, &q, NULL) == SQLITE_OK;
    sqlite3_finalize(q);
    return ok;
}

gw_err_t gw_subs_store_open(const char *path, bool sync_full, gw_subs_store_t **out)
{
    gw_err_t err = GW_ERR_STORE;
    gw_subs_store_t *s = calloc(1, sizeof *s);
    char *emsg = NULL;

    *out = NULL;
    if (!s)
        return GW_ERR_NOMEM;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        GW_LOG_ERROR(STORE_MOD, NULL, "cannot open %s: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto cleanup;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(s->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(s->db, store_schema, NULL, NULL, &emsg) != SQLITE_OK ||
        /* Publications no queue row refers to any more (crash between the
         * last queue delete and the msgs delete). */
        sqlite3_exec(s->db,
                     "DELETE FROM msgs WHERE id NOT IN (SELECT msg_id FROM queue);"
                     "DELETE FROM queue WHERE msg_id NOT IN (SELECT id FROM msgs);",
                     NULL, NULL, &emsg) != SQLITE_OK) {
        GW_LOG_ERROR(STORE_MOD, NULL, "cannot initialise %s: %s", path, emsg ? emsg : "?");
        goto cleanup;
    }
    /* A store from before --session-expiry: sessions has no offline_at. */
    if (!store_has_column(s, "SELECT offline_at FROM sessions LIMIT 0") &&
        sqlite3_exec(s->db, "ALTER TABLE sessions ADD COLUMN offline_at INTEGER", NULL, NULL,
                     &emsg) != SQLITE_OK) {
        GW_LOG_ERROR(STORE_MOD, NULL, "cannot add sessions.offline_at to %s: %s", path,
                     emsg ? emsg : "?");
        goto cleanup;
    }
    for (int i = 0; i < ST__N; i++) {
        if (sqlite3_prepare_v3(s->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            store_fail(s, store_sql[i]);
            goto cleanup;
        }
    }
    *out = s;
    s = NULL;
    err = GW_OK;
cleanup:
    sqlite3_free(emsg);
    gw_subs_store_close(s);
    return err;
}

gw_err_t gw_subs_store_set_cache_size(gw_subs_store_t *s, int64_t bytes)
{
    char sql[64];
    /* A negative cache_size is in KiB (a positive one in pages). */
    long long kib = bytes / 1024 > 0 ? bytes / 1024 : 1;
    snprintf(sql, sizeof sql, "PRAGMA cache_size=-%lld", kib);
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(s, sql);
    return GW_OK;
}

static int64_t store_pragma_int(gw_subs_store_t *s, const char *sql)
{
    sqlite3_stmt *q = NULL;
    int64_t v = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

int64_t gw_subs_store_cache_size(gw_subs_store_t *s)
{
    int64_t v = store_pragma_int(s, "PRAGMA cache_size");
    /* negative: KiB; positive: pages */
    return v < 0 ? -v * 1024 : v * store_pragma_int(s, "PRAGMA page_size");
}

void gw_subs_store_close(gw_subs_store_t *s)
{
    if (!s)
        return;
    if (s->in_batch && s->st[ST_COMMIT])
        gw_subs_store_commit(s);
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

gw_err_t gw_subs_store_begin(gw_subs_store_t *s)
{
    if (s->in_batch)
        return GW_OK;
    gw_err_t err = store_step(s, ST_BEGIN);
    if (err == GW_OK)
        s->in_batch = true;
    return err;
}

bool gw_subs_store_in_batch(const gw_subs_store_t *s) { return s->in_batch; }

uint64_t gw_subs_store_writes(const gw_subs_store_t *s) { return s->writes; }

gw_err_t gw_subs_store_commit(gw_subs_store_t *s)
{
    if (!s->in_batch)
        return GW_OK;
    s->in_batch = false;
    gw_err_t err = store_step(s, ST_COMMIT);
    if (err != GW_OK && !sqlite3_get_autocommit(s->db))
        store_step(s, ST_ROLLBACK);
    return err;
}

static void bind_text(sqlite3_stmt *q, int i, const char *s, size_t len)
{
    sqlite3_bind_text(q, i, s, (int)len, SQLITE_STATIC);
}

gw_err_t gw_subs_store_session_put(gw_subs_store_t *s, const char *id)
{
    bind_text(s->st[ST_SESSION_PUT], 1, id, strlen(id));
    return store_write(s, ST_SESSION_PUT);
}

gw_err_t gw_subs_store_session_offline(gw_subs_store_t *s, const char *id, int64_t wall_ms)
{
    sqlite3_stmt *q = s->st[ST_SESSION_OFFLINE];
    bind_text(q, 1, id, strlen(id));
    if (wall_ms > 0)
        sqlite3_bind_int64(q, 2, wall_ms);
    else
        sqlite3_bind_null(q, 2);
    return store_write(s, ST_SESSION_OFFLINE);
}

gw_err_t gw_subs_store_qos2_put(gw_subs_store_t *s, const char *publisher, size_t len,
                                uint16_t pid, uint64_t digest)
{
    sqlite3_stmt *q = s->st[ST_Q2_PUT];
    bind_text(q, 1, publisher, len);
    sqlite3_bind_int(q, 2, pid);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)digest);
    return store_write(s, ST_Q2_PUT);
}

gw_err_t gw_subs_store_qos2_delete(gw_subs_store_t *s, const char *publisher, size_t len,
                                   int pid)
{
    int which = pid < 0 ? ST_Q2_DEL_PUB : ST_Q2_DEL;
    sqlite3_stmt *q = s->st[which];
    bind_text(q, 1, publisher, len);
    if (pid >= 0)
        sqlite3_bind_int(q, 2, pid);
    return store_write(s, which);
}

gw_err_t gw_subs_store_session_delete(gw_subs_store_t *s, const char *id)
{
    static const int which[] = {ST_SESSION_DEL, ST_SESSION_DEL_SUBS, ST_SESSION_DEL_QUEUE};
    for (size_t i = 0; i < sizeof which / sizeof which[0]; i++) {
        bind_text(s->st[which[i]], 1, id, strlen(id));
        gw_err_t err = store_write(s, which[i]);
        if (err != GW_OK)
            return err;
    }
    return GW_OK;
}

gw_err_t gw_subs_store_sub_put(gw_subs_store_t *s, const char *id, const char *filter,
                               size_t flen, uint8_t qos)
{
    sqlite3_stmt *q = s->st[ST_SUB_PUT];
    bind_text(q, 1, id, strlen(id));
    bind_text(q, 2, filter, flen);
    sqlite3_bind_int(q, 3, qos);
    return store_write(s, ST_SUB_PUT);
}

gw_err_t gw_subs_store_sub_delete(gw_subs_store_t *s, const char *id, const char *filter,
                                  size_t flen)
{
    sqlite3_stmt *q = s->st[ST_SUB_DEL];
    bind_text(q, 1, id, strlen(id));
    bind_text(q, 2, filter, flen);
    return store_write(s, ST_SUB_DEL);
}

gw_err_t gw_subs_store_retained_put(gw_subs_store_t *s, const char *topic, size_t tlen,
                                    const void *payload, size_t plen, uint8_t qos)
{
    sqlite3_stmt *q = s->st[ST_RET_PUT];
    bind_text(q, 1, topic, tlen);
    sqlite3_bind_blob(q, 2, plen ? payload : "", (int)plen, SQLITE_STATIC);
    sqlite3_bind_int(q, 3, qos);
    return store_write(s, ST_RET_PUT);
}

gw_err_t gw_subs_store_retained_delete(gw_subs_store_t *s, const char *topic, size_t tlen)
{
    bind_text(s->st[ST_RET_DEL], 1, topic, tlen);
    return store_write(s, ST_RET_DEL);
}

gw_err_t gw_subs_store_msg_put(gw_subs_store_t *s, const char *topic, size_t tlen,
                               const void *payload, size_t plen, uint8_t qos, int64_t *id)
{
    sqlite3_stmt *q = s->st[ST_MSG_PUT];
    bind_text(q, 1, topic, tlen);
    sqlite3_bind_blob(q, 2, plen ? payload : "", (int)plen, SQLITE_STATIC);
    sqlite3_bind_int(q, 3, qos);
    gw_err_t err = store_write(s, ST_MSG_PUT);
    if (err == GW_OK)
        *id = sqlite3_last_insert_rowid(s->db);
    return err;
}

gw_err_t gw_subs_store_msg_delete(gw_subs_store_t *s, int64_t id)
{
    sqlite3_bind_int64(s->st[ST_MSG_DEL], 1, id);
    return store_write(s, ST_MSG_DEL);
}

gw_err_t gw_subs_store_queue_put(gw_subs_store_t *s, const char *id, int64_t msg_id,
                                 uint8_t qos, uint16_t pkt_id, bool retain, int state,
                                 int64_t *seq)
{
    sqlite3_stmt *q = s->st[ST_Q_PUT];
    bind_text(q, 1, id, strlen(id));
    sqlite3_bind_int64(q, 2, msg_id);
    sqlite3_bind_int(q, 3, qos);
    sqlite3_bind_int(q, 4, pkt_id);
    sqlite3_bind_int(q, 5, retain ? 1 : 0);
    sqlite3_bind_int(q, 6, state);
    gw_err_t err = store_write(s, ST_Q_PUT);
    if (err == GW_OK)
        *seq = sqlite3_last_insert_rowid(s->db);
    return err;
}

gw_err_t gw_subs_store_queue_state(gw_subs_store_t *s, int64_t seq, int state)
{
    sqlite3_bind_int64(s->st[ST_Q_STATE], 1, seq);
    sqlite3_bind_int(s->st[ST_Q_STATE], 2, state);
    return store_write(s, ST_Q_STATE);
}

gw_err_t gw_subs_store_queue_sent(gw_subs_store_t *s, int64_t seq, uint16_t pkt_id, int state)
{
    sqlite3_bind_int64(s->st[ST_Q_SENT], 1, seq);
    sqlite3_bind_int(s->st[ST_Q_SENT], 2, state);
    sqlite3_bind_int(s->st[ST_Q_SENT], 3, pkt_id);
    return store_write(s, ST_Q_SENT);
}

gw_err_t gw_subs_store_queue_delete(gw_subs_store_t *s, int64_t seq)
{
    sqlite3_bind_int64(s->st[ST_Q_DEL], 1, seq);
    return store_write(s, ST_Q_DEL);
}

static gw_err_t store_walk(gw_subs_store_t *s, int which, gw_err_t (*row)(sqlite3_stmt *, void *),
                           void *arg)
{
    sqlite3_stmt *q = s->st[which];
    gw_err_t err = GW_OK;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        err = row(q, arg);
        if (err != GW_OK)
            break;
    }
    if (err == GW_OK && rc != SQLITE_DONE)
        err = store_fail(s, store_sql[which]);
    sqlite3_reset(q);
    return err;
}

typedef struct load_ctx {
    gw_subs_store_session_fn on_session;
    gw_subs_store_sub_fn on_sub;
    gw_subs_store_retained_fn on_retained;
    gw_subs_store_msg_fn on_msg;
    gw_subs_store_queue_fn on_queue;
    void *ctx;
} load_ctx_t;

static const char *col_text(sqlite3_stmt *q, int i, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(q, i);
    *len = (size_t)sqlite3_column_bytes(q, i);
    return t ? t : "";
}

static uint8_t col_qos(sqlite3_stmt *q, int i)
{
    int v = sqlite3_column_int(q, i);
    return (uint8_t)(v < 0 ? 0 : v > 2 ? 2 : v);
}

static gw_err_t row_session(sqlite3_stmt *q, void *arg)
{
    load_ctx_t *l = arg;
    size_t n;
    int64_t off = sqlite3_column_type(q, 1) == SQLITE_NULL ? 0 : sqlite3_column_int64(q, 1);
    return l->on_session(col_text(q, 0, &n), off > 0 ? off : 0, l->ctx);
}

static gw_err_t row_sub(sqlite3_stmt *q, void *arg)
{
    load_ctx_t *l = arg;
    size_t n, flen;
    const char *id = col_text(q, 0, &n);
    const char *f = col_text(q, 1, &flen);
    return l->on_sub(id, f, flen, col_qos(q, 2), l->ctx);
}

static gw_err_t row_retained(sqlite3_stmt *q, void *arg)
{
    load_ctx_t *l = arg;
    size_t tlen;
    const char *t = col_text(q, 0, &tlen);
    const void *p = sqlite3_column_blob(q, 1);
    size_t plen = (size_t)sqlite3_column_bytes(q, 1);
    return l->on_retained(t, tlen, p, plen, col_qos(q, 2), l->ctx);
}

static gw_err_t row_msg(sqlite3_stmt *q, void *arg)
{
    load_ctx_t *l = arg;
    size_t tlen;
    int64_t id = sqlite3_column_int64(q, 0);
    const char *t = col_text(q, 1, &tlen);
    const void *p = sqlite3_column_blob(q, 2);
    size_t plen = (size_t)sqlite3_column_bytes(q, 2);
    return l->on_msg(id, t, tlen, p, plen, col_qos(q, 3), l->ctx);
}

static gw_err_t row_queue(sqlite3_stmt *q, void *arg)
{
    load_ctx_t *l = arg;
    size_t n;
    int64_t seq = sqlite3_column_int64(q, 0);
    const char *id = col_text(q, 1, &n);
    int pid = sqlite3_column_int(q, 4);
    return l->on_queue(seq, id, sqlite3_column_int64(q, 2), col_qos(q, 3),
                       (uint16_t)(pid < 0 || pid > 65535 ? 0 : pid), sqlite3_column_int(q, 5) != 0,
                       sqlite3_column_int(q, 6), l->ctx);
}

typedef struct q2_load {
    gw_subs_store_qos2_fn fn;
    void *ctx;
} q2_load_t;

static gw_err_t row_qos2(sqlite3_stmt *q, void *arg)
{
    q2_load_t *l = arg;
    size_t n;
    const char *p = col_text(q, 0, &n);
    int pid = sqlite3_column_int(q, 1);
    if (n == 0 || pid < 1 || pid > 65535)
        return GW_OK; /* corrupt row: ignored */
    return l->fn(p, n, (uint16_t)pid, (uint64_t)sqlite3_column_int64(q, 2), l->ctx);
}

gw_err_t gw_subs_store_load_qos2(gw_subs_store_t *s, gw_subs_store_qos2_fn fn, void *ctx)
{
    q2_load_t l = {fn, ctx};
    return store_walk(s, ST_L_Q2, row_qos2, &l);
}

gw_err_t gw_subs_store_load(gw_subs_store_t *s, gw_subs_store_session_fn on_session,
                            gw_subs_store_sub_fn on_sub, gw_subs_store_retained_fn on_retained,
                            gw_subs_store_msg_fn on_msg, gw_subs_store_queue_fn on_queue,
                            void *ctx)
{
    load_ctx_t l = {on_session, on_sub, on_retained, on_msg, on_queue, ctx};
    gw_err_t err = store_walk(s, ST_L_SESSION, row_session, &l);
    if (err == GW_OK)
        err = store_walk(s, ST_L_SUB, row_sub, &l);
    if (err == GW_OK)
        err = store_walk(s, ST_L_RET, row_retained, &l);
    if (err == GW_OK)
        err = store_walk(s, ST_L_MSG, row_msg, &l);
    if (err == GW_OK)
        err = store_walk(s, ST_L_Q, row_queue, &l);
    return err;
}
