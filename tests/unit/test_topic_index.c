/*
 * test_topic_index.c - subscription index (gw/topic.h).
 *
 * Spec tables from MQTT 3.1.1 section 4.7, index semantics (overlap, update,
 * remove, pruning), a randomized differential test against a brute-force
 * matcher written here, and the large/deep corner cases (hash-table
 * children, many subscribers per filter, topics deeper than the local stack).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gw/topic.h"

#define SUB(i) ((void *)(uintptr_t)(i))

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

typedef struct hit {
    void *sub;
    uint8_t qos;
} hit_t;

typedef struct hits {
    hit_t *v;
    size_t n, cap;
    size_t stop_after; /* 0 = never stop */
} hits_t;

static bool collect(void *sub, uint8_t qos, void *arg)
{
    hits_t *h = arg;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->v = realloc(h->v, h->cap * sizeof(*h->v));
        assert_non_null(h->v);
    }
    h->v[h->n++] = (hit_t){sub, qos};
    return !(h->stop_after && h->n >= h->stop_after);
}

static int hit_cmp(const void *a, const void *b)
{
    const hit_t *x = a, *y = b;
    if ((uintptr_t)x->sub != (uintptr_t)y->sub)
        return (uintptr_t)x->sub < (uintptr_t)y->sub ? -1 : 1;
    return (int)x->qos - (int)y->qos;
}

static size_t match_str(const gw_topic_index_t *idx, const char *topic, hits_t *h)
{
    h->n = 0;
    size_t r = gw_topic_index_match(idx, topic, strlen(topic), collect, h);
    assert_int_equal(r, h->n);
    if (h->n > 1)
        qsort(h->v, h->n, sizeof(*h->v), hit_cmp);
    return r;
}

static gw_err_t add_str(gw_topic_index_t *idx, const char *f, uintptr_t sub, uint8_t qos,
                        bool *added)
{
    return gw_topic_index_add(idx, f, strlen(f), SUB(sub), qos, added);
}

static gw_err_t remove_str(gw_topic_index_t *idx, const char *f, uintptr_t sub)
{
    return gw_topic_index_remove(idx, f, strlen(f), SUB(sub));
}

/* Brute-force reference: level by level, per MQTT-4.7 (filter and topic pre-validated). */
static bool ref_match(const char *f, size_t fl, const char *t, size_t tl)
{
    if (tl == 0)
        return false;
    /* MQTT-4.7.2-1 */
    if ((f[0] == '+' || f[0] == '#') && t[0] == '$')
        return false;
    size_t fp = 0, tp = 0;
    for (;;) {
        size_t fe = fp;
        while (fe < fl && f[fe] != '/')
            fe++;
        size_t flen = fe - fp;
        if (flen == 1 && f[fp] == '#')
            return true; /* matches the parent level and everything below */
        if (tp > tl)
            return false; /* topic has no more levels */
        size_t te = tp;
        while (te < tl && t[te] != '/')
            te++;
        bool plus = flen == 1 && f[fp] == '+';
        if (!plus && (flen != te - tp || memcmp(f + fp, t + tp, flen) != 0))
            return false;
        fp = fe + 1;
        tp = te + 1;
        if (fp > fl)
            return tp > tl;
    }
}

/* ------------------------------------------------------------------ */
/* MQTT 3.1.1 section 4.7 tables                                       */
/* ------------------------------------------------------------------ */

