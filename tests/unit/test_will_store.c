/*
 * test_will_store.c - the Will Service's SQLite store (services/will/).
 *
 * tests/CMakeLists.txt links unit tests with gwcore only, so the backend is
 * compiled into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../services/will/store_sqlite.c"

typedef struct fixture {
    char dir[64];
    char path[128];
    gw_will_store_t *st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/test_will_store.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/wills.db", f->dir);
    if (gw_will_store_open(f->path, GW_WILL_SYNC_FULL, &f->st) != GW_OK) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char p[160];
    gw_will_store_close(f->st);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static gw_will_t mkwill(const char *topic, const char *payload, size_t plen, uint8_t qos,
                        bool retain)
{
    gw_will_t w = {.topic = topic,
                   .topic_len = strlen(topic),
                   .payload = payload,
                   .payload_len = plen,
                   .qos = qos,
                   .retain = retain};
    return w;
}

static void reopen(fixture_t *f)
{
    gw_will_store_close(f->st);
    f->st = NULL;
    assert_int_equal(gw_will_store_open(f->path, GW_WILL_SYNC_NORMAL, &f->st), GW_OK);
}

static void test_put_get_replace_delete(void **state)
{
    fixture_t *f = *state;
    gw_will_rec_t *rec = NULL;
    /* Payload with an embedded NUL: stored as a blob, length kept. */
    gw_will_t w = mkwill("a/b", "x\0y", 3, 1, true);

    assert_int_equal(gw_will_store_get(f->st, "c1", &rec), GW_ERR_NOT_FOUND);
    assert_null(rec);
    assert_int_equal(gw_will_store_put(f->st, "c1", &w), GW_OK);
    assert_int_equal(gw_will_store_get(f->st, "c1", &rec), GW_OK);
    assert_string_equal(rec->name, "c1");
    assert_string_equal(rec->topic, "a/b");
    assert_int_equal(rec->topic_len, 3);
    assert_int_equal(rec->payload_len, 3);
    assert_memory_equal(rec->payload, "x\0y", 3);
    assert_int_equal(rec->qos, 1);
    assert_true(rec->retain);
    assert_int_equal(rec->id, 0);
    gw_will_rec_free(rec);

    /* Replace: a second put with the same name overwrites every field. */
    w = mkwill("c/d/e", "", 0, 2, false);
    assert_int_equal(gw_will_store_put(f->st, "c1", &w), GW_OK);
    assert_int_equal(gw_will_store_get(f->st, "c1", &rec), GW_OK);
    assert_string_equal(rec->topic, "c/d/e");
    assert_int_equal(rec->payload_len, 0);
    assert_int_equal(rec->qos, 2);
    assert_false(rec->retain);
    gw_will_rec_free(rec);

    int64_t held = -1, pub = -1;
    assert_int_equal(gw_will_store_count(f->st, &held, &pub), GW_OK);
    assert_int_equal(held, 1);
    assert_int_equal(pub, 0);

    assert_int_equal(gw_will_store_delete(f->st, "c1"), GW_OK);
    assert_int_equal(gw_will_store_delete(f->st, "c1"), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_will_store_get(f->st, "c1", &rec), GW_ERR_NOT_FOUND);
}

static void test_topic_not_nul_terminated(void **state)
{
    fixture_t *f = *state;
    gw_will_rec_t *rec = NULL;
    /* Decoded topics borrow from the AMQP message: no NUL after them. */
    const char buf[] = "t/1GARBAGE";
    gw_will_t w = {.topic = buf, .topic_len = 3, .payload = "p", .payload_len = 1};
    assert_int_equal(gw_will_store_put(f->st, "n", &w), GW_OK);
    assert_int_equal(gw_will_store_get(f->st, "n", &rec), GW_OK);
    assert_string_equal(rec->topic, "t/1");
    gw_will_rec_free(rec);
}

static void test_invalid(void **state)
{
    fixture_t *f = *state;
    gw_will_t w = mkwill("t", "p", 1, 3, false);
    gw_will_store_t *st = NULL;
    assert_int_equal(gw_will_store_put(f->st, "c", &w), GW_ERR_INVAL);
    assert_int_equal(gw_will_store_put(f->st, NULL, &w), GW_ERR_INVAL);
    assert_int_equal(gw_will_store_open("", GW_WILL_SYNC_FULL, &st), GW_ERR_INVAL);
    assert_int_equal(gw_will_store_open("/nonexistent-dir/x/y.db", GW_WILL_SYNC_FULL, &st),
                     GW_ERR_STORE);
    assert_null(st);
}

typedef struct collected {
    gw_will_rec_t *recs[16];
    size_t n;
    size_t stop_after;
} collected_t;

