/*
 * bench_topic.c - subscription index micro-benchmark.
 *
 *   bench_topic [--filters N] [--topics M] [--shape mix|cmd] [--seed S]
 *
 * Builds an index of N distinct filters, then matches M topics drawn from a
 * realistic mix, then removes every filter. Prints insert time, memory
 * (the index's own estimate, malloc's view via mallinfo2 and RSS), matches
 * per second, and one line of JSON at the end.
 *
 * Shapes:
 *   mix  40% "devices/<id>/telemetry" (exact), 30% "devices/<id>/cmd/#",
 *        15% "sites/<site>/+/<metric>", 15% "fleet/<region>/<vehicle>/gps"
 *        (deep shared prefixes), plus 16 analytics subscribers on
 *        "devices/+/telemetry".
 *   cmd  N x "devices/<id>/cmd/#": one million children under one node,
 *        nothing shared: the worst case for bytes per filter.
 *
 * Topic mix: 40% telemetry, 20% cmd, 15% sites, 15% fleet, 10% misses.
 */
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw/topic.h"

typedef struct strs {
    char *buf;
    size_t used, cap;
    size_t *off;
    size_t n, ncap;
} strs_t;

static void strs_add(strs_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void strs_add(strs_t *s, const char *fmt, ...)
{
    if (s->cap - s->used < 128) {
        s->cap = s->cap ? s->cap * 2 : 1 << 20;
        s->buf = realloc(s->buf, s->cap);
    }
    if (s->n == s->ncap) {
        s->ncap = s->ncap ? s->ncap * 2 : 1024;
        s->off = realloc(s->off, (s->ncap + 1) * sizeof(*s->off));
    }
    if (!s->buf || !s->off) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(s->buf + s->used, 128, fmt, ap);
    va_end(ap);
    s->off[s->n++] = s->used;
    s->used += (size_t)w;
    s->off[s->n] = s->used;
}

static const char *strs_get(const strs_t *s, size_t i, size_t *len)
{
    *len = s->off[i + 1] - s->off[i];
    return s->buf + s->off[i];
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd; /* arena in use + mmap'ed blocks */
}

static size_t rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static bool count_cb(void *sub, uint8_t qos, void *arg)
{
    (void)sub;
    (void)qos;
    (*(size_t *)arg)++;
    return true;
}

int main(int argc, char **argv)
{
    size_t nfilters = 1000000, ntopics = 2000000;
    const char *shape = "mix";
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--filters") && i + 1 < argc)
            nfilters = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--topics") && i + 1 < argc)
            ntopics = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc)
            shape = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--filters N] [--topics M] [--shape mix|cmd] [--seed S]\n",
                    argv[0]);
            return 2;
        }
    }
    bool mix = strcmp(shape, "cmd") != 0;
    if (nfilters < 100 || ntopics == 0) {
        fprintf(stderr, "need --filters >= 100 and --topics >= 1\n");
        return 2;
    }
    rng_state = seed ? seed : 1;

    /* ---- filters (generated before measuring) ---- */
    strs_t filters = {0};
    void **subs = malloc(nfilters * sizeof(*subs));
    size_t n_tel = 0, n_cmd = 0, n_sites = 0, n_fleet = 0;
    if (mix) {
        const size_t analytics = 16;
        n_tel = nfilters * 40 / 100;
        n_cmd = nfilters * 30 / 100;
        n_sites = nfilters * 15 / 100;
        n_fleet = nfilters - analytics - n_tel - n_cmd - n_sites;
        for (size_t i = 0; i < n_tel; i++)
            strs_add(&filters, "devices/dev%07u/telemetry", (unsigned)i);
        for (size_t i = 0; i < n_cmd; i++)
            strs_add(&filters, "devices/dev%07u/cmd/#", (unsigned)i);
        for (size_t i = 0; i < n_sites; i++)
            strs_add(&filters, "sites/site%04u/+/metric%u", (unsigned)(i / 16), (unsigned)(i % 16));
        for (size_t i = 0; i < n_fleet; i++)
            strs_add(&filters, "fleet/region%02u/vehicle%06u/gps", (unsigned)(i % 50),
                     (unsigned)(i / 50));
        for (size_t i = 0; i < analytics; i++)
            strs_add(&filters, "devices/+/telemetry");
        for (size_t i = 0; i < nfilters; i++) /* device i's client; analytics apps last */
            subs[i] = (void *)(uintptr_t)(i < nfilters - analytics ? (i % (n_tel ? n_tel : 1)) + 1
                                                                    : 0x10000000u + i);
    } else {
        n_cmd = nfilters;
        for (size_t i = 0; i < nfilters; i++) {
            strs_add(&filters, "devices/dev%07u/cmd/#", (unsigned)i);
            subs[i] = (void *)(uintptr_t)(i + 1);
        }
    }

    /* ---- topics ---- */
    strs_t topics = {0};
    size_t nt = ntopics < 1000000 ? ntopics : 1000000; /* distinct topics, cycled */
    for (size_t i = 0; i < nt; i++) {
        unsigned r = (unsigned)(rng() % 100);
        unsigned dev_span = (unsigned)(mix ? (n_tel ? n_tel : 1) : n_cmd);
        if (r < 40)
            strs_add(&topics, "devices/dev%07u/telemetry", (unsigned)(rng() % dev_span));
        else if (r < 60)
            strs_add(&topics, "devices/dev%07u/cmd/reboot", (unsigned)(rng() % dev_span));
        else if (r < 75)
            strs_add(&topics, "sites/site%04u/room7/metric%u",
                     (unsigned)(rng() % (n_sites / 16 + 1)), (unsigned)(rng() % 16));
        else if (r < 90)
            strs_add(&topics, "fleet/region%02u/vehicle%06u/gps", (unsigned)(rng() % 50),
                     (unsigned)(rng() % (n_fleet / 50 + 1)));
        else
            strs_add(&topics, "other/%u/x", (unsigned)(rng() % 1000));
    }

    /* ---- insert ---- */
    size_t heap0 = heap_used(), rss0 = rss_bytes();
    gw_topic_index_t *idx = gw_topic_index_new();
    if (!idx)
        return 1;
    size_t idx_mem0 = gw_topic_index_memory(idx);
    double t0 = now();
    for (size_t i = 0; i < nfilters; i++) {
        size_t len;
        const char *f = strs_get(&filters, i, &len);
        bool added;
        if (gw_topic_index_add(idx, f, len, subs[i], (uint8_t)(i % 3), &added) != 0 || !added) {
            fprintf(stderr, "add failed at %zu\n", i);
            return 1;
        }
    }
    double t_insert = now() - t0;
    size_t idx_mem = gw_topic_index_memory(idx) - idx_mem0;
    size_t heap = heap_used() - heap0;
    size_t rss1 = rss_bytes();
    size_t rss = rss1 > rss0 ? rss1 - rss0 : 0;
    gw_topic_index_stats_t st;
    gw_topic_index_stats(idx, &st);
    if (gw_topic_index_count(idx) != nfilters) {
        fprintf(stderr, "count %zu != %zu\n", gw_topic_index_count(idx), nfilters);
        return 1;
    }

    /* ---- match ---- */
    size_t callbacks = 0, hit_topics = 0;
    t0 = now();
    for (size_t i = 0; i < ntopics; i++) {
        size_t len;
        const char *t = strs_get(&topics, i % nt, &len);
        hit_topics += gw_topic_index_match(idx, t, len, count_cb, &callbacks) > 0;
    }
    double t_match = now() - t0;

    /* ---- remove everything ---- */
    t0 = now();
    for (size_t i = 0; i < nfilters; i++) {
        size_t len;
        const char *f = strs_get(&filters, i, &len);
        if (gw_topic_index_remove(idx, f, len, subs[i]) != 0) {
            fprintf(stderr, "remove failed at %zu\n", i);
            return 1;
        }
    }
    double t_remove = now() - t0;
    size_t mem_after = gw_topic_index_memory(idx) - idx_mem0;
    gw_topic_index_free(idx);

    double ins_ns = t_insert * 1e9 / (double)nfilters;
    double mps = (double)ntopics / t_match;
    printf("shape            %s\n", mix ? "mix" : "cmd");
    printf("filters          %zu (nodes %zu, max depth %zu)\n", nfilters, st.nodes, st.max_depth);
    printf("insert           %.3f s  (%.0f ns/filter, %.2f M/s)\n", t_insert, ins_ns,
           (double)nfilters / t_insert / 1e6);
    printf("memory (index)   %zu bytes  (%.1f B/filter; live %.1f B/filter)\n", idx_mem,
           (double)idx_mem / (double)nfilters, (double)st.bytes_live / (double)nfilters);
    printf("memory (malloc)  %zu bytes  (%.1f B/filter)\n", heap, (double)heap / (double)nfilters);
    printf("memory (rss)     %zu bytes  (%.1f B/filter)\n", rss, (double)rss / (double)nfilters);
    printf("match            %zu topics in %.3f s: %.2f M topics/s, %.0f ns/topic\n", ntopics,
           t_match, mps / 1e6, t_match * 1e9 / (double)ntopics);
    printf("                 %zu callbacks (%.2f per topic), %.1f%% topics matched\n", callbacks,
           (double)callbacks / (double)ntopics, 100.0 * (double)hit_topics / (double)ntopics);
    printf("remove           %.3f s  (%.0f ns/filter), memory after %zu bytes\n", t_remove,
           t_remove * 1e9 / (double)nfilters, mem_after);
    printf("{\"bench\":\"topic\",\"shape\":\"%s\",\"filters\":%zu,\"nodes\":%zu,"
           "\"insert_s\":%.4f,\"insert_ns_per_filter\":%.1f,\"index_bytes\":%zu,"
           "\"index_bytes_per_filter\":%.1f,\"malloc_bytes_per_filter\":%.1f,"
           "\"rss_bytes_per_filter\":%.1f,\"topics\":%zu,\"matches_per_s\":%.0f,"
           "\"ns_per_match\":%.1f,\"callbacks_per_topic\":%.3f,\"remove_ns_per_filter\":%.1f,"
           "\"bytes_after_remove\":%zu}\n",
           mix ? "mix" : "cmd", nfilters, st.nodes, t_insert, ins_ns, idx_mem,
           (double)idx_mem / (double)nfilters, (double)heap / (double)nfilters,
           (double)rss / (double)nfilters, ntopics, mps, t_match * 1e9 / (double)ntopics,
           (double)callbacks / (double)ntopics, t_remove * 1e9 / (double)nfilters, mem_after);
    free(filters.buf);
    free(filters.off);
    free(topics.buf);
    free(topics.off);
    free(subs);
    return mem_after == 0 ? 0 : 1;
}