static const struct {
    const char *filter;
    const char *topic;
    bool match;
} spec_cases[] = {
    /* 4.7.1.2 multi-level wildcard */
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/tennis/player1/#", "sport/tennis/player2", false},
    {"sport/tennis/player1/#", "sport/tennis", false},
    {"sport/#", "sport", true},
    {"sport/#", "sport/", true},
    {"#", "sport", true},
    {"#", "/", true},
    {"#", "a/b/c/d", true},
    /* 4.7.1.3 single-level wildcard */
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+", "sport", true},
    {"+", "/sport", false},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+/tennis/#", "sport/tennis", true},
    {"+/tennis/#", "sport/tennis/player1", true},
    {"+/tennis/#", "sport/soccer/player1", false},
    {"+/+", "a", false},
    {"+/+", "a/", true},
    {"+/+", "/", true},
    /* empty levels are real levels (4.7.3) */
    {"a//b", "a//b", true},
    {"a//b", "a/b", false},
    {"a/+/b", "a//b", true},
    {"/", "/", true},
    {"/", "", false},
    {"a/", "a", false},
    {"a/", "a/", true},
    /* 4.7.2 topics beginning with $ (MQTT-4.7.2-1) */
    {"#", "$SYS/a", false},
    {"#", "$SYS", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$SYS/+", "$SYS/monitor", true},
    {"+/#", "$SYS/x", false},
    {"a/#", "a/$b", true},
    {"a/+", "a/$b", true},
    {"+/$b", "a/$b", true},
    {"$", "$", true},
    {"+", "$", false},
    /* case sensitivity and exactness (4.7.3) */
    {"ACCOUNTS", "Accounts", false},
    {"sport/tennis", "sport/tennis/", false},
    {"sport/tennis", "sport/tenni", false},
    {"sport/tennis", "sport/tennis", true},
    {"a b/c", "a b/c", true},
};

static void test_spec_table(void **state)
{
    (void)state;
    hits_t h = {0};
    for (size_t i = 0; i < sizeof(spec_cases) / sizeof(spec_cases[0]); i++) {
        const char *f = spec_cases[i].filter, *t = spec_cases[i].topic;
        /* the reference matcher must agree with the spec too, or the
         * differential test below proves nothing */
        if (ref_match(f, strlen(f), t, strlen(t)) != spec_cases[i].match)
            fail_msg("reference matcher wrong on case %zu: %s vs %s", i, f, t);
        gw_topic_index_t *idx = gw_topic_index_new();
        assert_non_null(idx);
        assert_int_equal(add_str(idx, f, 7, 1, NULL), GW_OK);
        /* noise: a sibling filter of another subscriber must not match */
        assert_int_equal(add_str(idx, "zz/+/#", 8, 0, NULL), GW_OK);
        size_t n = match_str(idx, t, &h);
        if (n != (spec_cases[i].match ? 1u : 0u))
            fail_msg("case %zu: filter \"%s\" topic \"%s\": %zu matches, want %d", i, f, t, n,
                     spec_cases[i].match);
        if (n == 1) {
            assert_ptr_equal(h.v[0].sub, SUB(7));
            assert_int_equal(h.v[0].qos, 1);
        }
        gw_topic_index_free(idx);
    }
    /* all filters in one index, each topic sees exactly its cases */
    gw_topic_index_t *idx = gw_topic_index_new();
    assert_non_null(idx);
    size_t ncases = sizeof(spec_cases) / sizeof(spec_cases[0]);
    for (size_t i = 0; i < ncases; i++)
        assert_int_equal(add_str(idx, spec_cases[i].filter, 1000 + i, 2, NULL), GW_OK);
    for (size_t i = 0; i < ncases; i++) {
        const char *t = spec_cases[i].topic;
        if (!*t)
            continue;
        size_t want = 0;
        for (size_t j = 0; j < ncases; j++)
            want += ref_match(spec_cases[j].filter, strlen(spec_cases[j].filter), t, strlen(t));
        assert_int_equal(match_str(idx, t, &h), want);
    }
    gw_topic_index_free(idx);
    free(h.v);
}

/* ------------------------------------------------------------------ */
/* Index semantics                                                      */
/* ------------------------------------------------------------------ */

static void test_overlapping_filters(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    hits_t h = {0};
    const char *filters[] = {"a/b/c", "a/+/c", "a/#", "#", "+/b/#", "a/b/c/#", "+/+/+"};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(add_str(idx, filters[i], 1, (uint8_t)(i % 3), NULL), GW_OK);
    assert_int_equal(add_str(idx, "a/b/c", 2, 2, NULL), GW_OK);
    assert_int_equal(gw_topic_index_count(idx), 8);
    /* subscriber 1 reported once per filter (7), subscriber 2 once */
    assert_int_equal(match_str(idx, "a/b/c", &h), 8);
    size_t ones = 0;
    unsigned qos_mask = 0;
    for (size_t i = 0; i < h.n; i++) {
        if (h.v[i].sub == SUB(1)) {
            ones++;
            qos_mask |= 1u << h.v[i].qos;
        }
    }
    assert_int_equal(ones, 7);
    assert_int_equal(qos_mask, 0x7);
    assert_int_equal(match_str(idx, "a/b", &h), 3); /* a/#, #, +/b/# */
    assert_int_equal(match_str(idx, "$a/b/c", &h), 0); /* MQTT-4.7.2-1, and "a" != "$a" */
    gw_topic_index_free(idx);
    free(h.v);
}

static void test_update_replaces_qos(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    hits_t h = {0};
    bool added = false;
    assert_int_equal(add_str(idx, "x/#", 5, 0, &added), GW_OK);
    assert_true(added);
    assert_int_equal(add_str(idx, "x/#", 5, 2, &added), GW_OK);
    assert_false(added);
    assert_int_equal(gw_topic_index_count(idx), 1);
    assert_int_equal(match_str(idx, "x/y", &h), 1);
    assert_int_equal(h.v[0].qos, 2);
    /* same level, other kind ("x" vs "x/#") is a distinct filter */
    assert_int_equal(add_str(idx, "x", 5, 1, &added), GW_OK);
    assert_true(added);
    assert_int_equal(match_str(idx, "x", &h), 2);
    /* update inside an entry block (more than one entry on the node) */
    for (uintptr_t s = 10; s < 40; s++)
        assert_int_equal(add_str(idx, "x/#", s, 0, NULL), GW_OK);
    assert_int_equal(add_str(idx, "x/#", 25, 1, &added), GW_OK);
    assert_false(added);
    assert_int_equal(add_str(idx, "x", 5, 2, &added), GW_OK);
    assert_false(added);
    assert_int_equal(gw_topic_index_count(idx), 32);
    assert_int_equal(match_str(idx, "x", &h), 32);
    for (size_t i = 0; i < h.n; i++) {
        uint8_t want = h.v[i].sub == SUB(25) ? 1 : h.v[i].sub == SUB(5) ? 2 : 0;
        if (h.v[i].sub == SUB(5) && h.v[i].qos == 2) /* "x/#" of 5 also has qos 2 */
            continue;
        assert_int_equal(h.v[i].qos, want);
    }
    gw_topic_index_free(idx);
    free(h.v);
}

static void test_remove_not_found(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    assert_int_equal(remove_str(idx, "a/b", 1), GW_ERR_NOT_FOUND);
    assert_int_equal(add_str(idx, "a/b", 1, 0, NULL), GW_OK);
    assert_int_equal(add_str(idx, "a/+/c/#", 1, 0, NULL), GW_OK);
    assert_int_equal(remove_str(idx, "a/b", 2), GW_ERR_NOT_FOUND);   /* other subscriber */
    assert_int_equal(remove_str(idx, "a/b/#", 1), GW_ERR_NOT_FOUND); /* other kind */
    assert_int_equal(remove_str(idx, "a", 1), GW_ERR_NOT_FOUND);     /* inner node */
    assert_int_equal(remove_str(idx, "a/+", 1), GW_ERR_NOT_FOUND);   /* '+' node, no entry */
    assert_int_equal(remove_str(idx, "a/+/c", 1), GW_ERR_NOT_FOUND);
    assert_int_equal(remove_str(idx, "a/x/c/#", 1), GW_ERR_NOT_FOUND); /* '+' is not a wildcard here */
    assert_int_equal(remove_str(idx, "a/b/c/d/e/f/g", 1), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_topic_index_count(idx), 2);
    assert_int_equal(remove_str(idx, "a/b", 1), GW_OK);
    assert_int_equal(remove_str(idx, "a/b", 1), GW_ERR_NOT_FOUND);
    assert_int_equal(remove_str(idx, "a/+/c/#", 1), GW_OK);
    assert_int_equal(gw_topic_index_count(idx), 0);
    /* entry blocks: absent subscriber among many */
    for (uintptr_t s = 1; s <= 20; s++)
        assert_int_equal(add_str(idx, "m", s, 0, NULL), GW_OK);
    assert_int_equal(remove_str(idx, "m", 21), GW_ERR_NOT_FOUND);
    assert_int_equal(remove_str(idx, "m/#", 3), GW_ERR_NOT_FOUND);
    gw_topic_index_free(idx);
}

static void test_bad_input(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    bool added = true;
    assert_int_equal(add_str(idx, "", 1, 0, &added), GW_ERR_MQTT_TOPIC_EMPTY);
    assert_false(added);
    assert_int_equal(add_str(idx, "a/#/b", 1, 0, NULL), GW_ERR_MQTT_TOPIC_FILTER);
    assert_int_equal(add_str(idx, "a/b#", 1, 0, NULL), GW_ERR_MQTT_TOPIC_FILTER);
    assert_int_equal(add_str(idx, "a+/b", 1, 0, NULL), GW_ERR_MQTT_TOPIC_FILTER);
    assert_int_equal(add_str(idx, "##", 1, 0, NULL), GW_ERR_MQTT_TOPIC_FILTER);
    assert_int_equal(add_str(idx, "a", 1, 3, NULL), GW_ERR_INVAL);
    assert_int_equal(gw_topic_index_add(NULL, "a", 1, SUB(1), 0, NULL), GW_ERR_INVAL);
    assert_int_equal(gw_topic_index_add(idx, NULL, 1, SUB(1), 0, NULL), GW_ERR_INVAL);
    assert_int_equal(remove_str(idx, "a/#/b", 1), GW_ERR_MQTT_TOPIC_FILTER);
    char *big = malloc(70000);
    memset(big, 'a', 70000);
    assert_int_equal(gw_topic_index_add(idx, big, 70000, SUB(1), 0, NULL),
                     GW_ERR_MQTT_TOPIC_TOO_LONG);
    /* a single 65535-byte level is fine (node beyond the slab's sizes) */
    assert_int_equal(gw_topic_index_add(idx, big, 65535, SUB(1), 0, NULL), GW_OK);
    hits_t h = {0};
    assert_int_equal(gw_topic_index_match(idx, big, 65535, collect, &h), 1);
    free(h.v);
    assert_int_equal(gw_topic_index_remove(idx, big, 65535, SUB(1)), GW_OK);
    free(big);
    assert_int_equal(gw_topic_index_count(idx), 0);
    assert_int_equal(gw_topic_index_match(idx, "", 0, collect, &h), 0);
    gw_topic_index_free(idx);
    gw_topic_index_free(NULL);
}

static void test_early_stop(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    hits_t h = {0};
    for (uintptr_t s = 1; s <= 10; s++) {
        assert_int_equal(add_str(idx, "s/t", s, 0, NULL), GW_OK);
        assert_int_equal(add_str(idx, "s/#", s, 0, NULL), GW_OK);
        assert_int_equal(add_str(idx, "+/t", s, 0, NULL), GW_OK);
    }
    assert_int_equal(match_str(idx, "s/t", &h), 30);
    for (size_t stop = 1; stop <= 30; stop++) {
        h.n = 0;
        h.stop_after = stop;
        assert_int_equal(gw_topic_index_match(idx, "s/t", 3, collect, &h), stop);
        assert_int_equal(h.n, stop);
    }
    free(h.v);
    gw_topic_index_free(idx);
}

/* Removal frees nodes, child tables and entry blocks: back to the baseline. */
static void test_prune_to_baseline(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    size_t empty_mem = gw_topic_index_memory(idx);
    gw_topic_index_stats_t s0, s1, s2;
    assert_int_equal(add_str(idx, "keep/a", 1, 0, NULL), GW_OK);
    assert_int_equal(add_str(idx, "keep/+/x", 1, 0, NULL), GW_OK);
    assert_int_equal(add_str(idx, "#", 1, 0, NULL), GW_OK);
    gw_topic_index_stats(idx, &s0);
    assert_int_equal(s0.nodes, 4); /* keep, a, +, x; "#" is an entry of the root */
    char f[64];
    /* 3000 children under one node (table), shared prefixes, '+', '#' tails */
    for (int i = 0; i < 3000; i++) {
        snprintf(f, sizeof(f), "keep/dev%d/cmd/#", i);
        assert_int_equal(add_str(idx, f, 2, 1, NULL), GW_OK);
        snprintf(f, sizeof(f), "keep/dev%d/t", i);
        assert_int_equal(add_str(idx, f, 3, 1, NULL), GW_OK);
        snprintf(f, sizeof(f), "keep/+/s%d", i % 50);
        assert_int_equal(add_str(idx, f, (uintptr_t)(100 + i), 1, NULL), GW_OK);
    }
    /* 500 subscribers on one filter (entry block with index) */
    for (uintptr_t s = 10; s < 510; s++)
        assert_int_equal(add_str(idx, "keep/a", s, 2, NULL), GW_OK);
    gw_topic_index_stats(idx, &s1);
    assert_true(s1.nodes > s0.nodes + 6000);
    assert_int_equal(s1.entries, s0.entries + 9000 + 500);
    /* remove in a different order than added */
    for (uintptr_t s = 509; s >= 10; s--)
        assert_int_equal(remove_str(idx, "keep/a", s), GW_OK);
    for (int i = 2999; i >= 0; i -= 2) {
        snprintf(f, sizeof(f), "keep/dev%d/t", i);
        assert_int_equal(remove_str(idx, f, 3), GW_OK);
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(f, sizeof(f), "keep/dev%d/cmd/#", i);
        assert_int_equal(remove_str(idx, f, 2), GW_OK);
        snprintf(f, sizeof(f), "keep/+/s%d", i % 50);
        assert_int_equal(remove_str(idx, f, (uintptr_t)(100 + i)), GW_OK);
        if (i % 2 == 0) {
            snprintf(f, sizeof(f), "keep/dev%d/t", i);
            assert_int_equal(remove_str(idx, f, 3), GW_OK);
        }
    }
    gw_topic_index_stats(idx, &s2);
    assert_int_equal(s2.entries, s0.entries);
    assert_int_equal(s2.nodes, s0.nodes);
    assert_int_equal(s2.bytes_live, s0.bytes_live);
    /* the kept filters still work */
    hits_t h = {0};
    assert_int_equal(match_str(idx, "keep/a", &h), 2);
    assert_int_equal(match_str(idx, "keep/q/x", &h), 2);
    free(h.v);
    /* empty index: everything, slab included, is given back */
    assert_int_equal(remove_str(idx, "keep/a", 1), GW_OK);
    assert_int_equal(remove_str(idx, "keep/+/x", 1), GW_OK);
    assert_int_equal(remove_str(idx, "#", 1), GW_OK);
    gw_topic_index_stats(idx, &s2);
    assert_int_equal(s2.nodes, 0);
    assert_int_equal(s2.bytes_live, 0);
    assert_int_equal(gw_topic_index_memory(idx), empty_mem);
    gw_topic_index_free(idx);
}

/* ------------------------------------------------------------------ */
/* Randomized differential test                                        */
/* ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static const char *const alphabet[] = {"a", "b", "c", "", "$x", "$SYS", "long-level-name-x"};
#define NALPHA (sizeof(alphabet) / sizeof(alphabet[0]))

static void rand_topic(char *out, size_t cap, bool filter)
{
    size_t depth = 1 + rng() % 5;
    size_t o = 0;
    for (size_t d = 0; d < depth; d++) {
        const char *l;
        uint64_t r = rng() % 10;
        if (filter && r < 2)
            l = "+";
        else if (filter && r == 2 && d == depth - 1)
            l = "#";
        else
            l = alphabet[rng() % NALPHA];
        o += (size_t)snprintf(out + o, cap - o, "%s%s", d ? "/" : "", l);
    }
    if (o == 0) /* "" alone is not a valid name or filter */
        snprintf(out, cap, "/");
}