static gw_err_t collect(gw_will_rec_t *rec, void *ctx)
{
    collected_t *c = ctx;
    if (c->n >= 16) {
        gw_will_rec_free(rec);
        return GW_ERR_LIMIT;
    }
    c->recs[c->n++] = rec;
    return c->stop_after && c->n >= c->stop_after ? GW_ERR_LIMIT : GW_OK;
}

static void collected_free(collected_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        gw_will_rec_free(c->recs[i]);
    c->n = 0;
}

static void test_mark_publishing_and_restart(void **state)
{
    fixture_t *f = *state;
    gw_will_rec_t *rec = NULL, *rec2 = NULL;
    collected_t c = {0};
    gw_will_t w1 = mkwill("t/1", "one", 3, 1, false);
    gw_will_t w2 = mkwill("t/2", "two", 3, 0, true);

    assert_int_equal(gw_will_store_put(f->st, "b", &w2), GW_OK);
    assert_int_equal(gw_will_store_put(f->st, "a", &w1), GW_OK);
    assert_int_equal(gw_will_store_mark_publishing(f->st, "zz", &rec), GW_ERR_NOT_FOUND);
    assert_null(rec);

    assert_int_equal(gw_will_store_mark_publishing(f->st, "a", &rec), GW_OK);
    assert_true(rec->id > 0);
    assert_string_equal(rec->name, "a");
    assert_string_equal(rec->topic, "t/1");
    assert_memory_equal(rec->payload, "one", 3);
    /* Moved, not copied: a second mark finds nothing (no double publication). */
    assert_int_equal(gw_will_store_mark_publishing(f->st, "a", &rec2), GW_ERR_NOT_FOUND);
    /* The name is free again: a new link with it stores its own will. */
    assert_int_equal(gw_will_store_put(f->st, "a", &w2), GW_OK);

    /* Survives a close/reopen (a restart). */
    reopen(f);
    assert_int_equal(gw_will_store_list(f->st, collect, &c), GW_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.recs[0]->name, "a");
    assert_string_equal(c.recs[0]->topic, "t/2");
    assert_string_equal(c.recs[1]->name, "b");
    collected_free(&c);

    assert_int_equal(gw_will_store_list_publishing(f->st, collect, &c), GW_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.recs[0]->id, rec->id);
    assert_string_equal(c.recs[0]->topic, "t/1");
    assert_int_equal(c.recs[0]->qos, 1);
    collected_free(&c);

    assert_int_equal(gw_will_store_published(f->st, rec->id), GW_OK);
    assert_int_equal(gw_will_store_published(f->st, rec->id), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_will_store_list_publishing(f->st, collect, &c), GW_OK);
    assert_int_equal(c.n, 0);

    /* Ids are never reused (AUTOINCREMENT). */
    assert_int_equal(gw_will_store_mark_publishing(f->st, "b", &rec2), GW_OK);
    assert_true(rec2->id > rec->id);
    gw_will_rec_free(rec);
    gw_will_rec_free(rec2);
}

static void test_list_stops_on_callback_error(void **state)
{
    fixture_t *f = *state;
    collected_t c = {.stop_after = 2};
    char name[8];
    gw_will_t w = mkwill("t", "p", 1, 0, false);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(gw_will_store_put(f->st, name, &w), GW_OK);
    }
    assert_int_equal(gw_will_store_list(f->st, collect, &c), GW_ERR_LIMIT);
    assert_int_equal(c.n, 2);
    collected_free(&c);
    /* The statement was reset: a new iteration starts from the beginning. */
    c.stop_after = 0;
    assert_int_equal(gw_will_store_list(f->st, collect, &c), GW_OK);
    assert_int_equal(c.n, 5);
    collected_free(&c);
}

static void test_large_payload(void **state)
{
    fixture_t *f = *state;
    gw_will_rec_t *rec = NULL;
    size_t n = 1u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 7);
    gw_will_t w = mkwill("big", big, n, 2, false);
    w.payload = big;
    assert_int_equal(gw_will_store_put(f->st, "big", &w), GW_OK);
    reopen(f);
    assert_int_equal(gw_will_store_get(f->st, "big", &rec), GW_OK);
    assert_int_equal(rec->payload_len, n);
    assert_memory_equal(rec->payload, big, n);
    gw_will_rec_free(rec);
    free(big);
}

/* Rows of wills as another connection sees them (committed data only). */
static int64_t committed_rows(fixture_t *f)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM wills", -1, &q, NULL),
                     SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

