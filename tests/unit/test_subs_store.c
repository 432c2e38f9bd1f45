/*
 * test_subs_store.c - the Subscription Service's SQLite store
 * (services/subscription/store_sqlite.c), compiled into this test since
 * unit tests link with gwcore only.
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

#include "../../services/subscription/store_sqlite.c"

typedef struct fixture {
    char dir[64];
    char path[128];
    gw_subs_store_t *st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/test_subs_store.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/subs.db", f->dir);
    if (gw_subs_store_open(f->path, false, &f->st) != GW_OK) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char p[192];
    gw_subs_store_close(f->st);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void reopen(fixture_t *f)
{
    gw_subs_store_close(f->st);
    f->st = NULL;
    assert_int_equal(gw_subs_store_open(f->path, false, &f->st), GW_OK);
}

/* What a load reports, flattened into text for exact comparisons. */
typedef struct seen {
    char text[4096];
    size_t len;
} seen_t;

static void add(seen_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->text + s->len, sizeof s->text - s->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        s->len += (size_t)n;
}

static gw_err_t on_session(const char *id, int64_t offline_ms, void *ctx)
{
    if (offline_ms)
        add(ctx, "S %s @%lld;", id, (long long)offline_ms);
    else
        add(ctx, "S %s;", id);
    return GW_OK;
}
static gw_err_t on_sub(const char *id, const char *f, size_t flen, uint8_t qos, void *ctx)
{
    add(ctx, "F %s %.*s %u;", id, (int)flen, f, qos);
    return GW_OK;
}
static gw_err_t on_ret(const char *t, size_t tlen, const void *p, size_t plen, uint8_t qos,
                       void *ctx)
{
    add(ctx, "R %.*s %.*s %u;", (int)tlen, t, (int)plen, (const char *)p, qos);
    return GW_OK;
}
static gw_err_t on_msg(int64_t id, const char *t, size_t tlen, const void *p, size_t plen,
                       uint8_t qos, void *ctx)
{
    add(ctx, "M %lld %.*s %.*s %u;", (long long)id, (int)tlen, t, (int)plen, (const char *)p,
        qos);
    return GW_OK;
}
static gw_err_t on_queue(int64_t seq, const char *id, int64_t msg_id, uint8_t qos,
                         uint16_t pkt_id, bool retain, int state, void *ctx)
{
    add(ctx, "Q %lld %s %lld %u %u %d %d;", (long long)seq, id, (long long)msg_id, qos, pkt_id,
        (int)retain, state);
    return GW_OK;
}

static void load(fixture_t *f, seen_t *s)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(gw_subs_store_load(f->st, on_session, on_sub, on_ret, on_msg, on_queue, s),
                     GW_OK);
}