typedef struct ref_entry {
    char filter[128];
    uintptr_t sub;
    uint8_t qos;
    bool live;
} ref_entry_t;

static void test_differential(void **state)
{
    (void)state;
    enum { NFILTERS = 4000, NSUBS = 40, NTOPICS = 3000 };
    rng_state = 0x9e3779b97f4a7c15ULL; /* fixed seed: failures reproduce */
    gw_topic_index_t *idx = gw_topic_index_new();
    ref_entry_t *ref = calloc(NFILTERS, sizeof(*ref));
    size_t nref = 0, live = 0, total_hits = 0;
    hits_t h = {0};
    hit_t *want = malloc(NFILTERS * sizeof(*want));
    char f[128];

    for (int round = 0; round < 3; round++) {
        /* add (some are updates of an existing pair) */
        for (int i = 0; i < NFILTERS / 2 && nref < NFILTERS; i++) {
            rand_topic(f, sizeof(f), true);
            uintptr_t sub = 1 + rng() % NSUBS;
            uint8_t qos = (uint8_t)(rng() % 3);
            bool added, exists = false;
            assert_int_equal(add_str(idx, f, sub, qos, &added), GW_OK);
            for (size_t j = 0; j < nref; j++) {
                if (ref[j].live && ref[j].sub == sub && strcmp(ref[j].filter, f) == 0) {
                    ref[j].qos = qos;
                    exists = true;
                    break;
                }
            }
            assert_int_equal(added, !exists);
            if (!exists) {
                snprintf(ref[nref].filter, sizeof(ref[nref].filter), "%s", f);
                ref[nref].sub = sub;
                ref[nref].qos = qos;
                ref[nref].live = true;
                nref++;
                live++;
            }
        }
        /* remove about a third, and try some absent ones */
        for (size_t j = 0; j < nref; j++) {
            if (ref[j].live && rng() % 3 == 0) {
                assert_int_equal(remove_str(idx, ref[j].filter, ref[j].sub), GW_OK);
                ref[j].live = false;
                live--;
                assert_int_equal(remove_str(idx, ref[j].filter, ref[j].sub), GW_ERR_NOT_FOUND);
            }
        }
        assert_int_equal(gw_topic_index_count(idx), live);
        /* compare every match against the brute force */
        for (int t = 0; t < NTOPICS; t++) {
            rand_topic(f, sizeof(f), false);
            size_t tl = strlen(f), nw = 0;
            for (size_t j = 0; j < nref; j++)
                if (ref[j].live && ref_match(ref[j].filter, strlen(ref[j].filter), f, tl))
                    want[nw++] = (hit_t){SUB(ref[j].sub), ref[j].qos};
            qsort(want, nw, sizeof(*want), hit_cmp);
            size_t got = match_str(idx, f, &h);
            total_hits += got;
            if (got != nw)
                fail_msg("round %d topic \"%s\": %zu matches, reference %zu", round, f, got, nw);
            for (size_t k = 0; k < nw; k++)
                if (hit_cmp(&want[k], &h.v[k]) != 0)
                    fail_msg("round %d topic \"%s\": match %zu differs", round, f, k);
        }
    }
    /* the comparison must have exercised real matches */
    assert_true(total_hits > NTOPICS);
    /* remove the rest: the trie must be empty again */
    for (size_t j = 0; j < nref; j++)
        if (ref[j].live)
            assert_int_equal(remove_str(idx, ref[j].filter, ref[j].sub), GW_OK);
    gw_topic_index_stats_t st;
    gw_topic_index_stats(idx, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.nodes, 0);
    free(want);
    free(ref);
    free(h.v);
    gw_topic_index_free(idx);
}

