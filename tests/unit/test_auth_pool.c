/*
 * test_auth_pool.c - verification off the event loop: N concurrent jobs
 * complete and report back on the event_base's thread, cancellation,
 * backpressure, db reference kept across a swap, cache use from workers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>
#include <event2/event.h>

#include "gw/auth.h"

#define SALT16 "MDEyMzQ1Njc4OWFiY2RlZg=="
#define H_PASSWORD "pbkdf2-sha512$1000$" SALT16 "$38DzhdBT7fPaUGBlsh42VTuuKSFAIYGZJ7l6feCDLIl+K3hdPFgxxu7xuUi4gIuH6cEIoODn18xH9Ig2ryNgUw=="

struct ctx {
    struct event_base *base;
    pthread_t loop_thread;
    int done;
    int expected;
    int results[GW_AUTH_ERROR + 1];
    int wrong_thread;
};

struct req {
    struct ctx *ctx;
    gw_auth_result_t want;
    int calls;
};

static void on_done(gw_auth_result_t r, void *arg)
{
    struct req *q = arg;
    struct ctx *c = q->ctx;
    q->calls++;
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->wrong_thread++;
    if (r != q->want)
        fail_msg("result %s, want %s", gw_auth_result_name(r), gw_auth_result_name(q->want));
    c->results[r]++;
    if (++c->done == c->expected)
        event_base_loopbreak(c->base);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Run the loop until all expected callbacks came or 30 s passed. */
static void run(struct ctx *c)
{
    struct timeval tv = {30, 0};
    struct event *t = evtimer_new(c->base, on_timeout, c->base);
    evtimer_add(t, &tv);
    event_base_dispatch(c->base);
    event_free(t);
}

static gw_auth_passwd_t *db_with_users(int n)
{
    static char text[64 * 200];
    size_t off = 0;
    char errbuf[GW_AUTH_ERRBUF];
    gw_auth_passwd_t *db = NULL;
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off, "user%d:%s\n", i, H_PASSWORD);
    if (gw_auth_passwd_parse(text, off, "t", &db, errbuf) != GW_OK)
        fail_msg("%s", errbuf);
    return db;
}

