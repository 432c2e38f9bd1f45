/*
 * test_subs_session_mem.c - memory of the subscription service's own
 * per-session structures (services/subscription/session.c, compiled into
 * this test with store_sqlite.c since unit tests link with gwcore only).
 *
 * Scenario 6 of the benchmark holds tens of thousands of idle connected
 * clients: an idle session (no subscription, nothing queued) must stay a
 * small fixed size, and its packet-id set must not cost 8 KiB once a
 * message has been in flight. Heap use is read from the allocator
 * (mallinfo2, or the sanitizer's counter under ASan).
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
/* libasan's (sanitizer/allocator_interface.h is not always installed). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "../../services/subscription/session.c"
#include "../../services/subscription/store_sqlite.c"

/* service.c / control.c entry points session.c calls: no store batch, no links here. */
void subs_batch_touch(subs_service_t *svc) { (void)svc; }
void subs_backpressure_start(subs_service_t *svc) { (void)svc; }
void subs_credit_resume(subs_service_t *svc) { (void)svc; }
void subs_credit_release(subs_service_t *svc, uint64_t over_id) { (void)svc; (void)over_id; }
void subs_control_flush(subs_service_t *svc, subs_session_t *s)
{
    (void)svc;
    (void)s;
}

static size_t heap_used(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

typedef struct fixture {
    subs_config_t cfg;
    subs_service_t svc;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->cfg.max_queued_messages = 1000;
    f->cfg.max_queued_bytes = 1 << 20;
    f->cfg.online_hwm = 1000;
    f->cfg.online_hwm_bytes = 1 << 20;
    f->svc.cfg = &f->cfg;
    f->svc.nbuckets = 64;
    f->svc.buckets = calloc(f->svc.nbuckets, sizeof *f->svc.buckets);
    f->svc.index = gw_topic_index_new();
    if (!f->svc.buckets || !f->svc.index)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (size_t i = 0; i < f->svc.nbuckets; i++)
        while (f->svc.buckets[i])
            subs_session_destroy(&f->svc, f->svc.buckets[i], false);
    free(f->svc.buckets);
    gw_topic_index_free(f->svc.index);
    free(f->svc.syncwait);
    free(f);
    return 0;
}

/* An idle persistent session, hash table share included, stays small. */
static void test_idle_session_bytes(void **state)
{
    fixture_t *f = *state;
    enum { N = 20000 };
    char id[64];
    size_t before = heap_used();
    for (int i = 0; i < N; i++) {
        int len = snprintf(id, sizeof id, "bench-client-%06d", i);
        subs_session_t *s = subs_session_get(&f->svc, id, (size_t)len);
        assert_non_null(s);
        subs_session_set_persistent(&f->svc, s, true);
    }
    size_t per = (heap_used() - before) / N;
    /* struct (136 bytes on LP64) + id + the bucket array's share; it was
     * ~185 with the old field order, and must never hold a packet-id set. */
    print_message("idle session: %zu bytes (struct %zu, id 20)\n", per, sizeof(subs_session_t));
    assert_true(per <= 200);
    assert_int_equal(f->svc.nsessions, N);
    assert_non_null(subs_session_find(&f->svc, "bench-client-000042", 19));
    for (size_t i = 0; i < f->svc.nbuckets; i++)
        for (subs_session_t *s = f->svc.buckets[i]; s; s = s->hnext)
            assert_null(s->pid_small);
}

/* A few packet ids in flight cost a small array, many a bitmap; none, nothing. */
static void test_pid_set_small_then_big(void **state)
{
    fixture_t *f = *state;
    subs_session_t *s = subs_session_get(&f->svc, "p", 1);
    assert_non_null(s);
    size_t before = heap_used();
    uint16_t ids[100];
    for (int i = 0; i < 5; i++)
        assert_int_not_equal(ids[i] = pid_alloc(s), 0);
    assert_false(s->pid_big);
    assert_true(heap_used() - before <= 128); /* not 8 KiB */
    for (int i = 5; i < 100; i++)
        assert_int_not_equal(ids[i] = pid_alloc(s), 0);
    assert_true(s->pid_big);
    assert_int_equal(s->npids, 100);
    for (int i = 0; i < 100; i++) {
        assert_true(pid_test(s, ids[i]));
        for (int j = 0; j < i; j++)
            assert_int_not_equal(ids[i], ids[j]);
    }
    /* Free out of order; the set survives until the last id goes. */
    for (int i = 0; i < 100; i += 2)
        pid_free(s, ids[i]);
    pid_map_trim(s);
    assert_non_null(s->pid_map);
    for (int i = 1; i < 100; i += 2) {
        assert_true(pid_test(s, ids[i]));
        assert_false(pid_test(s, ids[i - 1]));
        pid_free(s, ids[i]);
    }
    assert_int_equal(s->npids, 0);
    pid_map_trim(s);
    assert_null(s->pid_small);
    assert_false(s->pid_big);
    assert_true(heap_used() <= before);
}

/* The small array: membership, swap-remove, no duplicate, wrap of next_pid. */
static void test_pid_small_array(void **state)
{
    fixture_t *f = *state;
    subs_session_t *s = subs_session_get(&f->svc, "q", 1);
    assert_non_null(s);
    assert_int_equal(pid_mark(s, 7), GW_OK);
    assert_int_equal(pid_mark(s, 7), GW_OK);
    assert_int_equal(s->npids, 1);
    assert_int_equal(pid_mark(s, 65535), GW_OK);
    assert_int_equal(pid_mark(s, 1), GW_OK);
    pid_free(s, 7);
    assert_false(pid_test(s, 7));
    assert_true(pid_test(s, 65535));
    assert_true(pid_test(s, 1));
    s->next_pid = 65535; /* in use: skipped, then 1 in use: skipped */
    assert_int_equal(pid_alloc(s), 2);
    pid_free(s, 0); /* no id: ignored */
    assert_int_equal(s->npids, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idle_session_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pid_set_small_then_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pid_small_array, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