/* One node with many "m" and "m/#" subscribers: partitioned block + index. */
static void check_many(const gw_topic_index_t *idx, const bool *here, const bool *hash, size_t n)
{
    hits_t h = {0};
    size_t want_here = 0, want_hash = 0;
    for (size_t s = 1; s <= n; s++) {
        want_here += here[s];
        want_hash += hash[s];
    }
    assert_int_equal(match_str(idx, "m/x", &h), want_hash);
    for (size_t i = 0; i < h.n; i++) {
        uintptr_t s = (uintptr_t)h.v[i].sub;
        assert_true(s >= 1 && s <= n && hash[s]);
        assert_int_equal(h.v[i].qos, (s + 1) % 3);
    }
    assert_int_equal(match_str(idx, "m", &h), want_here + want_hash);
    size_t seen_here = 0;
    for (size_t i = 0; i < h.n; i++) {
        uintptr_t s = (uintptr_t)h.v[i].sub;
        if (h.v[i].qos == s % 3 && here[s])
            seen_here++;
    }
    assert_true(seen_here >= want_here);
    free(h.v);
}

static void test_many_subscribers(void **state)
{
    (void)state;
    enum { N = 1500 };
    gw_topic_index_t *idx = gw_topic_index_new();
    bool *here = calloc(N + 1, sizeof(bool)), *hash = calloc(N + 1, sizeof(bool));
    rng_state = 12345;
    /* interleaved adds of both kinds force moves across the partition */
    for (size_t i = 0; i < 2 * N; i++) {
        uintptr_t s = 1 + rng() % N;
        bool kind_hash = rng() % 2;
        bool added;
        assert_int_equal(add_str(idx, kind_hash ? "m/#" : "m", s,
                                 (uint8_t)(kind_hash ? (s + 1) % 3 : s % 3), &added),
                         GW_OK);
        bool *set = kind_hash ? hash : here;
        assert_int_equal(added, !set[s]);
        set[s] = true;
        if (i % 500 == 0)
            check_many(idx, here, hash, N);
    }
    check_many(idx, here, hash, N);
    /* random-order removal, checking as it shrinks back to inline */
    for (size_t i = 0; i < 4 * N; i++) {
        uintptr_t s = 1 + rng() % N;
        bool kind_hash = rng() % 2;
        bool *set = kind_hash ? hash : here;
        gw_err_t want = set[s] ? GW_OK : GW_ERR_NOT_FOUND;
        assert_int_equal(remove_str(idx, kind_hash ? "m/#" : "m", s), want);
        set[s] = false;
        if (i % 300 == 0 || gw_topic_index_count(idx) < 20)
            check_many(idx, here, hash, N);
    }
    for (uintptr_t s = 1; s <= N; s++) {
        if (here[s])
            assert_int_equal(remove_str(idx, "m", s), GW_OK);
        if (hash[s])
            assert_int_equal(remove_str(idx, "m/#", s), GW_OK);
        here[s] = hash[s] = false;
        if (gw_topic_index_count(idx) < 20)
            check_many(idx, here, hash, N);
    }
    gw_topic_index_stats_t st;
    gw_topic_index_stats(idx, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.nodes, 0);
    assert_int_equal(st.bytes_live, 0);
    free(here);
    free(hash);
    gw_topic_index_free(idx);
}