static void test_batch_commit(void **state)
{
    fixture_t *f = *state;
    gw_will_rec_t *rec = NULL;
    gw_will_t w1 = mkwill("t/1", "1", 1, 1, false);
    gw_will_t w2 = mkwill("t/2", "2", 1, 0, true);
    int64_t held = -1, pub = -1;
    uint64_t commits0 = gw_will_store_commits(f->st);

    assert_false(gw_will_store_in_batch(f->st));
    assert_int_equal(gw_will_store_begin(f->st), GW_OK);
    assert_int_equal(gw_will_store_begin(f->st), GW_OK); /* idempotent */
    assert_true(gw_will_store_in_batch(f->st));
    /* Writes of one name in order: put, replace, delete, put again. */
    assert_int_equal(gw_will_store_put(f->st, "a", &w1), GW_OK);
    assert_int_equal(gw_will_store_put(f->st, "a", &w2), GW_OK);
    assert_int_equal(gw_will_store_put(f->st, "b", &w1), GW_OK);
    assert_int_equal(gw_will_store_delete(f->st, "b"), GW_OK);
    assert_int_equal(gw_will_store_delete(f->st, "b"), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_will_store_put(f->st, "c", &w1), GW_OK);
    /* Visible to this connection, counted, not committed yet. */
    assert_int_equal(gw_will_store_count(f->st, &held, &pub), GW_OK);
    assert_int_equal(held, 2);
    assert_int_equal(committed_rows(f), 0);
    assert_int_equal(gw_will_store_commits(f->st), commits0);
    /* The move needs its own transaction: refused inside a batch. */
    assert_int_equal(gw_will_store_mark_publishing(f->st, "a", &rec), GW_ERR_INVAL);
    assert_null(rec);

    assert_int_equal(gw_will_store_commit(f->st), GW_OK);
    assert_false(gw_will_store_in_batch(f->st));
    assert_int_equal(gw_will_store_commits(f->st), commits0 + 1);
    assert_int_equal(committed_rows(f), 2);
    assert_int_equal(gw_will_store_commit(f->st), GW_OK); /* none open: no-op */
    assert_int_equal(gw_will_store_commits(f->st), commits0 + 1);
    assert_int_equal(gw_will_store_get(f->st, "a", &rec), GW_OK);
    assert_string_equal(rec->topic, "t/2");
    assert_true(rec->retain);
    gw_will_rec_free(rec);

    /* Counts follow moves and publications; outside a batch each write commits. */
    assert_int_equal(gw_will_store_mark_publishing(f->st, "a", &rec), GW_OK);
    assert_int_equal(gw_will_store_count(f->st, &held, &pub), GW_OK);
    assert_int_equal(held, 1);
    assert_int_equal(pub, 1);
    assert_int_equal(gw_will_store_begin(f->st), GW_OK);
    assert_int_equal(gw_will_store_published(f->st, rec->id), GW_OK);
    assert_int_equal(gw_will_store_commit(f->st), GW_OK);
    gw_will_rec_free(rec);
    assert_int_equal(gw_will_store_count(f->st, &held, &pub), GW_OK);
    assert_int_equal(held, 1);
    assert_int_equal(pub, 0);
    assert_int_equal(gw_will_store_commits(f->st), commits0 + 3);

    /* A batch still open at close is committed. */
    assert_int_equal(gw_will_store_begin(f->st), GW_OK);
    assert_int_equal(gw_will_store_put(f->st, "d", &w1), GW_OK);
    reopen(f);
    assert_int_equal(gw_will_store_count(f->st, &held, &pub), GW_OK);
    assert_int_equal(held, 2);
}

/* SQLite may roll a transaction back by itself (I/O error, disk full): the
 * later writes of that batch and its commit must fail, not run in
 * autocommit mode, and the counts must match the tables again. */
static void test_batch_rolled_back_underneath(void **state)
{
    fixture_t *f = *state;
    gw_will_t w = mkwill("t", "p", 1, 1, false);
    int64_t held = -1, pub = -1;

    assert_int_equal(gw_will_store_put(f->st, "kept", &w), GW_OK);
    assert_int_equal(gw_will_store_begin(f->st), GW_OK);
    assert_int_equal(gw_will_store_put(f->st, "lost1", &w), GW_OK);
    assert_int_equal(sqlite3_exec(f->st->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(gw_will_store_put(f->st, "lost2", &w), GW_ERR_STORE);
    assert_int_equal(gw_will_store_delete(f->st, "kept"), GW_ERR_STORE);
    assert_int_equal(gw_will_store_commit(f->st), GW_ERR_STORE);
    assert_false(gw_will_store_in_batch(f->st));
    assert_int_equal(gw_will_store_count(f->st, &held, &pub), GW_OK);
    assert_int_equal(held, 1);
    assert_int_equal(committed_rows(f), 1);
    /* The store works again afterwards. */
    assert_int_equal(gw_will_store_begin(f->st), GW_OK);
    assert_int_equal(gw_will_store_put(f->st, "next", &w), GW_OK);
    assert_int_equal(gw_will_store_commit(f->st), GW_OK);
    assert_int_equal(committed_rows(f), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_replace_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_not_nul_terminated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_publishing_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_stops_on_callback_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_rolled_back_underneath, setup, teardown),
    };
    gw_log_set_level(GW_LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
