/*
 * selftest.c - checks of the sequence tracker and the latency histogram of
 * mqtt-load, run by tests/system/test_load_tool.py (exit status 0 = pass).
 * CHECK prints every failure and keeps going (no assert(): it vanishes
 * under NDEBUG).
 */
#include <stdio.h>
#include <stdlib.h>

#include "hist.h"
#include "track.h"

static int failures;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
            failures++;                                                                     \
        }                                                                                   \
    } while (0)

static void test_in_order(void)
{
    lt_sink_t s = {0};
    lt_pair_t *p = lt_sink_pair(&s, 3);
    CHECK(p != NULL);
    for (uint64_t i = 0; i < 1000; i++)
        CHECK(lt_pair_record(p, i) == LT_SEEN_NEW);
    CHECK(p->ngaps == 0);
    CHECK(lt_pair_missing_below(p, 1000) == 0);
    CHECK(lt_pair_missing_below(p, 1010) == 10); /* sent but not (yet) received */
    CHECK(lt_pair_record(p, 999) == LT_SEEN_DUP);
    CHECK(lt_pair_record(p, 0) == LT_SEEN_DUP);
    CHECK(lt_sink_missing_below(&s, 2, 7) == 7); /* never heard of publisher 2 */
    CHECK(lt_sink_pair(&s, LT_MAX_PUBLISHER_ID) == NULL);
    lt_sink_free(&s);
}

static void test_gaps(void)
{
    lt_pair_t p = {0};
    CHECK(lt_pair_record(&p, 0) == LT_SEEN_NEW);
    CHECK(lt_pair_record(&p, 5) == LT_SEEN_NEW); /* gap [1,5) */
    CHECK(lt_pair_record(&p, 10) == LT_SEEN_NEW); /* gap [6,10) */
    CHECK(p.ngaps == 2);
    CHECK(lt_pair_missing_below(&p, 11) == 8);
    CHECK(lt_pair_missing_below(&p, 3) == 2); /* 1, 2 */
    CHECK(lt_pair_record(&p, 5) == LT_SEEN_DUP);
    CHECK(lt_pair_record(&p, 1) == LT_SEEN_OOO); /* shrink from below */
    CHECK(lt_pair_record(&p, 1) == LT_SEEN_DUP);
    CHECK(lt_pair_record(&p, 4) == LT_SEEN_OOO); /* shrink from above */
    CHECK(lt_pair_record(&p, 8) == LT_SEEN_OOO); /* split [6,10) into [6,8) [9,10) */
    CHECK(p.ngaps == 3);
    CHECK(lt_pair_record(&p, 8) == LT_SEEN_DUP);
    CHECK(lt_pair_missing_below(&p, 11) == 5); /* 2 3 6 7 9 */
    CHECK(lt_pair_record(&p, 9) == LT_SEEN_OOO); /* one-element gap removed */
    CHECK(lt_pair_record(&p, 2) == LT_SEEN_OOO);
    CHECK(lt_pair_record(&p, 3) == LT_SEEN_OOO);
    CHECK(lt_pair_record(&p, 6) == LT_SEEN_OOO);
    CHECK(lt_pair_record(&p, 7) == LT_SEEN_OOO);
    CHECK(p.ngaps == 0);
    CHECK(lt_pair_missing_below(&p, 11) == 0);
    CHECK(lt_pair_record(&p, 11) == LT_SEEN_NEW);
    free(p.gaps);
}

static void test_reverse_order(void)
{
    /* 0..99 delivered backwards: 99 first opens [0,99), then 98..0 fill it. */
    lt_pair_t p = {0};
    uint64_t ooo = 0;
    for (uint64_t i = 100; i-- > 0;)
        ooo += lt_pair_record(&p, i) == LT_SEEN_OOO;
    CHECK(ooo == 99);
    CHECK(p.ngaps == 0 && p.next == 100);
    /* every other one missing */
    for (uint64_t i = 100; i < 300; i += 2)
        CHECK(lt_pair_record(&p, i) == LT_SEEN_NEW);
    CHECK(lt_pair_missing_below(&p, 299) == 99);  /* 101, 103, ... 297 */
    CHECK(lt_pair_missing_below(&p, 300) == 100); /* and 299, sent but not seen */
    free(p.gaps);
}

static void test_hist(void)
{
    lt_hist_t *h = malloc(sizeof(*h));
    CHECK(h != NULL);
    if (!h)
        return;
    lt_hist_init(h);
    CHECK(lt_hist_percentile(h, 50) == 0);
    for (uint64_t v = 1; v <= 1000000; v++)
        lt_hist_record(h, v * 1000); /* 1 us .. 1 s, uniform */
    CHECK(h->count == 1000000 && h->min == 1000 && h->max == 1000000000ull);
    uint64_t p50 = lt_hist_percentile(h, 50), p99 = lt_hist_percentile(h, 99);
    uint64_t p999 = lt_hist_percentile(h, 99.9), p100 = lt_hist_percentile(h, 100);
    /* never below the true value, at most one bucket (1/32) above */
    CHECK(p50 >= 500000000ull && p50 <= 500000000ull + 500000000ull / 32);
    CHECK(p99 >= 990000000ull && p99 <= 990000000ull + 990000000ull / 32);
    CHECK(p999 >= 999000000ull && p999 <= 1000000000ull);
    CHECK(p100 == 1000000000ull);
    CHECK(p50 <= p99 && p99 <= p999 && p999 <= p100);
    /* bucket ranges tile the value space */
    uint64_t lo, hi, prev_hi = 0;
    for (uint32_t i = 0; i < LT_HIST_BUCKETS; i++) {
        lt_hist_bucket_range(i, &lo, &hi);
        CHECK(i == 0 || lo == prev_hi + 1);
        CHECK(lt_hist_index(lo) == i && lt_hist_index(hi) == i);
        prev_hi = hi;
    }
    CHECK(prev_hi == UINT64_MAX);
    lt_hist_t *m = malloc(sizeof(*m));
    if (m) {
        lt_hist_init(m);
        lt_hist_record(m, 5);
        lt_hist_merge(m, h);
        CHECK(m->count == 1000001 && m->min == 5 && m->max == 1000000000ull);
        free(m);
    }
    free(h);
}

int main(void)
{
    test_in_order();
    test_gaps();
    test_reverse_order();
    test_hist();
    if (failures)
        fprintf(stderr, "mqtt-load-selftest: %d check(s) failed\n", failures);
    else
        printf("mqtt-load-selftest: ok\n");
    return failures ? 1 : 0;
}