static void test_roundtrip_after_reopen(void **state)
{
    fixture_t *f = *state;
    int64_t mid = 0, q1 = 0, q2 = 0;
    seen_t s;

    assert_int_equal(gw_subs_store_session_put(f->st, "c.1"), GW_OK);
    assert_true(gw_subs_store_in_batch(f->st));
    assert_int_equal(gw_subs_store_sub_put(f->st, "c.1", "a/+", 3, 1), GW_OK);
    assert_int_equal(gw_subs_store_sub_put(f->st, "c.1", "a/+", 3, 2), GW_OK); /* replace */
    assert_int_equal(gw_subs_store_sub_put(f->st, "c.1", "b/#xx", 3, 0), GW_OK); /* len 3 */
    assert_int_equal(gw_subs_store_retained_put(f->st, "r/1", 3, "old", 3, 1), GW_OK);
    assert_int_equal(gw_subs_store_retained_put(f->st, "r/1", 3, "new", 3, 0), GW_OK);
    assert_int_equal(gw_subs_store_retained_put(f->st, "r/2", 3, "gone", 4, 2), GW_OK);
    assert_int_equal(gw_subs_store_retained_delete(f->st, "r/2", 3), GW_OK);
    assert_int_equal(gw_subs_store_msg_put(f->st, "t/x", 3, "pay", 3, 2, &mid), GW_OK);
    assert_true(mid > 0);
    assert_int_equal(gw_subs_store_queue_put(f->st, "c.1", mid, 2, 7, false, GW_SUBS_Q_QUEUED,
                                             &q1), GW_OK);
    assert_int_equal(gw_subs_store_queue_put(f->st, "c.1", mid, 1, 65535, true,
                                             GW_SUBS_Q_QUEUED, &q2), GW_OK);
    assert_true(q2 > q1);
    assert_int_equal(gw_subs_store_queue_state(f->st, q1, GW_SUBS_Q_RELEASED), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    assert_false(gw_subs_store_in_batch(f->st));
    reopen(f);
    load(f, &s);
    char want[512];
    snprintf(want, sizeof want,
             "S c.1;F c.1 a/+ 2;F c.1 b/# 0;R r/1 new 0;M %lld t/x pay 2;"
             "Q %lld c.1 %lld 2 7 0 2;Q %lld c.1 %lld 1 65535 1 0;",
             (long long)mid, (long long)q1, (long long)mid, (long long)q2, (long long)mid);
    assert_string_equal(s.text, want);
}

static void test_uncommitted_batch_is_lost_and_orphans_swept(void **state)
{
    fixture_t *f = *state;
    int64_t mid = 0, q = 0;
    seen_t s;

    assert_int_equal(gw_subs_store_session_put(f->st, "k"), GW_OK);
    assert_int_equal(gw_subs_store_msg_put(f->st, "t", 1, "a", 1, 1, &mid), GW_OK);
    assert_int_equal(gw_subs_store_queue_put(f->st, "k", mid, 1, 1, false, 0, &q), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    /* session delete removes subs and queue rows; the msgs row is then an
     * orphan that the next open sweeps */
    assert_int_equal(gw_subs_store_session_delete(f->st, "k"), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    /* a batch never committed (crash) leaves no trace */
    assert_int_equal(gw_subs_store_session_put(f->st, "lost"), GW_OK);
    uint64_t w = gw_subs_store_writes(f->st);
    assert_true(w >= 5);
    sqlite3_exec(f->st->db, "ROLLBACK", NULL, NULL, NULL); /* as a crash would */
    f->st->in_batch = false;
    reopen(f);
    load(f, &s);
    assert_string_equal(s.text, "");
}

/* A copy is queued without a packet id; its id comes with its first
 * transfer (state sent), durably, in the same batch. */
static void test_packet_id_given_at_first_transfer(void **state)
{
    fixture_t *f = *state;
    int64_t mid = 0, q = 0;
    seen_t s;

    assert_int_equal(gw_subs_store_session_put(f->st, "p"), GW_OK);
    assert_int_equal(gw_subs_store_msg_put(f->st, "t", 1, "a", 1, 2, &mid), GW_OK);
    assert_int_equal(gw_subs_store_queue_put(f->st, "p", mid, 2, 0, false, GW_SUBS_Q_QUEUED,
                                             &q), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    assert_int_equal(gw_subs_store_queue_sent(f->st, q, 4242, GW_SUBS_Q_SENT), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    reopen(f);
    load(f, &s);
    char want[256];
    snprintf(want, sizeof want, "S p;M %lld t a 2;Q %lld p %lld 2 4242 0 1;", (long long)mid,
             (long long)q, (long long)mid);
    assert_string_equal(s.text, want);
}

static void test_commit_without_batch_is_noop(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    assert_int_equal(gw_subs_store_writes(f->st), 0);
}

/* --store-cache: the page cache bound is what was asked (KiB granularity). */
static void test_cache_size_bound(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(gw_subs_store_set_cache_size(f->st, 512 * 1024), GW_OK);
    assert_int_equal(gw_subs_store_cache_size(f->st), 512 * 1024);
    assert_int_equal(gw_subs_store_set_cache_size(f->st, 64 * 1024 + 100), GW_OK);
    assert_int_equal(gw_subs_store_cache_size(f->st), 64 * 1024);
    /* still a working store */
    assert_int_equal(gw_subs_store_session_put(f->st, "c"), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
}

/* --session-expiry: when a session went offline survives a reopen; 0 clears it. */
static void test_offline_time_roundtrip(void **state)
{
    fixture_t *f = *state;
    seen_t s;
    assert_int_equal(gw_subs_store_session_put(f->st, "a"), GW_OK);
    assert_int_equal(gw_subs_store_session_put(f->st, "b"), GW_OK);
    assert_int_equal(gw_subs_store_session_offline(f->st, "a", 1765000000123LL), GW_OK);
    assert_int_equal(gw_subs_store_session_offline(f->st, "b", 1765000000456LL), GW_OK);
    assert_int_equal(gw_subs_store_session_offline(f->st, "nobody", 5), GW_OK); /* no row: no-op */
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    reopen(f);
    load(f, &s);
    assert_string_equal(s.text, "S a @1765000000123;S b @1765000000456;");
    assert_int_equal(gw_subs_store_session_offline(f->st, "b", 0), GW_OK); /* online again */
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    reopen(f);
    load(f, &s);
    assert_string_equal(s.text, "S a @1765000000123;S b;");
}

/* A store written before sessions.offline_at existed opens, keeps its
 * sessions (offline time unknown) and takes offline times from then on. */
static void test_old_schema_gains_offline_column(void **state)
{
    fixture_t *f = *state;
    seen_t s;
    sqlite3 *db = NULL;
    gw_subs_store_close(f->st);
    f->st = NULL;
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[192];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE sessions (id TEXT PRIMARY KEY NOT NULL);"
                                  "INSERT INTO sessions(id) VALUES('old');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(gw_subs_store_open(f->path, false, &f->st), GW_OK);
    load(f, &s);
    assert_string_equal(s.text, "S old;");
    assert_int_equal(gw_subs_store_session_offline(f->st, "old", 42), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    reopen(f);
    load(f, &s);
    assert_string_equal(s.text, "S old @42;");
}

static gw_err_t on_q2(const char *p, size_t len, uint16_t pid, uint64_t digest, void *ctx)
{
    add(ctx, "Q2 %.*s %u %llx;", (int)len, p, pid, (unsigned long long)digest);
    return GW_OK;
}

/* QoS 2 duplicate-detection records: put (replace), delete one, delete a
 * publisher's, oldest first after a reopen; 64-bit digests intact. */
static void test_qos2_records(void **state)
{
    fixture_t *f = *state;
    seen_t s;
    assert_int_equal(gw_subs_store_qos2_put(f->st, "dev1", 4, 7, 0xfedcba9876543210ULL), GW_OK);
    assert_int_equal(gw_subs_store_qos2_put(f->st, "dev2", 4, 7, 1), GW_OK);
    assert_int_equal(gw_subs_store_qos2_put(f->st, "dev1", 4, 8, 2), GW_OK);
    assert_int_equal(gw_subs_store_qos2_put(f->st, "dev1", 4, 7, 3), GW_OK); /* replace */
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    reopen(f);
    memset(&s, 0, sizeof s);
    assert_int_equal(gw_subs_store_load_qos2(f->st, on_q2, &s), GW_OK);
    assert_string_equal(s.text, "Q2 dev2 7 1;Q2 dev1 8 2;Q2 dev1 7 3;");
    assert_int_equal(gw_subs_store_qos2_put(f->st, "dev1", 4, 7, 0xfedcba9876543210ULL), GW_OK);
    assert_int_equal(gw_subs_store_qos2_delete(f->st, "dev2", 4, 7), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    reopen(f);
    memset(&s, 0, sizeof s);
    assert_int_equal(gw_subs_store_load_qos2(f->st, on_q2, &s), GW_OK);
    assert_string_equal(s.text, "Q2 dev1 8 2;Q2 dev1 7 fedcba9876543210;");
    assert_int_equal(gw_subs_store_qos2_delete(f->st, "dev1", 4, -1), GW_OK);
    assert_int_equal(gw_subs_store_commit(f->st), GW_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(gw_subs_store_load_qos2(f->st, on_q2, &s), GW_OK);
    assert_string_equal(s.text, "");
}

static void test_open_bad_path(void **state)
{
    (void)state;
    gw_subs_store_t *st = (gw_subs_store_t *)1;
    assert_int_equal(gw_subs_store_open("/nonexistent-dir/x/y.db", false, &st), GW_ERR_STORE);
    assert_null(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uncommitted_batch_is_lost_and_orphans_swept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_packet_id_given_at_first_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_without_batch_is_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_size_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_time_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_schema_gains_offline_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qos2_records, setup, teardown),
        cmocka_unit_test(test_open_bad_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