static void test_concurrent(void **state)
{
    enum { N = 48 };
    struct ctx c = {.base = event_base_new(), .loop_thread = pthread_self(), .expected = N};
    gw_auth_passwd_t *db = db_with_users(16);
    gw_auth_pool_t *pool = NULL;
    struct req reqs[N];

    assert_int_equal(gw_auth_pool_new(c.base, 4, 100, NULL, &pool), GW_OK);
    for (int i = 0; i < N; i++) {
        char user[16];
        int k = i % 3;
        snprintf(user, sizeof(user), k == 2 ? "nobody%d" : "user%d", i % 16);
        reqs[i] = (struct req){&c, k == 0 ? GW_AUTH_OK : k == 1 ? GW_AUTH_BAD_PASSWORD
                                                                  : GW_AUTH_UNKNOWN_USER, 0};
        assert_int_equal(gw_auth_pool_submit(pool, db, user, strlen(user),
                                             k == 1 ? "wrong" : "password", k == 1 ? 5 : 8,
                                             on_done, &reqs[i], NULL),
                         GW_OK);
    }
    /* the caller may drop its reference at once (reload swap) */
    gw_auth_passwd_free(db);
    assert_int_equal(gw_auth_pool_pending(pool), N);
    assert_int_equal(c.done, 0); /* never called from inside submit */
    run(&c);
    assert_int_equal(c.done, N);
    assert_int_equal(c.results[GW_AUTH_OK], N / 3);
    assert_int_equal(c.results[GW_AUTH_BAD_PASSWORD], N / 3);
    assert_int_equal(c.results[GW_AUTH_UNKNOWN_USER], N / 3);
    assert_int_equal(c.wrong_thread, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(reqs[i].calls, 1);
    assert_int_equal(gw_auth_pool_pending(pool), 0);
    gw_auth_pool_free(pool);
    event_base_free(c.base);
}

static void test_backpressure_and_cancel(void **state)
{
    struct ctx c = {.base = event_base_new(), .loop_thread = pthread_self()};
    gw_auth_passwd_t *db = db_with_users(1);
    gw_auth_pool_t *pool = NULL;
    gw_auth_job_t *jobs[4];
    struct req reqs[5];

    assert_int_equal(gw_auth_pool_new(c.base, 1, 4, NULL, &pool), GW_OK);
    for (int i = 0; i < 4; i++) {
        reqs[i] = (struct req){&c, GW_AUTH_OK, 0};
        assert_int_equal(gw_auth_pool_submit(pool, db, "user0", 5, "password", 8, on_done,
                                             &reqs[i], &jobs[i]),
                         GW_OK);
    }
    reqs[4] = (struct req){&c, GW_AUTH_OK, 0};
    assert_int_equal(gw_auth_pool_submit(pool, db, "user0", 5, "password", 8, on_done, &reqs[4],
                                         NULL),
                     GW_ERR_LIMIT);
    /* cancel two: their callbacks never run */
    gw_auth_pool_cancel(pool, jobs[1]);
    gw_auth_pool_cancel(pool, jobs[3]);
    c.expected = 2;
    run(&c);
    assert_int_equal(c.done, 2);
    assert_int_equal(reqs[0].calls, 1);
    assert_int_equal(reqs[1].calls, 0);
    assert_int_equal(reqs[2].calls, 1);
    /* The cancelled jobs are reaped once their completion is drained. */
    for (int spin = 0; spin < 2000 && gw_auth_pool_pending(pool) != 0; spin++) {
        struct timeval small = {0, 1000};
        event_base_loopexit(c.base, &small);
        event_base_dispatch(c.base);
    }
    assert_int_equal(gw_auth_pool_pending(pool), 0);
    assert_int_equal(reqs[3].calls, 0);
    /* room again */
    c.expected = 3;
    assert_int_equal(gw_auth_pool_submit(pool, db, "user0", 5, "password", 8, on_done, &reqs[4],
                                         NULL),
                     GW_OK);
    run(&c);
    assert_int_equal(reqs[4].calls, 1);
    assert_int_equal(gw_auth_pool_submit(pool, NULL, "u", 1, "p", 1, on_done, &reqs[4], NULL),
                     GW_ERR_INVAL);
    gw_auth_pool_free(pool);
    gw_auth_passwd_free(db);
    event_base_free(c.base);
}

static void test_free_with_pending(void **state)
{
    /* Freeing the pool with queued work: no callbacks, no leaks (ASan). */
    struct ctx c = {.base = event_base_new(), .loop_thread = pthread_self()};
    gw_auth_passwd_t *db = db_with_users(1);
    gw_auth_pool_t *pool = NULL;
    struct req r = {&c, GW_AUTH_OK, 0};
    assert_int_equal(gw_auth_pool_new(c.base, 2, 100, NULL, &pool), GW_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(gw_auth_pool_submit(pool, db, "user0", 5, "password", 8, on_done, &r,
                                             NULL),
                         GW_OK);
    gw_auth_passwd_free(db);
    gw_auth_pool_free(pool);
    assert_int_equal(r.calls, 0);
    assert_int_equal(gw_auth_pool_new(c.base, 0, 100, NULL, &pool), GW_ERR_INVAL);
    assert_int_equal(gw_auth_pool_new(c.base, 65, 100, NULL, &pool), GW_ERR_INVAL);
    event_base_free(c.base);
}

static void test_pool_with_cache(void **state)
{
    enum { N = 20 };
    struct ctx c = {.base = event_base_new(), .loop_thread = pthread_self(), .expected = N};
    gw_auth_passwd_t *db = db_with_users(1);
    gw_auth_cache_t *cache = gw_auth_cache_new(64, 60000);
    gw_auth_pool_t *pool = NULL;
    gw_auth_cache_stats_t st;
    struct req reqs[N];

    assert_int_equal(gw_auth_pool_new(c.base, 1, 100, cache, &pool), GW_OK);
    for (int i = 0; i < N; i++) {
        reqs[i] = (struct req){&c, GW_AUTH_OK, 0};
        assert_int_equal(gw_auth_pool_submit(pool, db, "user0", 5, "password", 8, on_done,
                                             &reqs[i], NULL),
                         GW_OK);
    }
    run(&c);
    assert_int_equal(c.done, N);
    gw_auth_cache_stats(cache, &st);
    /* one worker: the first job misses and inserts, the rest hit */
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, N - 1);
    gw_auth_pool_free(pool);
    gw_auth_cache_free(cache);
    gw_auth_passwd_free(db);
    event_base_free(c.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_backpressure_and_cancel),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_pool_with_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
