/*
 * hist.c - log-bucket latency histogram, see hist.h.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

void lt_hist_init(lt_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t lt_hist_index(uint64_t v)
{
    if (v < LT_HIST_LINEAR)
        return (uint32_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v); /* >= SUB_BITS + 1 */
    uint32_t shift = e - LT_HIST_SUB_BITS;
    uint32_t sub = (uint32_t)(v >> shift) & (LT_HIST_SUB - 1u);
    return LT_HIST_LINEAR + (e - LT_HIST_SUB_BITS - 1u) * LT_HIST_SUB + sub;
}

void lt_hist_bucket_range(uint32_t i, uint64_t *lo, uint64_t *hi)
{
    if (i < LT_HIST_LINEAR) {
        *lo = *hi = i;
        return;
    }
    uint32_t k = i - LT_HIST_LINEAR;
    uint32_t e = k / LT_HIST_SUB + LT_HIST_SUB_BITS + 1u;
    uint32_t sub = k % LT_HIST_SUB;
    uint32_t shift = e - LT_HIST_SUB_BITS;
    *lo = ((uint64_t)(LT_HIST_SUB + sub)) << shift;
    *hi = *lo + ((1ull << shift) - 1u);
}

void lt_hist_record(lt_hist_t *h, uint64_t v)
{
    h->b[lt_hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void lt_hist_merge(lt_hist_t *dst, const lt_hist_t *src)
{
    if (!src->count)
        return;
    for (uint32_t i = 0; i < LT_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t lt_hist_percentile(const lt_hist_t *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < LT_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            lt_hist_bucket_range(i, &lo, &hi);
            if (hi > h->max)
                hi = h->max;
            if (hi < h->min)
                hi = h->min;
            return hi;
        }
    }
    return h->max;
}