/* ------------------------------------------------------------------ */
/* Deep topics: beyond the on-stack path/match stack                    */
/* ------------------------------------------------------------------ */

static char *repeat_levels(size_t levels, const char *level, const char *tail)
{
    size_t ll = strlen(level), tl = strlen(tail);
    char *s = malloc(levels * (ll + 1) + tl + 1);
    size_t o = 0;
    for (size_t i = 0; i < levels; i++) {
        if (i)
            s[o++] = '/';
        memcpy(s + o, level, ll);
        o += ll;
    }
    memcpy(s + o, tail, tl + 1);
    return s;
}

static void test_deep(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    hits_t h = {0};
    /* 30000 empty levels: "/////..." (29999 slashes) */
    char *deep_topic = repeat_levels(30000, "", "");
    size_t dl = strlen(deep_topic);
    assert_int_equal(add_str(idx, "#", 1, 0, NULL), GW_OK);
    assert_int_equal(add_str(idx, "+/+/#", 2, 0, NULL), GW_OK);
    assert_int_equal(gw_topic_index_match(idx, deep_topic, dl, collect, &h), 2);
    /* a filter as deep as the topic: heap path on add/remove, heap stack on match */
    char *deep_plus = repeat_levels(30000, "+", "");
    assert_int_equal(add_str(idx, deep_plus, 3, 1, NULL), GW_OK);
    assert_int_equal(gw_topic_index_add(idx, deep_topic, dl, SUB(4), 2, NULL), GW_OK);
    h.n = 0;
    assert_int_equal(gw_topic_index_match(idx, deep_topic, dl, collect, &h), 4);
    char *deeper = repeat_levels(30001, "", "");
    h.n = 0;
    assert_int_equal(gw_topic_index_match(idx, deeper, strlen(deeper), collect, &h), 2);
    assert_int_equal(remove_str(idx, deep_plus, 3), GW_OK);
    assert_int_equal(gw_topic_index_remove(idx, deep_topic, dl, SUB(4)), GW_OK);
    gw_topic_index_stats_t st;
    gw_topic_index_stats(idx, &st);
    assert_int_equal(st.nodes, 2); /* "+" and "+/+" remain for "+/+/#" */
    /* free with a deep trie still in place: must not recurse */
    assert_int_equal(add_str(idx, deep_plus, 3, 1, NULL), GW_OK);
    free(deeper);
    free(deep_plus);
    free(deep_topic);
    free(h.v);
    gw_topic_index_free(idx);
}

