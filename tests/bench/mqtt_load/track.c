/*
 * track.c - per (sink, publisher) sequence tracking, see track.h.
 */
#include "track.h"

#include <stdlib.h>
#include <string.h>

static int gap_push(lt_pair_t *p, uint64_t lo, uint64_t hi)
{
    if (p->ngaps == LT_MAX_GAPS) {
        /* Forget the oldest gap: its messages stay counted as missing. */
        p->forgotten += p->gaps[0].hi - p->gaps[0].lo;
        memmove(&p->gaps[0], &p->gaps[1], (p->ngaps - 1) * sizeof(p->gaps[0]));
        p->ngaps--;
    }
    if (p->ngaps == p->capgaps) {
        uint32_t cap = p->capgaps ? p->capgaps * 2 : 4;
        lt_gap_t *g = realloc(p->gaps, cap * sizeof(*g));
        if (!g)
            return -1;
        p->gaps = g;
        p->capgaps = cap;
    }
    p->gaps[p->ngaps].lo = lo;
    p->gaps[p->ngaps].hi = hi;
    p->ngaps++;
    return 0;
}

lt_seen_t lt_pair_record(lt_pair_t *p, uint64_t seq)
{
    if (seq == p->next) {
        p->next++;
        return LT_SEEN_NEW;
    }
    if (seq > p->next) {
        if (gap_push(p, p->next, seq) != 0)
            return LT_SEEN_ERR;
        p->next = seq + 1;
        return LT_SEEN_NEW;
    }
    /* Below the expected number: inside a gap (late, first time) or a dup. */
    uint32_t lo = 0, hi = p->ngaps;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->gaps[mid].hi <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == p->ngaps || seq < p->gaps[lo].lo)
        return LT_SEEN_DUP;
    lt_gap_t *g = &p->gaps[lo];
    if (g->hi - g->lo == 1) {
        memmove(g, g + 1, (p->ngaps - lo - 1) * sizeof(*g));
        p->ngaps--;
    } else if (seq == g->lo) {
        g->lo++;
    } else if (seq == g->hi - 1) {
        g->hi--;
    } else {
        /* Split [lo, hi) into [lo, seq) and [seq + 1, hi). */
        uint64_t end = g->hi;
        g->hi = seq;
        if (p->ngaps == LT_MAX_GAPS) {
            /* No room for one more gap: forget the upper part. */
            p->forgotten += end - (seq + 1);
            return LT_SEEN_OOO;
        }
        if (gap_push(p, 0, 0) != 0) { /* grow by one, then shift into place */
            g->hi = end;
            return LT_SEEN_ERR;
        }
        g = &p->gaps[lo];
        memmove(g + 2, g + 1, (p->ngaps - lo - 2) * sizeof(*g));
        g[1].lo = seq + 1;
        g[1].hi = end;
    }
    return LT_SEEN_OOO;
}

uint64_t lt_pair_missing_below(const lt_pair_t *p, uint64_t limit)
{
    uint64_t n = p->forgotten;
    for (uint32_t i = 0; i < p->ngaps; i++) {
        if (p->gaps[i].lo >= limit)
            break;
        n += (p->gaps[i].hi < limit ? p->gaps[i].hi : limit) - p->gaps[i].lo;
    }
    if (limit > p->next)
        n += limit - p->next;
    return n;
}

lt_pair_t *lt_sink_pair(lt_sink_t *s, uint32_t pub)
{
    if (pub >= LT_MAX_PUBLISHER_ID)
        return NULL;
    if (pub >= s->npairs) {
        uint32_t n = s->npairs ? s->npairs : 8;
        while (n <= pub)
            n *= 2;
        lt_pair_t **pp = realloc(s->pairs, n * sizeof(*pp));
        if (!pp)
            return NULL;
        memset(pp + s->npairs, 0, (n - s->npairs) * sizeof(*pp));
        s->pairs = pp;
        s->npairs = n;
    }
    if (!s->pairs[pub])
        s->pairs[pub] = calloc(1, sizeof(lt_pair_t));
    return s->pairs[pub];
}

uint64_t lt_sink_missing_below(const lt_sink_t *s, uint32_t pub, uint64_t limit)
{
    if (pub >= s->npairs || !s->pairs[pub])
        return limit;
    return lt_pair_missing_below(s->pairs[pub], limit);
}

void lt_sink_free(lt_sink_t *s)
{
    for (uint32_t i = 0; i < s->npairs; i++) {
        if (s->pairs[i]) {
            free(s->pairs[i]->gaps);
            free(s->pairs[i]);
        }
    }
    free(s->pairs);
    s->pairs = NULL;
    s->npairs = 0;
}