/* Many children under one node: table growth, shrink back to the small array. */
static void test_many_children(void **state)
{
    (void)state;
    gw_topic_index_t *idx = gw_topic_index_new();
    hits_t h = {0};
    char f[64];
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "d/%d/cmd/#", i);
        assert_int_equal(add_str(idx, f, (uintptr_t)i + 1, 1, NULL), GW_OK);
    }
    for (int i = 0; i < N; i += 997) {
        snprintf(f, sizeof(f), "d/%d/cmd/x", i);
        assert_int_equal(match_str(idx, f, &h), 1);
        assert_ptr_equal(h.v[0].sub, SUB((uintptr_t)i + 1));
        snprintf(f, sizeof(f), "d/%d/cm", i);
        assert_int_equal(match_str(idx, f, &h), 0);
    }
    /* remove all but 3, checking that lookups survive backward shifts */
    for (int i = 0; i < N - 3; i++) {
        snprintf(f, sizeof(f), "d/%d/cmd/#", i);
        assert_int_equal(remove_str(idx, f, (uintptr_t)i + 1), GW_OK);
        if (i % 1000 == 0) {
            snprintf(f, sizeof(f), "d/%d/cmd", N - 1 - i / 1000);
            assert_int_equal(match_str(idx, f, &h), 1);
        }
    }
    for (int i = N - 3; i < N; i++) {
        snprintf(f, sizeof(f), "d/%d/cmd", i);
        assert_int_equal(match_str(idx, f, &h), 1);
    }
    gw_topic_index_stats_t st;
    gw_topic_index_stats(idx, &st);
    assert_int_equal(st.nodes, 1 + 3 * 2);
    free(h.v);
    gw_topic_index_free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_table),
        cmocka_unit_test(test_overlapping_filters),
        cmocka_unit_test(test_update_replaces_qos),
        cmocka_unit_test(test_remove_not_found),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_early_stop),
        cmocka_unit_test(test_prune_to_baseline),
        cmocka_unit_test(test_differential),
        cmocka_unit_test(test_many_subscribers),
        cmocka_unit_test(test_deep),
        cmocka_unit_test(test_many_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
